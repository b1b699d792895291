//! The image/container store: round trips, escaping, permissions, atomicity under
//! concurrent writers.
#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt;

use ovlink_image::store::{escape_name, LayerRecord};
use ovlink_image::{ContainerRecord, ImageError, ImageRecord, Store};

fn image(name: &str, n: u8) -> ImageRecord {
    let config = format!(
        r#"{{"rootfs":{{"type":"layers","diff_ids":["sha256:{}"]}},"n":{n}}}"#,
        "a".repeat(64)
    );
    ImageRecord {
        name: name.to_string(),
        id: format!("sha256:{}", format!("{n:02x}").repeat(32)),
        config,
        diff_ids: vec![format!("sha256:{}", "a".repeat(64))],
        layers: vec!["a".repeat(64), format!("{n:02x}").repeat(32)],
        created: 1_700_000_000,
        layout: "overlay".to_string(),
    }
}

fn container(name: &str, image: &str) -> ContainerRecord {
    ContainerRecord {
        name: name.to_string(),
        image: image.to_string(),
        layer_id: format!("{name}-rw"),
        init_layer_id: format!("{name}-rw-init"),
        created: 1_700_000_001,
    }
}

#[test]
fn images_round_trip_with_escaped_names() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    for name in ["library/busybox:latest", "fx:layers", "a%b", ".dot"] {
        assert_eq!(store.put_image(&image(name, 1)).unwrap(), None);
        assert_eq!(store.image(name).unwrap(), image(name, 1));
    }
    assert!(tmp
        .path()
        .join("images/library%2Fbusybox%3Alatest.json")
        .is_file());
    assert!(tmp.path().join("images/fx%3Alayers.json").is_file());
    assert!(tmp.path().join("images/a%25b.json").is_file());
    assert!(tmp.path().join("images/%2Edot.json").is_file());
    let names: Vec<String> = store
        .images()
        .unwrap()
        .into_iter()
        .map(|i| i.name)
        .collect();
    assert_eq!(
        names,
        vec![".dot", "a%b", "fx:layers", "library/busybox:latest"]
    );
    // Replacing returns the previous record; add_image refuses.
    let prev = store.put_image(&image("fx:layers", 2)).unwrap();
    assert_eq!(prev, Some(image("fx:layers", 1)));
    assert!(matches!(
        store.add_image(&image("fx:layers", 3)),
        Err(ImageError::ImageExists { .. })
    ));
    store.add_image(&image("new:1", 3)).unwrap();
    // The raw config survives byte for byte, once per id in configs/, and the record is
    // plain JSON on disk without it.
    let raw: serde_json::Value =
        serde_json::from_slice(&std::fs::read(tmp.path().join("images/fx%3Alayers.json")).unwrap())
            .unwrap();
    assert!(raw.get("config").is_none(), "{raw}");
    assert_eq!(
        std::fs::read(tmp.path().join(format!("configs/{}.json", "02".repeat(32)))).unwrap(),
        image("fx:layers", 2).config.as_bytes()
    );
    // A listing does not load configs; one image does.
    assert!(store.images().unwrap().iter().all(|i| i.config.is_empty()));
    assert_eq!(store.image("fx:layers").unwrap(), image("fx:layers", 2));
    assert_eq!(
        store.remove_image("fx:layers").unwrap(),
        image("fx:layers", 2)
    );
    assert!(
        matches!(store.image("fx:layers"), Err(ImageError::ImageNotFound { ref name }) if name == "fx:layers")
    );
    assert!(matches!(
        store.remove_image("fx:layers"),
        Err(ImageError::ImageNotFound { .. })
    ));
}

#[test]
fn containers_round_trip_and_pin_their_image() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    store.put_image(&image("img:1", 1)).unwrap();
    store.put_container(&container("web", "img:1")).unwrap();
    store.put_container(&container("db", "img:1")).unwrap();
    assert!(matches!(
        store.put_container(&container("web", "img:1")),
        Err(ImageError::ContainerExists { .. })
    ));
    assert_eq!(store.container("web").unwrap(), container("web", "img:1"));
    let names: Vec<String> = store
        .containers()
        .unwrap()
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(names, vec!["db", "web"]);
    match store.remove_image("img:1") {
        Err(ImageError::ImageInUse { name, container }) => {
            assert_eq!(name, "img:1");
            assert_eq!(container, "db");
        }
        other => panic!("expected ImageInUse, got {other:?}"),
    }
    let in_use = store.layers_in_use().unwrap();
    assert!(
        in_use.contains("web-rw")
            && in_use.contains("db-rw-init")
            && in_use.contains(&"a".repeat(64))
    );
    store.remove_container("web").unwrap();
    store.remove_container("db").unwrap();
    assert!(matches!(
        store.container("web"),
        Err(ImageError::ContainerNotFound { .. })
    ));
    assert!(matches!(
        store.remove_container("web"),
        Err(ImageError::ContainerNotFound { .. })
    ));
    store.remove_image("img:1").unwrap();
    assert!(store.layers_in_use().unwrap().is_empty());
    assert!(matches!(
        store.put_container(&container("a/b", "img:1")),
        Err(ImageError::InvalidName { .. })
    ));
}

