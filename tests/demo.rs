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
    let t = TestRoot::new();
    let out = run_demo(&t, &[]);
    assert_story(&out);
    assert!(out.contains("generated a deterministic docker-save image"));
}

#[test]
fn demo_on_a_real_docker_save_tarball() {
    let t = TestRoot::new();
    let fx = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fx-layers.tar");
    let out = run_demo(&t, &["--image", fx.to_str().unwrap()]);
    assert_story(&out);
    assert!(out.contains("/app/hello.txt"), "{out}");
}
