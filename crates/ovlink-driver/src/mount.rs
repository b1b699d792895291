//! Mounting and unmounting overlayfs, building the option string, and reading the mount
//! table. The option string holds exactly one `lowerdir` (the legacy layout), plus only the
//! options the running kernel knows ([`crate::checks::OverlayFeatures`]).

use crate::checks::{OverlayFeatures, OVERLAYFS_MAGIC};
use crate::error::{DriverError, Result};
use rustix::io::Errno;
use rustix::mount::{MountFlags, UnmountFlags};
use std::path::{Path, PathBuf};

/// The kernel rejects mount data longer than one page.
pub const MAX_OPTIONS_LEN: usize = 4096 - 1;

/// Builds `lowerdir=…,upperdir=…,workdir=…` plus the feature-off options and an SELinux
/// `context=` for a mount label.
pub fn overlay_options(
    lower: &Path,
    upper: &Path,
    work: &Path,
    features: &OverlayFeatures,
    mount_label: Option<&str>,
) -> String {
    let mut s = format!(
        "lowerdir={},upperdir={},workdir={}",
        lower.display(),
        upper.display(),
        work.display()
    );
    for o in features.off_options() {
        s.push(',');
        s.push_str(o);
    }
    if let Some(label) = mount_label.filter(|l| !l.is_empty()) {
        s.push_str(&format!(",context=\"{label}\""));
    }
    s
}

/// Mounts overlay at `target` with `options`.
pub fn mount_overlay(target: &Path, options: &str) -> Result<()> {
    if options.len() > MAX_OPTIONS_LEN {
        return Err(DriverError::Mount {
            target: target.to_path_buf(),
            options: options.to_string(),
            source: std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!(
                    "mount options are {} bytes, more than one page",
                    options.len()
                ),
            ),
        });
    }
    let data = std::ffi::CString::new(options).map_err(|_| DriverError::Mount {
        target: target.to_path_buf(),
        options: options.to_string(),
        source: std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "mount options contain a NUL byte",
        ),
    })?;
    rustix::mount::mount(
        "overlay",
        target,
        "overlay",
        MountFlags::empty(),
        Some(data.as_c_str()),
    )
    .map_err(|e| DriverError::Mount {
        target: target.to_path_buf(),
        options: options.to_string(),
        source: e.into(),
    })
}

/// Unmounts `target` lazily (MNT_DETACH), retrying a few times on EBUSY.
/// Not mounted (EINVAL) or missing (ENOENT) is fine.
pub fn unmount(target: &Path) -> Result<()> {
    let mut tries = 0;
    loop {
        match rustix::mount::unmount(target, UnmountFlags::DETACH) {
            Ok(()) | Err(Errno::INVAL) | Err(Errno::NOENT) => return Ok(()),
            Err(Errno::BUSY) if tries < 10 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(20 * tries));
            }
            Err(e) => {
                return Err(DriverError::Unmount {
                    target: target.to_path_buf(),
                    source: e.into(),
                })
            }
        }
    }
}

/// True when `path` is the root of an overlay mount (statfs magic, as Docker checks).
pub fn is_overlay_mounted(path: &Path) -> bool {
    match rustix::fs::statfs(path) {
        Ok(st) => st.f_type as u64 == OVERLAYFS_MAGIC && is_mount_point(path),
        Err(_) => false,
    }
}

/// True when `path` is listed as a mount point in `/proc/self/mountinfo`.
pub fn is_mount_point(path: &Path) -> bool {
    mount_points().iter().any(|m| m == path)
}

/// All mount points, from `/proc/self/mountinfo` (octal escapes decoded).
pub fn mount_points() -> Vec<PathBuf> {
    let Ok(text) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(unescape(p)))
        .collect()
}

/// Unmounts everything at or below `dir`, deepest first, and removes the `merged/` mount
/// points it empties (a driver's `cleanup`).
pub fn unmount_all_under(dir: &Path) -> Result<()> {
    for m in mounts_under(dir) {
        unmount(&m)?;
        if m.file_name().is_some_and(|n| n == "merged") {
            let _ = std::fs::remove_dir(&m);
        }
    }
    Ok(())
}

/// The mount points at or below `dir`, deepest first.
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = mount_points()
        .into_iter()
        .filter(|m| m.starts_with(dir))
        .collect();
    v.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    v.dedup();
    v
}

fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::checks::Feature;

    #[test]
    fn options_string() {
        let none = OverlayFeatures::default();
        assert_eq!(
            overlay_options(
                Path::new("/h/a/root"),
                Path::new("/h/b/upper"),
                Path::new("/h/b/work"),
                &none,
                None
            ),
            "lowerdir=/h/a/root,upperdir=/h/b/upper,workdir=/h/b/work"
        );
        let on = Feature {
            known: true,
            on: true,
        };
        let all = OverlayFeatures {
            redirect_dir: on,
            index: on,
            metacopy: on,
        };
        assert_eq!(
            overlay_options(Path::new("/l"), Path::new("/u"), Path::new("/w"), &all, Some("system_u:object_r:container_file_t:s0")),
            "lowerdir=/l,upperdir=/u,workdir=/w,redirect_dir=off,index=off,metacopy=off,context=\"system_u:object_r:container_file_t:s0\""
        );
    }

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape("/a\\040b"), "/a b");
        assert_eq!(unescape("/plain"), "/plain");
    }

    #[test]
    fn too_long_options_refused_before_the_kernel() {
        let long = "x".repeat(5000);
        let err = mount_overlay(Path::new("/nonexistent"), &long).unwrap_err();
        assert!(err.to_string().contains("/nonexistent"));
    }
}
