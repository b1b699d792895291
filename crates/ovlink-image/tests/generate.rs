//! The deterministic generator: byte-identical output, layer contents, and imports of its
//! docker-save and OCI outputs.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::io::Read;
use std::path::{Path, PathBuf};

use common::{member_offsets, read_member, sha256_hex, DrainDriver};
use ovlink_image::{
    generate, generate_oci, generate_with, import, Compression, GenFormat, GenLayout, GenSpec,
    ImageError, NoProgress, Store,
};

fn small() -> GenSpec {
    GenSpec {
        entries: 120,
        layers: 4,
        seed: 42,
        file_size: 256,
        name: "gen:small".to_string(),
    }
}

fn gen_bytes(spec: &GenSpec, format: GenFormat) -> (Vec<u8>, ovlink_image::GenSummary) {
    let mut out = Vec::new();
    let s = generate_with(spec, format, &mut out).unwrap();
    assert_eq!(s.archive_size, out.len() as u64);
    (out, s)
}

fn save(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

const DOCKER: GenFormat = GenFormat {
    layout: GenLayout::DockerSave,
    compression: Compression::None,
};

#[test]
fn output_is_deterministic() {
    for spec in [GenSpec::demo(), small()] {
        let mut a = Vec::new();
        let mut b = Vec::new();
        let sa = generate(&spec, &mut a).unwrap();
        let sb = generate(&spec, &mut b).unwrap();
        assert_eq!(sa, sb);
        assert!(a == b, "two runs differ");
        let mut oa = Vec::new();
        let mut ob = Vec::new();
        generate_oci(&spec, &mut oa).unwrap();
        generate_oci(&spec, &mut ob).unwrap();
        assert!(oa == ob, "two OCI runs differ");
    }
    let mut other = Vec::new();
    let mut a = Vec::new();
    generate(&small(), &mut a).unwrap();
    generate(
        &GenSpec {
            seed: 43,
            ..small()
        },
        &mut other,
    )
    .unwrap();
    assert!(a != other);
}

/// One entry of a layer tar: (path, type, mode, link target).
type TarEntry = (String, tar::EntryType, u32, Option<String>);

fn tar_entries(tar: &[u8]) -> Vec<TarEntry> {
    let mut ar = tar::Archive::new(tar);
    ar.entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.path().unwrap().to_string_lossy().into_owned(),
                e.header().entry_type(),
                e.header().mode().unwrap(),
                e.link_name()
                    .unwrap()
                    .map(|l| l.to_string_lossy().into_owned()),
            )
        })
        .collect()
}

