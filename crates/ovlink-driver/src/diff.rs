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

use crate::error::{DriverError, Result};
use crate::lock::DirLock;
use crate::overlay::OverlayDriver;
use crate::{validate_id, Change, ChangeKind, Driver, LayerKind};
use ovlink_diff::{Compare, DiffError, Tree};
use ovlink_fs::at::{open_dir, open_dir_at};
use std::io::Write;
use std::path::PathBuf;

pub use crate::config::DiffMode;

/// The `status` line saying which diff is active.
pub fn status_line(mode: DiffMode) -> (String, String) {
    let mode = match mode {
        DiffMode::Naive => "naive (merged vs lower; --diff-mode naive)",
        DiffMode::Auto => "native (upper dir)",
    };
    ("Diff mode".to_string(), mode.to_string())
}

/// The two trees of one diff, the locks that keep them in place, and what was mounted for
/// them (released on drop, after the trees' descriptors are closed).
struct Plan<'d> {
    new: Option<Tree>,
    old: Option<Tree>,
    cmp: Compare,
    locks: Vec<DirLock>,
    mounted: Vec<String>,
    driver: &'d OverlayDriver,
}

impl Drop for Plan<'_> {
    fn drop(&mut self) {
        self.new.take();
        self.old.take();
        self.locks.clear();
        for id in self.mounted.drain(..) {
            let _ = self.driver.put(&id);
        }
    }
}

impl Plan<'_> {
    fn trees(&self) -> Result<(&Tree, Option<&Tree>)> {
        match &self.new {
            Some(n) => Ok((n, self.old.as_ref())),
            None => Err(DriverError::Unsupported { what: "diff" }),
        }
    }
}

/// Wraps a diff error with the layer it was about (both layouts).
pub fn diff_err(id: &str) -> impl Fn(DiffError) -> DriverError + '_ {
    move |source| DriverError::Diff {
        id: id.to_string(),
        source,
    }
}

fn lock(d: &OverlayDriver, id: &str) -> Result<DirLock> {
    lock_in(d.home(), id)
}

/// Locks layer `id`'s directory in `home` through its own open file description (both
/// layouts), or `LayerNotFound`.
pub fn lock_in(home_path: &std::path::Path, id: &str) -> Result<DirLock> {
    let home = open_dir(home_path)?;
    let path = home_path.join(id);
    let fd = match open_dir_at(&home, id, &path) {
        Ok(fd) => fd,
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::NOENT.raw_os_error()) => {
            return Err(DriverError::LayerNotFound { id: id.to_string() })
        }
        Err(e) => return Err(e.into()),
    };
    DirLock::lock(fd, &path)
}

fn parent_kind(d: &OverlayDriver, id: &str, parent: &str) -> Result<LayerKind> {
    d.layer_kind(parent).map_err(|e| match e {
        DriverError::LayerNotFound { .. } => DriverError::ParentNotFound {
            id: id.to_string(),
            parent: parent.to_string(),
        },
        e => e,
    })
}

fn root_of(d: &OverlayDriver, id: &str) -> PathBuf {
    d.home().join(id).join("root")
}

fn upper_of(d: &OverlayDriver, id: &str) -> PathBuf {
    d.home().join(id).join("upper")
}

/// Builds the trees for `id` against `parent`.
fn plan<'d>(
    d: &'d OverlayDriver,
    id: &str,
    parent: Option<&str>,
    mode: DiffMode,
) -> Result<Plan<'d>> {
    validate_id(id)?;
    if let Some(p) = parent {
        validate_id(p)?;
    }
    let mut plan = Plan {
        new: None,
        old: None,
        cmp: Compare::Exact,
        locks: Vec::new(),
        mounted: Vec::new(),
        driver: d,
    };
    let pkind = match parent {
        Some(p) => Some(parent_kind(d, id, p)?),
        None => None,
    };
    match d.layer_kind(id)? {
        LayerKind::Image => {
            plan.new = Some(Tree::plain(&root_of(d, id)).map_err(diff_err(id))?);
            plan.old = match (parent, pkind) {
                (Some(p), Some(LayerKind::Image)) => {
                    Some(Tree::plain(&root_of(d, p)).map_err(diff_err(id))?)
                }
                (Some(p), Some(LayerKind::Container { .. })) => {
                    let merged = d.get(p, None)?;
                    plan.mounted.push(p.to_string());
                    Some(Tree::plain(&merged).map_err(diff_err(id))?)
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
                        plan.new = Some(
                            Tree::overlay(Some(&upper_of(d, id)), &lower).map_err(diff_err(id))?,
                        );
                        let pu = pp.map(|p| upper_of(d, p));
                        plan.old =
                            Some(Tree::overlay(pu.as_deref(), &lower).map_err(diff_err(id))?);
                        return Ok(plan);
                    }
                    Err(DiffError::NotPlainUpper { .. }) => plan.locks.clear(),
                    Err(e) => return Err(diff_err(id)(e)),
                }
            }
            // Naive: the merged view against the parent's view, by metadata.
            plan.cmp = Compare::Naive;
            let merged = d.get(id, None)?;
            plan.mounted.push(id.to_string());
            plan.new = Some(Tree::plain(&merged).map_err(diff_err(id))?);
            let old_root = match (parent, pkind) {
                (None, _) => root_of(d, &lower_id),
                (Some(p), Some(LayerKind::Image)) => root_of(d, p),
                (Some(p), Some(LayerKind::Container { .. })) => {
                    let m = d.get(p, None)?;
                    plan.mounted.push(p.to_string());
                    m
                }
                (Some(p), _) => return Err(incomplete(p)),
            };
            plan.old = Some(Tree::plain(&old_root).map_err(diff_err(id))?);
        }
        LayerKind::Incomplete => return Err(incomplete(id)),
    }
    Ok(plan)
}

