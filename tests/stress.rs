//! Concurrency and load on one home: parallel imports (processes) sharing base layers,
//! parallel get/put of one container (the mount is made once and removed at the last put),
//! remove racing get, two creates of the same id, and a stress run of thousands of mixed
//! operations from several threads (each with its own driver instance, like separate
//! processes, plus one shared instance) after which the home is checked against the mount
//! table and every layer's tree. `OVLINK_STRESS_SCALE=N` multiplies the work (default 1:
//! about 3,000 driver operations, well under two minutes).

use crate::util::*;
use ovlink_driver::{CreateOpts, Driver, DriverError, InitConfig, LayerKind};
use ovlink_overlay::OverlayDriver;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};

fn scale() -> usize {
    std::env::var("OVLINK_STRESS_SCALE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
        .max(1)
}

fn driver(home: &Path) -> OverlayDriver {
    OverlayDriver::init(&InitConfig {
        home: home.to_path_buf(),
        ..Default::default()
    })
    .unwrap()
}

fn no_opts() -> CreateOpts {
    CreateOpts::default()
}

fn sha(b: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(b))
}

/// A docker-save archive of `layers` (bottom first) tagged `tag`.
fn image(dir: &Path, tag: &str, layers: &[&Vec<u8>]) -> PathBuf {
    let diff_ids: Vec<String> = layers
        .iter()
        .map(|l| format!("\"sha256:{}\"", sha(l)))
        .collect();
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":[{}]}}}}"#,
        diff_ids.join(",")
    );
    let cfg_name = format!("{}.json", sha(config.as_bytes()));
    let paths: Vec<String> = layers
        .iter()
        .map(|l| format!("\"{}/layer.tar\"", sha(l)))
        .collect();
    let manifest = format!(
        r#"[{{"Config":"{cfg_name}","RepoTags":["{tag}"],"Layers":[{}]}}]"#,
        paths.join(",")
    );
    let mut b = TarBuilder::new().file(&cfg_name, 0o644, config.as_bytes());
    for l in layers {
        b = b.file(&format!("{}/layer.tar", sha(l)), 0o644, l);
    }
    b.file("manifest.json", 0o644, manifest.as_bytes())
        .write_to(dir, &format!("{}.tar", tag.replace([':', '/'], "-")))
}

fn layer_tar(tag: &str, files: usize) -> Vec<u8> {
    let mut b = TarBuilder::new().dir(tag, 0o755);
    for i in 0..files {
        b = b.file(
            &format!("{tag}/f{i}"),
            0o644,
            format!("{tag} {i}").as_bytes(),
        );
    }
    b.build()
}

fn strip(
    m: std::collections::BTreeMap<String, Entry>,
) -> std::collections::BTreeMap<String, Entry> {
    m.into_iter()
        .map(|(k, mut e)| {
            e.dev_ino = (0, 0);
            e.nlink = 0;
            (k, e)
        })
        .collect()
}

