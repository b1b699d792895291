//! Removing whole trees, fd-relative, never following symlinks (a symlink inside the tree is
//! unlinked, never traversed), so removal cannot reach outside the tree it was given.

use crate::at::open_dir_at;
use crate::error::{Context, FsError, Result};
use rustix::fd::AsFd;
use rustix::fs::{AtFlags, Dir, FileType};
use rustix::io::Errno;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

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

/// Removes everything inside the open directory `dir`, leaving `dir` itself.
pub fn empty_dir<Fd: AsFd>(dir: Fd, shown: &Path) -> Result<()> {
    let dir = dir.as_fd();
    let mut subdirs = Vec::new();
    {
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
    }
    for name in subdirs {
        remove_all_at(dir, &name, &shown.join(&name))?;
    }
    Ok(())
}
