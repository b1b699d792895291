//! Hand-built archives: escapes, missing members, wrong digests, links inside the archive,
//! compressed layers, multi-image archives.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::Write;
use std::path::PathBuf;

use common::{build_tar, sha256_hex, DrainDriver};
use ovlink_driver::Driver as _;
use ovlink_image::{import, Archive, ImageError, NoProgress, Store};

enum M {
    File(String, Vec<u8>),
    Symlink(String, String),
}

fn outer(members: &[M]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for m in members {
        let mut h = tar::Header::new_gnu();
        match m {
            M::File(name, data) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(0o644);
                h.set_size(data.len() as u64);
                b.append_data(&mut h, name, data.as_slice()).unwrap();
            }
            M::Symlink(name, target) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_mode(0o777);
                h.set_size(0);
                b.append_link(&mut h, name, target).unwrap();
            }
        }
    }
    b.into_inner().unwrap()
}

fn layer(n: u8) -> Vec<u8> {
    build_tar(&[("etc/", b""), ("etc/file", &[n; 100])])
}

fn diff_id(tar: &[u8]) -> String {
    format!("sha256:{}", sha256_hex(tar))
}

fn config(diff_ids: &[String]) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))
    .unwrap()
}

/// A docker-save archive: `layers` are (manifest path, member bytes or None for no
/// member); diff ids are given.
fn docker_save(
    manifest_layers: &[&str],
    members: Vec<M>,
    diff_ids: &[String],
    tags: &[&str],
) -> Vec<u8> {
    let cfg = config(diff_ids);
    let cfg_name = format!("{}.json", sha256_hex(&cfg));
    let manifest = serde_json::to_vec(&serde_json::json!([{
        "Config": cfg_name, "RepoTags": tags, "Layers": manifest_layers,
    }]))
    .unwrap();
    let mut all = members;
    all.push(M::File(cfg_name, cfg));
    all.push(M::File("manifest.json".into(), manifest));
    outer(&all)
}

fn write(dir: &tempfile::TempDir, bytes: &[u8]) -> PathBuf {
    let p = dir.path().join("in.tar");
    std::fs::File::create(&p).unwrap().write_all(bytes).unwrap();
    p
}

fn try_import(bytes: &[u8]) -> (Result<ovlink_image::ImportReport, ImageError>, DrainDriver) {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(&tmp.path().join("store")).unwrap();
    let path = write(&tmp, bytes);
    let driver = DrainDriver::new();
    let r = import(&driver, &store, &path, None, &NoProgress);
    (r, driver)
}

#[test]
fn manifest_escapes_are_refused() {
    let l = layer(1);
    for bad in ["../x", "/etc/passwd", "a/../../x"] {
        let bytes = docker_save(
            &[bad],
            vec![M::File("a/layer.tar".into(), l.clone())],
            &[diff_id(&l)],
            &["t:1"],
        );
        let (r, driver) = try_import(&bytes);
        match r {
            Err(ImageError::ManifestEscape { path }) => assert_eq!(path, bad),
            other => panic!("{bad}: expected ManifestEscape, got {other:?}"),
        }
        assert!(driver.ids().is_empty());
    }
}

#[test]
fn symlink_members_escaping_the_archive_are_refused() {
    let l = layer(1);
    let bytes = docker_save(
        &["a/layer.tar"],
        vec![M::Symlink("a/layer.tar".into(), "../../etc/passwd".into())],
        &[diff_id(&l)],
        &["t:1"],
    );
    let (r, _) = try_import(&bytes);
    assert!(matches!(r, Err(ImageError::ManifestEscape { .. })), "{r:?}");
    let bytes = docker_save(
        &["a/layer.tar"],
        vec![M::Symlink("a/layer.tar".into(), "/etc/passwd".into())],
        &[diff_id(&l)],
        &["t:1"],
    );
    let (r, _) = try_import(&bytes);
    assert!(matches!(r, Err(ImageError::ManifestEscape { .. })), "{r:?}");
}

