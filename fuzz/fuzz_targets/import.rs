//! Fuzzes image import: every input is written as an archive tarball and imported with a
//! real `OverlayDriver` into a throw-away home (created once per fuzzing process). After
//! each input every layer and record it created is removed again and the home, the store
//! and a sentinel directory next to them must be exactly as before: no escape, no leftover
//! (`.tmp-*`, half layer, record). Panics (a fuzzer finding) otherwise.
#![no_main]

use std::fs;
use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use ovlink_driver::{Driver, InitConfig};
use ovlink_overlay::OverlayDriver;
use ovlink_fuzz::{fix_tar_checksums, snapshot, Snap};
use ovlink_image::{NoProgress, Store};

struct Env {
    _dir: tempfile::TempDir,
    base: PathBuf,
    driver: OverlayDriver,
    store: Store,
    sentinel: PathBuf,
    sentinel_snap: Snap,
}

fn env() -> &'static Env {
    static ENV: OnceLock<Env> = OnceLock::new();
    ENV.get_or_init(|| {
        let dir = tempfile::Builder::new()
            .prefix("ovlink-fuzz-import-")
            .tempdir()
            .expect("tempdir");
        let base = dir.path().to_path_buf();
        let sentinel = base.join("sentinel");
        fs::create_dir(&sentinel).expect("mkdir sentinel");
        fs::write(sentinel.join("file"), b"sentinel").expect("write sentinel");
        let driver = OverlayDriver::init(&InitConfig {
            home: base.join("overlay"),
            ..Default::default()
        })
        .expect("driver init");
        let store = Store::open(&base.join("store")).expect("store open");
        // The store makes its import lock file at the first import that gets past parsing
        // and keeps it (a lock, not state): have it from the start so the "store changed"
        // check compares only what an input could change.
        fs::write(base.join("store/import.lock"), b"").expect("create import.lock");
        let sentinel_snap = snapshot(&sentinel);
        Env {
            _dir: dir,
            base,
            driver,
            store,
            sentinel,
            sentinel_snap,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let env = env();
    let mut data = data.to_vec();
    fix_tar_checksums(&mut data);
    let archive = env.base.join("archive.tar");
    fs::write(&archive, &data).expect("write archive");
    let home_before = snapshot(env.driver.home());
    let store_before = snapshot(env.store.root());

    let _ = ovlink_image::import(&env.driver, &env.store, &archive, None, &NoProgress);

    // Undo whatever a successful (or partly successful) import left: images, layer
    // records, then layers (children first: highest chain position unknown, so loop).
    for image in env.store.images().unwrap_or_default() {
        let _ = env.store.remove_image(&image.name);
    }
    for rec in env.store.layer_records().unwrap_or_default() {
        let _ = env.store.remove_layer(&rec.chain_id);
    }
    for layer in env.driver.layers().expect("list layers") {
        env.driver.remove(&layer.id).expect("remove layer");
    }
    let _ = fs::remove_file(&archive);

    assert_eq!(
        snapshot(&env.sentinel),
        env.sentinel_snap,
        "sentinel changed: escape"
    );
    let leftovers: Vec<_> = fs::read_dir(env.driver.home())
        .expect("read home")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name())
        .collect();
    assert!(
        leftovers.is_empty(),
        "home not empty after cleanup: {leftovers:?}"
    );
    assert_eq!(
        snapshot(env.driver.home()).len(),
        home_before.len(),
        "home changed"
    );
    assert_eq!(
        snapshot(env.store.root()).keys().collect::<Vec<_>>(),
        store_before.keys().collect::<Vec<_>>(),
        "store changed"
    );
    let mut names: Vec<_> = fs::read_dir(&env.base)
        .expect("read base")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["overlay", "sentinel", "store"],
        "something created next to the home"
    );
});
