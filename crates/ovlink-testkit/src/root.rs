//! A private temporary root for one test, and the mounts below a directory. The root's drop
//! detaches every mount below it (deepest first) before the directory is removed, so a failing
//! test leaves no mounts behind. It never unmounts anything outside its own directory.

use std::path::{Path, PathBuf};

/// Fails loudly when the tests cannot do what they exist for (root, overlay mounts).
pub fn require_root() {
    assert!(
        rustix::process::geteuid().is_root(),
        "ovlink's integration tests mount overlayfs and must run as root (use the README's test command)"
    );
}

/// A private temporary root for one test, in a base directory the caller names (the test
/// binary decides where: this crate reads no environment). On drop, every mount below it is
/// detached (deepest first) before the directory is removed.
pub struct TestRoot {
    /// The directory.
    pub dir: tempfile::TempDir,
}

impl TestRoot {
    /// Makes the directory in `base` (created if missing); fails unless running as root.
    pub fn in_dir(base: &Path) -> Self {
        require_root();
        std::fs::create_dir_all(base).unwrap();
        TestRoot {
            dir: tempfile::Builder::new()
                .prefix("ovlink-test-")
                .tempdir_in(base)
                .unwrap(),
        }
    }

    /// The ovlink `--root` of this test.
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    /// The legacy layout's driver home (`<root>/overlay`).
    pub fn home(&self) -> PathBuf {
        self.root().join("overlay")
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// This test's private TMPDIR (created on first use), so that what a command makes in
    /// the temporary directory is this test's alone.
    pub fn tmp(&self) -> PathBuf {
        let p = self.path().join("tmp");
        std::fs::create_dir_all(&p).unwrap();
        p
    }

    /// Mount points currently below this test's directory.
    pub fn mounts(&self) -> Vec<PathBuf> {
        mounts_under(self.path())
    }
}

impl Drop for TestRoot {
    fn drop(&mut self) {
        for m in mounts_under(self.path()) {
            let _ = rustix::mount::unmount(&m, rustix::mount::UnmountFlags::DETACH);
        }
    }
}

/// Mount points at or below `dir`, deepest first.
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut v: Vec<PathBuf> = text
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(p.replace("\\040", " ")))
        .filter(|p| p.starts_with(dir))
        .collect();
    v.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    v
}
