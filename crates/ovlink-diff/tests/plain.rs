//! `ovlink-diff` on plain directories faked as overlay layers (a 0/0 character device as a
//! whiteout, `trusted.overlay.opaque=y` on a directory): changes, the tar's entries, the
//! two-upper-dirs case, image-style trees, and the refusal of non-plain upper dirs.
//! Needs root (mknod, trusted.* xattrs).
#![allow(clippy::unwrap_used, missing_docs)]

use ovlink_diff::{changes, check_plain_upper, export, size, Compare, DiffError, Tree};
use std::io::Read;
use std::path::Path;

fn write(p: &Path, data: &[u8]) {
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, data).unwrap();
}

fn whiteout(p: &Path) {
    rustix::fs::mknodat(
        rustix::fs::CWD,
        p,
        rustix::fs::FileType::CharacterDevice,
        rustix::fs::Mode::from_raw_mode(0),
        0,
    )
    .unwrap();
}

fn opaque(p: &Path) {
    rustix::fs::setxattr(
        p,
        "trusted.overlay.opaque",
        b"y",
        rustix::fs::XattrFlags::empty(),
    )
    .unwrap();
}

fn list(c: &[ovlink_diff::Change]) -> Vec<String> {
    c.iter().map(|c| c.to_string()).collect()
}

fn tar_entries(tar: &[u8]) -> Vec<(String, tar::EntryType, Vec<u8>)> {
    let mut out = Vec::new();
    for e in tar::Archive::new(tar).entries().unwrap() {
        let mut e = e.unwrap();
        let name = String::from_utf8_lossy(&e.path_bytes()).into_owned();
        let kind = e.header().entry_type();
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        out.push((name, kind, data));
    }
    out
}

/// lower: etc/{a,b,keep}, var/{log/x, cache/y}, bin/sh, usr/lib/z
fn lower(root: &Path) {
    write(&root.join("etc/a"), b"a\n");
    write(&root.join("etc/b"), b"b\n");
    write(&root.join("etc/keep"), b"keep\n");
    write(&root.join("var/log/x"), b"x\n");
    write(&root.join("var/cache/y"), b"y\n");
    write(&root.join("bin/sh"), b"sh\n");
    write(&root.join("usr/lib/z"), b"z\n");
}

#[test]
fn upper_dir_changes_and_tar() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let (lo, up) = (t.path().join("lower"), t.path().join("upper"));
    lower(&lo);
    // The upper dir: etc/a rewritten, etc/b deleted, var/cache replaced (opaque), usr deleted
    // whole, a new dir with a hardlink pair.
    write(&up.join("etc/a"), b"A!\n");
    whiteout(&up.join("etc/b"));
    std::fs::create_dir_all(up.join("var/cache")).unwrap();
    opaque(&up.join("var/cache"));
    write(&up.join("var/cache/new"), b"new\n");
    whiteout(&up.join("usr"));
    write(&up.join("new/one"), b"linked\n");
    std::fs::hard_link(up.join("new/one"), up.join("new/two")).unwrap();
    // A whiteout of something the lower does not have is no change.
    whiteout(&up.join("etc/never-existed"));
    // Copy the lower's metadata onto the copied-up directories, as overlayfs does.
    for d in ["etc", "var", "var/cache"] {
        let m = std::fs::metadata(lo.join(d)).unwrap();
        std::fs::set_permissions(up.join(d), m.permissions()).unwrap();
    }
    let new = Tree::overlay(Some(&up), &lo).unwrap();
    let old = Tree::overlay(None, &lo).unwrap();
    let c = list(&changes(&new, Some(&old), Compare::Exact).unwrap());
    assert_eq!(
        c,
        [
            "C /etc",
            "C /etc/a",
            "D /etc/b",
            "A /new",
            "A /new/one",
            "A /new/two",
            "D /usr",
            "C /var",
            "C /var/cache",
            "A /var/cache/new",
            "D /var/cache/y",
        ]
    );
    let mut tar = Vec::new();
    let stats = export(&new, Some(&old), Compare::Exact, &mut tar).unwrap();
    let names: Vec<_> = tar_entries(&tar)
        .into_iter()
        .map(|(n, k, d)| (n, k, String::from_utf8(d).unwrap()))
        .collect();
    let want: Vec<(String, tar::EntryType, String)> = [
        ("etc/", tar::EntryType::Directory, ""),
        ("etc/a", tar::EntryType::Regular, "A!\n"),
        ("etc/.wh.b", tar::EntryType::Regular, ""),
        ("new/", tar::EntryType::Directory, ""),
        ("new/one", tar::EntryType::Regular, "linked\n"),
        ("new/two", tar::EntryType::Link, ""),
        (".wh.usr", tar::EntryType::Regular, ""),
        ("var/", tar::EntryType::Directory, ""),
        ("var/cache/", tar::EntryType::Directory, ""),
        ("var/cache/.wh..wh..opq", tar::EntryType::Regular, ""),
        ("var/cache/new", tar::EntryType::Regular, "new\n"),
    ]
    .iter()
    .map(|(n, k, d)| (n.to_string(), *k, d.to_string()))
    .collect();
    assert_eq!(names, want);
    assert_eq!(stats.size, 3 + 7 + 4);
    assert_eq!(size(&new, Some(&old), Compare::Exact).unwrap(), stats.size);
    // The lower directories the two views share were never needed: a lower we cannot read
    // below the root changes nothing.
    check_plain_upper(&up).unwrap();
}

