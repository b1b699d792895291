//! The trees a diff compares, opened fd-relative: a plain directory tree (an image layer's
//! `root/`, a mounted `merged/`) or an overlay view (an upper dir over a lower root, read the
//! way overlayfs with `redirect_dir` and `metacopy` off reads it). Owns the overlay
//! conventions: a 0/0 character device in an upper dir is a whiteout, a directory with
//! `trusted.overlay.opaque=y` hides the lower directory, and [`check_plain_upper`] finds the
//! xattrs that mean the upper dir is not a plain diff.
//!
//! This module never writes to a tree and never follows a symlink below a tree's root.

use crate::error::{DiffError, Result};
use ovlink_fs::at::{open_dir, open_dir_at, proc_path};
use ovlink_fs::error::{Context, FsError};
use ovlink_fs::xattr;
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{AtFlags, Dir, FileType, Stat};
use rustix::io::Errno;
use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// The xattr overlayfs puts on a renamed directory when `redirect_dir` is on.
pub const OVERLAY_REDIRECT: &str = "trusted.overlay.redirect";
/// The xattr overlayfs puts on a metadata-only copy-up when `metacopy` is on.
pub const OVERLAY_METACOPY: &str = "trusted.overlay.metacopy";

/// One directory a tree is anchored on.
#[derive(Debug)]
pub(crate) struct Root {
    pub(crate) fd: OwnedFd,
    pub(crate) path: PathBuf,
    pub(crate) dev_ino: (u64, u64),
}

impl Root {
    fn open(path: &Path) -> Result<Root> {
        let fd = open_dir(path)?;
        let st = rustix::fs::fstat(&fd).ctx("stat", path)?;
        Ok(Root {
            fd,
            path: path.to_path_buf(),
            dev_ino: (st.st_dev, st.st_ino),
        })
    }
}

/// A tree to compare: a plain directory tree, or an overlay view of an upper dir over a
/// lower root.
#[derive(Debug)]
pub struct Tree {
    pub(crate) top: Option<Root>,
    pub(crate) lower: Option<Root>,
    pub(crate) overlay: bool,
}

impl Tree {
    /// A plain directory tree, compared as it is (no whiteout or opaque interpretation): an
    /// image layer's `root/`, or a mounted `merged/` for the naive diff. The path itself is
    /// the trusted anchor; nothing below it is followed.
    pub fn plain(path: &Path) -> Result<Tree> {
        Ok(Tree {
            top: Some(Root::open(path)?),
            lower: None,
            overlay: false,
        })
    }

    /// The overlay view of `upper` (none: an empty upper dir) over the single `lower` root,
    /// as overlayfs shows it with `redirect_dir` and `metacopy` off. Two overlay trees on the
    /// same lower root are compared without reading the lower directories they share.
    pub fn overlay(upper: Option<&Path>, lower: &Path) -> Result<Tree> {
        Ok(Tree {
            top: upper.map(Root::open).transpose()?,
            lower: Some(Root::open(lower)?),
            overlay: true,
        })
    }

    /// True when both trees read the same lower root (the same directory inode).
    pub(crate) fn shares_lower_with(&self, other: &Tree) -> bool {
        match (&self.lower, &other.lower) {
            (Some(a), Some(b)) => a.dev_ino == b.dev_ino,
            _ => false,
        }
    }

    /// The path shown for `rel` in the layer `src` of this tree.
    pub(crate) fn shown(&self, src: Src, rel: &[u8]) -> PathBuf {
        let root = match src {
            Src::Top => self.top.as_ref().or(self.lower.as_ref()),
            Src::Lower => self.lower.as_ref().or(self.top.as_ref()),
        };
        let base = root.map(|r| r.path.clone()).unwrap_or_default();
        if rel.is_empty() {
            base
        } else {
            base.join(OsStr::from_bytes(rel))
        }
    }
}

/// Which layer of a tree an entry comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Src {
    /// The upper dir of an overlay view, or the plain tree itself.
    Top,
    /// The lower root of an overlay view.
    Lower,
}

/// An entry as a tree shows it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ent {
    pub(crate) st: Stat,
    pub(crate) src: Src,
}

impl Ent {
    pub(crate) fn file_type(&self) -> FileType {
        FileType::from_raw_mode(self.st.st_mode)
    }
    pub(crate) fn is_dir(&self) -> bool {
        self.file_type() == FileType::Directory
    }
}

/// One directory as a tree shows it: the directory in the top layer and/or the lower
/// directory merged below it.
#[derive(Debug)]
pub(crate) struct DirView {
    pub(crate) top: Option<OwnedFd>,
    pub(crate) lower: Option<OwnedFd>,
    /// The top directory is an opaque upper dir (the lower directory is hidden).
    pub(crate) opaque: bool,
}

