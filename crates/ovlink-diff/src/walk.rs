//! The comparison engine: walks a new tree against an old one, directory by directory in
//! name order, and reports what differs to a [`Sink`] (the change list, the tar writer, the
//! size counter).
//!
//! Rules (Docker's `Changes`, computed exactly): an entry only in the new tree is added (and
//! so is everything below it); an entry only in the old tree is deleted (once, nothing below
//! it); an entry in both is modified when its type, mode, owner, device number, size, mtime,
//! xattrs or (exact mode) content or symlink target differ; directories ignore size and
//! mtime. A directory with a change inside it is reported (as [`Kind::Parent`]) before its
//! first changed descendant. The root is compared but never reported as a parent.
//!
//! Exact mode also treats a non-directory whose inode is the same in both trees as unchanged
//! (image layers share every unchanged inode with their parent), and reads file contents only
//! when all metadata is equal. Naive mode is Docker's: metadata only, the capability xattr
//! only, and an mtime with zero nanoseconds matches any nanoseconds.
//!
//! Two overlay views on the same lower root never read what they share: only the names in
//! their upper dirs are looked at, plus the lower directories an opaque directory hides.
//!
//! This module never writes to a tree.

use crate::error::{DiffError, Result};
use crate::tree::{is_exported_xattr, read_names, xattrs_of, DirView, Ent, Obj, Src, Tree};
use ovlink_fs::at::{open_listed_file, Listed};
use rustix::fs::{FileType, Stat};
use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// How entries in both trees are compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compare {
    /// Metadata, all exported xattrs, then contents and symlink targets; equal inodes are
    /// equal entries.
    Exact,
    /// Docker's naive comparison: mode, owner, device number, and for non-directories size
    /// and mtime, plus `security.capability`. Misses same-size same-mtime rewrites.
    Naive,
}

/// What happened to an entry, as reported to a [`Sink`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// Only in the new tree.
    Add,
    /// In both, different.
    Modify,
    /// A directory in both, equal itself, with a change inside.
    Parent,
    /// Equal in both, but inside an opaque directory whose whole content the tar must carry.
    Unchanged,
}

/// One reported entry of the new tree.
pub(crate) struct Event<'a> {
    /// Relative path (no leading `/`; empty for the root).
    pub(crate) rel: &'a [u8],
    pub(crate) kind: Kind,
    pub(crate) st: &'a Stat,
    pub(crate) obj: Obj<'a>,
    /// The path shown in errors.
    pub(crate) shown: &'a Path,
    /// Emit an opaque marker inside this directory (it replaces the old directory's content).
    pub(crate) opaque: bool,
    /// A [`Kind::Parent`] directory that was already reported as [`Kind::Unchanged`].
    pub(crate) exported: bool,
}

/// Receives the walk's results, in walk order (a directory before its content).
pub(crate) trait Sink {
    /// An entry of the new tree.
    fn entry(&mut self, ev: &Event<'_>) -> Result<()>;
    /// `rel` is gone. `dir_st` is the new tree's directory holding it; `covered` is true when
    /// an opaque marker above already removes it.
    fn delete(&mut self, rel: &[u8], dir_st: &Stat, covered: bool) -> Result<()>;
}

/// A directory being walked.
struct Frame {
    n: DirView,
    p: Option<DirView>,
    st: Stat,
    src: Src,
    rel_len: usize,
    /// Reported to the sink as a change (Add, Modify or Parent).
    listed: bool,
    /// Written (any kind, including Unchanged).
    exported: bool,
    /// Inside an opaque directory that is exported whole.
    full: bool,
}

/// The walker. See the module docs.
pub(crate) struct Walker<'t, S: Sink> {
    new: &'t Tree,
    old: Option<&'t Tree>,
    cmp: Compare,
    shared_lower: bool,
    pub(crate) sink: S,
    rel: Vec<u8>,
    frames: Vec<Frame>,
    bufs: (Vec<u8>, Vec<u8>),
}

const CMP_BUF: usize = 64 * 1024;

impl<'t, S: Sink> Walker<'t, S> {
    pub(crate) fn new(new: &'t Tree, old: Option<&'t Tree>, cmp: Compare, sink: S) -> Self {
        Walker {
            new,
            old,
            cmp,
            shared_lower: old.is_some_and(|o| new.shares_lower_with(o)),
            sink,
            rel: Vec::new(),
            frames: Vec::new(),
            bufs: (Vec::new(), Vec::new()),
        }
    }

