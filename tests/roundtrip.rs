//! The round trip of issue 3 through the command line, on the real Docker fixture, run for
//! both layouts (`--driver overlay` and `--driver overlay2`): import → container → the
//! fixture's scenario through the mount → `changes` equals Docker's own `docker diff`
//! (fx-container.diff) → commit → save → import into a fresh root → every layer's tree is the
//! same (types, modes, owners, contents, link targets, devices, xattrs, hardlink groups), the
//! image (so every layer digest) is the same, saving it again from the fresh root gives the
//! same archive, and a container there sees the committed change.

use crate::scenario::{cli, Layer};
use crate::util::*;
use ovlink_driver::Layout;
use std::collections::BTreeMap;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// The commands of the fixture README, done through the merged dir.
fn fixture_scenario(m: &Path) {
    std::fs::write(m.join("app/hello.txt"), b"changed\n").unwrap();
    std::fs::remove_file(m.join("app/big.bin")).unwrap();
    std::fs::remove_dir_all(m.join("opt/moved")).unwrap();
    std::fs::create_dir_all(m.join("opt/moved")).unwrap();
    std::fs::write(m.join("opt/moved/x"), b"fresh\n").unwrap();
    std::fs::write(m.join("root/new"), b"newfile\n").unwrap();
    std::fs::remove_file(m.join("bin/ls")).unwrap();
    std::os::unix::fs::symlink("/etc/motd", m.join("root/motdlink")).unwrap();
    std::fs::create_dir(m.join("app/empty/sub")).unwrap();
}

/// The config of a `docker save` archive: (its digest, from its name in manifest.json; it).
fn saved_config(saved: &Path) -> (String, serde_json::Value) {
    let mut members: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    let mut ar = tar::Archive::new(std::fs::File::open(saved).unwrap());
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let name = e.path().unwrap().to_string_lossy().into_owned();
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut v).unwrap();
        members.insert(name, v);
    }
    let manifest: serde_json::Value = serde_json::from_slice(&members["manifest.json"]).unwrap();
    let name = manifest[0]["Config"].as_str().unwrap().to_string();
    let config = serde_json::from_slice(&members[&name]).unwrap();
    (name.trim_end_matches(".json").to_string(), config)
}

/// A layer tree without inode numbers: path -> (kind, mode, uid, gid, sha256, target, rdev,
/// xattrs, hardlink group as the first path of the group).
fn comparable(root: &Path) -> BTreeMap<String, String> {
    let m = manifest(root);
    let mut first: BTreeMap<(u64, u64), String> = BTreeMap::new();
    for (p, e) in &m {
        first.entry(e.dev_ino).or_insert_with(|| p.clone());
    }
    m.iter()
        .map(|(p, e)| {
            let group = if e.kind == "file" {
                first[&e.dev_ino].clone()
            } else {
                String::new()
            };
            (
                p.clone(),
                format!(
                    "{} {:o} {} {} {:?} {:?} {:?} {:?} {group}",
                    e.kind, e.mode, e.uid, e.gid, e.sha256, e.target, e.rdev, e.xattrs
                ),
            )
        })
        .collect()
}

#[test]
fn changes_commit_save_import_round_trip_overlay() {
    round_trip(Layout::Overlay);
}

#[test]
fn changes_commit_save_import_round_trip_overlay2() {
    round_trip(Layout::Overlay2);
}