fn dup_fd(fd: &OwnedFd, shown: &Path) -> Result<OwnedFd> {
    Ok(rustix::io::fcntl_dupfd_cloexec(fd, 0).ctx("duplicate the descriptor of", shown)?)
}

/// True for a 0/0 character device: an overlay whiteout.
pub(crate) fn is_whiteout(st: &Stat) -> bool {
    FileType::from_raw_mode(st.st_mode) == FileType::CharacterDevice && st.st_rdev == 0
}

fn lstat_at(
    dir: BorrowedFd<'_>,
    name: &OsStr,
    shown: impl FnOnce() -> PathBuf,
) -> Result<Option<Stat>> {
    match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(st)),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(FsError::io("stat", shown(), e).into()),
    }
}

/// Opens `name` in `dir` as a directory when it is one; `None` when it is absent or is
/// something else (symlinks are never followed).
fn open_dir_if_dir(dir: BorrowedFd<'_>, name: &OsStr, shown: &Path) -> Result<Option<OwnedFd>> {
    match open_dir_at(dir, name, shown) {
        Ok(fd) => Ok(Some(fd)),
        Err(FsError::NotADirectory { .. }) => Ok(None),
        Err(e) if e.raw_os_error() == Some(Errno::NOENT.raw_os_error()) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Adds the names in the open directory `dir` to `names`.
pub(crate) fn read_names(dir: &OwnedFd, shown: &Path, names: &mut BTreeSet<Vec<u8>>) -> Result<()> {
    for ent in Dir::read_from(dir).ctx("read directory", shown)? {
        let ent = ent.ctx("read directory", shown)?;
        let n = ent.file_name().to_bytes();
        if n != b"." && n != b".." {
            names.insert(n.to_vec());
        }
    }
    Ok(())
}

impl DirView {
    /// The root directory of `tree`.
    pub(crate) fn root(tree: &Tree) -> Result<DirView> {
        Ok(DirView {
            top: tree
                .top
                .as_ref()
                .map(|r| dup_fd(&r.fd, &r.path))
                .transpose()?,
            lower: tree
                .lower
                .as_ref()
                .map(|r| dup_fd(&r.fd, &r.path))
                .transpose()?,
            opaque: false,
        })
    }

    /// The open directory of layer `src` (for an entry that [`DirView::resolve`] found there).
    pub(crate) fn fd(&self, src: Src) -> Option<BorrowedFd<'_>> {
        match src {
            Src::Top => self.top.as_ref().map(|f| f.as_fd()),
            Src::Lower => self.lower.as_ref().map(|f| f.as_fd()),
        }
    }

    /// The directory's own fd as the tree shows it (top first).
    pub(crate) fn own_fd(&self) -> Option<(BorrowedFd<'_>, Src)> {
        self.fd(Src::Top)
            .map(|f| (f, Src::Top))
            .or_else(|| self.fd(Src::Lower).map(|f| (f, Src::Lower)))
    }

    /// What the tree shows at `name` in this directory: the top entry unless it is a
    /// whiteout (then nothing), else the lower entry.
    pub(crate) fn resolve(&self, tree: &Tree, rel: &[u8], name: &OsStr) -> Result<Option<Ent>> {
        if let Some(top) = &self.top {
            if let Some(st) = lstat_at(top.as_fd(), name, || tree.shown(Src::Top, rel))? {
                if tree.overlay && is_whiteout(&st) {
                    return Ok(None);
                }
                return Ok(Some(Ent { st, src: Src::Top }));
            }
        }
        if let Some(lower) = &self.lower {
            if let Some(st) = lstat_at(lower.as_fd(), name, || tree.shown(Src::Lower, rel))? {
                return Ok(Some(Ent {
                    st,
                    src: Src::Lower,
                }));
            }
        }
        Ok(None)
    }

    /// The view of the child directory `name` (which [`DirView::resolve`] found as `ent`, a
    /// directory). `rel` is the child's relative path.
    pub(crate) fn child(
        &self,
        tree: &Tree,
        rel: &[u8],
        name: &OsStr,
        ent: &Ent,
    ) -> Result<DirView> {
        let mut top = None;
        let mut opaque = false;
        if ent.src == Src::Top {
            if let Some(t) = &self.top {
                let shown = tree.shown(Src::Top, rel);
                top = open_dir_if_dir(t.as_fd(), name, &shown)?;
                if let (true, Some(fd)) = (tree.overlay, &top) {
                    opaque = xattr::get_fd(fd, OsStr::new(xattr::OVERLAY_OPAQUE), &shown)?
                        .is_some_and(|v| v == b"y");
                }
            }
        }
        let mut lower = None;
        if !opaque && (ent.src == Src::Lower || top.is_some()) {
            if let Some(l) = &self.lower {
                lower = open_dir_if_dir(l.as_fd(), name, &tree.shown(Src::Lower, rel))?;
            }
        }
        Ok(DirView { top, lower, opaque })
    }
}

/// Walks the upper dir at `upper` looking for the xattrs `redirect_dir` and `metacopy` leave
/// (on directories and regular files). `Err(NotPlainUpper)` names the first one found.
pub fn check_plain_upper(upper: &Path) -> Result<()> {
    let fd = open_dir(upper)?;
    ovlink_fs::walk::on_walk_stack(|| scan(&fd, upper, 0))
}

fn scan(dir: &OwnedFd, shown: &Path, depth: usize) -> Result<()> {
    if depth > ovlink_fs::walk::MAX_DEPTH {
        return Err(FsError::TooDeep {
            path: shown.to_path_buf(),
            limit: ovlink_fs::walk::MAX_DEPTH,
        }
        .into());
    }
    let redirect = OsStr::new(OVERLAY_REDIRECT);
    let metacopy = OsStr::new(OVERLAY_METACOPY);
    if xattr::get_fd(dir, redirect, shown)?.is_some() {
        return Err(DiffError::NotPlainUpper {
            path: shown.to_path_buf(),
            xattr: OVERLAY_REDIRECT,
        });
    }
    let mut subdirs = Vec::new();
    {
        for ent in Dir::read_from(dir).ctx("read directory", shown)? {
            let ent = ent.ctx("read directory", shown)?;
            let raw = ent.file_name().to_bytes();
            if raw == b"." || raw == b".." {
                continue;
            }
            let name = OsStr::from_bytes(raw);
            let mut ft = ent.file_type();
            if ft == FileType::Unknown {
                let st = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)
                    .with_ctx("stat", || shown.join(name))?;
                ft = FileType::from_raw_mode(st.st_mode);
            }
            match ft {
                FileType::Directory => subdirs.push(name.to_os_string()),
                FileType::RegularFile => {
                    let p = proc_path(dir, name);
                    for x in [(metacopy, OVERLAY_METACOPY), (redirect, OVERLAY_REDIRECT)] {
                        if xattr::get(&p, x.0)
                            .map_err(|e| reshow(e, &shown.join(name)))?
                            .is_some()
                        {
                            return Err(DiffError::NotPlainUpper {
                                path: shown.join(name),
                                xattr: x.1,
                            });
                        }
                    }
                }
                _ => {}
            }
        }
    }
    for name in subdirs {
        let p = shown.join(&name);
        let sub = open_dir_at(dir, &name, &p)?;
        scan(&sub, &p, depth + 1)?;
    }
    Ok(())
}

