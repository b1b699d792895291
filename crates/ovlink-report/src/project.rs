//! Filesystem figures (`statvfs`), hardlink limits by filesystem, and projections: how many
//! more units of a given cost fit in what is free, and whether inodes or bytes run out first.
//!
//! This module only reads `statvfs` and does arithmetic.

use ovlink_fs::error::Context;
use serde::Serialize;
use std::path::Path;

/// Free and total inodes and bytes of the filesystem holding a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct FsStats {
    /// Inodes the filesystem has.
    pub inodes_total: u64,
    /// Inodes in use.
    pub inodes_used: u64,
    /// Inodes still available.
    pub inodes_free: u64,
    /// Bytes the filesystem has.
    pub bytes_total: u64,
    /// Bytes in use.
    pub bytes_used: u64,
    /// Bytes still available (to unprivileged users, as `df` shows).
    pub bytes_free: u64,
}

impl FsStats {
    /// `statvfs` of `path`.
    pub fn of(path: &Path) -> crate::Result<FsStats> {
        let st = rustix::fs::statvfs(path).ctx("statvfs", path)?;
        let bs = st.f_frsize;
        Ok(FsStats {
            inodes_total: st.f_files,
            inodes_used: st.f_files.saturating_sub(st.f_ffree),
            inodes_free: st.f_favail,
            bytes_total: st.f_blocks * bs,
            bytes_used: st.f_blocks.saturating_sub(st.f_bfree) * bs,
            bytes_free: st.f_bavail * bs,
        })
    }

    /// Percentage of inodes used.
    pub fn inodes_used_pct(&self) -> f64 {
        pct(self.inodes_used, self.inodes_total)
    }

    /// Percentage of bytes used.
    pub fn bytes_used_pct(&self) -> f64 {
        pct(self.bytes_used, self.bytes_total)
    }
}

fn pct(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 * 100.0 / b as f64
    }
}

/// The most hardlinks one inode can have on the filesystem with magic `magic` (`statfs`
/// `f_type`): ext4 65,000, btrfs 65,535, xfs 2^31-1; other filesystems are treated as
/// unlimited (`u32::MAX`). Returns the limit and the filesystem's name for messages.
pub fn link_max(magic: u64) -> (u64, &'static str) {
    match magic {
        0xEF53 => (65_000, "ext4"),
        0x9123_683E => (65_535, "btrfs"),
        0x5846_5342 => ((1 << 31) - 1, "xfs"),
        0x0102_1994 => (u64::from(u32::MAX), "tmpfs"),
        _ => (u64::from(u32::MAX), "this filesystem"),
    }
}

/// How many more units (layers, containers) of a given cost fit in what is free.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Projection {
    /// What one unit is ("image layers like 3f2a9c…").
    pub what: String,
    /// Inodes one unit costs.
    pub inodes_each: u64,
    /// Bytes one unit costs.
    pub bytes_each: u64,
    /// Units that fit in the free inodes (`None`: the unit costs none).
    pub fit_by_inodes: Option<u64>,
    /// Units that fit in the free bytes (`None`: the unit costs none).
    pub fit_by_bytes: Option<u64>,
    /// Units that fit: the smaller of the two.
    pub fits: Option<u64>,
    /// `inodes` or `bytes`: which runs out first (`none` when neither is used).
    pub runs_out_first: &'static str,
}

/// Projects units costing `inodes_each` inodes and `bytes_each` bytes onto `fs`.
pub fn project(
    what: impl Into<String>,
    inodes_each: u64,
    bytes_each: u64,
    fs: &FsStats,
) -> Projection {
    let by_i = (inodes_each > 0).then(|| fs.inodes_free / inodes_each);
    let by_b = (bytes_each > 0).then(|| fs.bytes_free / bytes_each);
    let (fits, first) = match (by_i, by_b) {
        (Some(i), Some(b)) if i <= b => (Some(i), "inodes"),
        (Some(_), Some(b)) => (Some(b), "bytes"),
        (Some(i), None) => (Some(i), "inodes"),
        (None, Some(b)) => (Some(b), "bytes"),
        (None, None) => (None, "none"),
    };
    Projection {
        what: what.into(),
        inodes_each,
        bytes_each,
        fit_by_inodes: by_i,
        fit_by_bytes: by_b,
        fits,
        runs_out_first: first,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn which_runs_out_first() {
        let fs = FsStats {
            inodes_total: 2000,
            inodes_used: 1000,
            inodes_free: 1000,
            bytes_total: 64 << 20,
            bytes_used: 4 << 20,
            bytes_free: 60 << 20,
        };
        let p = project("x", 100, 400 << 10, &fs);
        assert_eq!(p.fit_by_inodes, Some(10));
        assert_eq!(p.fit_by_bytes, Some(153));
        assert_eq!((p.fits, p.runs_out_first), (Some(10), "inodes"));
        let p = project("y", 1, 30 << 20, &fs);
        assert_eq!((p.fits, p.runs_out_first), (Some(2), "bytes"));
        assert_eq!(project("z", 0, 0, &fs).runs_out_first, "none");
        assert_eq!(link_max(0xEF53).0, 65_000);
    }
}
