//! Layer diffs for ovlink: what a layer changed against its parent, as a change list
//! (`docker diff`), as a Docker layer tar (`docker commit`, `docker save`), or as a size.
//!
//! A diff compares two [`Tree`]s. The native diff of a container layer reads its upper dir
//! over the lower root ([`Tree::overlay`]): a 0/0 character device is a deletion, an opaque
//! directory replaces the lower directory, everything else is an addition or a change, and
//! only what the upper dirs name is looked at, so the cost follows the size of the change,
//! not of the image. An image layer's `root/` is compared with its parent's
//! ([`Tree::plain`]); unchanged files are the parent's inodes. The naive diff (Docker's
//! legacy driver's only one) compares a mounted merged view with the lower root by metadata
//! ([`Compare::Naive`]); it is the fallback when [`check_plain_upper`] says the upper dir
//! was written with `redirect_dir` or `metacopy` on.
//!
//! Modules: `tree` (trees, overlay conventions), `walk` (the comparison), `changes` (the
//! change list), `export` (the tar writer and the size), `error`.
//!
//! This crate never writes to a tree and never follows a symlink below a tree's root. It
//! knows nothing about the driver's layout: the driver builds the trees.
#![forbid(unsafe_code)]

mod changes;
pub mod error;
mod export;
mod tree;
mod walk;

pub use changes::{Change, ChangeKind};
pub use error::{DiffError, Result};
pub use export::{ExportOptions, ExportStats, IdRange};
pub use tree::{check_plain_upper, is_exported_xattr, Tree, OVERLAY_METACOPY, OVERLAY_REDIRECT};
pub use walk::Compare;

use std::io::Write;

/// The changes of `new` against `old` (none: everything in `new` is added), sorted by path.
/// `/` is never listed; a directory is listed as modified when its own mode, owner or xattrs
/// changed or when something inside it changed; a deleted directory is listed once.
pub fn changes(new: &Tree, old: Option<&Tree>, cmp: Compare) -> Result<Vec<Change>> {
    let sink = walk::Walker::new(new, old, cmp, changes::ChangeSink::default()).run()?;
    let mut out = sink.out;
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// Writes the Docker layer tar of `new` against `old` (none: all of `new`) to `out`,
/// streaming file contents. Returns the bytes of regular files written and the entry count.
pub fn export(
    new: &Tree,
    old: Option<&Tree>,
    cmp: Compare,
    out: &mut dyn Write,
) -> Result<ExportStats> {
    export_with(new, old, cmp, out, &ExportOptions::default())
}

/// [`export`] with owners mapped from host to container ids (`--userns-remap`).
pub fn export_with(
    new: &Tree,
    old: Option<&Tree>,
    cmp: Compare,
    out: &mut dyn Write,
    opts: &ExportOptions,
) -> Result<ExportStats> {
    let sink = export::TarSink::new(Some(out), opts.clone());
    walk::Walker::new(new, old, cmp, sink).run()?.finish()
}

/// The size Docker reports for these changes (`docker ps -s`, `system df`): its
/// `archive.ChangesSize`, the `lstat` size of every added or changed entry that is not a
/// directory (symlinks count their target's length), an inode linked more than once counted
/// once. Reads no file content.
pub fn size(new: &Tree, old: Option<&Tree>, cmp: Compare) -> Result<u64> {
    let sink = export::TarSink::<std::io::Sink>::new(None, ExportOptions::default());
    Ok(walk::Walker::new(new, old, cmp, sink)
        .run()?
        .finish()?
        .changes_size)
}