    /// Walks both trees from their roots.
    pub(crate) fn run(mut self) -> Result<S> {
        let n = DirView::root(self.new)?;
        let Some((nfd, nsrc)) = n.own_fd() else {
            return Ok(self.sink);
        };
        let nshown = self.new.shown(nsrc, b"");
        let nst = rustix::fs::fstat(nfd).map_err(|e| ovlink_fs::FsError::io("stat", &nshown, e))?;
        let p = match self.old {
            Some(o) => Some(DirView::root(o)?),
            None => None,
        };
        let kind = match (&p, self.old) {
            (Some(pv), Some(o)) => match pv.own_fd() {
                Some((pfd, psrc)) => {
                    let pshown = o.shown(psrc, b"");
                    let pst = rustix::fs::fstat(pfd)
                        .map_err(|e| ovlink_fs::FsError::io("stat", &pshown, e))?;
                    let differs = self.meta_differs(
                        &nst,
                        &pst,
                        (Obj::Dir(nfd), &nshown),
                        (Obj::Dir(pfd), &pshown),
                    )?;
                    differs.then_some(Kind::Modify)
                }
                None => Some(Kind::Add),
            },
            _ => Some(Kind::Add),
        };
        if let Some(kind) = kind {
            self.sink.entry(&Event {
                rel: b"",
                kind,
                st: &nst,
                obj: Obj::Dir(nfd),
                shown: &nshown,
                opaque: false,
                exported: false,
            })?;
        }
        self.frames.push(Frame {
            n,
            p,
            st: nst,
            src: nsrc,
            rel_len: 0,
            listed: true,
            exported: true,
            full: false,
        });
        self.walk_dir()?;
        Ok(self.sink)
    }

    /// Reports every pending directory above a change (outermost first).
    fn flush(&mut self) -> Result<()> {
        for i in 0..self.frames.len() {
            if self.frames[i].listed {
                continue;
            }
            let f = &self.frames[i];
            let Some(fd) = f.n.fd(f.src) else { continue };
            let rel = &self.rel[..f.rel_len];
            let shown = self.new.shown(f.src, rel);
            self.sink.entry(&Event {
                rel,
                kind: Kind::Parent,
                st: &f.st,
                obj: Obj::Dir(fd),
                shown: &shown,
                opaque: false,
                exported: f.exported,
            })?;
            self.frames[i].listed = true;
            self.frames[i].exported = true;
        }
        Ok(())
    }

    /// Walks the directory of the top frame.
    fn walk_dir(&mut self) -> Result<()> {
        let mut names = BTreeSet::new();
        {
            let Some(f) = self.frames.last() else {
                return Ok(());
            };
            let rel = &self.rel[..];
            if let Some(fd) = &f.n.top {
                read_names(fd, &self.new.shown(Src::Top, rel), &mut names)?;
            }
            if let (Some(pv), Some(o)) = (&f.p, self.old) {
                if let Some(fd) = &pv.top {
                    read_names(fd, &o.shown(Src::Top, rel), &mut names)?;
                }
            }
            let both_lower = f.n.lower.is_some() && f.p.as_ref().is_some_and(|p| p.lower.is_some());
            if !(self.shared_lower && both_lower) {
                if let Some(fd) = &f.n.lower {
                    read_names(fd, &self.new.shown(Src::Lower, rel), &mut names)?;
                }
                if let (Some(pv), Some(o)) = (&f.p, self.old) {
                    if let Some(fd) = &pv.lower {
                        read_names(fd, &o.shown(Src::Lower, rel), &mut names)?;
                    }
                }
            }
        }
        for name in names {
            let len = self.rel.len();
            if !self.rel.is_empty() {
                self.rel.push(b'/');
            }
            self.rel.extend_from_slice(&name);
            let r = self.entry(OsStr::from_bytes(&name));
            self.rel.truncate(len);
            r?;
        }
        Ok(())
    }

    /// Compares the entry `name` of the top frame's directory (`self.rel` is its path).
    fn entry(&mut self, name: &OsStr) -> Result<()> {
        let (ne, pe, full) = {
            let Some(f) = self.frames.last() else {
                return Ok(());
            };
            let ne = f.n.resolve(self.new, &self.rel, name)?;
            let pe = match (&f.p, self.old) {
                (Some(pv), Some(o)) => pv.resolve(o, &self.rel, name)?,
                _ => None,
            };
            (ne, pe, f.full)
        };
        match (ne, pe) {
            (None, None) => Ok(()),
            // The same lower entry in both views: equal, and so is everything below it.
            (Some(ne), Some(pe))
                if self.shared_lower && ne.src == Src::Lower && pe.src == Src::Lower =>
            {
                Ok(())
            }
            (None, Some(_)) => {
                self.flush()?;
                let Some(f) = self.frames.last() else {
                    return Ok(());
                };
                self.sink.delete(&self.rel, &f.st, full)
            }
            (Some(ne), None) => self.added(name, &ne, full),
            (Some(ne), Some(pe)) => self.both(name, &ne, &pe, full),
        }
    }

