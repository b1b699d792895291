//! Integration tests of `apply_layer`: entry types and their metadata, whiteouts and opaque
//! directories, never modifying shared inodes, hardlinks, long and odd names, xattrs,
//! compression, truncation and draining the input to EOF.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, MetadataExt};

use common::{gzip, snapshot, zstd, Env, Layer, MTIME};
use ovlink_tar::{ApplyOptions, TarError};
use tar::EntryType;

fn md(p: impl AsRef<std::path::Path>) -> fs::Metadata {
    fs::symlink_metadata(p).unwrap()
}

#[test]
fn every_entry_type_with_metadata() {
    let env = Env::new();
    let mut l = Layer::new();
    l.dir_with("d/", |h| {
        h.set_mode(0o751);
        h.set_uid(5);
        h.set_gid(6);
        h.set_mtime(1_000_000_000);
    })
    .file_with("d/f", b"hello", |h| {
        h.set_mode(0o640);
        h.set_uid(1000);
        h.set_gid(1001);
        h.set_mtime(1_500_000_000);
    })
    .raw(EntryType::Symlink, b"d/s", Some(b"f"), b"", |h| {
        h.set_uid(7);
        h.set_gid(8);
        h.set_mtime(1_400_000_000);
    })
    .hardlink("d/h", "d/f")
    .raw(EntryType::Fifo, b"d/p", None, b"", |h| {
        h.set_mode(0o620);
        h.set_uid(9);
        h.set_mtime(1_300_000_000);
    })
    .raw(EntryType::Char, b"d/null", None, b"", |h| {
        h.set_mode(0o666);
        h.set_device_major(1).unwrap();
        h.set_device_minor(3).unwrap();
    })
    .raw(EntryType::Block, b"d/loop", None, b"", |h| {
        h.set_mode(0o660);
        h.set_gid(6);
        h.set_device_major(7).unwrap();
        h.set_device_minor(0).unwrap();
    });
    let stats = env.apply(&l.bytes()).unwrap();
    assert_eq!(stats.size, 5, "regular files only; hardlinks count 0");
    assert_eq!(stats.entries, 7);

    let d = md(env.p("d"));
    assert!(d.is_dir());
    assert_eq!(
        (d.mode() & 0o7777, d.uid(), d.gid(), d.mtime()),
        (0o751, 5, 6, 1_000_000_000)
    );

    let f = md(env.p("d/f"));
    assert!(f.is_file());
    assert_eq!((f.mode() & 0o7777, f.uid(), f.gid()), (0o640, 1000, 1001));
    assert_eq!(
        (f.mtime(), f.atime()),
        (1_500_000_000, 1_500_000_000),
        "atime = mtime without PAX"
    );
    assert_eq!(fs::read(env.p("d/f")).unwrap(), b"hello");

    let s = md(env.p("d/s"));
    assert!(s.file_type().is_symlink());
    assert_eq!(fs::read_link(env.p("d/s")).unwrap().to_str(), Some("f"));
    assert_eq!((s.uid(), s.gid(), s.mtime()), (7, 8, 1_400_000_000));

    let h = md(env.p("d/h"));
    assert_eq!(h.ino(), f.ino());
    assert_eq!(h.nlink(), 2);

    let p = md(env.p("d/p"));
    assert!(p.file_type().is_fifo());
    assert_eq!(
        (p.mode() & 0o7777, p.uid(), p.mtime()),
        (0o620, 9, 1_300_000_000)
    );

    let c = md(env.p("d/null"));
    assert!(c.file_type().is_char_device());
    assert_eq!(
        (c.mode() & 0o7777, c.rdev()),
        (0o666, rustix::fs::makedev(1, 3))
    );
    let b = md(env.p("d/loop"));
    assert!(b.file_type().is_block_device());
    assert_eq!(
        (b.mode() & 0o7777, b.gid(), b.rdev()),
        (0o660, 6, rustix::fs::makedev(7, 0))
    );
}

