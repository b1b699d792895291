//! Opening directories relative to a directory fd without ever following a symlink, and
//! small fd-relative helpers (existence, kind of entry, the umask).
//!
//! Rule of this module: only the caller-supplied anchor ([`open_dir`]) may follow symlinks;
//! every component below it is opened with `O_NOFOLLOW | O_DIRECTORY`.

use crate::error::{Context, FsError, Result};
use rustix::fd::{AsFd, OwnedFd};
use rustix::fs::{AtFlags, FileType, Mode, OFlags, Stat};
use rustix::io::Errno;
use std::ffi::OsStr;
use std::path::{Component, Path, PathBuf};

/// Flags for opening a directory we will walk: read-only, no symlink, close-on-exec.
pub const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

/// Opens `path` as a directory. This is the anchor of a walk (a layer dir, the home): it is
/// trusted configuration, so symlinks in it are followed.
pub fn open_dir(path: &Path) -> Result<OwnedFd> {
    rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .ctx("open directory", path)
}

/// Opens the single entry `name` of `dir` as a directory, refusing symlinks.
/// `shown` is the logical path used in error messages.
pub fn open_dir_at<Fd: AsFd, N: AsRef<OsStr>>(dir: Fd, name: N, shown: &Path) -> Result<OwnedFd> {
    match rustix::fs::openat(dir, name.as_ref(), DIR_FLAGS, Mode::empty()) {
        Ok(fd) => Ok(fd),
        Err(Errno::LOOP) | Err(Errno::NOTDIR) => Err(FsError::NotADirectory {
            path: shown.to_path_buf(),
        }),
        Err(e) => Err(FsError::io("open directory", shown, e)),
    }
}

/// Opens `rel` below `root`, one component at a time, refusing symlinks, `..` and absolute
/// paths. An empty or `.` path reopens `root` itself.
pub fn open_beneath<Fd: AsFd>(root: Fd, rel: &Path, shown_root: &Path) -> Result<OwnedFd> {
    let mut cur = rustix::fs::openat(root.as_fd(), ".", DIR_FLAGS, Mode::empty())
        .ctx("open directory", shown_root)?;
    let mut shown = shown_root.to_path_buf();
    for comp in rel.components() {
        match comp {
            Component::Normal(name) => {
                shown.push(name);
                cur = open_dir_at(&cur, name, &shown)?;
            }
            Component::CurDir => {}
            _ => {
                return Err(FsError::io(
                    "resolve",
                    shown_root.join(rel),
                    Errno::XDEV, // ".." or "/" would leave the tree
                ));
            }
        }
    }
    Ok(cur)
}

/// `lstat` of `name` in `dir`; `Ok(None)` when it does not exist.
pub fn stat_at<Fd: AsFd, N: AsRef<OsStr>>(dir: Fd, name: N, shown: &Path) -> Result<Option<Stat>> {
    match rustix::fs::statat(dir, name.as_ref(), AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(st)),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(FsError::io("stat", shown, e)),
    }
}

/// True when `name` exists in `dir` (without following a symlink).
pub fn exists_at<Fd: AsFd, N: AsRef<OsStr>>(dir: Fd, name: N) -> bool {
    rustix::fs::statat(dir, name.as_ref(), AtFlags::SYMLINK_NOFOLLOW).is_ok()
}

/// True when `name` in `dir` is a real directory (not a symlink to one).
pub fn is_dir_at<Fd: AsFd, N: AsRef<OsStr>>(dir: Fd, name: N) -> bool {
    matches!(
        rustix::fs::statat(dir, name.as_ref(), AtFlags::SYMLINK_NOFOLLOW),
        Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory
    )
}

/// A path through `/proc/self/fd` naming `name` inside the open directory `dir`. Used for the
/// few calls that have no fd-relative form (`l*xattr`); the final component is not followed by
/// those calls, and the directory is pinned by its fd.
pub fn proc_path<Fd: AsFd>(dir: Fd, name: &OsStr) -> PathBuf {
    use rustix::fd::AsRawFd;
    let mut p = PathBuf::from(format!("/proc/self/fd/{}", dir.as_fd().as_raw_fd()));
    p.push(name);
    p
}

/// `/proc/self/fd/N` of the open `fd`: a path that resolves to the fd's own inode (for an
/// `O_PATH | O_NOFOLLOW` fd of a symlink, the symlink itself, never its target). Used for
/// the calls that take no `O_PATH` fd (`setxattr`, `chmod`, `utimensat` on Linux 3.10).
pub fn proc_fd_path<Fd: AsFd>(fd: Fd) -> PathBuf {
    use rustix::fd::AsRawFd;
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_fd().as_raw_fd()))
}

/// The process umask, read from `/proc/self/status` without changing it (changing it is
/// process-wide and racy). Defaults to 0o022 when unreadable.
pub fn current_umask() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Umask:"))
                .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
        })
        .unwrap_or(0o022)
}

/// Creates directory `name` in `dir` with `mode`; `Ok(false)` if it already existed.
pub fn mkdir_at<Fd: AsFd, N: AsRef<OsStr>>(
    dir: Fd,
    name: N,
    mode: u32,
    shown: &Path,
) -> Result<bool> {
    match rustix::fs::mkdirat(dir, name.as_ref(), Mode::from_raw_mode(mode)) {
        Ok(()) => Ok(true),
        Err(Errno::EXIST) => Ok(false),
        Err(e) => Err(FsError::io("create directory", shown, e)),
    }
}

/// fsyncs a directory (or file) fd, naming `shown` on error.
pub fn fsync_fd<Fd: AsFd>(fd: Fd, shown: &Path) -> Result<()> {
    rustix::fs::fsync(fd).ctx("fsync", shown)
}
