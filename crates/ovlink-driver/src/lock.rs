//! Cross-process locking and temporary directories.
//!
//! A layer is locked by an `flock` on its own directory fd, so two processes never mount,
//! apply or remove the same layer at once. In-progress work lives in temporary directories
//! (`<home>/.tmp-*`, `<layer>/tmproot-*`) that their owner keeps `flock`ed; init removes only
//! the ones it can lock, i.e. whose owner has died. Publishing a finished temporary directory
//! under its real name goes through the `rename` module (which builds on this module, never
//! the other way round), which works on kernels and filesystems without `renameat2`'s flags.

use crate::error::Result;
use ovlink_fs::error::Context;
use rustix::fd::{AsFd, OwnedFd};
use rustix::fs::Mode;
use rustix::io::Errno;
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

/// An exclusive `flock` held on a directory fd until dropped: [`ovlink_fs::lock::FileLock`]
/// (the one lock type, which retries `EINTR`) on a layer or temporary directory.
#[derive(Debug)]
pub struct DirLock {
    lock: ovlink_fs::lock::FileLock,
}

impl DirLock {
    /// Blocks until the exclusive lock on `fd` is held.
    pub fn lock(fd: OwnedFd, shown: &Path) -> Result<Self> {
        Ok(DirLock {
            lock: ovlink_fs::lock::FileLock::lock(fd, shown)?,
        })
    }

    /// Takes the lock if it is free; `Ok(None)` when another process holds it.
    pub fn try_lock(fd: OwnedFd, shown: &Path) -> Result<Option<Self>> {
        Ok(ovlink_fs::lock::FileLock::try_lock(fd, shown)?.map(|lock| DirLock { lock }))
    }

    /// The locked directory's fd.
    pub fn fd(&self) -> &OwnedFd {
        self.lock.owned_fd()
    }
}

/// A random suffix for temporary names, from `fastrand` (seeded by std, which never waits for
/// the kernel's entropy pool: a fresh old-kernel VM would block a `getrandom(2)` with flags 0
/// for minutes). Uniqueness is all a temporary name needs; creating it is exclusive anyway.
pub fn random_suffix() -> String {
    format!("{:016x}", fastrand::u64(..))
}

/// A locked temporary directory inside `parent`, removed on drop unless
/// [`TempDir::persist`] was called (after it was renamed into place).
#[derive(Debug)]
pub struct TempDir {
    parent: OwnedFd,
    parent_path: PathBuf,
    name: OsString,
    lock: Option<DirLock>,
    armed: bool,
}

