//! Round two of the hardening (issue 11): layer ids, mount options and races, through the real
//! binary. Ids that overlayfs would unescape (`\.\.`, `\..`) or read as option syntax are
//! refused by every command on both layouts, and nothing appears in the sentinels a mount
//! through such an id would reach (`<root>/root`, `<root>/upper`, `<root>/work`,
//! `<root>/diff`); mount labels that add options are refused; and every id `layer create`
//! accepts (`c1`, Docker's `<hex>-init`) works with `changes`, `diff` and `diff-size`.

use crate::util::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Ids that must be refused everywhere (the first two are issue 11's escapes).
pub const HOSTILE_IDS: &[&str] = &[
    "\\.\\.", "\\..", "c\\..", "a\\b", "a b", "a=b", "a,b", "a:b", "-rf", "\t",
];

/// The directories a mount through `\.\.` / `\..` would use: `<root>/root` (a lowerdir of
/// `<home>/\.\./root`), `<root>/upper` and `<root>/work` (the legacy container `\..`),
/// `<root>/diff` (overlay2). Each holds a file; the caller compares manifests.
pub fn make_sentinels(root: &Path) -> Vec<PathBuf> {
    ["root", "upper", "work", "diff"]
        .iter()
        .map(|d| {
            let p = root.join(d);
            std::fs::create_dir_all(&p).unwrap();
            std::fs::write(p.join("sentinel"), b"outside the home").unwrap();
            p
        })
        .collect()
}

/// `--driver DRIVER ARGS…`.
fn with_driver<'a>(driver: &'a str, args: &[&'a str]) -> Vec<&'a str> {
    [&["--driver", driver][..], args].concat()
}

fn base_tar(t: &TestRoot) -> PathBuf {
    TarBuilder::new()
        .dir("etc", 0o755)
        .file("etc/passwd", 0o644, b"root:x:0:0::/root:/bin/sh\n")
        .write_to(t.path(), "base.tar")
}

/// Issue 11 item 1: `\.\.` as an image layer (a container on it would get `<root>/root` as
/// its lowerdir) and `\..` as a container layer (its upperdir would be `<root>/upper`) are
/// refused by every command of both layouts before anything is created; the sentinels and
/// the home are unchanged and nothing is mounted.
#[test]
fn backslash_and_option_syntax_ids_are_refused_everywhere() {
    for driver in ["overlay", "overlay2"] {
        let t = test_root();
        let tar = base_tar(&t);
        let tar = tar.to_str().unwrap();
        t.ok(&with_driver(driver, &["layer", "apply", "base", tar]));
        t.ok(&with_driver(
            driver,
            &["layer", "create-rw", "c1", "--parent", "base"],
        ));
        let sentinels = make_sentinels(&t.root());
        let before = (manifests(&sentinels), manifest(&t.root()));
        for id in HOSTILE_IDS {
            for args in [
                vec!["layer", "create", id],
                vec!["layer", "create", id, "--parent", "base"],
                vec!["layer", "create-rw", id, "--parent", "base"],
                vec!["layer", "create-rw", "c2", "--parent", id],
                vec!["layer", "apply", id, tar],
                vec!["layer", "apply", "n", "--parent", id, tar],
                vec!["layer", "rm", id],
                vec!["layer", "inspect", id],
                vec!["mount", id],
                vec!["umount", id],
                vec!["changes", id],
                vec!["changes", "c1", "--parent", id],
                vec!["diff-size", id],
                vec!["diff", id, "-o", "/dev/null"],
            ] {
                let err = t.fails(&with_driver(driver, &args));
                // clap reads a leading '-' as a flag: refused before the id rule sees it.
                let flag = id.starts_with('-') && err.contains("unexpected argument");
                assert!(
                    err.contains("invalid layer id") || flag,
                    "{driver} {args:?}: {err}"
                );
            }
        }
        assert!(t.mounts().is_empty(), "{driver}: {:?}", t.mounts());
        assert_eq!(
            (manifests(&sentinels), manifest(&t.root())),
            before,
            "{driver}: something changed"
        );
    }
}

/// Issue 10 / issue 11: `changes`, `diff` and `diff-size` accept every id `layer create`
/// accepts: `c1` on an image layer and Docker's `<hex>-init` (made by `container create`, and
/// by `layer create-rw` directly), with the same default parent as before (the layer's lower;
/// a container's init layer), on both layouts.
#[test]
fn changes_diff_and_diff_size_accept_every_layer_id() {
    every_layer_id_is_diffable("overlay");
}

/// The same on overlay2: the default parent is the one the layout recorded (its nearest
/// lower), so `changes c1` is `A /new`, `C /etc`, `D /etc/passwd`, not the whole tree.
#[test]
fn changes_diff_and_diff_size_accept_every_layer_id_overlay2() {
    every_layer_id_is_diffable("overlay2");
}

fn every_layer_id_is_diffable(driver: &str) {
    let t = test_root();
    let ok = |args: &[&str]| t.ok(&with_driver(driver, args));
    let tar = base_tar(&t);
    ok(&["layer", "apply", "base", tar.to_str().unwrap()]);
    ok(&["layer", "create-rw", "c1", "--parent", "base"]);
    let merged = ok(&["mount", "c1"]);
    std::fs::write(Path::new(merged.trim()).join("new"), b"12345").unwrap();
    std::fs::remove_file(Path::new(merged.trim()).join("etc/passwd")).unwrap();
    ok(&["umount", "c1"]);
    assert_eq!(
        ok(&["changes", "c1"]),
        "A /new\nC /etc\nD /etc/passwd\n",
        "{driver}"
    );
    assert_eq!(ok(&["diff-size", "c1"]).trim(), "5", "{driver}");
    let out = t.path().join("c1.tar");
    ok(&["diff", "c1", "-o", out.to_str().unwrap()]);
    assert!(std::fs::metadata(&out).unwrap().len() > 0, "{driver}");

    // Docker's ids made with the low-level calls: <hex>-init on the image layer, <hex> on it.
    let hex = "ab".repeat(32);
    let hex_init = format!("{hex}-init");
    ok(&["layer", "create-rw", &hex_init, "--parent", "base"]);
    let m = ok(&["mount", &hex_init]);
    std::fs::write(Path::new(m.trim()).join(".dockerenv"), b"").unwrap();
    ok(&["umount", &hex_init]);
    ok(&["layer", "create-rw", &hex, "--parent", &hex_init]);
    let m = ok(&["mount", &hex]);
    std::fs::write(Path::new(m.trim()).join("app"), b"abc").unwrap();
    ok(&["umount", &hex]);
    // The init layer against its lower (the image layer) by default, on both layouts.
    assert_eq!(ok(&["changes", &hex_init]), "A /.dockerenv\n", "{driver}");
    assert_eq!(ok(&["diff-size", &hex_init]).trim(), "0", "{driver}");
    // A container layer no `container create` recorded, against the default parent: the one
    // each layout recorded when the layer was made (the init layer it was created on), as for
    // a container that `container create` made.
    let (want, size) = ("A /app\n", "3");
    assert_eq!(ok(&["changes", &hex]), want, "{driver}");
    assert_eq!(ok(&["diff-size", &hex]).trim(), size, "{driver}");
    // Against its init layer, asked for, the container's own change only, on both layouts.
    assert_eq!(
        ok(&["changes", &hex, "--parent", &hex_init]),
        "A /app\n",
        "{driver}"
    );
    // Against the image layer, the init layer's file is a change of the container too.
    assert_eq!(
        ok(&["changes", &hex, "--parent", "base"]),
        "A /.dockerenv\nA /app\n",
        "{driver}"
    );
    for id in [&hex_init, &hex] {
        let out = t.path().join(format!("{id}.tar"));
        ok(&["diff", id, "-o", out.to_str().unwrap()]);
        assert!(std::fs::metadata(&out).unwrap().len() > 0, "{driver} {id}");
    }

    // A Docker-shaped container: <hex> on <hex>-init on the image's top layer.
    let img = t.path().join("img.tar");
    let layer = std::fs::read(&tar).unwrap();
    let diff_id = sha(&layer);
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":["sha256:{diff_id}"]}}}}"#
    );
    let cfg_name = format!("{}.json", sha(config.as_bytes()));
    let manifest =
        format!(r#"[{{"Config":"{cfg_name}","RepoTags":["app:1"],"Layers":["l/layer.tar"]}}]"#);
    TarBuilder::new()
        .file("manifest.json", 0o644, manifest.as_bytes())
        .file(&cfg_name, 0o644, config.as_bytes())
        .file("l/layer.tar", 0o644, &layer)
        .write_to(t.path(), "img.tar");
    ok(&["image", "import", img.to_str().unwrap()]);
    let id = ok(&["container", "create", "web", "--image", "app:1"]);
    let id = id.trim();
    let init = format!("{id}-init");
    assert_eq!(id.len(), 64, "{id}");
    // The init layer against its lower (the image's top layer): Docker's init files.
    let changes = ok(&["changes", &init]);
    assert!(changes.contains("A /.dockerenv\n"), "{driver}: {changes}");
    assert!(ok(&["diff-size", &init]).trim().parse::<u64>().is_ok());
    // The container against its init layer (the default parent): nothing yet.
    assert_eq!(ok(&["changes", id]), "", "{driver}");
    assert_eq!(ok(&["diff-size", id]).trim(), "0", "{driver}");
    let out = t.path().join("init.tar");
    ok(&["diff", &init, "-o", out.to_str().unwrap()]);
}

fn sha(b: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(b))
}

/// Issue 11 item 2: a mount label that would add options (`",upperdir=…,"`) is refused on
/// both layouts before anything is mounted; an ordinary label is accepted by the parser.
#[test]
fn mount_labels_that_add_options_are_refused() {
    for driver in ["overlay", "overlay2"] {
        let t = test_root();
        let tar = base_tar(&t);
        t.ok(&with_driver(
            driver,
            &["layer", "apply", "base", tar.to_str().unwrap()],
        ));
        t.ok(&with_driver(
            driver,
            &["layer", "create-rw", "c1", "--parent", "base"],
        ));
        let sentinels = make_sentinels(&t.root());
        let before = manifests(&sentinels);
        let evil_upper = format!(
            "\",upperdir={},workdir={},\"",
            t.root().join("upper").display(),
            t.root().join("work").display()
        );
        for label in [
            evil_upper.as_str(),
            "system_u:object_r:t:s0\",upperdir=/tmp,\"",
            "system_u:object_r:t:s0:c1,volatile",
            "a:b",
        ] {
            let err = t.fails(&with_driver(
                driver,
                &["mount", "c1", "--mount-label", label],
            ));
            assert!(err.contains("mount label"), "{driver} {label}: {err}");
        }
        assert!(t.mounts().is_empty(), "{driver}: {:?}", t.mounts());
        assert_eq!(manifests(&sentinels), before, "{driver}");
    }
}

/// A tar of `n` small files under `dir/` whose last entry is refused (`../escape`): it
/// fails late, after everything else was written.
fn late_failing_tar(n: usize, dir: &str) -> Vec<u8> {
    let mut b = TarBuilder::new().dir(dir, 0o755);
    for i in 0..n {
        b = b.file(&format!("{dir}/f{i}"), 0o644, &[b'a'; 512]);
    }
    b.raw_file("../escape", b"late").build()
}

/// Issue 11 item 8: two `layer apply X` at once, A with a tar that fails late, B with a good
/// one: B's success means X exists and is whole, every time. (Before: A created X, B applied
/// into it and reported success, then A's cleanup removed X.) 40 runs per layout.
#[test]
fn concurrent_applies_never_lose_the_winners_layer() {
    for driver in ["overlay", "overlay2"] {
        let t = test_root();
        let base = base_tar(&t);
        t.ok(&with_driver(
            driver,
            &["layer", "apply", "base", base.to_str().unwrap()],
        ));
        let bad = t.path().join("bad.tar");
        std::fs::write(&bad, late_failing_tar(600, "late")).unwrap();
        let good = TarBuilder::new()
            .dir("good", 0o755)
            .file("good/a", 0o644, b"winner")
            .file("good/b", 0o600, b"whole")
            .write_to(t.path(), "good.tar");
        for i in 0..40 {
            let id = format!("x{i}");
            let cmd = |tar: &Path| {
                let mut c = ovlink_cmd(
                    &t.root(),
                    &with_driver(
                        driver,
                        &[
                            "layer",
                            "apply",
                            &id,
                            "--parent",
                            "base",
                            tar.to_str().unwrap(),
                        ],
                    ),
                );
                c.env("OVLINK_NO_FSYNC", "1")
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped());
                c
            };
            let a = cmd(&bad).spawn().unwrap();
            // Let A get going (and, before the fix, create X) before B starts.
            std::thread::sleep(std::time::Duration::from_millis(5 + (i % 4) * 10));
            let b = cmd(&good).output().unwrap();
            let a = a.wait_with_output().unwrap();
            assert!(
                !a.status.success(),
                "run {i}: the late-failing tar was applied"
            );
            let layer = t.root().join(driver).join(&id);
            let tree = if driver == "overlay" {
                layer.join("root")
            } else {
                layer.join("diff")
            };
            assert!(
                b.status.success(),
                "{driver} run {i}: B failed: {}",
                String::from_utf8_lossy(&b.stderr)
            );
            {
                assert!(
                    layer.is_dir(),
                    "{driver} run {i}: B reported success but layer {id} is gone; A: {}",
                    String::from_utf8_lossy(&a.stderr)
                );
                assert_eq!(std::fs::read(tree.join("good/a")).unwrap(), b"winner");
                assert_eq!(std::fs::read(tree.join("good/b")).unwrap(), b"whole");
                assert!(
                    !tree.join("late").exists(),
                    "{driver} run {i}: A's entries in X"
                );
            }
        }
        let leftovers: Vec<_> = std::fs::read_dir(t.root().join(driver))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(".tmp-"))
            .collect();
        assert!(leftovers.is_empty(), "{driver}: {leftovers:?}");
    }
}

