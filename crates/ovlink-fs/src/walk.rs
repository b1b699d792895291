//! The tree walk: every entry below a directory, fd-relative and without following symlinks,
//! recording each inode of the walked device once with its bytes on disk, and (for a layer's
//! content tree) counting entries by type, whiteouts, opaque directories and link counts.
//!
//! A directory on another device (a mounted `merged/`) is neither counted nor entered; it is
//! listed in [`Walk::skipped_mounts`]. A tree deeper than [`MAX_DEPTH`] is refused, and the
//! recursive walks of the workspace run on their own thread ([`on_walk_stack`]) so that no
//! caller's stack decides how deep a tree may be. This module only reads.
//!
//! It lives here, below the layouts, so that `ovlink report` (which attributes every inode of a
//! home to the first layer holding it) and a layout's own `usage` (what one layer adds over its
//! parent, [`added`]) count with one walk and agree to the inode.

use crate::at::open_dir_at;
use crate::error::Context;
use rustix::fd::{AsFd, BorrowedFd};
use rustix::fs::{AtFlags, Dir, FileType};
use rustix::io::Errno;
use serde::Serialize;
use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Entries of a tree by type (hardlinked names count once each: these are names, not inodes).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct EntryCounts {
    /// Directories.
    pub dirs: u64,
    /// Regular files.
    pub files: u64,
    /// Symbolic links.
    pub symlinks: u64,
    /// Character devices other than whiteouts.
    pub char_devices: u64,
    /// Block devices.
    pub block_devices: u64,
    /// Named pipes.
    pub fifos: u64,
    /// Sockets.
    pub sockets: u64,
    /// Overlay whiteouts (character devices 0/0).
    pub whiteouts: u64,
    /// Directories marked `trusted.overlay.opaque=y` (also counted in `dirs`).
    pub opaque_dirs: u64,
}

impl EntryCounts {
    /// All entries (opaque dirs are already among `dirs`).
    pub fn total(&self) -> u64 {
        self.dirs
            + self.files
            + self.symlinks
            + self.char_devices
            + self.block_devices
            + self.fifos
            + self.sockets
            + self.whiteouts
    }

    /// Adds `o` to `self`.
    pub fn add(&mut self, o: &EntryCounts) {
        self.dirs += o.dirs;
        self.files += o.files;
        self.symlinks += o.symlinks;
        self.char_devices += o.char_devices;
        self.block_devices += o.block_devices;
        self.fifos += o.fifos;
        self.sockets += o.sockets;
        self.whiteouts += o.whiteouts;
        self.opaque_dirs += o.opaque_dirs;
    }
}

/// Upper bounds of the link-count histogram buckets (the last is open-ended).
pub const LINK_BUCKETS: [u64; 13] = [1, 2, 4, 8, 16, 32, 64, 128, 256, 1024, 4096, 16384, 65536];

/// One bucket of the link-count histogram: non-directory entries with `min..=max` links.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Bucket {
    /// Smallest link count of the bucket.
    pub min: u64,
    /// Largest link count of the bucket (`u64::MAX` for the last).
    pub max: u64,
    /// Entries in it.
    pub count: u64,
}

/// What a walk found.
#[derive(Debug, Default, Clone)]
pub struct Walk {
    /// Inode number -> bytes it occupies (`st_blocks * 512`), for the walked device.
    pub inodes: HashMap<u64, u64>,
    /// Entries by type (only in counted walks).
    pub entries: EntryCounts,
    /// Non-directory entries per histogram bucket (index into [`LINK_BUCKETS`], plus one).
    pub link_buckets: [u64; LINK_BUCKETS.len() + 1],
    /// The non-directory entry with the most links: (path, links).
    pub max_links: Option<(PathBuf, u64)>,
    /// Directories on another device that were not entered.
    pub skipped_mounts: Vec<PathBuf>,
}

