//! Whiteouts: the one definition of how a layer records a deletion, in both conventions
//! ovlink meets, and the part of the applier that acts on them.
//!
//! In a layer tar (AUFS-style names, what Docker's layer tars carry): `.wh.NAME` removes
//! `NAME` (recursively) from its directory and is not itself created; `.wh..wh..opq` in a
//! directory hides everything of the lower layers in it, wherever the marker appears among
//! the entries; other `.wh..wh.`-prefixed names are AUFS metadata and are skipped
//! ([`classify`], [`PREFIX`], [`OPAQUE`], [`META_PREFIX`]).
//!
//! In an overlayfs upper directory (overlay2's `diff/`): a character device 0/0 is a deletion
//! ([`is_overlay_whiteout`]) and a directory with the `trusted.overlay.opaque=y` xattr
//! ([`OVERLAY_OPAQUE_XATTR`]) hides the lower directory.
//!
//! [`WhiteoutFormat`] tells the applier which of the two a tree keeps. The applier's part
//! here ([`clear_lower`], the record of what this apply created) removes only below a
//! directory fd it is handed, never follows a symlink (it unlinks them), and never removes
//! anything this apply created. Everything else in this module is names and predicates: it
//! never touches the filesystem.

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

/// The whiteout prefix: `.wh.NAME` in a layer tar deletes `NAME`.
pub const PREFIX_STR: &str = ".wh.";
/// [`PREFIX_STR`] as bytes.
pub const PREFIX: &[u8] = PREFIX_STR.as_bytes();
/// The prefix of AUFS metadata names (and of the opaque marker).
pub const META_PREFIX: &[u8] = b".wh..wh.";
/// The opaque-directory marker of a layer tar.
pub const OPAQUE_STR: &str = ".wh..wh..opq";
/// [`OPAQUE_STR`] as bytes.
pub const OPAQUE: &[u8] = OPAQUE_STR.as_bytes();
/// The xattr that makes an overlayfs upper directory opaque (value `y`).
pub const OVERLAY_OPAQUE_XATTR: &str = ovlink_fs::xattr::OVERLAY_OPAQUE;

/// How a tree keeps the deletions of the layer tars applied into it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum WhiteoutFormat {
    /// The tree holds the parent layer's content (the legacy layout's hardlinked tree): a
    /// `.wh.NAME` deletes `NAME` there and an opaque marker removes what the parent left in
    /// its directory; no whiteout is kept.
    #[default]
    Delete,
    /// The tree is an overlayfs upper directory of its own (overlay2's `diff/`): `.wh.NAME`
    /// becomes a character device 0/0 `NAME` (mode 0, owned as the whiteout entry),
    /// replacing whatever this tree had there; an opaque marker sets
    /// [`OVERLAY_OPAQUE_XATTR`]`=y` on its directory (created if missing). Nothing else is
    /// removed: the lower layers are hidden by the mount, not deleted.
    Overlay,
}

/// True for the mode and device number of an overlayfs whiteout (a character device 0/0).
pub fn is_overlay_whiteout(mode: u32, rdev: u64) -> bool {
    FileType::from_raw_mode(mode) == FileType::CharacterDevice && rdev == 0
}

/// `DIR/.wh.NAME` (or `DIR/.wh..wh..opq` with `marker` [`OPAQUE`] and an empty `base`) as
/// the bytes of a tar entry name; `dir` is empty for the root.
pub fn tar_name(dir: &[u8], marker: &[u8], base: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(dir.len() + 1 + marker.len() + base.len());
    if !dir.is_empty() {
        p.extend_from_slice(dir);
        p.push(b'/');
    }
    p.extend_from_slice(marker);
    p.extend_from_slice(base);
    p
}

/// What a base name of a layer tar means.
#[derive(Debug, PartialEq, Eq)]
pub enum Whiteout<'a> {
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
pub fn classify(base: &OsStr) -> Result<Whiteout<'_>, String> {
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