#[test]
fn symlinked_layer_members_are_followed() {
    // docker save writes a repeated layer as a symlink to the first copy.
    let l = layer(7);
    let d = diff_id(&l);
    let bytes = docker_save(
        &["a/layer.tar", "b/layer.tar"],
        vec![
            M::File("a/layer.tar".into(), l.clone()),
            M::Symlink("b/layer.tar".into(), "../a/layer.tar".into()),
        ],
        &[d.clone(), d.clone()],
        &["dup:1"],
    );
    let (r, driver) = try_import(&bytes);
    let r = r.unwrap();
    assert_eq!(r.layers.len(), 2);
    assert_eq!(r.layers[0].chain_id, d.trim_start_matches("sha256:"));
    assert_ne!(r.layers[0].chain_id, r.layers[1].chain_id);
    assert_eq!(driver.applied().len(), 2);
}

#[test]
fn missing_member_is_missing_blob() {
    let l = layer(1);
    let bytes = docker_save(&["nope/layer.tar"], vec![], &[diff_id(&l)], &["t:1"]);
    let (r, _) = try_import(&bytes);
    match r {
        Err(ImageError::MissingBlob { path }) => assert_eq!(path, "nope/layer.tar"),
        other => panic!("expected MissingBlob, got {other:?}"),
    }
}

#[test]
fn wrong_diff_id_is_a_digest_mismatch() {
    let l = layer(1);
    let other = layer(2);
    let bytes = docker_save(
        &["a/layer.tar"],
        vec![M::File("a/layer.tar".into(), l.clone())],
        &[diff_id(&other)],
        &["t:1"],
    );
    let (r, driver) = try_import(&bytes);
    match r {
        Err(ImageError::DigestMismatch {
            expected,
            actual,
            what,
        }) => {
            assert_eq!(expected, diff_id(&other));
            assert_eq!(actual, diff_id(&l));
            assert!(what.contains("a/layer.tar"), "{what}");
        }
        other => panic!("expected DigestMismatch, got {other:?}"),
    }
    assert!(driver.ids().is_empty());
    assert_eq!(driver.removed.lock().unwrap().len(), 1);
}

#[test]
fn compressed_layers_are_verified_against_the_uncompressed_diff_id() {
    let l = layer(3);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&l).unwrap();
    let gz = gz.finish().unwrap();
    let zst = zstd::stream::encode_all(&l[..], 3).unwrap();
    for stored in [gz.clone(), zst] {
        let bytes = docker_save(
            &["a/layer.tar"],
            vec![M::File("a/layer.tar".into(), stored.clone())],
            &[diff_id(&l)],
            &["c:1"],
        );
        let (r, _) = try_import(&bytes);
        let r = r.unwrap();
        assert_eq!(r.layers[0].diff_id, diff_id(&l));
        assert_eq!(r.layers[0].size, l.len() as u64);
        // Claiming the digest of the compressed bytes as diff id is a mismatch.
        let bytes = docker_save(
            &["a/layer.tar"],
            vec![M::File("a/layer.tar".into(), stored.clone())],
            &[diff_id(&stored)],
            &["c:1"],
        );
        let (r, _) = try_import(&bytes);
        assert!(matches!(r, Err(ImageError::DigestMismatch { .. })), "{r:?}");
    }
    // Docker 25+ names layers blobs/sha256/<digest of the stored bytes>: checked too.
    let blob = format!("blobs/sha256/{}", sha256_hex(&gz));
    let bytes = docker_save(
        &[&blob],
        vec![M::File(blob.clone(), gz.clone())],
        &[diff_id(&l)],
        &["c:1"],
    );
    assert!(try_import(&bytes).0.is_ok());
    let wrong = format!("blobs/sha256/{}", sha256_hex(b"x"));
    let bytes = docker_save(
        &[&wrong],
        vec![M::File(wrong.clone(), gz)],
        &[diff_id(&l)],
        &["c:1"],
    );
    match try_import(&bytes).0 {
        Err(ImageError::DigestMismatch { what, .. }) => assert!(what.contains("blob"), "{what}"),
        other => panic!("expected DigestMismatch, got {other:?}"),
    }
}

#[test]
fn config_name_must_match_its_digest() {
    let l = layer(1);
    let cfg = config(&[diff_id(&l)]);
    let name = format!("{}.json", "0".repeat(64));
    let manifest = serde_json::to_vec(
        &serde_json::json!([{"Config": name, "RepoTags": ["t:1"], "Layers": ["a/layer.tar"]}]),
    )
    .unwrap();
    let bytes = outer(&[
        M::File("a/layer.tar".into(), l),
        M::File(name, cfg),
        M::File("manifest.json".into(), manifest),
    ]);
    let (r, _) = try_import(&bytes);
    assert!(matches!(r, Err(ImageError::DigestMismatch { .. })), "{r:?}");
}

