//! Old kernels, simulated: the real `ovlink` binary runs under `strace -f -e inject=…`, which
//! makes every `renameat2` fail with `ENOSYS` (a kernel before 3.15, e.g. a CentOS/RHEL 7
//! kernel without the backport) or `EINVAL` (a filesystem without `RENAME_NOREPLACE` /
//! `RENAME_EXCHANGE`, e.g. xfs before 4.0), or every `statx` with `ENOSYS` (before 4.11).
//! Under each, the whole flow (import, container create, mount, write/delete, diff/changes,
//! commit, save, report, remove) gives the same layer trees as a normal run, in both layouts,
//! and so does a tar applied through a container parent (the staged `upper/` exchange);
//! the import kill loop recovers at every crash point, the fallbacks' own included; and
//! concurrent creates of one id have exactly one winner. strace's log proves each injection
//! happened, and that a process tries a missing flag once, then remembers. And the
//! container-operations probe's `rmdir` fails with `EINVAL` (upstream 3.18 with the home on xfs):
//! a fresh home of either layout is refused at init, naming the step and the fix, leaving nothing.
//!
//! No old kernel boots here: this is fault injection on the syscalls, not an old kernel.

use crate::faults::{gen_image, import_kill_loops, reference, tree, Tree, IMPORT_POINTS};
use crate::util::*;
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The syscall failure to inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Inject {
    RenameEnosys,
    RenameEinval,
    StatxEnosys,
}

impl Inject {
    fn syscall(self) -> &'static str {
        match self {
            Inject::RenameEnosys | Inject::RenameEinval => "renameat2",
            Inject::StatxEnosys => "statx",
        }
    }
    fn errno(self) -> &'static str {
        match self {
            Inject::RenameEinval => "EINVAL",
            _ => "ENOSYS",
        }
    }
}

/// Fails loudly without strace: these tests exist to run under it (scripts/test.sh installs it).
fn require_strace() {
    let ok = Command::new("strace")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "strace is not installed: the old-kernel tests inject syscall failures with it \
         (scripts/test.sh installs it; apt-get install strace)"
    );
}

/// `strace -f -qq -A -o LOG -e trace=SYSCALL -e inject=SYSCALL:error=ERRNO`.
fn strace(log: &Path, inject: Inject) -> Vec<OsString> {
    require_strace();
    let sc = inject.syscall();
    [
        "strace".into(),
        "-f".into(),
        "-qq".into(),
        "-A".into(),
        "-o".into(),
        log.as_os_str().to_owned(),
        format!("-etrace={sc}").into(),
        format!("-einject={sc}:error={}", inject.errno()).into(),
    ]
    .to_vec()
}

/// (calls injected, most calls of the syscall made by one process) from a strace log.
fn injected(log: &Path, inject: Inject) -> (usize, usize) {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    if std::env::var_os("OVLINK_DEBUG_STRACE").is_some() {
        eprintln!("{text}");
    }
    let mut per_pid: BTreeMap<&str, usize> = BTreeMap::new();
    let mut hits = 0;
    for l in text.lines() {
        let Some((pid, call)) = l.trim_start().split_once(' ') else {
            continue;
        };
        let call = call.trim_start(); // strace pads the pid
        if call.starts_with(&format!("{}(", inject.syscall())) {
            *per_pid.entry(pid).or_default() += 1;
            if l.ends_with("(INJECTED)") {
                hits += 1;
            }
        }
    }
    (hits, per_pid.values().copied().max().unwrap_or(0))
}

/// What the flow leaves, without anything that differs between two correct runs (inode
/// numbers, times, random container layer ids).
#[derive(Debug, PartialEq)]
struct Flow {
    image: Vec<Tree>,
    upper: Tree,
    changes: String,
    diff: Vec<(String, String, u64)>,
    committed: Tree,
    saved: usize,
    report: Vec<(String, u64, u64, u64)>,
    left: usize,
}

