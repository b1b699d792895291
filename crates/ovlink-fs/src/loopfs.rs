//! Loop-mounted filesystem images: a sparse image file of N MiB, `mkfs.<kind>` with the
//! caller's arguments, `mount -o loop` on a directory, and on drop an unmount (retried, then
//! lazy) that releases the loop device (`mount -o loop` sets autoclear).
//!
//! This is the one copy of those mechanics; the integration tests (through ovlink-testkit) and
//! the labs' scratch filesystems use it. It must never report success without a mounted
//! filesystem: a missing `mkfs` is [`LoopFsError::MissingProgram`] naming the program and the
//! Debian package that provides it, never a silent `None`. It never touches a path outside the
//! directory it was given.

use crate::error::FsError;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The filesystems a loop image can be made with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsKind {
    /// `mkfs.ext4`, from e2fsprogs.
    Ext4,
    /// `mkfs.xfs`, from xfsprogs.
    Xfs,
    /// `mkfs.btrfs`, from btrfs-progs.
    Btrfs,
}

impl FsKind {
    /// The mkfs program.
    pub fn program(self) -> &'static str {
        match self {
            FsKind::Ext4 => "mkfs.ext4",
            FsKind::Xfs => "mkfs.xfs",
            FsKind::Btrfs => "mkfs.btrfs",
        }
    }

    /// The Debian package that provides [`FsKind::program`].
    pub fn package(self) -> &'static str {
        match self {
            FsKind::Ext4 => "e2fsprogs",
            FsKind::Xfs => "xfsprogs",
            FsKind::Btrfs => "btrfs-progs",
        }
    }

    /// The kind whose mkfs program is `program` (`mkfs.ext4`, `mkfs.xfs`, `mkfs.btrfs`).
    pub fn from_program(program: &str) -> Option<FsKind> {
        [FsKind::Ext4, FsKind::Xfs, FsKind::Btrfs]
            .into_iter()
            .find(|k| k.program() == program)
    }
}

/// Why a loop filesystem could not be made or mounted.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoopFsError {
    /// A program the loop filesystem needs is not installed.
    #[error("{program} is not installed (apt-get install {package})")]
    MissingProgram {
        /// The program (`mkfs.xfs`, `mount`).
        program: &'static str,
        /// The Debian package that provides it.
        package: &'static str,
    },
    /// A program ran and failed.
    #[error("{command} failed ({status}): {stderr}")]
    Failed {
        /// The command line.
        command: String,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// Its standard error, trimmed.
        stderr: String,
    },
    /// A program could not be started for another reason than its absence.
    #[error("cannot run {program}: {source}")]
    Spawn {
        /// The program.
        program: &'static str,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Creating the image file or the mount point failed.
    #[error(transparent)]
    Fs(#[from] FsError),
}

/// A loop-mounted filesystem image (`<dir>/<name>.img` mounted on `<dir>/<name>/`); unmounted
/// on drop unless [`LoopFs::leave_mounted`] was called.
#[derive(Debug)]
pub struct LoopFs {
    img: PathBuf,
    mnt: PathBuf,
    mounted: bool,
}

impl LoopFs {
    /// Makes a sparse `size_mib` MiB image `dir/name.img`, runs `mkfs.<kind> ARGS… IMAGE`
    /// (the caller passes `-q -F`-like flags: mkfs runs unattended) and mounts it with
    /// `mount -o loop` on `dir/name/` (created). On error nothing stays mounted.
    pub fn create(
        dir: &Path,
        name: &str,
        size_mib: u64,
        kind: FsKind,
        args: &[&str],
    ) -> Result<LoopFs, LoopFsError> {
        let img = dir.join(format!("{name}.img"));
        let mnt = dir.join(name);
        let f = std::fs::File::create(&img).map_err(|e| FsError::io("create", &img, e))?;
        f.set_len(size_mib << 20)
            .map_err(|e| FsError::io("size", &img, e))?;
        drop(f);
        run(
            kind.program(),
            kind.package(),
            Command::new(kind.program()).args(args).arg(&img),
        )?;
        std::fs::create_dir(&mnt).map_err(|e| FsError::io("create", &mnt, e))?;
        run(
            "mount",
            "mount",
            Command::new("mount")
                .args(["-o", "loop"])
                .arg(&img)
                .arg(&mnt),
        )?;
        Ok(LoopFs {
            img,
            mnt,
            mounted: true,
        })
    }

    /// The mount point.
    pub fn path(&self) -> &Path {
        &self.mnt
    }

    /// The image file.
    pub fn image(&self) -> &Path {
        &self.img
    }

    /// Gives up the guard: the filesystem stays mounted (for an owner that unmounts
    /// everything below its directory itself); returns the mount point.
    pub fn leave_mounted(mut self) -> PathBuf {
        self.mounted = false;
        std::mem::take(&mut self.mnt)
    }
}

impl Drop for LoopFs {
    fn drop(&mut self) {
        if self.mounted {
            unmount_releasing_loop(&self.mnt);
        }
    }
}

/// Unmounts `mnt`, not lazily first (so an autoclear loop device is released once this
/// returns), retried for a second while it is busy, then lazily.
pub fn unmount_releasing_loop(mnt: &Path) {
    for _ in 0..20 {
        if rustix::mount::unmount(mnt, rustix::mount::UnmountFlags::empty()).is_ok() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let _ = rustix::mount::unmount(mnt, rustix::mount::UnmountFlags::DETACH);
}

fn run(program: &'static str, package: &'static str, cmd: &mut Command) -> Result<(), LoopFsError> {
    let out = cmd.output().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            LoopFsError::MissingProgram { program, package }
        } else {
            LoopFsError::Spawn { program, source: e }
        }
    })?;
    if out.status.success() {
        return Ok(());
    }
    let mut command = program.to_string();
    for a in cmd.get_args() {
        command.push(' ');
        command.push_str(&a.to_string_lossy());
    }
    Err(LoopFsError::Failed {
        command,
        status: out.status,
        stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_name_their_program_and_package() {
        for k in [FsKind::Ext4, FsKind::Xfs, FsKind::Btrfs] {
            assert_eq!(FsKind::from_program(k.program()), Some(k));
        }
        assert_eq!(FsKind::Xfs.package(), "xfsprogs");
        assert_eq!(FsKind::from_program("mkfs.vfat"), None);
    }

    #[test]
    fn a_missing_program_is_an_error_naming_its_package() {
        let err = run(
            "mkfs.ovlink-test-absent",
            "ovlink-test-absent-progs",
            &mut Command::new("mkfs.ovlink-test-absent"),
        )
        .expect_err("an absent program fails");
        assert!(matches!(err, LoopFsError::MissingProgram { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(
            msg.contains("mkfs.ovlink-test-absent")
                && msg.contains("apt-get install ovlink-test-absent-progs"),
            "{msg}"
        );
    }

    #[test]
    fn a_failing_mkfs_is_an_error_with_its_stderr() {
        let td = tempfile::tempdir().expect("tempdir");
        // A zero-length image cannot hold ext4: mkfs.ext4 refuses (no root needed).
        let err = LoopFs::create(td.path(), "tiny", 0, FsKind::Ext4, &["-q", "-F"])
            .expect_err("a zero-size image cannot hold ext4");
        match &err {
            LoopFsError::Failed { command, .. } => assert!(command.starts_with("mkfs.ext4 -q -F")),
            LoopFsError::MissingProgram { .. } => {
                panic!("this machine must have mkfs.ext4 (apt-get install e2fsprogs): {err}")
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(!td.path().join("tiny").exists(), "no mount point left");
    }
}
