//! Host checks both layouts make at init and `ovlink check` reports: overlay support, a real
//! test mount (one lowerdir, or two for overlay2), the backing filesystem, d_type support,
//! which overlay features the kernel has and turns on by default (so the mount can turn them
//! off and the upper dir stays a plain diff), and the kernel release, parsed and only warned
//! about. Support is decided by what the kernel does, never by its version number.
//!
//! Each failing check becomes [`DriverError::HostCheck`] naming the cause and the fix. This
//! module never refuses a host for a number, and never leaves a probe or mount behind.

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

pub use crate::features::{Feature, OverlayFeatures};
pub use crate::layout::Layout;
pub use crate::mount::OVERLAYFS_MAGIC;

/// Filesystems the legacy driver refuses as backing filesystem.
const REFUSED: &[&str] = &["overlayfs", "aufs", "zfs", "btrfs", "ecryptfs"];

/// Kernel pseudo-filesystems (`statfs.f_type`), which hold no layers: a home there is
/// refused before anything is created (issue 11: init accepted a home on procfs).
const PSEUDO_FS: &[(u64, &str)] = &[
    (0x9fa0, "proc"),
    (0x6265_6572, "sysfs"),
    (0x1cd1, "devpts"),
    (0x0027_e0eb, "cgroup"),
    (0x6367_7270, "cgroup2"),
    (0x6462_6720, "debugfs"),
    (0x7472_6163, "tracefs"),
    (0x7363_6673, "securityfs"),
    (0xcafe_4a11, "bpf"),
    (0x6265_6570, "configfs"),
    (0x6165_676c, "pstore"),
    (0xf97c_ff8c, "selinuxfs"),
    (0x4249_4e4d, "binfmt_misc"),
    (0x1980_0202, "mqueue"),
    (0x6e73_6673, "nsfs"),
];

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
    let (magic, name) = backing_fs(path)?;
    if let Some((_, pseudo)) = PSEUDO_FS.iter().find(|(m, _)| *m == magic) {
        return Err(DriverError::HostCheck {
            check: "backing filesystem",
            detail: format!(
                "{} is on {pseudo}, a kernel pseudo-filesystem that cannot hold layers; put \
                 the ovlink root on ext4 or xfs (ftype=1) with --root",
                path.display()
            ),
        });
    }
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
                 'modprobe overlay'; use a kernel built with CONFIG_OVERLAY_FS (upstream 3.18 or later, \
                 or CentOS/RHEL 7 from 3.10.0-514)"
            .into(),
    })
}

/// A kernel release string, parsed: the upstream version it is based on and what the
/// distribution's suffix says. Only reported and warned about: support is decided by what
/// the kernel does (a test mount), never by this number, because distributions backport
/// (CentOS/RHEL 7's 3.10.0-514+ carries an overlayfs with several lowerdirs).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct KernelRelease {
    /// The string as `uname -r` prints it.
    pub raw: String,
    /// Upstream major version.
    pub major: u32,
    /// Upstream minor version.
    pub minor: u32,
    /// Upstream patch level (0 when the string has none).
    pub patch: u32,
    /// What built it, from the suffix.
    pub flavor: KernelFlavor,
}

/// Whose kernel a release string names, as far as its suffix tells.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "vendor", rename_all = "kebab-case")]
pub enum KernelFlavor {
    /// Red Hat's (RHEL, CentOS, Rocky, Alma, Oracle's RHCK): `3.10.0-1160.el7.x86_64`.
    Rhel {
        /// The `elN` release (7 for RHEL 7).
        el: u32,
        /// The first number after the dash, Red Hat's build (1160); 514 is RHEL 7.3.
        build: u32,
    },
    /// Ubuntu's and Debian's scheme: `4.4.0-210-generic`, `6.1.0-18-amd64` (ABI, flavour).
    Ubuntu {
        /// The ABI number after the dash (210).
        abi: u32,
        /// The flavour (`generic`, `aws`, `lowlatency`, ...).
        flavour: String,
    },
    /// Anything else with a local suffix (Android's `-perf-g1234567`, Debian's `+deb12`,
    /// a custom build's `-fc-v669`).
    Other {
        /// The suffix after the version (empty for a bare upstream version).
        local: String,
    },
}

/// Why a release string could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot parse kernel release {raw:?}: {reason}")]
pub struct ReleaseParseError {
    /// The string.
    pub raw: String,
    /// What was wrong.
    pub reason: &'static str,
}

/// RHEL 7.3's build: the first where Docker supports overlay2 on RHEL/CentOS 7.
pub const RHEL7_OVERLAY_BUILD: u32 = 514;

impl KernelRelease {
    /// The running kernel's release (`uname`).
    pub fn current() -> std::result::Result<Self, ReleaseParseError> {
        Self::parse(&rustix::system::uname().release().to_string_lossy())
    }

