//! The container scenario both layouts must pass, written once and run for each
//! [`Layout`]: a two-layer image (hardlinks, a setuid file, a symlink, a 0750 directory), a
//! container on it mounted for real, then read from the lower layers, copy-up of a hardlinked
//! file, delete (a 0/0 whiteout), remove + re-create a directory (opaque), rename a file
//! (whiteout + new name) and a lower directory (EXDEV: redirect_dir is off); the lower layers
//! are unchanged afterwards and nothing stays mounted. What differs between the layouts (where
//! a layer's tree and a container's upper dir are, the legacy layout's layer hardlinks) is
//! said once, in [`Layer`].

use crate::util::*;
use ovlink_driver::Layout;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// `--driver <layout> ARGS…`.
pub fn cli<'a>(layout: Layout, args: &[&'a str]) -> Vec<&'a str> {
    [&["--driver", layout.name()][..], args].concat()
}

/// Where a layout keeps a layer's files, below an ovlink `--root`.
pub trait Layer {
    /// The layout's home (`<root>/overlay`, `<root>/overlay2`).
    fn home_in(self, root: &Path) -> PathBuf;
    /// The tree an image layer's files are in (legacy: the whole hardlinked `root/`;
    /// overlay2: its own `diff/`).
    fn tree(self, root: &Path, id: &str) -> PathBuf;
    /// A container layer's upper dir (legacy `upper/`, overlay2 `diff/`).
    fn upper(self, root: &Path, id: &str) -> PathBuf;
}

impl Layer for Layout {
    fn home_in(self, root: &Path) -> PathBuf {
        root.join(self.home_name())
    }
    fn tree(self, root: &Path, id: &str) -> PathBuf {
        let leaf = match self {
            Layout::Overlay => "root",
            Layout::Overlay2 => "diff",
        };
        self.home_in(root).join(id).join(leaf)
    }
    fn upper(self, root: &Path, id: &str) -> PathBuf {
        let leaf = match self {
            Layout::Overlay => "upper",
            Layout::Overlay2 => "diff",
        };
        self.home_in(root).join(id).join(leaf)
    }
}

/// The base layer of the scenario, as a tar in the test's directory.
pub fn base_tar(t: &TestRoot) -> PathBuf {
    TarBuilder::new()
        .dir("etc", 0o755)
        .file("etc/conf", 0o644, b"lower content\n")
        .file("etc/hl1", 0o644, b"linked\n")
        .hardlink("etc/hl2", "etc/hl1")
        .dir("data", 0o750)
        .file("data/a", 0o600, b"a\n")
        .file("data/b", 0o600, b"b\n")
        .dir("data/sub", 0o755)
        .file("data/sub/c", 0o644, b"c\n")
        .symlink("etc/link", "conf")
        .file("bin/tool", 0o4755, b"#!/bin/sh\n")
        .write_to(t.path(), "base.tar")
}

/// base (tar) <- l2 (adds etc/new), applied with `layout`; returns their ids.
pub fn two_layers(t: &TestRoot, layout: Layout) -> (&'static str, &'static str) {
    let base = base_tar(t);
    t.ok(&cli(
        layout,
        &["layer", "apply", "base", base.to_str().unwrap()],
    ));
    let l2 = TarBuilder::new()
        .file("etc/new", 0o644, b"new\n")
        .write_to(t.path(), "l2.tar");
    t.ok(&cli(
        layout,
        &[
            "layer",
            "apply",
            "l2",
            "--parent",
            "base",
            l2.to_str().unwrap(),
        ],
    ));
    ("base", "l2")
}

fn read(p: &Path) -> Vec<u8> {
    std::fs::read(p).unwrap()
}

