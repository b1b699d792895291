//! Layer diffs of the overlay2 layout — `diff` (a Docker layer tar), `changes` (`docker diff`)
//! and `diff_size` — built on [`ovlink_diff`], with Docker's overlay2 rules:
//!
//! - Against the layer's own parent (its nearest lower, or none for a bottom layer), natively:
//!   `<id>/diff/` is an overlay upper dir over the parent's view (the parent's merged mount, or
//!   its `diff/` for a bottom layer), so only what `diff/` names is looked at. The size (also
//!   what ApplyDiff returns) is Docker's `directory.Size` of `diff/` (every entry that is not
//!   a directory, hardlinked inodes once).
//! - Against any other parent, when `diff/` is not a plain upper (`redirect_dir`/`metacopy`
//!   xattrs), or with [`ovlink_driver::DiffMode::Naive`]: Docker's naive diff, the layer's merged view
//!   compared with the parent's by metadata, and the size Docker's `ChangesSize`.
//!
//! The layer stays locked while its `diff/` is read; what was mounted for a diff is released
//! (`put`) when it ends. This module never writes into a layer.

use crate::driver::Overlay2Driver;
use ovlink_diff::{Compare, DiffError, Tree};
use ovlink_driver::diff::{diff_err, lock_in, to_changes};
use ovlink_driver::error::{DriverError, Result};
use ovlink_driver::lock::{DirLock, TempDir};
use ovlink_driver::{Change, Driver};
use ovlink_fs::at::open_dir;
use std::io::Write;
use std::path::PathBuf;

/// The trees of one diff, what keeps them in place, and what was mounted for them.
struct Plan<'d> {
    new: Option<Tree>,
    old: Option<Tree>,
    cmp: Compare,
    /// Native against the own parent: the size is `directory.Size` of `diff/`.
    native: bool,
    diff_dir: PathBuf,
    _empty: Option<TempDir>,
    lock: Option<DirLock>,
    mounted: Vec<String>,
    driver: &'d Overlay2Driver,
}

impl Drop for Plan<'_> {
    fn drop(&mut self) {
        self.new.take();
        self.old.take();
        self.lock.take();
        for id in self.mounted.drain(..) {
            let _ = self.driver.put(&id);
        }
    }
}

fn plan<'d>(d: &'d Overlay2Driver, id: &str, parent: Option<&str>) -> Result<Plan<'d>> {
    let own_parent = d.parent(id)?;
    if let Some(p) = parent {
        if !d.exists(p) {
            return Err(DriverError::ParentNotFound {
                id: id.to_string(),
                parent: p.to_string(),
            });
        }
    }
    let diff_dir = d.home().join(id).join("diff");
    let mut plan = Plan {
        new: None,
        old: None,
        cmp: Compare::Exact,
        native: false,
        diff_dir: diff_dir.clone(),
        _empty: None,
        lock: None,
        mounted: Vec::new(),
        driver: d,
    };
    let plain = match ovlink_diff::check_plain_upper(&diff_dir) {
        Ok(()) => true,
        Err(DiffError::NotPlainUpper { .. }) => false,
        Err(e) => return Err(diff_err(id)(e)),
    };
    if parent == own_parent.as_deref() && plain && d.diff_mode() != ovlink_driver::DiffMode::Naive {
        plan.lock = Some(lock_in(d.home(), id)?);
        let lower = match parent {
            Some(p) => {
                let v = d.get(p, None)?;
                plan.mounted.push(p.to_string());
                v
            }
            None => {
                // A bottom layer: its diff/ over nothing.
                let home = open_dir(d.home())?;
                let t = TempDir::new(&home, d.home(), ".tmp-diff-empty-", 0o700)?;
                let p = t.path();
                plan._empty = Some(t);
                p
            }
        };
        plan.new = Some(Tree::overlay(Some(&diff_dir), &lower).map_err(diff_err(id))?);
        plan.old = Some(Tree::overlay(None, &lower).map_err(diff_err(id))?);
        plan.native = true;
        return Ok(plan);
    }
    // Docker's naive diff: the merged views compared by metadata.
    plan.cmp = Compare::Naive;
    let new = d.get(id, None)?;
    plan.mounted.push(id.to_string());
    plan.new = Some(Tree::plain(&new).map_err(diff_err(id))?);
    if let Some(p) = parent {
        let old = d.get(p, None)?;
        plan.mounted.push(p.to_string());
        plan.old = Some(Tree::plain(&old).map_err(diff_err(id))?);
    }
    Ok(plan)
}

impl Plan<'_> {
    fn trees(&self) -> Result<(&Tree, Option<&Tree>)> {
        match &self.new {
            Some(n) => Ok((n, self.old.as_ref())),
            None => Err(DriverError::Unsupported { what: "diff" }),
        }
    }
}

/// [`Driver::diff`] of the overlay2 layout.
pub fn diff(d: &Overlay2Driver, id: &str, parent: Option<&str>, out: &mut dyn Write) -> Result<()> {
    let plan = plan(d, id, parent)?;
    let (new, old) = plan.trees()?;
    ovlink_diff::export(new, old, plan.cmp, out).map_err(diff_err(id))?;
    Ok(())
}

/// [`Driver::changes`] of the overlay2 layout, sorted by path.
pub fn changes(d: &Overlay2Driver, id: &str, parent: Option<&str>) -> Result<Vec<Change>> {
    let plan = plan(d, id, parent)?;
    let (new, old) = plan.trees()?;
    let list = ovlink_diff::changes(new, old, plan.cmp).map_err(diff_err(id))?;
    Ok(to_changes(list))
}

/// Docker's `directory.Size` of layer `id`'s `diff/`: every entry that is not a directory
/// (symlinks count their target's length, whiteouts 0), an inode linked more than once
/// counted once. What Docker's overlay2 returns from ApplyDiff and DiffSize.
pub fn dir_size(id: &str, diff_dir: &std::path::Path) -> Result<u64> {
    let all = Tree::plain(diff_dir).map_err(diff_err(id))?;
    ovlink_diff::size(&all, None, Compare::Exact).map_err(diff_err(id))
}

/// [`Driver::diff_size`] of the overlay2 layout: Docker's `directory.Size` of `diff/` against
/// the own parent, else its `ChangesSize` of the naive changes.
pub fn diff_size(d: &Overlay2Driver, id: &str, parent: Option<&str>) -> Result<u64> {
    let plan = plan(d, id, parent)?;
    if plan.native {
        return dir_size(id, &plan.diff_dir);
    }
    let (new, old) = plan.trees()?;
    ovlink_diff::size(new, old, plan.cmp).map_err(diff_err(id))
}
