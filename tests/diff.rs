//! Layer diffs through real overlay mounts: `changes` against Docker's output for the
//! fixture image, diff → apply round trips that reproduce the merged view exactly, the
//! changes Docker's naive diff misses, odd names and special files, image-layer diffs, and an
//! (ignored) benchmark of the native diff against the naive one.

use crate::util::*;
use ovlink_driver::{CreateOpts, Driver, InitConfig};
use ovlink_overlay::diff::{changes_with, diff_size_with, diff_with, DiffMode};
use ovlink_overlay::OverlayDriver;
use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn driver(t: &TestRoot) -> OverlayDriver {
    OverlayDriver::init(&InitConfig {
        home: t.home(),
        ..Default::default()
    })
    .unwrap()
}

/// Applies the layers of the docker-save tarball `fx-layers.tar` as `l0`..`l3`; returns the
/// top layer's id.
fn import_fx(d: &OverlayDriver) -> String {
    let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut ar = tar::Archive::new(std::fs::File::open(fixture("fx-layers.tar")).unwrap());
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let name = e.path().unwrap().to_string_lossy().into_owned();
        let mut v = Vec::new();
        e.read_to_end(&mut v).unwrap();
        files.insert(name, v);
    }
    let manifest: serde_json::Value = serde_json::from_slice(&files["manifest.json"]).unwrap();
    let mut parent: Option<String> = None;
    for (i, l) in manifest[0]["Layers"].as_array().unwrap().iter().enumerate() {
        let id = format!("l{i}");
        d.create(&id, parent.as_deref(), &CreateOpts::default())
            .unwrap();
        let data = &files[l.as_str().unwrap()];
        d.apply_diff(&id, parent.as_deref(), &mut &data[..])
            .unwrap();
        parent = Some(id);
    }
    parent.unwrap()
}

/// Docker's pair of container layers on `top`: `<name>-init` (filled like Docker's init
/// layer) and `<name>` on it.
fn container(d: &OverlayDriver, top: &str, name: &str) -> (String, String) {
    let init = format!("{name}-init");
    d.create_read_write(&init, Some(top), &CreateOpts::default())
        .unwrap();
    let m = d.get(&init, None).unwrap();
    for dir in ["dev/pts", "dev/shm", "proc", "sys"] {
        std::fs::create_dir_all(m.join(dir)).unwrap();
    }
    std::fs::create_dir_all(m.join("etc")).unwrap();
    for f in [
        ".dockerenv",
        "etc/resolv.conf",
        "etc/hosts",
        "etc/hostname",
        "dev/console",
    ] {
        std::fs::write(m.join(f), b"").unwrap();
    }
    std::os::unix::fs::symlink("/proc/mounts", m.join("etc/mtab")).unwrap();
    d.put(&init).unwrap();
    d.create_read_write(name, Some(&init), &CreateOpts::default())
        .unwrap();
    (init, name.to_string())
}

fn docker_diff(changes: &[ovlink_driver::Change]) -> String {
    let mut lines: Vec<String> = changes
        .iter()
        .map(|c| {
            let k = match c.kind {
                ovlink_driver::ChangeKind::Add => 'A',
                ovlink_driver::ChangeKind::Modify => 'C',
                ovlink_driver::ChangeKind::Delete => 'D',
            };
            format!("{k} {}", c.path)
        })
        .collect();
    lines.sort();
    lines.iter().map(|l| format!("{l}\n")).collect()
}

/// What applying `tar` reports (the regular files' bytes) and what Docker's `ChangesSize`
/// gives for the same changes (those bytes plus each symlink's target length).
fn tar_sizes(tar: &[u8]) -> (u64, u64) {
    let (mut regular, mut links) = (0, 0);
    for e in tar::Archive::new(tar).entries().unwrap() {
        let e = e.unwrap();
        match e.header().entry_type() {
            tar::EntryType::Regular => regular += e.header().size().unwrap(),
            tar::EntryType::Symlink => links += e.link_name_bytes().map_or(0, |l| l.len() as u64),
            _ => {}
        }
    }
    (regular, regular + links)
}

