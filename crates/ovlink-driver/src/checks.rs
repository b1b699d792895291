//! Host checks the legacy driver makes at init: overlay support, the backing filesystem,
//! d_type support, the kernel version, and which overlay features the kernel turns on by
//! default (so the mount can turn them off and the upper dir stays a plain diff).
//!
//! Each failing check becomes [`DriverError::HostCheck`] naming the cause and the fix.

use crate::error::{DriverError, Result};
use ovlink_fs::error::Context;
use rustix::fs::{Mode, OFlags};
use std::path::Path;
use std::process::Command;

/// Filesystem magic numbers (`statfs.f_type`) and the names Docker prints for them.
const FS_NAMES: &[(u64, &str)] = &[
    (0xEF53, "extfs"),
    (0x5846_5342, "xfs"),
    (0x9123_683E, "btrfs"),
    (0x0102_1994, "tmpfs"),
    (0x794C_7630, "overlayfs"),
    (0x2FC1_2FC1, "zfs"),
    (0x6175_6673, "aufs"),
    (0xF15F, "ecryptfs"),
    (0x6969, "nfs"),
    (0xF2F5_2010, "f2fs"),
    (0x7371_7368, "squashfs"),
    (0x8584_58F6, "ramfs"),
    (0x0000_4d44, "msdos"),
    (0x6573_5546, "fuse"),
];

/// The magic number of overlayfs, used to tell whether `merged/` is mounted.
pub const OVERLAYFS_MAGIC: u64 = 0x794C_7630;

/// Filesystems the legacy driver refuses as backing filesystem.
const REFUSED: &[&str] = &["overlayfs", "aufs", "zfs", "btrfs", "ecryptfs"];

/// The backing filesystem of `path`: its magic and Docker's name for it.
pub fn backing_fs(path: &Path) -> Result<(u64, String)> {
    let st = rustix::fs::statfs(path).ctx("statfs", path)?;
    let magic = st.f_type as u64;
    let name = FS_NAMES
        .iter()
        .find(|(m, _)| *m == magic)
        .map(|(_, n)| n.to_string())
        .unwrap_or_else(|| format!("<unknown 0x{magic:x}>"));
    Ok((magic, name))
}

/// Refuses a backing filesystem the legacy overlay driver cannot sit on.
pub fn check_backing_fs(path: &Path) -> Result<String> {
    let (_, name) = backing_fs(path)?;
    if REFUSED.contains(&name.as_str()) {
        return Err(DriverError::HostCheck {
            check: "backing filesystem",
            detail: format!(
                "{} is on {name}, which Docker's legacy overlay driver refuses as backing \
                 filesystem; put the ovlink root on ext4 or xfs (ftype=1) with --root",
                path.display()
            ),
        });
    }
    Ok(name)
}

/// Checks `/proc/filesystems` for overlay, after trying `modprobe overlay` once.
pub fn check_overlay_available() -> Result<()> {
    let has = || {
        std::fs::read_to_string("/proc/filesystems")
            .map(|s| {
                s.lines()
                    .any(|l| l.split_whitespace().last() == Some("overlay"))
            })
            .unwrap_or(false)
    };
    if has() {
        return Ok(());
    }
    let _ = Command::new("modprobe").arg("overlay").status();
    if has() {
        return Ok(());
    }
    Err(DriverError::HostCheck {
        check: "overlay support",
        detail: "the kernel does not list 'overlay' in /proc/filesystems, even after \
                 'modprobe overlay'; use a kernel built with CONFIG_OVERLAY_FS (3.18 or later)"
            .into(),
    })
}

/// The running kernel's version (major, minor, patch), from `uname`.
pub fn kernel_version() -> (u32, u32, u32) {
    let uts = rustix::system::uname();
    parse_release(&uts.release().to_string_lossy())
}

/// Parses a kernel release string like `6.18.44-fc-v669` or `3.18.0`.
pub fn parse_release(rel: &str) -> (u32, u32, u32) {
    let mut nums = rel
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().unwrap_or(0));
    (
        nums.next().unwrap_or(0),
        nums.next().unwrap_or(0),
        nums.next().unwrap_or(0),
    )
}

/// Refuses kernels older than 3.18 (overlayfs entered mainline as `overlay` in 3.18).
pub fn check_kernel() -> Result<()> {
    let v = kernel_version();
    if v < (3, 18, 0) {
        return Err(DriverError::HostCheck {
            check: "kernel version",
            detail: format!(
                "kernel {}.{}.{} is older than 3.18, the first with the 'overlay' filesystem; upgrade the kernel",
                v.0, v.1, v.2
            ),
        });
    }
    Ok(())
}

