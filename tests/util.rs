//! Helpers shared by the integration tests: a private temporary root that unmounts and
//! removes everything under it on drop, running the `ovlink` binary, building tars in code,
//! and a tree manifest for comparing layers.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Fails loudly when the tests cannot do what they exist for (root, overlay mounts).
pub fn require_root() {
    assert!(
        rustix::process::geteuid().is_root(),
        "ovlink's integration tests mount overlayfs and must run as root (use the README's test command)"
    );
}

/// A private temporary root for one test. On drop, every mount below it is detached (deepest
/// first) before the directory is removed, so a failing test leaves no mounts behind.
pub struct TestRoot {
    pub dir: tempfile::TempDir,
}

impl TestRoot {
    pub fn new() -> Self {
        require_root();
        let base = std::env::var_os("OVLINK_TEST_TMP")
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir);
        std::fs::create_dir_all(&base).unwrap();
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

    /// The driver home (`<root>/overlay`).
    pub fn home(&self) -> PathBuf {
        self.root().join("overlay")
    }

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

    /// Runs `ovlink --root <root> ARGS…` (with this test's TMPDIR) and returns its output.
    pub fn ovlink(&self, args: &[&str]) -> Output {
        ovlink_cmd(&self.root(), args)
            .env("TMPDIR", self.tmp())
            .output()
            .unwrap()
    }

    /// Runs ovlink and asserts success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.ovlink(args);
        assert!(
            out.status.success(),
            "ovlink {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs ovlink and asserts failure; returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.ovlink(args);
        assert!(!out.status.success(), "ovlink {args:?} should have failed");
        String::from_utf8(out.stderr).unwrap()
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

thread_local! {
    /// A command every `ovlink_cmd` of this thread runs ovlink under (see [`run_ovlink_under`]).
    static WRAPPER: std::cell::RefCell<Vec<std::ffi::OsString>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// While the returned guard lives, every [`ovlink_cmd`] made on this thread runs
/// `WRAPPER… ovlink …` (e.g. `strace -f -e inject=…`), so helpers written for plain runs
/// (the kill loops of `faults.rs`) run unchanged under the wrapper.
pub fn run_ovlink_under(wrapper: Vec<std::ffi::OsString>) -> WrapperGuard {
    WRAPPER.with(|w| *w.borrow_mut() = wrapper);
    WrapperGuard
}

/// Ends [`run_ovlink_under`] on drop.
pub struct WrapperGuard;

impl Drop for WrapperGuard {
    fn drop(&mut self) {
        WRAPPER.with(|w| w.borrow_mut().clear());
    }
}

/// `ovlink --root ROOT ARGS…` as a command (under this thread's wrapper, if any).
pub fn ovlink_cmd(root: &Path, args: &[&str]) -> Command {
    let bin = env!("CARGO_BIN_EXE_ovlink");
    let wrapper = WRAPPER.with(|w| w.borrow().clone());
    let mut c = match wrapper.split_first() {
        Some((prog, rest)) => {
            let mut c = Command::new(prog);
            c.args(rest).arg(bin);
            c
        }
        None => Command::new(bin),
    };
    c.arg("--root").arg(root).args(args);
    c.env_remove("OVLINK_ROOT");
    c
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

/// One entry of a tree manifest (the fields of `scripts/layout-manifest.py`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub kind: &'static str,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: Option<u64>,
    pub sha256: Option<String>,
    pub target: Option<String>,
    pub rdev: Option<(u64, u64)>,
    pub xattrs: BTreeMap<String, String>,
    pub dev_ino: (u64, u64),
    pub nlink: u64,
}

pub fn kind_of(m: &std::fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let t = m.file_type();
    if t.is_dir() {
        "dir"
    } else if t.is_file() {
        "file"
    } else if t.is_symlink() {
        "symlink"
    } else if t.is_char_device() {
        "char"
    } else if t.is_block_device() {
        "block"
    } else if t.is_fifo() {
        "fifo"
    } else if t.is_socket() {
        "socket"
    } else {
        "unknown"
    }
}

pub fn sha256_file(p: &Path) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    let mut f = std::fs::File::open(p).unwrap();
    std::io::copy(&mut f, &mut h).unwrap();
    hex::encode(h.finalize())
}

fn layer_xattrs(p: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let proc = p.to_path_buf();
    let mut buf = vec![0u8; 4096];
    let Ok(n) = rustix::fs::llistxattr(&proc, &mut buf[..]) else {
        return out;
    };
    for name in buf[..n].split(|b| *b == 0).filter(|s| !s.is_empty()) {
        let name = String::from_utf8_lossy(name).into_owned();
        if name == "security.capability" || name.starts_with("trusted.overlay.") {
            let mut v = vec![0u8; 4096];
            if let Ok(n) = rustix::fs::lgetxattr(&proc, name.as_str(), &mut v[..]) {
                out.insert(name, hex::encode(&v[..n]));
            }
        }
    }
    out
}

/// A manifest of the tree at `root`: relative path (`.` for the root) -> entry.
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

/// Builds a layer tar in memory.
pub struct TarBuilder {
    b: tar::Builder<Vec<u8>>,
}

impl TarBuilder {
    pub fn new() -> Self {
        TarBuilder {
            b: tar::Builder::new(Vec::new()),
        }
    }
    fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_600_000_000);
        h.set_size(size);
        h
    }
    pub fn dir(mut self, path: &str, mode: u32) -> Self {
        let mut h = Self::header(tar::EntryType::Directory, mode, 0);
        self.b.append_data(&mut h, path, std::io::empty()).unwrap();
        self
    }
    pub fn file(mut self, path: &str, mode: u32, data: &[u8]) -> Self {
        let mut h = Self::header(tar::EntryType::Regular, mode, data.len() as u64);
        self.b.append_data(&mut h, path, data).unwrap();
        self
    }
    /// A regular file whose name is written as is (the tar crate refuses to write `..`).
    pub fn raw_file(mut self, path: &str, data: &[u8]) -> Self {
        let mut h = Self::header(tar::EntryType::Regular, 0o644, data.len() as u64);
        let name = &mut h.as_old_mut().name;
        name.fill(0);
        name[..path.len()].copy_from_slice(path.as_bytes());
        h.set_cksum();
        self.b.append(&h, data).unwrap();
        self
    }
    pub fn owned_file(mut self, path: &str, mode: u32, uid: u64, gid: u64, data: &[u8]) -> Self {
        let mut h = Self::header(tar::EntryType::Regular, mode, data.len() as u64);
        h.set_uid(uid);
        h.set_gid(gid);
        self.b.append_data(&mut h, path, data).unwrap();
        self
    }
    pub fn symlink(mut self, path: &str, target: &str) -> Self {
        let mut h = Self::header(tar::EntryType::Symlink, 0o777, 0);
        self.b.append_link(&mut h, path, target).unwrap();
        self
    }
    pub fn hardlink(mut self, path: &str, target: &str) -> Self {
        let mut h = Self::header(tar::EntryType::Link, 0o644, 0);
        self.b.append_link(&mut h, path, target).unwrap();
        self
    }
    pub fn whiteout(self, dir: &str, name: &str) -> Self {
        let p = if dir.is_empty() {
            format!(".wh.{name}")
        } else {
            format!("{dir}/.wh.{name}")
        };
        self.file(&p, 0o644, b"")
    }
    pub fn opaque(self, dir: &str) -> Self {
        self.file(&format!("{dir}/.wh..wh..opq"), 0o644, b"")
    }
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
