//! The overlay2 layout (`--driver overlay2`): Docker's on-disk shape (`l/` short links, `link`,
//! `lower`, `diff/`, `work/`), the same container semantics as the legacy layout on real
//! mounts, whiteouts kept as overlay whiteouts in `diff/`, the 128-layer limit and the
//! relative-path mount of deep chains, reference counting and crash leftovers.

use crate::scenario;
use crate::util::*;
use ovlink_driver::{CreateOpts, Driver, InitConfig, Layout};
use ovlink_overlay2::Overlay2Driver;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

const O2: &str = "--driver=overlay2";

fn home(t: &TestRoot) -> PathBuf {
    t.root().join("overlay2")
}

/// `ovlink --driver overlay2 ARGS…`, asserting success.
fn ok(t: &TestRoot, args: &[&str]) -> String {
    let mut v = vec![O2];
    v.extend_from_slice(args);
    t.ok(&v)
}

fn fails(t: &TestRoot, args: &[&str]) -> String {
    let mut v = vec![O2];
    v.extend_from_slice(args);
    t.fails(&v)
}

/// The scenario's two layers (base <- l2) in the overlay2 layout.
fn two_layers(t: &TestRoot) -> (&'static str, &'static str) {
    scenario::two_layers(t, Layout::Overlay2)
}

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
}

fn read(p: &Path) -> String {
    std::fs::read_to_string(p).unwrap()
}

fn driver(t: &TestRoot) -> Overlay2Driver {
    Overlay2Driver::init(&InitConfig {
        home: home(t),
        ..Default::default()
    })
    .unwrap()
}

#[test]
fn layout_matches_docker_overlay2() {
    let t = test_root();
    let (base, l2) = two_layers(&t);
    let h = home(&t);
    assert_eq!(mode(&h), 0o710);
    assert_eq!(mode(&h.join("l")), 0o700);
    assert_eq!(mode(&h.join(base)), 0o710);
    assert_eq!(mode(&h.join("base/diff")), 0o755);
    let blink = read(&h.join("base/link"));
    assert_eq!(blink.len(), 26, "{blink:?}");
    assert!(blink
        .bytes()
        .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()));
    assert_eq!(
        std::fs::read_link(h.join("l").join(&blink)).unwrap(),
        Path::new("../base/diff")
    );
    assert!(
        !h.join("base/lower").exists(),
        "a bottom layer has no lower"
    );
    assert!(!h.join("base/work").exists(), "nor a work dir");
    let l2link = read(&h.join("l2/link"));
    assert_eq!(read(&h.join("l2/lower")), format!("l/{blink}"));
    assert_eq!(mode(&h.join("l2/work")), 0o700);
    // l2's diff holds only what its tar holds: nothing of base is re-created.
    let d = manifest(&h.join("l2/diff"));
    assert_eq!(d.keys().collect::<Vec<_>>(), vec![".", "etc", "etc/new"]);

    ok(&t, &["layer", "create-rw", "c", "--parent", l2]);
    assert_eq!(read(&h.join("c/lower")), format!("l/{l2link}:l/{blink}"));
    assert!(!h.join("c/merged").exists());
    let merged = ok(&t, &["mount", "c"]);
    assert_eq!(merged.trim(), h.join("c/merged").to_str().unwrap());
    assert_eq!(mode(&h.join("c/merged")), 0o755);
    let meta: serde_json::Value =
        serde_json::from_str(&ok(&t, &["layer", "inspect", "c", "--json"])).unwrap();
    let data = &meta["graph_driver"]["data"];
    assert_eq!(meta["graph_driver"]["name"], "overlay2");
    assert_eq!(
        data["LowerDir"],
        format!(
            "{}:{}",
            h.join("l2/diff").display(),
            h.join("base/diff").display()
        )
    );
    assert_eq!(data["UpperDir"], h.join("c/diff").to_str().unwrap());
    assert_eq!(data["WorkDir"], h.join("c/work").to_str().unwrap());
    assert_eq!(data["MergedDir"], h.join("c/merged").to_str().unwrap());
    let ls: serde_json::Value = serde_json::from_str(&ok(&t, &["layer", "ls", "--json"])).unwrap();
    let c = ls
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["id"] == "c")
        .unwrap();
    assert_eq!(c["kind"], "container");
    assert_eq!(c["lower_id"], "l2");
    assert_eq!(c["mounted"], true);
    let b = ls
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["id"] == "base")
        .unwrap();
    assert_eq!(b["kind"], "image");
    ok(&t, &["umount", "c"]);
    assert!(
        !h.join("c/merged").exists(),
        "merged/ exists only while mounted"
    );
    assert!(t.mounts().is_empty());
    // Removing a layer removes its short link.
    ok(&t, &["layer", "rm", "c"]);
    let links: Vec<_> = std::fs::read_dir(h.join("l")).unwrap().collect();
    assert_eq!(links.len(), 2);
    assert!(fails(&t, &["layer", "create", "l"]).contains("short-link"));
}

