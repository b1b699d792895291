//! The round trip of issue 3 through the command line, on the real Docker fixture:
//! import → container → the fixture's scenario through the mount → `changes` equals Docker's
//! own `docker diff` (fx-container.diff) → commit → save → import into a fresh root → every
//! layer's tree is the same (types, modes, owners, contents, link targets, devices, xattrs,
//! hardlink groups).

use crate::util::*;
use std::collections::BTreeMap;
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
fn changes_commit_save_import_round_trip() {
    let t = TestRoot::new();
    t.ok(&[
        "image",
        "import",
        fixture("fx-layers.tar").to_str().unwrap(),
    ]);
    let cid = t
        .ok(&["container", "create", "c1", "--image", "fx:layers"])
        .trim()
        .to_string();
    let merged = PathBuf::from(t.ok(&["mount", &cid]).trim());
    fixture_scenario(&merged);
    // Docker's own `docker diff` of the same scenario (built-in legacy overlay driver).
    let changes = t.ok(&["changes", &cid]);
    assert_eq!(
        changes,
        std::fs::read_to_string(fixture("fx-container.diff")).unwrap()
    );
    let json: serde_json::Value =
        serde_json::from_str(&t.ok(&["changes", &cid, "--json"])).unwrap();
    assert!(json
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["path"] == "/app/big.bin" && c["kind"] == 2));
    assert_eq!(
        t.ok(&["diff-size", &cid]).trim(),
        "31",
        "Docker's ChangesSize: changed\\n + fresh\\n + newfile\\n + the symlink /etc/motd"
    );
    t.ok(&["umount", &cid]);

    // Commit: a proper hardlinked image layer on top of the image's top layer.
    t.ok(&["container", "commit", "c1", "--name", "fx:committed"]);
    let images: serde_json::Value =
        serde_json::from_str(&t.ok(&["image", "ls", "--json"])).unwrap();
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
    let top = t.home().join(&layers[4]).join("root");
    let below = t.home().join(&layers[3]).join("root");
    assert_eq!(
        std::fs::read(top.join("app/hello.txt")).unwrap(),
        b"changed\n"
    );
    assert!(!top.join("app/big.bin").exists() && !top.join("bin/ls").exists());
    assert_eq!(
        std::fs::read_link(top.join("root/motdlink")).unwrap(),
        Path::new("/etc/motd")
    );
    use std::os::unix::fs::MetadataExt;
    let ino = |p: &Path| std::fs::symlink_metadata(p).unwrap().ino();
    assert_eq!(
        ino(&top.join("bin/busybox")),
        ino(&below.join("bin/busybox")),
        "unchanged files are hardlinks"
    );
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
    t.ok(&[
        "image",
        "save",
        "fx:committed",
        "-o",
        saved.to_str().unwrap(),
    ]);
    let other = t.path().join("other");
    let out = ovlink_cmd(&other, &["image", "import", saved.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ids2: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(ids2.len(), 5);
    for (i, (a, b)) in layers.iter().zip(&ids2).enumerate() {
        let ta = comparable(&t.home().join(a).join("root"));
        let tb = comparable(&other.join("overlay").join(b).join("root"));
        assert_eq!(ta, tb, "layer {i} differs after save + import");
    }
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
    t.ok(&[
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