#[test]
fn two_upper_dirs_show_only_what_the_second_added() {
    if !rustix::process::geteuid().is_root() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let (lo, init, up) = (
        t.path().join("lower"),
        t.path().join("init"),
        t.path().join("upper"),
    );
    lower(&lo);
    write(&init.join(".dockerenv"), b"");
    write(&init.join("etc/hosts"), b"127.0.0.1 localhost\n");
    whiteout(&init.join("etc/keep"));
    // The container's upper: a copy of the init upper, then its own changes.
    write(&up.join(".dockerenv"), b"");
    write(&up.join("etc/hosts"), b"127.0.0.1 localhost\n");
    whiteout(&up.join("etc/keep"));
    for p in [".dockerenv", "etc/hosts", "etc"] {
        let m = std::fs::symlink_metadata(init.join(p)).unwrap();
        let ft = filetime(&m);
        set_times(&up.join(p), ft);
    }
    write(&up.join("etc/resolv.conf"), b"nameserver 1.1.1.1\n");
    std::fs::remove_file(up.join(".dockerenv")).unwrap(); // deleted, not in the lower
    let new = Tree::overlay(Some(&up), &lo).unwrap();
    let old = Tree::overlay(Some(&init), &lo).unwrap();
    let c = list(&changes(&new, Some(&old), Compare::Exact).unwrap());
    assert_eq!(c, ["D /.dockerenv", "C /etc", "A /etc/resolv.conf"]);
    let mut tar = Vec::new();
    export(&new, Some(&old), Compare::Exact, &mut tar).unwrap();
    let names: Vec<_> = tar_entries(&tar).into_iter().map(|e| e.0).collect();
    assert_eq!(names, [".wh..dockerenv", "etc/", "etc/resolv.conf"]);
}

fn filetime(m: &std::fs::Metadata) -> (i64, i64) {
    use std::os::unix::fs::MetadataExt;
    (m.mtime(), m.mtime_nsec())
}

fn set_times(p: &Path, (s, ns): (i64, i64)) {
    let ts = rustix::fs::Timespec {
        tv_sec: s,
        tv_nsec: ns,
    };
    rustix::fs::utimensat(
        rustix::fs::CWD,
        p,
        &rustix::fs::Timestamps {
            last_access: ts,
            last_modification: ts,
        },
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    )
    .unwrap();
}

#[test]
fn plain_trees_compare_inodes_then_content() {
    let t = tempfile::tempdir().unwrap();
    let (a, b) = (t.path().join("parent"), t.path().join("child"));
    lower(&a);
    // The child: hardlinks to the parent's files (an image layer), then its own changes.
    for f in ["etc/a", "etc/b", "etc/keep", "var/log/x", "bin/sh"] {
        std::fs::create_dir_all(b.join(f).parent().unwrap()).unwrap();
        std::fs::hard_link(a.join(f), b.join(f)).unwrap();
    }
    std::fs::remove_file(b.join("etc/b")).unwrap();
    write(&b.join("etc/b"), b"B\n"); // same size; a new inode
    let m = std::fs::metadata(a.join("etc/b")).unwrap();
    set_times(&b.join("etc/b"), filetime(&m));
    std::fs::create_dir_all(b.join("var/cache")).unwrap(); // y gone
    let new = Tree::plain(&b).unwrap();
    let old = Tree::plain(&a).unwrap();
    let exact = list(&changes(&new, Some(&old), Compare::Exact).unwrap());
    assert_eq!(
        exact,
        [
            "C /etc",
            "C /etc/b",
            "D /usr",
            "C /var",
            "C /var/cache",
            "D /var/cache/y"
        ]
    );
    // Docker's naive comparison misses the same-size, same-mtime rewrite.
    let naive = list(&changes(&new, Some(&old), Compare::Naive).unwrap());
    assert!(!naive.contains(&"C /etc/b".to_string()), "{naive:?}");
    // No parent: everything is added, `/` included in the tar as `./`.
    let mut tar = Vec::new();
    export(&new, None, Compare::Exact, &mut tar).unwrap();
    let names: Vec<_> = tar_entries(&tar).into_iter().map(|e| e.0).collect();
    assert_eq!(names.first().map(String::as_str), Some("./"));
    assert_eq!(names.len(), 1 + 5 + 5);
}

#[test]
fn redirect_and_metacopy_make_the_upper_untrusted() {
    if !rustix::process::geteuid().is_root() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let up = t.path().join("upper");
    write(&up.join("d/f"), b"f");
    check_plain_upper(&up).unwrap();
    rustix::fs::setxattr(
        up.join("d/f"),
        "trusted.overlay.metacopy",
        b"",
        rustix::fs::XattrFlags::empty(),
    )
    .unwrap();
    match check_plain_upper(&up) {
        Err(DiffError::NotPlainUpper { xattr, .. }) => {
            assert_eq!(xattr, ovlink_diff::OVERLAY_METACOPY)
        }
        other => panic!("{other:?}"),
    }
}
