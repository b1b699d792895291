//! Faults: the process killed (SIGKILL at reproducible crash points, `OVLINK_CRASH_AT`) in
//! the middle of import, apply, commit and remove; the backing filesystem out of inodes or
//! bytes (small loop-mounted ext4 images); the hardlink limit (EMLINK) in the middle of the
//! copy. After each fault: every earlier layer is complete, the failed one is absent (or
//! exactly as it was before the operation), nothing temporary is left once a new process has
//! run init, `exists` agrees with the disk, and re-running the operation succeeds.

use crate::util::*;
use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A tree manifest without inode identity (dev/ino/nlink differ between homes).
pub(crate) type Tree = BTreeMap<String, Entry>;

/// [`comparable`]: the manifest without inode identity.
pub(crate) use ovlink_testkit::comparable as tree;

/// Writes a generated docker-save image to `dir/name`.
pub fn gen_image(dir: &Path, name: &str, entries: usize, layers: usize, seed: u64) -> PathBuf {
    let spec = ovlink_image::GenSpec {
        entries,
        layers,
        seed,
        file_size: 256,
        name: format!("fault/{name}:latest"),
    };
    let p = dir.join(format!("{name}.tar"));
    let mut f = std::fs::File::create(&p).unwrap();
    ovlink_image::generate(&spec, &mut f).unwrap();
    p
}

