//! What belongs to a layout: images imported with one layout are listed and usable only with
//! it, and overlay2's `status` computes `Native Overlay Diff` as Docker does (a real mount).

use crate::util::*;
use std::path::Path;

fn fx() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/fx-layers.tar")
        .display()
        .to_string()
}

#[test]
fn images_are_listed_and_used_per_layout() {
    let t = test_root();
    t.ok(&["image", "import", &fx(), "--name", "legacy"]);
    assert!(t.ok(&["image", "ls"]).contains("legacy"));
    let ls2 = t.ok(&["--driver", "overlay2", "image", "ls"]);
    assert!(
        !ls2.contains("legacy"),
        "overlay2 lists a legacy image:\n{ls2}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&t.ok(&["--driver", "overlay2", "image", "ls", "--json"])).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 0, "{json}");
    // A container on it in overlay2 is refused, naming the layout, and leaves nothing.
    let err = t.fails(&[
        "--driver",
        "overlay2",
        "container",
        "create",
        "c1",
        "--image",
        "legacy",
    ]);
    assert!(
        err.contains("image legacy belongs to the overlay layout")
            && err.contains("--driver overlay2"),
        "{err}"
    );
    assert!(!err.contains("does not exist"), "{err}");
    assert!(t.ok(&["container", "ls"]).lines().count() <= 1);
    // The same name imported with overlay2 is a second image, overlay2's; the legacy one stays.
    t.ok(&[
        "--driver",
        "overlay2",
        "image",
        "import",
        &fx(),
        "--name",
        "legacy",
    ]);
    assert!(t.ok(&["image", "ls"]).contains("legacy"));
    assert!(t
        .ok(&["--driver", "overlay2", "image", "ls"])
        .contains("legacy"));
    t.ok(&[
        "--driver",
        "overlay2",
        "container",
        "create",
        "c0",
        "--image",
        "legacy",
    ]);
    // The same tarball imported with overlay2 is overlay2's.
    t.ok(&[
        "--driver",
        "overlay2",
        "image",
        "import",
        &fx(),
        "--name",
        "new",
    ]);
    let ls2 = t.ok(&["--driver", "overlay2", "image", "ls"]);
    assert!(ls2.contains("new"), "{ls2}");
    assert!(!t.ok(&["image", "ls"]).contains("new"));
    t.ok(&[
        "--driver",
        "overlay2",
        "container",
        "create",
        "c2",
        "--image",
        "new",
    ]);
    let err = t.fails(&[
        "image",
        "save",
        "new",
        "-o",
        t.path().join("x.tar").to_str().unwrap(),
    ]);
    assert!(err.contains("belongs to the overlay2 layout"), "{err}");
}

/// `status --json` of the overlay2 home (made first: status only reads a home).
fn status(t: &TestRoot) -> serde_json::Value {
    t.ok(&["--driver", "overlay2", "layer", "create", "status-probe"]);
    serde_json::from_str(&t.ok(&["--driver", "overlay2", "status", "--json"])).unwrap()
}

#[test]
fn native_overlay_diff_is_computed_as_docker_does() {
    let t = test_root();
    let st = status(&t);
    let native = st["native_overlay_diff"]
        .as_str()
        .expect("status has native_overlay_diff")
        .to_string();
    // Docker's check mounts with the kernel's defaults: redirect_dir on by default makes the
    // rename succeed and leave a redirect, so Docker uses the naive diff.
    let redirect_default =
        std::fs::read_to_string("/sys/module/overlay/parameters/redirect_dir").unwrap_or_default();
    let expect = !matches!(redirect_default.trim(), "Y" | "y" | "1" | "on");
    assert_eq!(native, expect.to_string(), "{st:?}");
    // The check itself, with redirect_dir forced each way on a real mount.
    let d = ovlink_overlay2::Overlay2Driver::init(&ovlink_driver::InitConfig {
        home: t.root().join("overlay2"),
        ..Default::default()
    })
    .unwrap();
    use ovlink_overlay2::nativediff::NativeDiff;
    assert_eq!(
        d.native_diff(&["redirect_dir=off"]).unwrap(),
        NativeDiff::Native
    );
    assert_eq!(
        d.native_diff(&["redirect_dir=on"]).unwrap(),
        NativeDiff::Naive("kernel has CONFIG_OVERLAY_FS_REDIRECT_DIR enabled".into())
    );
    // Nothing of the check stays in the home, and nothing stays mounted.
    let left: Vec<_> = std::fs::read_dir(t.root().join("overlay2"))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name())
        .filter(|n| n != "l" && n != "status-probe")
        .collect();
    assert!(left.is_empty(), "{left:?}");
    assert!(t.mounts().is_empty());
}
