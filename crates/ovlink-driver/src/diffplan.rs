//! How a layer is diffed, once for both layouts: a layout says *what* to compare (a
//! [`DiffPlan`]: the new and old trees, how to compare them, and what keeps them in place),
//! this module makes the Docker layer tar, the change list and the size from it with
//! [`ovlink_diff`].
//!
//! This module never writes into a layer and never mounts: what a plan mounted (through the
//! driver's `get`, or a read-only view the layout mounted itself) is released when the plan
//! is dropped (`put`, or an unmount), after its trees' file descriptors are closed and its
//! locks released, and before its temporary directories are removed.

use crate::error::{diff_err, DriverError, Result};
use crate::home::Home;
use crate::lock::{DirLock, TempDir};
use crate::{Change, Driver};
use ovlink_diff::{Compare, ExportOptions, Tree};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The trees of one diff of layer `id` and what keeps them in place.
pub struct DiffPlan<'d> {
    id: String,
    /// The layer's view (or its own changes over the lower view).
    pub new: Option<Tree>,
    /// The parent's view (`None`: nothing below).
    pub old: Option<Tree>,
    /// How entries are compared (by content for plain upper dirs, by metadata for naive).
    pub cmp: Compare,
    /// Layer locks held while the trees are read.
    pub locks: Vec<DirLock>,
    /// Temporary directories the trees use (an empty lower, ...).
    pub temps: Vec<TempDir>,
    /// Layers this plan mounted with `get` (released with `put` on drop).
    pub mounted: Vec<String>,
    /// Read-only mounts the layout made for this plan (a layer's view that writes into no
    /// layer, in one of [`DiffPlan::temps`]), unmounted on drop.
    pub views: Vec<PathBuf>,
    /// When set, the size is the layout's own: Docker's `directory.Size` of this directory
    /// (overlay2's `diff/` against its own parent), not the changes' size.
    pub size_of_dir: Option<PathBuf>,
    /// Owners of the exported tar (back to container ids under --userns-remap).
    pub export: ExportOptions,
    driver: &'d dyn Driver,
    home: &'d Home,
}

impl<'d> DiffPlan<'d> {
    /// An empty plan for layer `id` of `driver` (on `home`), to be filled by the layout.
    pub fn new(driver: &'d dyn Driver, home: &'d Home, id: &str) -> Self {
        DiffPlan {
            id: id.to_string(),
            new: None,
            old: None,
            cmp: Compare::Exact,
            locks: Vec::new(),
            temps: Vec::new(),
            mounted: Vec::new(),
            views: Vec::new(),
            size_of_dir: None,
            export: ExportOptions::default(),
            driver,
            home,
        }
    }

    /// Mounts layer `id` with the driver's `get` (released on drop) and returns its view.
    pub fn mount(&mut self, id: &str) -> Result<PathBuf> {
        let dir = self.driver.get(id, None)?;
        self.mounted.push(id.to_string());
        Ok(dir)
    }

    /// A plain tree of `dir`, its error naming the layer diffed.
    pub fn plain(&self, dir: &Path) -> Result<Tree> {
        Tree::plain(dir).map_err(diff_err(&self.id))
    }

    /// An upper dir (`None`: an empty one) over `lower`, its error naming the layer diffed.
    pub fn overlay(&self, upper: Option<&Path>, lower: &Path) -> Result<Tree> {
        Tree::overlay(upper, lower).map_err(diff_err(&self.id))
    }

    fn trees(&self) -> Result<(&Tree, Option<&Tree>)> {
        match &self.new {
            Some(n) => Ok((n, self.old.as_ref())),
            None => Err(DriverError::Unsupported { what: "diff" }),
        }
    }

    /// [`Driver::diff`]: writes the Docker layer tar of the changes to `out` (ENOSPC writing
    /// it, as commit and save do under the root, says which resource ran out).
    pub fn export(&self, out: &mut dyn Write) -> Result<()> {
        let (new, old) = self.trees()?;
        ovlink_diff::export_with(new, old, self.cmp, out, &self.export)
            .map(|_| ())
            .map_err(diff_err(&self.id))
            .map_err(|e| self.home.classify(e))
    }

    /// [`Driver::changes`]: the list `docker diff` prints, sorted by path.
    pub fn changes(&self) -> Result<Vec<Change>> {
        let (new, old) = self.trees()?;
        ovlink_diff::changes(new, old, self.cmp).map_err(diff_err(&self.id))
    }

    /// [`Driver::diff_size`]: Docker's `ChangesSize` of the changes (regular files and
    /// symlinks, hardlinked inodes once; see [`ovlink_diff::size`]), or the layout's own
    /// size ([`DiffPlan::size_of_dir`]).
    pub fn size(&self) -> Result<u64> {
        if let Some(dir) = &self.size_of_dir {
            return dir_size(&self.id, dir);
        }
        let (new, old) = self.trees()?;
        ovlink_diff::size(new, old, self.cmp).map_err(diff_err(&self.id))
    }
}

impl Drop for DiffPlan<'_> {
    fn drop(&mut self) {
        self.new.take();
        self.old.take();
        self.locks.clear();
        for id in self.mounted.drain(..) {
            let _ = self.driver.put(&id);
        }
        for view in self.views.drain(..) {
            // Left mounted, the temporary directory stays too (its removal cannot cross a
            // read-only mount), and the next init's reaping unmounts and removes it.
            let _ = crate::mount::unmount(&view);
        }
        self.temps.clear();
    }
}

/// Docker's `directory.Size` of `dir`: every entry that is not a directory (symlinks count
/// their target's length, whiteouts 0), an inode linked more than once counted once.
pub fn dir_size(id: &str, dir: &Path) -> Result<u64> {
    let all = Tree::plain(dir).map_err(diff_err(id))?;
    ovlink_diff::size(&all, None, Compare::Exact).map_err(diff_err(id))
}
