//! The ApplyDiff journal: one file `<home>/.ovlink-apply.<id>` per ApplyDiff in flight, created
//! before the driver starts, `flock`ed for as long as the apply runs, removed when it ends
//! (success or failure alike: dockerd gets the answer).
//!
//! A file whose lock is free belongs to an ApplyDiff whose server died before answering (the
//! plugin was killed during `docker load`). dockerd only ever removes such a layer (its
//! `Register` removes the layer when ApplyDiff fails), but its Remove failed while the plugin
//! was down; [`interrupted`] finds them so the server removes the layers at its next start.
//!
//! The file carries, in an xattr ([`TREES_XATTR`]), the inodes of the layer's trees (`root/`
//! of the legacy layout, `diff/` of overlay2) when the apply began. Every apply replaces its
//! tree by a rename, so a tree whose inode changed means the apply finished: such a layer is
//! kept ([`Interrupted::completed`]), never removed. That closes the power-loss window of the
//! unlink: the unlink after success is not synced (a cut can bring the file back), and a
//! layer dockerd registered must not be removed for it. The price is the other way round: an
//! apply that finished but whose answer never reached dockerd leaves its layer (a leak that
//! `ovlink layer ls` shows, never a loss).
//!
//! No `fsync` here: the file's name (and its xattr, metadata of the same inode) reach the disk
//! with the apply's own commit (the driver's `fsync` of the layer directory after its rename).
//! On a filesystem whose metadata journal commits in order (ext4, xfs: the driver's `files`
//! sync mode rests on it too) nothing of the apply is on disk without the journal file, which
//! comes first; elsewhere a power cut during the apply can at worst leave an incomplete layer
//! without its journal file: a leak, not a loss (the layer never published a tree).
//!
//! This module only creates, locks and deletes its own `.ovlink-apply.*` files in the home; it
//! never touches a layer (the server removes layers through the driver).

use ovlink_fs::lock::FileLock;
use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;
use std::path::{Path, PathBuf};

/// Prefix of the journal files in the home.
pub const PREFIX: &str = ".ovlink-apply.";

/// The xattr of a journal file recording the layer's trees when its apply began.
pub const TREES_XATTR: &str = "user.ovlink.trees";

/// The trees an apply replaces by a rename: `root/` (legacy layout), `diff/` (overlay2).
const TREES: [&str; 2] = ["root", "diff"];