/// Several processes import three images that share their base layer (and two share a
/// second one) at the same time, twice over: every import succeeds and every layer equals
/// the one a sequential import makes.
#[test]
fn parallel_imports_sharing_base_layers() {
    let t = test_root();
    let l1 = layer_tar("base", 200);
    let l2 = layer_tar("mid", 50);
    let l3 = layer_tar("other", 50);
    let l4 = layer_tar("top", 20);
    let imgs = [
        image(t.path(), "s/a:1", &[&l1, &l2]),
        image(t.path(), "s/b:1", &[&l1, &l3]),
        image(t.path(), "s/c:1", &[&l1, &l2, &l4]),
    ];
    let reference = t.path().join("reference");
    for i in &imgs {
        let out = ovlink_cmd(&reference, &["image", "import", i.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let root = t.root();
    for _round in 0..2 * scale() {
        let children: Vec<_> = imgs
            .iter()
            .chain(imgs.iter())
            .map(|i| {
                ovlink_cmd(&root, &["image", "import", i.to_str().unwrap()])
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for c in children {
            let out = c.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "parallel import: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
    let ids: Vec<String> = std::fs::read_dir(reference.join("overlay"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(ids.len(), 4, "{ids:?}"); // chain ids: L1, L1+L2, L1+L3, L1+L2+L4
    for id in &ids {
        let want = strip(manifest(&reference.join("overlay").join(id).join("root")));
        let got = strip(manifest(&t.home().join(id).join("root")));
        assert!(got == want, "layer {id} differs after parallel imports");
    }
    let mut home: Vec<String> = std::fs::read_dir(t.home())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    home.sort();
    let mut ids = ids;
    ids.sort();
    assert_eq!(home, ids, "extra entries in the home");
}

/// One container, many threads on one driver instance and processes through the CLI: the
/// overlay is mounted at most once at any time and is gone after the last put.
#[test]
fn parallel_get_put_of_one_container() {
    let t = test_root();
    let home = t.home();
    let d = Arc::new(driver(&home));
    let tar = layer_tar("img", 20);
    d.create("img", None, &no_opts()).unwrap();
    d.apply_diff("img", None, &mut &tar[..]).unwrap();
    d.create_read_write("c", Some("img"), &no_opts()).unwrap();
    let merged = home.join("c/merged");
    let mount_count = |p: &Path| mounts_under(p).iter().filter(|m| m.as_path() == p).count();
    let threads = 8;
    let iters = 100 * scale();
    let barrier = Arc::new(Barrier::new(threads));
    let max_seen = Arc::new(AtomicUsize::new(0));
    let hs: Vec<_> = (0..threads)
        .map(|i| {
            let d = d.clone();
            let b = barrier.clone();
            let m = merged.clone();
            let max_seen = max_seen.clone();
            std::thread::spawn(move || {
                b.wait();
                for k in 0..iters {
                    let p = d.get("c", None).unwrap();
                    assert_eq!(p, m);
                    std::fs::write(p.join(format!("t{i}-{}", k % 4)), b"x").unwrap();
                    if k % 10 == 0 {
                        max_seen.fetch_max(mount_count(&m), Ordering::SeqCst);
                    }
                    d.put("c").unwrap();
                }
            })
        })
        .collect();
    for h in hs {
        h.join().unwrap();
    }
    assert!(
        max_seen.load(Ordering::SeqCst) <= 1,
        "mounted more than once"
    );
    assert_eq!(mount_count(&merged), 0, "still mounted after the last put");
    assert!(!merged.exists(), "merged/ left after the last put");
    // Processes: a get from each of several processes, then as many puts (the mount table is
    // the truth across processes: a second get does not mount twice).
    for _ in 0..scale() {
        let outs: Vec<_> = (0..4)
            .map(|_| ovlink_cmd(&t.root(), &["mount", "c"]).output().unwrap())
            .collect();
        for o in &outs {
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        }
        assert_eq!(mount_count(&merged), 1);
        assert!(ovlink_cmd(&t.root(), &["umount", "c"])
            .output()
            .unwrap()
            .status
            .success());
        assert_eq!(mount_count(&merged), 0);
    }
    let upper: Vec<_> = std::fs::read_dir(home.join("c/upper")).unwrap().collect();
    assert_eq!(
        upper.len(),
        threads * 4,
        "writes through merged/ landed in upper/"
    );
}

/// Two creates of the same id: exactly one wins, the other gets LayerExists. Remove racing
/// get: every get either mounts or says the layer is gone, and nothing is left mounted or
/// half-removed.
#[test]
fn double_create_and_remove_racing_get() {
    let t = test_root();
    let home = t.home();
    let d0 = driver(&home);
    let tar = layer_tar("img", 20);
    d0.create("img", None, &no_opts()).unwrap();
    d0.apply_diff("img", None, &mut &tar[..]).unwrap();
    for k in 0..50 * scale() {
        let id = format!("race{k}");
        let barrier = Arc::new(Barrier::new(2));
        let results: Vec<_> = (0..2)
            .map(|_| {
                let b = barrier.clone();
                let home = home.clone();
                let id = id.clone();
                std::thread::spawn(move || {
                    let d = driver(&home);
                    b.wait();
                    d.create_read_write(&id, Some("img"), &no_opts())
                })
            })
            .collect::<Vec<_>>() // spawn both before joining either
            .into_iter()
            .map(|h| h.join().unwrap())
            .collect();
        let wins = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(wins, 1, "{id}: {results:?}");
        assert!(results
            .iter()
            .any(|r| matches!(r, Err(DriverError::LayerExists { .. }))));

        // get (in its own driver instance) racing remove (in another).
        let b = Arc::new(Barrier::new(2));
        let (h1, h2) = (home.clone(), home.clone());
        let (i1, i2) = (id.clone(), id.clone());
        let b1 = b.clone();
        let getter = std::thread::spawn(move || {
            let d = driver(&h1);
            b1.wait();
            match d.get(&i1, None) {
                Ok(_) => {
                    let _ = d.put(&i1);
                }
                Err(DriverError::LayerNotFound { .. }) => {}
                Err(e) => {
                    // Lost the race in the middle of mounting: the layer vanished under it.
                    let msg = e.to_string();
                    assert!(
                        msg.contains("not exist") || msg.contains("No such file"),
                        "get racing remove: {msg}"
                    );
                }
            }
        });
        let remover = std::thread::spawn(move || {
            let d = driver(&h2);
            b.wait();
            d.remove(&i2)
        });
        getter.join().unwrap();
        remover.join().unwrap().unwrap();
        assert!(!d0.exists(&id));
    }
    assert!(
        mounts_under(&home).is_empty(),
        "left mounted: {:?}",
        mounts_under(&home)
    );
    let left: Vec<_> = std::fs::read_dir(&home)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, ["img"], "left in the home");
}

/// Thousands of mixed operations from several threads, then the home is checked against the
/// mount table and every layer's tree.
#[test]
fn stress_mixed_operations_then_check_the_home() {
    let t = test_root();
    let home = t.home();
    let shared = Arc::new(driver(&home));
    let base = layer_tar("base", 30);
    shared.create("base", None, &no_opts()).unwrap();
    shared.apply_diff("base", None, &mut &base[..]).unwrap();
    let base_tree = strip(manifest(&home.join("base/root")));
    shared
        .create_read_write("shared-c", Some("base"), &no_opts())
        .unwrap();
    let threads = 4;
    let rounds = 125 * scale();
    let ops = Arc::new(AtomicUsize::new(0));
    let hs: Vec<_> = (0..threads)
        .map(|tid| {
            let shared = shared.clone();
            let home = home.clone();
            let ops = ops.clone();
            std::thread::spawn(move || {
                let own = driver(&home); // like another process
                let mut rng = 0x2545_f491_4f6c_dd1du64 ^ tid as u64;
                let mut next = move || {
                    rng ^= rng << 13;
                    rng ^= rng >> 7;
                    rng ^= rng << 17;
                    rng
                };
                let mut mine: Vec<String> = Vec::new();
                for r in 0..rounds {
                    let id = format!("t{tid}-l{r}");
                    // An image layer on base with one file of its own.
                    own.create(&id, Some("base"), &no_opts()).unwrap();
                    let tar = TarBuilder::new()
                        .file(&format!("own/{id}"), 0o644, id.as_bytes())
                        .build();
                    own.apply_diff(&id, Some("base"), &mut &tar[..]).unwrap();
                    ops.fetch_add(2, Ordering::Relaxed);
                    // A container on it, mounted and written, and released.
                    let c = format!("{id}-c");
                    own.create_read_write(&c, Some(&id), &no_opts()).unwrap();
                    let m = own.get(&c, None).unwrap();
                    std::fs::write(m.join("written"), b"w").unwrap();
                    own.put(&c).unwrap();
                    ops.fetch_add(3, Ordering::Relaxed);
                    // The shared container through the shared instance.
                    let m = shared.get("shared-c", None).unwrap();
                    assert!(m.join("base/f0").exists());
                    shared.put("shared-c").unwrap();
                    ops.fetch_add(2, Ordering::Relaxed);
                    // Lookups.
                    assert!(own.exists(&id) && own.exists(&c));
                    assert_eq!(own.layer_kind(&id).unwrap(), LayerKind::Image);
                    ops.fetch_add(3, Ordering::Relaxed);
                    mine.push(id);
                    // Remove some, containers first.
                    if next() % 3 == 0 {
                        let victim = mine.remove((next() % mine.len() as u64) as usize);
                        own.remove(&format!("{victim}-c")).unwrap();
                        own.remove(&victim).unwrap();
                        ops.fetch_add(2, Ordering::Relaxed);
                    }
                }
                mine
            })
        })
        .collect();
    let mut expect: Vec<String> = Vec::new();
    for h in hs {
        expect.extend(h.join().unwrap());
    }
    let total = ops.load(Ordering::Relaxed);
    assert!(total >= 2500 * scale(), "only {total} operations");
    eprintln!("stress: {total} driver operations");

    // The mount table: nothing under the home is mounted any more.
    assert!(
        mounts_under(&home).is_empty(),
        "left mounted: {:?}",
        mounts_under(&home)
    );
    // The home: exactly base, shared-c, and each surviving layer with its container.
    let mut want: Vec<String> = vec!["base".into(), "shared-c".into()];
    for id in &expect {
        want.push(id.clone());
        want.push(format!("{id}-c"));
    }
    want.sort();
    let mut got: Vec<String> = std::fs::read_dir(&home)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    got.sort();
    assert_eq!(
        got, want,
        "the home does not hold exactly the surviving layers"
    );
    let listed: Vec<String> = shared.layers().unwrap().into_iter().map(|l| l.id).collect();
    assert_eq!(listed, want, "layers() disagrees with the disk");
    // Every layer's tree.
    for id in &expect {
        let root = home.join(id).join("root");
        let mut m = strip(manifest(&root));
        let own = m
            .remove(&format!("own/{id}"))
            .expect("the layer's own file");
        assert_eq!(own.sha256.unwrap(), sha(id.as_bytes()));
        m.remove("own");
        assert!(m == base_tree, "{id}: the tree is not base + its own file");
        let c = home.join(format!("{id}-c"));
        assert_eq!(std::fs::read_to_string(c.join("lower-id")).unwrap(), *id);
        assert_eq!(std::fs::read(c.join("upper/written")).unwrap(), b"w");
        assert!(!c.join("merged").exists());
    }
    assert!(
        strip(manifest(&home.join("base/root"))) == base_tree,
        "base changed"
    );
}