fn round_trip(layout: Layout) {
    let t = test_root();
    let ok = |args: &[&str]| t.ok(&cli(layout, args));
    ok(&[
        "image",
        "import",
        fixture("fx-layers.tar").to_str().unwrap(),
    ]);
    let cid = ok(&["container", "create", "c1", "--image", "fx:layers"])
        .trim()
        .to_string();
    let merged = PathBuf::from(ok(&["mount", &cid]).trim());
    fixture_scenario(&merged);
    // Docker's own `docker diff` of the same scenario (built-in legacy overlay driver).
    let changes = ok(&["changes", &cid]);
    assert_eq!(
        changes,
        std::fs::read_to_string(fixture("fx-container.diff")).unwrap()
    );
    let json: serde_json::Value = serde_json::from_str(&ok(&["changes", &cid, "--json"])).unwrap();
    assert!(json
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["path"] == "/app/big.bin" && c["kind"] == 2));
    assert_eq!(
        ok(&["diff-size", &cid]).trim(),
        "31",
        "Docker's ChangesSize: changed\\n + fresh\\n + newfile\\n + the symlink /etc/motd"
    );
    ok(&["umount", &cid]);

    // Commit: a new image layer on top of the image's top layer.
    ok(&["container", "commit", "c1", "--name", "fx:committed"]);
    let images: serde_json::Value = serde_json::from_str(&ok(&["image", "ls", "--json"])).unwrap();
    let committed = images
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == "fx:committed")
        .unwrap()
        .clone();
    let layers: Vec<String> = committed["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap().to_string())
        .collect();
    assert_eq!(layers.len(), 5);
    let top = layout.tree(&t.root(), &layers[4]);
    let below = layout.tree(&t.root(), &layers[3]);
    assert_eq!(
        std::fs::read(top.join("app/hello.txt")).unwrap(),
        b"changed\n"
    );
    assert_eq!(
        std::fs::read_link(top.join("root/motdlink")).unwrap(),
        Path::new("/etc/motd")
    );
    let is_whiteout = |p: &Path| {
        std::fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_char_device() && m.rdev() == 0)
    };
    match layout {
        Layout::Overlay => {
            // A proper hardlinked image layer: the whole tree, unchanged files linked.
            assert!(!top.join("app/big.bin").exists() && !top.join("bin/ls").exists());
            let ino = |p: &Path| std::fs::symlink_metadata(p).unwrap().ino();
            assert_eq!(
                ino(&top.join("bin/busybox")),
                ino(&below.join("bin/busybox")),
                "unchanged files are hardlinks"
            );
        }
        Layout::Overlay2 => {
            // The layer's own diff/: the changes only, deletions as overlay whiteouts.
            assert!(
                is_whiteout(&top.join("app/big.bin")),
                "app/big.bin whiteout"
            );
            assert!(is_whiteout(&top.join("bin/ls")), "bin/ls whiteout");
            assert!(
                !top.join("bin/busybox").exists(),
                "unchanged files stay below"
            );
        }
    }
    // The history records the commit (the config is stored once per id, not in the
    // listing).
    let id = committed["id"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:");
    let config: serde_json::Value = serde_json::from_slice(
        &std::fs::read(t.root().join(format!("configs/{id}.json"))).unwrap(),
    )
    .unwrap();
    assert!(
        config["history"].as_array().unwrap().last().unwrap()["created_by"]
            .as_str()
            .unwrap()
            .contains("commit")
    );

    // Save, then import into a fresh root: the same trees, layer by layer.
    let saved = t.path().join("saved.tar");
    ok(&[
        "image",
        "save",
        "fx:committed",
        "-o",
        saved.to_str().unwrap(),
    ]);
    let other = t.path().join("other");
    let in_other = |args: &[&str]| t.ok_in(&other, &cli(layout, args));
    let ids2: Vec<String> = in_other(&["image", "import", saved.to_str().unwrap()])
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(ids2.len(), 5);
    for (i, (a, b)) in layers.iter().zip(&ids2).enumerate() {
        let ta = comparable(&layout.tree(&t.root(), a));
        let tb = comparable(&layout.tree(&other, b));
        assert_eq!(ta, tb, "layer {i} differs after save + import");
    }
    // The same image: the same config, so the same layer digests (diff_ids) in order.
    let images2: serde_json::Value =
        serde_json::from_str(&in_other(&["image", "ls", "--json"])).unwrap();
    let reimported = images2
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == "fx:committed")
        .unwrap_or_else(|| panic!("fx:committed in {images2}"));
    let (saved_id, saved_config) = saved_config(&saved);
    assert_eq!(
        reimported["id"].as_str().unwrap(),
        format!("sha256:{saved_id}"),
        "the image re-imported is the one saved (its config, so its layer digests)"
    );
    let diff_ids = |c: &serde_json::Value| c["rootfs"]["diff_ids"].as_array().unwrap().clone();
    assert_eq!(diff_ids(&saved_config).len(), 5);
    assert_eq!(saved_config["history"], config["history"], "history kept");
    assert_eq!(reimported["layers"].as_array().unwrap().len(), 5);
    // Saved again from the fresh root: the same archive, byte for byte (every layer.tar
    // regenerated from the re-imported layers has the same digest).
    let resaved = t.path().join("resaved.tar");
    in_other(&[
        "image",
        "save",
        "fx:committed",
        "-o",
        resaved.to_str().unwrap(),
    ]);
    assert_eq!(
        sha256_file(&saved),
        sha256_file(&resaved),
        "the re-imported image saves to the same archive"
    );
    // A container on the re-imported image sees the committed change.
    let cid2 = in_other(&["container", "create", "c2", "--image", "fx:committed"])
        .trim()
        .to_string();
    let m2 = PathBuf::from(in_other(&["mount", &cid2]).trim());
    assert_eq!(
        std::fs::read(m2.join("app/hello.txt")).unwrap(),
        b"changed\n"
    );
    assert_eq!(std::fs::read(m2.join("opt/moved/x")).unwrap(), b"fresh\n");
    assert!(!m2.join("app/big.bin").exists() && !m2.join("bin/ls").exists());
    assert!(
        !m2.join("opt/moved/a").exists(),
        "the opaque directory stays opaque"
    );
    assert_eq!(
        in_other(&["changes", &cid2]),
        "",
        "a fresh container changed nothing"
    );
    in_other(&["umount", &cid2]);
    // The saved archive is in Docker's format: manifest with the tag, one layer.tar per layer.
    let mut ar = tar::Archive::new(std::fs::File::open(&saved).unwrap());
    let mut manifest = None;
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        if e.path().unwrap() == Path::new("manifest.json") {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut e, &mut s).unwrap();
            manifest = Some(s);
        }
    }
    let manifest: serde_json::Value = serde_json::from_str(&manifest.unwrap()).unwrap();
    assert_eq!(manifest[0]["RepoTags"][0], "fx:committed");
    assert_eq!(manifest[0]["Layers"].as_array().unwrap().len(), 5);
    // Saving again gives the same archive digest-wise (layers regenerated deterministically).
    let again = t.path().join("again.tar");
    ok(&[
        "image",
        "save",
        "fx:committed",
        "-o",
        again.to_str().unwrap(),
    ]);
    assert_eq!(
        sha256_file(&saved),
        sha256_file(&again),
        "save is deterministic"
    );
}

/// overlay2: a diff of a layer against its own parent (what `image save` does for every
/// layer) reads the parent through a read-only view: the kernel is never given an image
/// layer's `diff/` as an upper dir, so no `trusted.overlay.uuid`/`impure`/`origin` appears in
/// image layers (kernel 6.x wrote them when the parent was mounted read-write).
#[test]
fn overlay2_diff_leaves_image_layers_unchanged() {
    let layout = Layout::Overlay2;
    let t = test_root();
    let ok = |args: &[&str]| t.ok(&cli(layout, args));
    let ids: Vec<String> = ok(&[
        "image",
        "import",
        fixture("fx-layers.tar").to_str().unwrap(),
    ])
    .lines()
    .map(str::to_string)
    .collect();
    let trees: Vec<_> = ids.iter().map(|id| layout.tree(&t.root(), id)).collect();
    let before = manifests(&trees);
    let out = t.path().join("top.tar");
    ok(&["diff", &ids[3], "-o", out.to_str().unwrap()]);
    assert_eq!(manifests(&trees), before, "a diff changed image layers");
    assert!(t.mounts().is_empty());
}
