//! Host checks both layouts make at init and `ovlink check` reports: overlay support, a real
//! test mount (one lowerdir, or two for overlay2), a container-operations probe in such a mount
//! (create, copy-up, delete, opaque re-create and rename through `merged/`: a kernel can mount
//! and still fail these on its upper filesystem), the backing filesystem, d_type support,
//! which overlay features the kernel has and turns on by default (so the mount can turn them
//! off and the upper dir stays a plain diff), and the kernel release, parsed and only warned
//! about. Support is decided by what the kernel does, never by its version number.
//!
//! Each failing check becomes [`DriverError::HostCheck`] naming the cause and the fix. This
//! module never refuses a host for a number, and never leaves a probe or mount behind.

use crate::error::{DriverError, Result};
use ovlink_fs::error::Context;
use rustix::fd::OwnedFd;
use rustix::fs::{Mode, OFlags};
use std::path::{Path, PathBuf};
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

/// Prefix of the probes' temporary directories in the home (reaped by init like any `.tmp-*`).
const CHECK_PREFIX: &str = ".tmp-check-";

/// The name of lowerdir `i` (1 is the top one) in a test overlay.
fn lower_name(i: usize) -> String {
    format!("lower{i}")
}

/// A tiny overlay in a locked temporary directory of the home (`.tmp-check-*` holding
/// `lower1`.., `upper`, `work`, `merged`), for the test mount and the container-operations
/// probe. Once mounted, every way out (an error, a panic) unmounts `merged` before the
/// directory is removed; when that unmount fails, the directory is left to the next init's
/// reaping (which unmounts first) instead of being removed through a live mount.
struct TestOverlay {
    tmp: crate::lock::TempDir,
    merged: PathBuf,
    lowers: usize,
    mounted: bool,
}

impl TestOverlay {
    /// Makes the directories, empty, in a new temporary directory of `dir`.
    fn new(dir: &OwnedFd, dir_path: &Path, lowers: usize) -> Result<Self> {
        let tmp = crate::lock::TempDir::new(dir, dir_path, CHECK_PREFIX, 0o700)?;
        let p = tmp.path();
        for d in (1..=lowers)
            .map(lower_name)
            .chain(["upper", "work", "merged"].map(String::from))
        {
            ovlink_fs::at::mkdir_at(tmp.fd(), &d, 0o700, &p.join(&d))?;
        }
        Ok(TestOverlay {
            merged: p.join("merged"),
            tmp,
            lowers,
            mounted: false,
        })
    }

    /// An fd of lowerdir `i` (1 is the top one) and its path.
    fn lower(&self, i: usize) -> Result<(OwnedFd, PathBuf)> {
        let name = lower_name(i);
        let shown = self.tmp.path().join(&name);
        let fd = ovlink_fs::at::open_dir_at(self.tmp.fd(), &name, &shown)?;
        Ok((fd, shown))
    }

    /// Mounts it. The options name the directories through `/proc/self/fd`, so the home's
    /// path (commas, colons) never needs escaping. The error is the mount's own.
    fn mount(&mut self, features: &OverlayFeatures) -> Result<()> {
        use rustix::fd::AsRawFd;
        let via = format!("/proc/self/fd/{}", self.tmp.fd().as_raw_fd());
        let lowerdir: Vec<String> = (1..=self.lowers)
            .map(|i| format!("{via}/{}", lower_name(i)))
            .collect();
        let mut opts = format!(
            "lowerdir={},upperdir={via}/upper,workdir={via}/work",
            lowerdir.join(":")
        );
        crate::mount::push_tail(&mut opts, features, None)?;
        crate::mount::mount_overlay(&self.merged, &opts)?;
        self.mounted = true;
        Ok(())
    }

    /// Unmounts it, if mounted (the directory is removed when this is dropped).
    fn unmount(&mut self) -> Result<()> {
        if !self.mounted {
            return Ok(());
        }
        self.mounted = false;
        crate::mount::unmount(&self.merged).inspect_err(|_| self.tmp.keep())
    }