/// Diffs `id` against `parent` in `mode`, applies the tar to a fresh layer on `parent`
/// (`base`: the image layer under a container parent) and checks the result equals the
/// merged view of `id`. Returns the tar.
fn round_trip(d: &OverlayDriver, id: &str, parent: &str, fresh: &str, mode: DiffMode) -> Vec<u8> {
    let mut tar = Vec::new();
    diff_with(d, id, Some(parent), mode, &mut tar).unwrap();
    let size = diff_size_with(d, id, Some(parent), mode).unwrap();
    let parent_is_image = d.layer_kind(parent).unwrap() == ovlink_driver::LayerKind::Image;
    let applied = if parent_is_image {
        d.create(fresh, Some(parent), &CreateOpts::default())
            .unwrap();
        d.apply_diff(fresh, Some(parent), &mut &tar[..]).unwrap()
    } else {
        // A container parent: apply into the mounted fresh container layer (what the driver's
        // apply_diff does for such a parent, through the mount).
        d.create_read_write(fresh, Some(parent), &CreateOpts::default())
            .unwrap();
        let m = d.get(fresh, None).unwrap();
        let fd = ovlink_fs::at::open_dir(&m).unwrap();
        let stats = ovlink_tar::apply_layer(
            std::os::fd::AsFd::as_fd(&fd),
            &m,
            &mut &tar[..],
            &ovlink_tar::ApplyOptions::default(),
        )
        .unwrap();
        drop(fd);
        d.put(fresh).unwrap();
        stats.size
    };
    assert_eq!(
        (applied, size),
        tar_sizes(&tar),
        "applying reports the regular files' bytes, diff_size Docker's ChangesSize"
    );
    let want = d.get(id, None).unwrap();
    let got = d.get(fresh, None).unwrap();
    assert_same_tree(&want, &got);
    assert_eq!(link_groups(&want), link_groups(&got), "hardlink groups");
    d.put(fresh).unwrap();
    d.put(id).unwrap();
    tar
}

/// The commands of the fixture scenario, done with std::fs on the merged view.
fn fx_commands(m: &Path) {
    std::fs::write(m.join("app/hello.txt"), b"changed\n").unwrap();
    std::fs::remove_file(m.join("app/big.bin")).unwrap();
    std::fs::remove_dir_all(m.join("opt/moved")).unwrap();
    std::fs::create_dir_all(m.join("opt/moved")).unwrap();
    std::fs::write(m.join("opt/moved/x"), b"fresh\n").unwrap();
    assert!(m.join("root").is_dir(), "the fixture has /root");
    std::fs::write(m.join("root/new"), b"newfile\n").unwrap();
    std::fs::remove_file(m.join("bin/ls")).unwrap();
    std::os::unix::fs::symlink("/etc/motd", m.join("root/motdlink")).unwrap();
    std::fs::create_dir(m.join("app/empty/sub")).unwrap();
}

#[test]
fn fx_container_changes_match_docker() {
    let t = test_root();
    let d = driver(&t);
    let top = import_fx(&d);
    let (init, c) = container(&d, &top, "c");
    let m = d.get(&c, None).unwrap();
    fx_commands(&m);
    let want = std::fs::read_to_string(fixture("fx-container.diff")).unwrap();
    let native = docker_diff(&d.changes(&c, Some(&init)).unwrap());
    assert_eq!(native, want);
    let naive = docker_diff(&changes_with(&d, &c, Some(&init), DiffMode::Naive).unwrap());
    assert_eq!(naive, want, "the naive diff agrees on this scenario");
    // Unmounted, the native diff reads the same upper dir.
    d.put(&c).unwrap();
    assert!(!t.home().join("c/merged").exists());
    assert_eq!(docker_diff(&d.changes(&c, Some(&init)).unwrap()), want);
    // Against the image layer, the init layer's files are changes too.
    let vs_image = docker_diff(&d.changes(&c, Some(&top)).unwrap());
    for l in [
        "A /.dockerenv",
        "A /etc/hosts",
        "C /etc",
        "A /dev",
        "A /etc/mtab",
    ] {
        assert!(vs_image.contains(&format!("{l}\n")), "{l} in\n{vs_image}");
    }
    assert_eq!(
        d.changes(&c, None).unwrap(),
        d.changes(&c, Some(&top)).unwrap()
    );
    let status = d.status();
    assert!(status
        .iter()
        .any(|(k, v)| k == "Diff mode" && v.starts_with("native")));
    assert!(t.mounts().is_empty());
}

