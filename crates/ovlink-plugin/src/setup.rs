//! What `plugin serve` settles before the server starts: the plugin name (one path
//! component), the socket it implies, the Init record beside it, and how many connections
//! the open-file limit leaves room for (the soft limit is raised to the hard one first). It
//! owns this process setup only; it never binds the socket and never opens a driver.

use crate::{default_init_record, default_socket, PluginError, ServerOptions};
use std::path::PathBuf;
use std::time::Duration;

/// What `plugin serve` was asked for.
#[derive(Debug, Clone)]
pub struct ServeRequest {
    /// The plugin's name (dockerd's `--storage-driver`, the socket's name).
    pub name: String,
    /// The socket path (`None`: [`default_socket`] of the name).
    pub socket: Option<PathBuf>,
    /// How long shutdown waits for in-flight requests.
    pub shutdown_timeout: Duration,
    /// [`ServerOptions::header_timeout`] (at least a second).
    pub header_timeout: Duration,
    /// [`ServerOptions::body_idle_timeout`] (at least a second).
    pub body_idle_timeout: Duration,
    /// Connections wanted at once.
    pub max_connections: usize,
}

/// The setup a server runs with.
#[derive(Debug, Clone)]
pub struct ServeSetup {
    /// The socket to bind.
    pub socket: PathBuf,
    /// The server's options (the connection limit as the open-file limit allows).
    pub options: ServerOptions,
    /// Set when the open-file limit capped the connections asked for.
    pub capped: Option<Capped>,
}

pub use ovlink_fs::fdlimit::Capped;

/// Checks the name, derives the socket and the Init record, and raises the open-file limit.
pub fn prepare(r: &ServeRequest) -> Result<ServeSetup, PluginError> {
    check_name(&r.name)?;
    let socket = r.socket.clone().unwrap_or_else(|| default_socket(&r.name));
    let (max_connections, capped) = ovlink_fs::fdlimit::connection_limit(r.max_connections);
    Ok(ServeSetup {
        options: ServerOptions {
            shutdown_timeout: r.shutdown_timeout,
            init_record: Some(default_init_record(&socket)),
            header_timeout: r.header_timeout.max(Duration::from_secs(1)),
            body_idle_timeout: r.body_idle_timeout.max(Duration::from_secs(1)),
            max_connections,
        },
        socket,
        capped,
    })
}

/// A plugin name is one path component (it becomes a socket name and dockerd's home dir).
pub fn check_name(name: &str) -> Result<(), PluginError> {
    let ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && !name.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(PluginError::InvalidName {
            name: name.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_is_one_plain_path_component() {
        for ok in ["ovlink", "ov-link_2.test"] {
            assert!(check_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".hidden", "a/b", "..", "a b", "ü"] {
            let e = check_name(bad).unwrap_err();
            assert!(e.to_string().contains("invalid plugin name"), "{bad}: {e}");
        }
    }

    #[test]
    fn prepare_derives_the_socket_and_the_init_record() {
        let s = prepare(&ServeRequest {
            name: "x".into(),
            socket: None,
            shutdown_timeout: Duration::from_secs(3),
            header_timeout: Duration::ZERO,
            body_idle_timeout: Duration::from_secs(5),
            max_connections: 4,
        })
        .unwrap();
        assert_eq!(s.socket, PathBuf::from("/run/docker/plugins/x.sock"));
        assert_eq!(
            s.options.init_record,
            Some(PathBuf::from("/run/docker/plugins/x.init.json"))
        );
        assert_eq!(s.options.header_timeout, Duration::from_secs(1));
        assert_eq!(s.options.max_connections, 4);
        assert_eq!(s.capped, None);
    }
}
