//! Making the file contents an apply wrote durable, with as few journal commits as possible.
//!
//! Each regular file the applier writes is handed over (its fd, still open) right after its
//! last byte: its writeback starts at once (`sync_file_range(SYNC_FILE_RANGE_WRITE)`, Linux
//! 2.6.17; it does not wait) and the file is kept open read-only. At [`DataSync::finish`] (or when [`QUEUE`]
//! files are pending) every pending file's writeback is waited for first, then each one is
//! `fdatasync`ed. The first `fdatasync` commits the filesystem's journal holding the block
//! allocations and sizes of all of them (ext4 and xfs commit every pending transaction
//! together), so the others find their metadata committed and cost a cache flush at most:
//! one journal commit for the batch instead of one per file (a 100-file layer went from ~13
//! commits to 1, see `docs/benchmarks.md`). Durability does not rest on `sync_file_range`
//! (the man page is right that it makes no metadata durable): every file still gets its own
//! `fdatasync` before [`DataSync::finish`] returns; `sync_file_range` only moves the writes
//! earlier. Where it fails (a filesystem without it) the `fdatasync`s alone do the work.
//!
//! Why not one `syncfs` at the end: it also writes back every other writer's dirty data on
//! the same filesystem (a container writing a large file makes the apply wait for all of it),
//! which is measured in `docs/benchmarks.md`; the driver keeps `syncfs` for filesystems whose
//! metadata journal does not commit in order (`SyncMode::Syncfs`).
//!
//! Only the *data* (and what is needed to read it back: size, block map) is made durable here;
//! the rest of the metadata (names, modes, owners, directories) is the caller's to make durable,
//! which the driver does with one `fsync` of the layer directory after its rename (see
//! `docs/design.md`, "Durability"). This module never writes anything.

use std::path::PathBuf;

use ovlink_fs::FsError;
use rustix::fd::{AsRawFd as _, OwnedFd};

/// Files whose writeback was started and whose `fdatasync` is pending: at most this many fds
/// are held open, whatever the layer size.
pub(crate) const QUEUE: usize = 128;

/// The files of one apply waiting for their `fdatasync`; [`DataSync::finish`] syncs them.
pub(crate) struct DataSync {
    pending: Vec<(OwnedFd, PathBuf)>,
}

impl DataSync {
    /// Nothing pending yet.
    pub(crate) fn start() -> DataSync {
        DataSync {
            pending: Vec::with_capacity(QUEUE),
        }
    }

    /// Hands a just-written file over: starts its writeback (without waiting) and keeps it
    /// for [`DataSync::finish`]; syncs the whole batch when [`QUEUE`] files are pending.
    pub(crate) fn push(&mut self, fd: OwnedFd, shown: PathBuf) -> Result<(), FsError> {
        sync_file_range(&fd, libc::SYNC_FILE_RANGE_WRITE);
        // Kept read-only: an fd open for writing would make a `mount -o remount,ro` of the
        // filesystem fail (EBUSY) for as long as the batch waits; `sync_file_range` and
        // `fdatasync` need no write access. Without /proc, this file is synced right away.
        match reopen_read_only(&fd) {
            Ok(ro) => {
                drop(fd);
                self.pending.push((ro, shown));
            }
            Err(_) => {
                rustix::fs::fdatasync(&fd).map_err(|e| FsError::io("fsync", &shown, e))?;
            }
        }
        if self.pending.len() >= QUEUE {
            self.sync_pending()?;
        }
        Ok(())
    }

    /// Syncs every file handed over; the first error, if any.
    pub(crate) fn finish(mut self) -> Result<(), FsError> {
        self.sync_pending()
    }

    /// Waits for the writeback of every pending file, then `fdatasync`s each: all the
    /// allocations are in the journal before the first commit, which then covers them all.
    fn sync_pending(&mut self) -> Result<(), FsError> {
        let wait = libc::SYNC_FILE_RANGE_WAIT_BEFORE
            | libc::SYNC_FILE_RANGE_WRITE
            | libc::SYNC_FILE_RANGE_WAIT_AFTER;
        for (fd, _) in &self.pending {
            sync_file_range(fd, wait);
        }
        for (fd, shown) in self.pending.drain(..) {
            rustix::fs::fdatasync(&fd).map_err(|e| FsError::io("fsync", &shown, e))?;
        }
        Ok(())
    }
}

/// The same open file again, read-only, through its `/proc/self/fd` link (the inode itself:
/// nothing is looked up by name, so nothing can be swapped in between).
fn reopen_read_only(fd: &OwnedFd) -> rustix::io::Result<OwnedFd> {
    rustix::fs::open(
        format!("/proc/self/fd/{}", fd.as_raw_fd()),
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
}

/// `sync_file_range(fd, 0, 0, flags)` (the whole file). Its result is ignored: it is a hint
/// here, the `fdatasync` that follows reports any error with the file's path.
///
/// The crate's only `unsafe` (rustix and nix have no `sync_file_range`): one FFI call on a
/// borrowed, open fd, with no pointer argument.
#[allow(unsafe_code)]
fn sync_file_range(fd: &OwnedFd, flags: libc::c_uint) {
    // SAFETY: `fd` is an open file descriptor borrowed for the call; the call takes no
    // pointers and reads or writes no memory of this process.
    let _ = unsafe { libc::sync_file_range(fd.as_raw_fd(), 0, 0, flags) };
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::io::Write as _;

    /// More files than [`QUEUE`]: the batch is synced on the way and nothing stays pending.
    #[test]
    fn every_file_handed_over_is_synced_and_released() {
        let t = tempfile::tempdir().unwrap();
        let mut s = DataSync::start();
        for i in 0..QUEUE + 3 {
            let p = t.path().join(format!("f{i}"));
            let mut f = std::fs::File::create(&p).unwrap();
            f.write_all(b"data").unwrap();
            s.push(OwnedFd::from(f), p).unwrap();
            assert!(s.pending.len() < QUEUE);
        }
        assert_eq!(s.pending.len(), 3);
        s.finish().unwrap();
    }

    /// An fd that cannot be synced fails with its path.
    #[test]
    fn a_failed_fdatasync_names_the_file() {
        let t = tempfile::tempdir().unwrap();
        // A pipe: fdatasync fails with EINVAL (the write end stays open, so the reopen of
        // the read end does not wait for a writer).
        let (r, _w) = std::io::pipe().unwrap();
        let r = OwnedFd::from(r);
        let mut s = DataSync::start();
        s.push(r, t.path().join("the-path-fd")).unwrap();
        let e = s.finish().unwrap_err();
        assert!(e.to_string().contains("the-path-fd"), "{e}");
    }
}