    /// Parses `uname -r` output: `MAJOR.MINOR[.PATCH][SUFFIX]`.
    pub fn parse(raw: &str) -> std::result::Result<Self, ReleaseParseError> {
        let err = |reason| ReleaseParseError {
            raw: raw.to_string(),
            reason,
        };
        let split = raw
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(raw.len());
        let (version, suffix) = raw.split_at(split);
        let mut nums = version.split('.');
        let mut num = |what| -> std::result::Result<Option<u32>, ReleaseParseError> {
            match nums.next() {
                None | Some("") if what == "bad patch level" => Ok(None),
                None | Some("") => Err(err(what)),
                Some(n) => n.parse().map(Some).map_err(|_| err(what)),
            }
        };
        let major = num("no major version number")?.unwrap_or(0);
        let minor = num("no minor version number")?.unwrap_or(0);
        let patch = num("bad patch level")?.unwrap_or(0);
        let flavor = Self::flavor(suffix);
        Ok(KernelRelease {
            raw: raw.to_string(),
            major,
            minor,
            patch,
            flavor,
        })
    }

    fn flavor(suffix: &str) -> KernelFlavor {
        let other = || KernelFlavor::Other {
            local: suffix.to_string(),
        };
        let Some(rest) = suffix.strip_prefix('-') else {
            return other();
        };
        let lead: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
        let Ok(build) = lead.parse::<u32>() else {
            return other();
        };
        let after = &rest[lead.len()..];
        // RHEL: `-<build>[.<z-stream>...].el<N>[_<minor>][.<arch>]`.
        if let Some(pos) = after.find(".el") {
            let el: String = after[pos + 3..]
                .chars()
                .take_while(|c| c.is_ascii_digit())
                .collect();
            if let Ok(el) = el.parse() {
                return KernelFlavor::Rhel { el, build };
            }
        }
        // Ubuntu: `-<abi>-<flavour>`.
        if let Some(flavour) = after.strip_prefix('-') {
            if !flavour.is_empty()
                && flavour
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-')
            {
                return KernelFlavor::Ubuntu {
                    abi: build,
                    flavour: flavour.to_string(),
                };
            }
        }
        other()
    }

    /// `(major, minor, patch)`, for comparisons.
    pub fn version(&self) -> (u32, u32, u32) {
        (self.major, self.minor, self.patch)
    }

    /// One line for humans: the string and what it is.
    pub fn describe(&self) -> String {
        let (a, b, c) = self.version();
        match &self.flavor {
            KernelFlavor::Rhel { el, build } => {
                format!(
                    "{} (RHEL/CentOS {el} kernel, based on {a}.{b}.{c}, build {build})",
                    self.raw
                )
            }
            KernelFlavor::Ubuntu { abi, flavour } => {
                format!(
                    "{} (Ubuntu/Debian kernel {a}.{b}.{c}, ABI {abi}, {flavour})",
                    self.raw
                )
            }
            KernelFlavor::Other { .. } => format!("{} (upstream {a}.{b}.{c})", self.raw),
        }
    }

    /// What the number suggests the kernel lacks for `layout` (`overlay` or `overlay2`):
    /// warnings only, since the test mount decides (backports make the number lie).
    pub fn warnings(&self, layout: Layout) -> Vec<String> {
        let v = self.version();
        let mut w = Vec::new();
        match self.flavor {
            KernelFlavor::Rhel { el: 7, build } if build < RHEL7_OVERLAY_BUILD => w.push(format!(
                "RHEL/CentOS 7 kernel build {build}: overlayfs is a technology preview before \
                 3.10.0-{RHEL7_OVERLAY_BUILD} (7.3); update the kernel (yum update kernel)"
            )),
            KernelFlavor::Rhel { .. } => {}
            _ if v < (3, 18, 0) => w.push(format!(
                "kernel {} is older than 3.18, the first upstream kernel with overlayfs; only a \
                 backport can pass the test mount",
                self.raw
            )),
            _ if layout == Layout::Overlay2 && v < (4, 0, 0) => w.push(format!(
                "kernel {} is older than 4.0: upstream overlayfs takes one lowerdir only, which \
                 overlay2 cannot use (the legacy overlay layout can: --driver overlay)",
                self.raw
            )),
            _ => {}
        }
        w
    }
}

/// The release warnings for `layout`, including one for a string that does not parse.
pub fn kernel_warnings(layout: Layout) -> Vec<String> {
    match KernelRelease::current() {
        Ok(r) => r.warnings(layout),
        Err(e) => vec![format!("{e}; the test mount decides")],
    }
}