/// Issue 11 item 9: an apply through a container parent (Docker's fallback: the tar goes
/// through an overlay mount) whose last entry is hostile leaves the layer's `upper/` exactly
/// as it was (manifest: paths, modes, contents, inodes), for an existing layer and for a new
/// one (which then does not exist); a good tar through the same path lands whole.
#[test]
fn refused_tar_through_a_container_parent_changes_no_upper() {
    let t = test_root();
    let base = base_tar(&t);
    t.ok(&["layer", "apply", "base", base.to_str().unwrap()]);
    t.ok(&["layer", "create-rw", "c", "--parent", "base"]);
    let merged = t.ok(&["mount", "c"]);
    std::fs::write(Path::new(merged.trim()).join("from-c"), b"c's file").unwrap();
    t.ok(&["umount", "c"]);
    t.ok(&["layer", "create-rw", "x", "--parent", "c"]);
    let hostile = TarBuilder::new()
        .file("etc/passwd", 0o644, b"evil::0:0::/:/bin/sh\n")
        .whiteout("", "from-c")
        .file("partial", 0o644, &vec![b'p'; 100_000])
        .raw_file("../escape", b"x")
        .write_to(t.path(), "hostile.tar");
    let uppers = |ids: &[&str]| -> Vec<BTreeMap<String, Entry>> {
        ids.iter()
            .map(|id| manifest(&t.home().join(id).join("upper")))
            .collect()
    };
    let before = uppers(&["c", "x"]);
    let err = t.fails(&[
        "layer",
        "apply",
        "x",
        "--parent",
        "c",
        hostile.to_str().unwrap(),
    ]);
    assert!(err.contains("escape") || err.contains(".."), "{err}");
    assert_eq!(
        uppers(&["c", "x"]),
        before,
        "a refused tar changed an upper/"
    );
    let err = t.fails(&[
        "layer",
        "apply",
        "y",
        "--parent",
        "c",
        hostile.to_str().unwrap(),
    ]);
    assert!(err.contains("escape") || err.contains(".."), "{err}");
    assert!(!t.home().join("y").exists(), "a refused new layer exists");
    assert_eq!(uppers(&["c", "x"]), before);
    assert!(t.mounts().is_empty(), "{:?}", t.mounts());
    for id in ["c", "x"] {
        let names: Vec<_> = std::fs::read_dir(t.home().join(id))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(
            names.iter().all(|n| !n.starts_with("tmp")),
            "{id}: {names:?}"
        );
    }

    // The same path with a good tar: applied whole, still a container layer.
    let good = TarBuilder::new()
        .file("etc/passwd", 0o644, b"root:x:0:0::/root:/bin/bash\n")
        .whiteout("", "from-c")
        .file("added", 0o644, b"added")
        .write_to(t.path(), "good.tar");
    t.ok(&[
        "layer",
        "apply",
        "x",
        "--parent",
        "c",
        good.to_str().unwrap(),
    ]);
    t.ok(&[
        "layer",
        "apply",
        "z",
        "--parent",
        "c",
        good.to_str().unwrap(),
    ]);
    for id in ["x", "z"] {
        let m = t.ok(&["mount", id]);
        let m = Path::new(m.trim());
        assert_eq!(std::fs::read(m.join("added")).unwrap(), b"added", "{id}");
        assert_eq!(
            std::fs::read(m.join("etc/passwd")).unwrap(),
            b"root:x:0:0::/root:/bin/bash\n"
        );
        assert!(!m.join("from-c").exists(), "{id}: whiteout not applied");
        t.ok(&["umount", id]);
        let ls = t.ok(&["layer", "inspect", id]);
        assert!(ls.contains("container layer on base"), "{ls}");
    }
    assert_eq!(
        uppers(&["c"]),
        before[..1].to_vec(),
        "the parent's upper/ changed"
    );
}

