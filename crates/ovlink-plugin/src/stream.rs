//! Bridges between hyper's async bodies and the driver's blocking `Read`/`Write`, so that layer
//! tars stream in both directions with a bounded number of chunks in flight (never a whole
//! layer in memory):
//!
//! - [`pump_body`] + [`BodyReader`]: an async task forwards the request body's chunks into a
//!   bounded channel; a blocking thread reads them as a `std::io::Read` (ApplyDiff).
//! - [`ChannelWriter`] + [`ChannelBody`]: a blocking thread writes a tar into a `std::io::Write`
//!   that sends 64 KiB chunks into a bounded channel; the response body yields them (Diff).
//!
//! This module never blocks an async thread: the blocking halves are only used on tokio's
//! blocking pool (or a plain thread).

use bytes::{Buf, Bytes, BytesMut};
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use std::io::{self, Read, Write};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::mpsc;

/// Chunks in flight between the two halves of a bridge.
pub const CHANNEL_DEPTH: usize = 8;

/// Size of the chunks [`ChannelWriter`] sends.
pub const CHUNK: usize = 64 * 1024;

/// One message of a bridge: data, or the failure that ends the stream.
#[derive(Debug)]
pub enum Chunk {
    /// Bytes of the stream.
    Data(Bytes),
    /// The stream failed with this message.
    Failed(String),
}

/// Forwards `body`'s data frames into `tx` until the body ends. When the reader goes away
/// (the apply finished or failed early) the rest of the body is still read and dropped, so the
/// connection stays usable and the client never sees a half-read request. A body that sends
/// nothing for `idle` (only the wait for the client counts, not a full channel) fails.
pub async fn pump_body<B>(mut body: B, tx: mpsc::Sender<Chunk>, idle: Duration)
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    let mut tx = Some(tx);
    loop {
        let frame = match tokio::time::timeout(idle, body.frame()).await {
            Ok(Some(f)) => f,
            Ok(None) => return,
            Err(_) => {
                if let Some(t) = &tx {
                    let _ = t
                        .send(Chunk::Failed(format!(
                            "the client sent nothing for {idle:?} (the body idle timeout)"
                        )))
                        .await;
                }
                return;
            }
        };
        match frame {
            Ok(f) => {
                if let (Ok(data), Some(t)) = (f.into_data(), &tx) {
                    if t.send(Chunk::Data(data)).await.is_err() {
                        tx = None;
                    }
                }
            }
            Err(e) => {
                if let Some(t) = &tx {
                    let _ = t
                        .send(Chunk::Failed(format!("reading the request body: {e}")))
                        .await;
                }
                return;
            }
        }
    }
}

/// The blocking end of [`pump_body`]: a `Read` over the channel's chunks.
#[derive(Debug)]
pub struct BodyReader {
    rx: mpsc::Receiver<Chunk>,
    cur: Bytes,
}

impl BodyReader {
    /// Reads from `rx`.
    pub fn new(rx: mpsc::Receiver<Chunk>) -> Self {
        BodyReader {
            rx,
            cur: Bytes::new(),
        }
    }
}

impl Read for BodyReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        while self.cur.is_empty() {
            match self.rx.blocking_recv() {
                Some(Chunk::Data(b)) => self.cur = b,
                Some(Chunk::Failed(m)) => return Err(io::Error::other(m)),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.cur.len());
        buf[..n].copy_from_slice(&self.cur[..n]);
        self.cur.advance(n);
        Ok(n)
    }
}

/// A blocking `Write` that sends [`CHUNK`]-sized pieces into a channel.
#[derive(Debug)]
pub struct ChannelWriter {
    tx: mpsc::Sender<Chunk>,
    buf: BytesMut,
    sent: bool,
    idle: Option<(tokio::runtime::Handle, Duration)>,
}

impl ChannelWriter {
    /// Writes into `tx`, waiting as long as the reader needs.
    pub fn new(tx: mpsc::Sender<Chunk>) -> Self {
        ChannelWriter {
            tx,
            buf: BytesMut::with_capacity(CHUNK),
            sent: false,
            idle: None,
        }
    }

    /// Fails a write (`TimedOut`) when the reader takes nothing for `idle` (a client that
    /// stopped reading its Diff). `rt` is the runtime whose timers measure it.
    pub fn idle_timeout(mut self, rt: tokio::runtime::Handle, idle: Duration) -> Self {
        self.idle = Some((rt, idle));
        self
    }

    /// True once some data left the writer (a failure can then no longer be a JSON error).
    pub fn has_sent(&self) -> bool {
        self.sent
    }

    fn send(&mut self, c: Chunk) -> io::Result<()> {
        if matches!(c, Chunk::Data(_)) {
            self.sent = true;
        }
        let closed = || {
            io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the client closed the connection",
            )
        };
        match &self.idle {
            None => self.tx.blocking_send(c).map_err(|_| closed()),
            Some((rt, idle)) => {
                let idle = *idle;
                match rt.block_on(tokio::time::timeout(idle, self.tx.send(c))) {
                    Ok(r) => r.map_err(|_| closed()),
                    Err(_) => Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("the client read nothing for {idle:?} (the body idle timeout)"),
                    )),
                }
            }
        }
    }

    /// Sends what is buffered and ends the stream successfully.
    pub fn finish(mut self) -> io::Result<()> {
        self.flush()
    }

    /// Ends the stream with a failure (the client sees a broken transfer).
    pub fn fail(mut self, msg: String) {
        let _ = self.send(Chunk::Failed(msg));
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = CHUNK - self.buf.len();
        let n = data.len().min(room);
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() >= CHUNK {
            self.flush()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            let b = self.buf.split().freeze();
            self.buf.reserve(CHUNK);
            self.send(Chunk::Data(b))?;
        }
        Ok(())
    }
}

/// A response body fed by a channel of [`Chunk`]s (the async end of [`ChannelWriter`]).
#[derive(Debug)]
pub struct ChannelBody {
    first: Option<Bytes>,
    rx: mpsc::Receiver<Chunk>,
}

impl ChannelBody {
    /// A body that yields `first` (if any), then what arrives on `rx`.
    pub fn new(first: Option<Bytes>, rx: mpsc::Receiver<Chunk>) -> Self {
        ChannelBody { first, rx }
    }
}

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        if let Some(b) = self.first.take() {
            return Poll::Ready(Some(Ok(Frame::data(b))));
        }
        match self.rx.poll_recv(cx) {
            Poll::Ready(Some(Chunk::Data(b))) => Poll::Ready(Some(Ok(Frame::data(b)))),
            Poll::Ready(Some(Chunk::Failed(m))) => Poll::Ready(Some(Err(io::Error::other(m)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}