#[test]
fn skip_devices_option() {
    let env = Env::new();
    let mut l = Layer::new();
    l.raw(EntryType::Char, b"null", None, b"", |h| {
        h.set_device_major(1).unwrap();
        h.set_device_minor(3).unwrap();
    })
    .file("after", b"x");
    let opts = ApplyOptions {
        skip_devices: true,
        ..Default::default()
    };
    env.apply_opts(&l.bytes(), &opts).unwrap();
    assert!(fs::symlink_metadata(env.p("null")).is_err());
    assert!(env.p("after").is_file());
}

#[test]
fn special_bits_are_kept() {
    let env = Env::new();
    let mut l = Layer::new();
    l.file_with("suid", b"#!", |h| {
        h.set_mode(0o4755);
        h.set_uid(1000);
        h.set_gid(1000);
    })
    .file_with("sgid", b"#!", |h| {
        h.set_mode(0o2755);
        h.set_gid(50);
    })
    .dir_with("sgiddir/", |h| {
        h.set_mode(0o2775);
        h.set_gid(50);
    })
    .file_with("sgiddir/child", b"", |h| h.set_gid(7))
    .dir_with("tmp/", |h| h.set_mode(0o1777))
    .raw(EntryType::Fifo, b"sfifo", None, b"", |h| {
        h.set_mode(0o2660);
        h.set_uid(3);
    });
    env.apply(&l.bytes()).unwrap();
    assert_eq!(md(env.p("suid")).mode() & 0o7777, 0o4755);
    assert_eq!(md(env.p("suid")).uid(), 1000);
    assert_eq!(md(env.p("sgid")).mode() & 0o7777, 0o2755);
    assert_eq!(md(env.p("sgiddir")).mode() & 0o7777, 0o2775);
    assert_eq!(
        md(env.p("sgiddir/child")).gid(),
        7,
        "explicit gid wins over setgid inheritance"
    );
    assert_eq!(md(env.p("tmp")).mode() & 0o7777, 0o1777);
    assert_eq!(md(env.p("sfifo")).mode() & 0o7777, 0o2660);
}

#[test]
fn directory_times_are_set_after_their_contents() {
    let env = Env::new();
    let mut l = Layer::new();
    l.dir_with("d/", |h| h.set_mtime(1000))
        .dir_with("d/sub/", |h| h.set_mtime(2000))
        .file("d/a", b"a")
        .file("d/sub/x", b"x")
        .file("d/b", b"b")
        .dir_with("./", |h| {
            h.set_mtime(3000);
            h.set_mode(0o700);
        })
        .pax(&[("mtime", b"1234567890.25"), ("atime", b"1111111111.5")])
        .file("d/sub/y", b"y")
        .pax(&[("mtime", b"5000.000000001")])
        .dir("e/");
    env.apply(&l.bytes()).unwrap();
    assert_eq!(md(env.p("d")).mtime(), 1000);
    assert_eq!(md(env.p("d/sub")).mtime(), 2000);
    let root = md(&env.root);
    assert_eq!(
        (root.mtime(), root.mode() & 0o7777),
        (3000, 0o700),
        "\"./\" sets the root's metadata"
    );
    let y = md(env.p("d/sub/y"));
    assert_eq!((y.mtime(), y.mtime_nsec()), (1_234_567_890, 250_000_000));
    assert_eq!((y.atime(), y.atime_nsec()), (1_111_111_111, 500_000_000));
    let e = md(env.p("e"));
    assert_eq!((e.mtime(), e.mtime_nsec(), e.atime()), (5000, 1, 5000));
}

#[test]
fn missing_parents_are_created_0755() {
    let env = Env::new();
    let mut l = Layer::new();
    l.file("a/b/c/file", b"x");
    env.apply(&l.bytes()).unwrap();
    for d in ["a", "a/b", "a/b/c"] {
        let m = md(env.p(d));
        assert!(m.is_dir());
        assert_eq!((m.mode() & 0o7777, m.uid()), (0o755, 0));
    }
}

/// A lower layer's content, as the hardlink copy leaves it in the tree.
fn lower(env: &Env) {
    for d in ["etc", "opt/tree/x", "d/olddir", "d/sub", "other"] {
        fs::create_dir_all(env.p(d)).unwrap();
    }
    for (f, c) in [
        ("etc/a", "a"),
        ("etc/b", "b"),
        ("opt/tree/x/y", "y"),
        ("opt/keep", "k"),
        ("d/old1", "old"),
        ("d/olddir/f", "old"),
        ("d/sub/lower", "old"),
        ("d/keepname", "lower version"),
        ("other/x", "x"),
    ] {
        fs::write(env.p(f), c).unwrap();
    }
}