#[test]
fn malformed_archives_have_typed_errors() {
    let l = layer(1);
    // Layer count and diff id count differ.
    let bytes = docker_save(
        &["a/layer.tar"],
        vec![M::File("a/layer.tar".into(), l.clone())],
        &[],
        &["t:1"],
    );
    assert!(matches!(
        try_import(&bytes).0,
        Err(ImageError::InvalidImage { .. })
    ));
    // Not JSON.
    let bytes = outer(&[M::File("manifest.json".into(), b"{nope".to_vec())]);
    assert!(matches!(
        try_import(&bytes).0,
        Err(ImageError::BadManifest { .. })
    ));
    // Neither format.
    let bytes = outer(&[M::File("hello".into(), b"x".to_vec())]);
    assert!(matches!(
        try_import(&bytes).0,
        Err(ImageError::UnknownFormat { .. })
    ));
    // A diff id that is not sha256:<hex> never becomes a layer id.
    let bytes = docker_save(
        &["a/layer.tar"],
        vec![M::File("a/layer.tar".into(), l)],
        &["sha256:../../x".to_string()],
        &["t:1"],
    );
    assert!(matches!(
        try_import(&bytes).0,
        Err(ImageError::InvalidImage { .. })
    ));
}

#[test]
fn several_images_import_under_their_tags() {
    let (l1, l2) = (layer(1), layer(2));
    let (c1, c2) = (
        config(&[diff_id(&l1)]),
        config(&[diff_id(&l1), diff_id(&l2)]),
    );
    let (n1, n2) = (
        format!("{}.json", sha256_hex(&c1)),
        format!("{}.json", sha256_hex(&c2)),
    );
    let manifest = serde_json::to_vec(&serde_json::json!([
        {"Config": n1, "RepoTags": ["one:1"], "Layers": ["a/layer.tar"]},
        {"Config": n2, "RepoTags": ["two:1", "two:latest"], "Layers": ["a/layer.tar", "b/layer.tar"]},
    ]))
    .unwrap();
    let bytes = outer(&[
        M::File("manifest.json".into(), manifest),
        M::File("a/layer.tar".into(), l1),
        M::File("b/layer.tar".into(), l2),
        M::File(n1, c1),
        M::File(n2, c2),
    ]);
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(&tmp.path().join("store")).unwrap();
    let path = write(&tmp, &bytes);
    let driver = DrainDriver::new();
    let r = import(&driver, &store, &path, None, &NoProgress).unwrap();
    assert_eq!(r.images.len(), 2);
    assert_eq!(r.name, "one:1");
    assert_eq!(
        r.images[1].names,
        vec!["two:1".to_string(), "two:latest".to_string()]
    );
    assert!(r.images[1].layers[0].reused);
    assert!(!r.images[1].layers[1].reused);
    let names: Vec<String> = store
        .images()
        .unwrap()
        .into_iter()
        .map(|i| i.name)
        .collect();
    assert_eq!(names, vec!["one:1", "two:1", "two:latest"]);
    assert_eq!(driver.applied().len(), 2);
    // A name cannot be given to several images.
    assert!(matches!(
        import(&driver, &store, &path, Some("x"), &NoProgress),
        Err(ImageError::InvalidName { .. })
    ));
    // The archive can be inspected without importing.
    let a = Archive::open(&path).unwrap();
    assert_eq!(a.images().len(), 2);
    assert_eq!(a.format(), ovlink_image::Format::DockerSave);
}

#[test]
fn image_without_tags_is_named_by_short_id() {
    let l = layer(1);
    let bytes = docker_save(
        &["a/layer.tar"],
        vec![M::File("a/layer.tar".into(), l.clone())],
        &[diff_id(&l)],
        &[],
    );
    let (r, driver) = try_import(&bytes);
    let r = r.unwrap();
    assert_eq!(r.name.len(), 12);
    assert!(r
        .image_id
        .trim_start_matches("sha256:")
        .starts_with(&r.name));
    assert!(driver.exists(&r.layers[0].chain_id));
}
