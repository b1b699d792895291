//! Init checks on real filesystems: a backing filesystem the legacy driver refuses (btrfs, an
//! overlay mount), a filesystem without d_type (ext4 made with `-O ^filetype`), and unknown
//! options. Each refusal names the cause and the fix, and leaves nothing behind.

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