#[test]
fn whiteout_file_and_tree() {
    let env = Env::new();
    lower(&env);
    let mut l = Layer::new();
    l.wh("etc/.wh.a")
        .wh("opt/.wh.tree")
        .wh(".wh.nonexistent")
        .wh("missingdir/.wh.x");
    let stats = env.apply(&l.bytes()).unwrap();
    assert_eq!(stats.size, 0);
    assert!(!env.p("etc/a").exists());
    assert!(
        !env.p("etc/.wh.a").exists(),
        "the whiteout itself is not created"
    );
    assert_eq!(fs::read(env.p("etc/b")).unwrap(), b"b");
    assert!(!env.p("opt/tree").exists());
    assert!(env.p("opt/keep").exists());
    assert!(!env.p("missingdir").exists(), "a whiteout creates nothing");
}

#[test]
fn whiteout_of_something_this_tar_created() {
    let env = Env::new();
    let mut l = Layer::new();
    l.file("x", b"1")
        .wh(".wh.x")
        .dir("y/")
        .file("y/z", b"")
        .wh(".wh.y");
    env.apply(&l.bytes()).unwrap();
    assert!(!env.p("x").exists());
    assert!(!env.p("y").exists());
}

#[test]
fn opaque_directory() {
    let env = Env::new();
    lower(&env);
    let mut l = Layer::new();
    // New children listed before the marker (and one after) must survive it.
    l.dir_with("d/", |h| h.set_mtime(777))
        .file("d/new1", b"n1")
        .dir("d/newdir/")
        .file("d/newdir/f", b"nf")
        .dir("d/sub/")
        .file("d/sub/n", b"n")
        .file("d/keepname", b"this layer")
        .wh("d/.wh..wh..opq")
        .file("d/new2", b"n2");
    env.apply(&l.bytes()).unwrap();
    let mut names: Vec<String> = fs::read_dir(env.p("d"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["keepname", "new1", "new2", "newdir", "sub"]);
    assert_eq!(fs::read(env.p("d/keepname")).unwrap(), b"this layer");
    assert_eq!(fs::read(env.p("d/newdir/f")).unwrap(), b"nf");
    let sub: Vec<_> = fs::read_dir(env.p("d/sub"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        sub,
        ["n"],
        "lower content of a merged subdirectory is hidden too"
    );
    assert!(!env.p("d/.wh..wh..opq").exists());
    assert_eq!(
        fs::read(env.p("other/x")).unwrap(),
        b"x",
        "siblings untouched"
    );
    assert_eq!(md(env.p("d")).mtime(), 777);
}

#[test]
fn opaque_keeps_implicit_parents_of_new_content() {
    let env = Env::new();
    lower(&env);
    let mut l = Layer::new();
    // d/olddir exists in the lower layer; the tar writes below it without a dir entry.
    l.file("d/olddir/new", b"n").wh("d/.wh..wh..opq");
    env.apply(&l.bytes()).unwrap();
    assert_eq!(fs::read(env.p("d/olddir/new")).unwrap(), b"n");
    assert!(!env.p("d/olddir/f").exists());
    assert!(!env.p("d/old1").exists());
}

#[test]
fn replacing_a_shared_file_never_touches_the_other_layer() {
    let env = Env::new();
    let a = env.td.path().join("A");
    fs::create_dir(&a).unwrap();
    for (f, c) in [("f", "old"), ("g", "old g"), ("h", "old h")] {
        fs::write(a.join(f), c).unwrap();
        fs::hard_link(a.join(f), env.p(f)).unwrap();
    }
    fs::create_dir(env.p("dir")).unwrap();
    fs::write(env.p("dir/inner"), "x").unwrap();
    let before = snapshot(&a);
    let ino = md(a.join("f")).ino();

    let mut l = Layer::new();
    l.file_with("f", b"new content", |h| {
        h.set_mode(0o600);
        h.set_uid(1234);
        h.set_mtime(42);
    })
    .dir("g/")
    .symlink("h", "/elsewhere")
    .file("dir", b"now a file");
    env.apply(&l.bytes()).unwrap();

    let after = snapshot(&a);
    for (p, d) in &before {
        // Only the link count may change (B's names are gone).
        let strip = |s: &str| s.split(" nlink=").next().unwrap().to_string();
        assert_eq!(
            strip(d),
            strip(&after[p]),
            "{p:?} of the other layer changed"
        );
    }
    assert_eq!(fs::read(a.join("f")).unwrap(), b"old");
    assert_eq!(md(a.join("f")).nlink(), 1);
    let bf = md(env.p("f"));
    assert_ne!(bf.ino(), ino);
    assert_eq!(
        (bf.nlink(), bf.uid(), bf.mode() & 0o777, bf.mtime()),
        (1, 1234, 0o600, 42)
    );
    assert_eq!(fs::read(env.p("f")).unwrap(), b"new content");
    assert!(md(env.p("g")).is_dir());
    assert!(md(env.p("h")).file_type().is_symlink());
    assert_eq!(fs::read(env.p("dir")).unwrap(), b"now a file");
}

#[test]
fn existing_directory_is_kept_and_gets_the_entry_metadata() {
    let env = Env::new();
    fs::create_dir(env.p("d")).unwrap();
    fs::write(env.p("d/lower"), "l").unwrap();
    let ino = md(env.p("d")).ino();
    let mut l = Layer::new();
    l.dir_with("d/", |h| {
        h.set_mode(0o710);
        h.set_uid(33);
        h.set_mtime(99);
    });
    env.apply(&l.bytes()).unwrap();
    let d = md(env.p("d"));
    assert_eq!(
        (d.ino(), d.mode() & 0o7777, d.uid(), d.mtime()),
        (ino, 0o710, 33, 99)
    );
    assert!(env.p("d/lower").exists());
}

#[test]
fn existing_symlink_is_replaced_not_written_through() {
    let env = Env::new();
    std::os::unix::fs::symlink(env.sentinel.join("secret"), env.p("link")).unwrap();
    std::os::unix::fs::symlink(&env.sentinel, env.p("dirlink")).unwrap();
    let before = snapshot(&env.sentinel);
    let mut l = Layer::new();
    l.file_with("link", b"mine", |h| h.set_mode(0o4755))
        .dir_with("dirlink/", |h| h.set_mode(0o700))
        .file("dirlink/secret", b"mine too");
    env.apply(&l.bytes()).unwrap();
    assert_eq!(snapshot(&env.sentinel), before);
    assert_eq!(fs::read(env.p("link")).unwrap(), b"mine");
    assert!(md(env.p("dirlink")).is_dir());
    assert_eq!(fs::read(env.p("dirlink/secret")).unwrap(), b"mine too");
}

#[test]
fn hardlinks_inside_the_tar() {
    let env = Env::new();
    let mut l = Layer::new();
    l.file("a", b"data")
        .hardlink("b", "a")
        .hardlink("sub/c", "/a")
        .hardlink("sub/d", "./a");
    let stats = env.apply(&l.bytes()).unwrap();
    assert_eq!(stats.size, 4);
    let ino = md(env.p("a")).ino();
    for n in ["b", "sub/c", "sub/d"] {
        assert_eq!(md(env.p(n)).ino(), ino, "{n}");
    }
    assert_eq!(md(env.p("a")).nlink(), 4);
}

#[test]
fn hardlink_to_a_lower_file() {
    let env = Env::new();
    fs::create_dir_all(env.p("lib")).unwrap();
    fs::write(env.p("lib/x"), "lower").unwrap();
    let mut l = Layer::new();
    l.hardlink("bin/y", "lib/x").hardlink("bin/z", "/lib/x");
    env.apply(&l.bytes()).unwrap();
    let ino = md(env.p("lib/x")).ino();
    assert_eq!(md(env.p("bin/y")).ino(), ino);
    assert_eq!(md(env.p("bin/z")).ino(), ino);
}

#[test]
fn hardlink_to_missing_target_fails_naming_the_entry() {
    let env = Env::new();
    let mut l = Layer::new();
    l.hardlink("x", "nope");
    let err = env.apply(&l.bytes()).unwrap_err();
    assert_eq!(err.entry().unwrap().to_str(), Some("x"), "{err}");
    assert!(matches!(err, TarError::Entry { .. }), "{err:?}");
}

#[test]
fn long_and_odd_names() {
    let env = Env::new();
    let long_dir = "d".repeat(60);
    let long = format!("{long_dir}/{}", "f".repeat(90)); // > 100 bytes
    let long_gnu = format!("{long_dir}/{}", "g".repeat(120));
    let long_target = format!("/{long_dir}/{}", "t".repeat(120));
    let mut l = Layer::new();
    l.pax(&[("path", long.as_bytes())])
        .file("placeholder-name", b"pax long")
        .pax(&[("linkpath", long_target.as_bytes())])
        .symlink("longlink", "short")
        .file("héllo wörld ✓", b"utf8")
        .file("with space/and\nnewline", b"odd")
        .dir("ü/");
    // GNU long name, as the tar crate's builder writes it for long paths.
    let mut h = tar::Header::new_gnu();
    h.set_size(3);
    h.set_mode(0o644);
    h.set_mtime(MTIME);
    h.set_entry_type(EntryType::Regular);
    let mut bytes = {
        let mut b = tar::Builder::new(Vec::new());
        b.append_data(&mut h, &long_gnu, &b"gnu"[..]).unwrap();
        b.into_inner().unwrap()
    };
    // Put the GNU entry first, then the rest (drop the first archive's end blocks).
    bytes.truncate(bytes.len() - 1024);
    bytes.extend(l.bytes());
    let stats = env.apply(&bytes).unwrap();
    assert_eq!(fs::read(env.p(&long)).unwrap(), b"pax long");
    assert!(!env.p("placeholder-name").exists());
    assert_eq!(fs::read(env.p(&long_gnu)).unwrap(), b"gnu");
    assert_eq!(
        fs::read_link(env.p("longlink")).unwrap().to_str(),
        Some(long_target.as_str())
    );
    assert_eq!(fs::read(env.p("héllo wörld ✓")).unwrap(), b"utf8");
    assert_eq!(fs::read(env.p("with space/and\nnewline")).unwrap(), b"odd");
    assert!(env.p("ü").is_dir());
    assert_eq!(stats.size, 3 + 8 + 4 + 3);
}

/// A valid `security.capability` value (VFS_CAP_REVISION_2, cap_net_bind_service permitted
/// and effective).
fn cap_net_bind_service() -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&(0x0200_0000u32 | 1).to_le_bytes());
    v.extend_from_slice(&(1u32 << 10).to_le_bytes()); // permitted
    v.extend_from_slice(&0u32.to_le_bytes()); // inheritable
    v.extend_from_slice(&0u32.to_le_bytes());
    v.extend_from_slice(&0u32.to_le_bytes());
    v
}