    /// The error of a failed test mount: the layout's check, the kernel or filesystem named
    /// (EPERM stays [`DriverError::MountNotPermitted`]: not a kernel or filesystem problem).
    fn mount_failed(&self, e: DriverError, backing_fs: &str) -> DriverError {
        let lowers = self.lowers;
        match e {
            e @ DriverError::MountNotPermitted { .. } => e,
            e => DriverError::HostCheck {
                check: if lowers > 1 {
                    "multi-lowerdir"
                } else {
                    "overlay support"
                },
                detail: format!(
                    "a test mount of overlay with {lowers} lowerdir{} on {} failed ({}); the \
                     kernel or the backing filesystem ({backing_fs}) cannot run {}",
                    if lowers > 1 { "s" } else { "" },
                    self.merged.display(),
                    crate::error::error_chain(&e),
                    if lowers > 1 {
                        "overlay2 (a kernel before 4.0 without a backport takes one lowerdir \
                         only: use --driver overlay)"
                    } else {
                        "overlayfs"
                    }
                ),
            },
        }
    }
}

impl Drop for TestOverlay {
    fn drop(&mut self) {
        // Before the fields: `tmp` is removed only once nothing is mounted in it.
        let _ = self.unmount();
    }
}

/// Really mounts a tiny overlay with `lowers` lowerdirs in a locked temporary directory of
/// `dir` (Docker's check: the legacy driver with one lowerdir, overlay2 with two), then
/// unmounts and removes it.
pub fn test_mount(
    dir: &OwnedFd,
    dir_path: &Path,
    lowers: usize,
    features: &OverlayFeatures,
    backing_fs: &str,
) -> Result<()> {
    let mut ov = TestOverlay::new(dir, dir_path, lowers)?;
    if let Err(e) = ov.mount(features) {
        return Err(ov.mount_failed(e, backing_fs));
    }
    ov.unmount()
}

/// What the container-operations probe saw where two answers are both fine.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ContainerOps {
    /// rename(2) of a lower directory returned EXDEV: no `redirect_dir` in the mount (older
    /// kernels lack it, ovlink never turns it on), and tools (`mv`, package managers) copy
    /// instead, as they do in Docker.
    pub dir_rename_exdev: bool,
}

impl ContainerOps {
    /// One line for `check`: what worked, in a test mount in `home`.
    pub fn describe(&self, home: &Path) -> String {
        format!(
            "create, write, copy-up, delete of a lower file and a lower directory, opaque \
             re-create, rename: all worked in a test mount in {}{}",
            home.display(),
            if self.dir_rename_exdev {
                ", directory rename: EXDEV (no redirect_dir; tools copy)"
            } else {
                ""
            }
        )
    }
}

// The probe's entries: all in the bottom lowerdir, but `remove-dir/from-top` (in the top one,
// when there are several: the directory is then merged from two layers).
const READ_ME: &str = "read-me";
const LINKED: &str = "linked";
const LINKED_TOO: &str = "linked-too";
const DELETE_ME: &str = "delete-me";
const RENAME_ME: &str = "rename-me";
const RENAMED: &str = "renamed";
const REMOVE_DIR: &str = "remove-dir";
const FROM_TOP: &str = "from-top";
const RENAME_DIR: &str = "rename-dir";
const RENAMED_DIR: &str = "renamed-dir";
const INSIDE: &str = "inside";
const CREATED: &str = "created";
/// What the copy-up step appends.
const APPENDED: &[u8] = b"appended\n";

/// What a probe file holds: its own name and a newline (a mix-up shows).
fn content(name: &str) -> Vec<u8> {
    format!("{name}\n").into_bytes()
}

