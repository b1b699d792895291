//! Layer tars built in code for tests: directories, files (with mode, owner, PAX xattrs),
//! symlinks, hardlinks, whiteouts and opaque markers, and entries whose name is written byte
//! for byte (the tar crate refuses to write `..`), so hostile layers can be built too.

use std::path::{Path, PathBuf};

/// The mtime of every entry (a fixed time, so tars are reproducible).
pub const MTIME: u64 = 1_600_000_000;

/// Builds a layer tar in memory.
pub struct TarBuilder {
    b: tar::Builder<Vec<u8>>,
}

impl TarBuilder {
    /// An empty archive.
    pub fn new() -> Self {
        TarBuilder {
            b: tar::Builder::new(Vec::new()),
        }
    }

    fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
        ovlink_tar::root_header(kind, mode, size, MTIME)
    }

    /// A directory.
    pub fn dir(mut self, path: &str, mode: u32) -> Self {
        let mut h = Self::header(tar::EntryType::Directory, mode, 0);
        self.b.append_data(&mut h, path, std::io::empty()).unwrap();
        self
    }

    /// A regular file owned by root.
    pub fn file(mut self, path: &str, mode: u32, data: &[u8]) -> Self {
        let mut h = Self::header(tar::EntryType::Regular, mode, data.len() as u64);
        self.b.append_data(&mut h, path, data).unwrap();
        self
    }

    /// A regular file (mode 0644) whose name is written as is (the tar crate refuses to
    /// write `..`).
    pub fn raw_file(self, path: &str, data: &[u8]) -> Self {
        self.raw(tar::EntryType::Regular, path.as_bytes(), None, data, |_| {})
    }

    /// One entry whose name and link name are written byte for byte (see [`append_raw`]),
    /// with the mode of its kind (0755 directories, 0777 symlinks, else 0644) and owner 0:0
    /// before `edit`.
    pub fn raw(
        mut self,
        kind: tar::EntryType,
        name: &[u8],
        link: Option<&[u8]>,
        data: &[u8],
        edit: impl FnOnce(&mut tar::Header),
    ) -> Self {
        let mode = match kind {
            tar::EntryType::Directory => 0o755,
            tar::EntryType::Symlink => 0o777,
            _ => 0o644,
        };
        append_raw(&mut self.b, kind, name, link, data, |h| {
            h.set_mode(mode);
            h.set_uid(0);
            h.set_gid(0);
            edit(h)
        });
        self
    }

    /// A regular file with an owner.
    pub fn owned_file(mut self, path: &str, mode: u32, uid: u64, gid: u64, data: &[u8]) -> Self {
        let mut h = Self::header(tar::EntryType::Regular, mode, data.len() as u64);
        h.set_uid(uid);
        h.set_gid(gid);
        self.b.append_data(&mut h, path, data).unwrap();
        self
    }

    /// A regular file (mode 0644) preceded by a PAX header carrying `SCHILY.xattr.<key>`
    /// records (how Docker's tars carry xattrs).
    pub fn file_with_xattrs(mut self, path: &str, data: &[u8], xattrs: &[(&str, &[u8])]) -> Self {
        let recs: Vec<(String, &[u8])> = xattrs
            .iter()
            .map(|(k, v)| (format!("SCHILY.xattr.{k}"), *v))
            .collect();
        self.b
            .append_pax_extensions(recs.iter().map(|(k, v)| (k.as_str(), *v)))
            .unwrap();
        self.file(path, 0o644, data)
    }

    /// A symlink.
    pub fn symlink(mut self, path: &str, target: &str) -> Self {
        let mut h = Self::header(tar::EntryType::Symlink, 0o777, 0);
        self.b.append_link(&mut h, path, target).unwrap();
        self
    }

    /// A hardlink to an earlier entry.
    pub fn hardlink(mut self, path: &str, target: &str) -> Self {
        let mut h = Self::header(tar::EntryType::Link, 0o644, 0);
        self.b.append_link(&mut h, path, target).unwrap();
        self
    }

    /// The whiteout of `dir/name` (`dir/.wh.name`; `dir` empty for the top).
    pub fn whiteout(self, dir: &str, name: &str) -> Self {
        let p = if dir.is_empty() {
            format!(".wh.{name}")
        } else {
            format!("{dir}/.wh.{name}")
        };
        self.file(&p, 0o644, b"")
    }

    /// The opaque marker of `dir` (`dir/.wh..wh..opq`).
    pub fn opaque(self, dir: &str) -> Self {
        self.file(&format!("{dir}/.wh..wh..opq"), 0o644, b"")
    }

    /// The finished archive.
    pub fn build(self) -> Vec<u8> {
        self.b.into_inner().unwrap()
    }

    /// Writes the tar to `dir/name` and returns the path.
    pub fn write_to(self, dir: &Path, name: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, self.build()).unwrap();
        p
    }
}

/// Appends one entry whose name and link name are written byte for byte into the old-style
/// 100-byte fields (no checks by the tar crate, so `..`, absolute and hostile names can be
/// written): mode 0644, [`MTIME`], the owner fields left empty; `edit` may change the header before its
/// checksum.
pub fn append_raw(
    b: &mut tar::Builder<Vec<u8>>,
    kind: tar::EntryType,
    name: &[u8],
    link: Option<&[u8]>,
    data: &[u8],
    edit: impl FnOnce(&mut tar::Header),
) {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(0o644);
    h.set_size(data.len() as u64);
    h.set_mtime(MTIME);
    {
        let old = h.as_old_mut();
        old.name.fill(0);
        old.name[..name.len()].copy_from_slice(name);
        if let Some(l) = link {
            old.linkname.fill(0);
            old.linkname[..l.len()].copy_from_slice(l);
        }
    }
    edit(&mut h);
    h.set_cksum();
    b.append(&h, data).unwrap();
}