#[test]
fn fx_container_diff_round_trips() {
    let t = test_root();
    let d = driver(&t);
    let top = import_fx(&d);
    let (init, c) = container(&d, &top, "c");
    let m = d.get(&c, None).unwrap();
    fx_commands(&m);
    d.put(&c).unwrap();
    // Onto a fresh container layer on the init layer (Docker's parent), natively and naively,
    let tar = round_trip(&d, &c, &init, "rt1", DiffMode::Auto);
    round_trip(&d, &c, &init, "rt2", DiffMode::Naive);
    // and onto a fresh image layer on the image (the whole upper dir, init files included).
    round_trip(&d, &c, &top, "rt3", DiffMode::Auto);
    // The native tar: an opaque marker for the re-created dir, whiteouts, no init files.
    let mut names = Vec::new();
    for e in tar::Archive::new(&tar[..]).entries().unwrap() {
        names.push(e.unwrap().path().unwrap().to_string_lossy().into_owned());
    }
    for n in [
        "opt/moved/",
        "opt/moved/.wh..wh..opq",
        "app/.wh.big.bin",
        "bin/.wh.ls",
    ] {
        assert!(names.contains(&n.to_string()), "{n} in {names:?}");
    }
    assert!(!names
        .iter()
        .any(|n| n.contains("dockerenv") || n.contains("hosts")));
    assert!(t.mounts().is_empty());
}

fn base_tar(t: &TestRoot) -> PathBuf {
    TarBuilder::new()
        .dir("data", 0o755)
        .dir("data/tree", 0o755)
        .dir("data/tree/a", 0o700)
        .file("data/tree/a/f", 0o644, b"deep\n")
        .file("data/tree/top", 0o644, b"top\n")
        .dir("data/opq", 0o755)
        .file("data/opq/old1", 0o644, b"old1\n")
        .dir("data/opq/olddir", 0o755)
        .file("data/opq/olddir/x", 0o644, b"x\n")
        .file("data/same", 0o644, b"aaaa")
        .symlink("data/link", "abcd")
        .file("data/recreate", 0o644, b"first\n")
        .dir("data/d1", 0o755)
        .file("data/d1/in", 0o600, b"inside\n")
        .dir("data/d1/sub", 0o755)
        .file("data/d1/sub/deeper", 0o644, b"deeper\n")
        .file("data/tochmod", 0o644, b"chmod me\n")
        .file("data/tochown", 0o644, b"chown me\n")
        .dir("gone", 0o755)
        .dir("gone/sub", 0o755)
        .file("gone/sub/f", 0o644, b"f\n")
        .file("gone/g", 0o644, b"g\n")
        .write_to(t.path(), "base.tar")
}

fn set_mtime(p: &Path, sec: i64, nsec: i64) {
    let ts = rustix::fs::Timestamps {
        last_access: rustix::fs::Timespec {
            tv_sec: sec,
            tv_nsec: nsec,
        },
        last_modification: rustix::fs::Timespec {
            tv_sec: sec,
            tv_nsec: nsec,
        },
    };
    rustix::fs::utimensat(
        rustix::fs::CWD,
        p,
        &ts,
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    )
    .unwrap();
}

/// `mv` of a directory: rename, or copy and remove when overlay says EXDEV (redirect_dir off).
fn move_dir(from: &Path, to: &Path) {
    match std::fs::rename(from, to) {
        Ok(()) => return,
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::XDEV.raw_os_error()) => {}
        Err(e) => panic!("rename: {e}"),
    }
    let st = std::fs::symlink_metadata(from).unwrap();
    std::fs::create_dir(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let (s, t) = (e.path(), to.join(e.file_name()));
        if e.file_type().unwrap().is_dir() {
            move_dir(&s, &t);
        } else {
            std::fs::copy(&s, &t).unwrap();
            let m = std::fs::symlink_metadata(&s).unwrap();
            std::os::unix::fs::chown(&t, Some(m.uid()), Some(m.gid())).unwrap();
            std::fs::set_permissions(&t, m.permissions()).unwrap();
            set_mtime(&t, m.mtime(), m.mtime_nsec());
            std::fs::remove_file(&s).unwrap();
        }
    }
    std::fs::set_permissions(to, st.permissions()).unwrap();
    std::fs::remove_dir(from).unwrap();
}