#[test]
fn xattrs_from_pax_records() {
    let env = Env::new();
    let cap = cap_net_bind_service();
    let mut l = Layer::new();
    l.pax(&[
        ("SCHILY.xattr.security.capability", &cap),
        ("SCHILY.xattr.user.comment", b"hello world"),
    ])
    .file_with("bin/ping", b"ELF", |h| {
        h.set_mode(0o4755);
        h.set_uid(0);
    })
    .pax(&[("SCHILY.xattr.trusted.overlay.opaque", b"y")])
    .dir("opq/")
    .pax(&[("SCHILY.xattr.user.ignored-on-symlinks", b"v")])
    .symlink("sym", "bin/ping");
    env.apply(&l.bytes()).unwrap();
    let get = |p: &str, n: &str| ovlink_fs::xattr::get(&env.p(p), std::ffi::OsStr::new(n)).unwrap();
    assert_eq!(get("bin/ping", "security.capability"), Some(cap));
    assert_eq!(
        get("bin/ping", "user.comment"),
        Some(b"hello world".to_vec())
    );
    assert_eq!(
        md(env.p("bin/ping")).mode() & 0o7777,
        0o4755,
        "chmod after xattrs and chown"
    );
    assert_eq!(get("opq", "trusted.overlay.opaque"), Some(b"y".to_vec()));
}

