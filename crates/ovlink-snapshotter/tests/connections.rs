//! The socket under load (issue 24, item 6): idle clients could hold connections for ever,
//! and with the process out of descriptors the accept loop retried at once (60-95% CPU) while
//! a new client's Stat timed out. Connections are bounded now, idle ones closed, and a new
//! client is served once idle ones have gone. Its own test binary: it serves in-process and
//! stops the server with SIGTERM to itself.
#![allow(missing_docs, clippy::unwrap_used)]

use ovlink_driver::Layout;
use ovlink_snapshotter::client::{Client, ClientError};
use ovlink_snapshotter::{Config, ServeOptions, Snapshotter};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Reads from `s` until EOF or error; true when the server closed it within `limit`.
fn closed_by_server(s: &mut std::os::unix::net::UnixStream, limit: Duration) -> bool {
    s.set_read_timeout(Some(limit)).unwrap();
    let mut buf = [0u8; 4096];
    let start = Instant::now();
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            // The server's HTTP/2 preface and settings; keep reading.
            Ok(_) if start.elapsed() < limit => continue,
            Ok(_) => return false,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

/// A Stat of `key` through a fresh client on `socket` (the crate's own), answered within
/// `limit`: its status code.
fn stat(socket: &Path, key: &str, limit: Duration) -> Option<tonic::Code> {
    let (tx, rx) = std::sync::mpsc::channel();
    let (socket, key) = (socket.to_path_buf(), key.to_string());
    std::thread::spawn(move || {
        let code = match Client::connect(&socket).map(|mut c| c.stat(&key)) {
            Ok(Ok(_)) => tonic::Code::Ok,
            Ok(Err(ClientError::Status { status, .. })) => status.code(),
            _ => tonic::Code::Unavailable,
        };
        let _ = tx.send(code);
    });
    rx.recv_timeout(limit).ok()
}

#[test]
fn idle_connections_are_closed_and_a_new_client_is_served() {
    assert!(
        rustix::process::geteuid().is_root(),
        "the snapshotter's homes need root (scripts/test.sh)"
    );
    let base = std::env::var_os("OVLINK_TEST_TMP")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let t = tempfile::Builder::new()
        .prefix("ovlink-snap-conn-")
        .tempdir_in(base)
        .unwrap();
    let (snap, _) = Snapshotter::open(&Config {
        root: t.path().join("root"),
        layout: Layout::Overlay,
        sync: None,
        diff: Default::default(),
        symlinks: None,
    })
    .unwrap();
    let socket = t.path().join("snap.sock");
    let opts = ServeOptions {
        max_connections: 4,
        idle_timeout: Duration::from_secs(1),
        shutdown_timeout: Duration::from_secs(5),
        ..ServeOptions::new(socket.clone())
    };
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let server = std::thread::spawn(move || {
        ovlink_snapshotter::serve(Arc::new(snap), &opts, move |_| {
            let _ = ready_tx.send(());
        })
    });
    ready_rx.recv_timeout(Duration::from_secs(10)).unwrap();

    // Twice the limit of clients that connect and never send a byte.
    let mut idle: Vec<_> = (0..8)
        .map(|_| std::os::unix::net::UnixStream::connect(&socket).unwrap())
        .collect();
    // A real client is still served: the idle ones are closed after a second each, in two
    // rounds of four, and its connection then gets a slot.
    let start = Instant::now();
    assert_eq!(
        stat(&socket, "no-such-snapshot", Duration::from_secs(20)),
        Some(tonic::Code::NotFound),
        "a new client was not served behind idle connections"
    );
    eprintln!("served after {:?}", start.elapsed());
    for (i, s) in idle.iter_mut().enumerate() {
        assert!(
            closed_by_server(s, Duration::from_secs(10)),
            "idle connection {i} was not closed"
        );
    }
    // And the next client is served at once.
    assert_eq!(
        stat(&socket, "still-none", Duration::from_secs(5)),
        Some(tonic::Code::NotFound)
    );

    rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::TERM)
        .unwrap();
    server.join().unwrap().unwrap();
    assert!(!socket.exists(), "the socket was left behind");
}
