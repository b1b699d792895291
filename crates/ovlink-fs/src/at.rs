//! Opening directories relative to a directory fd without ever following a symlink, opening
//! for reading a regular file a walk listed only if it is still that file
//! ([`open_listed_file`]), and small fd-relative helpers (existence, kind of entry, the
//! umask).
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

/// A file type in words, for messages.
fn describe(kind: FileType) -> &'static str {
    match kind {
        FileType::RegularFile => "a regular file",
        FileType::Directory => "a directory",
        FileType::Symlink => "a symlink",
        FileType::Fifo => "a FIFO",
        FileType::Socket => "a socket",
        FileType::CharacterDevice => "a character device",
        FileType::BlockDevice => "a block device",
        _ => "something unknown",
    }
}

/// What a walk saw of a regular file it will read: its device and inode (from its `lstat`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listed {
    /// `st_dev`.
    pub dev: u64,
    /// `st_ino`.
    pub ino: u64,
}

impl Listed {
    /// The identity of a stat.
    pub fn of(st: &Stat) -> Listed {
        Listed {
            dev: st.st_dev,
            ino: st.st_ino,
        }
    }
}

/// Opens for reading the regular file `name` in `dir` only if it is still the inode a walk
/// listed. Anything under a walk may be swapped between its `lstat` and its `open` (a process
/// in a running container can replace a file of its upper dir by a FIFO, which an open would
/// block on, or by a node of a host disk, whose bytes a read would copy into a layer): so the
/// name is first opened `O_PATH | O_NOFOLLOW`, which opens nothing (no device, FIFO or socket
/// is ever opened), that fd is `fstat`ed, and only when it is a regular file with the listed
/// device and inode is that very inode opened for reading, through `/proc/self/fd` (the
/// `O_PATH` fd pins it). Anything else is [`FsError::Changed`]; the caller decides whether that
/// fails the walk.
pub fn open_listed_file<Fd: AsFd, N: AsRef<OsStr>>(
    dir: Fd,
    name: N,
    shown: &Path,
    listed: Listed,
) -> Result<std::fs::File> {
    let path_fd = rustix::fs::openat(
        dir,
        name.as_ref(),
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .ctx("open", shown)?;
    let st = rustix::fs::fstat(&path_fd).ctx("stat", shown)?;
    let kind = FileType::from_raw_mode(st.st_mode);
    if kind != FileType::RegularFile || Listed::of(&st) != listed {
        return Err(FsError::Changed {
            path: shown.to_path_buf(),
            listed_ino: listed.ino,
            now: format!("{} with inode {}", describe(kind), st.st_ino),
        });
    }
    let fd = rustix::fs::open(
        proc_fd_path(&path_fd),
        OFlags::RDONLY | OFlags::CLOEXEC | OFlags::NOCTTY,
        Mode::empty(),
    )
    .ctx("open", shown)?;
    Ok(std::fs::File::from(fd))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::io::Read;

    /// A directory with file `f` ("listed"), its fd and what a walk listed of `f`.
    fn listed_file() -> (tempfile::TempDir, OwnedFd, Listed) {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("f"), b"listed").unwrap();
        let fd = open_dir(t.path()).unwrap();
        let st = stat_at(&fd, "f", t.path()).unwrap().unwrap();
        (t, fd, Listed::of(&st))
    }

    /// `open_listed_file` in a thread: a FIFO or a device must be refused at once, never
    /// opened (an open of a FIFO would block forever).
    fn open_soon(fd: &OwnedFd, listed: Listed) -> Result<String> {
        let fd = fd.try_clone().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let r = open_listed_file(&fd, "f", Path::new("dir/f"), listed).map(|mut f| {
                let mut s = String::new();
                f.read_to_string(&mut s).unwrap();
                s
            });
            let _ = tx.send(r);
        });
        rx.recv_timeout(std::time::Duration::from_secs(10))
            .expect("open_listed_file blocked: it opened what it should only have looked at")
    }

    fn assert_changed(r: Result<String>, now: &str) {
        match r {
            Err(e @ FsError::Changed { .. }) => {
                let msg = e.to_string();
                assert!(msg.contains("dir/f changed while being read"), "{msg}");
                assert!(msg.contains(now), "{msg}");
            }
            other => panic!("expected Changed ({now}), got {other:?}"),
        }
    }

    #[test]
    fn the_listed_file_is_read() {
        let (_t, fd, listed) = listed_file();
        assert_eq!(open_soon(&fd, listed).unwrap(), "listed");
    }

    #[test]
    fn a_file_swapped_for_another_fifo_or_symlink_is_refused_unopened() {
        let (t, fd, listed) = listed_file();
        let f = t.path().join("f");
        // Another regular file renamed over it (made first: a new inode, not the freed one).
        std::fs::write(t.path().join("g"), b"another").unwrap();
        std::fs::rename(t.path().join("g"), &f).unwrap();
        assert_changed(open_soon(&fd, listed), "a regular file with inode");
        std::fs::remove_file(&f).unwrap();
        rustix::fs::mknodat(&fd, "f", FileType::Fifo, Mode::from_raw_mode(0o600), 0).unwrap();
        assert_changed(open_soon(&fd, listed), "a FIFO");
        std::fs::remove_file(&f).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", &f).unwrap();
        assert_changed(open_soon(&fd, listed), "a symlink");
    }

    /// A node of a device (here the memory device /dev/zero's numbers) in place of the file:
    /// refused before it is opened, so no byte of a device ever reaches a layer. Root: mknod.
    #[test]
    fn privileged_a_file_swapped_for_a_device_node_is_refused_unopened() {
        let (t, fd, listed) = listed_file();
        std::fs::remove_file(t.path().join("f")).unwrap();
        rustix::fs::mknodat(
            &fd,
            "f",
            FileType::CharacterDevice,
            Mode::from_raw_mode(0o600),
            rustix::fs::makedev(1, 5),
        )
        .expect("mknod of a character device: run as root");
        assert_changed(open_soon(&fd, listed), "a character device");
    }
}