/// A container on one base layer with the special cases done in it.
fn special_container(t: &TestRoot, d: &OverlayDriver) -> (String, PathBuf) {
    let base = base_tar(t);
    d.create("base", None, &CreateOpts::default()).unwrap();
    d.apply_diff("base", None, &mut std::fs::File::open(base).unwrap())
        .unwrap();
    d.create_read_write("c", Some("base"), &CreateOpts::default())
        .unwrap();
    let m = d.get("c", None).unwrap();
    let lower = t.home().join("base/root");
    // A file rewritten with the same size and mtime (ns included).
    let st = std::fs::symlink_metadata(lower.join("data/same")).unwrap();
    std::fs::write(m.join("data/same"), b"bbbb").unwrap();
    set_mtime(&m.join("data/same"), st.mtime(), st.mtime_nsec());
    // A symlink re-pointed with the same target length and mtime.
    let st = std::fs::symlink_metadata(lower.join("data/link")).unwrap();
    std::fs::remove_file(m.join("data/link")).unwrap();
    std::os::unix::fs::symlink("wxyz", m.join("data/link")).unwrap();
    set_mtime(&m.join("data/link"), st.mtime(), st.mtime_nsec());
    // A directory renamed.
    move_dir(&m.join("data/d1"), &m.join("data/d2"));
    // A whole tree whited out, an opaque directory, a deleted-then-recreated file.
    std::fs::remove_dir_all(m.join("gone")).unwrap();
    std::fs::remove_dir_all(m.join("data/opq")).unwrap();
    std::fs::create_dir(m.join("data/opq")).unwrap();
    std::fs::write(m.join("data/opq/new1"), b"new1\n").unwrap();
    std::fs::create_dir(m.join("data/opq/olddir")).unwrap();
    std::fs::remove_file(m.join("data/recreate")).unwrap();
    std::fs::write(m.join("data/recreate"), b"second\n").unwrap();
    // Hardlinks made in the container (a group of three, one of them in another dir).
    std::fs::create_dir(m.join("links")).unwrap();
    std::fs::write(m.join("links/one"), b"shared\n").unwrap();
    std::fs::hard_link(m.join("links/one"), m.join("links/two")).unwrap();
    std::fs::hard_link(m.join("links/one"), m.join("data/three")).unwrap();
    // Capabilities, setuid, ownership, mode, a user xattr.
    std::fs::write(m.join("data/capped"), b"#!/bin/true\n").unwrap();
    // v2 capability: cap_net_raw (13) permitted + effective, no byte equal to '\n'.
    let cap: [u8; 20] = [
        0x01, 0x00, 0x00, 0x02, 0x00, 0x20, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x00, 0x00, 0x00, 0x00,
    ];
    rustix::fs::lsetxattr(
        m.join("data/capped"),
        "security.capability",
        &cap,
        rustix::fs::XattrFlags::empty(),
    )
    .unwrap();
    std::fs::write(m.join("data/suid"), b"suid\n").unwrap();
    std::os::unix::fs::chown(m.join("data/suid"), Some(1000), Some(1000)).unwrap();
    std::fs::set_permissions(
        m.join("data/suid"),
        std::os::unix::fs::PermissionsExt::from_mode(0o4755),
    )
    .unwrap();
    std::fs::set_permissions(
        m.join("data/tochmod"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    std::os::unix::fs::chown(m.join("data/tochown"), Some(7), Some(8)).unwrap();
    rustix::fs::lsetxattr(
        m.join("data/tochmod"),
        "user.note",
        b"hello",
        rustix::fs::XattrFlags::empty(),
    )
    .unwrap();
    // Odd names: spaces, a newline, UTF-8, a long name and a long path.
    std::fs::create_dir(m.join("names")).unwrap();
    std::fs::write(m.join("names/with space"), b"s\n").unwrap();
    std::fs::write(m.join("names/new\nline"), b"n\n").unwrap();
    std::fs::write(m.join("names/ünïcödé-名前.txt"), b"u\n").unwrap();
    std::fs::write(m.join("names").join("L".repeat(200)), b"long\n").unwrap();
    let deep = m.join("names").join("d".repeat(120)).join("e".repeat(120));
    std::fs::create_dir_all(&deep).unwrap();
    std::fs::write(deep.join("f".repeat(150)), b"deep\n").unwrap();
    std::fs::create_dir(m.join("names").join("nl\ndir".repeat(30))).unwrap();
    std::fs::write(m.join("names").join("nl\ndir".repeat(30)).join("x"), b"x\n").unwrap();
    // Special files.
    std::fs::create_dir(m.join("dev")).unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        m.join("dev/null"),
        rustix::fs::FileType::CharacterDevice,
        rustix::fs::Mode::from_raw_mode(0o666),
        rustix::fs::makedev(1, 3),
    )
    .unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        m.join("dev/loop9"),
        rustix::fs::FileType::BlockDevice,
        rustix::fs::Mode::from_raw_mode(0o660),
        rustix::fs::makedev(7, 9),
    )
    .unwrap();
    rustix::fs::mknodat(
        rustix::fs::CWD,
        m.join("dev/fifo"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o644),
        0,
    )
    .unwrap();
    std::os::unix::fs::symlink("../data/same", m.join("dev/rel")).unwrap();
    ("c".to_string(), m)
}