/// Replaces the `/proc/self/fd/...` path of an error from an xattr call with the path a
/// person knows.
pub(crate) fn reshow(e: FsError, shown: &Path) -> FsError {
    match e {
        FsError::Io { op, source, .. } => FsError::Io {
            op,
            path: shown.to_path_buf(),
            source,
        },
        other => other,
    }
}

/// The xattrs a diff carries and compares: all but the overlay-internal `trusted.overlay.*`
/// and the SELinux label (`security.selinux`, set by the mount's `context=`).
pub fn is_exported_xattr(name: &OsStr) -> bool {
    let b = name.as_bytes();
    !b.starts_with(b"trusted.overlay.") && b != b"security.selinux"
}

/// An object of a tree: an open directory, or the entry `name` of an open directory.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Obj<'a> {
    /// An open directory.
    Dir(BorrowedFd<'a>),
    /// Entry `name` of the open directory.
    At(BorrowedFd<'a>, &'a OsStr),
}

/// The xattrs of `obj` that pass `keep`, sorted by name.
pub(crate) fn xattrs_of(
    obj: Obj<'_>,
    shown: &Path,
    keep: impl Fn(&OsStr) -> bool,
) -> Result<Vec<(std::ffi::OsString, Vec<u8>)>> {
    let mut v = match obj {
        Obj::Dir(fd) => xattr::read_all_fd(fd, shown, keep)?,
        Obj::At(dir, name) => {
            xattr::read_all(&proc_path(dir, name), keep).map_err(|e| reshow(e, shown))?
        }
    };
    v.sort();
    Ok(v)
}