#[test]
fn layer_records_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    let rec = LayerRecord {
        chain_id: "b".repeat(64),
        diff_id: format!("sha256:{}", "c".repeat(64)),
        parent: None,
        size: 42,
        created: 1,
    };
    assert_eq!(store.layer(&rec.chain_id).unwrap(), None);
    store.put_layer(&rec).unwrap();
    assert_eq!(store.layer(&rec.chain_id).unwrap(), Some(rec.clone()));
    assert_eq!(store.layer_records().unwrap(), vec![rec.clone()]);
    assert!(store.remove_layer(&rec.chain_id).unwrap());
    assert!(!store.remove_layer(&rec.chain_id).unwrap());
    assert!(matches!(
        store.layer("../x"),
        Err(ImageError::InvalidName { .. })
    ));
}

#[test]
fn names_are_validated() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path()).unwrap();
    for bad in ["", ".", "..", "a\nb", "nul\0"] {
        assert!(
            matches!(
                store.put_image(&image(bad, 1)),
                Err(ImageError::InvalidName { .. })
            ),
            "{bad:?}"
        );
        assert!(matches!(
            store.image(bad),
            Err(ImageError::InvalidName { .. })
        ));
    }
    assert!(store.put_image(&image(&"x".repeat(129), 1)).is_err());
    store.put_image(&image(&"x".repeat(128), 1)).unwrap();
    assert_eq!(escape_name("a:b").unwrap(), "a%3Ab");
}

#[test]
fn permissions_and_stale_temp_files() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    let store = Store::open(&root).unwrap();
    store.put_image(&image("p:1", 1)).unwrap();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode(&root), 0o700);
    assert_eq!(mode(&root.join("images")), 0o700);
    assert_eq!(mode(&root.join("containers")), 0o700);
    assert_eq!(mode(&root.join("images/p%3A1.json")), 0o600);
    // A crashed writer's temp file is ignored by listings and removed at the next open.
    std::fs::write(root.join("images/.tmp-1-1"), b"{partial").unwrap();
    assert_eq!(store.images().unwrap().len(), 1);
    let _store = Store::open(&root).unwrap();
    assert!(!root.join("images/.tmp-1-1").exists());
}

#[test]
fn concurrent_writers_leave_valid_json() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    Store::open(&root).unwrap();
    std::thread::scope(|s| {
        for t in 0..8u8 {
            let root = root.clone();
            s.spawn(move || {
                // Each thread opens its own store handle, like separate processes would.
                let store = Store::open(&root).unwrap();
                for i in 0..25u8 {
                    store.put_image(&image("shared:1", t * 25 + i)).unwrap();
                    store.put_image(&image(&format!("own:{t}"), i)).unwrap();
                    store.image("shared:1").unwrap();
                }
            });
        }
    });
    let store = Store::open(&root).unwrap();
    let images = store.images().unwrap();
    assert_eq!(images.len(), 9);
    for entry in std::fs::read_dir(root.join("images")).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        assert!(!name.starts_with(".tmp-"), "leftover {name}");
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(entry.path()).unwrap()).unwrap();
        assert!(v["name"].is_string());
    }
    for t in 0..8u8 {
        assert_eq!(
            store.image(&format!("own:{t}")).unwrap(),
            image(&format!("own:{t}"), 24)
        );
    }
}

#[test]
fn images_belong_to_a_layout() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store.add_image(&image("legacy", 1)).unwrap();
    store
        .add_image(&ImageRecord {
            layout: "overlay2".into(),
            ..image("new", 2)
        })
        .unwrap();
    let names = |l: &str| -> Vec<String> {
        store
            .images_in(l)
            .unwrap()
            .into_iter()
            .map(|i| i.name)
            .collect()
    };
    assert_eq!(names("overlay"), ["legacy"]);
    assert_eq!(names("overlay2"), ["new"]);
    assert!(store.image_in("legacy", "overlay").is_ok());
    let err = store
        .image_in("legacy", "overlay2")
        .unwrap_err()
        .to_string();
    assert!(err.contains("belongs to the overlay layout"), "{err}");
    // One name in both layouts: two images, each in its own layout.
    store
        .put_image(&ImageRecord {
            layout: "overlay2".into(),
            ..image("legacy", 3)
        })
        .unwrap();
    assert_eq!(
        store.image_in("legacy", "overlay").unwrap().layout,
        "overlay"
    );
    assert_eq!(
        store.image_in("legacy", "overlay2").unwrap().layout,
        "overlay2"
    );
    assert_eq!(store.images().unwrap().len(), 3);
    assert!(matches!(
        store.image_in("nothing", "overlay2"),
        Err(ImageError::ImageNotFound { .. })
    ));
    // A record written before layouts were recorded is the legacy layout's.
    let old =
        r#"{"name":"old","id":"sha256:00","config":"{}","diff_ids":[],"layers":[],"created":1}"#;
    std::fs::write(dir.path().join("images/old.json"), old).unwrap();
    assert_eq!(store.image("old").unwrap().layout, "overlay");
}
