//! `ovlink demo`, the README's first command: it must run on the built-in image and on a real
//! docker-save tarball, show each demonstration, and leave no mount and no directory behind.

use crate::util::*;
use std::path::Path;

fn run_demo(t: &TestRoot, extra: &[&str]) -> String {
    let tmp = t.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let out = ovlink_cmd(&t.root(), &[&["demo"], extra].concat())
        .env("TMPDIR", &tmp)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "demo failed: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(mounts_under(&tmp).is_empty(), "the demo left mounts");
    assert_eq!(
        std::fs::read_dir(&tmp).unwrap().count(),
        0,
        "the demo left files in TMPDIR"
    );
    stdout
}

fn assert_story(out: &str) {
    for needle in [
        "holds: root",
        "same file, same inode in every layer",
        "lower-id",
        "upper",
        "work",
        "LowerDir:",
        "a full copy",
        "character device 0,0",
        "trusted.overlay.opaque=\"y\"",
        "Invalid cross-device link",
        "identical before and after (types, modes, owners, contents, inodes): true",
    ] {
        assert!(out.contains(needle), "demo output lacks {needle:?}:\n{out}");
    }
}

#[test]
fn demo_on_the_generated_image() {
    let t = test_root();
    let out = run_demo(&t, &[]);
    assert_story(&out);
    assert!(out.contains("generated a deterministic docker-save image"));
}

#[test]
fn demo_on_a_real_docker_save_tarball() {
    let t = test_root();
    let fx = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fx-layers.tar");
    let out = run_demo(&t, &["--image", fx.to_str().unwrap()]);
    assert_story(&out);
    assert!(out.contains("/app/hello.txt"), "{out}");
}

#[test]
fn demo_on_overlay2_shows_several_lowerdirs_links_and_the_lower_file() {
    let t = test_root();
    let tmp = t.tmp();
    let out = ovlink_cmd(&t.root(), &["--driver", "overlay2", "demo", "--json"])
        .env("TMPDIR", &tmp)
        .output()
        .unwrap();
    let narration = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{narration}");
    assert!(mounts_under(t.path()).is_empty(), "the demo left mounts");
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["layout"], "overlay2");
    let layers = r["layers"].as_array().unwrap().len();
    assert!(layers >= 2, "{r}");
    let lowers = r["lowerdirs"].as_array().unwrap();
    assert_eq!(lowers.len(), layers, "one lowerdir per image layer: {r}");
    assert!(
        lowers.iter().all(|l| l.as_str().unwrap().contains("/l/")),
        "{r}"
    );
    assert_eq!(r["short_links"].as_array().unwrap().len(), layers);
    let lower_file = r["lower_file"].as_str().unwrap();
    assert_eq!(lower_file.split(':').count(), layers, "{lower_file}");
    assert!(
        lower_file.split(':').all(|l| l.starts_with("l/")),
        "{lower_file}"
    );
    assert_eq!(r["whiteout"], serde_json::json!(["character device", 0, 0]));
    assert_eq!(r["opaque"], "y");
    assert_eq!(
        r["copy_up"][1].as_u64().unwrap(),
        r["copy_up"][0].as_u64().unwrap() + 1
    );
    assert_eq!(r["lower_unchanged"], true);
    for needle in [
        "holds: diff link",
        "cat lower",
        "lowerdirs in the mount",
        "LowerDir:",
    ] {
        assert!(narration.contains(needle), "lacks {needle:?}:\n{narration}");
    }
    // The legacy layout, by contrast, mounts exactly one lowerdir.
    let out = ovlink_cmd(&t.root(), &["demo", "--json"])
        .env("TMPDIR", &tmp)
        .output()
        .unwrap();
    assert!(out.status.success());
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["lowerdirs"].as_array().unwrap().len(), 1, "{r}");
}

#[test]
fn demo_works_inside_the_given_root() {
    let t = test_root();
    let md = t.path().join("demo.md");
    let out = t.ok(&[
        "demo",
        "--keep",
        "--json",
        "--markdown",
        md.to_str().unwrap(),
    ]);
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    let kept = std::path::PathBuf::from(r["kept"].as_str().unwrap());
    assert!(kept.starts_with(t.root()), "{kept:?} is not inside --root");
    assert!(kept.join("root/overlay").is_dir());
    assert!(
        t.mounts().is_empty(),
        "the demo left mounts: {:?}",
        t.mounts()
    );
    let sheet = std::fs::read_to_string(&md).unwrap();
    assert!(
        sheet.contains("# ovlink demo: Docker's legacy overlay driver"),
        "{sheet}"
    );
    assert!(sheet.contains("## 7. delete"), "{sheet}");
}
