//! Removing whole trees, fd-relative, never following symlinks (a symlink inside the tree is
//! unlinked, never traversed), so removal cannot reach outside the tree it was given.
//!
//! The walk is iterative and holds a bounded number of fds whatever the depth: the deepest
//! [`FD_WINDOW`] directories of the current path and every [`FD_STRIDE`]-th one stay open;
//! a directory whose fd was closed is opened again by name from the nearest open ancestor
//! (`O_NOFOLLOW | O_DIRECTORY`, never `..`) and must be the same inode (device and inode
//! number) as when it was first opened. A tree made by a process with a high open-file limit
//! (4096 under systemd) is removed by one at 256, and the depth costs no stack.

use crate::at::open_dir_at;
use crate::error::{Context, FsError, Result};
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{AtFlags, Dir, FileType};
use rustix::io::Errno;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// How many of the deepest directories of the current path stay open.
const FD_WINDOW: usize = 8;
/// Every `FD_STRIDE`-th directory of the current path stays open too, so reopening a
/// directory walks at most this many components.
const FD_STRIDE: usize = 128;

/// Removes `name` from `dir`, whatever it is, recursively. A missing entry is not an error.
/// `shown` is the logical path of `name` for error messages.
pub fn remove_all_at<Fd: AsFd>(dir: Fd, name: &OsStr, shown: &Path) -> Result<()> {
    let dir = dir.as_fd();
    match rustix::fs::unlinkat(dir, name, AtFlags::empty()) {
        Ok(()) | Err(Errno::NOENT) => return Ok(()),
        Err(Errno::ISDIR) | Err(Errno::PERM) => {}
        Err(e) => return Err(FsError::io("remove", shown, e)),
    }
    let sub = match open_dir_at(dir, name, shown) {
        Ok(fd) => fd,
        Err(e) if e.raw_os_error() == Some(Errno::NOENT.raw_os_error()) => return Ok(()),
        Err(e) => return Err(e),
    };
    empty_dir(&sub, shown)?;
    drop(sub);
    match rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR) {
        Ok(()) | Err(Errno::NOENT) => Ok(()),
        Err(e) => Err(FsError::io("remove directory", shown, e)),
    }
}

/// One directory of the current path below the directory being emptied.
struct Frame {
    name: OsString,
    /// Its fd while kept open.
    fd: Option<OwnedFd>,
    /// (device, inode) when first opened: a reopen must find the same directory.
    id: (u64, u64),
    /// Its subdirectories still to remove (its other entries are already unlinked).
    pending: Vec<OsString>,
}

/// Removes everything inside the open directory `dir`, leaving `dir` itself.
pub fn empty_dir<Fd: AsFd>(dir: Fd, shown: &Path) -> Result<()> {
    let top = dir.as_fd();
    let mut path: PathBuf = shown.to_path_buf();
    let mut top_pending = clear_files(top, shown)?;
    let mut stack: Vec<Frame> = Vec::new();
    loop {
        // The next subdirectory to descend into, from the deepest directory with one left.
        let next = match stack.last_mut() {
            Some(f) => f.pending.pop(),
            None => top_pending.pop(),
        };
        match next {
            Some(name) => {
                let parent = frame_fd(top, shown, &mut stack)?;
                let child_shown = path.join(&name);
                let fd = match open_dir_at(parent, &name, &child_shown) {
                    Ok(fd) => fd,
                    // Gone already, or not a directory any more: unlink whatever it is.
                    Err(e) if e.raw_os_error() == Some(Errno::NOENT.raw_os_error()) => continue,
                    Err(FsError::NotADirectory { .. }) => {
                        match rustix::fs::unlinkat(parent, &*name, AtFlags::empty()) {
                            Ok(()) | Err(Errno::NOENT) => continue,
                            Err(e) => return Err(FsError::io("remove", &child_shown, e)),
                        }
                    }
                    Err(e) => return Err(e),
                };
                let st = rustix::fs::fstat(&fd).ctx("stat", &child_shown)?;
                let pending = clear_files(fd.as_fd(), &child_shown)?;
                path.push(&name);
                stack.push(Frame {
                    name,
                    fd: Some(fd),
                    id: (st.st_dev, st.st_ino),
                    pending,
                });
                let len = stack.len();
                if len > FD_WINDOW {
                    let i = len - FD_WINDOW - 1;
                    if !(i + 1).is_multiple_of(FD_STRIDE) {
                        stack[i].fd = None;
                    }
                }
            }
            None => {
                // The deepest directory is empty now: remove it from its parent.
                let Some(done) = stack.pop() else {
                    return Ok(());
                };
                drop(done.fd);
                let parent = frame_fd(top, shown, &mut stack)?;
                match rustix::fs::unlinkat(parent, &*done.name, AtFlags::REMOVEDIR) {
                    Ok(()) | Err(Errno::NOENT) => {}
                    Err(e) => return Err(FsError::io("remove directory", &path, e)),
                }
                path.pop();
            }
        }
    }
}