/// A loop-mounted ext4 that the test can remount read-only; unmounted by the TestRoot.
struct Ext4 {
    mnt: PathBuf,
}

impl Ext4 {
    fn new(dir: &Path, mb: u64) -> Ext4 {
        let img = dir.join("ext4.img");
        std::fs::File::create(&img)
            .unwrap()
            .set_len(mb << 20)
            .unwrap();
        let run = |cmd: &mut std::process::Command| {
            let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
            assert!(
                out.status.success(),
                "{cmd:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        run(std::process::Command::new("mkfs.ext4")
            .args(["-q", "-F"])
            .arg(&img));
        let mnt = dir.join("ext4");
        std::fs::create_dir(&mnt).unwrap();
        run(std::process::Command::new("mount")
            .args(["-o", "loop"])
            .arg(&img)
            .arg(&mnt));
        Ext4 { mnt }
    }

    /// Remounts read-only (`ro`) or read-write; retries while a file is open for writing.
    fn remount(&self, ro: bool) {
        let opt = if ro { "remount,ro" } else { "remount,rw" };
        for _ in 0..200 {
            let out = std::process::Command::new("mount")
                .args(["-o", opt])
                .arg(&self.mnt)
                .output()
                .unwrap();
            if out.status.success() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        panic!("cannot {opt} {}", self.mnt.display());
    }
}

/// Issue 11 item 10: the filesystem goes read-only in the middle of a `layer apply` (the tar
/// comes through a fifo, so the moment is exact). The apply fails; while read-only, read
/// commands work (init recovery reports what it could not reap and goes on); once writable
/// again no layer of the failed apply is listed (nothing for a failed cleanup to leave), and
/// the next init reaps the temporary tree. And a crash mid-apply leaves no empty image layer.
#[test]
fn read_only_remount_mid_apply_and_a_crash_leave_no_layer() {
    let t = test_root();
    let fs = Ext4::new(t.path(), 64);
    let root = fs.mnt.join("state");
    let ov = |args: &[&str]| ovlink_cmd(&root, args).output().unwrap();
    let ok = |args: &[&str]| {
        let o = ov(args);
        assert!(
            o.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stdout).unwrap()
    };
    let base = base_tar(&t);
    ok(&["layer", "apply", "base", base.to_str().unwrap()]);
    ok(&["layer", "create-rw", "c1", "--parent", "base"]);
    let fifo = t.path().join("tar.fifo");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        &fifo,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
    let tar = late_failing_tar(400, "slow");
    for parent in [None, Some("base")] {
        let mut args = vec!["layer", "apply", "x"];
        if let Some(p) = parent {
            args.extend(["--parent", p]);
        }
        args.push(fifo.to_str().unwrap());
        let child = ovlink_cmd(&root, &args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut w = std::fs::OpenOptions::new().write(true).open(&fifo).unwrap();
        use std::io::Write;
        // 200 whole entries (the cut is at an entry boundary: no file is open for writing
        // while the applier waits, so the remount can happen), then read-only, the rest.
        let cut = 512 + 200 * 1024;
        w.write_all(&tar[..cut]).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(300));
        fs.remount(true);
        let _ = w.write_all(&tar[cut..]);
        drop(w);
        let out = child.wait_with_output().unwrap();
        assert!(!out.status.success(), "apply on a read-only fs succeeded");

        // Read-only: read commands work and say what recovery could not do.
        let o = ov(&["layer", "ls"]);
        let (ls, warn) = (
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr),
        );
        assert!(
            o.status.success(),
            "{parent:?}: layer ls while read-only: {warn}"
        );
        assert!(
            !ls.contains("\nx "),
            "{parent:?}: x listed while read-only:\n{ls}"
        );
        assert!(
            warn.contains("init recovery did not finish"),
            "{parent:?}: the leftover of the failed apply was not reported: {warn}"
        );
        for args in [
            &["status"][..],
            &["layer", "inspect", "base"],
            &["changes", "c1"],
            &["diff-size", "c1"],
            &["image", "ls"],
            &["container", "ls"],
        ] {
            ok(args);
        }

        fs.remount(false);
        let ls = ok(&["layer", "ls"]);
        assert!(
            !ls.contains("\nx "),
            "{parent:?}: x listed once writable:\n{ls}"
        );
        assert!(!root.join("overlay").join("x").exists(), "{parent:?}");
        let left: Vec<_> = std::fs::read_dir(root.join("overlay"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(".tmp-"))
            .collect();
        assert!(left.is_empty(), "{parent:?}: init left {left:?}");
    }

    // SIGKILL mid-apply: no empty "image" layer.
    for parent in [None, Some("base")] {
        for point in ["apply.after-copy:1", "tar.entry:2", "apply.before-rename:1"] {
            let mut args = vec!["layer", "apply", "k"];
            if let Some(p) = parent {
                args.extend(["--parent", p]);
            }
            args.push(base.to_str().unwrap());
            let out = ovlink_cmd(&root, &args)
                .env("OVLINK_CRASH_AT", point)
                .output()
                .unwrap();
            assert!(!out.status.success(), "{point}: not killed");
            let ls = ok(&["layer", "ls"]);
            assert!(
                !ls.contains("\nk "),
                "{parent:?} {point}: layer k left:\n{ls}"
            );
        }
    }
}

/// Issue 11 item 12: a mount refused for lack of privilege is reported as EPERM (and what
/// to do), not as "the kernel cannot run overlayfs". Runs ovlink as `nobody` (setpriv) on a
/// fresh root that user owns, so init's test mount is the first thing that fails.
#[test]
fn non_root_mount_failure_says_eperm() {
    let t = test_root();
    let dir = t.path().join("nobody");
    std::fs::create_dir(&dir).unwrap();
    rustix::fs::chown(
        &dir,
        Some(rustix::fs::Uid::from_raw(65534)),
        Some(rustix::fs::Gid::from_raw(65534)),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(t.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    for driver in ["overlay", "overlay2"] {
        let root = dir.join(driver);
        let out = std::process::Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(env!("CARGO_BIN_EXE_ovlink"))
            .arg("--root")
            .arg(&root)
            .args(["--driver", driver, "layer", "create", "probe"])
            .env_remove("OVLINK_ROOT")
            .output()
            .expect("setpriv (util-linux) must be installed for this test");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "{driver}: layer create as nobody succeeded"
        );
        assert!(
            err.contains("EPERM") && err.contains("must run as root"),
            "{driver}: {err}"
        );
        assert!(!err.contains("cannot run overlay"), "{driver}: {err}");
        assert!(t.mounts().is_empty());
    }
}

/// Issue 11 item 12, documented behaviour (README, docs/design.md, `mount --help`): the
/// command line keeps no reference count between processes. `mount` of a mounted layer
/// prints its path; one `umount` unmounts it, however many `mount`s came before. (The
/// plugin, one process, counts every Get and Put.)
#[test]
fn cli_mount_count_is_per_process_as_documented() {
    for driver in ["overlay", "overlay2"] {
        let t = test_root();
        let tar = base_tar(&t);
        t.ok(&with_driver(
            driver,
            &["layer", "apply", "base", tar.to_str().unwrap()],
        ));
        t.ok(&with_driver(
            driver,
            &["layer", "create-rw", "c1", "--parent", "base"],
        ));
        let merged = t
            .home()
            .parent()
            .unwrap()
            .join(driver)
            .join("c1")
            .join("merged");
        for _ in 0..3 {
            let p = t.ok(&with_driver(driver, &["mount", "c1"]));
            assert_eq!(Path::new(p.trim()), merged);
        }
        assert_eq!(t.mounts(), vec![merged.clone()], "{driver}");
        t.ok(&with_driver(driver, &["umount", "c1"]));
        assert!(
            t.mounts().is_empty(),
            "{driver}: one umount left {:?}",
            t.mounts()
        );
        // A further umount is harmless.
        t.ok(&with_driver(driver, &["umount", "c1"]));
    }
}

/// The defence in depth of item 1 end to end: under a root whose path holds option syntax
/// (`,`, a backslash, `=`, a space), mounting a container layer is refused with an error
/// naming the path and why, on both layouts, instead of a mount with garbled options (or one
/// that overlayfs unescapes somewhere else); nothing is mounted. (Init's own test mount goes
/// through `/proc/self/fd/N` paths, so init itself works.)
#[test]
fn a_root_path_with_option_syntax_is_refused_clearly() {
    let t = test_root();
    let tar = base_tar(&t);
    for name in ["a,b", "a\\x", "a=b", "a b"] {
        for driver in ["overlay", "overlay2"] {
            let root = t.path().join(name).join(driver);
            let run = |args: &[&str]| {
                ovlink_cmd(&root, &with_driver(driver, args))
                    .output()
                    .unwrap()
            };
            assert!(run(&["layer", "apply", "base", tar.to_str().unwrap()])
                .status
                .success());
            assert!(run(&["layer", "create-rw", "c1", "--parent", "base"])
                .status
                .success());
            let out = run(&["mount", "c1"]);
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "{driver} {name:?}: mounted");
            assert!(
                err.contains("refusing to mount overlay")
                    && err.contains(format!("{name:?}").trim_matches('"')),
                "{driver} {name:?}: {err}"
            );
            assert!(t.mounts().is_empty());
        }
    }
}

/// Read commands open the image store read-only (issue 10, and what item 10 needs on a
/// read-only root): `changes`, `diff-size`, `image ls`, `container ls` and `report` create no
/// `images/`, `containers/`, `layers/` or `store.lock`.
#[test]
fn read_commands_create_no_store_files() {
    let t = test_root();
    let tar = base_tar(&t);
    t.ok(&["layer", "apply", "base", tar.to_str().unwrap()]);
    t.ok(&["layer", "create-rw", "c1", "--parent", "base"]);
    for args in [
        &["changes", "c1"][..],
        &["diff-size", "c1"],
        &["image", "ls"],
        &["container", "ls"],
        &["report"],
    ] {
        t.ok(args);
        let names: Vec<_> = std::fs::read_dir(t.root())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec!["overlay".to_string()], "{args:?}");
    }
}

/// Read commands only open a driver home that exists (`HomeAccess::Existing`), on both
/// layouts: with no home (a mistyped `--root`) they fail naming it and create nothing, not
/// even the root; on a home they leave its entries as they were, and `--symlinks` (a record
/// in the home) is refused.
#[test]
fn read_commands_create_no_driver_home() {
    let t = test_root();
    let tar = base_tar(&t);
    for layout in ["overlay", "overlay2"] {
        let fresh = t.path().join(format!("fresh-{layout}"));
        let reads: [&[&str]; 6] = [
            &["layer", "ls"],
            &["layer", "inspect", "c1"],
            &["status", "--json"],
            &["changes", "c1"],
            &["diff-size", "c1"],
            &["diff", "c1", "-o", "/dev/null"],
        ];
        for args in reads {
            let mut a = vec!["--driver", layout];
            a.extend_from_slice(args);
            let out = t.ovlink_in(&fresh, &a);
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "{a:?} on no home succeeded");
            let home = fresh.join(layout);
            assert!(
                err.contains(&format!("no {layout} home at {}", home.display())),
                "{a:?}: {err}"
            );
            assert!(!fresh.exists(), "{a:?} created {}", fresh.display());
        }
        let d = |args: &[&str]| {
            let mut a = vec!["--driver", layout];
            a.extend_from_slice(args);
            t.ok(&a)
        };
        d(&["layer", "apply", "base", tar.to_str().unwrap()]);
        d(&["layer", "create-rw", "c1", "--parent", "base"]);
        let home = t.root().join(layout);
        let entries = || {
            let mut v: Vec<_> = std::fs::read_dir(&home)
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            v.sort();
            v
        };
        let before = entries();
        for args in reads {
            d(args);
            assert_eq!(entries(), before, "{args:?} changed {}", home.display());
        }
        if layout == "overlay" {
            let err = t.fails(&["--symlinks", "copy", "layer", "ls"]);
            assert!(
                err.contains("--symlinks does not apply to layer ls"),
                "{err}"
            );
            assert!(!home.join(".symlinks").exists());
        }
    }
}
