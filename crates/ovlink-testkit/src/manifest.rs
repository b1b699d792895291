//! Tree manifests for comparing trees: a walk (not following symlinks) giving, per relative
//! path, type, mode, owner, size, content digest, link target, device numbers, the xattrs
//! layers care about, the inode and its link count; and the views built on it (without
//! inode numbers, hardlink groups). Reading only: it never changes the tree it walks.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// One entry of a tree manifest (the fields of `scripts/layout-manifest.py`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// `dir`, `file`, `symlink`, `char`, `block`, `fifo`, `socket`.
    pub kind: &'static str,
    /// Permission bits (with setuid/setgid/sticky).
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Size of a regular file.
    pub size: Option<u64>,
    /// SHA-256 of a regular file's content.
    pub sha256: Option<String>,
    /// A symlink's target.
    pub target: Option<String>,
    /// (major, minor) of a device node.
    pub rdev: Option<(u64, u64)>,
    /// `security.capability` and `trusted.overlay.*` xattrs, hex values.
    pub xattrs: BTreeMap<String, String>,
    /// (device, inode): equal for the paths of one hardlink group.
    pub dev_ino: (u64, u64),
    /// Link count.
    pub nlink: u64,
}

/// The manifest type name of a file type ([`ovlink_fs::walk::kind_name`]).
pub fn kind_of(m: &std::fs::Metadata) -> &'static str {
    ovlink_fs::walk::kind_name(m.file_type())
}

/// SHA-256 (hex) of a file's content.
pub fn sha256_file(p: &Path) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    let mut f = std::fs::File::open(p).unwrap();
    std::io::copy(&mut f, &mut h).unwrap();
    hex::encode(h.finalize())
}

fn layer_xattrs(p: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut buf = vec![0u8; 4096];
    let Ok(n) = rustix::fs::llistxattr(p, &mut buf[..]) else {
        return out;
    };
    for name in buf[..n].split(|b| *b == 0).filter(|s| !s.is_empty()) {
        let name = String::from_utf8_lossy(name).into_owned();
        if name == "security.capability" || name.starts_with("trusted.overlay.") {
            let mut v = vec![0u8; 4096];
            if let Ok(n) = rustix::fs::lgetxattr(p, name.as_str(), &mut v[..]) {
                out.insert(name, hex::encode(&v[..n]));
            }
        }
    }
    out
}

/// A manifest of the tree at `root`: relative path (`.` for the root) -> entry, sorted.
pub fn manifest(root: &Path) -> BTreeMap<String, Entry> {
    let mut out = BTreeMap::new();
    for e in walkdir::WalkDir::new(root).follow_links(false) {
        let e = e.unwrap();
        let rel = e.path().strip_prefix(root).unwrap();
        let rel = if rel.as_os_str().is_empty() {
            ".".to_string()
        } else {
            rel.to_string_lossy().into_owned()
        };
        let m = std::fs::symlink_metadata(e.path()).unwrap();
        let kind = kind_of(&m);
        out.insert(
            rel,
            Entry {
                kind,
                mode: m.mode() & 0o7777,
                uid: m.uid(),
                gid: m.gid(),
                size: (kind == "file").then(|| m.size()),
                sha256: (kind == "file").then(|| sha256_file(e.path())),
                target: (kind == "symlink").then(|| {
                    std::fs::read_link(e.path())
                        .unwrap()
                        .to_string_lossy()
                        .into_owned()
                }),
                rdev: matches!(kind, "char" | "block").then(|| {
                    (
                        rustix::fs::major(m.rdev()) as u64,
                        rustix::fs::minor(m.rdev()) as u64,
                    )
                }),
                xattrs: layer_xattrs(e.path()),
                dev_ino: (m.dev(), m.ino()),
                nlink: m.nlink(),
            },
        );
    }
    out
}

/// The manifests of several trees.
pub fn manifests(dirs: &[PathBuf]) -> Vec<BTreeMap<String, Entry>> {
    dirs.iter().map(|d| manifest(d)).collect()
}

/// The manifest without what a copy or a round trip cannot keep (inode numbers, link counts).
pub fn comparable(root: &Path) -> BTreeMap<String, Entry> {
    manifest(root)
        .into_iter()
        .map(|(p, mut e)| {
            e.dev_ino = (0, 0);
            e.nlink = 0;
            (p, e)
        })
        .collect()
}

/// Asserts that two trees hold the same paths with the same [`comparable`] entries.
pub fn assert_same_tree(a: &Path, b: &Path) {
    let (ma, mb) = (comparable(a), comparable(b));
    let ka: Vec<_> = ma.keys().collect();
    let kb: Vec<_> = mb.keys().collect();
    assert_eq!(
        ka,
        kb,
        "the same paths in {} and {}",
        a.display(),
        b.display()
    );
    for (p, e) in &ma {
        assert_eq!(e, &mb[p], "{p}");
    }
}

/// Groups of paths (relative, sorted) sharing one inode, for regular files: the inode groups
/// to compare between trees whose inode numbers differ.
pub fn link_groups(root: &Path) -> Vec<Vec<String>> {
    let mut by: BTreeMap<(u64, u64), Vec<String>> = BTreeMap::new();
    for (p, e) in manifest(root) {
        if e.kind == "file" && e.nlink > 1 {
            by.entry(e.dev_ino).or_default().push(p);
        }
    }
    let mut v: Vec<_> = by.into_values().filter(|g| g.len() > 1).collect();
    v.sort();
    v
}
