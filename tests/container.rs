//! Container semantics on real overlay mounts, the on-disk layout, reference counting,
//! crash leftovers, and error paths that must leave the home exactly as it was.

use crate::scenario;
use crate::util::*;
use ovlink_driver::Layout;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// The scenario's two layers (base <- l2) in the legacy layout.
fn two_layers(t: &TestRoot) -> (&'static str, &'static str) {
    scenario::two_layers(t, Layout::Overlay)
}

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
}

#[test]
fn layout_matches_the_legacy_driver() {
    let t = test_root();
    let (_, l2) = two_layers(&t);
    let h = t.home();
    assert_eq!(mode(&h), 0o710);
    assert_eq!(mode(&h.join("base")), 0o710);
    assert_eq!(mode(&h.join("base/root")), 0o755);
    // An image layer on a parent ends up as root/ only.
    let names: Vec<_> = std::fs::read_dir(h.join(l2))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("root")]);
    t.ok(&["layer", "create-rw", "c", "--parent", l2]);
    assert_eq!(
        std::fs::read(h.join("c/lower-id")).unwrap(),
        l2.as_bytes(),
        "no trailing newline"
    );
    assert_eq!(mode(&h.join("c/lower-id")), 0o600);
    assert_eq!(mode(&h.join("c/upper")), mode(&h.join("l2/root")));
    assert_eq!(mode(&h.join("c/work")), 0o700);
    assert!(!h.join("c/merged").exists());
    let merged = t.ok(&["mount", "c"]);
    assert_eq!(merged.trim(), h.join("c/merged").to_str().unwrap());
    assert_eq!(
        mode(&h.join("c/merged")),
        0o755,
        "the mounted root shows the lower root's mode"
    );
    let meta: serde_json::Value =
        serde_json::from_str(&t.ok(&["layer", "inspect", "c", "--json"])).unwrap();
    let data = &meta["graph_driver"]["data"];
    assert_eq!(data["LowerDir"], h.join("l2/root").to_str().unwrap());
    assert_eq!(data["UpperDir"], h.join("c/upper").to_str().unwrap());
    assert_eq!(data["WorkDir"], h.join("c/work").to_str().unwrap());
    assert_eq!(data["MergedDir"], h.join("c/merged").to_str().unwrap());
    let meta: serde_json::Value =
        serde_json::from_str(&t.ok(&["layer", "inspect", l2, "--json"])).unwrap();
    assert_eq!(
        meta["graph_driver"]["data"]["RootDir"],
        h.join("l2/root").to_str().unwrap()
    );
    t.ok(&["umount", "c"]);
    assert!(
        !h.join("c/merged").exists(),
        "merged/ exists only while mounted"
    );
    assert!(t.mounts().is_empty());
}

#[test]
fn image_layers_share_file_inodes_and_recreate_directories() {
    let t = test_root();
    two_layers(&t);
    let a = manifest(&t.home().join("base/root"));
    let b = manifest(&t.home().join("l2/root"));
    for (p, e) in &a {
        let f = &b[p];
        if e.kind == "dir" {
            assert_ne!(
                e.dev_ino, f.dev_ino,
                "{p}: directories are new inodes in every layer"
            );
            assert_eq!(
                (e.mode, e.uid, e.gid),
                (f.mode, f.uid, f.gid),
                "{p}: dir metadata kept"
            );
        } else {
            assert_eq!(
                e.dev_ino, f.dev_ino,
                "{p}: non-directories are hardlinks into the parent"
            );
        }
    }
    assert!(b.contains_key("etc/new") && !a.contains_key("etc/new"));
    assert_eq!(a["bin/tool"].mode, 0o4755);
    assert_eq!(
        a["etc/hl1"].dev_ino, a["etc/hl2"].dev_ino,
        "hardlinks inside the tar stay one inode"
    );
}

#[test]
fn container_on_container_copies_upper_init_pattern() {
    let t = test_root();
    let (_, l2) = two_layers(&t);
    t.ok(&["layer", "create-rw", "c-init", "--parent", l2]);
    let m = std::path::PathBuf::from(t.ok(&["mount", "c-init"]).trim());
    std::fs::write(m.join(".dockerenv"), b"").unwrap();
    std::fs::write(m.join("etc/hosts"), b"127.0.0.1 localhost\n").unwrap();
    std::fs::remove_file(m.join("etc/new")).unwrap();
    t.ok(&["umount", "c-init"]);
    t.ok(&["layer", "create-rw", "c", "--parent", "c-init"]);
    let h = t.home();
    assert_eq!(std::fs::read(h.join("c/lower-id")).unwrap(), l2.as_bytes());
    let init_up = manifest(&h.join("c-init/upper"));
    let c_up = manifest(&h.join("c/upper"));
    assert_eq!(
        init_up.keys().collect::<Vec<_>>(),
        c_up.keys().collect::<Vec<_>>()
    );
    for (p, e) in &init_up {
        let f = &c_up[p];
        assert_eq!(
            (e.kind, e.mode, e.uid, e.gid, &e.sha256, e.rdev),
            (f.kind, f.mode, f.uid, f.gid, &f.sha256, f.rdev),
            "{p}"
        );
        assert_ne!(e.dev_ino, f.dev_ino, "{p}: a full copy, not a hardlink");
    }
    let m = std::path::PathBuf::from(t.ok(&["mount", "c"]).trim());
    assert!(m.join(".dockerenv").exists());
    assert!(!m.join("etc/new").exists());
    assert_eq!(
        std::fs::read(m.join("etc/conf")).unwrap(),
        b"lower content\n"
    );
    t.ok(&["umount", "c"]);
}