fn sample() -> Vec<u8> {
    let mut l = Layer::new();
    l.dir("etc/")
        .file("etc/hostname", b"box\n")
        .symlink("etc/link", "hostname");
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    l.file("big", &big);
    l.bytes()
}

#[test]
fn gzip_and_zstd_inputs() {
    let plain = sample();
    for (what, data) in [
        ("plain", plain.clone()),
        ("gzip", gzip(&plain)),
        ("zstd", zstd(&plain)),
    ] {
        let env = Env::new();
        let stats = env.apply(&data).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(stats.size, 4 + 300_000, "{what}");
        assert_eq!(stats.entries, 4, "{what}");
        assert_eq!(fs::read(env.p("etc/hostname")).unwrap(), b"box\n", "{what}");
        assert_eq!(fs::read(env.p("big")).unwrap().len(), 300_000, "{what}");
    }
}

#[test]
fn multi_member_gzip() {
    let plain = sample();
    let (a, b) = plain.split_at(1024 + 37);
    let mut data = gzip(a);
    data.extend(gzip(b));
    let env = Env::new();
    env.apply(&data).unwrap();
    assert_eq!(fs::read(env.p("big")).unwrap().len(), 300_000);
}

#[test]
fn truncated_inputs_fail_cleanly() {
    let plain = sample();
    let total = plain.len();
    // Plain: cuts inside headers and inside data (a cut exactly on a header boundary reads as
    // a tar without end blocks, which Docker accepts too).
    for cut in [
        100,
        512 + 100,
        2048 + 5,
        3000,
        total / 2,
        total - 1024 - 700,
    ] {
        let env = Env::new();
        let r = env.apply(&plain[..cut]);
        assert!(
            matches!(r, Err(TarError::Read { .. })),
            "plain cut at {cut}: {r:?}"
        );
    }
    for (what, data) in [("gzip", gzip(&plain)), ("zstd", zstd(&plain))] {
        let n = data.len();
        for cut in [1, 2, 3, 10, n / 3, n / 2, n - 9, n - 4, n - 1] {
            let env = Env::new();
            let r = env.apply(&data[..cut]);
            assert!(
                matches!(r, Err(TarError::Read { .. })),
                "{what} cut at {cut}/{n}: {r:?}"
            );
        }
        // A corrupt byte in the middle: gzip's CRC catches it; zstd without a checksum may
        // decode to other bytes (the importer's digest catches that), but must not panic.
        let mut bad = data.clone();
        bad[n / 2] ^= 0x55;
        let env = Env::new();
        let r = env.apply(&bad);
        if what == "gzip" {
            assert!(r.is_err(), "{what} corrupt");
        }
    }
}