/// Why a step of the container-operations probe failed.
#[derive(Debug)]
enum Cause {
    /// A call failed: what it was (`rmdir`, `open for writing`, ...) and the OS error.
    Os {
        op: &'static str,
        err: std::io::Error,
    },
    /// The calls worked but `merged/` shows something else.
    Saw(String),
}

/// A failed step: the entry inside `merged/` and why.
#[derive(Debug)]
struct Failed {
    path: String,
    cause: Cause,
}

/// A step of the probe: one thing a container does, through an fd of `merged/`.
#[derive(Clone, Copy)]
struct Step {
    name: &'static str,
    run: fn(&OwnedFd, &mut ContainerOps) -> std::result::Result<(), Failed>,
}

/// What a container needs, in order (each step builds on the ones before).
const STEPS: &[Step] = &[
    Step {
        name: "read a lower file",
        run: |m, _| expect_content(m, READ_ME, &content(READ_ME)),
    },
    Step {
        name: "create and write a new file",
        run: create_file,
    },
    Step {
        name: "copy-up of a hardlinked lower file",
        run: copy_up,
    },
    Step {
        name: "delete a lower file",
        run: delete_file,
    },
    Step {
        name: "delete a lower directory",
        run: delete_dir,
    },
    Step {
        name: "re-create the deleted directory",
        run: recreate_dir,
    },
    Step {
        name: "rename a lower file",
        run: rename_file,
    },
    Step {
        name: "rename a lower directory",
        run: rename_dir,
    },
];

/// Maps an OS error of `op` on `path` (inside `merged/`) to a failed step.
fn os<E: Into<std::io::Error>>(op: &'static str, path: &str) -> impl FnOnce(E) -> Failed {
    let path = path.to_string();
    move |e| Failed {
        path,
        cause: Cause::Os { op, err: e.into() },
    }
}

fn saw(path: &str, what: String) -> Failed {
    Failed {
        path: path.to_string(),
        cause: Cause::Saw(what),
    }
}

/// Opens `path` of `m` (a file; no symlink followed) with `flags`.
fn open_in(
    m: &OwnedFd,
    path: &str,
    op: &'static str,
    flags: OFlags,
) -> std::result::Result<std::fs::File, Failed> {
    rustix::fs::openat(
        m,
        path,
        flags | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o644),
    )
    .map(std::fs::File::from)
    .map_err(os(op, path))
}

fn expect_content(m: &OwnedFd, path: &str, want: &[u8]) -> std::result::Result<(), Failed> {
    use std::io::Read;
    let mut got = Vec::new();
    open_in(m, path, "open", OFlags::RDONLY)?
        .read_to_end(&mut got)
        .map_err(os("read", path))?;
    if got != want {
        return Err(saw(
            path,
            format!(
                "reads {:?}, expected {:?}",
                String::from_utf8_lossy(&got),
                String::from_utf8_lossy(want)
            ),
        ));
    }
    Ok(())
}

fn expect_gone(m: &OwnedFd, path: &str, after: &str) -> std::result::Result<(), Failed> {
    match rustix::fs::statat(m, path, rustix::fs::AtFlags::SYMLINK_NOFOLLOW) {
        Err(rustix::io::Errno::NOENT) => Ok(()),
        Ok(_) => Err(saw(path, format!("is still there after {after}"))),
        Err(e) => Err(os("stat", path)(e)),
    }
}

/// Opens directory `path` of `m` (no symlink followed).
fn open_dir_in(m: &OwnedFd, path: &str) -> std::result::Result<OwnedFd, Failed> {
    rustix::fs::openat(m, path, ovlink_fs::at::DIR_FLAGS, Mode::empty())
        .map_err(os("open directory", path))
}