#[test]
fn mounts_are_reference_counted() {
    use ovlink_driver::{CreateOpts, Driver, InitConfig};
    use ovlink_overlay::OverlayDriver;
    let t = test_root();
    let (_, l2) = two_layers(&t);
    let d = OverlayDriver::init(&InitConfig {
        home: t.home(),
        ..Default::default()
    })
    .unwrap();
    d.create_read_write("c", Some(l2), &CreateOpts::default())
        .unwrap();
    let p1 = d.get("c", None).unwrap();
    let p2 = d.get("c", None).unwrap();
    assert_eq!(p1, p2);
    assert_eq!(t.mounts().len(), 1, "mounted once");
    d.put("c").unwrap();
    assert_eq!(t.mounts().len(), 1, "still one user");
    // A second process sees the mount and returns the same path without mounting again.
    assert_eq!(t.ok(&["mount", "c"]).trim(), p1.to_str().unwrap());
    assert_eq!(t.mounts().len(), 1);
    d.put("c").unwrap();
    assert!(t.mounts().is_empty(), "the last put unmounts");
    assert!(!p1.exists());
    // Image layers: get returns root/ and mounts nothing.
    assert_eq!(d.get(l2, None).unwrap(), t.home().join(l2).join("root"));
    d.put(l2).unwrap();
    // A put from a fresh process unmounts what another process mounted.
    d.get("c", None).unwrap();
    t.ok(&["umount", "c"]);
    assert!(t.mounts().is_empty());
    // Remove unmounts first.
    d.get("c", None).unwrap();
    d.remove("c").unwrap();
    assert!(t.mounts().is_empty());
    assert!(!d.exists("c"));
}

/// Everything in the home, as (path, kind, mode, size) lines: a failed call must not change it.
fn snapshot(home: &Path) -> Vec<String> {
    let mut v: Vec<String> = manifest(home)
        .into_iter()
        .map(|(p, e)| format!("{p} {} {:o} {:?} {:?}", e.kind, e.mode, e.size, e.sha256))
        .collect();
    v.sort();
    v
}

#[test]
fn failed_calls_leave_the_home_as_it_was() {
    let t = test_root();
    let (_, l2) = two_layers(&t);
    t.ok(&["layer", "create-rw", "c", "--parent", l2]);
    let before = snapshot(&t.home());
    let escape = TarBuilder::new()
        .file("ok", 0o644, b"x")
        .raw_file("../escaped", b"x")
        .write_to(t.path(), "esc.tar");
    let corrupt = t.path().join("corrupt.tar");
    let mut bytes = TarBuilder::new().file("a", 0o644, &[7u8; 5000]).build();
    bytes.truncate(2048);
    std::fs::write(&corrupt, &bytes).unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["layer", "create", "base"], "already exists"),
        (
            vec!["layer", "create", "x", "--parent", "nope"],
            "does not exist",
        ),
        (vec!["layer", "create", "../x"], "invalid layer id"),
        (vec!["layer", "create", ""], "invalid layer id"),
        (vec!["layer", "create", "a/b"], "invalid layer id"),
        (vec!["layer", "create", ".."], "invalid layer id"),
        (
            vec!["layer", "create-rw", "y", "--parent", "../base"],
            "invalid layer id",
        ),
        (
            vec![
                "layer",
                "apply",
                "e",
                "--parent",
                l2,
                escape.to_str().unwrap(),
            ],
            "escaped",
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
        (vec!["layer", "rm", "nope"], "does not exist"),
        (vec!["mount", "nope"], "does not exist"),
        (vec!["layer", "inspect", "nope"], "does not exist"),
    ];
    let long = "a".repeat(200);
    let mut cases = cases;
    cases.push((vec!["layer", "create", long.as_str()], "longer than"));
    for (args, needle) in &cases {
        let err = t.fails(args);
        assert!(err.contains(needle), "ovlink {args:?}: {err}");
        assert_eq!(
            snapshot(&t.home()),
            before,
            "ovlink {args:?} changed the home"
        );
    }
    assert!(std::fs::read_dir(t.path())
        .unwrap()
        .all(|e| e.unwrap().file_name() != "escaped"));
}