#[test]
fn corrupt_header_checksum_fails() {
    let mut data = sample();
    data[600] ^= 1; // inside the second header
    let env = Env::new();
    assert!(matches!(env.apply(&data), Err(TarError::Read { .. })));
}

#[test]
fn absurd_size_fails_without_hanging() {
    let env = Env::new();
    let mut l = Layer::new();
    l.file("x", b"");
    let mut data = l.bytes();
    // Rewrite the size field (offset 124, 12 bytes) to the largest octal value.
    data[124..136].copy_from_slice(b"77777777777\0");
    let mut h = tar::Header::new_old();
    h.as_mut_bytes().copy_from_slice(&data[..512]);
    h.set_cksum();
    data[..512].copy_from_slice(h.as_bytes());
    assert!(matches!(env.apply(&data), Err(TarError::Read { .. })));
}

#[test]
fn unsupported_entry_type() {
    let env = Env::new();
    let mut l = Layer::new();
    l.raw(EntryType::new(b'V'), b"volume", None, b"", |_| {});
    let err = env.apply(&l.bytes()).unwrap_err();
    assert!(matches!(err, TarError::Unsupported { .. }), "{err:?}");
    assert_eq!(err.entry().unwrap().to_str(), Some("volume"));
}

#[test]
fn global_headers_and_aufs_metadata_are_skipped() {
    let env = Env::new();
    let mut l = Layer::new();
    l.raw(
        EntryType::XGlobalHeader,
        b"pax_global_header",
        None,
        b"9 a=bcd\n",
        |_| {},
    )
    .dir(".wh..wh.plnk/")
    .file(".wh..wh.plnk/123.456", b"x")
    .file(".wh..wh.aufs", b"")
    .file("real", b"r");
    let stats = env.apply(&l.bytes()).unwrap();
    let names: Vec<_> = fs::read_dir(&env.root)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["real"]);
    assert_eq!(stats.entries, 5);
}

