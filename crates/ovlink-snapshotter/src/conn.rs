//! The connections the server takes (issue 24, item 6): at most
//! [`crate::ServeOptions::max_connections`] at once, each holding a permit until it closes
//! (more clients wait in the socket's backlog); accept errors (a process out of file
//! descriptors) backed off 100 ms and logged once a minute instead of retried at once, which
//! spun the accept loop at 60-95% CPU; a connection with no call in flight for
//! [`crate::ServeOptions::idle_timeout`] closed (containerd's client reconnects at its next
//! call), so idle clients cannot hold every permit for ever.
//!
//! A connection is idle when none of its calls is running: each call holds a [`Busy`] guard
//! taken from the connection's [`ConnState`] (tonic puts it in every request's extensions).
//! Bytes alone cannot tell: a long Commit sends nothing for a minute, and HTTP/2 pings flow on
//! an idle connection. This module never looks into a call.

use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::UnixStream;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

/// What one connection's calls share with its stream: how many run, and since when none has.
#[derive(Debug)]
pub struct ConnState {
    in_flight: AtomicUsize,
    idle_since: Mutex<Instant>,
}

impl ConnState {
    fn new() -> Arc<ConnState> {
        Arc::new(ConnState {
            in_flight: AtomicUsize::new(0),
            idle_since: Mutex::new(Instant::now()),
        })
    }

    /// When the connection has been idle long enough to close: `None` while a call runs.
    fn idle_deadline(&self, idle: Duration) -> Option<Instant> {
        if self.in_flight.load(Ordering::SeqCst) > 0 {
            return None;
        }
        let since = *self.idle_since.lock().unwrap_or_else(|p| p.into_inner());
        Some(since + idle)
    }
}

/// A call running on a connection; the connection is not idle while one exists.
#[derive(Debug)]
pub struct Busy(Arc<ConnState>);

impl Busy {
    /// Marks a call of `req`'s connection as running (nothing when the request came another
    /// way, as in tests that call the service directly).
    pub fn of<T>(req: &tonic::Request<T>) -> Option<Busy> {
        let s = req.extensions().get::<Arc<ConnState>>()?.clone();
        s.in_flight.fetch_add(1, Ordering::SeqCst);
        Some(Busy(s))
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        let mut since = self.0.idle_since.lock().unwrap_or_else(|p| p.into_inner());
        *since = Instant::now();
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// An accepted connection: the stream, its permit, and its idle clock.
pub struct Conn {
    io: UnixStream,
    state: Arc<ConnState>,
    idle: Duration,
    timer: Pin<Box<tokio::time::Sleep>>,
    _permit: OwnedSemaphorePermit,
}

impl Conn {
    fn new(io: UnixStream, idle: Duration, permit: OwnedSemaphorePermit) -> Conn {
        Conn {
            io,
            state: ConnState::new(),
            idle,
            timer: Box::pin(tokio::time::sleep(idle)),
            _permit: permit,
        }
    }

    /// True once the connection has had no call running for the idle timeout; otherwise
    /// arms the timer for the next moment it could be.
    fn idle_expired(&mut self, cx: &mut Context<'_>) -> bool {
        loop {
            if self.timer.as_mut().poll(cx).is_pending() {
                return false;
            }
            let next = match self.state.idle_deadline(self.idle) {
                Some(at) if at <= Instant::now() => return true,
                Some(at) => at,
                None => Instant::now() + self.idle,
            };
            self.timer.as_mut().reset(next.into());
        }
    }
}

impl tonic::transport::server::Connected for Conn {
    type ConnectInfo = Arc<ConnState>;

    fn connect_info(&self) -> Arc<ConnState> {
        self.state.clone()
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.idle_expired(cx) {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "no call for the idle timeout: connection closed",
            )));
        }
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// The stream of connections tonic serves: an accept task that takes a permit before each
/// accept, backs off on errors, and stops when the server drops the stream.
pub fn incoming(
    listener: tokio::net::UnixListener,
    socket: PathBuf,
    max: usize,
    idle: Duration,
) -> tokio_stream::wrappers::ReceiverStream<io::Result<Conn>> {
    let (tx, rx) = mpsc::channel(16);
    let slots = Arc::new(Semaphore::new(max.max(1)));
    tokio::spawn(async move {
        let mut errors = ovlink_fs::fdlimit::RateLimited::default();
        let mut full = ovlink_fs::fdlimit::RateLimited::default();
        loop {
            let permit = match slots.clone().try_acquire_owned() {
                Ok(p) => p,
                Err(_) => {
                    if let Some(n) = full.tick() {
                        eprintln!(
                            "ovlink snapshotter: {max} connections open, the limit \
                             (--max-connections): new ones wait until one closes (idle ones \
                             close after {idle:?}); reached {n} time(s) in the last minute"
                        );
                    }
                    tokio::select! {
                        p = slots.clone().acquire_owned() => match p {
                            Ok(p) => p,
                            Err(_) => return,
                        },
                        () = tx.closed() => return,
                    }
                }
            };
            let accepted = tokio::select! {
                r = listener.accept() => r,
                () = tx.closed() => return,
            };
            match accepted {
                Ok((stream, _)) => {
                    if tx.send(Ok(Conn::new(stream, idle, permit))).await.is_err() {
                        return;
                    }
                }
                Err(e) => {
                    drop(permit);
                    if let Some(n) = errors.tick() {
                        let hint =
                            if e.raw_os_error() == Some(rustix::io::Errno::MFILE.raw_os_error()) {
                                " (the process is out of file descriptors: raise LimitNOFILE, or \
                             lower --max-connections)"
                            } else {
                                ""
                            };
                        eprintln!(
                            "ovlink snapshotter: accept on {}: {e}{hint}; {n} such error(s) in \
                             the last minute",
                            socket.display()
                        );
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}