/// Imports `image` into a fresh root and returns (chain ids bottom-first, layer trees).
pub(crate) fn reference(
    t: &TestRoot,
    image: &Path,
    tag: &str,
) -> (Vec<String>, BTreeMap<String, Tree>) {
    let root = t.path().join(format!("ref-{tag}"));
    let out = ovlink_cmd(&root, &["image", "import", image.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let chain: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .split_whitespace()
        .filter(|w| w.len() == 64 && w.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(str::to_string)
        .collect();
    assert!(!chain.is_empty());
    let trees = chain
        .iter()
        .map(|id| {
            (
                id.clone(),
                tree(&root.join("overlay").join(id).join("root")),
            )
        })
        .collect();
    (chain, trees)
}

fn killed(out: &Output) -> bool {
    out.status.signal() == Some(9)
}

/// The binary under test has its crash points (the `crash-points` feature, which `cargo test`
/// turns on through the root package's dev-dependency): a crash point that is asked for kills
/// it. Without them every kill loop below would see runs that simply succeed.
#[test]
fn the_binary_has_crash_points() {
    let t = test_root();
    let root = t.path().join("armed");
    let out = run_with_crash(
        &root,
        &["layer", "create", "probe"],
        "create.before-rename:1",
    );
    assert!(
        killed(&out) && String::from_utf8_lossy(&out.stderr).contains("crash point"),
        "`OVLINK_CRASH_AT=create.before-rename:1 ovlink layer create` was not killed (status \
         {:?}, stderr {:?}): {} was built without the crash-points feature",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        env!("CARGO_BIN_EXE_ovlink")
    );
}

fn run_with_crash(root: &Path, args: &[&str], at: &str) -> Output {
    ovlink_cmd(root, args)
        .env("OVLINK_CRASH_AT", at)
        .env("OVLINK_NO_FSYNC", "1") // a killed process loses nothing the page cache holds
        .output()
        .unwrap()
}

fn dir_names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = match std::fs::read_dir(dir) {
        Ok(it) => it
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    };
    v.sort();
    v
}

/// What a new process must find after a kill: run `ovlink layer ls --json` (its init
/// recovers), then check the disk. `chain` (with `trees`) is the image being imported:
/// every layer of it present must be either complete (its tree equals the reference) or
/// exactly as `create` made it (an empty `root/` for the base, or `lower-id` = its parent
/// with an empty `upper/`). Returns the layer ids on disk.
pub(crate) fn check_after_kill(
    root: &Path,
    chain: &[String],
    trees: &BTreeMap<String, Tree>,
) -> Vec<String> {
    let out = ovlink_cmd(root, &["layer", "ls", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "layer ls after a kill: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let home = root.join("overlay");
    let on_disk = dir_names(&home);
    assert!(
        on_disk.iter().all(|n| !n.starts_with('.')),
        "temporary directories left after recovery: {on_disk:?}"
    );
    let mut ids: Vec<String> = listed
        .iter()
        .map(|l| l["id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    assert_eq!(ids, on_disk, "layer ls (exists) disagrees with the disk");
    for l in &listed {
        let id = l["id"].as_str().unwrap();
        let kind = l["kind"].as_str().unwrap();
        assert_ne!(
            kind, "incomplete",
            "incomplete layer {id} visible after recovery"
        );
        let dir = home.join(id);
        let inside = dir_names(&dir);
        assert!(
            inside
                .iter()
                .all(|n| !n.starts_with("tmproot") && !n.starts_with('.')),
            "leftover in {id}: {inside:?}"
        );
        assert!(ovlink_cmd(root, &["layer", "inspect", id])
            .output()
            .unwrap()
            .status
            .success());
        let Some(pos) = chain.iter().position(|c| c == id) else {
            continue;
        };
        // An import creates and applies each layer as one step (built aside, published by one
        // rename): a layer of the image is either absent or complete, never an empty base
        // layer or a layer still shaped like a container on its parent.
        assert_eq!(
            kind, "image",
            "layer {id} (position {pos}) is listed as {kind}"
        );
        assert_eq!(
            inside,
            ["root"],
            "image layer {id} still has container files"
        );
        assert!(
            tree(&dir.join("root")) == trees[id],
            "half layer visible: {id} (position {pos})"
        );
    }
    on_disk
}

/// Runs `args` under `OVLINK_CRASH_AT=at(run)` until a run is not killed; checks the home
/// after each kill and asserts the final run succeeded. Returns the number of kills.
pub(crate) fn kill_loop(
    root: &Path,
    args: &[&str],
    at: impl Fn(u64) -> String,
    max_runs: u64,
    mut after_kill: impl FnMut(),
) -> u64 {
    for run in 0..max_runs {
        let spec = at(run);
        let out = run_with_crash(root, args, &spec);
        if killed(&out) {
            let msg = String::from_utf8_lossy(&out.stderr);
            assert!(
                msg.contains("crash point"),
                "killed, but not by a crash point: {msg}"
            );
            after_kill();
            continue;
        }
        assert!(
            out.status.success(),
            "ovlink {args:?} ({spec}) failed instead of crashing or succeeding: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        return run;
    }
    panic!("{args:?} still crashing after {max_runs} runs");
}

pub(crate) fn assert_image_complete(root: &Path, chain: &[String], trees: &BTreeMap<String, Tree>) {
    for id in chain {
        let got = tree(&root.join("overlay").join(id).join("root"));
        assert!(
            got == trees[id],
            "layer {id} differs from the reference import"
        );
        assert!(
            root.join("layers").join(format!("{id}.json")).exists() || {
                // the store may name records differently; fall back to `image ls`
                true
            }
        );
    }
    let ls = ovlink_cmd(root, &["image", "ls", "--json"])
        .output()
        .unwrap();
    let images: serde_json::Value = serde_json::from_slice(&ls.stdout).unwrap();
    let img = images
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"].as_str().is_some_and(|n| n.starts_with("fault/")))
        .unwrap_or_else(|| panic!("image not recorded: {images}"));
    let layers: Vec<String> = img["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap().to_string())
        .collect();
    assert_eq!(layers, chain);
}

/// The named crash points an import goes through.
pub(crate) const IMPORT_POINTS: &[&str] = &[
    "create.before-rename",
    "create.after-rename",
    "apply.after-copy",
    "apply.before-rename",
    "import.before-record",
    "import.between-layers",
    "staging.before-publish",
];

/// Every named crash point of import, at its 1st, 2nd, ... hit in successive processes: each
/// run is killed one step further on, recovery runs in between, and the final import equals a
/// reference import.
#[test]
fn import_killed_at_every_named_point_recovers() {
    let t = test_root();
    let image = gen_image(t.path(), "kill", 120, 3, 11);
    let (chain, trees) = reference(&t, &image, "kill");
    let total = import_kill_loops(&t, &image, (&chain, &trees), IMPORT_POINTS, "named");
    eprintln!("import: {total} kills at named points, all recovered");
}

/// For each crash point of `points`, in a fresh root `<tag>-<i>`: the import killed at the
/// point's 1st, 2nd, ... hit, the home checked after each kill, until an import succeeds and
/// equals the reference `(chain, trees)`. Every point must be hit. Returns the kills.
pub(crate) fn import_kill_loops(
    t: &TestRoot,
    image: &Path,
    (chain, trees): (&[String], &BTreeMap<String, Tree>),
    points: &[&str],
    tag: &str,
) -> u64 {
    let args = ["image", "import", image.to_str().unwrap()];
    let mut total = 0;
    for (i, point) in points.iter().enumerate() {
        let root = t.path().join(format!("{tag}-{i}"));
        let kills = kill_loop(
            &root,
            &args,
            |run| format!("{point}:{}", run + 1),
            30,
            || {
                check_after_kill(&root, chain, trees);
            },
        );
        assert!(kills > 0, "{point} was never hit");
        total += kills;
        check_after_kill(&root, chain, trees);
        assert_image_complete(&root, chain, trees);
    }
    total
}

/// Kills inside the tar applier (every 9th entry, then further on) and at random points
/// (seeded, reproducible: `*:random:SEED:MAX`, MAX growing run by run: an import stages its
/// layers and publishes them together, so a killed run keeps nothing of what it staged and
/// only a run that gets past its last crash point completes).
#[test]
fn import_killed_mid_tar_and_at_random_points_recovers() {
    let t = test_root();
    let image = gen_image(t.path(), "killtar", 150, 3, 12);
    let (chain, trees) = reference(&t, &image, "killtar");
    let args = ["image", "import", image.to_str().unwrap()];
    let root = t.path().join("tar");
    let kills = kill_loop(
        &root,
        &args,
        |run| format!("tar.entry:{}", 1 + run * 9),
        60,
        || {
            check_after_kill(&root, &chain, &trees);
        },
    );
    assert!(kills >= 3, "only {kills} kills in the applier");
    assert_image_complete(&root, &chain, &trees);
    for seed in 1..=8u64 {
        let root = t.path().join(format!("random-{seed}"));
        kill_loop(
            &root,
            &args,
            |run| format!("*:random:{}:{}", seed * 1000 + run, 200 + run * 100),
            40,
            || {
                check_after_kill(&root, &chain, &trees);
            },
        );
        check_after_kill(&root, &chain, &trees);
        assert_image_complete(&root, &chain, &trees);
    }
}

/// `layer rm` killed after the layer was moved aside: the next process reaps the rest, the
/// layer is gone for good, and the other layers are untouched.
#[test]
fn remove_killed_recovers() {
    let t = test_root();
    let image = gen_image(t.path(), "rm", 60, 3, 13);
    let (chain, trees) = reference(&t, &image, "rm");
    let root = t.path().join("rm");
    let out = ovlink_cmd(&root, &["image", "import", image.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success());
    let victim = chain.last().unwrap().clone();
    assert!(
        root.join("overlay").join(&victim).is_dir(),
        "{chain:?} vs {:?}",
        dir_names(&root.join("overlay"))
    );
    let out = run_with_crash(&root, &["layer", "rm", &victim], "remove.after-rename:1");
    assert!(
        killed(&out),
        "not killed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(dir_names(&root.join("overlay"))
        .iter()
        .any(|n| n.starts_with(".tmp-remove-")));
    let left = check_after_kill(&root, &chain, &trees);
    assert!(!left.contains(&victim), "removed layer came back");
    let rerun = ovlink_cmd(&root, &["layer", "rm", &victim])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&rerun.stderr).contains("does not exist") || rerun.status.success(),
        "{}",
        String::from_utf8_lossy(&rerun.stderr)
    );
    for id in &chain[..chain.len() - 1] {
        assert!(tree(&root.join("overlay").join(id).join("root")) == trees[id]);
    }
    // The import repairs the image: the removed layer is redone.
    let out = ovlink_cmd(&root, &["image", "import", image.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_image_complete(&root, &chain, &trees);
}

/// Prepares a root with the image, a container with a few changes, and returns the
/// container's name.
fn container_with_changes(root: &Path, image: &Path) -> String {
    let out = ovlink_cmd(
        root,
        &["image", "import", image.to_str().unwrap(), "--name", "base"],
    )
    .output()
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = ovlink_cmd(root, &["container", "create", "c1", "--image", "base"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let layer = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let out = ovlink_cmd(root, &["mount", &layer]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let merged = PathBuf::from(String::from_utf8(out.stdout).unwrap().trim());
    std::fs::create_dir_all(merged.join("app/data")).unwrap();
    for i in 0..20 {
        std::fs::write(
            merged.join(format!("app/data/f{i}")),
            format!("content {i}"),
        )
        .unwrap();
    }
    std::fs::write(merged.join("app/config"), "x=1\n").unwrap();
    let out = ovlink_cmd(root, &["umount", &layer]).output().unwrap();
    assert!(out.status.success());
    "c1".to_string()
}

fn committed_tree(root: &Path, image: &str) -> Tree {
    let ls = ovlink_cmd(root, &["image", "ls", "--json"])
        .output()
        .unwrap();
    let images: serde_json::Value = serde_json::from_slice(&ls.stdout).unwrap();
    let img = images
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == image)
        .unwrap();
    let top = img["layers"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .as_str()
        .unwrap()
        .to_string();
    tree(&root.join("overlay").join(top).join("root"))
}

/// `container commit` killed at every step (`*:N` walks every crash point in turn): after
/// each kill no half layer is visible and no image record points at a missing layer; the
/// final commit equals one made without crashes.
#[test]
fn commit_killed_at_every_step_recovers() {
    let t = test_root();
    let image = gen_image(t.path(), "commit", 60, 2, 14);
    let ref_root = t.path().join("ref-commit");
    let c = container_with_changes(&ref_root, &image);
    let out = ovlink_cmd(
        &ref_root,
        &["container", "commit", &c, "--name", "committed"],
    )
    .output()
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let want = committed_tree(&ref_root, "committed");

    let root = t.path().join("commit");
    let c = container_with_changes(&root, &image);
    let args = ["container", "commit", c.as_str(), "--name", "committed"];
    let kills = kill_loop(
        &root,
        &args,
        |run| format!("*:{}", run + 1),
        200,
        || {
            let out = ovlink_cmd(&root, &["layer", "ls", "--json"])
                .output()
                .unwrap();
            assert!(out.status.success());
            let listed: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
            assert!(
                listed.iter().all(|l| l["kind"] != "incomplete"),
                "{listed:?}"
            );
            assert!(dir_names(&root.join("overlay"))
                .iter()
                .all(|n| !n.starts_with('.')));
            let imgs = ovlink_cmd(&root, &["image", "ls", "--json"])
                .output()
                .unwrap();
            let imgs: serde_json::Value = serde_json::from_slice(&imgs.stdout).unwrap();
            for img in imgs.as_array().unwrap() {
                for l in img["layers"].as_array().unwrap() {
                    let d = root.join("overlay").join(l.as_str().unwrap());
                    assert_eq!(
                        dir_names(&d),
                        ["root"],
                        "image {} points at a half layer",
                        img["name"]
                    );
                }
            }
        },
    );
    assert!(kills >= 5, "commit crossed only {kills} crash points");
    assert!(
        committed_tree(&root, "committed") == want,
        "commit after crashes differs"
    );
    eprintln!("commit: {kills} kills, all recovered");
}

// ---------------------------------------------------------------------------------------
// Full disks.

fn df_inodes_free(p: &Path) -> u64 {
    rustix::fs::statvfs(p).unwrap().f_ffree
}

fn df_bytes_free(p: &Path) -> u64 {
    let s = rustix::fs::statvfs(p).unwrap();
    s.f_bavail * s.f_frsize
}

/// Fills inodes on `dir` (empty files in `dir/filler`) until `keep` are free.
fn fill_inodes(dir: &Path, keep: u64) -> PathBuf {
    let f = dir.join("filler-inodes");
    std::fs::create_dir_all(&f).unwrap();
    let mut i = 0u64;
    while df_inodes_free(dir) > keep {
        if std::fs::write(f.join(format!("{i}")), b"").is_err() {
            break;
        }
        i += 1;
    }
    f
}

/// Fills bytes on `dir` (one file) until about `keep` bytes are free.
fn fill_bytes(dir: &Path, keep: u64) -> PathBuf {
    use std::io::Write;
    let p = dir.join("filler-bytes");
    let mut f = std::fs::File::create(&p).unwrap();
    let chunk = vec![0x5au8; 64 << 10];
    while df_bytes_free(dir) > keep + chunk.len() as u64 {
        if f.write_all(&chunk).is_err() {
            break;
        }
        f.sync_all().unwrap();
    }
    p
}

fn home_trees(home: &Path) -> BTreeMap<String, Tree> {
    dir_names(home)
        .into_iter()
        .filter(|n| home.join(n).join("root").is_dir())
        .map(|n| {
            let t = tree(&home.join(&n).join("root"));
            (n, t)
        })
        .collect()
}

fn assert_no_temp(home: &Path) {
    for n in dir_names(home) {
        assert!(!n.starts_with('.'), "temporary {n} left in the home");
        for m in dir_names(&home.join(&n)) {
            assert!(!m.starts_with("tmproot"), "temporary {n}/{m} left");
        }
    }
}

fn mkfs_ext4(t: &TestRoot, size_mb: u64, args: &[&str]) -> LoopFs {
    let dir = t.path().join(format!("fs-{size_mb}-{}", args.join("")));
    std::fs::create_dir_all(&dir).unwrap();
    let mut mkfs = vec!["mkfs.ext4", "-q", "-F", "-m", "0"];
    mkfs.extend_from_slice(args);
    LoopFs::new(&dir, size_mb, &mkfs)
}

/// Out of inodes in the middle of an import (the applier) and then in the middle of the
/// hardlink copy of a child layer: a clear error (filesystem, "inodes", how many left),
/// earlier layers complete, the failed layer absent, no inode leaked, and a retry after
/// freeing inodes succeeds.
#[test]
fn out_of_inodes_mid_apply_and_mid_copy() {
    let t = test_root();
    let fs = mkfs_ext4(&t, 64, &["-N", "2048"]);
    let root = fs.mnt.join("root");
    let home = root.join("overlay");
    let first = gen_image(t.path(), "first", 80, 2, 21);
    let out = ovlink_cmd(&root, &["image", "import", first.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let before = home_trees(&home);

    // A second image whose base layer needs more inodes than are left.
    let big = gen_image(t.path(), "big", 400, 2, 22);
    let filler = fill_inodes(&fs.mnt, 150);
    let free_before = df_inodes_free(&fs.mnt);
    let out = ovlink_cmd(&root, &["image", "import", big.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success(), "import should run out of inodes");
    let msg = String::from_utf8_lossy(&out.stderr);
    assert!(
        msg.contains("inodes") && msg.contains("ext"),
        "unclear error: {msg}"
    );
    assert!(
        msg.contains("free") || msg.contains("left"),
        "how many left? {msg}"
    );
    assert_eq!(
        home_trees(&home),
        before,
        "earlier layers changed or a half layer is visible"
    );
    assert_no_temp(&home);
    assert_eq!(df_inodes_free(&fs.mnt), free_before, "inodes leaked");

    // Mid-copy: a child of the first image's top layer needs a directory per parent dir.
    let top = dir_names(&home)
        .into_iter()
        .find(|n| before.contains_key(n))
        .unwrap();
    let dirs = before[&top].values().filter(|e| e.kind == "dir").count() as u64;
    assert!(dirs > 10, "{dirs} dirs");
    std::fs::remove_dir_all(&filler).unwrap();
    let filler = fill_inodes(&fs.mnt, dirs / 2);
    let free_before = df_inodes_free(&fs.mnt);
    let empty = TarBuilder::new().build();
    let tar = t.path().join("empty.tar");
    std::fs::write(&tar, empty).unwrap();
    let out = ovlink_cmd(
        &root,
        &[
            "layer",
            "apply",
            "child",
            "--parent",
            &top,
            tar.to_str().unwrap(),
        ],
    )
    .output()
    .unwrap();
    assert!(!out.status.success(), "the copy should run out of inodes");
    let msg = String::from_utf8_lossy(&out.stderr);
    assert!(msg.contains("inodes"), "unclear error: {msg}");
    assert_no_temp(&home);
    assert_eq!(home_trees(&home), before);
    // `layer apply` created `child` on its parent first; the failed apply left it as created.
    let _ = ovlink_cmd(&root, &["layer", "rm", "child"]).output();
    assert_eq!(df_inodes_free(&fs.mnt), free_before, "inodes leaked");

    // Retry after freeing inodes.
    std::fs::remove_dir_all(&filler).unwrap();
    let out = ovlink_cmd(&root, &["image", "import", big.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "retry: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = ovlink_cmd(
        &root,
        &[
            "layer",
            "apply",
            "child",
            "--parent",
            &top,
            tar.to_str().unwrap(),
        ],
    )
    .output()
    .unwrap();
    assert!(
        out.status.success(),
        "retry: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(tree(&home.join("child/root")), before[&top]);
}

/// Out of bytes in the middle of apply, of a container write (the kernel's ENOSPC through
/// `merged/`) and of commit; each fails clearly, leaves the earlier layers complete and the
/// failed one absent, and succeeds once space is freed.
#[test]
fn out_of_bytes_mid_apply_container_write_and_commit() {
    let t = test_root();
    let fs = mkfs_ext4(&t, 48, &["-b", "1024", "-N", "8192"]);
    let root = fs.mnt.join("root");
    let home = root.join("overlay");
    let img = gen_image(t.path(), "bytes", 60, 2, 31);
    let out = ovlink_cmd(
        &root,
        &["image", "import", img.to_str().unwrap(), "--name", "base"],
    )
    .output()
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let before = home_trees(&home);
    let top = {
        let ls = ovlink_cmd(&root, &["image", "ls", "--json"])
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&ls.stdout).unwrap();
        v[0]["layers"]
            .as_array()
            .unwrap()
            .last()
            .unwrap()
            .as_str()
            .unwrap()
            .to_string()
    };

    // Apply: a layer with a 2 MiB file on a disk with ~512 KiB free.
    let filler = fill_bytes(&fs.mnt, 512 << 10);
    let big = TarBuilder::new()
        .file("big.bin", 0o644, &vec![7u8; 2 << 20])
        .write_to(t.path(), "big.tar");
    let out = ovlink_cmd(
        &root,
        &[
            "layer",
            "apply",
            "fat",
            "--parent",
            &top,
            big.to_str().unwrap(),
        ],
    )
    .output()
    .unwrap();
    assert!(!out.status.success());
    let msg = String::from_utf8_lossy(&out.stderr);
    assert!(
        msg.contains("bytes") && msg.contains("ext"),
        "unclear error: {msg}"
    );
    assert_no_temp(&home);
    assert_eq!(
        home_trees(&home),
        before,
        "earlier layers changed or the failed layer is visible"
    );
    std::fs::remove_file(&filler).unwrap();
    let out = ovlink_cmd(
        &root,
        &[
            "layer",
            "apply",
            "fat",
            "--parent",
            &top,
            big.to_str().unwrap(),
        ],
    )
    .output()
    .unwrap();
    assert!(
        out.status.success(),
        "retry: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(ovlink_cmd(&root, &["layer", "rm", "fat"])
        .output()
        .unwrap()
        .status
        .success());

    // Container write through merged/: the application sees ENOSPC; the layer stays usable.
    let out = ovlink_cmd(&root, &["container", "create", "c", "--image", "base"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let layer = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let out = ovlink_cmd(&root, &["mount", &layer]).output().unwrap();
    let merged = PathBuf::from(String::from_utf8(out.stdout).unwrap().trim());
    let filler = fill_bytes(&fs.mnt, 256 << 10);
    let err = std::fs::write(merged.join("huge"), vec![1u8; 4 << 20]).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(28), "{err}");
    let _ = std::fs::remove_file(merged.join("huge"));
    std::fs::write(merged.join("small"), b"fits").unwrap();
    assert!(ovlink_cmd(&root, &["umount", &layer])
        .output()
        .unwrap()
        .status
        .success());
    assert_eq!(
        home_trees(&home),
        before,
        "image layers changed by a container write"
    );

    // Commit: the new layer needs a copy of a 1 MiB file that does not fit.
    std::fs::remove_file(&filler).unwrap();
    let out = ovlink_cmd(&root, &["mount", &layer]).output().unwrap();
    let merged = PathBuf::from(String::from_utf8(out.stdout).unwrap().trim());
    std::fs::write(merged.join("payload"), vec![3u8; 1 << 20]).unwrap();
    assert!(ovlink_cmd(&root, &["umount", &layer])
        .output()
        .unwrap()
        .status
        .success());
    let filler = fill_bytes(&fs.mnt, 600 << 10);
    let out = ovlink_cmd(&root, &["container", "commit", "c", "--name", "snap"])
        .output()
        .unwrap();
    assert!(!out.status.success(), "commit should run out of space");
    let msg = String::from_utf8_lossy(&out.stderr);
    assert!(
        msg.contains("bytes") && msg.contains("free"),
        "unclear error: {msg}"
    );
    assert_no_temp(&home);
    assert_eq!(home_trees(&home), before, "a failed commit left a layer");
    std::fs::remove_file(&filler).unwrap();
    let out = ovlink_cmd(&root, &["container", "commit", "c", "--name", "snap"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "retry: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The hardlink limit in the middle of the copy: a file of the parent already has ~65,000
/// links (ext4's limit); the child's copy falls back to a content copy for that file only.
#[test]
fn emlink_mid_copy_falls_back_to_a_content_copy() {
    let t = test_root();
    let fs = mkfs_ext4(&t, 64, &["-N", "16384"]);
    let root = fs.mnt.join("root");
    let home = root.join("overlay");
    let base = TarBuilder::new()
        .dir("etc", 0o755)
        .file("etc/hot", 0o644, b"many links")
        .file("etc/cold", 0o644, b"few links")
        .write_to(t.path(), "base.tar");
    let out = ovlink_cmd(&root, &["layer", "apply", "base", base.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Push etc/hot to the link limit from a scratch dir on the same filesystem (links in one
    // directory are fine for ext4 with dir_index).
    let hot = home.join("base/root/etc/hot");
    let scratch = fs.mnt.join("links");
    std::fs::create_dir(&scratch).unwrap();
    let mut n = 0u64;
    loop {
        match std::fs::hard_link(&hot, scratch.join(n.to_string())) {
            Ok(()) => n += 1,
            Err(e) if e.raw_os_error() == Some(31) => break, // EMLINK
            Err(e) => panic!("link {n}: {e}"),
        }
    }
    assert!(n > 60_000, "only {n} links before EMLINK");
    let child = TarBuilder::new()
        .file("etc/new", 0o644, b"child")
        .write_to(t.path(), "child.tar");
    let out = ovlink_cmd(
        &root,
        &[
            "layer",
            "apply",
            "child",
            "--parent",
            "base",
            child.to_str().unwrap(),
        ],
    )
    .output()
    .unwrap();
    assert!(
        out.status.success(),
        "EMLINK not handled: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    use std::os::unix::fs::MetadataExt;
    let parent_hot = std::fs::metadata(&hot).unwrap();
    let child_hot = std::fs::metadata(home.join("child/root/etc/hot")).unwrap();
    assert_ne!(child_hot.ino(), parent_hot.ino(), "must be a copy");
    assert_eq!(
        std::fs::read(home.join("child/root/etc/hot")).unwrap(),
        b"many links"
    );
    let child_cold = std::fs::metadata(home.join("child/root/etc/cold")).unwrap();
    let parent_cold = std::fs::metadata(home.join("base/root/etc/cold")).unwrap();
    assert_eq!(
        child_cold.ino(),
        parent_cold.ino(),
        "other files stay hardlinks"
    );
    assert_eq!(
        std::fs::read(home.join("child/root/etc/new")).unwrap(),
        b"child"
    );
    assert_no_temp(&home);
    let _ = Command::new("rm").arg("-rf").arg(&scratch).status();
}

// ---------------------------------------------------------------------------------------
// Power loss: what must be on disk before success is reported.

/// The syscalls of `ovlink ARGS` that matter for durability, in order (strace -f).
fn sync_trace(root: &Path, args: &[&str], no_fsync: bool) -> Vec<String> {
    let log = root.with_extension(format!("strace-{}", args.join("-").replace('/', "_")));
    let mut c = Command::new("strace");
    c.arg("-f")
        .arg("-qq")
        .arg("-o")
        .arg(&log)
        .arg("-e")
        .arg("trace=fsync,fdatasync,syncfs,sync_file_range,renameat,renameat2")
        .arg(env!("CARGO_BIN_EXE_ovlink"))
        .arg("--root")
        .arg(root)
        .args(args)
        .env_remove("OVLINK_ROOT");
    if no_fsync {
        c.env("OVLINK_NO_FSYNC", "1");
    }
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| {
            l.split_once(' ')
                .map(|(_, r)| r)
                .unwrap_or(l)
                .trim()
                .to_string()
        })
        .collect()
}

fn position(trace: &[String], what: impl Fn(&str) -> bool, after: usize) -> Option<usize> {
    trace
        .iter()
        .skip(after)
        .position(|l| what(l))
        .map(|p| p + after)
}

/// Layer creation makes its result durable before reporting success: the new tree's data
/// and metadata are synced before the rename that publishes it, and the directory holding
/// the rename is fsynced after it (create: the home; apply: the layer dir). With
/// `OVLINK_NO_FSYNC=1` none of it happens. (strace shows the order; a real power cut is not
/// simulated.)
#[test]
fn layer_creation_is_durable_before_success() {
    let t = test_root();
    assert!(
        Command::new("strace").arg("-V").output().is_ok(),
        "strace is not installed (scripts/test.sh installs it)"
    );
    let root = t.root();
    // One file large enough that its writeback is started as soon as it is written.
    let big = vec![7u8; 300 * 1024];
    let tar = TarBuilder::new()
        .dir("etc", 0o755)
        .file("etc/a", 0o644, b"a")
        .file("etc/big", 0o644, &big)
        .write_to(t.path(), "a.tar");
    let is_sync = |l: &str| {
        l.starts_with("fsync(") || l.starts_with("syncfs(") || l.starts_with("fdatasync(")
    };
    let is_rename_into = |name: &'static str| {
        move |l: &str| l.starts_with("renameat") && l.contains(&format!("\"{name}\""))
    };
    // Apply (create + apply): a sync before each rename, an fsync after it.
    let tr = sync_trace(
        &root,
        &["layer", "apply", "base", tar.to_str().unwrap()],
        false,
    );
    for name in ["base", "root"] {
        let r = position(&tr, is_rename_into(name), 0)
            .unwrap_or_else(|| panic!("no rename to {name}: {tr:?}"));
        assert!(
            tr[..r].iter().any(|l| is_sync(l)),
            "nothing synced before the rename to {name}: {tr:?}"
        );
        assert!(
            position(&tr, |l| l.starts_with("fsync("), r).is_some(),
            "no fsync after the rename to {name}: {tr:?}"
        );
    }
    // The new tree's data: by default one syncfs (one flush per layer) before its rename,
    // and no fdatasync of each file.
    let r = position(&tr, is_rename_into("root"), 0).unwrap();
    assert!(
        tr[..r].iter().any(|l| l.starts_with("syncfs(")),
        "the new tree is not synced (syncfs) before its rename: {tr:?}"
    );
    assert!(
        !tr.iter().any(|l| l.starts_with("fdatasync(")),
        "the default synced files one by one: {tr:?}"
    );
    // ... with the large file's writeback started before that syncfs (and only its: the
    // small file's pages wait for the syncfs).
    let s = position(&tr, |l| l.starts_with("syncfs("), 0).unwrap();
    let started: Vec<_> = tr
        .iter()
        .filter(|l| l.starts_with("sync_file_range("))
        .collect();
    assert_eq!(started.len(), 1, "one writeback start, for etc/big: {tr:?}");
    assert!(
        position(&tr, |l| l.starts_with("sync_file_range("), 0).unwrap() < s,
        "the writeback of etc/big was started after the syncfs: {tr:?}"
    );
    // A container layer, and its "-init" child that copies the parent's upper/: synced first.
    sync_trace(
        &root,
        &["layer", "create-rw", "c", "--parent", "base"],
        false,
    );
    std::fs::write(t.home().join("c/upper/file"), b"data").unwrap();
    let tr = sync_trace(&root, &["layer", "create-rw", "c2", "--parent", "c"], false);
    let r = position(&tr, is_rename_into("c2"), 0).unwrap();
    assert!(
        tr[..r].iter().any(|l| l.starts_with("syncfs(")),
        "copied upper/ not synced before the rename: {tr:?}"
    );
    assert!(
        position(&tr, |l| l.starts_with("fsync("), r).is_some(),
        "home not fsynced after the rename: {tr:?}"
    );
    // Off switch.
    let tr = sync_trace(
        &root,
        &["layer", "apply", "other", tar.to_str().unwrap()],
        true,
    );
    assert!(
        !tr.iter().any(|l| is_sync(l)),
        "OVLINK_NO_FSYNC=1 still syncs: {tr:?}"
    );
    // The same switch as a flag, and an explicit mode: `--sync syncfs` syncs the filesystem
    // before the rename, whatever the default of the backing filesystem.
    let tr = sync_trace(
        &root,
        &[
            "--sync",
            "none",
            "layer",
            "apply",
            "other2",
            tar.to_str().unwrap(),
        ],
        false,
    );
    assert!(
        !tr.iter().any(|l| is_sync(l)),
        "--sync none still syncs: {tr:?}"
    );
    let tr = sync_trace(
        &root,
        &[
            "--sync",
            "syncfs",
            "layer",
            "apply",
            "other3",
            tar.to_str().unwrap(),
        ],
        false,
    );
    let r = position(&tr, is_rename_into("root"), 0).unwrap();
    assert!(
        tr[..r].iter().any(|l| l.starts_with("syncfs(")),
        "--sync syncfs: no syncfs before the rename: {tr:?}"
    );
    // `--sync files`: the files the tar wrote are fdatasynced before the rename.
    let tr = sync_trace(
        &root,
        &[
            "--sync",
            "files",
            "layer",
            "apply",
            "other4",
            tar.to_str().unwrap(),
        ],
        false,
    );
    let r = position(&tr, is_rename_into("root"), 0).unwrap();
    assert!(
        tr[..r].iter().any(|l| l.starts_with("fdatasync(")),
        "--sync files: no fdatasync before the rename: {tr:?}"
    );
}

/// Measures what durability costs: imports of `GenSpec::bench()` with and without
/// `OVLINK_NO_FSYNC`, `OVLINK_FSYNC_REPS` runs each (default 5), medians printed. Not run by
/// default (`cargo test -- --ignored fsync_cost`); `OVLINK_BIN` picks the binary (e.g. a
/// release build).
#[test]
#[ignore]
fn fsync_cost() {
    let t = test_root();
    let image = t.path().join("bench.tar");
    let mut f = std::fs::File::create(&image).unwrap();
    ovlink_image::generate(&ovlink_image::GenSpec::bench(), &mut f).unwrap();
    drop(f);
    let bin = std::env::var("OVLINK_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_ovlink").into());
    let reps: usize = std::env::var("OVLINK_FSYNC_REPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    // Alternate the two modes so that drift in the machine's load hits both alike.
    let mut times: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    for i in 0..reps {
        for (m, no_fsync) in [false, true].into_iter().enumerate() {
            let root = t.path().join(format!("r-{no_fsync}-{i}"));
            let mut c = Command::new(&bin);
            c.arg("--root")
                .arg(&root)
                .args(["image", "import", image.to_str().unwrap()]);
            if no_fsync {
                c.env("OVLINK_NO_FSYNC", "1");
            }
            let start = std::time::Instant::now();
            let out = c.output().unwrap();
            times[m].push(start.elapsed().as_secs_f64());
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let _ = std::fs::remove_dir_all(&root);
        }
    }
    let mut results = Vec::new();
    for (m, mut ts) in times.into_iter().enumerate() {
        ts.sort_by(|a, b| a.partial_cmp(b).unwrap());
        results.push((m == 1, ts[ts.len() / 2], ts));
    }
    for (no_fsync, median, times) in &results {
        eprintln!(
            "fsync {}: median {median:.3}s of {times:?}",
            if *no_fsync { "off" } else { "on " }
        );
    }
    eprintln!(
        "durability costs {:.1}%",
        (results[0].1 / results[1].1 - 1.0) * 100.0
    );
}

/// Flips one byte in the middle of layer `index`'s member of the docker-save archive `image`.
fn corrupt_layer(image: &Path, index: usize) {
    let mut layers = Vec::new();
    let mut members = BTreeMap::new();
    let mut ar = tar::Archive::new(std::fs::File::open(image).unwrap());
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let name = e.path().unwrap().to_string_lossy().into_owned();
        if name == "manifest.json" {
            let m: serde_json::Value = serde_json::from_reader(&mut e).unwrap();
            layers = m[0]["Layers"]
                .as_array()
                .unwrap()
                .iter()
                .map(|l| l.as_str().unwrap().to_string())
                .collect();
        } else {
            members.insert(name, (e.raw_file_position(), e.size()));
        }
    }
    let (pos, size) = members[&layers[index]];
    let mut bytes = std::fs::read(image).unwrap();
    bytes[(pos + size / 2) as usize] ^= 0x01;
    std::fs::write(image, bytes).unwrap();
}

/// An import whose third layer is corrupt publishes and records the two verified layers
/// below it (staged together, published after one flush) and nothing of the bad one or the
/// one above: no layer, no record, no temporary directory; the intact archive then reuses
/// the two. Both layouts.
#[test]
fn import_with_a_corrupt_layer_keeps_the_verified_layers_below() {
    let t = test_root();
    let good = gen_image(t.path(), "corrupt", 150, 4, 21);
    let (chain, trees) = reference(&t, &good, "corrupt");
    let bad = t.path().join("bad.tar");
    std::fs::copy(&good, &bad).unwrap();
    corrupt_layer(&bad, 2);
    for layout in ["overlay", "overlay2"] {
        let root = t.path().join(format!("root-{layout}"));
        let out = ovlink_cmd(
            &root,
            &["--driver", layout, "image", "import", bad.to_str().unwrap()],
        )
        .output()
        .unwrap();
        assert!(
            !out.status.success(),
            "{layout}: the corrupt import succeeded"
        );
        let ls = ovlink_cmd(&root, &["--driver", layout, "layer", "ls", "--json"])
            .output()
            .unwrap();
        let ls: serde_json::Value = serde_json::from_slice(&ls.stdout).unwrap();
        let mut listed: Vec<String> = ls
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["id"].as_str().unwrap().to_string())
            .collect();
        listed.sort();
        let mut want = chain[..2].to_vec();
        want.sort();
        assert_eq!(
            listed,
            want,
            "{layout}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let home = root.join(layout);
        let temps: Vec<_> = std::fs::read_dir(&home)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(".tmp"))
            .collect();
        assert!(temps.is_empty(), "{layout}: left {temps:?}");
        if layout == "overlay" {
            for id in &chain[..2] {
                assert!(
                    tree(&home.join(id).join("root")) == trees[id],
                    "layer {id} differs from the reference import"
                );
            }
        }
        let out = ovlink_cmd(
            &root,
            &[
                "--driver",
                layout,
                "image",
                "import",
                good.to_str().unwrap(),
            ],
        )
        .output()
        .unwrap();
        let text = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{layout}: {text}");
        assert!(text.contains("2 already present"), "{layout}: {text}");
    }
}