/// Records whether the wrapped reader was read to EOF; optionally fails at EOF (as the image
/// importer's digest-checking reader does on mismatch).
struct EofProbe<'a> {
    inner: &'a [u8],
    saw_eof: bool,
    fail_at_eof: bool,
}

impl Read for EofProbe<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && !buf.is_empty() {
            self.saw_eof = true;
            if self.fail_at_eof {
                return Err(io::Error::other("digest mismatch"));
            }
        }
        Ok(n)
    }
}

#[test]
fn input_is_drained_to_eof() {
    let mut plain = sample();
    plain.extend(vec![0u8; 10 * 1024 + 3]); // padding after the end-of-archive blocks
    for (what, data) in [
        ("plain", plain),
        ("gzip", gzip(&sample())),
        ("zstd", zstd(&sample())),
    ] {
        let env = Env::new();
        let mut probe = EofProbe {
            inner: &data,
            saw_eof: false,
            fail_at_eof: false,
        };
        env.apply_reader(&mut probe).unwrap();
        assert!(probe.saw_eof, "{what}: input not drained");

        let env = Env::new();
        let mut probe = EofProbe {
            inner: &data,
            saw_eof: false,
            fail_at_eof: true,
        };
        let r = env.apply_reader(&mut probe);
        assert!(matches!(r, Err(TarError::Read { .. })), "{what}: {r:?}");
    }
}

#[test]
fn empty_input_is_an_empty_layer() {
    let env = Env::new();
    let stats = env.apply(b"").unwrap();
    assert_eq!(stats, Default::default());
}

#[test]
fn the_root_entry_must_be_a_directory() {
    let env = Env::new();
    let mut l = Layer::new();
    l.file("./", b"");
    let err = env.apply(&l.bytes()).unwrap_err();
    assert!(matches!(err, TarError::Invalid { .. }), "{err:?}");
}

#[test]
fn id_maps_remap_owners() {
    use ovlink_tar::IdRange;
    let env = Env::new();
    let mut l = Layer::new();
    l.dir_with("d/", |h| {
        h.set_uid(0);
        h.set_gid(0);
    })
    .file_with("d/f", b"x", |h| {
        h.set_uid(1000);
        h.set_gid(50);
    })
    .raw(EntryType::Symlink, b"d/s", Some(b"f"), b"", |h| {
        h.set_uid(7);
        h.set_gid(8);
    });
    let range = IdRange {
        container_id: 0,
        host_id: 100_000,
        size: 65_536,
    };
    let opts = ApplyOptions {
        uid_maps: vec![range],
        gid_maps: vec![range],
        ..Default::default()
    };
    env.apply_opts(&l.bytes(), &opts).unwrap();
    assert_eq!(
        (md(env.p("d")).uid(), md(env.p("d")).gid()),
        (100_000, 100_000)
    );
    assert_eq!(
        (md(env.p("d/f")).uid(), md(env.p("d/f")).gid()),
        (101_000, 100_050)
    );
    assert_eq!(
        (md(env.p("d/s")).uid(), md(env.p("d/s")).gid()),
        (100_007, 100_008)
    );

    // An owner outside every range is refused, naming the entry.
    let env = Env::new();
    let mut l = Layer::new();
    l.file_with("big", b"x", |h| h.set_uid(70_000));
    let err = env.apply_opts(&l.bytes(), &opts).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("big") && msg.contains("70000"), "{msg}");
    assert_eq!(ovlink_tar::map_id(&[], 5), Some(5));
    assert_eq!(ovlink_tar::map_id(&[range], 65_536), None);
}