/// The names in the directory `d` (shown as `path`), without `.` and `..`.
fn names_in(d: &OwnedFd, path: &str) -> std::result::Result<Vec<String>, Failed> {
    let mut names = Vec::new();
    for ent in rustix::fs::Dir::read_from(d).map_err(os("list", path))? {
        let ent = ent.map_err(os("list", path))?;
        let n = ent.file_name().to_string_lossy();
        if n != "." && n != ".." {
            names.push(n.into_owned());
        }
    }
    names.sort();
    Ok(names)
}

fn create_file(m: &OwnedFd, _: &mut ContainerOps) -> std::result::Result<(), Failed> {
    use std::io::Write;
    open_in(
        m,
        CREATED,
        "create",
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL,
    )?
    .write_all(&content(CREATED))
    .map_err(os("write", CREATED))?;
    expect_content(m, CREATED, &content(CREATED))
}

fn copy_up(m: &OwnedFd, _: &mut ContainerOps) -> std::result::Result<(), Failed> {
    use std::io::Write;
    open_in(
        m,
        LINKED,
        "open for writing",
        OFlags::WRONLY | OFlags::APPEND,
    )?
    .write_all(APPENDED)
    .map_err(os("append to", LINKED))?;
    let mut want = content(LINKED);
    want.extend_from_slice(APPENDED);
    expect_content(m, LINKED, &want)
}

fn delete_file(m: &OwnedFd, _: &mut ContainerOps) -> std::result::Result<(), Failed> {
    rustix::fs::unlinkat(m, DELETE_ME, rustix::fs::AtFlags::empty())
        .map_err(os("unlink", DELETE_ME))?;
    expect_gone(m, DELETE_ME, "unlink")
}

/// `rm -rf`: unlinks what the directory holds (a whiteout each, in the copied-up directory),
/// then removes it (where overlayfs needs the upper filesystem's RENAME_EXCHANGE and
/// whiteouts: EINVAL on xfs before 4.0).
fn delete_dir(m: &OwnedFd, _: &mut ContainerOps) -> std::result::Result<(), Failed> {
    let d = open_dir_in(m, REMOVE_DIR)?;
    for name in names_in(&d, REMOVE_DIR)? {
        rustix::fs::unlinkat(&d, name.as_str(), rustix::fs::AtFlags::empty())
            .map_err(os("unlink", &format!("{REMOVE_DIR}/{name}")))?;
    }
    drop(d);
    rustix::fs::unlinkat(m, REMOVE_DIR, rustix::fs::AtFlags::REMOVEDIR)
        .map_err(os("rmdir", REMOVE_DIR))?;
    expect_gone(m, REMOVE_DIR, "rmdir")
}

/// `mkdir` where a lower directory was removed: the new one must be empty (opaque).
fn recreate_dir(m: &OwnedFd, _: &mut ContainerOps) -> std::result::Result<(), Failed> {
    rustix::fs::mkdirat(m, REMOVE_DIR, Mode::from_raw_mode(0o755))
        .map_err(os("mkdir", REMOVE_DIR))?;
    let names = names_in(&open_dir_in(m, REMOVE_DIR)?, REMOVE_DIR)?;
    if !names.is_empty() {
        return Err(saw(
            REMOVE_DIR,
            format!("shows the lower entries {names:?} after rmdir and mkdir (not opaque)"),
        ));
    }
    Ok(())
}

fn rename_file(m: &OwnedFd, _: &mut ContainerOps) -> std::result::Result<(), Failed> {
    rustix::fs::renameat(m, RENAME_ME, m, RENAMED).map_err(os("rename", RENAME_ME))?;
    expect_content(m, RENAMED, &content(RENAME_ME))?;
    expect_gone(m, RENAME_ME, "rename")
}

/// rename(2) of a lower directory: EXDEV is an answer (no redirect_dir; tools copy instead).
fn rename_dir(m: &OwnedFd, found: &mut ContainerOps) -> std::result::Result<(), Failed> {
    match rustix::fs::renameat(m, RENAME_DIR, m, RENAMED_DIR) {
        Ok(()) => {
            expect_content(m, &format!("{RENAMED_DIR}/{INSIDE}"), &content(INSIDE))?;
            expect_gone(m, RENAME_DIR, "rename")
        }
        Err(rustix::io::Errno::XDEV) => {
            found.dir_rename_exdev = true;
            Ok(())
        }
        Err(e) => Err(os("rename", RENAME_DIR)(e)),
    }
}