impl Walk {
    /// Merges `o` into `self`.
    pub fn merge(&mut self, o: Walk) {
        self.inodes.extend(o.inodes);
        self.entries.add(&o.entries);
        for (a, b) in self.link_buckets.iter_mut().zip(o.link_buckets) {
            *a += b;
        }
        if let Some((p, n)) = o.max_links {
            if self.max_links.as_ref().is_none_or(|(_, m)| n > *m) {
                self.max_links = Some((p, n));
            }
        }
        self.skipped_mounts.extend(o.skipped_mounts);
    }

    /// The non-empty histogram buckets.
    pub fn histogram(&self) -> Vec<Bucket> {
        let mut out = Vec::new();
        let mut lo = 1;
        for (i, &count) in self.link_buckets.iter().enumerate() {
            let hi = LINK_BUCKETS.get(i).copied().unwrap_or(u64::MAX);
            if count > 0 {
                out.push(Bucket {
                    min: lo,
                    max: hi,
                    count,
                });
            }
            lo = hi.saturating_add(1);
        }
        out
    }

    /// Total bytes of the inodes found.
    pub fn bytes(&self) -> u64 {
        self.inodes.values().sum()
    }

    fn bucket(nlink: u64) -> usize {
        LINK_BUCKETS
            .iter()
            .position(|&b| nlink <= b)
            .unwrap_or(LINK_BUCKETS.len())
    }
}

/// How many directories deep the tree walks go (this walk, the layer exporter's and the
/// plain-upper scan): deeper trees are refused with [`crate::FsError::TooDeep`]. Each level
/// costs a walk at most ~1.5 KiB of stack (a 4,096-level tree: 6 MiB), so every thread that
/// walks needs a stack of [`WALK_STACK`]; a container can build a deeper chain with `mkdir`
/// and `cd` (it crashed the snapshotter's 2 MiB tokio threads at ~1,500-3,000 levels).
pub const MAX_DEPTH: usize = 4096;

/// The stack size of the thread a walk runs on ([`on_walk_stack`]): room for [`MAX_DEPTH`].
pub const WALK_STACK: usize = 16 << 20;

