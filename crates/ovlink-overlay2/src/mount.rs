//! Building overlay2's mount option string and mounting it.
//!
//! Docker first builds `lowerdir=<home>/l/A:<home>/l/B,upperdir=<home>/<id>/diff,
//! workdir=<home>/<id>/work`. When that is longer than one page (the kernel's limit for mount
//! data; a deep chain under a long home gets there), it uses paths relative to the home
//! (`lowerdir=l/A:l/B,upperdir=<id>/diff,workdir=<id>/work`) and mounts from a process whose
//! working directory is the home. ovlink does the same in a short-lived thread that first
//! unshares its filesystem context (`CLONE_FS`: working directory, root and umask only), so
//! the `chdir` never affects the rest of the process.
//!
//! This module never builds an option string from an unchecked name: ids and short ids are
//! validated by the caller, and every path and the label go through
//! [`ovlink_driver::mount::option_path`] and [`ovlink_driver::mount::label_option`] (no `,`
//! `:` `\` `=` or whitespace can reach the string).

use ovlink_driver::checks::OverlayFeatures;
use ovlink_driver::error::{DriverError, Result};
use ovlink_driver::mount::{mount_error, option_path, MAX_OPTIONS_LEN};
use rustix::fd::{AsFd, BorrowedFd};
use rustix::mount::MountFlags;
use std::path::{Path, PathBuf};

/// What to mount: the layer's short-link lowers (`l/XXX`, nearest first), its id, and the
/// label.
#[derive(Debug, Clone)]
pub struct MountSpec<'a> {
    /// The driver home.
    pub home: &'a Path,
    /// The layer id.
    pub id: &'a str,
    /// The `lower` file's entries (`l/XXX`), nearest first.
    pub lowers: &'a [String],
    /// Feature-off options of this kernel.
    pub features: &'a OverlayFeatures,
    /// SELinux mount label.
    pub mount_label: Option<&'a str>,
}

/// How a layer will be mounted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountPlan {
    /// Absolute paths fit in a page: an ordinary mount at the absolute target.
    Absolute {
        /// The option string.
        options: String,
    },
    /// Relative paths, mounted with the home as working directory.
    Relative {
        /// The option string (paths relative to the home).
        options: String,
    },
}

impl MountPlan {
    /// The option string of either kind.
    pub fn options(&self) -> &str {
        match self {
            MountPlan::Absolute { options } | MountPlan::Relative { options } => options,
        }
    }
}

fn tail(s: &mut String, spec: &MountSpec<'_>) -> Result<()> {
    ovlink_driver::mount::push_tail(s, spec.features, spec.mount_label)
}

/// `<prefix>/<lower>` for each lower, every path checked ([`option_path`]), joined by `:`.
fn lowerdir(prefix: Option<&Path>, lowers: &[String]) -> Result<String> {
    let mut v = Vec::with_capacity(lowers.len());
    for l in lowers {
        let p = match prefix {
            Some(h) => h.join(l),
            None => PathBuf::from(l),
        };
        v.push(option_path("lowerdir", &p)?.to_string());
    }
    Ok(v.join(":"))
}

/// The option string with absolute paths (what Docker tries first, and what a layout hands to
/// another mounter, which shortens it itself when it exceeds a page, as containerd does).
pub fn absolute(spec: &MountSpec<'_>) -> Result<String> {
    let layer = spec.home.join(spec.id);
    let mut abs = format!(
        "lowerdir={},upperdir={},workdir={}",
        lowerdir(Some(spec.home), spec.lowers)?,
        option_path("upperdir", &layer.join("diff"))?,
        option_path("workdir", &layer.join("work"))?,
    );
    tail(&mut abs, spec)?;
    Ok(abs)
}

/// Chooses absolute or relative options as Docker does; an error when even the relative form
/// exceeds a page.
pub fn plan(spec: &MountSpec<'_>) -> Result<MountPlan> {
    let abs = absolute(spec)?;
    if abs.len() <= MAX_OPTIONS_LEN {
        return Ok(MountPlan::Absolute { options: abs });
    }
    let rel_layer = Path::new(spec.id);
    let mut rel = format!(
        "lowerdir={},upperdir={},workdir={}",
        lowerdir(None, spec.lowers)?,
        option_path("upperdir", &rel_layer.join("diff"))?,
        option_path("workdir", &rel_layer.join("work"))?,
    );
    tail(&mut rel, spec)?;
    if rel.len() > MAX_OPTIONS_LEN {
        return Err(DriverError::Mount {
            target: spec.home.join(spec.id).join("merged"),
            options: rel.clone(),
            source: std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!(
                    "cannot mount layer, mount options are {} bytes even with paths relative \
                     to the home (one page is {} bytes)",
                    rel.len(),
                    MAX_OPTIONS_LEN + 1
                ),
            ),
        });
    }
    Ok(MountPlan::Relative { options: rel })
}

fn mount_err(target: PathBuf, options: &str, source: std::io::Error) -> DriverError {
    mount_error(&target, options, source)
}