/// Creates file `name` in `dir` holding [`content`]`(name)`.
fn put_file(dir: &OwnedFd, name: &str, shown: &Path) -> Result<()> {
    use std::io::Write;
    let fd = rustix::fs::openat(
        dir,
        name,
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o644),
    )
    .ctx("create", shown)?;
    std::fs::File::from(fd)
        .write_all(&content(name))
        .ctx("write", shown)?;
    Ok(())
}

/// Fills the lowerdirs with the probe's entries (see the constants above).
fn fill_lowers(ov: &TestOverlay) -> Result<()> {
    let (low, p) = ov.lower(ov.lowers)?;
    for f in [READ_ME, LINKED, DELETE_ME, RENAME_ME] {
        put_file(&low, f, &p.join(f))?;
    }
    rustix::fs::linkat(&low, LINKED, &low, LINKED_TOO, rustix::fs::AtFlags::empty())
        .ctx("link", p.join(LINKED_TOO))?;
    for d in [REMOVE_DIR, RENAME_DIR] {
        let dp = p.join(d);
        ovlink_fs::at::mkdir_at(&low, d, 0o755, &dp)?;
        let fd = ovlink_fs::at::open_dir_at(&low, d, &dp)?;
        put_file(&fd, INSIDE, &dp.join(INSIDE))?;
    }
    if ov.lowers > 1 {
        let (top, p) = ov.lower(1)?;
        let dp = p.join(REMOVE_DIR);
        ovlink_fs::at::mkdir_at(&top, REMOVE_DIR, 0o755, &dp)?;
        let fd = ovlink_fs::at::open_dir_at(&top, REMOVE_DIR, &dp)?;
        put_file(&fd, FROM_TOP, &dp.join(FROM_TOP))?;
    }
    Ok(())
}

/// The check's error for a failed step: the step, the entry in `merged`, what happened, the
/// backing filesystem, and the fix after the last `; ` (where [`crate::hostcheck`] finds it).
fn ops_failed(step: &str, merged: &Path, f: &Failed, backing_fs: &str) -> DriverError {
    let path = merged.join(&f.path);
    let (what, errno) = match &f.cause {
        Cause::Os { op, err } => (
            format!("{op} {}: {err}", path.display()),
            err.raw_os_error().map(rustix::io::Errno::from_raw_os_error),
        ),
        Cause::Saw(s) => (format!("{} {s}", path.display()), None),
    };
    let fix = match errno {
        Some(rustix::io::Errno::NOSPC) | Some(rustix::io::Errno::DQUOT) => format!(
            "the backing filesystem ({backing_fs}) has no space or inodes left; free some, or \
             move the root with --root"
        ),
        _ => format!(
            "the kernel's overlayfs cannot do this on {backing_fs}: it needs RENAME_EXCHANGE/\
             RENAME_WHITEOUT support from the upper filesystem (upstream xfs has them from \
             Linux 4.0); put the root on ext4 with --root, or upgrade the kernel"
        ),
    };
    DriverError::HostCheck {
        check: "container operations",
        detail: format!(
            "step '{step}' failed in a test mount with the home on {backing_fs}: {what}; {fix}"
        ),
    }
}

