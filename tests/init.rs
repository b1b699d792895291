//! Init checks on real filesystems: a backing filesystem the legacy driver refuses (btrfs, an
//! overlay mount), a filesystem without d_type (ext4 made with `-O ^filetype`), and unknown
//! options. Each refusal names the cause and the fix, and leaves nothing behind. And `check`
//! reports what a container does in a test mount of each layout (its `container operations`
//! line; a failing one, simulated with strace, is in `oldkernel.rs`).

use crate::util::*;
use ovlink_driver::InitConfig;
use ovlink_overlay::OverlayDriver;
use std::path::Path;
use std::process::Command;

fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

#[test]
fn refuses_btrfs_and_leaves_nothing() {
    let t = test_root();
    let fs = LoopFs::new(t.path(), 200, &["mkfs.btrfs", "-q", "-f"]);
    let before = entries(&fs.mnt);
    let err = ovlink_cmd(&fs.mnt.join("root"), &["status"])
        .output()
        .unwrap();
    assert!(!err.status.success());
    let msg = String::from_utf8_lossy(&err.stderr);
    assert!(msg.contains("btrfs") && msg.contains("--root"), "{msg}");
    assert!(
        msg.contains(fs.mnt.join("root/overlay").to_str().unwrap()),
        "names the home: {msg}"
    );
    assert_eq!(entries(&fs.mnt), before, "nothing created");
}

#[test]
fn refuses_a_home_inside_an_overlay_mount() {
    let t = test_root();
    let p = t.path();
    for d in ["l", "u", "w", "m"] {
        std::fs::create_dir(p.join(d)).unwrap();
    }
    let opts = format!(
        "lowerdir={},upperdir={},workdir={}",
        p.join("l").display(),
        p.join("u").display(),
        p.join("w").display()
    );
    let st = Command::new("mount")
        .args(["-t", "overlay", "overlay", "-o", &opts])
        .arg(p.join("m"))
        .status()
        .unwrap();
    assert!(st.success());
    let out = ovlink_cmd(&p.join("m/root"), &["status"]).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("overlayfs"));
    assert!(entries(&p.join("m")).is_empty());
}

#[test]
fn refuses_a_new_home_without_d_type() {
    let t = test_root();
    let fs = LoopFs::new(t.path(), 32, &["mkfs.ext4", "-q", "-F", "-O", "^filetype"]);
    let before = entries(&fs.mnt);
    let out = ovlink_cmd(&fs.mnt.join("root"), &["layer", "ls"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let msg = String::from_utf8_lossy(&out.stderr);
    assert!(
        msg.contains("d_type") && msg.contains("mkfs.ext4 -O filetype"),
        "{msg}"
    );
    assert_eq!(entries(&fs.mnt), before, "nothing created");
    let check = ovlink_cmd(&fs.mnt.join("root"), &["check"])
        .output()
        .unwrap();
    assert!(!check.status.success());
    assert!(String::from_utf8_lossy(&check.stdout).contains("FAIL"));
}

#[test]
fn refuses_unknown_options() {
    let t = test_root();
    let err = OverlayDriver::init(&InitConfig {
        home: t.home(),
        options: vec!["overlay.size=10G".into()],
        ..Default::default()
    })
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("unknown option \"overlay.size=10G\""),
        "{err}"
    );
    assert!(!t.home().exists());
}

/// On this host (a 6.x kernel, the test root on ext4) `check` does what a container does in a
/// test mount of each layout's home (create, copy-up, delete of a lower file and directory,
/// opaque re-create, rename) and reports it: an `ok` `container operations` line needed by both
/// layouts, in the text and in `--json`; the probes leave no mount and no `.tmp-*` behind.
#[test]
fn privileged_check_reports_container_operations_for_both_layouts() {
    let t = test_root();
    for driver in ["overlay", "overlay2"] {
        let home = t.root().join(driver);
        let text = t.ok(&["--driver", driver, "check"]);
        let l = text
            .lines()
            .find(|l| l.contains("container operations"))
            .unwrap_or_else(|| panic!("{driver}: no container operations line:\n{text}"));
        assert!(
            l.starts_with("ok   container operations overlay,overlay2  create, write, copy-up"),
            "{l}"
        );
        assert!(
            l.contains(&format!("all worked in a test mount in {}", home.display())),
            "{l}"
        );
        let json: serde_json::Value =
            serde_json::from_str(&t.ok(&["--driver", driver, "check", "--json"])).unwrap();
        let l = json
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["check"] == "container operations")
            .unwrap_or_else(|| panic!("{driver}: no container operations line: {json:#}"));
        assert_eq!(l["status"], "ok", "{l}");
        assert_eq!(l["ok"], true, "{l}");
        assert_eq!(
            l["needed_by"],
            serde_json::json!(["overlay", "overlay2"]),
            "{l}"
        );
        let detail = l["detail"].as_str().unwrap();
        assert!(
            detail.contains("delete of a lower file and a lower directory, opaque re-create"),
            "{detail}"
        );
        assert!(l.get("fix").is_none(), "{l}");
        let left: Vec<String> = entries(&home)
            .into_iter()
            .filter(|n| n.starts_with(".tmp-"))
            .collect();
        assert!(left.is_empty(), "{driver}: left {left:?}");
        assert!(t.mounts().is_empty(), "{driver}: left {:?}", t.mounts());
    }
}