/// Mounts layer `spec.id` at `<home>/<id>/merged` by `plan`. `home_fd` is the open home.
pub fn mount(spec: &MountSpec<'_>, home_fd: BorrowedFd<'_>, plan: &MountPlan) -> Result<()> {
    let rel = PathBuf::from(spec.id).join("merged");
    mount_at(spec.home, home_fd, &rel, plan, MountFlags::empty())
}

/// The read-only view of a layer stack: `lowerdir=<layers, nearest first>` and no upper dir,
/// mounted read-only at `<home>/<target>`, so that nothing is written into any of the layers
/// (an overlay without an upper layer has nowhere to write, not even its own xattrs). Needs
/// at least two layers (a single one is its own view). Absolute paths when they fit a page,
/// else relative to the home, as [`plan`].
pub fn mount_view(
    home: &Path,
    home_fd: BorrowedFd<'_>,
    layers: &[String],
    features: &OverlayFeatures,
    target: &Path,
) -> Result<()> {
    let mut abs = format!("lowerdir={}", lowerdir(Some(home), layers)?);
    ovlink_driver::mount::push_tail(&mut abs, features, None)?;
    let plan = if abs.len() <= MAX_OPTIONS_LEN {
        MountPlan::Absolute { options: abs }
    } else {
        let mut rel = format!("lowerdir={}", lowerdir(None, layers)?);
        ovlink_driver::mount::push_tail(&mut rel, features, None)?;
        MountPlan::Relative { options: rel }
    };
    mount_at(home, home_fd, target, &plan, MountFlags::RDONLY)
}

/// Mounts an overlay with `plan`'s options at `<home>/<rel_target>`: at the absolute path, or
/// for relative options from a thread whose working directory is the home.
fn mount_at(
    home: &Path,
    home_fd: BorrowedFd<'_>,
    rel_target: &Path,
    plan: &MountPlan,
    flags: MountFlags,
) -> Result<()> {
    let target = home.join(rel_target);
    let options = plan.options();
    let data = std::ffi::CString::new(options).map_err(|_| {
        mount_err(
            target.clone(),
            options,
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "mount options contain a NUL byte",
            ),
        )
    })?;
    match plan {
        MountPlan::Absolute { .. } => {
            rustix::mount::mount("overlay", &target, "overlay", flags, Some(data.as_c_str()))
                .map_err(|e| mount_err(target.clone(), options, e.into()))
        }
        MountPlan::Relative { .. } => {
            let home = rustix::io::dup(home_fd)
                .map_err(|e| mount_err(target.clone(), options, e.into()))?;
            let res = std::thread::scope(|s| {
                s.spawn(move || -> std::io::Result<()> {
                    unshare_fs()?;
                    rustix::process::fchdir(home.as_fd())?;
                    rustix::mount::mount(
                        "overlay",
                        rel_target,
                        "overlay",
                        flags,
                        Some(data.as_c_str()),
                    )?;
                    Ok(())
                })
                .join()
            });
            match res {
                Ok(r) => r.map_err(|e| mount_err(target.clone(), options, e)),
                Err(_) => Err(mount_err(
                    target.clone(),
                    options,
                    std::io::Error::other("the mount thread panicked"),
                )),
            }
        }
    }
}

/// Gives the calling thread its own working directory, root and umask (`unshare(CLONE_FS)`).
///
/// rustix deprecates its safe `unshare` because `CLONE_FILES` can invalidate file descriptors
/// other threads rely on; `CLONE_FS` alone changes none of that, so this use is sound.
#[allow(deprecated)]
fn unshare_fs() -> std::io::Result<()> {
    rustix::thread::unshare(rustix::thread::UnshareFlags::FS)?;
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn lowers(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("l/{:A>26}", i)).collect()
    }

    #[test]
    fn absolute_when_it_fits() {
        let f = OverlayFeatures::default();
        let l = lowers(2);
        let spec = MountSpec {
            home: Path::new("/h"),
            id: "c",
            lowers: &l,
            features: &f,
            mount_label: None,
        };
        assert_eq!(
            plan(&spec).unwrap(),
            MountPlan::Absolute {
                options: format!(
                    "lowerdir=/h/{}:/h/{},upperdir=/h/c/diff,workdir=/h/c/work",
                    l[0], l[1]
                )
            }
        );
    }

    #[test]
    fn relative_for_a_deep_chain_and_error_beyond() {
        let f = OverlayFeatures::default();
        let l = lowers(128);
        let home = PathBuf::from(format!("/{}", "x".repeat(60)));
        let id = "a".repeat(64);
        let spec = MountSpec {
            home: &home,
            id: &id,
            lowers: &l,
            features: &f,
            mount_label: None,
        };
        match plan(&spec).unwrap() {
            MountPlan::Relative { options } => {
                assert!(options.starts_with("lowerdir=l/"));
                assert!(options.ends_with(&format!("upperdir={id}/diff,workdir={id}/work")));
                assert!(options.len() <= MAX_OPTIONS_LEN);
            }
            p => panic!("expected a relative plan, got {p:?}"),
        }
        let label = "y".repeat(500);
        let spec = MountSpec {
            mount_label: Some(&label),
            ..spec
        };
        assert!(plan(&spec).is_err());
    }
}
