//! The server: the unix socket, the tonic server on it, and the process lifecycle.
//!
//! - The socket is bound under a temporary name, made 0600, then renamed into place, so it is
//!   never reachable with a wider mode; its directory is created 0700 if missing. A stale
//!   socket (nobody answers) is replaced; a live one (another server) is an error.
//! - On SIGTERM/SIGINT: stop accepting, let in-flight calls finish (bounded by
//!   [`ServeOptions::shutdown_timeout`]; the blocking work of a call that is still running
//!   when the bound expires finishes before the process exits), remove the socket, return.
//!   Snapshots need nothing at shutdown: every change is on disk when its call answers.
//!
//! - Connections are bounded, idle ones closed and accept errors backed off ([`crate::conn`]).
//!
//! This module never touches the layout or the store: that is [`Snapshotter`]'s.

use crate::error::{Result, SnapError};
use crate::service::Service;
use crate::snapshotter::Snapshotter;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// How to serve.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// The socket path (containerd's `[proxy_plugins.NAME] address`).
    pub socket: PathBuf,
    /// How long in-flight calls may take after SIGTERM.
    pub shutdown_timeout: Duration,
    /// Connections served at once (more wait in the socket's backlog); capped so that they
    /// fit in the open-file limit ([`ovlink_fs::fdlimit::connection_limit`]).
    pub max_connections: usize,
    /// A connection with no call running for this long is closed.
    pub idle_timeout: Duration,
}

impl ServeOptions {
    /// The defaults on `socket`: 1,000 connections, closed after 10 minutes without a call,
    /// 30 s for in-flight calls after SIGTERM.
    pub fn new(socket: PathBuf) -> ServeOptions {
        ServeOptions {
            socket,
            shutdown_timeout: Duration::from_secs(30),
            max_connections: 1000,
            idle_timeout: Duration::from_secs(600),
        }
    }
}

/// The default socket.
pub const DEFAULT_SOCKET: &str = "/run/ovlink/snapshotter.sock";

/// The snapshotter's state directory when `--root` is not given: not the command line's
/// `/var/lib/ovlink`, since a home has one owner (the snapshotter removes at its start every
/// layer no snapshot of its names).
pub const DEFAULT_ROOT: &str = "/var/lib/ovlink-snapshotter";

/// The root to serve: the one given, else [`DEFAULT_ROOT`].
pub fn root_or_default(given: Option<&Path>) -> std::path::PathBuf {
    given.map_or_else(|| DEFAULT_ROOT.into(), Path::to_path_buf)
}

fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> SnapError {
    let path = path.to_path_buf();
    move |source| SnapError::Io { op, path, source }
}

/// Binds the socket as the module docs say.
fn bind(socket: &Path) -> Result<tokio::net::UnixListener> {
    let dir = socket
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io("create the socket directory", dir))?;
    }
    if let Ok(md) = std::fs::symlink_metadata(socket) {
        if !md.file_type().is_socket() {
            return Err(SnapError::Io {
                op: "replace (it is not a socket)",
                path: socket.to_path_buf(),
                source: std::io::Error::from(std::io::ErrorKind::AlreadyExists),
            });
        }
        if std::os::unix::net::UnixStream::connect(socket).is_ok() {
            return Err(SnapError::Io {
                op: "listen on (another server answers there)",
                path: socket.to_path_buf(),
                source: std::io::Error::from(std::io::ErrorKind::AddrInUse),
            });
        }
    }
    let name = socket
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "snapshotter.sock".into());
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let l = std::os::unix::net::UnixListener::bind(&tmp).map_err(io("listen on", &tmp))?;
    let done = std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))
        .map_err(io("change mode of", &tmp))
        .and_then(|()| std::fs::rename(&tmp, socket).map_err(io("rename into place", socket)))
        .and_then(|()| l.set_nonblocking(true).map_err(io("listen on", socket)))
        .and_then(|()| tokio::net::UnixListener::from_std(l).map_err(io("listen on", socket)));
    if done.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    done
}

/// Serves `snap` until SIGTERM or SIGINT. `ready` is called once the socket accepts calls.
pub fn serve(snap: Arc<Snapshotter>, opts: &ServeOptions, ready: impl FnOnce(&Path)) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(io("start the runtime for", &opts.socket))?;
    let res = rt.block_on(async {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term =
            signal(SignalKind::terminate()).map_err(io("handle SIGTERM for", &opts.socket))?;
        let mut int =
            signal(SignalKind::interrupt()).map_err(io("handle SIGINT for", &opts.socket))?;
        let listener = bind(&opts.socket)?;
        ready(&opts.socket);
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let mut stop_wait = stop_rx.clone();
        let (max, capped) = ovlink_fs::fdlimit::connection_limit(opts.max_connections);
        if let Some(c) = capped {
            eprintln!("ovlink snapshotter: {c}");
        }
        let incoming = crate::conn::incoming(listener, opts.socket.clone(), max, opts.idle_timeout);
        let server = tonic::transport::Server::builder()
            .add_service(Service::new(snap).server())
            .serve_with_incoming_shutdown(incoming, async move {
                let mut rx = stop_rx;
                let _ = rx.wait_for(|s| *s).await;
            });
        tokio::pin!(server);
        let deadline = async {
            let _ = stop_wait.wait_for(|s| *s).await;
            tokio::time::sleep(opts.shutdown_timeout).await;
        };
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                r = &mut server => {
                    return r.map_err(|e| SnapError::Io {
                        op: "serve on",
                        path: opts.socket.clone(),
                        source: std::io::Error::other(e),
                    });
                }
                _ = term.recv() => { let _ = stop_tx.send(true); }
                _ = int.recv() => { let _ = stop_tx.send(true); }
                () = &mut deadline => {
                    eprintln!(
                        "ovlink snapshotter: calls still running after {:?}; exiting anyway",
                        opts.shutdown_timeout
                    );
                    return Ok(());
                }
            }
        }
    });
    let _ = std::fs::remove_file(&opts.socket);
    res
}