#[test]
fn init_reaps_what_a_crashed_process_left() {
    let t = test_root();
    let (_, l2) = two_layers(&t);
    let h = t.home();
    // A crashed create, a crashed remove, and a crashed apply's temporary root.
    std::fs::create_dir_all(h.join(".tmp-create-dead/root")).unwrap();
    std::fs::create_dir_all(h.join(".tmp-remove-dead/root/etc")).unwrap();
    std::fs::create_dir_all(h.join(l2).join("tmproot1234/etc")).unwrap();
    // An apply that crashed after renaming root/ into place, before dropping the rest.
    t.ok(&["layer", "create", "half", "--parent", l2]);
    std::fs::create_dir(h.join("half/root")).unwrap();
    t.ok(&["layer", "ls"]);
    let names: Vec<_> = std::fs::read_dir(&h)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(names.iter().all(|n| !n.starts_with(".tmp-")), "{names:?}");
    assert!(!h.join(l2).join("tmproot1234").exists());
    let half: Vec<_> = std::fs::read_dir(h.join("half"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(half, vec![std::ffi::OsString::from("root")]);
}

#[test]
fn layer_rm_background_is_gone_at_once_and_reclaimed_later() {
    let t = test_root();
    let (base, l2) = two_layers(&t);
    let h = t.home();
    let log = t.path().join("rm.strace");
    {
        // strace -f follows the detached reclaimer (and waits for it).
        let strace = ["strace", "-f", "-qq", "-e", "trace=execve", "-o"];
        let mut w: Vec<std::ffi::OsString> = strace.iter().map(Into::into).collect();
        w.push(log.clone().into());
        let _w = run_ovlink_under(w);
        t.ok(&["layer", "rm", "--background", l2]);
    }
    // The tree was handed over to `ovlink layer reclaim --name … --lock-fd N` (the fallback,
    // deleting it in this process when no reclaimer can start, runs no such command).
    let trace = std::fs::read_to_string(&log).unwrap();
    assert!(
        trace.contains("\"layer\", \"reclaim\", \"--name\"") && trace.contains("\"--lock-fd\""),
        "no hand-over to a reclaimer:\n{trace}"
    );
    assert!(!h.join(l2).exists());
    assert!(!t.ok(&["layer", "ls"]).contains(l2));
    let trash = || {
        std::fs::read_dir(&h)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.starts_with(".tmp-remove-"))
            .count()
    };
    // The detached reclaimer deletes the tree; give it time on a loaded machine.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while trash() > 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(trash(), 0);
    // A trash left by a dead process: `layer reclaim` deletes it; the base layer is intact.
    std::fs::create_dir_all(h.join(".tmp-remove-dead/root/etc")).unwrap();
    t.ok(&["layer", "reclaim"]);
    assert_eq!(trash(), 0);
    assert!(h.join(base).join("root").is_dir());
}

#[test]
fn concurrent_creates_of_one_id_make_exactly_one_layer() {
    let t = test_root();
    let (_, l2) = two_layers(&t);
    let root = t.root();
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let root = root.clone();
            std::thread::spawn(move || {
                ovlink_cmd(&root, &["layer", "create-rw", "same", "--parent", l2])
                    .output()
                    .unwrap()
            })
        })
        .collect();
    let outs: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(outs.iter().filter(|o| o.status.success()).count(), 1);
    for o in outs.iter().filter(|o| !o.status.success()) {
        assert!(String::from_utf8_lossy(&o.stderr).contains("already exists"));
    }
    let names: Vec<_> = std::fs::read_dir(t.home())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(names.iter().all(|n| !n.starts_with(".tmp-")), "{names:?}");
}

#[test]
fn apply_onto_a_layer_whose_parent_is_a_container_goes_through_the_mount() {
    // Docker's fallback: the parent has no root/, so the diff is applied through merged/.
    // This once deadlocked on the layer's own lock; a watchdog turns a hang into a failure.
    let t = test_root();
    let (_, l2) = two_layers(&t);
    t.ok(&["layer", "create-rw", "c", "--parent", l2]);
    t.ok(&["layer", "create-rw", "d", "--parent", "c"]);
    let tar = TarBuilder::new()
        .file("etc/applied", 0o644, b"through the mount\n")
        .write_to(t.path(), "d.tar");
    let mut child = ovlink_cmd(
        &t.root(),
        &[
            "layer",
            "apply",
            "d",
            "--parent",
            "c",
            tar.to_str().unwrap(),
        ],
    )
    .env("TMPDIR", t.tmp())
    .spawn()
    .unwrap();
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if started.elapsed() > std::time::Duration::from_secs(60) {
            let _ = child.kill();
            panic!("layer apply through the mount hung");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert!(status.success());
    assert_eq!(
        std::fs::read(t.home().join("d/upper/etc/applied")).unwrap(),
        b"through the mount\n"
    );
    assert!(t.mounts().is_empty(), "the temporary mount is gone");
    let m = std::path::PathBuf::from(t.ok(&["mount", "d"]).trim());
    assert_eq!(
        std::fs::read(m.join("etc/conf")).unwrap(),
        b"lower content\n"
    );
    t.ok(&["umount", "d"]);
}