/// Really mounts a tiny overlay with `lowers` lowerdirs in a locked temporary directory of
/// `dir` (Docker's check: the legacy driver with one lowerdir, overlay2 with two), then
/// unmounts and removes it. The options name the directories through `/proc/self/fd`, so the
/// home's path (commas, colons) never needs escaping.
pub fn test_mount(
    dir: &rustix::fd::OwnedFd,
    dir_path: &Path,
    lowers: usize,
    features: &OverlayFeatures,
    backing_fs: &str,
) -> Result<()> {
    use rustix::fd::AsRawFd;
    let tmp = crate::lock::TempDir::new(dir, dir_path, ".tmp-check-", 0o700)?;
    let p = tmp.path();
    let lower_names: Vec<String> = (1..=lowers).map(|i| format!("lower{i}")).collect();
    for d in lower_names
        .iter()
        .map(String::as_str)
        .chain(["upper", "work", "merged"])
    {
        ovlink_fs::at::mkdir_at(tmp.fd(), d, 0o700, &p.join(d))?;
    }
    let via = format!("/proc/self/fd/{}", tmp.fd().as_raw_fd());
    let lowerdir: Vec<String> = lower_names.iter().map(|l| format!("{via}/{l}")).collect();
    let mut opts = format!(
        "lowerdir={},upperdir={via}/upper,workdir={via}/work",
        lowerdir.join(":")
    );
    crate::mount::push_tail(&mut opts, features, None)?;
    let merged = p.join("merged");
    crate::mount::mount_overlay(&merged, &opts).map_err(|e| match e {
        // Not a kernel or filesystem problem: say so (EPERM kept as the cause).
        e @ DriverError::MountNotPermitted { .. } => e,
        e => DriverError::HostCheck {
            check: if lowers > 1 {
                "multi-lowerdir"
            } else {
                "overlay support"
            },
            detail: format!(
            "a test mount of overlay with {lowers} lowerdir{} on {} failed ({}); the kernel or \
             the backing filesystem ({backing_fs}) cannot run {}",
            if lowers > 1 { "s" } else { "" },
            merged.display(),
            crate::error::error_chain(&e),
            if lowers > 1 {
                "overlay2 (a kernel before 4.0 without a backport takes one lowerdir only: \
                 use --driver overlay)"
            } else {
                "overlayfs"
            }
        ),
        },
    })?;
    crate::mount::unmount(&merged)?;
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn releases() {
        use KernelFlavor::*;
        let other = |l: &str| Other { local: l.into() };
        let table: &[(&str, (u32, u32, u32), KernelFlavor)] = &[
            (
                "3.10.0-1160.el7.x86_64",
                (3, 10, 0),
                Rhel { el: 7, build: 1160 },
            ),
            (
                "3.10.0-514.el7.x86_64",
                (3, 10, 0),
                Rhel { el: 7, build: 514 },
            ),
            (
                "3.10.0-327.36.3.el7.x86_64",
                (3, 10, 0),
                Rhel { el: 7, build: 327 },
            ),
            (
                "5.14.0-362.8.1.el9_3.x86_64",
                (5, 14, 0),
                Rhel { el: 9, build: 362 },
            ),
            (
                "4.4.0-210-generic",
                (4, 4, 0),
                Ubuntu {
                    abi: 210,
                    flavour: "generic".into(),
                },
            ),
            (
                "6.8.0-45-generic",
                (6, 8, 0),
                Ubuntu {
                    abi: 45,
                    flavour: "generic".into(),
                },
            ),
            (
                "3.18.31-perf-g1234567",
                (3, 18, 31),
                other("-perf-g1234567"),
            ),
            ("6.18.44-fc-v669", (6, 18, 44), other("-fc-v669")),
            (
                "6.1.0-18-amd64",
                (6, 1, 0),
                Ubuntu {
                    abi: 18,
                    flavour: "amd64".into(),
                },
            ),
            ("3.18.0", (3, 18, 0), other("")),
            ("4.0", (4, 0, 0), other("")),
            ("4.19.0+", (4, 19, 0), other("+")),
        ];
        for (raw, v, flavor) in table {
            let r = KernelRelease::parse(raw).unwrap();
            assert_eq!((r.version(), &r.flavor), (*v, flavor), "{raw}");
        }
        for bad in ["", "linux", "4", "4.", ".4", "x.y"] {
            assert!(KernelRelease::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn release_warnings_never_refuse_a_backport() {
        let w = |raw: &str, l| KernelRelease::parse(raw).unwrap().warnings(l);
        // RHEL 7.3+ passes on the test mount: no warning for either layout.
        assert!(w("3.10.0-1160.el7.x86_64", Layout::Overlay2).is_empty());
        assert!(w("3.10.0-514.el7.x86_64", Layout::Overlay).is_empty());
        assert!(w("3.10.0-327.el7.x86_64", Layout::Overlay)[0].contains("technology preview"));
        assert!(w("3.10.0-1-generic", Layout::Overlay)[0].contains("older than 3.18"));
        assert!(w("3.18.31-perf-g1234567", Layout::Overlay).is_empty());
        assert!(w("3.18.31-perf-g1234567", Layout::Overlay2)[0].contains("--driver overlay"));
        assert!(w("4.4.0-210-generic", Layout::Overlay2).is_empty());
        assert!(w("6.8.0-45-generic", Layout::Overlay2).is_empty());
    }
}