#[test]
fn layer_tar_whiteouts_become_overlay_whiteouts_in_diff() {
    let t = test_root();
    let (_, l2) = two_layers(&t);
    let l3 = TarBuilder::new()
        .whiteout("etc", "conf")
        .dir("data", 0o750)
        .opaque("data")
        .file("data/new", 0o644, b"n\n")
        .whiteout("", "bin")
        .write_to(t.path(), "l3.tar");
    ok(
        &t,
        &["layer", "apply", "l3", "--parent", l2, l3.to_str().unwrap()],
    );
    let d = home(&t).join("l3/diff");
    let wh = std::fs::symlink_metadata(d.join("etc/conf")).unwrap();
    assert!(wh.file_type().is_char_device() && wh.rdev() == 0);
    assert!(std::fs::symlink_metadata(d.join("bin"))
        .unwrap()
        .file_type()
        .is_char_device());
    let mut v = [0u8; 8];
    let n = rustix::fs::lgetxattr(d.join("data"), "trusted.overlay.opaque", &mut v[..]).unwrap();
    assert_eq!(&v[..n], b"y");
    assert_eq!(mode(&d.join("data")), 0o750);
    assert!(manifest(&d).keys().all(|k| !k.contains(".wh.")));

    ok(&t, &["layer", "create-rw", "c", "--parent", "l3"]);
    let m = PathBuf::from(ok(&t, &["mount", "c"]).trim());
    assert!(!m.join("etc/conf").exists());
    assert!(!m.join("bin").exists());
    assert!(m.join("etc/hl1").exists());
    let listed: Vec<_> = std::fs::read_dir(m.join("data"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(listed, vec![std::ffi::OsString::from("new")]);
    ok(&t, &["umount", "c"]);
}

#[test]
fn container_on_container_stacks_the_init_layer() {
    let t = test_root();
    let (_, l2) = two_layers(&t);
    ok(&t, &["layer", "create-rw", "c-init", "--parent", l2]);
    let m = PathBuf::from(ok(&t, &["mount", "c-init"]).trim());
    std::fs::write(m.join(".dockerenv"), b"").unwrap();
    std::fs::remove_file(m.join("etc/new")).unwrap();
    ok(&t, &["umount", "c-init"]);
    ok(&t, &["layer", "create-rw", "c", "--parent", "c-init"]);
    assert_eq!(read(&home(&t).join("c/lower")).split(':').count(), 3);
    let m = PathBuf::from(ok(&t, &["mount", "c"]).trim());
    assert!(m.join(".dockerenv").exists());
    assert!(!m.join("etc/new").exists());
    assert_eq!(read(&m.join("etc/conf")), "lower content\n");
    ok(&t, &["umount", "c"]);
    assert!(t.mounts().is_empty());
}

#[test]
fn mounts_are_reference_counted() {
    let t = test_root();
    let (base, l2) = two_layers(&t);
    let d = driver(&t);
    d.create_read_write("c", Some(l2), &CreateOpts::default())
        .unwrap();
    let p1 = d.get("c", None).unwrap();
    let p2 = d.get("c", None).unwrap();
    assert_eq!(p1, p2);
    assert_eq!(t.mounts().len(), 1);
    d.put("c").unwrap();
    assert_eq!(t.mounts().len(), 1, "still one user");
    assert_eq!(ok(&t, &["mount", "c"]).trim(), p1.to_str().unwrap());
    assert_eq!(t.mounts().len(), 1);
    d.put("c").unwrap();
    assert!(t.mounts().is_empty(), "the last put unmounts");
    assert!(!p1.exists());
    // A bottom layer: get returns diff/ and mounts nothing.
    assert_eq!(d.get(base, None).unwrap(), home(&t).join(base).join("diff"));
    d.put(base).unwrap();
    assert!(t.mounts().is_empty());
    d.get("c", None).unwrap();
    ok(&t, &["umount", "c"]);
    assert!(t.mounts().is_empty());
    d.get("c", None).unwrap();
    d.remove("c").unwrap();
    assert!(t.mounts().is_empty());
    assert!(!d.exists("c"));
}

#[test]
fn deep_chains_mount_with_relative_paths_and_stop_at_128_lowers() {
    let t = test_root();
    let d = driver(&t);
    let opts = CreateOpts::default();
    d.create("l0", None, &opts).unwrap();
    let tar = TarBuilder::new().file("bottom", 0o644, b"deep\n").build();
    d.apply_diff("l0", None, &mut &tar[..]).unwrap();
    for i in 1..=128 {
        d.create(&format!("l{i}"), Some(&format!("l{}", i - 1)), &opts)
            .unwrap();
    }
    assert_eq!(d.lower_ids("l128").unwrap().len(), 128);
    let err = d.create("l129", Some("l128"), &opts).unwrap_err();
    assert!(err.to_string().contains("128"), "{err}");
    assert!(!d.exists("l129"), "nothing left behind");
    // l128 has 128 lowers: with absolute paths the options exceed a page here.
    let abs_len = 128 * (home(&t).as_os_str().len() + 1 + 28 + 1);
    assert!(
        abs_len > 4096,
        "the test home is too short to need relative paths"
    );
    let m = d.get("l128", None).unwrap();
    assert_eq!(read(&m.join("bottom")), "deep\n");
    let line = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .find(|l| l.contains(m.to_str().unwrap()))
        .unwrap()
        .to_string();
    assert!(line.contains("lowerdir=l/"), "relative lowerdirs: {line}");
    d.put("l128").unwrap();
    assert!(t.mounts().is_empty());
}

#[test]
fn failed_calls_leave_the_home_as_it_was() {
    let t = test_root();
    let (_, l2) = two_layers(&t);
    ok(&t, &["layer", "create-rw", "c", "--parent", l2]);
    let snapshot = |h: &Path| -> Vec<String> {
        manifest(h)
            .into_iter()
            .map(|(p, e)| format!("{p} {} {:o} {:?} {:?}", e.kind, e.mode, e.size, e.sha256))
            .collect()
    };
    let before = snapshot(&home(&t));
    // The tar crate refuses to write `..`, so the hostile entry's name is set by hand.
    let escape = TarBuilder::new()
        .raw_file("../escaped", b"x")
        .write_to(t.path(), "esc.tar");
    let mut bytes = TarBuilder::new().file("a", 0o644, &[7u8; 5000]).build();
    bytes.truncate(2048);
    let corrupt = t.path().join("corrupt.tar");
    std::fs::write(&corrupt, &bytes).unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["layer", "create", "base"], "already exists"),
        (
            vec!["layer", "create", "x", "--parent", "nope"],
            "does not exist",
        ),
        (vec!["layer", "create", "../x"], "invalid layer id"),
        (vec!["layer", "create", "l"], "invalid layer id"),
        (
            vec![
                "layer",
                "apply",
                "e",
                "--parent",
                l2,
                escape.to_str().unwrap(),
            ],
            "escape",
        ),
        (
            vec![
                "layer",
                "apply",
                "e",
                "--parent",
                l2,
                corrupt.to_str().unwrap(),
            ],
            "e",
        ),
        (vec!["layer", "apply", "c", corrupt.to_str().unwrap()], "c"),
        (vec!["layer", "rm", "nope"], "does not exist"),
        (vec!["mount", "nope"], "does not exist"),
    ];
    for (args, needle) in &cases {
        let err = fails(&t, args);
        assert!(err.contains(needle), "ovlink {args:?}: {err}");
        assert_eq!(
            snapshot(&home(&t)),
            before,
            "ovlink {args:?} changed the home"
        );
    }
}

