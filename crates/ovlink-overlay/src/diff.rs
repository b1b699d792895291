//! Layer diffs of the overlay layout: `diff` (a Docker layer tar), `changes` (`docker diff`)
//! and `diff_size`, built on [`ovlink_diff`].
//!
//! A container layer is diffed natively from its `upper/` over the lower root: against its
//! image layer (or no parent) the upper dir alone, against another container layer on the
//! same lower root (Docker's `-init` layer, whose upper was copied into this one at create)
//! the two upper dirs side by side. The layer (and a container parent) stay locked while
//! their upper dirs are read; reading while mounted is fine. When the upper dir is not a
//! plain diff (it carries `redirect_dir` or `metacopy` xattrs) or the driver was initialized
//! with [`DiffMode::Naive`],
//! the layer is mounted and its merged view compared with the parent's by metadata, as
//! Docker's legacy driver always did. An image layer's `root/` is compared with its
//! parent's; unchanged files are the parent's inodes, so only changed ones are read.
//!
//! This module never writes into a layer; the naive path only mounts (`get`) and releases
//! (`put`) what it mounted.

use crate::OverlayDriver;
use ovlink_diff::{Compare, DiffError};
use ovlink_driver::diffplan::DiffPlan;
use ovlink_driver::error::diff_err;
use ovlink_driver::lock::DirLock;
use ovlink_driver::{validate_id, Change, Driver, DriverError, LayerKind, Result};
use std::io::Write;
use std::path::PathBuf;

pub use ovlink_driver::DiffMode;

/// The `status` line saying which diff `mode` makes.
pub fn status_line(mode: DiffMode) -> (String, String) {
    let mode = match mode {
        DiffMode::Naive => "naive (merged vs lower; --diff-mode naive)",
        DiffMode::Auto => "native (upper dir)",
    };
    ("Diff mode".to_string(), mode.to_string())
}

fn lock(d: &OverlayDriver, id: &str) -> Result<DirLock> {
    Ok(d.home_dir().lock_layer(id)?.1)
}

fn parent_kind(d: &OverlayDriver, id: &str, parent: &str) -> Result<LayerKind> {
    d.layer_kind(parent).map_err(|e| e.as_parent_of(id))
}

fn root_of(d: &OverlayDriver, id: &str) -> PathBuf {
    d.home().join(id).join("root")
}

fn upper_of(d: &OverlayDriver, id: &str) -> PathBuf {
    d.home().join(id).join("upper")
}

impl OverlayDriver {
    /// What to compare for [`Driver::diff`] and its kin (see the module docs), in the mode
    /// the driver was initialized with.
    pub(crate) fn plan_diff(&self, id: &str, parent: Option<&str>) -> Result<DiffPlan<'_>> {
        plan(self, id, parent, self.diff_mode())
    }

    /// The `status` line saying which diff is active.
    pub(crate) fn diff_status(&self) -> (String, String) {
        status_line(self.diff_mode())
    }
}

/// Builds the trees for `id` against `parent`.
fn plan<'d>(
    d: &'d OverlayDriver,
    id: &str,
    parent: Option<&str>,
    mode: DiffMode,
) -> Result<DiffPlan<'d>> {
    validate_id(id)?;
    if let Some(p) = parent {
        validate_id(p)?;
    }
    let mut plan = DiffPlan::new(d, d.home_dir(), id);
    // Owners back to container ids under --userns-remap (the apply mapped them to host ids).
    plan.export = d.home_dir().export_options();
    let pkind = match parent {
        Some(p) => Some(parent_kind(d, id, p)?),
        None => None,
    };
    match d.layer_kind(id)? {
        LayerKind::Image => {
            plan.new = Some(plan.plain(&root_of(d, id))?);
            plan.old = match (parent, pkind) {
                (Some(p), Some(LayerKind::Image)) => Some(plan.plain(&root_of(d, p))?),
                (Some(p), Some(LayerKind::Container { .. })) => {
                    let merged = plan.mount(p)?;
                    Some(plan.plain(&merged)?)
                }
                (Some(p), Some(_)) => return Err(incomplete(p)),
                _ => None,
            };
        }
        LayerKind::Container { lower_id } => {
            // Native when the parent is our lower layer, or a container on the same lower.
            let native_parent = match (parent, &pkind) {
                (None, _) => Some(None),
                (Some(p), _) if p == lower_id => Some(None),
                (Some(p), Some(LayerKind::Container { lower_id: l })) if *l == lower_id => {
                    Some(Some(p))
                }
                _ => None,
            };
            if let (Some(pp), false) = (native_parent, mode == DiffMode::Naive) {
                plan.locks.push(lock(d, id)?);
                if let Some(p) = pp.filter(|p| *p != id) {
                    plan.locks.push(lock(d, p)?);
                }
                let plain = [Some(id), pp]
                    .into_iter()
                    .flatten()
                    .try_for_each(|l| ovlink_diff::check_plain_upper(&upper_of(d, l)));
                match plain {
                    Ok(()) => {
                        let lower = root_of(d, &lower_id);
                        plan.new = Some(plan.overlay(Some(&upper_of(d, id)), &lower)?);
                        let pu = pp.map(|p| upper_of(d, p));
                        plan.old = Some(plan.overlay(pu.as_deref(), &lower)?);
                        return Ok(plan);
                    }
                    Err(DiffError::NotPlainUpper { .. }) => plan.locks.clear(),
                    Err(e) => return Err(diff_err(id)(e)),
                }
            }
            // Naive: the merged view against the parent's view, by metadata.
            plan.cmp = Compare::Naive;
            let merged = plan.mount(id)?;
            plan.new = Some(plan.plain(&merged)?);
            let old_root = match (parent, pkind) {
                (None, _) => root_of(d, &lower_id),
                (Some(p), Some(LayerKind::Image)) => root_of(d, p),
                (Some(p), Some(LayerKind::Container { .. })) => plan.mount(p)?,
                (Some(p), _) => return Err(incomplete(p)),
            };
            plan.old = Some(plan.plain(&old_root)?);
        }
        LayerKind::Incomplete => return Err(incomplete(id)),
    }
    Ok(plan)
}

fn incomplete(id: &str) -> DriverError {
    DriverError::incomplete(id, "an image or container layer")
}

/// [`Driver::diff`] with an explicit mode: the Docker layer tar of what `id` changed
/// against `parent`.
pub fn diff_with(
    d: &OverlayDriver,
    id: &str,
    parent: Option<&str>,
    mode: DiffMode,
    out: &mut dyn Write,
) -> Result<()> {
    plan(d, id, parent, mode)?.export(out)
}

/// [`Driver::changes`] with an explicit mode: the list `docker diff` prints, sorted by path.
pub fn changes_with(
    d: &OverlayDriver,
    id: &str,
    parent: Option<&str>,
    mode: DiffMode,
) -> Result<Vec<Change>> {
    plan(d, id, parent, mode)?.changes()
}

/// [`Driver::diff_size`] with an explicit mode: Docker's `ChangesSize` of the changes.
pub fn diff_size_with(
    d: &OverlayDriver,
    id: &str,
    parent: Option<&str>,
    mode: DiffMode,
) -> Result<u64> {
    plan(d, id, parent, mode)?.size()
}