#[test]
fn special_cases_round_trip_and_naive_misses_are_found() {
    let t = test_root();
    let d = driver(&t);
    let (c, _m) = special_container(&t, &d);
    let native = docker_diff(&d.changes(&c, Some("base")).unwrap());
    let naive = docker_diff(&changes_with(&d, &c, Some("base"), DiffMode::Naive).unwrap());
    for l in [
        "C /data/same",
        "C /data/link",
        "A /data/d2",
        "A /data/d2/in",
        "A /data/d2/sub/deeper",
        "D /data/d1",
        "D /gone",
        "C /data/opq",
        "A /data/opq/new1",
        "C /data/opq/olddir",
        "D /data/opq/olddir/x",
        "D /data/opq/old1",
        "C /data/recreate",
        "C /data/tochmod",
        "C /data/tochown",
        "A /links/two",
        "A /data/three",
        "A /data/capped",
    ] {
        assert!(native.contains(&format!("{l}\n")), "{l} in\n{native}");
    }
    assert!(
        !native.contains("/gone/"),
        "a deleted directory is listed once:\n{native}"
    );
    assert!(!native.contains("C /\n") && !native.contains("A /\n"));
    // What Docker's naive comparison cannot see, the native diff does.
    for l in ["C /data/same\n", "C /data/link\n"] {
        assert!(!naive.contains(l), "the naive diff misses {l}");
    }
    let strip = |s: &str| -> String {
        s.lines()
            .filter(|l| *l != "C /data/same" && *l != "C /data/link")
            .map(|l| format!("{l}\n"))
            .collect()
    };
    assert_eq!(strip(&native), strip(&naive), "otherwise the same list");
    d.put(&c).unwrap();
    round_trip(&d, &c, "base", "rt-native", DiffMode::Auto);
    // The naive tar applies the metadata it sees, so it misses the same two changes.
    let mut tar = Vec::new();
    diff_with(&d, &c, Some("base"), DiffMode::Naive, &mut tar).unwrap();
    d.create("rt-naive", Some("base"), &CreateOpts::default())
        .unwrap();
    d.apply_diff("rt-naive", Some("base"), &mut &tar[..])
        .unwrap();
    let got = t.home().join("rt-naive/root");
    assert_eq!(std::fs::read(got.join("data/same")).unwrap(), b"aaaa");
    assert!(t.mounts().is_empty());
}

