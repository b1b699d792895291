//! Whiteouts (AUFS-style names Docker layer tars use for deletions) and the record of what
//! this apply created, which the opaque marker needs.
//!
//! `.wh.NAME` removes `NAME` (recursively) from its directory and is not itself created;
//! `.wh..wh..opq` in a directory removes everything in it that this same apply did not
//! create (lower-layer content), wherever the marker appears among the entries; other
//! `.wh..wh.`-prefixed names are AUFS metadata and are skipped. This module removes only
//! below a directory fd it is handed, never follows a symlink (it unlinks them), and never
//! removes anything this apply created.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use ovlink_fs::at::open_dir_at;
use ovlink_fs::error::Context;
use ovlink_fs::FsError;
use rustix::fd::{AsFd, BorrowedFd};
use rustix::fs::{AtFlags, Dir, FileType};

use crate::meta::DirTimes;
use crate::path::Comps;
use crate::trie::PathTrie;

/// The whiteout prefix.
pub(crate) const PREFIX: &[u8] = b".wh.";
/// The prefix of AUFS metadata names (and of the opaque marker).
pub(crate) const META_PREFIX: &[u8] = b".wh..wh.";
/// The opaque-directory marker.
pub(crate) const OPAQUE: &[u8] = b".wh..wh..opq";

/// What a base name means.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Whiteout<'a> {
    /// An ordinary name.
    No,
    /// The opaque marker of its directory.
    Opaque,
    /// AUFS metadata (`.wh..wh.plnk`, `.wh..wh.aufs`, ...): skipped.
    Meta,
    /// Removes this name of the same directory.
    Remove(&'a OsStr),
}

/// Classifies a base name; `Err` when the whiteout would target `.`, `..` or nothing.
pub(crate) fn classify(base: &OsStr) -> Result<Whiteout<'_>, String> {
    let b = base.as_bytes();
    if b == OPAQUE {
        return Ok(Whiteout::Opaque);
    }
    if b.starts_with(META_PREFIX) {
        return Ok(Whiteout::Meta);
    }
    match b.strip_prefix(PREFIX) {
        None => Ok(Whiteout::No),
        Some(b"") => Err("a whiteout with an empty target".into()),
        Some(b".") | Some(b"..") => Err(format!(
            "a whiteout of {:?}",
            String::from_utf8_lossy(&b[PREFIX.len()..])
        )),
        Some(t) => Ok(Whiteout::Remove(OsStr::from_bytes(t))),
    }
}

/// The paths this apply created (entries, and parent directories it had to make), and every
/// ancestor of them, relative to the root; in memory linear in the paths, whatever their
/// depth (see [`PathTrie`]).
#[derive(Debug, Default)]
pub(crate) struct Created {
    paths: PathTrie<()>,
}

impl Created {
    /// Records `comps` (and its ancestors) as created by this apply.
    pub(crate) fn insert(&mut self, comps: &[OsString]) {
        self.paths.insert(comps, ());
    }

    fn keep(&self, comps: &[OsString]) -> bool {
        self.paths.has_node(comps)
    }
}

/// The opaque marker: removes from the open directory `dir` (at `rel` below the root, shown
/// as `shown`) everything this apply did not create. Directories that were created or merged
/// by this apply, or that hold something it created, are kept and cleaned recursively.
pub(crate) fn clear_lower(
    dir: BorrowedFd<'_>,
    rel: &mut Comps,
    shown: &Path,
    created: &Created,
    dir_times: &mut DirTimes,
) -> Result<(), FsError> {
    let mut children: Vec<(OsString, FileType)> = Vec::new();
    {
        let it = Dir::read_from(dir).ctx("read directory", shown)?;
        for ent in it {
            let ent = ent.ctx("read directory", shown)?;
            let raw = ent.file_name().to_bytes();
            if raw == b"." || raw == b".." {
                continue;
            }
            children.push((OsStr::from_bytes(raw).to_os_string(), ent.file_type()));
        }
    }
    for (name, mut ft) in children {
        let child_shown = shown.join(&name);
        if ft == FileType::Unknown {
            ft = match rustix::fs::statat(dir, &name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) => FileType::from_raw_mode(st.st_mode),
                Err(rustix::io::Errno::NOENT) => continue,
                Err(e) => return Err(FsError::io("stat", &child_shown, e)),
            };
        }
        rel.push(name.clone());
        if created.keep(rel) {
            if ft == FileType::Directory {
                let sub = open_dir_at(dir, &name, &child_shown)?;
                clear_lower(sub.as_fd(), rel, &child_shown, created, dir_times)?;
            }
        } else {
            if ft == FileType::Directory {
                dir_times.forget_under(rel);
            }
            ovlink_fs::remove_all_at(dir, &name, &child_shown)?;
        }
        rel.pop();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(s: &str) -> Result<Whiteout<'_>, String> {
        classify(OsStr::new(s))
    }

    #[test]
    fn classify_names() {
        assert_eq!(c("file"), Ok(Whiteout::No));
        assert_eq!(c(".whx"), Ok(Whiteout::No));
        assert_eq!(c(".wh.x"), Ok(Whiteout::Remove(OsStr::new("x"))));
        assert_eq!(c(".wh...x"), Ok(Whiteout::Remove(OsStr::new("..x"))));
        assert_eq!(c(".wh..wh..opq"), Ok(Whiteout::Opaque));
        assert_eq!(c(".wh..wh.plnk"), Ok(Whiteout::Meta));
        assert_eq!(c(".wh..wh.aufs"), Ok(Whiteout::Meta));
        assert!(c(".wh.").is_err());
        assert!(c(".wh..").is_err());
        assert!(c(".wh...").is_err());
    }

    #[test]
    fn created_ancestors() {
        let mut cr = Created::default();
        let p = |s: &str| -> Comps { s.split('/').map(OsString::from).collect() };
        cr.insert(&p("a/b/c"));
        assert!(cr.keep(&p("a/b/c")));
        assert!(cr.keep(&p("a/b")));
        assert!(cr.keep(&p("a")));
        assert!(!cr.keep(&p("a/x")));
        assert!(!cr.keep(&p("a/b/c/d")));
    }
}
