//! The private place a scenario works in, and the small tools every lab shares: a scratch
//! directory that unmounts everything below it on drop, loop-mounted filesystems that fail
//! loudly when `mkfs` is missing, a tmpfs, plain overlay mounts described both as a mount(2)
//! call and as the shell command a student retypes, running external tools, and `ls -l`-like
//! descriptions of what the kernel left in a directory.
//!
//! Nothing here touches a path outside the scratch directory it created.

use crate::error::{io, LabError, Result};
use crate::LabConfig;
use ovlink_fs::loopfs::{unmount_releasing_loop, FsKind, LoopFs};
use rustix::io::Errno;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Fails unless running as root (every lab mounts).
pub fn require_root(what: &str) -> Result<()> {
    if rustix::process::geteuid().is_root() {
        Ok(())
    } else {
        Err(LabError::Refused(format!(
            "{what} mounts filesystems: run it as root (sudo ovlink {what})"
        )))
    }
}

/// A private directory (`<base>/ovlink-<prefix>-XXXXXX`); on drop every mount below it is
/// undone (deepest first; loop filesystems last and not lazily, so their loop devices are
/// released) and the directory removed, unless [`Scratch::keep`] was called.
pub struct Scratch {
    dir: Option<tempfile::TempDir>,
    path: PathBuf,
}

