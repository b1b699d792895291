//! Importing the real `docker save` fixture (Docker 20.10) with a draining test driver.
#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Mutex;

use common::{expected_chain_ids, fixture, member_offsets, read_member, DrainDriver};
use ovlink_driver::{Driver as _, LayerKind};
use ovlink_image::{import, ImageError, NoProgress, Progress, Store};

const CONFIG: &str = "08078008d52ea737e96c79751cad6e7949a366c4a11a99aaf966913530316fc2.json";

struct Fixture {
    diff_ids: Vec<String>,
    layer_paths: Vec<String>,
    chain: Vec<String>,
    config: Vec<u8>,
}

fn fixture_facts() -> Fixture {
    let manifest: serde_json::Value =
        serde_json::from_slice(&read_member(&fixture(), "manifest.json")).unwrap();
    let config_name = manifest[0]["Config"].as_str().unwrap();
    assert_eq!(config_name, CONFIG);
    let config = read_member(&fixture(), config_name);
    let cfg: serde_json::Value = serde_json::from_slice(&config).unwrap();
    let diff_ids: Vec<String> = cfg["rootfs"]["diff_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap().to_string())
        .collect();
    let layer_paths = manifest[0]["Layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap().to_string())
        .collect();
    let chain = expected_chain_ids(&diff_ids);
    Fixture {
        diff_ids,
        layer_paths,
        chain,
        config,
    }
}

#[test]
fn imports_fixture_with_chain_ids() {
    let fx = fixture_facts();
    assert_eq!(fx.chain.len(), 4);
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    let driver = DrainDriver::new();
    let report = import(&driver, &store, &fixture(), None, &NoProgress).unwrap();

    assert_eq!(report.name, "fx:layers");
    assert_eq!(
        report.image_id,
        format!("sha256:{}", CONFIG.trim_end_matches(".json"))
    );
    assert_eq!(report.images.len(), 1);
    let ids: Vec<String> = report.layers.iter().map(|l| l.chain_id.clone()).collect();
    assert_eq!(ids, fx.chain);
    assert!(report.layers.iter().all(|l| !l.reused));
    let diff_ids: Vec<String> = report.layers.iter().map(|l| l.diff_id.clone()).collect();
    assert_eq!(diff_ids, fx.diff_ids);
    // Bottom first, every layer applied once.
    assert_eq!(driver.applied(), fx.chain);
    // The drain driver returns the uncompressed byte count: the member sizes.
    let offsets = member_offsets(&fixture());
    for (l, path) in report.layers.iter().zip(&fx.layer_paths) {
        assert_eq!(l.size, offsets[path].1);
    }
    let mut want = fx.chain.clone();
    want.sort();
    assert_eq!(driver.ids(), want);

    let rec = store.image("fx:layers").unwrap();
    assert_eq!(rec.id, report.image_id);
    assert_eq!(rec.layers, fx.chain);
    assert_eq!(rec.diff_ids, fx.diff_ids);
    assert_eq!(rec.config_bytes(), fx.config.as_slice());
    assert_eq!(rec.top_layer(), Some(fx.chain[3].as_str()));
    assert!(tmp.path().join("images/fx%3Alayers.json").is_file());
    for id in &fx.chain {
        let l = store.layer(id).unwrap().unwrap();
        assert_eq!(&l.chain_id, id);
    }
}

#[test]
fn second_import_reuses_every_layer() {
    let fx = fixture_facts();
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    let driver = DrainDriver::new();
    let first = import(&driver, &store, &fixture(), None, &NoProgress).unwrap();
    let second = import(&driver, &store, &fixture(), Some("again:1"), &NoProgress).unwrap();
    assert!(second.layers.iter().all(|l| l.reused));
    assert_eq!(driver.applied().len(), 4);
    let sizes =
        |r: &ovlink_image::ImportReport| r.layers.iter().map(|l| l.size).collect::<Vec<_>>();
    assert_eq!(sizes(&first), sizes(&second));
    assert_eq!(store.image("again:1").unwrap().layers, fx.chain);
    assert_eq!(store.images().unwrap().len(), 2);
}

#[test]
fn unfinished_layers_are_removed_and_redone() {
    let fx = fixture_facts();
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    let driver = DrainDriver::new();
    // An image layer without the importer's record (crash between create and apply) and
    // an incomplete layer dir.
    driver.insert(&fx.chain[0], LayerKind::Image);
    driver.insert(&fx.chain[1], LayerKind::Incomplete);
    let report = import(&driver, &store, &fixture(), None, &NoProgress).unwrap();
    assert!(report.layers.iter().all(|l| !l.reused));
    let removed = driver.removed.lock().unwrap().clone();
    assert_eq!(removed, vec![fx.chain[0].clone(), fx.chain[1].clone()]);
    assert_eq!(driver.applied(), fx.chain);
}

#[test]
fn container_layer_with_a_chain_id_is_not_touched() {
    let fx = fixture_facts();
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    let driver = DrainDriver::new();
    driver.insert(
        &fx.chain[0],
        LayerKind::Container {
            lower_id: "x".to_string(),
        },
    );
    let err = import(&driver, &store, &fixture(), None, &NoProgress).unwrap_err();
    assert!(
        matches!(err, ImageError::LayerConflict { ref layer, .. } if *layer == fx.chain[0]),
        "{err:?}"
    );
    assert!(driver.exists(&fx.chain[0]));
}

fn tampered_copy(member: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("tampered.tar");
    let mut bytes = std::fs::read(fixture()).unwrap();
    let (offset, size) = member_offsets(&fixture())[member];
    let at = (offset + size / 2) as usize;
    bytes[at] ^= 0x01;
    std::fs::write(&path, bytes).unwrap();
    (tmp, path)
}

#[test]
fn tampered_layer_fails_with_digest_mismatch_and_keeps_lower_layers() {
    let fx = fixture_facts();
    let (_keep, path) = tampered_copy(&fx.layer_paths[2]);
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    let driver = DrainDriver::new();
    let err = import(&driver, &store, &path, None, &NoProgress).unwrap_err();
    match &err {
        ImageError::DigestMismatch {
            what,
            expected,
            actual,
        } => {
            assert!(what.contains(&fx.chain[2]), "{what}");
            assert!(what.contains(&fx.layer_paths[2]), "{what}");
            assert_eq!(expected, &fx.diff_ids[2]);
            assert_ne!(actual, expected);
        }
        other => panic!("expected DigestMismatch, got {other:?}"),
    }
    assert!(err.to_string().contains(&fx.diff_ids[2]));
    assert!(driver.exists(&fx.chain[0]));
    assert!(driver.exists(&fx.chain[1]));
    assert!(!driver.exists(&fx.chain[2]));
    assert!(!driver.exists(&fx.chain[3]));
    assert!(store.layer(&fx.chain[2]).unwrap().is_none());
    assert!(matches!(
        store.image("fx:layers"),
        Err(ImageError::ImageNotFound { .. })
    ));

    // The intact archive then reuses the two complete layers.
    let report = import(&driver, &store, &fixture(), None, &NoProgress).unwrap();
    let reused: Vec<bool> = report.layers.iter().map(|l| l.reused).collect();
    assert_eq!(reused, vec![true, true, false, false]);
}

#[test]
fn tampered_config_fails_before_any_layer() {
    let (_keep, path) = tampered_copy(CONFIG);
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    let driver = DrainDriver::new();
    let err = import(&driver, &store, &path, None, &NoProgress).unwrap_err();
    match err {
        ImageError::DigestMismatch { what, expected, .. } => {
            assert!(what.contains(CONFIG), "{what}");
            assert_eq!(
                expected,
                format!("sha256:{}", CONFIG.trim_end_matches(".json"))
            );
        }
        other => panic!("expected DigestMismatch, got {other:?}"),
    }
    assert!(driver.ids().is_empty());
}

#[derive(Default)]
struct Recorder {
    events: Mutex<Vec<String>>,
    bytes: Mutex<u64>,
}

impl Progress for Recorder {
    fn layer_started(&self, index: usize, total: usize, id: &str, compressed_size: u64) {
        self.events.lock().unwrap().push(format!(
            "start {index}/{total} {} {compressed_size}",
            &id[..12]
        ));
    }
    fn bytes(&self, n: u64) {
        *self.bytes.lock().unwrap() += n;
    }
    fn layer_done(&self, index: usize, reused: bool) {
        self.events
            .lock()
            .unwrap()
            .push(format!("done {index} {reused}"));
    }
}

#[test]
fn progress_sees_every_layer_and_byte() {
    let fx = fixture_facts();
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    let driver = DrainDriver::new();
    let rec = Recorder::default();
    import(&driver, &store, &fixture(), None, &rec).unwrap();
    let offsets = member_offsets(&fixture());
    let total: u64 = fx.layer_paths.iter().map(|p| offsets[p].1).sum();
    assert_eq!(*rec.bytes.lock().unwrap(), total);
    let events = rec.events.lock().unwrap().clone();
    assert_eq!(events.len(), 8);
    assert_eq!(
        events[0],
        format!(
            "start 0/4 {} {}",
            &fx.chain[0][..12],
            offsets[&fx.layer_paths[0]].1
        )
    );
    assert_eq!(events[7], "done 3 false");

    // Reused layers are reported, and no bytes are read.
    let rec2 = Recorder::default();
    import(&driver, &store, &fixture(), None, &rec2).unwrap();
    assert_eq!(*rec2.bytes.lock().unwrap(), 0);
    assert_eq!(rec2.events.lock().unwrap()[1], "done 0 true");
}

#[test]
fn imports_an_extracted_directory() {
    let fx = fixture_facts();
    let dir = tempfile::tempdir().unwrap();
    tar::Archive::new(std::fs::File::open(fixture()).unwrap())
        .unpack(dir.path())
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    let driver = DrainDriver::new();
    let report = import(&driver, &store, dir.path(), None, &NoProgress).unwrap();
    let ids: Vec<String> = report.layers.iter().map(|l| l.chain_id.clone()).collect();
    assert_eq!(ids, fx.chain);
}

/// An import publishes its staged layers together, once at the end; a long one publishes
/// every `publish_after` too (a group commit: a kill loses at most that much work).
#[test]
fn staged_layers_are_published_together_or_every_publish_after() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    let driver = DrainDriver::new();
    import(&driver, &store, &fixture(), None, &NoProgress).unwrap();
    assert_eq!(
        *driver.publishes.lock().unwrap(),
        vec![4],
        "one publish for the 4 layers"
    );

    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    let driver = DrainDriver::new();
    let archive = ovlink_image::Archive::open(&fixture()).unwrap();
    let opts = ovlink_image::ImportOptions {
        publish_after: std::time::Duration::ZERO,
    };
    ovlink_image::import_archive_with(&driver, &store, &archive, None, &NoProgress, &opts).unwrap();
    assert_eq!(
        *driver.publishes.lock().unwrap(),
        vec![1, 1, 1, 1],
        "a publish after each layer when the interval has passed"
    );
    for id in driver.ids() {
        assert!(
            store.layer(&id).unwrap().is_some(),
            "layer {id} has no record"
        );
    }
}