fn tar_entries(p: &Path) -> Vec<(String, String, u64)> {
    let mut a = tar::Archive::new(std::fs::File::open(p).unwrap());
    let mut v: Vec<_> = a
        .entries()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.path().unwrap().to_string_lossy().into_owned(),
                format!("{:?}", e.header().entry_type()),
                e.header().size().unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

fn hex_ids(s: &str) -> Vec<String> {
    s.split_whitespace()
        .filter(|w| w.len() == 64 && w.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(str::to_string)
        .collect()
}

/// The whole flow in `root` with layout `driver`; `content` is the layout's tree dir.
fn flow(t: &TestRoot, root: &Path, image: &Path, driver: &str, content: &str) -> Flow {
    let run = |args: &[&str]| t.ok_in(root, &[&["--driver", driver][..], args].concat());
    let home = root.join(driver);
    let chain = hex_ids(&run(&[
        "image",
        "import",
        image.to_str().unwrap(),
        "--name",
        "app",
    ]));
    assert_eq!(chain.len(), 3, "{chain:?}");
    let image_trees: Vec<Tree> = chain
        .iter()
        .map(|id| tree(&home.join(id).join(content)))
        .collect();
    let layer = run(&["container", "create", "c1", "--image", "app"])
        .trim()
        .to_string();
    let merged = PathBuf::from(run(&["mount", &layer]).trim());
    // Overwrite one file of the image, delete another, add a directory with a file.
    let top = &image_trees[2];
    let files: Vec<&String> = top
        .iter()
        .filter(|(_, e)| e.kind == "file")
        .map(|(k, _)| k)
        .collect();
    assert!(files.len() >= 2);
    std::fs::write(merged.join(files[0]), "overwritten\n").unwrap();
    std::fs::remove_file(merged.join(files[1])).unwrap();
    std::fs::create_dir_all(merged.join("oldkernel/new")).unwrap();
    std::fs::write(merged.join("oldkernel/new/file"), "added\n").unwrap();
    run(&["umount", &layer]);
    let content_of_layer = if driver == "overlay" { "upper" } else { "diff" };
    let upper = upper_tree(&home.join(&layer).join(content_of_layer));
    let changes = run(&["changes", &layer]);
    let d = t.path().join(format!("diff-{}.tar", std::process::id()));
    run(&["diff", &layer, "-o", d.to_str().unwrap()]);
    let diff = tar_entries(&d);
    let _ = std::fs::remove_file(&d);
    run(&["container", "commit", "c1", "--name", "committed"]);
    let imgs: serde_json::Value = serde_json::from_str(&run(&["image", "ls", "--json"])).unwrap();
    let top_id = imgs
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == "committed")
        .and_then(|i| i["layers"].as_array()?.last()?.as_str().map(str::to_string))
        .unwrap();
    let committed = tree(&home.join(&top_id).join(content));
    let s = t.path().join(format!("save-{}.tar", std::process::id()));
    run(&["image", "save", "committed", "-o", s.to_str().unwrap()]);
    let saved = tar_entries(&s)
        .into_iter()
        .map(|(p, _, _)| p)
        .filter(|p| p.ends_with("layer.tar"))
        .count();
    let _ = std::fs::remove_file(&s);
    let report = report(&run(&["report", "--json"]));
    run(&["container", "rm", "c1"]);
    run(&["layer", "rm", &top_id]);
    assert!(
        t.mounts().iter().all(|m| !m.starts_with(root)),
        "mounts left"
    );
    Flow {
        image: image_trees,
        upper,
        changes,
        diff,
        committed,
        saved,
        report,
        left: layers_left(&home),
    }
}

/// The tree of an upper dir, without what differs between two mounts of the same work: the
/// kernel stamps each mount's upper/ with a random `trusted.overlay.uuid`, and copied-up
/// entries with `trusted.overlay.origin` (a file handle: inode numbers).
fn upper_tree(p: &Path) -> Tree {
    let mut t = tree(p);
    for e in t.values_mut() {
        e.xattrs.remove("trusted.overlay.uuid");
        e.xattrs.remove("trusted.overlay.origin");
    }
    t
}

/// The layers of `ovlink report --json`: (kind, depth, inodes, inodes added), sorted.
fn report(json: &str) -> Vec<(String, u64, u64, u64)> {
    let rep: serde_json::Value = serde_json::from_str(json).unwrap();
    let mut v: Vec<_> = rep["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["kind"].as_str().unwrap().to_string(),
                l["depth"].as_u64().unwrap(),
                l["inodes"].as_u64().unwrap(),
                l["inodes_added"].as_u64().unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

/// Layer directories left in a home.
fn layers_left(home: &Path) -> usize {
    std::fs::read_dir(home)
        .unwrap()
        .filter(|e| {
            let n = e.as_ref().unwrap().file_name();
            !n.to_string_lossy().starts_with('.') && n != "l"
        })
        .count()
}

/// The flow under each injection equals the normal run, for both layouts; the log shows the
/// injected failures and at most two `renameat2` per process (each flag tried once).
#[test]
fn privileged_whole_flow_under_injected_syscall_failures_matches_a_normal_run() {
    let t = test_root();
    require_strace();
    let image = gen_image(t.path(), "oldk", 150, 3, 21);
    for (driver, content) in [("overlay", "root"), ("overlay2", "diff")] {
        let normal = flow(
            &t,
            &t.path().join(format!("normal-{driver}")),
            &image,
            driver,
            content,
        );
        assert!(normal.changes.contains("oldkernel"), "{}", normal.changes);
        assert!(!normal.upper.is_empty() && normal.left > 0);
        for inject in [
            Inject::RenameEnosys,
            Inject::RenameEinval,
            Inject::StatxEnosys,
        ] {
            let log = t.path().join(format!("{driver}-{inject:?}.log"));
            let root = t.path().join(format!("{driver}-{inject:?}"));
            let got = {
                let _w = run_ovlink_under(strace(&log, inject));
                flow(&t, &root, &image, driver, content)
            };
            let (hits, most) = injected(&log, inject);
            assert!(
                hits > 0,
                "{inject:?}: nothing injected (see {})",
                log.display()
            );
            if inject != Inject::StatxEnosys {
                assert!(
                    most <= 2,
                    "{driver} {inject:?}: a process called renameat2 {most} times: the missing \
                     flag is not remembered"
                );
            }
            assert!(
                got == normal,
                "{driver} under {inject:?} differs from the normal run:\n{got:#?}\nvs\n{normal:#?}"
            );
            eprintln!("{driver} {inject:?}: {hits} calls injected, same trees");
        }
    }
}

/// The fallbacks' own crash points, next to the import's.
const FALLBACK_POINTS: &[&str] = &[
    "noreplace.after-check",
    "exchange.after-new",
    "exchange.after-intent",
    "exchange.after-old",
    "exchange.after-swap",
];

/// The import kill loop under ENOSYS and EINVAL: killed at each rename-related crash point
/// (the no-replace fallback's included), at its 1st, 2nd, ... hit, recovery in between (also under
/// injection); every kill leaves complete layers only, and the final import equals a normal
/// one.
#[test]
fn privileged_import_kill_loop_recovers_under_injection() {
    let t = test_root();
    require_strace();
    let image = gen_image(t.path(), "oldkill", 100, 3, 22);
    let (chain, trees) = reference(&t, &image, "oldkill");
    let points: Vec<&str> = IMPORT_POINTS
        .iter()
        .copied()
        .filter(|p| p.starts_with("create.") || p.starts_with("apply."))
        // An import publishes each layer with a no-replace rename (create_and_apply); the
        // exchange fallback's points belong to an apply onto an existing layer (tested below).
        .chain(
            FALLBACK_POINTS
                .iter()
                .copied()
                .filter(|p| p.starts_with("noreplace.")),
        )
        .collect();
    for inject in [Inject::RenameEnosys, Inject::RenameEinval] {
        let log = t.path().join(format!("kill-{inject:?}.log"));
        let _w = run_ovlink_under(strace(&log, inject));
        let tag = format!("{inject:?}");
        let total = import_kill_loops(&t, &image, (&chain, &trees), &points, &tag);
        let (hits, _) = injected(&log, inject);
        assert!(hits > 0, "{inject:?}: nothing injected");
        eprintln!(
            "{inject:?}: {total} kills over {} points, all recovered",
            points.len()
        );
    }
}

/// Eight processes create the same layer id at once, twelve times over, with renameat2
/// failing: exactly one wins each time, the others say the layer exists, and the winner's
/// layer is complete.
#[test]
fn privileged_concurrent_creates_have_one_winner_under_injection() {
    let t = test_root();
    require_strace();
    for inject in [Inject::RenameEnosys, Inject::RenameEinval] {
        let root = t.path().join(format!("race-{inject:?}"));
        let log = t.path().join(format!("race-{inject:?}.log"));
        let _w = run_ovlink_under(strace(&log, inject));
        let out = ovlink_cmd(&root, &["layer", "create", "base"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        for round in 0..12 {
            let id = format!("race{round}");
            // Odd rounds: container layers on `base` (a different tree, the same publish).
            let args: Vec<&str> = if round % 2 == 0 {
                vec!["layer", "create", &id]
            } else {
                vec!["layer", "create", &id, "--parent", "base"]
            };
            let kids: Vec<_> = (0..8)
                .map(|_| {
                    ovlink_cmd(&root, &args)
                        .stdout(std::process::Stdio::null())
                        .stderr(std::process::Stdio::piped())
                        .spawn()
                        .unwrap()
                })
                .collect();
            let outs: Vec<_> = kids
                .into_iter()
                .map(|k| k.wait_with_output().unwrap())
                .collect();
            let won = outs.iter().filter(|o| o.status.success()).count();
            assert_eq!(won, 1, "{inject:?} round {round}: {won} winners");
            for o in outs.iter().filter(|o| !o.status.success()) {
                let e = String::from_utf8_lossy(&o.stderr);
                assert!(
                    e.contains("already exists"),
                    "{inject:?} round {round}: {e}"
                );
            }
            let layer = root.join("overlay").join(&id);
            let mut inside: Vec<String> = std::fs::read_dir(&layer)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            inside.sort();
            let want: &[&str] = if round % 2 == 0 {
                &["root"]
            } else {
                &["lower-id", "upper", "work"]
            };
            assert_eq!(inside, want, "{inject:?} round {round}");
        }
        let (hits, _) = injected(&log, inject);
        assert!(hits >= 12, "{inject:?}: only {hits} injected");
        let left: Vec<String> = std::fs::read_dir(root.join("overlay"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with('.'))
            .collect();
        assert!(left.is_empty(), "{inject:?}: left {left:?}");
    }
}

fn check_json(root: &Path, args: &[&str]) -> (bool, Vec<serde_json::Value>) {
    let mut full = args.to_vec();
    full.extend(["check", "--json"]);
    let out = ovlink_cmd(root, &full).output().unwrap();
    let lines: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "check --json: {e}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.success(), lines)
}

fn line<'a>(lines: &'a [serde_json::Value], check: &str) -> &'a serde_json::Value {
    lines
        .iter()
        .find(|l| l["check"] == check)
        .unwrap_or_else(|| panic!("no {check:?} line in {lines:?}"))
}

/// On a real ext4: every feature is listed with the layouts that need it, `--driver` selects
/// the home checked, and the kernel release is parsed and reported without refusing.
#[test]
fn privileged_check_lists_each_feature_and_who_needs_it() {
    let t = test_root();
    let fs = LoopFs::new(t.path(), 64, &["mkfs.ext4", "-q", "-F"]);
    let root = fs.mnt.join("root");
    for (driver, home) in [("overlay", "overlay"), ("overlay2", "overlay2")] {
        let (ok, lines) = check_json(&root, &["--driver", driver]);
        assert!(ok, "{lines:#?}");
        for (check, needed) in [
            ("overlay support", &["overlay", "overlay2"][..]),
            ("backing filesystem", &["overlay", "overlay2"][..]),
            ("d_type", &["overlay", "overlay2"][..]),
            ("single lowerdir", &["overlay"][..]),
            ("multi-lowerdir", &["overlay2"][..]),
            ("redirect_dir", &[][..]),
            ("index", &[][..]),
            ("metacopy", &[][..]),
            ("container operations", &["overlay", "overlay2"][..]),
            ("renameat2 flags", &[][..]),
            ("kernel release", &[][..]),
        ] {
            let l = line(&lines, check);
            let got: Vec<&str> = l["needed_by"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap())
                .collect();
            assert_eq!(got, needed, "{check}");
        }
        assert_eq!(line(&lines, "d_type")["status"], "ok");
        assert_eq!(line(&lines, "multi-lowerdir")["status"], "ok");
        assert_eq!(line(&lines, "container operations")["status"], "ok");
        assert_eq!(line(&lines, "renameat2 flags")["status"], "ok");
        let rel = rustix::system::uname()
            .release()
            .to_string_lossy()
            .into_owned();
        assert!(
            line(&lines, "kernel release")["detail"]
                .as_str()
                .unwrap()
                .contains(&rel),
            "{lines:#?}"
        );
        assert!(
            line(&lines, "backing filesystem")["detail"]
                .as_str()
                .unwrap()
                .contains(&format!("root/{home} is on extfs")),
            "{lines:#?}"
        );
    }
    // Under a simulated pre-3.15 kernel the flags are missing, and nothing fails.
    let log = t.path().join("check.log");
    let _w = run_ovlink_under(strace(&log, Inject::RenameEnosys));
    let (ok, lines) = check_json(&root, &[]);
    assert!(ok, "{lines:#?}");
    let l = line(&lines, "renameat2 flags");
    assert_eq!(l["status"], "no");
    assert!(l["detail"].as_str().unwrap().contains("fallback"), "{l}");
}

/// ext4 made with `-O ^filetype` has no d_type: `check` fails with the fix for both layouts,
/// on a new root and on an existing home (where init itself only warns).
#[test]
fn privileged_check_fails_without_d_type() {
    let t = test_root();
    let fs = LoopFs::new(t.path(), 64, &["mkfs.ext4", "-q", "-F", "-O", "^filetype"]);
    let fresh = fs.mnt.join("fresh");
    let existing = fs.mnt.join("existing");
    for d in ["overlay/keep", "overlay2/keep"] {
        std::fs::create_dir_all(existing.join(d)).unwrap();
    }
    for root in [&fresh, &existing] {
        for driver in ["overlay", "overlay2"] {
            let (ok, lines) = check_json(root, &["--driver", driver]);
            assert!(
                !ok,
                "{driver} in {}: check passed without d_type",
                root.display()
            );
            let l = line(&lines, "d_type");
            assert_eq!(l["status"], "fail", "{l}");
            assert!(
                l["fix"].as_str().unwrap().contains("mkfs.ext4 -O filetype")
                    && l["fix"].as_str().unwrap().contains("ftype=1"),
                "{l}"
            );
            let out = ovlink_cmd(root, &["--driver", driver, "check"])
                .output()
                .unwrap();
            assert!(!out.status.success());
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(
                text.contains("FAIL d_type") && text.contains("fix:"),
                "{text}"
            );
        }
    }
}

/// `strace -f -qq -o LOG -P remove-dir -e trace=unlinkat -e
/// inject=unlinkat:error=EINVAL:when=1`: the container-operations probe's `rmdir
/// merged/remove-dir` fails with EINVAL, as it does on upstream 3.18 with the home on xfs
/// (overlayfs removes a copied-up directory with RENAME_EXCHANGE and a whiteout on the upper
/// filesystem, which xfs has from 4.0). `-P` keeps only the calls naming `remove-dir`, and
/// `when=1` fails the first of them in each process: the probe's rmdir (the cleanup's removal of
/// the lower's and upper's `remove-dir/` then goes through).
fn strace_rmdir_einval(log: &Path) -> Vec<OsString> {
    require_strace();
    [
        "strace".into(),
        "-f".into(),
        "-qq".into(),
        "-o".into(),
        log.as_os_str().to_owned(),
        "-P".into(),
        "remove-dir".into(),
        "-etrace=unlinkat".into(),
        "-einject=unlinkat:error=EINVAL:when=1".into(),
    ]
    .to_vec()
}

/// The calls strace failed, from its log.
fn injected_calls(log: &Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.ends_with("(INJECTED)"))
        .map(str::to_string)
        .collect()
}

/// Entries of `dir` named `.tmp-*` (a probe left behind).
fn temp_entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".tmp-"))
        .collect()
}