thread_local! {
    /// True on a thread [`on_walk_stack`] started.
    static ON_WALK_STACK: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` (a recursive tree walk) on a thread of its own with a [`WALK_STACK`] stack and
/// waits for it, so that a walk down to [`MAX_DEPTH`] never depends on its caller's stack (a
/// tokio or rayon worker has 2 MiB). Falls back to the calling thread when no thread can be
/// started; a panic of the walk is the caller's again.
pub fn on_walk_stack<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    // Already on a walk thread (a scan that walks layer after layer): no thread per walk.
    if ON_WALK_STACK.with(|on| on.get()) {
        return f();
    }
    let mut f = Some(f);
    let r = std::thread::scope(|s| {
        let spawned = std::thread::Builder::new()
            .name("ovlink-walk".into())
            .stack_size(WALK_STACK)
            .spawn_scoped(s, || {
                ON_WALK_STACK.with(|on| on.set(true));
                f.take().map(|f| f())
            });
        spawned.map(|h| h.join())
    });
    match r {
        Ok(Ok(Some(v))) => v,
        Ok(Err(panic)) => std::panic::resume_unwind(panic),
        // No thread could be started (or it did not run f): run it here.
        _ => match f.take() {
            Some(f) => f(),
            None => unreachable!("the walk ran on its thread"),
        },
    }
}

/// Walks entry `name` of the open directory `parent` (and, if it is a directory, everything
/// below it), recording inodes on device `dev`. With `count`, entries are counted by type
/// and link counts collected. `shown` is the logical path of `name`.
pub fn walk(
    parent: BorrowedFd<'_>,
    name: &OsStr,
    shown: &Path,
    dev: u64,
    count: bool,
) -> crate::Result<Walk> {
    on_walk_stack(|| {
        let mut w = Walk::default();
        walk_into(parent, name, shown, dev, count, &mut w, 0)?;
        Ok(w)
    })
}

fn walk_into(
    parent: BorrowedFd<'_>,
    name: &OsStr,
    shown: &Path,
    dev: u64,
    count: bool,
    w: &mut Walk,
    depth: usize,
) -> crate::Result<()> {
    if depth > MAX_DEPTH {
        return Err(crate::FsError::TooDeep {
            path: shown.to_path_buf(),
            limit: MAX_DEPTH,
        });
    }
    let st = match rustix::fs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => st,
        // Removed while we walk (a layer being deleted): nothing to count.
        Err(Errno::NOENT) => return Ok(()),
        Err(e) => return Err(crate::FsError::io("stat", shown, e)),
    };
    let ft = FileType::from_raw_mode(st.st_mode);
    if st.st_dev != dev {
        w.skipped_mounts.push(shown.to_path_buf());
        return Ok(());
    }
    w.inodes
        .insert(st.st_ino, (st.st_blocks as u64).saturating_mul(512));
    if count {
        let e = &mut w.entries;
        match ft {
            FileType::Directory => e.dirs += 1,
            FileType::RegularFile => e.files += 1,
            FileType::Symlink => e.symlinks += 1,
            FileType::CharacterDevice if st.st_rdev == 0 => e.whiteouts += 1,
            FileType::CharacterDevice => e.char_devices += 1,
            FileType::BlockDevice => e.block_devices += 1,
            FileType::Fifo => e.fifos += 1,
            FileType::Socket => e.sockets += 1,
            FileType::Unknown => {}
        }
        if ft != FileType::Directory {
            let n = st.st_nlink as u64;
            w.link_buckets[Walk::bucket(n)] += 1;
            if w.max_links.as_ref().is_none_or(|(_, m)| n > *m) {
                w.max_links = Some((shown.to_path_buf(), n));
            }
        }
    }
    if ft != FileType::Directory {
        return Ok(());
    }
    let fd = match open_dir_at(parent, name, shown) {
        Ok(fd) => fd,
        Err(e) if e.raw_os_error() == Some(Errno::NOENT.raw_os_error()) => return Ok(()),
        Err(e) => return Err(e),
    };
    if count {
        let opaque = crate::xattr::get_fd(&fd, OsStr::new(crate::xattr::OVERLAY_OPAQUE), shown)?;
        if opaque.as_deref() == Some(b"y") {
            w.entries.opaque_dirs += 1;
        }
    }
    let mut names: Vec<OsString> = Vec::new();
    for ent in Dir::read_from(&fd).ctx("read directory", shown)? {
        let ent = ent.ctx("read directory", shown)?;
        let n = ent.file_name().to_bytes();
        if n != b"." && n != b".." {
            names.push(OsStr::from_bytes(n).to_os_string());
        }
    }
    for n in names {
        walk_into(fd.as_fd(), &n, &shown.join(&n), dev, count, w, depth + 1)?;
    }
    Ok(())
}

/// What a layer adds over its parent: the inodes of `layer` that `parent` does not hold, and
/// their bytes on disk. In both layouts a layer shares inodes only with its ancestors, and a
/// legacy image layer holds every ancestor inode it shares through its parent's tree, so this
/// equals the attribution `ovlink report` makes bottom-up over the whole home.
pub fn added(layer: &Walk, parent: Option<&Walk>) -> (u64, u64) {
    let mut inodes = 0;
    let mut bytes = 0;
    for (ino, b) in &layer.inodes {
        if parent.is_some_and(|p| p.inodes.contains_key(ino)) {
            continue;
        }
        inodes += 1;
        bytes += b;
    }
    (inodes, bytes)
}

/// The name ovlink shows for a file type (manifests, labs): `dir`, `file`, `symlink`, `char`,
/// `block`, `fifo`, `socket`, else `unknown`.
pub fn kind_name(t: std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if t.is_dir() {
        "dir"
    } else if t.is_file() {
        "file"
    } else if t.is_symlink() {
        "symlink"
    } else if t.is_char_device() {
        "char"
    } else if t.is_block_device() {
        "block"
    } else if t.is_fifo() {
        "fifo"
    } else if t.is_socket() {
        "socket"
    } else {
        "unknown"
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// `levels` nested directories `d` below `dir` (fd-relative: deeper than PATH_MAX).
    pub(crate) fn chain(dir: &Path, levels: usize) {
        let mut fd = crate::at::open_dir(dir).unwrap();
        for _ in 0..levels {
            rustix::fs::mkdirat(&fd, "d", rustix::fs::Mode::from_raw_mode(0o755)).unwrap();
            fd = crate::at::open_dir_at(&fd, "d", dir).unwrap();
        }
    }

    /// A walk started on a walk thread runs there (a scan of many layers starts one thread,
    /// not one per layer); from any other thread it gets its own.
    #[test]
    fn walks_nest_on_one_walk_thread() {
        let here = std::thread::current().id();
        let (outer, inner) = on_walk_stack(|| {
            (
                std::thread::current().id(),
                on_walk_stack(|| std::thread::current().id()),
            )
        });
        assert_ne!(outer, here);
        assert_eq!(inner, outer);
    }

    /// A walk does not depend on its caller's stack (this test thread has 2 MiB; a walk
    /// 1,600 deep used to need more), and a deeper tree than MAX_DEPTH is refused, not a
    /// crash.
    #[test]
    fn deep_trees_are_walked_or_refused_never_a_crash() {
        let t = tempfile::tempdir().unwrap();
        chain(&t.path().join(""), 1600);
        let root = crate::at::open_dir(t.path()).unwrap();
        let dev = rustix::fs::fstat(&root).unwrap().st_dev;
        let w = walk(
            root.as_fd(),
            OsStr::new("d"),
            &t.path().join("d"),
            dev,
            true,
        )
        .unwrap();
        assert_eq!(w.entries.dirs, 1600);
        let deep = tempfile::tempdir().unwrap();
        chain(deep.path(), MAX_DEPTH + 5);
        let root = crate::at::open_dir(deep.path()).unwrap();
        match walk(
            root.as_fd(),
            OsStr::new("d"),
            &deep.path().join("d"),
            dev,
            true,
        ) {
            Err(e @ crate::FsError::TooDeep { .. }) => {
                assert!(
                    e.to_string().contains("more than 4096 directories deep"),
                    "{e}"
                )
            }
            other => panic!("expected TooDeep, got {other:?}"),
        }
    }

    #[test]
    fn counts_names_and_inodes() {
        let d = tempfile::tempdir().unwrap();
        let t = d.path().join("t");
        std::fs::create_dir_all(t.join("a/b")).unwrap();
        std::fs::write(t.join("a/f"), b"x").unwrap();
        std::fs::hard_link(t.join("a/f"), t.join("a/b/g")).unwrap();
        std::os::unix::fs::symlink("f", t.join("a/l")).unwrap();
        let fd = crate::at::open_dir(d.path()).unwrap();
        let dev = rustix::fs::fstat(&fd).unwrap().st_dev;
        let w = walk(fd.as_fd(), OsStr::new("t"), &t, dev, true).unwrap();
        assert_eq!(w.entries.dirs, 3);
        assert_eq!(w.entries.files, 2);
        assert_eq!(w.entries.symlinks, 1);
        assert_eq!(w.inodes.len(), 5, "t, a, b, f=g, l");
        assert_eq!(w.max_links.as_ref().unwrap().1, 2);
        assert_eq!(
            w.histogram(),
            vec![
                Bucket {
                    min: 1,
                    max: 1,
                    count: 1
                },
                Bucket {
                    min: 2,
                    max: 2,
                    count: 2
                }
            ]
        );
    }
}