fn copy_up_delete_opaque_rename(layout: Layout) {
    let t = test_root();
    let (base, l2) = two_layers(&t, layout);
    t.ok(&cli(layout, &["layer", "create-rw", "c", "--parent", l2]));
    let m = PathBuf::from(t.ok(&cli(layout, &["mount", "c"])).trim());
    let upper = layout.upper(&t.root(), "c");
    let lowers = [layout.tree(&t.root(), base), layout.tree(&t.root(), l2)];
    let before: Vec<_> = lowers.iter().map(|l| manifest(l)).collect();
    // The lower file etc/hl1 (with its hardlink etc/hl2) is in base's tree on both layouts.
    let hl1 = layout.tree(&t.root(), base).join("etc/hl1");
    let nlink_before = std::fs::metadata(&hl1).unwrap().nlink();

    // Read from the lowers: the base layer's file and the nearer layer's.
    assert_eq!(read(&m.join("etc/conf")), b"lower content\n");
    assert_eq!(read(&m.join("etc/new")), b"new\n");
    // Write: copy-up; the lower inode and every hardlink of it stay as they were.
    std::fs::write(m.join("etc/hl1"), b"changed\n").unwrap();
    assert_eq!(read(&m.join("etc/hl1")), b"changed\n");
    for l in &lowers {
        assert_eq!(read(&l.join("etc/hl1")), b"linked\n", "{}", l.display());
        assert_eq!(read(&l.join("etc/hl2")), b"linked\n", "{}", l.display());
        if layout == Layout::Overlay2 {
            break; // l2's diff/ holds only etc/new
        }
    }
    assert_eq!(std::fs::metadata(&hl1).unwrap().nlink(), nlink_before);
    assert_eq!(read(&upper.join("etc/hl1")), b"changed\n");
    let conf_links = std::fs::metadata(m.join("etc/conf")).unwrap().nlink();
    match layout {
        // Inside the container, an untouched lower file shows the layer hardlinks
        // (gzip/postfix refuse such files): etc/conf is linked from base and l2.
        Layout::Overlay => assert!(conf_links >= 2, "{conf_links}"),
        // No layer hardlinks in overlay2: one link.
        Layout::Overlay2 => assert_eq!(conf_links, 1),
    }

    // Delete: a 0/0 character device in upper.
    std::fs::remove_file(m.join("etc/conf")).unwrap();
    let wh = std::fs::symlink_metadata(upper.join("etc/conf")).unwrap();
    assert!(wh.file_type().is_char_device());
    assert_eq!(wh.rdev(), 0);
    for l in &lowers[..if layout == Layout::Overlay { 2 } else { 1 }] {
        assert!(l.join("etc/conf").exists(), "{}", l.display());
    }

    // Remove and re-create a directory: opaque in upper.
    std::fs::remove_dir_all(m.join("data")).unwrap();
    std::fs::create_dir(m.join("data")).unwrap();
    std::fs::write(m.join("data/fresh"), b"f\n").unwrap();
    let mut v = [0u8; 8];
    let n =
        rustix::fs::lgetxattr(upper.join("data"), "trusted.overlay.opaque", &mut v[..]).unwrap();
    assert_eq!(&v[..n], b"y");
    let listed: Vec<_> = std::fs::read_dir(m.join("data"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(listed, vec![std::ffi::OsString::from("fresh")]);

    // Rename a file of the nearer lower (l2): whiteout + new name in upper.
    std::fs::rename(m.join("etc/new"), m.join("etc/renamed")).unwrap();
    assert!(std::fs::symlink_metadata(upper.join("etc/new"))
        .unwrap()
        .file_type()
        .is_char_device());
    assert_eq!(read(&upper.join("etc/renamed")), b"new\n");
    // Rename a lower directory: EXDEV with redirect_dir off (tools fall back to copy+delete).
    let err = std::fs::rename(m.join("bin"), m.join("bin2")).unwrap_err();
    assert_eq!(
        err.raw_os_error(),
        Some(rustix::io::Errno::XDEV.raw_os_error())
    );

    t.ok(&cli(layout, &["umount", "c"]));
    assert!(t.mounts().is_empty());
    let after: Vec<_> = lowers.iter().map(|l| manifest(l)).collect();
    assert_eq!(after, before, "the lower layers are unchanged");
}

#[test]
fn copy_up_delete_opaque_rename_on_a_real_mount_overlay() {
    copy_up_delete_opaque_rename(Layout::Overlay);
}

#[test]
fn copy_up_delete_opaque_rename_on_a_real_mount_overlay2() {
    copy_up_delete_opaque_rename(Layout::Overlay2);
}
