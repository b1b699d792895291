//! The one file-lock type of ovlink: an exclusive `flock` held on an open file or directory
//! for as long as the [`FileLock`] lives (the kernel drops it when the last fd of that open
//! file description closes, so a lock never outlives a killed process).
//!
//! Rules this module keeps: a blocking lock retries `EINTR` (a signal handler that returns
//! must not turn a wait into an error); a lock is taken on an fd handed in or opened here with
//! `O_NOFOLLOW | O_CLOEXEC`, never on a path resolved again later; every error carries the
//! operation and the path ([`FsError`]). It never removes a lock file: whoever owns the name
//! decides when it goes (unlink first, then drop the lock, so nobody sees a free file that is
//! still there).
//!
//! `flock` locks belong to the open file description, not the process: two opens of the same
//! file in one process exclude each other, but a `dup` of a locked fd shares its lock. Take a
//! lock on its own open of the file, never on a `dup`.

use std::path::Path;

use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{FlockOperation, Mode, OFlags};
use rustix::io::Errno;

use crate::error::{Context, FsError, Result};

/// An exclusive `flock` on an fd, released when dropped.
#[derive(Debug)]
pub struct FileLock {
    fd: OwnedFd,
}

impl FileLock {
    /// Blocks until the exclusive lock on `fd` (at `shown`, for messages) is held.
    pub fn lock(fd: OwnedFd, shown: &Path) -> Result<Self> {
        loop {
            match rustix::fs::flock(&fd, FlockOperation::LockExclusive) {
                Ok(()) => return Ok(FileLock { fd }),
                Err(Errno::INTR) => continue,
                Err(e) => return Err(FsError::io("lock", shown, e)),
            }
        }
    }

    /// Takes the exclusive lock on `fd` if it is free; `Ok(None)` when another open file
    /// description holds it.
    pub fn try_lock(fd: OwnedFd, shown: &Path) -> Result<Option<Self>> {
        loop {
            match rustix::fs::flock(&fd, FlockOperation::NonBlockingLockExclusive) {
                Ok(()) => return Ok(Some(FileLock { fd })),
                Err(Errno::WOULDBLOCK) => return Ok(None),
                Err(Errno::INTR) => continue,
                Err(e) => return Err(FsError::io("lock", shown, e)),
            }
        }
    }

    /// Opens the lock file `path` read-write (creating it with `mode` when missing; never
    /// following a symlink) and blocks until its exclusive lock is held.
    pub fn create(path: &Path, mode: u32) -> Result<Self> {
        Self::lock(open_lock_file(path, mode)?, path)
    }

    /// As [`FileLock::create`], without waiting: `Ok(None)` when another holds the lock.
    pub fn try_create(path: &Path, mode: u32) -> Result<Option<Self>> {
        Self::try_lock(open_lock_file(path, mode)?, path)
    }

    /// The locked fd.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// The locked fd, as owned (the lock stays held while it is open).
    pub fn owned_fd(&self) -> &OwnedFd {
        &self.fd
    }
}

fn open_lock_file(path: &Path, mode: u32) -> Result<OwnedFd> {
    rustix::fs::open(
        path,
        OFlags::RDWR | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(mode),
    )
    .ctx("open", path)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_second_open_is_excluded_until_the_first_is_dropped() {
        let td = tempfile::tempdir().unwrap();
        let p = td.path().join("x.lock");
        let first = FileLock::create(&p, 0o600).unwrap();
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert!(FileLock::try_create(&p, 0o600).unwrap().is_none());
        drop(first);
        let again = FileLock::try_create(&p, 0o600).unwrap();
        assert!(again.is_some());
    }

    #[test]
    fn a_blocking_lock_waits_for_the_holder() {
        let td = tempfile::tempdir().unwrap();
        let p = td.path().join("x.lock");
        let held = FileLock::create(&p, 0o600).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let p2 = p.clone();
        let waiter = std::thread::spawn(move || {
            let l = FileLock::create(&p2, 0o600).unwrap();
            tx.send(()).unwrap();
            drop(l);
        });
        assert!(rx
            .recv_timeout(std::time::Duration::from_millis(200))
            .is_err());
        drop(held);
        rx.recv_timeout(std::time::Duration::from_secs(10)).unwrap();
        waiter.join().unwrap();
    }

    #[test]
    fn errors_name_the_path_and_a_symlink_is_not_followed() {
        let td = tempfile::tempdir().unwrap();
        let target = td.path().join("target");
        let link = td.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let e = FileLock::create(&link, 0o600).unwrap_err();
        assert!(e.to_string().contains("link"), "{e}");
        assert!(!target.exists(), "the symlink's target was created");
        let missing = td.path().join("no/such/dir/x.lock");
        let e = FileLock::create(&missing, 0o600).unwrap_err();
        assert_eq!(e.to_string(), format!("cannot open {}", missing.display()));
    }
}
