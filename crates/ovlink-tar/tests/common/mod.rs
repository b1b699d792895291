//! Helpers shared by the integration tests: building layer tars entry by entry with explicit
//! headers (raw names allowed, so hostile names can be written), applying them into a fresh
//! tempdir tree, and snapshotting a directory to prove it was left alone.
#![allow(dead_code, clippy::unwrap_used, missing_docs)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use ovlink_tar::{apply_layer, ApplyOptions, ApplyStats, TarError};
use tar::{EntryType, Header};

pub const MTIME: u64 = 1_600_000_000;

/// A layer tar under construction.
pub struct Layer {
    b: tar::Builder<Vec<u8>>,
}

impl Default for Layer {
    fn default() -> Self {
        Self::new()
    }
}

pub fn set_name(h: &mut Header, name: &[u8]) {
    assert!(name.len() <= 100, "use a PAX path for long names");
    let n = &mut h.as_gnu_mut().unwrap().name;
    n.fill(0);
    n[..name.len()].copy_from_slice(name);
}

impl Layer {
    pub fn new() -> Self {
        Layer {
            b: tar::Builder::new(Vec::new()),
        }
    }

    /// One entry with a raw name; `f` may adjust the header before the checksum.
    pub fn raw(
        &mut self,
        kind: EntryType,
        name: &[u8],
        link: Option<&[u8]>,
        data: &[u8],
        f: impl FnOnce(&mut Header),
    ) -> &mut Self {
        let mut h = Header::new_gnu();
        set_name(&mut h, name);
        h.set_entry_type(kind);
        h.set_size(data.len() as u64);
        h.set_mode(match kind {
            EntryType::Directory => 0o755,
            EntryType::Symlink => 0o777,
            _ => 0o644,
        });
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(MTIME);
        if let Some(l) = link {
            h.set_link_name_literal(l).unwrap();
        }
        f(&mut h);
        h.set_cksum();
        self.b.append(&h, data).unwrap();
        self
    }

    pub fn file(&mut self, name: &str, data: &[u8]) -> &mut Self {
        self.raw(EntryType::Regular, name.as_bytes(), None, data, |_| {})
    }
    pub fn file_with(&mut self, name: &str, data: &[u8], f: impl FnOnce(&mut Header)) -> &mut Self {
        self.raw(EntryType::Regular, name.as_bytes(), None, data, f)
    }
    pub fn dir(&mut self, name: &str) -> &mut Self {
        self.raw(EntryType::Directory, name.as_bytes(), None, b"", |_| {})
    }
    pub fn dir_with(&mut self, name: &str, f: impl FnOnce(&mut Header)) -> &mut Self {
        self.raw(EntryType::Directory, name.as_bytes(), None, b"", f)
    }
    pub fn symlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.raw(
            EntryType::Symlink,
            name.as_bytes(),
            Some(target.as_bytes()),
            b"",
            |_| {},
        )
    }
    pub fn hardlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.raw(
            EntryType::Link,
            name.as_bytes(),
            Some(target.as_bytes()),
            b"",
            |_| {},
        )
    }
    /// A whiteout-style empty regular file.
    pub fn wh(&mut self, name: &str) -> &mut Self {
        self.file(name, b"")
    }
    /// A PAX extended header applying to the next entry.
    pub fn pax(&mut self, records: &[(&str, &[u8])]) -> &mut Self {
        self.b
            .append_pax_extensions(records.iter().copied())
            .unwrap();
        self
    }
    /// The finished archive (with its two end-of-archive blocks).
    pub fn bytes(&mut self) -> Vec<u8> {
        let b = std::mem::replace(&mut self.b, tar::Builder::new(Vec::new()));
        b.into_inner().unwrap()
    }
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

pub fn zstd(data: &[u8]) -> Vec<u8> {
    zstd::stream::encode_all(data, 3).unwrap()
}

/// A tempdir with `root/` (the layer tree) and `sentinel/` (must never change) side by side.
pub struct Env {
    pub td: tempfile::TempDir,
    pub root: PathBuf,
    pub sentinel: PathBuf,
}

impl Env {
    pub fn new() -> Self {
        let td = tempfile::tempdir().unwrap();
        let root = td.path().join("root");
        let sentinel = td.path().join("sentinel");
        std::fs::create_dir(&root).unwrap();
        std::fs::create_dir(&sentinel).unwrap();
        std::fs::write(sentinel.join("secret"), b"do not touch").unwrap();
        std::fs::create_dir(sentinel.join("sub")).unwrap();
        std::fs::write(sentinel.join("sub/inner"), b"inner").unwrap();
        Env { td, root, sentinel }
    }

    pub fn apply(&self, data: &[u8]) -> Result<ApplyStats, TarError> {
        self.apply_opts(data, &ApplyOptions::default())
    }

    pub fn apply_opts(&self, data: &[u8], opts: &ApplyOptions) -> Result<ApplyStats, TarError> {
        let fd = ovlink_fs::at::open_dir(&self.root).unwrap();
        let mut r: &[u8] = data;
        apply_layer(rustix::fd::AsFd::as_fd(&fd), &self.root, &mut r, opts)
    }

    pub fn apply_reader(&self, r: &mut dyn Read) -> Result<ApplyStats, TarError> {
        let fd = ovlink_fs::at::open_dir(&self.root).unwrap();
        apply_layer(
            rustix::fd::AsFd::as_fd(&fd),
            &self.root,
            r,
            &ApplyOptions::default(),
        )
    }

    pub fn p(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }
}

/// Everything observable about a tree: per path, type, mode, owner, size, mtime, inode, link
/// count, and content or link target.
pub fn snapshot(dir: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, String>) {
        let md = std::fs::symlink_metadata(dir).unwrap();
        out.insert(
            dir.strip_prefix(base).unwrap().to_path_buf(),
            describe(dir, &md),
        );
        if md.is_dir() {
            for e in std::fs::read_dir(dir).unwrap() {
                walk(base, &e.unwrap().path(), out);
            }
        }
    }
    fn describe(p: &Path, md: &std::fs::Metadata) -> String {
        let ft = md.file_type();
        let what = if ft.is_symlink() {
            format!("link {:?}", std::fs::read_link(p).unwrap())
        } else if ft.is_file() {
            format!("file {:?}", std::fs::read(p).unwrap())
        } else if ft.is_dir() {
            "dir".to_string()
        } else if ft.is_fifo() {
            "fifo".to_string()
        } else {
            "other".to_string()
        };
        format!(
            "{what} mode={:o} uid={} gid={} size={} mtime={}.{} ino={} nlink={}",
            md.mode(),
            md.uid(),
            md.gid(),
            md.size(),
            md.mtime(),
            md.mtime_nsec(),
            md.ino(),
            md.nlink()
        )
    }
    walk(dir, dir, &mut out);
    out
}