impl Scratch {
    /// Makes the scratch directory in `cfg.base` (or the temporary directory).
    pub fn new(cfg: &LabConfig, prefix: &str) -> Result<Scratch> {
        let mut b = tempfile::Builder::new();
        let name = format!("ovlink-{prefix}-");
        b.prefix(&name);
        let dir = match &cfg.base {
            Some(base) => {
                std::fs::create_dir_all(base).map_err(io("create", base))?;
                b.tempdir_in(base)
                    .map_err(io("create a directory in", base))?
            }
            None => b
                .tempdir()
                .map_err(io("create a directory in", &std::env::temp_dir()))?,
        };
        let path = dir.path().to_path_buf();
        Ok(Scratch {
            dir: Some(dir),
            path,
        })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `path()/rel`.
    pub fn join(&self, rel: &str) -> PathBuf {
        self.path.join(rel)
    }

    /// Creates directories (and parents) below the scratch directory.
    pub fn mkdirs(&self, rels: &[&str]) -> Result<()> {
        for r in rels {
            let p = self.join(r);
            std::fs::create_dir_all(&p).map_err(io("create", &p))?;
        }
        Ok(())
    }

    /// Writes a file below the scratch directory.
    pub fn write(&self, rel: &str, data: &[u8]) -> Result<PathBuf> {
        let p = self.join(rel);
        std::fs::write(&p, data).map_err(io("write", &p))?;
        Ok(p)
    }

    /// Leaves everything in place; returns the directory.
    pub fn keep(&mut self) -> Option<PathBuf> {
        self.dir.take().map(|d| d.keep())
    }

    /// The end of a lab: with `cfg.keep`, leaves the directory and says where it is;
    /// otherwise the directory is cleaned up when `self` drops.
    pub(crate) fn finish(mut self, cfg: &LabConfig, say: &crate::Say<'_>) {
        if cfg.keep {
            if let Some(k) = self.keep() {
                say.text(format!(
                    "kept {} (umount what is mounted below it, then rm -rf it)",
                    k.display()
                ));
            }
        }
    }

    /// Makes a `size_mib` filesystem image `name.img` with `mkfs` (`mkfs.ext4`, `mkfs.xfs`,
    /// `mkfs.btrfs`) and `args`, and loop-mounts it on `name/` ([`ovlink_fs::loopfs`]; the
    /// scratch directory's drop unmounts it). A missing `mkfs` is an error naming the
    /// package, never a skipped step.
    pub fn loop_fs(&self, name: &str, size_mib: u64, mkfs: &str, args: &[&str]) -> Result<PathBuf> {
        let kind = FsKind::from_program(mkfs).ok_or_else(|| LabError::Tool {
            tool: mkfs.to_string(),
            detail:
                "not a filesystem a loop image can be made with (mkfs.ext4, mkfs.xfs, mkfs.btrfs)"
                    .to_string(),
        })?;
        let fs = LoopFs::create(&self.path, name, size_mib, kind, args)?;
        Ok(fs.leave_mounted())
    }

    /// Mounts a small tmpfs on `name/` (a second filesystem for the workdir lab).
    pub fn tmpfs(&self, name: &str) -> Result<PathBuf> {
        let mnt = self.join(name);
        std::fs::create_dir(&mnt).map_err(io("create", &mnt))?;
        rustix::mount::mount(
            "tmpfs",
            &mnt,
            "tmpfs",
            rustix::mount::MountFlags::empty(),
            Some(c"size=16m,mode=0755"),
        )
        .map_err(io("mount a tmpfs on", &mnt))?;
        Ok(mnt)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if self.dir.is_none() {
            return;
        }
        let mut mounts = ovlink_driver::mount::mounts_under(&self.path);
        mounts.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        for m in mounts {
            // Not lazy first: a loop device (autoclear) is released once this returns.
            unmount_releasing_loop(&m);
        }
    }
}

/// Writes a `mib` MiB file of non-zero bytes (no holes, so its blocks are all allocated)
/// and fsyncs it.
pub fn write_big(path: &Path, mib: u64) -> Result<()> {
    use std::io::Write;
    let mut f = std::fs::File::create(path).map_err(io("create", path))?;
    let chunk: Vec<u8> = (0..1u32 << 20).map(|i| (i % 251) as u8 + 1).collect();
    for _ in 0..mib {
        f.write_all(&chunk).map_err(io("write", path))?;
    }
    f.sync_all().map_err(io("fsync", path))?;
    Ok(())
}

/// Runs a tool; its failure (or absence) is an error with its stderr.
pub fn run_tool(cmd: &mut Command, tool: &str) -> Result<std::process::Output> {
    let out = cmd.output().map_err(|e| LabError::Tool {
        tool: tool.to_string(),
        detail: if e.kind() == std::io::ErrorKind::NotFound {
            "not installed".to_string()
        } else {
            e.to_string()
        },
    })?;
    if !out.status.success() {
        return Err(LabError::Tool {
            tool: tool.to_string(),
            detail: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(out)
}

/// Runs a tool and returns (success, stdout + stderr trimmed); only its absence is an error.
pub fn try_tool(cmd: &mut Command, tool: &str) -> Result<(bool, String)> {
    let out = cmd.output().map_err(|e| LabError::Tool {
        tool: tool.to_string(),
        detail: e.to_string(),
    })?;
    let mut text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
    if !err.is_empty() {
        if !text.is_empty() {
            text.push('\n');
        }
        text.push_str(&err);
    }
    Ok((out.status.success(), text))
}

/// A plain overlay mount inside a scratch directory: lowerdirs (top first), upper, work and
/// merged given relative to `dir`, plus extra options.
#[derive(Debug, Clone)]
pub struct Ovl {
    /// The directory the relative names are in (the lab's `cd`).
    pub dir: PathBuf,
    /// lowerdirs, top first.
    pub lowers: Vec<String>,
    /// upperdir (`None`: a read-only mount of the lowers).
    pub upper: Option<String>,
    /// workdir.
    pub work: Option<String>,
    /// The mount point.
    pub merged: String,
    /// Extra options (`redirect_dir=off`, …).
    pub extra: Vec<String>,
}

impl Ovl {
    /// `lowerdir=lower,upperdir=upper,workdir=work` on `merged` in `dir`.
    pub fn simple(dir: &Path) -> Ovl {
        Ovl {
            dir: dir.to_path_buf(),
            lowers: vec!["lower".into()],
            upper: Some("upper".into()),
            work: Some("work".into()),
            merged: "merged".into(),
            extra: Vec::new(),
        }
    }

    /// With an extra option.
    pub fn with(mut self, opt: &str) -> Ovl {
        self.extra.push(opt.to_string());
        self
    }

    fn options(&self, abs: bool) -> String {
        let p = |r: &str| {
            if abs && !r.starts_with('/') {
                self.dir.join(r).display().to_string()
            } else {
                r.to_string()
            }
        };
        let mut o = format!(
            "lowerdir={}",
            self.lowers
                .iter()
                .map(|l| p(l))
                .collect::<Vec<_>>()
                .join(":")
        );
        if let Some(u) = &self.upper {
            o.push_str(&format!(",upperdir={}", p(u)));
        }
        if let Some(w) = &self.work {
            o.push_str(&format!(",workdir={}", p(w)));
        }
        for e in &self.extra {
            o.push(',');
            o.push_str(e);
        }
        o
    }

    /// The shell command a student types (relative paths, from `dir`).
    pub fn shell(&self) -> String {
        format!(
            "mount -t overlay overlay -o {} {}",
            self.options(false),
            self.merged
        )
    }

    /// The absolute mount point.
    pub fn merged(&self) -> PathBuf {
        self.dir.join(&self.merged)
    }

    /// mount(2); the errno when the kernel refuses.
    pub fn try_mount(&self) -> std::result::Result<(), Errno> {
        let data = std::ffi::CString::new(self.options(true)).map_err(|_| Errno::INVAL)?;
        rustix::mount::mount(
            "overlay",
            self.merged(),
            "overlay",
            rustix::mount::MountFlags::empty(),
            Some(data.as_c_str()),
        )
    }

    /// mount(2), failing with the options shown.
    pub fn mount(&self) -> Result<()> {
        self.try_mount().map_err(|e| LabError::Io {
            op: "mount overlay (options below) on",
            path: PathBuf::from(format!(
                "{} ({})",
                self.merged().display(),
                self.options(true)
            )),
            source: e.into(),
        })
    }

    /// mount(2) that the lab expects the kernel to refuse: (errno, its text); a mount that
    /// succeeds is undone and reported as `(None, "mounted (unexpected)")`.
    pub fn refused(&self) -> Result<(Option<i32>, String)> {
        match self.try_mount() {
            Ok(()) => {
                self.umount()?;
                Ok((None, "mounted (unexpected)".to_string()))
            }
            Err(e) => {
                let e: std::io::Error = e.into();
                Ok((e.raw_os_error(), errno_text(&e)))
            }
        }
    }

    /// umount(2), narrated as the command a student types.
    pub(crate) fn umount_told(&self, say: &crate::Say<'_>) -> Result<()> {
        say.cmd(format!("umount {}", self.merged));
        self.umount()
    }

    /// umount(2).
    pub fn umount(&self) -> Result<()> {
        ovlink_driver::mount::unmount(&self.merged())?;
        Ok(())
    }

    /// The line of /proc/self/mounts for this mount.
    pub fn mount_line(&self) -> Option<String> {
        mount_line(&self.merged())
    }
}

/// The /proc/self/mounts line of the mount at `target`.
pub fn mount_line(target: &Path) -> Option<String> {
    let t = target.to_str()?;
    std::fs::read_to_string("/proc/self/mounts")
        .ok()?
        .lines()
        .rfind(|l| l.split(' ').nth(1) == Some(t))
        .map(str::to_string)
}

/// What `stat` says, as the labs report it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Seen {
    /// `file`, `dir`, `char`, `symlink`, …
    pub kind: &'static str,
    /// Device numbers (major, minor) of a device node.
    pub rdev: Option<(u32, u32)>,
    /// Inode number.
    pub ino: u64,
    /// Link count.
    pub nlink: u64,
    /// Size in bytes.
    pub size: u64,
    /// 512-byte blocks allocated.
    pub blocks: u64,
    /// Permission bits.
    pub mode: u32,
}

/// lstat of `p`, `None` when it does not exist.
pub fn seen(p: &Path) -> Result<Option<Seen>> {
    match std::fs::symlink_metadata(p) {
        Ok(m) => {
            let t = m.file_type();
            let kind = ovlink_fs::walk::kind_name(t);
            Ok(Some(Seen {
                kind,
                rdev: (t.is_char_device() || t.is_block_device())
                    .then(|| (rustix::fs::major(m.rdev()), rustix::fs::minor(m.rdev()))),
                ino: m.ino(),
                nlink: m.nlink(),
                size: m.size(),
                blocks: m.blocks(),
                mode: m.mode() & 0o7777,
            }))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(LabError::Io {
            op: "stat",
            path: p.to_path_buf(),
            source: e,
        }),
    }
}

/// lstat of `p`, which must exist.
pub fn must_see(p: &Path) -> Result<Seen> {
    seen(p)?.ok_or_else(|| LabError::Unexpected(format!("{} does not exist", p.display())))
}

/// An `ls -l`-like line for `rel` (below `dir`), or "No such file or directory".
pub fn ls_line(dir: &Path, rel: &str) -> Result<String> {
    Ok(match seen(&dir.join(rel))? {
        None => format!("ls: cannot access '{rel}': No such file or directory"),
        Some(s) => {
            let t = match s.kind {
                "dir" => 'd',
                "char" => 'c',
                "symlink" => 'l',
                "block" => 'b',
                "fifo" => 'p',
                _ => '-',
            };
            let mut perm = String::from(t);
            for (i, c) in "rwxrwxrwx".chars().enumerate() {
                perm.push(if s.mode & (1 << (8 - i)) != 0 { c } else { '-' });
            }
            match s.rdev {
                Some((ma, mi)) => format!("{perm} {} {ma}, {mi} {rel}  (inode {})", s.nlink, s.ino),
                None => format!("{perm} {} {:>8} {rel}  (inode {})", s.nlink, s.size, s.ino),
            }
        }
    })
}

/// The value of xattr `name` on `p` (not following symlinks), `None` when absent.
pub fn xattr(p: &Path, name: &str) -> Result<Option<String>> {
    Ok(ovlink_fs::xattr::get(p, std::ffi::OsStr::new(name))?
        .map(|v| String::from_utf8_lossy(&v).into_owned()))
}

/// The xattr names on `p` that start with `trusted.overlay.`.
pub fn overlay_xattrs(p: &Path) -> Result<Vec<String>> {
    Ok(ovlink_fs::xattr::list(p)?
        .into_iter()
        .map(|n| n.to_string_lossy().into_owned())
        .filter(|n| n.starts_with("trusted.overlay."))
        .collect())
}

/// The errno of an I/O error, as `EXDEV (Invalid cross-device link)`.
pub fn errno_text(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(n) => {
            let text = std::io::Error::from_raw_os_error(n).to_string();
            let text = text
                .split(" (os error")
                .next()
                .unwrap_or_default()
                .to_string();
            format!("{} ({text})", errno_name(n))
        }
        None => e.to_string(),
    }
}

/// The symbolic name of the errnos the labs meet.
pub fn errno_name(n: i32) -> String {
    let known = [
        (Errno::XDEV, "EXDEV"),
        (Errno::NXIO, "ENXIO"),
        (Errno::INVAL, "EINVAL"),
        (Errno::NOENT, "ENOENT"),
        (Errno::BUSY, "EBUSY"),
        (Errno::PERM, "EPERM"),
        (Errno::NOTEMPTY, "ENOTEMPTY"),
        (Errno::NOSPC, "ENOSPC"),
        (Errno::MLINK, "EMLINK"),
        (Errno::NODEV, "ENODEV"),
        (Errno::STALE, "ESTALE"),
        (Errno::IO, "EIO"),
    ];
    known
        .iter()
        .find(|(e, _)| e.raw_os_error() == n)
        .map(|(_, s)| s.to_string())
        .unwrap_or_else(|| format!("errno {n}"))
}

/// The directory listing of `dir` (names sorted), empty when missing.
pub fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}