#[test]
fn init_repairs_short_links_and_reaps_leftovers() {
    let t = test_root();
    let (_, l2) = two_layers(&t);
    let h = home(&t);
    let link = read(&h.join(l2).join("link"));
    std::fs::remove_file(h.join("l").join(&link)).unwrap();
    std::os::unix::fs::symlink("../gone/diff", h.join("l/DANGLINGDANGLINGDANGLING12")).unwrap();
    std::fs::create_dir_all(h.join(".tmp-create-dead/diff")).unwrap();
    std::fs::create_dir_all(h.join(l2).join("tmpdiff-dead/etc")).unwrap();
    ok(&t, &["layer", "ls"]);
    assert_eq!(
        std::fs::read_link(h.join("l").join(&link)).unwrap(),
        Path::new("../l2/diff")
    );
    assert!(std::fs::symlink_metadata(h.join("l/DANGLINGDANGLINGDANGLING12")).is_err());
    assert!(!h.join(".tmp-create-dead").exists());
    assert!(!h.join(l2).join("tmpdiff-dead").exists());
    // And the chain still mounts.
    ok(&t, &["layer", "create-rw", "c", "--parent", l2]);
    let m = PathBuf::from(ok(&t, &["mount", "c"]).trim());
    assert_eq!(read(&m.join("etc/new")), "new\n");
    ok(&t, &["umount", "c"]);
}

