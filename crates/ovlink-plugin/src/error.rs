//! The plugin's error type: socket, runtime, signal, shutdown and client failures, each naming
//! the path or operation. Errors of single protocol calls are not here: they go back to dockerd
//! as `{"Err": "..."}` and never stop the server.

use std::path::PathBuf;

/// Why the plugin server (or the client) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PluginError {
    /// The directory of the socket could not be created.
    #[error("cannot create the socket directory {}", path.display())]
    SocketDir {
        /// The directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Something already answers on the socket.
    #[error("another server is already listening on {} (stop it, or choose --name/--socket)", path.display())]
    AlreadyServing {
        /// The socket path.
        path: PathBuf,
    },
    /// A leftover socket file could not be removed.
    #[error("cannot remove the stale socket {}", path.display())]
    StaleSocket {
        /// The socket path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Binding or configuring the listening socket failed.
    #[error("cannot {op} the socket {}", path.display())]
    Socket {
        /// What was done (`bind`, `change mode of`, `accept on`).
        op: &'static str,
        /// The socket path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The tokio runtime or a signal handler could not be set up.
    #[error("cannot set up {what}")]
    Setup {
        /// What (`the async runtime`, `the SIGTERM handler`).
        what: &'static str,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The client could not connect to the socket.
    #[error("cannot connect to {}", path.display())]
    Connect {
        /// The socket path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// An HTTP exchange of the client failed.
    #[error("HTTP call {method} failed")]
    Http {
        /// The protocol method (`/GraphDriver.Get`).
        method: String,
        /// The hyper error.
        #[source]
        source: hyper::Error,
    },
    /// The client could not build a request.
    #[error("invalid request for {method}: {reason}")]
    Request {
        /// The protocol method.
        method: String,
        /// Why.
        reason: String,
    },
    /// A plugin name that is not one plain path component.
    #[error("invalid plugin name {name:?}: use letters, digits, '-', '_' and '.'")]
    InvalidName {
        /// The name given.
        name: String,
    },
}