/// `root=<inode|-> diff=<inode|->` of layer `id` now.
fn trees(home: &Path, id: &str) -> String {
    TREES
        .iter()
        .map(|t| {
            let ino = rustix::fs::lstat(home.join(id).join(t))
                .map(|st| st.st_ino.to_string())
                .unwrap_or_else(|_| "-".to_string());
            format!("{t}={ino}")
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// An ApplyDiff in flight: its journal file, locked. Dropping it deletes the file.
#[derive(Debug)]
pub struct ApplyMark {
    path: PathBuf,
    _lock: FileLock,
}

impl Drop for ApplyMark {
    fn drop(&mut self) {
        // Unlink first, then the lock goes with the fd: nobody can see a free, present file.
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Journals an ApplyDiff of layer `id` (already validated) in `home`.
pub fn begin(home: &Path, id: &str) -> std::io::Result<ApplyMark> {
    let path = home.join(format!("{PREFIX}{id}"));
    let fd = rustix::fs::open(
        &path,
        OFlags::RDWR | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )
    .map_err(|e| annotate("create", &path, e))?;
    let lock = FileLock::try_lock(fd, &path)
        .map_err(io_of)?
        .ok_or_else(|| annotate("lock", &path, Errno::WOULDBLOCK))?;
    let mark = ApplyMark { path, _lock: lock };
    rustix::fs::fsetxattr(
        mark._lock.fd(),
        TREES_XATTR,
        trees(home, id).as_bytes(),
        rustix::fs::XattrFlags::empty(),
    )
    .map_err(|e| annotate("record the trees in", &mark.path, e))?;
    Ok(mark)
}

/// One interrupted ApplyDiff: the layer id and its journal file, locked by the caller now.
#[derive(Debug)]
pub struct Interrupted {
    /// The layer whose ApplyDiff never answered.
    pub id: String,
    mark: ApplyMark,
    /// The apply had replaced the layer's tree (see the module doc): keep the layer.
    pub completed: bool,
}

impl Interrupted {
    /// Deletes the journal file (after the layer is removed).
    pub fn done(self) {
        drop(self.mark);
    }

    /// The journal file.
    pub fn path(&self) -> &Path {
        &self.mark.path
    }
}

/// The journal files in `home` whose owner is gone (their lock was free; it is held now).
pub fn interrupted(home: &Path) -> std::io::Result<Vec<Interrupted>> {
    let mut out = Vec::new();
    let rd = match std::fs::read_dir(home) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for ent in rd {
        let ent = ent?;
        let name = ent.file_name();
        let Some(id) = name.to_str().and_then(|n| n.strip_prefix(PREFIX)) else {
            continue;
        };
        let path = ent.path();
        let fd = match rustix::fs::open(
            &path,
            OFlags::RDWR | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => continue,
            Err(e) => return Err(annotate("open", &path, e)),
        };
        let Some(lock) = FileLock::try_lock(fd, &path).map_err(io_of)? else {
            continue; // an apply in flight
        };
        let mut buf = [0u8; 256];
        let recorded = match rustix::fs::fgetxattr(lock.fd(), TREES_XATTR, &mut buf) {
            Ok(n) => std::str::from_utf8(&buf[..n]).ok().map(str::to_string),
            Err(_) => None, // an older plugin's file, or the cut came before the xattr
        };
        let completed = recorded.is_some_and(|r| replaced(&r, &trees(home, id)));
        out.push(Interrupted {
            completed,
            id: id.to_string(),
            mark: ApplyMark { path, _lock: lock },
        });
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(out)
}

/// A lock error as the `io::Error` this module returns (its kind kept, the path in its message).
fn io_of(e: ovlink_fs::FsError) -> std::io::Error {
    let kind = e.raw_os_error().map_or(std::io::ErrorKind::Other, |n| {
        std::io::Error::from_raw_os_error(n).kind()
    });
    std::io::Error::new(kind, e)
}

/// Whether a tree recorded in `before` is now present as another inode (`now`, same form).
fn replaced(before: &str, now: &str) -> bool {
    before.split(' ').zip(now.split(' ')).any(|(b, n)| {
        let (Some((bt, bi)), Some((nt, ni))) = (b.split_once('='), n.split_once('=')) else {
            return false;
        };
        bt == nt && ni != "-" && ni != bi
    })
}

fn annotate(op: &str, path: &Path, e: Errno) -> std::io::Error {
    std::io::Error::new(
        std::io::Error::from(e).kind(),
        format!("cannot {op} {}: {e}", path.display()),
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_live_mark_is_not_interrupted_a_dropped_one_is_gone() {
        let t = tempfile::tempdir().unwrap();
        let m = begin(t.path(), "abc").unwrap();
        assert!(t.path().join(".ovlink-apply.abc").is_file());
        assert!(interrupted(t.path()).unwrap().is_empty(), "held by us");
        drop(m);
        assert!(!t.path().join(".ovlink-apply.abc").exists());
        // A file left by a dead owner (no lock) is interrupted.
        std::fs::write(t.path().join(".ovlink-apply.dead"), b"").unwrap();
        std::fs::write(t.path().join("other"), b"").unwrap();
        let v = interrupted(t.path()).unwrap();
        assert_eq!(v.len(), 1);
        assert_eq!(v[0].id, "dead");
        assert!(!v[0].completed, "no record: not completed");
        v.into_iter().for_each(Interrupted::done);
        assert!(!t.path().join(".ovlink-apply.dead").exists());
        assert!(t.path().join("other").exists());
    }

    /// A layer whose tree was replaced after its mark was taken is completed; one whose tree
    /// is the same, or still missing, is not.
    #[test]
    fn a_replaced_tree_marks_the_apply_completed() {
        let t = tempfile::tempdir().unwrap();
        let h = t.path();
        for id in ["same", "new", "none", "gone"] {
            std::fs::create_dir(h.join(id)).unwrap();
        }
        std::fs::create_dir(h.join("same/root")).unwrap();
        std::fs::create_dir(h.join("new/root")).unwrap();
        std::fs::create_dir(h.join("gone/diff")).unwrap();
        let marks: Vec<_> = ["same", "new", "none", "gone"]
            .iter()
            .map(|id| begin(h, id).unwrap())
            .collect();
        // "new": root/ replaced by a rename (the apply's publish); "none": a container layer
        // that got its root/; "gone": diff/ removed (not a finished apply).
        std::fs::create_dir(h.join("new/tmproot")).unwrap();
        std::fs::remove_dir(h.join("new/root")).unwrap();
        std::fs::rename(h.join("new/tmproot"), h.join("new/root")).unwrap();
        std::fs::create_dir(h.join("none/root")).unwrap();
        std::fs::remove_dir(h.join("gone/diff")).unwrap();
        // The server died: the files stay, their locks are free.
        for m in marks {
            rustix::fs::flock(m._lock.fd(), rustix::fs::FlockOperation::Unlock).unwrap();
            std::mem::forget(m);
        }
        let v = interrupted(h).unwrap();
        let got: Vec<_> = v.iter().map(|i| (i.id.as_str(), i.completed)).collect();
        assert_eq!(
            got,
            [
                ("gone", false),
                ("new", true),
                ("none", true),
                ("same", false)
            ]
        );
    }

    #[test]
    fn replaced_compares_tree_by_tree() {
        for (before, now, want) in [
            ("root=1 diff=-", "root=1 diff=-", false),
            ("root=1 diff=-", "root=2 diff=-", true),
            ("root=- diff=-", "root=5 diff=-", true),
            ("root=1 diff=-", "root=- diff=-", false),
            ("root=- diff=3", "root=- diff=4", true),
            ("garbage", "root=1 diff=-", false),
        ] {
            assert_eq!(replaced(before, now), want, "{before} -> {now}");
        }
    }
}
