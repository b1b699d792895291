//! Conformance with Docker 20.10's legacy overlay driver: import the real `docker save`
//! tarball `fx-layers.tar` and compare every layer's `root/` with `golden-fx.json`, the tree
//! that dockerd built from the same tarball (see `scripts/layout-manifest.py` for the fields).
//! With the default `--symlinks link` the one accepted difference is that symlinks and
//! special files may share their parent's inode (ovlink hardlinks them instead of
//! re-creating them); with `--symlinks copy` there is no exception: every field, link group,
//! sharing flag and the inode total equal Docker's.

use crate::util::*;
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// The manifest of `scripts/layout-manifest.py`, in Rust: one JSON object per layer root.
fn layout_manifest(roots: &[PathBuf]) -> (Vec<Map<String, Value>>, usize) {
    let mut all = std::collections::HashSet::new();
    let mut parent: HashMap<String, (u64, u64)> = HashMap::new();
    let mut layers = Vec::new();
    for root in roots {
        let m = manifest(root);
        let mut first: HashMap<(u64, u64), String> = HashMap::new();
        for (p, e) in &m {
            first.entry(e.dev_ino).or_insert_with(|| p.clone());
        }
        let mut entries = Map::new();
        for (p, e) in &m {
            let mut o = Map::new();
            o.insert("type".into(), json!(e.kind));
            o.insert("mode".into(), json!(format!("0o{:o}", e.mode)));
            o.insert("uid".into(), json!(e.uid));
            o.insert("gid".into(), json!(e.gid));
            if e.kind == "file" {
                o.insert("size".into(), json!(e.size));
                o.insert("sha256".into(), json!(e.sha256));
                let md = std::fs::symlink_metadata(root.join(p)).unwrap();
                o.insert("mtime".into(), json!(md.mtime()));
            }
            if let Some(t) = &e.target {
                o.insert("target".into(), json!(t));
            }
            if let Some((a, b)) = e.rdev {
                o.insert("rdev".into(), json!([a, b]));
            }
            if !e.xattrs.is_empty() {
                o.insert("xattrs".into(), json!(e.xattrs));
            }
            if e.kind != "dir" {
                o.insert(
                    "shared_with_parent".into(),
                    json!(parent.get(p) == Some(&e.dev_ino)),
                );
                if first[&e.dev_ino] != *p {
                    o.insert("link_group".into(), json!(first[&e.dev_ino]));
                }
            }
            entries.insert(p.clone(), Value::Object(o));
            all.insert(e.dev_ino);
        }
        parent = m.iter().map(|(p, e)| (p.clone(), e.dev_ino)).collect();
        layers.push(entries);
    }
    (layers, all.len())
}

#[test]
fn fx_layers_match_the_real_legacy_driver() {
    compare_with_golden(false);
}

/// `--symlinks copy`: inode for inode what dockerd built, no exception.
#[test]
fn fx_layers_with_symlinks_copy_match_exactly() {
    compare_with_golden(true);
}

fn compare_with_golden(copy: bool) {
    let t = test_root();
    let started = std::time::Instant::now();
    let fx = fixture("fx-layers.tar");
    let mut args = vec!["image", "import", fx.to_str().unwrap()];
    if copy {
        args.extend(["--symlinks", "copy"]);
    }
    let out = t.ok(&args);
    let import_time = started.elapsed();
    let ids: Vec<&str> = out.lines().collect();
    assert_eq!(ids.len(), 4, "{out}");
    let roots: Vec<PathBuf> = ids
        .iter()
        .map(|id| t.home().join(id).join("root"))
        .collect();
    let (ours, our_inodes) = layout_manifest(&roots);
    let golden: Value =
        serde_json::from_slice(&std::fs::read(fixture("golden-fx.json")).unwrap()).unwrap();
    let glayers = golden["layers"].as_array().unwrap();
    assert_eq!(glayers.len(), ours.len());
    let mut diffs = Vec::new();
    let mut hardlinked_specials = 0;
    for (i, (g, o)) in glayers.iter().zip(&ours).enumerate() {
        let g = g["entries"].as_object().unwrap();
        for p in g.keys().filter(|p| !o.contains_key(*p)) {
            diffs.push(format!("layer {i}: missing {p}"));
        }
        for p in o.keys().filter(|p| !g.contains_key(*p)) {
            diffs.push(format!("layer {i}: extra {p}"));
        }
        for (p, ge) in g {
            let Some(oe) = o.get(p) else { continue };
            let (ge, oe) = (ge.as_object().unwrap(), oe.as_object().unwrap());
            for k in ge
                .keys()
                .chain(oe.keys())
                .collect::<std::collections::BTreeSet<_>>()
            {
                let (a, b) = (ge.get(k), oe.get(k));
                if a == b {
                    continue;
                }
                let special = matches!(
                    ge["type"].as_str(),
                    Some("symlink" | "fifo" | "char" | "block" | "socket")
                );
                if !copy && k == "shared_with_parent" && special && b == Some(&json!(true)) {
                    hardlinked_specials += 1;
                    continue;
                }
                diffs.push(format!("layer {i}: {p}: {k}: golden {a:?} != ovlink {b:?}"));
            }
        }
    }
    assert!(
        diffs.is_empty(),
        "{} differences:\n{}",
        diffs.len(),
        diffs.join("\n")
    );
    let golden_inodes = golden["distinct_inodes_total"].as_u64().unwrap() as usize;
    eprintln!(
        "fx-layers: 4 layers imported in {:?}; {} distinct inodes (dockerd's legacy driver: {golden_inodes}); \
         {hardlinked_specials} symlinks/special files shared with the parent instead of re-created",
        import_time, our_inodes
    );
    if copy {
        assert_eq!(
            our_inodes, golden_inodes,
            "--symlinks copy: distinct inodes"
        );
        assert_eq!(hardlinked_specials, 0);
        let status = t.ok(&["status"]);
        assert!(status.contains("Symlinks: copy"), "{status}");
        let report = t.ok(&["report"]);
        assert!(
            report.contains("symlinks and special files: copy"),
            "{report}"
        );
        // The home keeps its mode: another one is refused while it holds layers.
        let err = t.fails(&["--symlinks", "link", "layer", "create", "x"]);
        assert!(
            err.contains("--symlinks copy") && err.contains(".symlinks"),
            "{err}"
        );
    } else {
        assert!(our_inodes < golden_inodes);
    }
}