/// Whether the filesystem holding `dir` reports file types in `readdir` (d_type).
/// Creates and removes a small probe directory inside `dir`.
pub fn supports_dtype(dir: &Path) -> Result<bool> {
    // Fast path: an entry `dir` already holds (a layer, in an existing home) shows whether
    // readdir reports types, without writing anything. `.` and `..` do not count: some
    // filesystems report them as directories even without d_type. Only a type is trusted;
    // an unknown one is confirmed by the probe below.
    let fd = ovlink_fs::at::open_dir(dir)?;
    for ent in rustix::fs::Dir::new(fd).ctx("read directory", dir)? {
        let ent = ent.ctx("read directory", dir)?;
        let name = ent.file_name().to_bytes();
        if name != b"." && name != b".." {
            if ent.file_type() != rustix::fs::FileType::Unknown {
                return Ok(true);
            }
            break;
        }
    }
    // A flocked temporary directory with a random name: concurrent inits (threads or
    // processes) never share it, and another init's recovery never reaps it while in use.
    let parent = ovlink_fs::at::open_dir(dir)?;
    let tmp = crate::lock::TempDir::new(&parent, dir, ".tmp-dtype-", 0o700)?;
    let probe = tmp.path();
    let f = probe.join("f");
    rustix::fs::openat(
        tmp.fd(),
        "f",
        OFlags::CREATE | OFlags::WRONLY | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )
    .ctx("create", &f)?;
    let fd = ovlink_fs::at::open_dir(&probe)?;
    let it = rustix::fs::Dir::read_from(&fd).ctx("read directory", &probe)?;
    let mut ok = true;
    for ent in it {
        let ent = ent.ctx("read directory", &probe)?;
        if ent.file_name().to_bytes() == b"f" {
            ok = ent.file_type() != rustix::fs::FileType::Unknown;
        }
    }
    Ok(ok) // `tmp` is removed on drop
}

/// Overlay features that newer kernels may turn on by default and that make `upper/`
/// something other than a plain diff. `known` = the kernel has the option (its module
/// parameter exists); `on` = it is on by default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Feature {
    /// The kernel knows the option.
    pub known: bool,
    /// It is enabled by default.
    pub on: bool,
}

/// The overlay module's defaults, read from `/sys/module/overlay/parameters/`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OverlayFeatures {
    /// `redirect_dir`: renamed lower dirs recorded as redirects in upper.
    pub redirect_dir: Feature,
    /// `index`: inode index (hardlink copy-up tracking) in the workdir.
    pub index: Feature,
    /// `metacopy`: copy-up of metadata only.
    pub metacopy: Feature,
}

impl OverlayFeatures {
    /// Reads the module parameters (absent ones: unknown to this kernel).
    pub fn read() -> Self {
        Self::read_from(Path::new("/sys/module/overlay/parameters"))
    }

    /// Reads module parameters from `dir` (tests use a fake dir).
    pub fn read_from(dir: &Path) -> Self {
        let get = |name: &str| match std::fs::read_to_string(dir.join(name)) {
            Ok(v) => {
                let v = v.trim();
                Feature {
                    known: true,
                    on: matches!(v, "Y" | "y" | "1" | "on"),
                }
            }
            Err(_) => Feature::default(),
        };
        OverlayFeatures {
            redirect_dir: get("redirect_dir"),
            index: get("index"),
            metacopy: get("metacopy"),
        }
    }

    /// The mount options that turn off what is on by default, e.g. `["redirect_dir=off"]`.
    pub fn off_options(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        if self.redirect_dir.known && self.redirect_dir.on {
            v.push("redirect_dir=off");
        }
        if self.index.known && self.index.on {
            v.push("index=off");
        }
        if self.metacopy.known && self.metacopy.on {
            v.push("metacopy=off");
        }
        v
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn releases() {
        assert_eq!(parse_release("6.18.44-fc-v669"), (6, 18, 44));
        assert_eq!(parse_release("3.18.0"), (3, 18, 0));
        assert_eq!(parse_release("4.0"), (4, 0, 0));
        assert!(parse_release("3.17.9") < (3, 18, 0));
    }

    #[test]
    fn features_from_fake_sysfs() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("redirect_dir"), "Y\n").unwrap();
        std::fs::write(d.path().join("index"), "N\n").unwrap();
        let f = OverlayFeatures::read_from(d.path());
        assert_eq!(
            f.redirect_dir,
            Feature {
                known: true,
                on: true
            }
        );
        assert_eq!(
            f.index,
            Feature {
                known: true,
                on: false
            }
        );
        assert_eq!(f.metacopy, Feature::default());
        assert_eq!(f.off_options(), vec!["redirect_dir=off"]);
        // A 3.18-era kernel has none of these parameters: no extra options at all.
        let empty = tempfile::tempdir().unwrap();
        assert!(OverlayFeatures::read_from(empty.path())
            .off_options()
            .is_empty());
    }
}
