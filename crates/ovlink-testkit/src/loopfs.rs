//! A loop-mounted filesystem for a test ([`ovlink_fs::loopfs`] underneath): made and mounted,
//! or the test fails naming what is missing (the mkfs program and its Debian package). It is
//! never skipped: a test that cannot make its filesystem has not run, so it must not pass.

use ovlink_fs::loopfs::FsKind;
use std::path::{Path, PathBuf};

/// A loop-mounted filesystem image, unmounted (and its loop device released) on drop.
pub struct LoopFs {
    /// The mount point.
    pub mnt: PathBuf,
    _fs: ovlink_fs::loopfs::LoopFs,
}

impl LoopFs {
    /// Makes a `size_mb` MiB image in `dir` with `mkfs` (the program, then its arguments:
    /// `["mkfs.ext4", "-q", "-F"]`) and mounts it on `dir/<program>/`. Panics with the typed
    /// error (e.g. "mkfs.xfs is not installed (apt-get install xfsprogs)") when it cannot.
    pub fn new(dir: &Path, size_mb: u64, mkfs: &[&str]) -> LoopFs {
        let kind = FsKind::from_program(mkfs[0])
            .unwrap_or_else(|| panic!("{}: not mkfs.ext4, mkfs.xfs or mkfs.btrfs", mkfs[0]));
        let fs = ovlink_fs::loopfs::LoopFs::create(dir, mkfs[0], size_mb, kind, &mkfs[1..])
            .unwrap_or_else(|e| panic!("this test needs a loop-mounted {}: {e}", mkfs[0]));
        LoopFs {
            mnt: fs.path().to_path_buf(),
            _fs: fs,
        }
    }
}
