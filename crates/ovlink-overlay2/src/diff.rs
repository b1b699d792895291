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
//! The layer stays locked while its `diff/` is read. A parent (and an image layer diffed
//! naively) is read through a read-only view (its `diff/` alone, or a read-only overlay of it
//! over its lowers, with no upper dir), never a read-write mount of it; a container layer
//! through its counted mount. What was mounted for a diff is released when it ends. This
//! module never writes into a layer, and neither does the kernel on its behalf.

use crate::driver::Overlay2Driver;
use ovlink_diff::{Compare, DiffError};
use ovlink_driver::diffplan::DiffPlan;
use ovlink_driver::error::{diff_err, DriverError, Result};
use ovlink_driver::Driver;

impl Overlay2Driver {
    /// What to compare for [`Driver::diff`] and its kin on overlay2 (see the module docs).
    pub(crate) fn plan_diff(&self, id: &str, parent: Option<&str>) -> Result<DiffPlan<'_>> {
        plan(self, id, parent)
    }
}

fn plan<'d>(d: &'d Overlay2Driver, id: &str, parent: Option<&str>) -> Result<DiffPlan<'d>> {
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
    let mut plan = DiffPlan::new(d, d.home_dir(), id);
    let plain = match ovlink_diff::check_plain_upper(&diff_dir) {
        Ok(()) => true,
        Err(DiffError::NotPlainUpper { .. }) => false,
        Err(e) => return Err(diff_err(id)(e)),
    };
    if parent == own_parent.as_deref() && plain && d.diff_mode() != ovlink_driver::DiffMode::Naive {
        plan.locks.push(d.home_dir().lock_layer(id)?.1);
        let lower = match parent {
            Some(p) => d.read_only_view(&mut plan, p)?,
            None => {
                // A bottom layer: its diff/ over nothing.
                let t = d.home_dir().temp_dir(".tmp-diff-empty-", 0o700)?;
                let p = t.path();
                plan.temps.push(t);
                p
            }
        };
        plan.new = Some(plan.overlay(Some(&diff_dir), &lower)?);
        plan.old = Some(plan.overlay(None, &lower)?);
        // Native against the own parent: the size is `directory.Size` of `diff/`.
        plan.size_of_dir = Some(diff_dir);
        return Ok(plan);
    }
    // Docker's naive diff: the merged views compared by metadata.
    // A container layer is seen through its (shared, counted) mount, as a running container
    // sees it; an image layer and the parent through read-only views, which write into no
    // layer.
    plan.cmp = Compare::Naive;
    let new = match d.layer_kind(id)? {
        ovlink_driver::LayerKind::Container { .. } => plan.mount(id)?,
        _ => d.read_only_view(&mut plan, id)?,
    };
    plan.new = Some(plan.plain(&new)?);
    if let Some(p) = parent {
        let old = d.read_only_view(&mut plan, p)?;
        plan.old = Some(plan.plain(&old)?);
    }
    Ok(plan)
}