impl TempDir {
    /// Creates `<parent>/<prefix><random>` with `mode` (exactly, whatever the umask) and locks it.
    pub fn new(parent: &OwnedFd, parent_path: &Path, prefix: &str, mode: u32) -> Result<Self> {
        // Between mkdir and flock the directory is unlocked, and a concurrent init's
        // recovery may reap it: then it is gone (or not ours) once locked, and we retry.
        let mut attempt = 0;
        loop {
            attempt += 1;
            match Self::try_new(parent, parent_path, prefix, mode) {
                Ok(Some(t)) => return Ok(t),
                Ok(None) if attempt < 8 => continue,
                Ok(None) => {
                    return Err(ovlink_fs::FsError::io(
                        "create a temporary directory in",
                        parent_path,
                        Errno::NOENT,
                    )
                    .into())
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn try_new(
        parent: &OwnedFd,
        parent_path: &Path,
        prefix: &str,
        mode: u32,
    ) -> Result<Option<Self>> {
        let parent = rustix::io::dup(parent).ctx("dup", parent_path)?;
        let name = OsString::from(format!("{prefix}{}", random_suffix()));
        let path = parent_path.join(&name);
        rustix::fs::mkdirat(&parent, &*name, Mode::from_raw_mode(0o700))
            .ctx("create directory", &path)?;
        let mut t = TempDir {
            parent,
            parent_path: parent_path.to_path_buf(),
            name,
            lock: None,
            armed: true,
        };
        let fd = match ovlink_fs::at::open_dir_at(&t.parent, &t.name, &path) {
            Ok(fd) => fd,
            Err(e) if e.raw_os_error() == Some(Errno::NOENT.raw_os_error()) => {
                t.armed = false;
                return Ok(None);
            }
            Err(e) => return Err(e.into()),
        };
        let lock = DirLock::lock(fd, &path)?;
        let now = rustix::fs::statat(&t.parent, &*t.name, rustix::fs::AtFlags::SYMLINK_NOFOLLOW);
        let mine = rustix::fs::fstat(lock.fd()).ctx("stat", &path)?;
        if !matches!(now, Ok(st) if st.st_ino == mine.st_ino && st.st_dev == mine.st_dev) {
            t.armed = false; // reaped under us: not ours to remove
            return Ok(None);
        }
        rustix::fs::fchmod(lock.fd(), Mode::from_raw_mode(mode)).ctx("change mode of", &path)?;
        t.lock = Some(lock);
        Ok(Some(t))
    }

    /// The temporary directory's name inside its parent.
    pub fn name(&self) -> &OsStr {
        &self.name
    }

    /// Its full path.
    pub fn path(&self) -> PathBuf {
        self.parent_path.join(&self.name)
    }

    /// An fd of the directory itself.
    pub fn fd(&self) -> &OwnedFd {
        // `lock` is always Some between `new` and drop.
        self.lock.as_ref().map(|l| l.fd()).unwrap_or(&self.parent)
    }

    /// The parent directory's fd.
    pub fn parent_fd(&self) -> &OwnedFd {
        &self.parent
    }

    /// Its lock (`None` only while it is being made).
    pub fn lock(&self) -> Option<&DirLock> {
        self.lock.as_ref()
    }

    /// Keeps the directory (it was renamed into place); the lock is released.
    pub fn persist(mut self) {
        self.armed = false;
    }

    /// Leaves the directory in place when dropped (the lock is released then), for the next
    /// init's reaping: for a directory that cannot be removed safely now (something is still
    /// mounted in it; the reaping unmounts first).
    pub fn keep(&mut self) {
        self.armed = false;
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if self.armed {
            let path = self.path();
            let _ = ovlink_fs::remove_all_at(self.parent.as_fd(), &self.name, &path);
        }
    }
}

/// Removes the entries of `dir` whose names start with one of `prefixes` and whose lock is
/// free (their owner died). Returns the names removed.
pub fn reap_temp_dirs(dir: &OwnedFd, dir_path: &Path, prefixes: &[&str]) -> Result<Vec<OsString>> {
    reap_temp_dirs_except(dir, dir_path, prefixes, &[])
}

/// [`reap_temp_dirs`], leaving the names that start with one of `except`.
pub fn reap_temp_dirs_except(
    dir: &OwnedFd,
    dir_path: &Path,
    prefixes: &[&str],
    except: &[&str],
) -> Result<Vec<OsString>> {
    use std::os::unix::ffi::OsStrExt;
    let mut names = Vec::new();
    {
        let it = rustix::fs::Dir::read_from(dir).ctx("read directory", dir_path)?;
        for ent in it {
            let ent = ent.ctx("read directory", dir_path)?;
            let n = ent.file_name().to_bytes();
            if prefixes.iter().any(|p| n.starts_with(p.as_bytes()))
                && !except.iter().any(|p| n.starts_with(p.as_bytes()))
            {
                names.push(OsStr::from_bytes(n).to_os_string());
            }
        }
    }
    let mut removed = Vec::new();
    for name in names {
        let path = dir_path.join(&name);
        let Ok(fd) = ovlink_fs::at::open_dir_at(dir, &name, &path) else {
            // Not a directory: a stray file with our prefix; remove it.
            let _ = rustix::fs::unlinkat(dir, &*name, rustix::fs::AtFlags::empty());
            continue;
        };
        if let Some(lock) = DirLock::try_lock(fd, &path)? {
            // Unmount anything a crashed owner left mounted inside.
            for m in crate::mount::mounts_under(&path) {
                crate::mount::unmount(&m)?;
            }
            ovlink_fs::remove_all_at(dir, &name, &path)?;
            drop(lock);
            removed.push(name);
        }
    }
    Ok(removed)
}

/// Locks layer directory `<home>/<id>`, whose fd the caller opened as `fd`, and checks that
/// it is still the entry at that name (a remove may have raced us): returns `fd` with the lock.
///
/// The lock is taken on its own open of the directory, not on a `dup` of `fd`: an flock
/// belongs to the open file description, so dropping the lock releases it even while `fd`
/// stays open (a shared description once made a layer deadlock against itself).
pub fn lock_layer_dir(
    home_fd: &OwnedFd,
    home: &Path,
    id: &str,
    fd: OwnedFd,
) -> Result<(OwnedFd, DirLock)> {
    let path = home.join(id);
    let not_found = || crate::DriverError::LayerNotFound { id: id.to_string() };
    let lock_fd = match ovlink_fs::at::open_dir_at(home_fd, id, &path) {
        Ok(l) => l,
        Err(e) if e.raw_os_error() == Some(Errno::NOENT.raw_os_error()) => return Err(not_found()),
        Err(e) => return Err(e.into()),
    };
    let lock = DirLock::lock(lock_fd, &path)?;
    let now = rustix::fs::statat(home_fd, id, rustix::fs::AtFlags::SYMLINK_NOFOLLOW);
    let mine = rustix::fs::fstat(&fd).ctx("stat", &path)?;
    let locked = rustix::fs::fstat(lock.fd()).ctx("stat", &path)?;
    match now {
        Ok(st)
            if (st.st_ino, st.st_dev) == (mine.st_ino, mine.st_dev)
                && (st.st_ino, st.st_dev) == (locked.st_ino, locked.st_dev) =>
        {
            Ok((fd, lock))
        }
        _ => Err(not_found()),
    }
}
