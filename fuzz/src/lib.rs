//! Shared helpers of the ovlink fuzz targets: making mutated tar archives parseable again
//! (header checksums) and snapshotting a directory tree to prove nothing outside the
//! sandbox changed. Owns nothing on disk; must never touch a path outside the temporary
//! directories the targets create.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// Walks the ustar headers of a plain tar in `data` and rewrites each header's checksum, so
/// that byte mutations reach the applier instead of dying at the checksum check. Compressed
/// inputs (gzip, zstd magic) are left alone.
pub fn fix_tar_checksums(data: &mut [u8]) {
    if data.starts_with(&[0x1f, 0x8b]) || data.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        return;
    }
    let mut off = 0usize;
    while off + 512 <= data.len() {
        let hdr = &mut data[off..off + 512];
        if hdr.iter().all(|&b| b == 0) {
            return;
        }
        for b in &mut hdr[148..156] {
            *b = b' ';
        }
        let sum: u32 = hdr.iter().map(|&b| u32::from(b)).sum();
        let text = format!("{sum:06o}\0 ");
        hdr[148..156].copy_from_slice(text.as_bytes());
        let size = parse_octal(&hdr[124..136]).unwrap_or(0);
        let blocks = size.div_ceil(512);
        off = match usize::try_from(blocks)
            .ok()
            .and_then(|b| b.checked_mul(512))
            .and_then(|b| b.checked_add(off + 512))
        {
            Some(o) => o,
            None => return,
        };
    }
}

fn parse_octal(field: &[u8]) -> Option<u64> {
    let s = field
        .iter()
        .copied()
        .skip_while(|&b| b == b' ')
        .take_while(|&b| (b'0'..=b'7').contains(&b));
    let mut v: u64 = 0;
    for b in s {
        v = v.checked_mul(8)?.checked_add(u64::from(b - b'0'))?;
    }
    Some(v)
}

/// One entry of a [`snapshot`]: type and mode bits, size, mtime and inode. The link count
/// is left out: removing the tree's own link to an inode it shares with the outside (a
/// whiteout, a replaced entry) legitimately lowers it; [`links`] checks it never grows.
pub type Snap = BTreeMap<String, (u32, u64, i64, u64)>;

/// Link counts below `dir`, path → nlink.
pub fn links(dir: &Path) -> BTreeMap<String, u64> {
    walkdir::WalkDir::new(dir)
        .follow_links(false)
        .into_iter()
        .flatten()
        .filter_map(|e| {
            let m = e.path().symlink_metadata().ok()?;
            Some((e.path().display().to_string(), m.nlink()))
        })
        .collect()
}

/// Everything below `dir` (not following symlinks): path → (mode, size, mtime, ino).
pub fn snapshot(dir: &Path) -> Snap {
    let mut out = Snap::new();
    for e in walkdir::WalkDir::new(dir).follow_links(false) {
        let Ok(e) = e else { continue };
        let Ok(m) = e.path().symlink_metadata() else {
            continue;
        };
        out.insert(
            e.path().display().to_string(),
            (m.mode(), m.size(), m.mtime(), m.ino()),
        );
    }
    out
}
