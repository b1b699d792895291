//! Races against a concurrent writer in the tree being applied to (issue 11, item 3): an
//! apply through a container's `merged/` shares the tree with the container's processes,
//! which can swap an entry the applier just created for a symlink to a host file. Every
//! metadata call on a created entry must reach the inode the applier made, never the host
//! file. Runs on a real overlay mount (root only; fails loudly otherwise).
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use common::Layer;
use ovlink_tar::{apply_layer, ApplyOptions};
use tar::EntryType;

/// An overlay mount made by the test, unmounted on drop.
struct Overlay {
    merged: PathBuf,
}

impl Overlay {
    fn new(dir: &Path) -> Overlay {
        for d in ["lower", "upper", "work", "merged"] {
            std::fs::create_dir(dir.join(d)).unwrap();
        }
        let opts = format!(
            "lowerdir={},upperdir={},workdir={}",
            dir.join("lower").display(),
            dir.join("upper").display(),
            dir.join("work").display()
        );
        let merged = dir.join("merged");
        rustix::mount::mount(
            "overlay",
            &merged,
            "overlay",
            rustix::mount::MountFlags::empty(),
            Some(std::ffi::CString::new(opts).unwrap().as_c_str()),
        )
        .expect("privileged test: mounting overlay needs root");
        Overlay { merged }
    }
}

impl Drop for Overlay {
    fn drop(&mut self) {
        let _ = rustix::mount::unmount(&self.merged, rustix::mount::UnmountFlags::DETACH);
    }
}

fn sentinel_state(p: &Path) -> (u32, u32, u32, i64, Vec<std::ffi::OsString>) {
    let md = std::fs::symlink_metadata(p).unwrap();
    let mut names = Vec::new();
    let mut buf = vec![0u8; 4096];
    let n = rustix::fs::llistxattr(p, &mut buf[..]).unwrap();
    for s in buf[..n].split(|b| *b == 0).filter(|s| !s.is_empty()) {
        names.push(std::ffi::OsString::from(
            String::from_utf8_lossy(s).into_owned(),
        ));
    }
    (md.mode(), md.uid(), md.gid(), md.mtime(), names)
}

const NODES: usize = 400;

/// A tar of fifos and character devices with hostile metadata (setuid mode, a foreign owner,
/// xattrs, an old mtime): what a swap would write onto the host file.
fn node_tar() -> Vec<u8> {
    let mut l = Layer::new();
    for i in 0..NODES {
        l.pax(&[
            ("SCHILY.xattr.trusted.pwn1", b"1"),
            ("SCHILY.xattr.trusted.pwn2", b"2"),
            ("SCHILY.xattr.trusted.pwn3", b"3"),
        ]);
        let (kind, name) = if i % 2 == 0 {
            (EntryType::Fifo, format!("n{i}"))
        } else {
            (EntryType::Char, format!("n{i}"))
        };
        l.raw(kind, name.as_bytes(), None, b"", |h| {
            h.set_mode(0o6777);
            h.set_uid(4242);
            h.set_gid(4242);
            h.set_mtime(1000);
            h.set_device_major(1).unwrap();
            h.set_device_minor(3).unwrap();
        });
    }
    l.bytes()
}

/// Swaps each new node in `merged` for a symlink to `target` (rename over it), as fast as it
/// can, until `stop`; counts the swaps.
fn swapper(merged: PathBuf, target: PathBuf, stop: Arc<AtomicBool>, swaps: Arc<AtomicU64>) {
    let tmp = merged.join(".swap");
    let mut next = 0usize;
    while !stop.load(Ordering::Relaxed) && next < NODES {
        let name = merged.join(format!("n{next}"));
        match std::fs::symlink_metadata(&name) {
            Ok(md) if md.file_type().is_fifo() || md.file_type().is_char_device() => {
                let _ = std::fs::remove_file(&tmp);
                if std::os::unix::fs::symlink(&target, &tmp).is_ok()
                    && std::fs::rename(&tmp, &name).is_ok()
                {
                    swaps.fetch_add(1, Ordering::Relaxed);
                }
                next += 1;
            }
            Ok(_) => next += 1,
            Err(_) => {
                // Not there yet: look one further too, the applier may be ahead of us.
                let ahead = merged.join(format!("n{}", next + 1));
                if std::fs::symlink_metadata(ahead).is_ok() {
                    next += 1;
                }
            }
        }
    }
}

/// Item 3: fifos and device nodes swapped for symlinks to a host file while the apply runs
/// through `merged/`: the host file's mode, owner, times and xattrs never change.
#[test]
fn privileged_node_swapped_for_symlink_never_touches_the_host_file() {
    let td = tempfile::tempdir().unwrap();
    let ov = Overlay::new(td.path());
    let sentinel = td.path().join("host-secret");
    std::fs::write(&sentinel, b"host").unwrap();
    std::fs::set_permissions(&sentinel, std::fs::Permissions::from_mode(0o600)).unwrap();
    let before = sentinel_state(&sentinel);
    let tar = node_tar();
    let swaps = Arc::new(AtomicU64::new(0));
    let mut refused = 0;
    for round in 0..25 {
        // A fresh tree for each round (the previous round's entries go).
        for e in std::fs::read_dir(&ov.merged).unwrap() {
            let p = e.unwrap().path();
            let _ = std::fs::remove_file(&p);
        }
        let stop = Arc::new(AtomicBool::new(false));
        let t = {
            let (m, s, st, sw) = (
                ov.merged.clone(),
                sentinel.clone(),
                stop.clone(),
                swaps.clone(),
            );
            std::thread::spawn(move || swapper(m, s, st, sw))
        };
        let fd = ovlink_fs::at::open_dir(&ov.merged).unwrap();
        let mut r: &[u8] = &tar;
        let res = apply_layer(
            rustix::fd::AsFd::as_fd(&fd),
            &ov.merged,
            &mut r,
            &ApplyOptions::default(),
        );
        stop.store(true, Ordering::Relaxed);
        t.join().unwrap();
        if let Err(e) = &res {
            refused += 1;
            let msg = format!("{e}");
            assert!(msg.contains("tar entry"), "round {round}: {msg}");
        }
        assert_eq!(
            sentinel_state(&sentinel),
            before,
            "round {round}: the host file's metadata changed through a swapped node ({} swaps so far)",
            swaps.load(Ordering::Relaxed)
        );
        assert_eq!(std::fs::read(&sentinel).unwrap(), b"host");
    }
    let swaps = swaps.load(Ordering::Relaxed);
    eprintln!("{swaps} swaps over 25 rounds, {refused} applies refused");
    assert!(
        swaps > 0,
        "the swapper never swapped a node: the race was not exercised"
    );
}
