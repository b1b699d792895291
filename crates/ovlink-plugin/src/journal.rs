//! The ApplyDiff journal: one file `<home>/.ovlink-apply.<id>` per ApplyDiff in flight, created
//! (and its directory entry synced) before the driver starts, `flock`ed for as long as the
//! apply runs, removed when it ends (success or failure alike: dockerd gets the answer).
//!
//! A file whose lock is free belongs to an ApplyDiff whose server died before answering (the
//! plugin was killed during `docker load`). dockerd only ever removes such a layer (its
//! `Register` removes the layer when ApplyDiff fails), but its Remove failed while the plugin
//! was down; [`interrupted`] finds them so the server removes the layers at its next start.
//!
//! This module only creates, locks and deletes its own `.ovlink-apply.*` files in the home; it
//! never touches a layer (the server removes layers through the driver).

use ovlink_fs::lock::FileLock;
use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;
use std::path::{Path, PathBuf};

/// Prefix of the journal files in the home.
pub const PREFIX: &str = ".ovlink-apply.";

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
    // The name must be on disk before the layer changes: a crash of the machine must leave it.
    let dir = rustix::fs::open(
        home,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| annotate("open", home, e))?;
    rustix::fs::fsync(&dir).map_err(|e| annotate("fsync", home, e))?;
    Ok(mark)
}

/// One interrupted ApplyDiff: the layer id and its journal file, locked by the caller now.
#[derive(Debug)]
pub struct Interrupted {
    /// The layer whose ApplyDiff never answered.
    pub id: String,
    mark: ApplyMark,
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
        out.push(Interrupted {
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
        v.into_iter().for_each(Interrupted::done);
        assert!(!t.path().join(".ovlink-apply.dead").exists());
        assert!(t.path().join("other").exists());
    }
}
