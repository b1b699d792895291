//! Extended attributes: reading, writing and copying the ones overlay layers carry.
//!
//! The hardlink copy keeps `security.capability` and every `trusted.overlay.*` xattr (the opaque
//! marker, among others) on what it re-creates. Symlinks cannot be opened for xattr calls, so the
//! path forms go through [`crate::at::proc_path`] and the `l*` calls, which do not follow the
//! final component.

use crate::error::{Context, Result};
use rustix::fs::XattrFlags;
use rustix::io::Errno;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;

/// The opaque-directory xattr overlayfs sets on a directory that hides its lower content.
pub const OVERLAY_OPAQUE: &str = "trusted.overlay.opaque";

/// True for the xattrs a layer copy must keep (Docker keeps `security.capability` and the
/// overlay ones).
pub fn is_layer_xattr(name: &OsStr) -> bool {
    let b = name.as_bytes();
    b == b"security.capability" || b.starts_with(b"trusted.overlay.")
}

/// Lists the xattr names of `path` (not following a final symlink). Filesystems or entries
/// without xattr support give an empty list.
pub fn list(path: &Path) -> Result<Vec<OsString>> {
    let mut buf = vec![0u8; 256];
    loop {
        match rustix::fs::llistxattr(path, &mut buf[..]) {
            Ok(n) => {
                return Ok(buf[..n]
                    .split(|b| *b == 0)
                    .filter(|s| !s.is_empty())
                    .map(|s| OsString::from_vec(s.to_vec()))
                    .collect())
            }
            Err(Errno::RANGE) => {
                let need =
                    rustix::fs::llistxattr(path, &mut [0u8; 0][..]).ctx("list xattrs of", path)?;
                buf.resize(need.max(buf.len() * 2), 0);
            }
            Err(Errno::NOTSUP) | Err(Errno::PERM) => return Ok(Vec::new()),
            Err(e) => return Err(crate::FsError::io("list xattrs of", path, e)),
        }
    }
}

/// Reads xattr `name` of `path` (not following a final symlink); `Ok(None)` when absent.
pub fn get(path: &Path, name: &OsStr) -> Result<Option<Vec<u8>>> {
    let mut buf = vec![0u8; 256];
    loop {
        match rustix::fs::lgetxattr(path, name, &mut buf[..]) {
            Ok(n) => {
                buf.truncate(n);
                return Ok(Some(buf));
            }
            Err(Errno::RANGE) => {
                let need = rustix::fs::lgetxattr(path, name, &mut [0u8; 0][..])
                    .ctx("read xattr of", path)?;
                buf.resize(need.max(buf.len() * 2), 0);
            }
            Err(Errno::NODATA) | Err(Errno::NOTSUP) => return Ok(None),
            Err(e) => return Err(crate::FsError::io("read xattr of", path, e)),
        }
    }
}

/// Sets xattr `name` on `path` (not following a final symlink).
pub fn set(path: &Path, name: &OsStr, value: &[u8]) -> Result<()> {
    rustix::fs::lsetxattr(path, name, value, XattrFlags::empty()).ctx("set xattr on", path)
}

/// All xattrs of `path` that pass `keep`, with their values.
pub fn read_all(path: &Path, keep: impl Fn(&OsStr) -> bool) -> Result<Vec<(OsString, Vec<u8>)>> {
    let mut out = Vec::new();
    for name in list(path)? {
        if keep(&name) {
            if let Some(v) = get(path, &name)? {
                out.push((name, v));
            }
        }
    }
    Ok(out)
}

/// Copies the layer xattrs ([`is_layer_xattr`]) from `src` to `dst`.
pub fn copy_layer_xattrs(src: &Path, dst: &Path) -> Result<()> {
    for (name, value) in read_all(src, is_layer_xattr)? {
        set(dst, &name, &value)?;
    }
    Ok(())
}

/// Lists the xattr names of an open file or directory.
pub fn list_fd<Fd: rustix::fd::AsFd>(fd: Fd, shown: &Path) -> Result<Vec<OsString>> {
    let fd = fd.as_fd();
    let mut buf = vec![0u8; 256];
    loop {
        match rustix::fs::flistxattr(fd, &mut buf[..]) {
            Ok(n) => {
                return Ok(buf[..n]
                    .split(|b| *b == 0)
                    .filter(|s| !s.is_empty())
                    .map(|s| OsString::from_vec(s.to_vec()))
                    .collect())
            }
            Err(Errno::RANGE) => {
                let need =
                    rustix::fs::flistxattr(fd, &mut [0u8; 0][..]).ctx("list xattrs of", shown)?;
                buf.resize(need.max(buf.len() * 2), 0);
            }
            Err(Errno::NOTSUP) | Err(Errno::PERM) => return Ok(Vec::new()),
            Err(e) => return Err(crate::FsError::io("list xattrs of", shown, e)),
        }
    }
}

/// Reads xattr `name` of an open file or directory; `Ok(None)` when absent.
pub fn get_fd<Fd: rustix::fd::AsFd>(fd: Fd, name: &OsStr, shown: &Path) -> Result<Option<Vec<u8>>> {
    let fd = fd.as_fd();
    let mut buf = vec![0u8; 256];
    loop {
        match rustix::fs::fgetxattr(fd, name, &mut buf[..]) {
            Ok(n) => {
                buf.truncate(n);
                return Ok(Some(buf));
            }
            Err(Errno::RANGE) => {
                let need = rustix::fs::fgetxattr(fd, name, &mut [0u8; 0][..])
                    .ctx("read xattr of", shown)?;
                buf.resize(need.max(buf.len() * 2), 0);
            }
            Err(Errno::NODATA) | Err(Errno::NOTSUP) => return Ok(None),
            Err(e) => return Err(crate::FsError::io("read xattr of", shown, e)),
        }
    }
}

/// Sets xattr `name` on an open file or directory.
pub fn set_fd<Fd: rustix::fd::AsFd>(
    fd: Fd,
    name: &OsStr,
    value: &[u8],
    shown: &Path,
) -> Result<()> {
    rustix::fs::fsetxattr(fd, name, value, XattrFlags::empty()).ctx("set xattr on", shown)
}

/// All xattrs of an open file or directory that pass `keep`, with their values.
pub fn read_all_fd<Fd: rustix::fd::AsFd>(
    fd: Fd,
    shown: &Path,
    keep: impl Fn(&OsStr) -> bool,
) -> Result<Vec<(OsString, Vec<u8>)>> {
    let fd = fd.as_fd();
    let mut out = Vec::new();
    for name in list_fd(fd, shown)? {
        if keep(&name) {
            if let Some(v) = get_fd(fd, &name, shown)? {
                out.push((name, v));
            }
        }
    }
    Ok(out)
}