/// Does in a test mount what a container needs (Docker's test mount only mounts): in a locked
/// temporary directory of `dir`, a lower layer holding a file, a hardlinked pair, a file to
/// delete, a file to rename, a directory with a file to `rm -rf` and re-create, and a directory
/// to rename, mounted with `lowers` lowerdirs; then, through an fd of `merged/`, each step of
/// `STEPS`: create and write a file, copy-up (append to one of the pair), delete a lower
/// file, delete a lower directory with its contents and re-create it (it must be empty:
/// opaque), rename a lower file, rename a lower directory (EXDEV accepted). A mount that
/// mounts but cannot do these (upstream 3.18 on xfs: removing a copied-up directory needs
/// RENAME_EXCHANGE and whiteouts from the upper filesystem, which xfs has from 4.0) would
/// otherwise fail a container half-way. Unmounted and removed on every way out.
pub fn container_ops_probe(
    dir: &OwnedFd,
    dir_path: &Path,
    lowers: usize,
    features: &OverlayFeatures,
    backing_fs: &str,
) -> Result<ContainerOps> {
    probe_steps(dir, dir_path, lowers, features, backing_fs, STEPS)
}

/// [`container_ops_probe`] with the steps given (tests add a failing one).
fn probe_steps(
    dir: &OwnedFd,
    dir_path: &Path,
    lowers: usize,
    features: &OverlayFeatures,
    backing_fs: &str,
    steps: &[Step],
) -> Result<ContainerOps> {
    let mut ov = TestOverlay::new(dir, dir_path, lowers)?;
    fill_lowers(&ov)?;
    if let Err(e) = ov.mount(features) {
        return Err(ov.mount_failed(e, backing_fs));
    }
    let merged_fd = ovlink_fs::at::open_dir_at(ov.tmp.fd(), "merged", &ov.merged)?;
    let magic = rustix::fs::fstatfs(&merged_fd)
        .ctx("statfs", &ov.merged)?
        .f_type as u64;
    let mut found = ContainerOps::default();
    let ran = if magic != OVERLAYFS_MAGIC {
        Err(ops_failed(
            "mount",
            &ov.merged,
            &saw("", format!("is not an overlay mount (magic 0x{magic:x})")),
            backing_fs,
        ))
    } else {
        steps.iter().try_for_each(|s| {
            (s.run)(&merged_fd, &mut found)
                .map_err(|f| ops_failed(s.name, &ov.merged, &f, backing_fs))
        })
    };
    // Nothing of the mount stays open across the unmount.
    drop(merged_fd);
    let unmounted = ov.unmount();
    ran?;
    unmounted?;
    Ok(found)
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

    /// The fix of a check's detail, as `ovlink check` splits it (after the last `; `).
    fn fix_of(e: &DriverError) -> (&'static str, String, String) {
        match e {
            DriverError::HostCheck { check, detail } => {
                let (what, fix) = detail.rsplit_once("; ").unwrap();
                (check, what.to_string(), fix.to_string())
            }
            e => panic!("not a host check: {e}"),
        }
    }

    #[test]
    fn a_failed_step_names_the_step_the_path_the_error_the_filesystem_and_the_fix() {
        let merged = Path::new("/h/overlay/.tmp-check-1/merged");
        let einval = Failed {
            path: REMOVE_DIR.into(),
            cause: Cause::Os {
                op: "rmdir",
                err: rustix::io::Errno::INVAL.into(),
            },
        };
        let enospc = Failed {
            path: CREATED.into(),
            cause: Cause::Os {
                op: "write",
                err: rustix::io::Errno::NOSPC.into(),
            },
        };
        let seen = saw(REMOVE_DIR, "shows the lower entries [\"inside\"]".into());
        let kernel_fix = "put the root on ext4 with --root, or upgrade the kernel";
        let space_fix = "free some, or move the root with --root";
        let table: &[(&str, &Failed, &str, &[&str], &str)] = &[
            (
                "delete a lower directory",
                &einval,
                "xfs",
                &[
                    "step 'delete a lower directory' failed",
                    "rmdir /h/overlay/.tmp-check-1/merged/remove-dir: Invalid argument (os error 22)",
                    "the home on xfs",
                    "cannot do this on xfs",
                    "RENAME_EXCHANGE/RENAME_WHITEOUT",
                    "upstream xfs has them from Linux 4.0",
                ],
                kernel_fix,
            ),
            (
                "create and write a new file",
                &enospc,
                "extfs",
                &[
                    "step 'create and write a new file'",
                    "write /h/overlay/.tmp-check-1/merged/created: No space left on device",
                    "(extfs) has no space or inodes left",
                ],
                space_fix,
            ),
            (
                "re-create the deleted directory",
                &seen,
                "xfs",
                &["merged/remove-dir shows the lower entries [\"inside\"]"],
                kernel_fix,
            ),
        ];
        for (step, failed, fs, parts, fix) in table {
            let e = ops_failed(step, merged, failed, fs);
            let (check, what, got_fix) = fix_of(&e);
            assert_eq!(check, "container operations");
            for p in *parts {
                assert!(what.contains(p), "{step}: {p:?} not in {what:?}");
            }
            assert_eq!(got_fix, *fix, "{step}");
        }
    }

    #[test]
    fn container_ops_line_says_when_a_directory_rename_gave_exdev() {
        let home = Path::new("/h/overlay");
        let plain = ContainerOps::default().describe(home);
        assert!(
            plain.starts_with("create, write, copy-up, delete of a lower file and a lower directory, opaque re-create, rename: all worked in a test mount in /h/overlay"),
            "{plain}"
        );
        assert!(!plain.contains("EXDEV"));
        let exdev = ContainerOps {
            dir_rename_exdev: true,
        }
        .describe(home);
        assert!(
            exdev.ends_with(", directory rename: EXDEV (no redirect_dir; tools copy)"),
            "{exdev}"
        );
    }

    /// Needs root (it mounts overlayfs): the probe in a real test mount, with a failing step
    /// added after the real ones: it fails naming that step, and leaves no mount and no
    /// directory behind; the real steps alone pass.
    #[test]
    fn privileged_probe_failure_unmounts_and_removes_everything() {
        assert!(
            rustix::process::geteuid().is_root(),
            "this test mounts overlayfs: run the tests as root (scripts/test.sh)"
        );
        let t = tempfile::tempdir().unwrap();
        let fd = ovlink_fs::at::open_dir(t.path()).unwrap();
        let (_, fs) = backing_fs(t.path()).unwrap();
        let features = OverlayFeatures::read();
        let mounts = || crate::mount::mounts_under(t.path());
        let fails = Step {
            name: "a step that fails",
            run: |m, _| {
                // The real steps ran: their results are visible through merged/.
                expect_content(m, CREATED, &content(CREATED))?;
                expect_gone(m, DELETE_ME, "unlink")?;
                Err(os("unlink", LINKED_TOO)(rustix::io::Errno::INVAL))
            },
        };
        let steps: Vec<Step> = STEPS.iter().copied().chain([fails]).collect();
        for lowers in [1, 2] {
            let e = probe_steps(&fd, t.path(), lowers, &features, &fs, &steps).unwrap_err();
            let (check, what, fix) = fix_of(&e);
            assert_eq!(check, "container operations");
            assert!(
                what.contains("step 'a step that fails'")
                    && what.contains("/merged/linked-too: Invalid argument"),
                "{what}"
            );
            assert!(fix.contains("--root"), "{fix}");
            assert!(mounts().is_empty(), "left mounted: {:?}", mounts());
            assert_eq!(
                std::fs::read_dir(t.path()).unwrap().count(),
                0,
                "left entries"
            );
            let found = container_ops_probe(&fd, t.path(), lowers, &features, &fs).unwrap();
            assert!(mounts().is_empty());
            assert_eq!(std::fs::read_dir(t.path()).unwrap().count(), 0);
            // ovlink never mounts with redirect_dir: a lower directory cannot be renamed.
            assert!(found.dir_rename_exdev, "{found:?}");
        }
    }
}