    /// Reports a non-directory entry of the top frame's directory.
    fn emit_leaf(&mut self, name: &OsStr, ne: &Ent, kind: Kind) -> Result<()> {
        if kind != Kind::Unchanged {
            self.flush()?;
        }
        let Some(f) = self.frames.last() else {
            return Ok(());
        };
        let Some(dir) = f.n.fd(ne.src) else {
            return Ok(());
        };
        let shown = self.new.shown(ne.src, &self.rel);
        self.sink.entry(&Event {
            rel: &self.rel,
            kind,
            st: &ne.st,
            obj: Obj::At(dir, name),
            shown: &shown,
            opaque: false,
            exported: false,
        })
    }

    /// Opens the new tree's view of directory `name`.
    fn child_n(&self, name: &OsStr, ne: &Ent) -> Result<Option<DirView>> {
        let Some(f) = self.frames.last() else {
            return Ok(None);
        };
        Ok(Some(f.n.child(self.new, &self.rel, name, ne)?))
    }

    /// Reports directory `name` (its view `n`), then walks it.
    #[allow(clippy::too_many_arguments)]
    fn enter(
        &mut self,
        n: DirView,
        p: Option<DirView>,
        ne: &Ent,
        kind: Option<Kind>,
        opaque: bool,
        full: bool,
    ) -> Result<()> {
        let src = if n.top.is_some() {
            Src::Top
        } else {
            Src::Lower
        };
        if let Some(kind) = kind {
            if kind != Kind::Unchanged {
                self.flush()?;
            }
            if let Some(fd) = n.fd(src) {
                let shown = self.new.shown(src, &self.rel);
                self.sink.entry(&Event {
                    rel: &self.rel,
                    kind,
                    st: &ne.st,
                    obj: Obj::Dir(fd),
                    shown: &shown,
                    opaque,
                    exported: false,
                })?;
            }
        }
        if self.frames.len() > ovlink_fs::walk::MAX_DEPTH {
            return Err(ovlink_fs::FsError::TooDeep {
                path: self.new.shown(src, &self.rel),
                limit: ovlink_fs::walk::MAX_DEPTH,
            }
            .into());
        }
        self.frames.push(Frame {
            n,
            p,
            st: ne.st,
            src,
            rel_len: self.rel.len(),
            listed: matches!(kind, Some(Kind::Add | Kind::Modify)),
            exported: kind.is_some(),
            full,
        });
        let r = self.walk_dir();
        self.frames.pop();
        r
    }

    /// `name` is only in the new tree: it and everything below it are added.
    fn added(&mut self, name: &OsStr, ne: &Ent, full: bool) -> Result<()> {
        if !ne.is_dir() {
            return self.emit_leaf(name, ne, Kind::Add);
        }
        let Some(n) = self.child_n(name, ne)? else {
            return Ok(());
        };
        self.enter(n, None, ne, Some(Kind::Add), false, full)
    }

    /// `name` is in both trees.
    fn both(&mut self, name: &OsStr, ne: &Ent, pe: &Ent, full: bool) -> Result<()> {
        if !ne.is_dir() {
            let changed = self.leaf_differs(name, ne, pe)?;
            return match (changed, full) {
                (true, _) => self.emit_leaf(name, ne, Kind::Modify),
                (false, true) => self.emit_leaf(name, ne, Kind::Unchanged),
                (false, false) => Ok(()),
            };
        }
        let Some(n) = self.child_n(name, ne)? else {
            return Ok(());
        };
        if !pe.is_dir() {
            return self.enter(n, None, ne, Some(Kind::Modify), false, full);
        }
        let p = {
            let (Some(f), Some(o)) = (self.frames.last(), self.old) else {
                return Ok(());
            };
            match &f.p {
                Some(pv) => pv.child(o, &self.rel, name, pe)?,
                None => return Ok(()),
            }
        };
        // The new directory hides the old one's content: a marker, and everything in it.
        let marker = !full && self.new.overlay && n.opaque && !p.opaque;
        let differs = {
            let (Some(o), Some((nfd, nsrc)), Some((pfd, psrc))) =
                (self.old, n.own_fd(), p.own_fd())
            else {
                return Ok(());
            };
            let nshown = self.new.shown(nsrc, &self.rel);
            let pshown = o.shown(psrc, &self.rel);
            self.meta_differs(
                &ne.st,
                &pe.st,
                (Obj::Dir(nfd), &nshown),
                (Obj::Dir(pfd), &pshown),
            )?
        };
        let kind = if differs || marker {
            Some(Kind::Modify)
        } else if full {
            Some(Kind::Unchanged)
        } else {
            None
        };
        self.enter(n, Some(p), ne, kind, marker, full || marker)
    }