#[test]
fn layers_have_the_promised_content() {
    let spec = small();
    let (bytes, summary) = gen_bytes(&spec, DOCKER);
    let tmp = tempfile::tempdir().unwrap();
    let path = save(tmp.path(), "g.tar", &bytes);
    let manifest: serde_json::Value =
        serde_json::from_slice(&read_member(&path, "manifest.json")).unwrap();
    assert_eq!(manifest[0]["RepoTags"][0], "gen:small");
    let config_name = manifest[0]["Config"].as_str().unwrap();
    let config = read_member(&path, config_name);
    assert_eq!(format!("{}.json", sha256_hex(&config)), config_name);
    let cfg: serde_json::Value = serde_json::from_slice(&config).unwrap();
    assert_eq!(cfg["history"].as_array().unwrap().len(), 4);
    let repositories: serde_json::Value =
        serde_json::from_slice(&read_member(&path, "repositories")).unwrap();
    assert!(repositories["gen"]["small"].is_string());
    let layers: Vec<String> = manifest[0]["Layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap().to_string())
        .collect();
    assert_eq!(layers.len(), 4);

    let mut opaque_total = 0;
    for (k, lp) in layers.iter().enumerate() {
        let tar = read_member(&path, lp);
        assert_eq!(
            format!("sha256:{}", sha256_hex(&tar)),
            cfg["rootfs"]["diff_ids"][k]
        );
        assert_eq!(summary.layers[k].diff_id, cfg["rootfs"]["diff_ids"][k]);
        let entries = tar_entries(&tar);
        assert_eq!(entries.len(), summary.layers[k].entries(), "layer {k}");
        // Parents come before children.
        let mut seen = BTreeSet::new();
        for (p, t, _, _) in &entries {
            let p = p.trim_end_matches('/').to_string();
            if let Some((parent, _)) = p.rsplit_once('/') {
                assert!(seen.contains(parent), "layer {k}: {p} before its parent");
            }
            if *t == tar::EntryType::Directory {
                seen.insert(p);
            }
        }
        let count = |f: &dyn Fn(&TarEntry) -> bool| entries.iter().filter(|e| f(e)).count();
        let whiteouts = count(&|e| e.0.rsplit('/').next().unwrap().starts_with(".wh."));
        let opaque = count(&|e| e.0.ends_with("/.wh..wh..opq"));
        assert_eq!(whiteouts, summary.layers[k].whiteouts);
        assert_eq!(opaque, summary.layers[k].opaque);
        opaque_total += opaque;
        if k == 0 {
            assert_eq!(whiteouts, 0);
            assert!(count(&|e| e.1 == tar::EntryType::Symlink) >= 3);
            assert!(
                count(&|e| e.1 == tar::EntryType::Symlink
                    && e.3.as_deref().unwrap().starts_with(".."))
                    >= 1
            );
            assert_eq!(count(&|e| e.1 == tar::EntryType::Link), 1);
            assert_eq!(count(&|e| e.1 == tar::EntryType::Fifo), 1);
            assert_eq!(count(&|e| e.2 & 0o4000 != 0), 1);
            assert!(count(&|e| e.0.len() > 100) >= 1, "a GNU long name");
            assert!(
                entries.len() >= 100 && entries.len() <= 160,
                "{}",
                entries.len()
            );
            // A dangling relative symlink.
            assert!(count(&|e| e.3.as_deref().is_some_and(|t| t.contains("missing"))) >= 1);
        } else {
            // Deletes files, deletes a directory, adds and rewrites files.
            assert!(whiteouts - opaque >= 3, "layer {k}: {whiteouts}");
            assert!(summary.layers[k].files >= 5);
        }
        // Fixed mtimes and owners.
        let mut ar = tar::Archive::new(&tar[..]);
        for e in ar.entries().unwrap() {
            let e = e.unwrap();
            assert_eq!(e.header().uid().unwrap(), 0);
            assert!(e.header().mtime().unwrap() >= 1_609_459_200);
        }
    }
    assert_eq!(
        opaque_total, 1,
        "exactly one layer re-creates a directory as opaque"
    );
}

#[test]
fn generated_docker_save_imports() {
    let spec = GenSpec::demo();
    let (bytes, summary) = gen_bytes(&spec, DOCKER);
    let tmp = tempfile::tempdir().unwrap();
    let path = save(tmp.path(), "demo.tar", &bytes);
    let store = Store::open(&tmp.path().join("store")).unwrap();
    let driver = DrainDriver::new();
    let r = import(&driver, &store, &path, None, &NoProgress).unwrap();
    assert_eq!(r.name, "ovlink/gen:demo");
    assert_eq!(r.image_id, summary.image_id);
    let ids: Vec<String> = r.layers.iter().map(|l| l.chain_id.clone()).collect();
    assert_eq!(ids, summary.chain_ids());
    for (l, s) in r.layers.iter().zip(&summary.layers) {
        assert_eq!(l.size, s.tar_size);
    }
    assert!(tmp
        .path()
        .join("store/images/ovlink%2Fgen%3Ademo.json")
        .is_file());
    assert_eq!(store.image("ovlink/gen:demo").unwrap().layers, ids);
}

#[test]
fn oci_layout_imports_with_gzip_layers() {
    let spec = small();
    let (_, docker_summary) = gen_bytes(&spec, DOCKER);
    let mut bytes = Vec::new();
    let summary = generate_oci(&spec, &mut bytes).unwrap();
    // Same image whatever the layout.
    assert_eq!(summary.image_id, docker_summary.image_id);
    let tmp = tempfile::tempdir().unwrap();
    let path = save(tmp.path(), "oci.tar", &bytes);
    // Layers are stored gzip-compressed.
    let offsets = member_offsets(&path);
    assert!(offsets.contains_key("index.json") && offsets.contains_key("oci-layout"));
    for l in &summary.layers {
        assert!(l.stored_size < l.tar_size);
    }
    let store = Store::open(&tmp.path().join("store")).unwrap();
    let driver = DrainDriver::new();
    let r = import(&driver, &store, &path, None, &NoProgress).unwrap();
    assert_eq!(r.name, "gen:small");
    let ids: Vec<String> = r.layers.iter().map(|l| l.chain_id.clone()).collect();
    assert_eq!(ids, docker_summary.chain_ids());
    for (l, s) in r.layers.iter().zip(&summary.layers) {
        assert_eq!(
            l.size, s.tar_size,
            "the driver sees the uncompressed stream"
        );
    }
    let rec = store.image("gen:small").unwrap();
    assert_eq!(format!("sha256:{}", sha256_hex(rec.config_bytes())), rec.id);

    // The extracted layout imports too.
    let dir = tmp.path().join("layout");
    tar::Archive::new(&bytes[..]).unpack(&dir).unwrap();
    let driver = DrainDriver::new();
    let store2 = Store::open(&tmp.path().join("store2")).unwrap();
    let r2 = import(&driver, &store2, &dir, None, &NoProgress).unwrap();
    let chain = |r: &ovlink_image::ImportReport| {
        r.layers
            .iter()
            .map(|l| l.chain_id.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(chain(&r2), chain(&r));
    assert_eq!(r2.image_id, r.image_id);
}

#[test]
fn zstd_docker_save_imports() {
    let spec = small();
    let (_, plain) = gen_bytes(&spec, DOCKER);
    let (bytes, summary) = gen_bytes(
        &spec,
        GenFormat {
            layout: GenLayout::DockerSave,
            compression: Compression::Zstd,
        },
    );
    assert_eq!(summary.chain_ids(), plain.chain_ids());
    let tmp = tempfile::tempdir().unwrap();
    let path = save(tmp.path(), "z.tar", &bytes);
    let store = Store::open(&tmp.path().join("store")).unwrap();
    let r = import(&DrainDriver::new(), &store, &path, None, &NoProgress).unwrap();
    let ids: Vec<String> = r.layers.iter().map(|l| l.chain_id.clone()).collect();
    assert_eq!(ids, plain.chain_ids());
}

/// The member name of layer `k` of a generated OCI archive.
fn oci_layer_member(path: &Path, k: usize) -> String {
    let index: serde_json::Value =
        serde_json::from_slice(&read_member(path, "index.json")).unwrap();
    let m = index["manifests"][0]["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_string();
    let manifest: serde_json::Value =
        serde_json::from_slice(&read_member(path, &format!("blobs/sha256/{m}"))).unwrap();
    let d = manifest["layers"][k]["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_string();
    format!("blobs/sha256/{d}")
}

#[test]
fn tampered_oci_blob_is_a_digest_mismatch() {
    let spec = small();
    let mut bytes = Vec::new();
    let summary = generate_oci(&spec, &mut bytes).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let path = save(tmp.path(), "oci.tar", &bytes);
    let member = oci_layer_member(&path, 1);
    let (off, size) = member_offsets(&path)[&member];
    // Flip a byte of the gzip trailer (CRC): decompression may or may not notice, the blob
    // digest always does.
    bytes[(off + size - 6) as usize] ^= 0x55;
    let path = save(tmp.path(), "bad.tar", &bytes);
    let store = Store::open(&tmp.path().join("store")).unwrap();
    let driver = DrainDriver::new();
    let err = import(&driver, &store, &path, None, &NoProgress).unwrap_err();
    let chain = summary.chain_ids();
    match err {
        ImageError::DigestMismatch { what, .. } => {
            assert!(what.contains(&chain[1]), "{what}");
            assert!(what.contains("blob"), "{what}");
        }
        other => panic!("expected DigestMismatch, got {other:?}"),
    }
    let mut want = vec![chain[0].clone()];
    want.sort();
    assert_eq!(driver.ids(), want);
}

#[test]
fn nested_oci_index_picks_this_platform() {
    let spec = small();
    let mut bytes = Vec::new();
    let summary = generate_oci(&spec, &mut bytes).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let path = save(tmp.path(), "oci.tar", &bytes);
    let index: serde_json::Value =
        serde_json::from_slice(&read_member(&path, "index.json")).unwrap();
    let mut desc = index["manifests"][0].clone();
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    desc["platform"] = serde_json::json!({"os": "linux", "architecture": arch});
    // An attestation manifest and another platform, both pointing at nothing: never read.
    let decoy = serde_json::json!({
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": format!("sha256:{}", "1".repeat(64)), "size": 1,
        "platform": {"os": "unknown", "architecture": "unknown"},
    });
    let other = serde_json::json!({
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": format!("sha256:{}", "2".repeat(64)), "size": 1,
        "platform": {"os": "linux", "architecture": "s390x-not-this"},
    });
    let nested = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [decoy, other, desc],
    }))
    .unwrap();
    let nested_hex = sha256_hex(&nested);
    let top = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "digest": format!("sha256:{nested_hex}"), "size": nested.len(),
            "annotations": {"io.containerd.image.name": "docker.io/library/nested:1"},
        }],
    }))
    .unwrap();
    // Rebuild the archive with the new index.
    let mut b = tar::Builder::new(Vec::new());
    let mut ar = tar::Archive::new(&bytes[..]);
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let name = e.path().unwrap().to_string_lossy().into_owned();
        if name == "index.json" {
            continue;
        }
        let mut data = Vec::new();
        e.read_to_end(&mut data).unwrap();
        let mut h = e.header().clone();
        b.append_data(&mut h, &name, &data[..]).unwrap();
    }
    for (name, data) in [
        (format!("blobs/sha256/{nested_hex}"), &nested),
        ("index.json".to_string(), &top),
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, &name, &data[..]).unwrap();
    }
    let rebuilt = b.into_inner().unwrap();
    let path = save(tmp.path(), "nested.tar", &rebuilt);
    let store = Store::open(&tmp.path().join("store")).unwrap();
    let r = import(&DrainDriver::new(), &store, &path, None, &NoProgress).unwrap();
    assert_eq!(r.name, "docker.io/library/nested:1");
    assert_eq!(r.image_id, summary.image_id);
}

#[test]
fn bench_spec_is_about_ten_thousand_entries() {
    let spec = GenSpec::bench();
    let mut out = Vec::new();
    let s = generate(&spec, &mut out).unwrap();
    assert_eq!(s.layers.len(), 5);
    let base = s.layers[0].entries();
    assert!((9_500..=10_500).contains(&base), "{base}");
    let demo = generate(&GenSpec::demo(), &mut Vec::new()).unwrap();
    assert_eq!(demo.layers.len(), 4);
    assert!((200..=400).contains(&demo.layers[0].entries()));
}