/// A kernel whose overlayfs mounts but cannot remove a lower directory on this upper filesystem
/// (3.18 on xfs, simulated: the probe's rmdir fails EINVAL), for both layouts: a fresh home is
/// refused at init, naming the step, the path, the error and the fix, and the root it would
/// have created is gone, with no mount left; `check` on a fresh root fails on its `driver init`
/// line with that fix, and on an existing home on its `container operations` line; an existing
/// home still opens (the probe runs on fresh homes), an existing empty home is kept; `demo`
/// refuses before it shows anything of a container.
#[test]
fn privileged_a_failing_container_operation_refuses_a_fresh_home_and_leaves_nothing() {
    let t = test_root();
    require_strace();
    let step = "container operations: step 'delete a lower directory' failed";
    let error = "/merged/remove-dir: Invalid argument (os error 22)";
    let why = "it needs RENAME_EXCHANGE/RENAME_WHITEOUT support from the upper filesystem \
               (upstream xfs has them from Linux 4.0)";
    let fix = "put the root on ext4 with --root, or upgrade the kernel";
    let no_mounts = |what: &str| assert!(t.mounts().is_empty(), "{what}: {:?}", t.mounts());
    for driver in ["overlay", "overlay2"] {
        let existing = t.path().join(format!("existing-{driver}"));
        let made = ovlink_cmd(&existing, &["--driver", driver, "layer", "create", "base"])
            .output()
            .unwrap();
        assert!(
            made.status.success(),
            "{}",
            String::from_utf8_lossy(&made.stderr)
        );
        let log = t.path().join(format!("rmdir-{driver}.log"));
        let _w = run_ovlink_under(strace_rmdir_einval(&log));
        let run = |root: &Path, args: &[&str]| {
            ovlink_cmd(root, &[&["--driver", driver][..], args].concat())
                .env("TMPDIR", t.tmp())
                .output()
                .unwrap()
        };

        // A command that creates a home: refused at init, nothing left.
        let fresh = t.path().join(format!("fresh-{driver}"));
        let out = run(&fresh, &["layer", "create", "base"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{driver}: a fresh home was accepted");
        for part in [step, error, "with the home on extfs", why, fix] {
            assert!(err.contains(part), "{driver}: {part:?} not in: {err}");
        }
        assert!(
            err.contains(fresh.join(driver).to_str().unwrap()),
            "{driver}: names the home: {err}"
        );
        assert!(
            !fresh.exists(),
            "{driver}: the refused init left {}",
            fresh.display()
        );
        no_mounts(driver);
        let calls = injected_calls(&log);
        assert_eq!(calls.len(), 1, "{driver}: {calls:?}");
        assert!(
            calls[0].contains("unlinkat(") && calls[0].contains("\"remove-dir\", AT_REMOVEDIR"),
            "{driver}: {calls:?}"
        );

        // check on a fresh root: the driver init line fails with the step, the fix on its own.
        let out = run(&fresh, &["check"]);
        assert!(!out.status.success(), "{driver}: check passed");
        let text = String::from_utf8_lossy(&out.stdout);
        let init = text
            .lines()
            .find(|l| l.starts_with("FAIL driver init"))
            .unwrap_or_else(|| panic!("{driver}: no FAIL driver init line:\n{text}"));
        assert!(init.contains(step) && init.contains(why), "{init}");
        assert!(text.contains(&format!("fix: {fix}")), "{driver}:\n{text}");
        let (ok, lines) = check_json(&fresh, &["--driver", driver]);
        assert!(!ok);
        let l = line(&lines, "driver init");
        assert_eq!(
            (&l["status"], &l["fix"]),
            (&"fail".into(), &fix.into()),
            "{l}"
        );
        assert!(!fresh.exists(), "{driver}: check left {}", fresh.display());
        no_mounts(driver);

        // A home that exists, empty: refused as fresh, and kept (this init did not create it).
        let empty = t.path().join(format!("empty-{driver}"));
        std::fs::create_dir_all(empty.join(driver)).unwrap();
        let out = run(&empty, &["layer", "create", "base"]);
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains(step));
        assert_eq!(std::fs::read_dir(empty.join(driver)).unwrap().count(), 0);
        no_mounts(driver);

        // An existing home opens (the probe runs on fresh homes); check's own line fails.
        let out = run(&existing, &["layer", "ls"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("base"));
        let (ok, lines) = check_json(&existing, &["--driver", driver]);
        assert!(!ok, "{driver}: check passed on an existing home");
        assert!(
            lines.iter().all(|l| l["check"] != "driver init"),
            "{driver}: init failed on an existing home: {lines:#?}"
        );
        let l = line(&lines, "container operations");
        assert_eq!(
            (&l["status"], &l["fix"]),
            (&"fail".into(), &fix.into()),
            "{l}"
        );
        let detail = l["detail"].as_str().unwrap();
        assert!(
            detail.contains(step.trim_start_matches("container operations: ")),
            "{l}"
        );
        assert!(temp_entries(&existing.join(driver)).is_empty());
        no_mounts(driver);

        // demo makes a fresh home of its own (in a scratch directory of its --root): refused
        // before any container, the scratch directory removed.
        let demo = t.path().join(format!("demo-{driver}"));
        let out = run(&demo, &["demo"]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(!out.status.success(), "{driver}: demo ran:\n{stdout}");
        assert!(String::from_utf8_lossy(&out.stderr).contains(step));
        assert!(
            !stdout.contains("a full copy") && !stdout.contains("LowerDir:"),
            "{stdout}"
        );
        assert_eq!(
            std::fs::read_dir(&demo).unwrap().count(),
            0,
            "demo left files"
        );
        no_mounts(driver);
    }
}

/// `layer apply X --parent C` where C is a container layer: the tar goes through a mount of a
/// staged copy of X's `upper/`, exchanged with it across directories. Under ENOSYS and EINVAL
/// the result equals a normal run; killed at each step of the exchange fallback, recovery
/// leaves `upper/` as it was or as applied (never half), and a re-run succeeds.
#[test]
fn privileged_apply_through_a_container_parent_under_injection() {
    let t = test_root();
    require_strace();
    let l1 = TarBuilder::new()
        .dir("a", 0o755)
        .file("a/f", 0o644, b"one\n")
        .write_to(t.path(), "l1.tar");
    let l2 = TarBuilder::new()
        .dir("b", 0o755)
        .file("b/g", 0o644, b"two\n")
        .whiteout("a", "f")
        .write_to(t.path(), "l2.tar");
    let prepare = |root: &Path| {
        for args in [
            vec!["layer", "apply", "B", l1.to_str().unwrap()],
            vec!["layer", "create", "C", "--parent", "B"],
            vec!["layer", "create", "X", "--parent", "C"],
        ] {
            let out = ovlink_cmd(root, &args).output().unwrap();
            assert!(
                out.status.success(),
                "{args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    };
    let apply = ["layer", "apply", "X", "--parent", "C", l2.to_str().unwrap()];
    let upper = |root: &Path| upper_tree(&root.join("overlay/X/upper"));
    let normal_root = t.path().join("normal");
    prepare(&normal_root);
    let before = upper(&normal_root);
    let out = ovlink_cmd(&normal_root, &apply).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let after = upper(&normal_root);
    assert!(after.contains_key("b/g") && before != after);
    for inject in [Inject::RenameEnosys, Inject::RenameEinval] {
        let log = t.path().join(format!("mount-{inject:?}.log"));
        let _w = run_ovlink_under(strace(&log, inject));
        let root = t.path().join(format!("plain-{inject:?}"));
        prepare(&root);
        let out = ovlink_cmd(&root, &apply).output().unwrap();
        assert!(
            out.status.success(),
            "{inject:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let got = upper(&root);
        assert!(
            got == after,
            "{inject:?}: upper/ differs from the normal run:\n{got:#?}\nvs\n{after:#?}"
        );
        for point in FALLBACK_POINTS
            .iter()
            .filter(|p| p.starts_with("exchange."))
        {
            let root = t.path().join(format!("kill-{inject:?}-{point}"));
            prepare(&root);
            let out = ovlink_cmd(&root, &apply)
                .env("OVLINK_CRASH_AT", format!("{point}:1"))
                .output()
                .unwrap();
            assert!(
                std::os::unix::process::ExitStatusExt::signal(&out.status) == Some(9),
                "{inject:?} {point}: not killed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let out = ovlink_cmd(&root, &["layer", "ls"]).output().unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            let got = upper(&root);
            // Before the intent: the old upper/; from the intent on: the applied one.
            let want = if *point == "exchange.after-new" {
                &before
            } else {
                &after
            };
            assert!(
                &got == want,
                "{inject:?} {point}: upper/ is neither whole state"
            );
            let mut inside: Vec<String> = std::fs::read_dir(root.join("overlay/X"))
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            inside.sort();
            assert_eq!(inside, ["lower-id", "upper", "work"], "{inject:?} {point}");
            let out = ovlink_cmd(&root, &apply).output().unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(upper(&root).contains_key("b/g"));
        }
        assert!(injected(&log, inject).0 > 0, "{inject:?}: nothing injected");
    }
}

/// Nothing ovlink does waits for the kernel's entropy pool: a fresh VM of an old kernel has
/// none for minutes (the VM matrix boots unseeded guests), and `getrandom(2)` with flags 0
/// (or a read of `/dev/random`) blocks until it is initialised. Under strace, every
/// `getrandom` call of a demo (import, containers, commit, save: temporary names, short ids)
/// of both layouts, of `image generate` and of `check` asks with GRND_NONBLOCK or
/// GRND_INSECURE, and `/dev/random` is never opened.
#[test]
fn privileged_nothing_waits_for_the_entropy_pool() {
    let t = test_root();
    require_strace();
    let log = t.path().join("random.log");
    let _w = run_ovlink_under(vec![
        "strace".into(),
        "-f".into(),
        "-qq".into(),
        "-o".into(),
        log.as_os_str().to_owned(),
        "-etrace=getrandom,open,openat".into(),
    ]);
    let gen = t.path().join("gen.tar");
    for (layout, args) in [
        ("overlay", vec!["demo"]),
        ("overlay2", vec!["demo"]),
        ("overlay", vec!["check"]),
        (
            "overlay",
            vec!["image", "generate", "-o", gen.to_str().unwrap()],
        ),
    ] {
        let mut a = vec!["--driver", layout];
        a.extend(args);
        t.ok(&a);
        let text = std::fs::read_to_string(&log).unwrap();
        let calls: Vec<&str> = text.lines().filter(|l| l.contains("getrandom(")).collect();
        assert!(
            !calls.is_empty(),
            "{a:?}: no getrandom call traced: the test would prove nothing"
        );
        for c in &calls {
            assert!(
                c.contains("GRND_NONBLOCK") || c.contains("GRND_INSECURE"),
                "{a:?}: a getrandom call that can block until the entropy pool is ready: {c}"
            );
        }
        assert!(
            !text.contains("\"/dev/random\""),
            "{a:?}: /dev/random opened:\n{}",
            text.lines()
                .filter(|l| l.contains("/dev/random"))
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}