#[test]
fn image_layer_diffs_round_trip() {
    let t = test_root();
    let d = driver(&t);
    let top = import_fx(&d);
    // Each fixture layer against its parent, re-applied on the parent, gives the same tree.
    let mut parent: Option<String> = None;
    for i in 0..4 {
        let id = format!("l{i}");
        let mut tar = Vec::new();
        d.diff(&id, parent.as_deref(), &mut tar).unwrap();
        let size = d.diff_size(&id, parent.as_deref()).unwrap();
        let fresh = format!("r{i}");
        d.create(&fresh, parent.as_deref(), &CreateOpts::default())
            .unwrap();
        let applied = d
            .apply_diff(&fresh, parent.as_deref(), &mut &tar[..])
            .unwrap();
        assert_eq!((applied, size), tar_sizes(&tar));
        assert_same_tree(
            &t.home().join(&id).join("root"),
            &t.home().join(&fresh).join("root"),
        );
        parent = Some(id);
    }
    let l1 = docker_diff(&d.changes("l2", Some("l1")).unwrap());
    for l in [
        "D /etc/motd",
        "D /usr/share/doc",
        "D /opt/deep",
        "A /opt/moved/a/b/c/d/e/f.txt",
        "C /var/log/a.log",
        "D /bin/vi",
        "D /app/keepme/k1",
        "A /app/keepme/n1",
    ] {
        assert!(l1.contains(&format!("{l}\n")), "{l} in\n{l1}");
    }
    assert!(!l1.contains("/usr/share/doc/"), "listed once:\n{l1}");
    assert_eq!(top, "l3");
}

/// `cargo test -- --ignored --nocapture diff_benchmark`: native vs naive diff time for a
/// 10-file change on images of growing size. Prints a table; asserts nothing about time.
#[test]
#[ignore]
fn diff_benchmark() {
    let t = test_root();
    let d = driver(&t);
    println!("| image files | native diff | naive diff | native changes | naive changes |");
    println!("|---|---|---|---|---|");
    for files in [1_000usize, 10_000, 40_000] {
        let mut b = TarBuilder::new();
        for dir in 0..files / 100 {
            b = b.dir(&format!("d{dir:03}"), 0o755);
            for f in 0..100 {
                b = b.file(&format!("d{dir:03}/f{f:03}"), 0o644, b"content of a file\n");
            }
        }
        let img = format!("img{files}");
        d.create(&img, None, &CreateOpts::default()).unwrap();
        d.apply_diff(&img, None, &mut &b.build()[..]).unwrap();
        let c = format!("c{files}");
        d.create_read_write(&c, Some(&img), &CreateOpts::default())
            .unwrap();
        let m = d.get(&c, None).unwrap();
        for i in 0..10 {
            std::fs::write(
                m.join(format!("d{:03}/f{i:03}", i * 7 % (files / 100))),
                b"x",
            )
            .unwrap();
        }
        d.put(&c).unwrap();
        let time = |f: &dyn Fn()| {
            let runs = 5;
            let s = std::time::Instant::now();
            for _ in 0..runs {
                f();
            }
            s.elapsed() / runs
        };
        let nd =
            time(&|| diff_with(&d, &c, Some(&img), DiffMode::Auto, &mut std::io::sink()).unwrap());
        let vd =
            time(&|| diff_with(&d, &c, Some(&img), DiffMode::Naive, &mut std::io::sink()).unwrap());
        let nc = time(&|| {
            assert_eq!(
                changes_with(&d, &c, Some(&img), DiffMode::Auto)
                    .unwrap()
                    .len(),
                20
            );
        });
        let vc = time(&|| {
            changes_with(&d, &c, Some(&img), DiffMode::Naive).unwrap();
        });
        println!("| {files} | {nd:.2?} | {vd:.2?} | {nc:.2?} | {vc:.2?} |");
    }
}

/// The raw 512-byte header of tar entry `name` in `tar`.
fn raw_header(tar: &[u8], name: &str) -> [u8; 512] {
    let mut ar = tar::Archive::new(tar);
    for e in ar.entries().unwrap() {
        let e = e.unwrap();
        if e.path().unwrap().to_string_lossy() == name {
            let mut h = [0u8; 512];
            h.copy_from_slice(e.header().as_bytes());
            return h;
        }
    }
    panic!("{name} not in the tar");
}