    /// Compares two non-directories found at `name` (both exist).
    fn leaf_differs(&mut self, name: &OsStr, ne: &Ent, pe: &Ent) -> Result<bool> {
        if ne.file_type() != pe.file_type() {
            return Ok(true);
        }
        if self.cmp == Compare::Exact
            && (ne.st.st_dev, ne.st.st_ino) == (pe.st.st_dev, pe.st.st_ino)
        {
            return Ok(false);
        }
        let (Some(f), Some(o)) = (self.frames.last(), self.old) else {
            return Ok(false);
        };
        let (Some(nd), Some(pd)) = (f.n.fd(ne.src), f.p.as_ref().and_then(|p| p.fd(pe.src))) else {
            return Ok(false);
        };
        let nshown = self.new.shown(ne.src, &self.rel);
        let pshown = o.shown(pe.src, &self.rel);
        if self.meta_differs(
            &ne.st,
            &pe.st,
            (Obj::At(nd, name), &nshown),
            (Obj::At(pd, name), &pshown),
        )? {
            return Ok(true);
        }
        if self.cmp == Compare::Naive {
            return Ok(false);
        }
        match ne.file_type() {
            FileType::RegularFile => {
                let a = open_listed_file(nd, name, &nshown, Listed::of(&ne.st))?;
                let b = open_listed_file(pd, name, &pshown, Listed::of(&pe.st))?;
                let bufs = &mut self.bufs;
                Ok(!same_content(a, b, &nshown, &pshown, bufs)?)
            }
            FileType::Symlink => {
                let a = rustix::fs::readlinkat(nd, name, Vec::new())
                    .map_err(|e| ovlink_fs::FsError::io("read link", &nshown, e))?;
                let b = rustix::fs::readlinkat(pd, name, Vec::new())
                    .map_err(|e| ovlink_fs::FsError::io("read link", &pshown, e))?;
                Ok(a != b)
            }
            _ => Ok(false),
        }
    }

    /// Metadata comparison (both entries of the same type for non-directories).
    fn meta_differs(
        &self,
        a: &Stat,
        b: &Stat,
        ao: (Obj<'_>, &Path),
        bo: (Obj<'_>, &Path),
    ) -> Result<bool> {
        let ft = FileType::from_raw_mode(a.st_mode);
        if ft != FileType::from_raw_mode(b.st_mode)
            || a.st_mode & 0o7777 != b.st_mode & 0o7777
            || a.st_uid != b.st_uid
            || a.st_gid != b.st_gid
        {
            return Ok(true);
        }
        if matches!(ft, FileType::CharacterDevice | FileType::BlockDevice) && a.st_rdev != b.st_rdev
        {
            return Ok(true);
        }
        if ft != FileType::Directory {
            if a.st_size != b.st_size {
                return Ok(true);
            }
            let same_time = match self.cmp {
                Compare::Exact => a.st_mtime == b.st_mtime && a.st_mtime_nsec == b.st_mtime_nsec,
                Compare::Naive => {
                    a.st_mtime == b.st_mtime
                        && (a.st_mtime_nsec == b.st_mtime_nsec
                            || a.st_mtime_nsec == 0
                            || b.st_mtime_nsec == 0)
                }
            };
            if !same_time {
                return Ok(true);
            }
        }
        let keep: fn(&OsStr) -> bool = match self.cmp {
            Compare::Exact => is_exported_xattr,
            Compare::Naive => |n: &OsStr| n.as_bytes() == b"security.capability",
        };
        Ok(xattrs_of(ao.0, ao.1, keep)? != xattrs_of(bo.0, bo.1, keep)?)
    }
}

/// Reads `len` bytes or up to EOF into `buf`.
fn fill(f: &mut std::fs::File, buf: &mut [u8], shown: &Path) -> Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                return Err(DiffError::Read {
                    path: shown.to_path_buf(),
                    source: e,
                })
            }
        }
    }
    Ok(n)
}

fn same_content(
    mut a: std::fs::File,
    mut b: std::fs::File,
    ashown: &Path,
    bshown: &Path,
    bufs: &mut (Vec<u8>, Vec<u8>),
) -> Result<bool> {
    bufs.0.resize(CMP_BUF, 0);
    bufs.1.resize(CMP_BUF, 0);
    loop {
        let x = fill(&mut a, &mut bufs.0, ashown)?;
        let y = fill(&mut b, &mut bufs.1, bshown)?;
        if x != y || bufs.0[..x] != bufs.1[..y] {
            return Ok(false);
        }
        if x == 0 {
            return Ok(true);
        }
    }
}