/// An fd of the deepest directory of `stack` (`top` when empty). When its own fd was closed,
/// the path down to it is opened again by name from the nearest open ancestor, and the
/// deepest [`FD_WINDOW`] of those reopened fds are kept in the stack for the next steps up.
fn frame_fd<'a>(
    top: BorrowedFd<'a>,
    shown: &Path,
    stack: &'a mut [Frame],
) -> Result<BorrowedFd<'a>> {
    let Some(last) = stack.len().checked_sub(1) else {
        return Ok(top);
    };
    if stack[last].fd.is_none() {
        let first = (0..last)
            .rev()
            .find(|&i| stack[i].fd.is_some())
            .map_or(0, |s| s + 1);
        let mut p = shown.to_path_buf();
        for f in &stack[..first] {
            p.push(&f.name);
        }
        let mut cur: Option<OwnedFd> = None;
        for i in first..=last {
            p.push(&stack[i].name);
            let fd = {
                let base = match (&cur, first) {
                    (Some(fd), _) => fd.as_fd(),
                    (None, 0) => top,
                    (None, f) => stack[f - 1].fd.as_ref().map_or(top, |fd| fd.as_fd()),
                };
                open_dir_at(base, &stack[i].name, &p)?
            };
            let st = rustix::fs::fstat(&fd).ctx("stat", &p)?;
            if (st.st_dev, st.st_ino) != stack[i].id {
                return Err(FsError::io(
                    "remove (the tree changed during removal)",
                    &p,
                    Errno::STALE,
                ));
            }
            // Keep the reopened fds of the deepest levels for the next steps up.
            if let Some(prev) = cur.take() {
                if i + FD_WINDOW > last {
                    stack[i - 1].fd = Some(prev);
                }
            }
            cur = Some(fd);
        }
        stack[last].fd = cur;
    }
    Ok(stack[last].fd.as_ref().map_or(top, |fd| fd.as_fd()))
}

/// Unlinks every non-directory in `dir`; returns the names of its subdirectories.
fn clear_files(dir: BorrowedFd<'_>, shown: &Path) -> Result<Vec<OsString>> {
    let mut subdirs = Vec::new();
    let it = Dir::read_from(dir).ctx("read directory", shown)?;
    for ent in it {
        let ent = ent.ctx("read directory", shown)?;
        let name = ent.file_name().to_bytes();
        if name == b"." || name == b".." {
            continue;
        }
        let name = OsStr::from_bytes(name).to_os_string();
        match ent.file_type() {
            FileType::Directory => subdirs.push(name),
            FileType::Unknown => match rustix::fs::unlinkat(dir, &*name, AtFlags::empty()) {
                Ok(()) | Err(Errno::NOENT) => {}
                Err(Errno::ISDIR) | Err(Errno::PERM) => subdirs.push(name),
                Err(e) => return Err(FsError::io("remove", shown.join(&name), e)),
            },
            _ => match rustix::fs::unlinkat(dir, &*name, AtFlags::empty()) {
                Ok(()) | Err(Errno::NOENT) => {}
                Err(e) => return Err(FsError::io("remove", shown.join(&name), e)),
            },
        }
    }
    Ok(subdirs)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// The fds of this process open on `dir` or below it (other tests of this binary open
    /// and close fds of their own meanwhile, so a count of all fds would race with them).
    fn fds_open_under(dir: &Path) -> usize {
        std::fs::read_dir("/proc/self/fd").map_or(0, |d| {
            d.filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                .filter(|t| t.starts_with(dir))
                .count()
        })
    }

    /// A chain 3,000 directories deep, files at every level, removed with a bounded number
    /// of fds and no recursion.
    #[test]
    fn deep_chain_with_bounded_fds() {
        let td = tempfile::tempdir().unwrap();
        let top = crate::at::open_dir(td.path()).unwrap();
        let mut cur =
            rustix::fs::openat(&top, ".", crate::at::DIR_FLAGS, rustix::fs::Mode::empty()).unwrap();
        for i in 0..3000 {
            rustix::fs::mkdirat(&cur, "d", rustix::fs::Mode::from_raw_mode(0o755)).unwrap();
            if i % 7 == 0 {
                rustix::fs::mkdirat(&cur, "side", rustix::fs::Mode::from_raw_mode(0o755)).unwrap();
                rustix::fs::symlinkat("/etc/passwd", &cur, "link").unwrap();
            }
            cur = open_dir_at(&cur, "d", Path::new("d")).unwrap();
        }
        drop(cur);
        let before = fds_open_under(td.path());
        remove_all_at(&top, OsStr::new("d"), &td.path().join("d")).unwrap();
        assert!(!td.path().join("d").exists());
        assert_eq!(fds_open_under(td.path()), before, "fds leaked");
        assert!(std::fs::metadata("/etc/passwd").is_ok());
    }
}