fn incomplete(id: &str) -> DriverError {
    DriverError::WrongKind {
        id: id.to_string(),
        is: "an incomplete layer",
        needs: "an image or container layer",
    }
}

/// [`Driver::diff`]: writes the Docker layer tar of what `id` changed against `parent`, with the
/// driver's [`DiffMode`].
pub fn diff(d: &OverlayDriver, id: &str, parent: Option<&str>, out: &mut dyn Write) -> Result<()> {
    diff_with(d, id, parent, d.diff_mode(), out)
}

/// [`diff`] with an explicit mode.
pub fn diff_with(
    d: &OverlayDriver,
    id: &str,
    parent: Option<&str>,
    mode: DiffMode,
    out: &mut dyn Write,
) -> Result<()> {
    let plan = plan(d, id, parent, mode)?;
    let (new, old) = plan.trees()?;
    // Owners back to container ids under --userns-remap (the apply mapped them to host ids).
    let (um, gm) = d.id_maps();
    let ranges = |maps: &[crate::IdMap]| {
        maps.iter()
            .map(|m| ovlink_diff::IdRange {
                container_id: m.container_id,
                host_id: m.host_id,
                size: m.size,
            })
            .collect()
    };
    let opts = ovlink_diff::ExportOptions {
        uid_maps: ranges(um),
        gid_maps: ranges(gm),
    };
    ovlink_diff::export_with(new, old, plan.cmp, out, &opts).map_err(diff_err(id))?;
    Ok(())
}

/// [`Driver::changes`]: the list `docker diff` prints, sorted by path.
pub fn changes(d: &OverlayDriver, id: &str, parent: Option<&str>) -> Result<Vec<Change>> {
    changes_with(d, id, parent, d.diff_mode())
}

/// [`changes`] with an explicit mode.
pub fn changes_with(
    d: &OverlayDriver,
    id: &str,
    parent: Option<&str>,
    mode: DiffMode,
) -> Result<Vec<Change>> {
    let plan = plan(d, id, parent, mode)?;
    let (new, old) = plan.trees()?;
    let list = ovlink_diff::changes(new, old, plan.cmp).map_err(diff_err(id))?;
    Ok(to_changes(list))
}

/// The driver's [`Change`]s from `ovlink-diff`'s (both layouts).
pub fn to_changes(list: Vec<ovlink_diff::Change>) -> Vec<Change> {
    list.into_iter()
        .map(|c| Change {
            path: c.path,
            kind: match c.kind {
                ovlink_diff::ChangeKind::Add => ChangeKind::Add,
                ovlink_diff::ChangeKind::Delete => ChangeKind::Delete,
                _ => ChangeKind::Modify,
            },
        })
        .collect()
}

/// [`Driver::diff_size`]: Docker's `ChangesSize` of the changes (regular files and symlinks,
/// hardlinked inodes once; see [`ovlink_diff::size`]).
pub fn diff_size(d: &OverlayDriver, id: &str, parent: Option<&str>) -> Result<u64> {
    diff_size_with(d, id, parent, d.diff_mode())
}

/// [`diff_size`] with an explicit mode.
pub fn diff_size_with(
    d: &OverlayDriver,
    id: &str,
    parent: Option<&str>,
    mode: DiffMode,
) -> Result<u64> {
    let plan = plan(d, id, parent, mode)?;
    let (new, old) = plan.trees()?;
    ovlink_diff::size(new, old, plan.cmp).map_err(diff_err(id))
}