#[test]
fn diff_headers_are_docker_archive_headers_and_diff_size_counts_symlinks() {
    let t = test_root();
    let d = driver(&t);
    let top = import_fx(&d);
    let (init, c) = container(&d, &top, "hdr");
    let m = d.get(&c, None).unwrap();
    std::fs::create_dir(m.join("newdir")).unwrap();
    std::fs::write(m.join("newdir/f"), b"1234").unwrap();
    std::os::unix::fs::symlink("/etc/motd", m.join("newdir/link")).unwrap();
    std::os::unix::fs::symlink("f", m.join("newdir/ln2")).unwrap();
    std::fs::hard_link(m.join("newdir/f"), m.join("newdir/f2")).unwrap();
    let mut tar = Vec::new();
    diff_with(&d, &c, Some(&init), DiffMode::Auto, &mut tar).unwrap();
    // Docker's ChangesSize: the file once (hardlinked), each symlink's target length.
    assert_eq!(
        d.diff_size(&c, Some(&init)).unwrap(),
        4 + "/etc/motd".len() as u64 + 1
    );
    for (name, mode) in [
        ("newdir/", &b"0040755\0"[..]),
        ("newdir/f", b"0100644\0"),
        ("newdir/link", b"0120777\0"),
    ] {
        let h = raw_header(&tar, name);
        assert_eq!(&h[100..108], mode, "{name}: mode with the file-type bits");
        // Go's checksum field: six octal digits, NUL, space.
        assert!(
            h[148..154].iter().all(u8::is_ascii_digit),
            "{name}: {:?}",
            &h[148..156]
        );
        assert_eq!(&h[154..156], b"\0 ", "{name}");
        assert_eq!(
            &h[257..265],
            b"ustar\x0000",
            "{name}: USTAR magic and version"
        );
        assert_eq!(
            &h[265..269],
            b"root",
            "{name}: uname of uid 0 from /etc/passwd"
        );
        assert_eq!(&h[329..337], b"0000000\0", "{name}: devmajor");
        assert_eq!(&h[337..345], b"0000000\0", "{name}: devminor");
        let sum: u32 = h
            .iter()
            .enumerate()
            .map(|(i, b)| {
                if (148..156).contains(&i) {
                    32
                } else {
                    u32::from(*b)
                }
            })
            .sum();
        let field = std::str::from_utf8(&h[148..154]).unwrap();
        assert_eq!(
            u32::from_str_radix(field, 8).unwrap(),
            sum,
            "{name}: checksum"
        );
    }
    // The second name of the hardlinked file is a link entry, mode of a regular file.
    let h = raw_header(&tar, "newdir/f2");
    assert_eq!(h[156], b'1');
    assert_eq!(&h[100..108], b"0100644\0");
    d.put(&c).unwrap();
}

#[test]
fn long_names_split_at_the_last_slash_that_fits_as_go_does() {
    let t = test_root();
    let d = driver(&t);
    let top = import_fx(&d);
    let (init, c) = container(&d, &top, "long");
    let m = d.get(&c, None).unwrap();
    // 120 bytes of directories then a short name: Go puts everything up to the last '/'
    // within the first 156 bytes into the prefix.
    let dirs = ["a".repeat(50), "b".repeat(50), "c".repeat(18)];
    let rel = dirs.join("/");
    std::fs::create_dir_all(m.join(&rel)).unwrap();
    std::fs::write(m.join(&rel).join("file.txt"), b"x").unwrap();
    let mut tar = Vec::new();
    diff_with(&d, &c, Some(&init), DiffMode::Auto, &mut tar).unwrap();
    let full = format!("{rel}/file.txt");
    let h = raw_header(&tar, &full);
    let prefix: Vec<u8> = h[345..500]
        .iter()
        .copied()
        .take_while(|b| *b != 0)
        .collect();
    let name: Vec<u8> = h[0..100].iter().copied().take_while(|b| *b != 0).collect();
    assert_eq!(prefix, rel.as_bytes());
    assert_eq!(name, b"file.txt");
    d.put(&c).unwrap();
}