/// What `docker diff` prints for `changes`, sorted.
fn diff_lines(changes: &[ovlink_driver::Change]) -> Vec<String> {
    let mut v: Vec<String> = changes
        .iter()
        .map(|c| format!("{} {}", c.kind.letter(), c.path))
        .collect();
    v.sort();
    v
}

#[test]
fn native_diff_changes_and_size_of_a_container_and_image_layers() {
    let t = test_root();
    let (base, l2) = two_layers(&t);
    let d = driver(&t);
    d.create_read_write("c", Some(l2), &CreateOpts::default())
        .unwrap();
    let m = d.get("c", None).unwrap();
    std::fs::write(m.join("etc/hl1"), b"changed!\n").unwrap();
    std::fs::remove_file(m.join("etc/conf")).unwrap();
    std::fs::remove_dir_all(m.join("data")).unwrap();
    std::fs::create_dir(m.join("data")).unwrap();
    std::fs::write(m.join("data/fresh"), b"f\n").unwrap();
    std::os::unix::fs::symlink("/etc/new", m.join("etc/newlink")).unwrap();
    std::fs::remove_file(m.join("etc/new")).unwrap(); // a file of the nearer lower (l2)
    d.put("c").unwrap();

    let changes = d.changes("c", Some(l2)).unwrap();
    assert_eq!(
        diff_lines(&changes),
        [
            "A /data/fresh",
            "A /etc/newlink",
            "C /data",
            "C /etc",
            "C /etc/hl1",
            "D /data/a",
            "D /data/b",
            "D /data/sub",
            "D /etc/conf",
            "D /etc/new",
        ]
    );
    // Docker's directory.Size of diff/: the changed file, the new file, the symlink.
    assert_eq!(
        d.diff_size("c", Some(l2)).unwrap(),
        9 + 2 + "/etc/new".len() as u64
    );

    // The diff applied on a fresh layer on the same parent gives the same view.
    let mut tar = Vec::new();
    d.diff("c", Some(l2), &mut tar).unwrap();
    d.create("copy", Some(l2), &CreateOpts::default()).unwrap();
    let applied = d.apply_diff("copy", Some(l2), &mut &tar[..]).unwrap();
    // ApplyDiff reports Docker's directory.Size of the new diff/ (its symlink counts too),
    // what DiffSize reports for it.
    assert_eq!(applied, d.diff_size("copy", Some(l2)).unwrap());
    assert_eq!(applied, 9 + 2 + "/etc/new".len() as u64);
    let a = d.get("c", None).unwrap();
    let b = d.get("copy", None).unwrap();
    let strip = |root: &Path| {
        manifest(root)
            .into_iter()
            .map(|(p, e)| (p, (e.kind, e.mode, e.uid, e.gid, e.sha256, e.target)))
            .collect::<std::collections::BTreeMap<_, _>>()
    };
    assert_eq!(strip(&a), strip(&b));
    d.put("copy").unwrap();
    d.put("c").unwrap();

    // Image layers: the bottom one whole, the second against it; the sizes of their tars.
    let mut tar = Vec::new();
    d.diff(base, None, &mut tar).unwrap();
    let names: Vec<String> = tar::Archive::new(&tar[..])
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
        .collect();
    assert!(names.contains(&"etc/conf".to_string()), "{names:?}");
    assert_eq!(
        diff_lines(&d.changes(l2, Some(base)).unwrap()),
        ["A /etc/new", "C /etc"]
    );
    assert_eq!(d.diff_size(l2, Some(base)).unwrap(), 4);
    // Against another parent: the naive diff (merged views by metadata); l2's file counts
    // as added, since base does not have it.
    let naive = diff_lines(&d.changes("c", Some(base)).unwrap());
    assert!(naive.contains(&"D /etc/conf".to_string()), "{naive:?}");
    assert!(!naive.iter().any(|l| l.ends_with(" /etc/new")), "{naive:?}");
    assert!(t.mounts().is_empty(), "{:?}", t.mounts());
}
