//! List under a large store (issue 24, item 7): List decoded every record at once, so 270 MiB
//! of labels and a few slow readers took the server to 4.6 GiB. It streams from one read
//! transaction now, a few batches ahead of the client. Its own test binary: it measures the
//! process's peak resident memory, which tests running beside it would disturb.
#![allow(missing_docs, clippy::unwrap_used)]

use ovlink_driver::Layout;
use ovlink_snapshotter::proto::snapshots as pb;
use ovlink_snapshotter::{Config, ServeOptions, Snapshotter};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// A field of /proc/self/status, in KiB.
fn status_kib(field: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[test]
fn list_streams_a_large_store_in_bounded_memory() {
    assert!(
        rustix::process::geteuid().is_root(),
        "the snapshotter's homes need root (scripts/test.sh)"
    );
    let base = std::env::var_os("OVLINK_TEST_TMP")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let t = tempfile::Builder::new()
        .prefix("ovlink-snap-list-")
        .tempdir_in(base)
        .unwrap();
    let (snap, _) = Snapshotter::open(&Config {
        root: t.path().join("root"),
        layout: Layout::Overlay,
        sync: Some(ovlink_driver::SyncMode::None),
        diff: Default::default(),
        symlinks: None,
    })
    .unwrap();
    // 1,500 snapshots with 40 KB of labels each: 60 MB of labels in the store.
    let records = 1500;
    for i in 0..records {
        let labels: BTreeMap<String, String> = (0..10)
            .map(|j| (format!("l{j}"), format!("{i:04}{}", "x".repeat(3990))))
            .collect();
        snap.prepare(&format!("s{i:05}"), "", labels).unwrap();
    }
    let socket = t.path().join("snap.sock");
    let opts = ServeOptions::new(socket.clone());
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let server = std::thread::spawn(move || {
        ovlink_snapshotter::serve(Arc::new(snap), &opts, move |_| {
            let _ = ready_tx.send(());
        })
    });
    ready_rx.recv_timeout(Duration::from_secs(10)).unwrap();

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // The peak from here on: a List that decodes the store whole holds all 60 MB at once
    // (twice: the records, then the messages).
    std::fs::write("/proc/self/clear_refs", "5").unwrap();
    let before = status_kib("VmHWM:");
    let (seen, batches) = rt.block_on(async {
        let sock = socket.clone();
        let ch = tonic::transport::Endpoint::from_static("http://ovlink.invalid")
            .connect_with_connector(tower::service_fn(move |_| {
                let sock = sock.clone();
                async move {
                    Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                        tokio::net::UnixStream::connect(sock).await?,
                    ))
                }
            }))
            .await
            .unwrap();
        let mut c =
            pb::snapshots_client::SnapshotsClient::new(ch).max_decoding_message_size(16 << 20);
        let mut stream = c
            .list(pb::ListSnapshotsRequest {
                snapshotter: "ovlink".into(),
                filters: vec![],
            })
            .await
            .unwrap()
            .into_inner();
        let (mut seen, mut batches) = (0usize, 0usize);
        while let Some(m) = stream.message().await.unwrap() {
            assert!(m.info.len() <= 100, "a batch of {}", m.info.len());
            seen += m.info.len();
            batches += 1;
            // A slow reader.
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        (seen, batches)
    });
    let grown_mib = status_kib("VmHWM:").saturating_sub(before) / 1024;
    eprintln!("List of {seen} snapshots in {batches} messages: peak memory grew {grown_mib} MiB");
    assert_eq!(seen, records);
    assert!(
        grown_mib < 40,
        "List grew the peak memory by {grown_mib} MiB for 60 MB of labels"
    );

    // The client's connection closes with its runtime (the server's shutdown waits for it).
    drop(rt);
    rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::TERM)
        .unwrap();
    server.join().unwrap().unwrap();
}
