//! The VM matrix: ovlink's static release binary on the kernels its users run, booted under
//! QEMU (TCG) by `scripts/vm.sh`: CentOS 7.3's 3.10.0-514.el7, upstream 3.18.140 and 4.4.178
//! (`tests/kernels/`), and Debian 12's own kernel (fetched with apt). Each guest runs
//! `scripts/vm/scenario.sh` on ext4 and xfs with both layouts and prints every step between
//! `@@begin`/`@@end` lines; this test parses the console and judges each cell against what
//! the kernel is expected to do ([`expected`]): a cell either passes the whole container
//! scenario, or is refused by `check` with the named reason while every command that would
//! make a home refuses at its start and leaves nothing behind. A kernel that does not boot,
//! a step that hangs (the guest's own timeout ends it), a missing step or missing results
//! fail the test naming the kernel and the step.
//!
//! The tests are `#[ignore]`d in a plain `cargo test`: they need QEMU and the release binary.
//! `scripts/test.sh` runs them after `scripts/release.sh --check` built that binary (the one
//! CI ships is the one the guests run); by hand: `cargo test --test vm -- --ignored`, with
//! `OVLINK_VM_BIN` naming another static binary if wanted. Each run writes the console to
//! `target/vm/KERNEL.log` and a Markdown summary (the cells, the labs' observations) to
//! `target/vm/KERNEL.md`, which docs/old-systems.md and docs/teaching.md quote.
#![allow(missing_docs, clippy::unwrap_used)] // test code

use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

/// One step as the guest reported it.
#[derive(Debug, Clone)]
struct Step {
    name: String,
    stdout: String,
    stderr: String,
    rc: i32,
    secs: f64,
}

/// A guest's console, parsed.
#[derive(Debug, Default)]
struct Run {
    kernel: String,
    /// `@@guest KEY VALUE` lines.
    guest: BTreeMap<String, String>,
    /// Steps by cell (`ext4/overlay`, `xfs/labs`, `vm/labs`), in order.
    cells: BTreeMap<String, Vec<Step>>,
    /// `@@done` was printed.
    done: bool,
    /// The last `@@begin` without its `@@end` (a step cut off).
    unfinished: Option<String>,
    /// scripts/vm.sh's own failure, if any.
    runner_error: Option<String>,
    wall_secs: f64,
}

impl Run {
    fn steps(&self, cell: &str) -> &[Step] {
        self.cells.get(cell).map(Vec::as_slice).unwrap_or(&[])
    }

    fn step(&self, cell: &str, name: &str) -> &Step {
        self.steps(cell)
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| {
                panic!(
                    "kernel {}: {cell}: the guest never reported step {name:?} (steps: {:?})",
                    self.kernel,
                    self.steps(cell).iter().map(|s| &s.name).collect::<Vec<_>>()
                )
            })
    }
}

fn parse(kernel: &str, log: &str) -> Run {
    let mut run = Run {
        kernel: kernel.to_string(),
        ..Default::default()
    };
    let mut cur: Option<(String, Step, bool)> = None; // (cell, step, in stderr)
    for line in log.lines() {
        if let Some(rest) = line.strip_prefix("@@guest ") {
            let (k, v) = rest.split_once(' ').unwrap_or((rest, ""));
            run.guest.insert(k.to_string(), v.to_string());
        } else if let Some(rest) = line.strip_prefix("@@begin ") {
            let (cell, name) = rest.split_once(' ').unwrap_or((rest, ""));
            if let Some((c, s, _)) = cur.take() {
                run.unfinished = Some(format!("{c} {}", s.name));
            }
            cur = Some((
                cell.to_string(),
                Step {
                    name: name.to_string(),
                    stdout: String::new(),
                    stderr: String::new(),
                    rc: -1,
                    secs: 0.0,
                },
                false,
            ));
        } else if line == "@@stderr" {
            if let Some(c) = cur.as_mut() {
                c.2 = true;
            }
        } else if let Some(rest) = line.strip_prefix("@@end ") {
            let Some((cell, mut step, _)) = cur.take() else {
                continue;
            };
            for f in rest.split_whitespace() {
                if let Some(v) = f.strip_prefix("rc=") {
                    step.rc = v.parse().unwrap_or(-1);
                } else if let Some(v) = f.strip_prefix("secs=") {
                    step.secs = v.parse().unwrap_or(0.0);
                }
            }
            run.cells.entry(cell).or_default().push(step);
        } else if line.starts_with("@@done") {
            run.done = true;
        } else if let Some((_, step, in_err)) = cur.as_mut() {
            let buf = if *in_err {
                &mut step.stderr
            } else {
                &mut step.stdout
            };
            buf.push_str(line);
            buf.push('\n');
        }
    }
    if let Some((c, s, _)) = cur {
        run.unfinished = Some(format!("{c} {}", s.name));
    }
    run
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Boots `kernel` with scripts/vm.sh and parses its console.
fn boot(kernel: &str) -> Run {
    let dir = repo().join("target/vm");
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join(format!("{kernel}.log"));
    let _ = std::fs::remove_file(&log);
    let mut cmd = Command::new(repo().join("scripts/vm.sh"));
    cmd.arg("--log").arg(&log);
    if let Some(bin) = std::env::var_os("OVLINK_VM_BIN") {
        cmd.arg("--bin").arg(bin);
    }
    cmd.arg(kernel).current_dir(repo());
    let t = std::time::Instant::now();
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run scripts/vm.sh for kernel {kernel}: {e}"));
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let mut run = parse(kernel, &text);
    run.wall_secs = t.elapsed().as_secs_f64();
    if !out.status.success() {
        run.runner_error = Some(format!(
            "scripts/vm.sh {kernel} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    run
}

/// What a cell must do on a kernel.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// The whole scenario works.
    Pass,
    /// `check` refuses, its FAIL line naming this feature; every command that would make a
    /// home refuses at its start and leaves nothing.
    Refused(&'static str),
}

/// The matrix: (filesystem, layout, expectation) for each cell of a kernel.
fn expected(kernel: &str) -> Vec<(&'static str, &'static str, Expect)> {
    let all_pass = |fs| {
        [
            (fs, "overlay", Expect::Pass),
            (fs, "overlay2", Expect::Pass),
        ]
    };
    match kernel {
        // Upstream's first overlayfs: one lowerdir (overlay2 refused); xfs before 4.0 lacks
        // RENAME_EXCHANGE/RENAME_WHITEOUT, which the kernel needs to remove a lower directory.
        "3.18.140" => vec![
            ("ext4", "overlay", Expect::Pass),
            ("ext4", "overlay2", Expect::Refused("multi-lowerdir")),
            ("xfs", "overlay", Expect::Refused("container operations")),
            ("xfs", "overlay2", Expect::Refused("multi-lowerdir")),
        ],
        _ => all_pass("ext4")
            .into_iter()
            .chain(all_pass("xfs"))
            .collect(),
    }
}

/// The steps a passing cell reports, in order.
const PASS_STEPS: &[&str] = &[
    "check",
    "demo",
    "import-fx",
    "fx-digests",
    "generate",
    "import-gen",
    "gen-digests",
    "create-c1",
    "mount-c1",
    "fixture-scenario",
    "changes-c1",
    "diff-c1",
    "diff-size-c1",
    "umount-c1",
    "create-c2",
    "mount-c2",
    "read-through",
    "copy-up",
    "delete-lower-file",
    "rm-rf-lower-dir",
    "rename-lower",
    "changes-c2",
    "umount-c2",
    "fx-digests-after",
    "commit",
    "committed-digest",
    "image-ls",
    "save",
    "reimport",
    "reimported-digest",
    "report",
    "count-inodes",
    "kill-loop",
    "remove-all",
];

const REFUSED_STEPS: &[&str] = &[
    "check",
    "demo-refused",
    "import-refused",
    "create-refused",
    "refused-leaves-nothing",
];

/// Docker's own `docker diff` of the fixture scenario.
const FX_CONTAINER_DIFF: &str = include_str!("../fixtures/fx-container.diff");

/// `changes` of container 2 (read, copy-up, delete, rm -rf + re-create, renames): the same on
/// every kernel and both layouts.
const C2_CHANGES: &str = "\
A /app/setuid-renamed
A /opt-renamed
A /opt-renamed/moved
A /opt-renamed/moved/a
A /opt-renamed/moved/a/b
A /opt-renamed/moved/a/b/c
A /opt-renamed/moved/a/b/c/d
A /opt-renamed/moved/a/b/c/d/e
A /opt-renamed/moved/a/b/c/d/e/f.txt
C /app
C /app/hello.txt
C /etc
C /var
D /app/setuid
D /etc/motd
D /opt
D /var/log
";

/// "digest ID HEX" lines.
fn digests(s: &str) -> BTreeMap<String, String> {
    s.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            (w.next() == Some("digest"))
                .then(|| Some((w.next()?.to_string(), w.next()?.to_string())))
                .flatten()
        })
        .collect()
}

/// Problems of one passing cell (empty: it passed).
fn judge_pass(run: &Run, cell: &str) -> Vec<String> {
    let mut bad = Vec::new();
    let steps = run.steps(cell);
    for name in PASS_STEPS {
        match steps.iter().find(|s| s.name == *name) {
            None => bad.push(format!("step {name} never ran")),
            Some(s) if s.rc != 0 => bad.push(format!(
                "step {name} failed (rc {}): {}",
                s.rc,
                tail(&s.stderr, 6)
            )),
            Some(_) => {}
        }
    }
    if !bad.is_empty() {
        return bad;
    }
    let st = |n: &str| run.step(cell, n);
    let mut expect = |ok: bool, what: String| {
        if !ok {
            bad.push(what);
        }
    };
    let changes = st("changes-c1").stdout.clone();
    expect(
        changes == FX_CONTAINER_DIFF,
        format!(
            "changes of the fixture scenario differ from Docker's fx-container.diff:\n{changes}"
        ),
    );
    let listing = &st("diff-c1").stdout;
    for e in [
        "app/.wh.big.bin",
        "app/hello.txt",
        "bin/.wh.ls",
        "opt/moved/.wh..wh..opq",
        "opt/moved/x",
        "root/motdlink",
        "root/new",
        "app/empty/sub/",
    ] {
        expect(
            listing.lines().any(|l| l.trim_start_matches("./") == e),
            format!("the diff tar lacks {e}:\n{listing}"),
        );
    }
    expect(
        st("diff-size-c1").stdout.trim() == "31",
        format!(
            "diff-size is {:?}, Docker's is 31",
            st("diff-size-c1").stdout.trim()
        ),
    );
    let rt = &st("read-through").stdout;
    expect(
        rt.starts_with("hello\n") && rt.contains("upper unchanged by reads"),
        format!("read through: {rt}"),
    );
    let cu = &st("copy-up").stdout;
    expect(
        cu.contains("merged: hello|appended|") && cu.contains("upper: hello|appended|"),
        format!("copy-up: {cu}"),
    );
    let before_after: Vec<&str> = cu
        .lines()
        .filter(|l| l.starts_with("lower "))
        .map(|l| l.split_once(": ").map_or(l, |x| x.1))
        .collect();
    expect(
        before_after.len() == 2 && before_after[0] == before_after[1],
        format!("copy-up changed the lower file: {cu}"),
    );
    for (n, what) in [
        ("delete-lower-file", "whiteout: character special file 0,0"),
        (
            "rm-rf-lower-dir",
            "after rm -rf: character special file 0,0",
        ),
        ("rm-rf-lower-dir", "re-created, entries: 0"),
    ] {
        expect(
            st(n).stdout.contains(what),
            format!("{n}: expected {what:?}, got {}", st(n).stdout),
        );
    }
    let c2 = &st("changes-c2").stdout;
    expect(
        c2 == C2_CHANGES,
        format!("changes of container 2 differ from the expected list:\n{c2}"),
    );
    let (fx_before, fx_after) = (
        digests(&st("fx-digests").stdout),
        digests(&st("fx-digests-after").stdout),
    );
    expect(
        fx_before.len() == 4 && fx_before == fx_after,
        format!("the image layers changed under the containers: {fx_before:?} -> {fx_after:?}"),
    );
    // The committed layer, saved and re-imported into a fresh root, is the same tree; so are
    // the fixture's layers (same ids: chain ids).
    // The saved layer tars are regenerated from disk (other bytes, other chain ids), so the
    // layers are compared by position: the fixture's four, then the committed one.
    let committed = digests(&st("committed-digest").stdout);
    let re = digests(&st("reimported-digest").stdout);
    let re_ids: Vec<&str> = st("reimport").stdout.lines().collect();
    let fx_ids: Vec<&str> = st("import-fx").stdout.lines().collect();
    expect(
        committed.len() == 1 && re_ids.len() == 5 && re.get(re_ids[4]) == committed.values().next(),
        format!(
            "the re-imported committed layer differs: committed {committed:?}, re-imported {re:?}"
        ),
    );
    for (pos, id) in fx_ids.iter().enumerate() {
        let again = re_ids.get(pos).and_then(|r| re.get(*r));
        expect(
            again.is_some() && again == fx_before.get(*id),
            format!(
                "re-imported fixture layer {pos} differs ({:?} vs {again:?})",
                fx_before.get(*id)
            ),
        );
    }
    // report's distinct inodes equal a count made in the guest with find + stat.
    match serde_json::from_str::<Value>(&st("report").stdout) {
        Ok(r) => {
            let reported = r["totals"]["distinct_inodes"].as_u64();
            let counted = st("count-inodes").stdout.trim().parse::<u64>().ok();
            expect(
                reported.is_some() && reported == counted,
                format!("report says {reported:?} distinct inodes, the guest counted {counted:?}"),
            );
        }
        Err(e) => bad.push(format!("report --json is not JSON: {e}")),
    }
    bad.extend(judge_kill_loop(
        &st("kill-loop").stdout,
        &digests(&st("gen-digests").stdout),
    ));
    let rm = &st("remove-all").stdout;
    let left: Vec<&str> = rm
        .split("layers left:\n")
        .nth(1)
        .unwrap_or("")
        .split("home:\n")
        .next()
        .unwrap_or("")
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with("ID"))
        .collect();
    if !left.is_empty() {
        bad.push(format!("layers left after removing everything: {left:?}"));
    }
    bad
}

/// The kill loop's lines: after each SIGKILLed import every command worked, and every layer
/// on disk is either listed and complete (its digest is the reference's) or not there.
fn judge_kill_loop(out: &str, reference: &BTreeMap<String, String>) -> Vec<String> {
    let mut bad = Vec::new();
    let mut iters: usize = 0;
    let mut final_ok = false;
    let mut listed: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut resumed = 0;
    let mut rtrees: BTreeMap<String, usize> = BTreeMap::new();
    for l in out.lines() {
        let w: Vec<&str> = l.splitn(5, ' ').collect();
        match w.as_slice() {
            ["iter", _, rest @ ..] => {
                iters += 1;
                if rest.first() == Some(&"final") {
                    final_ok = rest.get(1) == Some(&"rc=0");
                }
            }
            ["cmd", i, what, rc, json @ ..] => {
                if *rc != "rc=0" {
                    bad.push(format!(
                        "after kill {i}: {what} failed ({rc}) {}",
                        json.join(" ")
                    ));
                    continue;
                }
                if *what == "layers" {
                    match serde_json::from_str::<Value>(json.first().unwrap_or(&"[]")) {
                        Ok(Value::Array(a)) => {
                            for e in a {
                                let kind = e["kind"].as_str().unwrap_or("?");
                                let id = e["id"].as_str().unwrap_or("?").to_string();
                                if kind != "image" {
                                    bad.push(format!(
                                        "after kill {i}: layer {id} listed as {kind}"
                                    ));
                                }
                                listed.entry(i.to_string()).or_default().push(id);
                            }
                        }
                        _ => bad.push(format!(
                            "after kill {i}: layer ls --json is not a list: {json:?}"
                        )),
                    }
                }
            }
            ["resume", i, rc, ..] => {
                if *rc != "rc=0" {
                    bad.push(format!("the import run again after kill {i} failed: {l}"));
                }
                resumed += 1;
            }
            ["rtree", i, id, digest] => {
                let ok = reference.get(*id) == Some(&digest.to_string());
                if !ok {
                    bad.push(format!(
                        "after kill {i} and a second import, layer {id} is not the image's (digest {digest})"
                    ));
                }
                *rtrees.entry(i.to_string()).or_default() += 1;
            }
            ["tree", i, id, digest] => {
                let is_listed = listed.get(*i).is_some_and(|v| v.iter().any(|x| x == id));
                match reference.get(*id) {
                    Some(r) if r == digest => {}
                    _ if !is_listed => {} // not a layer (yet): a temporary the listing hides
                    Some(r) => bad.push(format!(
                        "after kill {i}: layer {id} is listed but half made (digest {digest}, complete {r})"
                    )),
                    None => bad.push(format!("after kill {i}: layer {id} is not a layer of the image")),
                }
            }
            _ => {}
        }
    }
    if iters < 2 || !final_ok {
        bad.push(format!(
            "the kill loop did not run to its final import ({iters} iterations):\n{out}"
        ));
    }
    if resumed + 1 != iters || rtrees.values().any(|n| *n != reference.len()) {
        bad.push(format!(
            "{resumed} imports run again after {} kills; layers after each: {rtrees:?} (want {})",
            iters.saturating_sub(1),
            reference.len()
        ));
    }
    bad
}

fn judge_refused(run: &Run, cell: &str, why: &str) -> Vec<String> {
    let mut bad = Vec::new();
    for name in REFUSED_STEPS {
        if !run.steps(cell).iter().any(|s| s.name == *name) {
            bad.push(format!("step {name} never ran"));
        }
    }
    if !bad.is_empty() {
        return bad;
    }
    let check = run.step(cell, "check");
    let fail = check
        .stdout
        .lines()
        .find(|l| l.starts_with("FAIL") && l.contains(why));
    if check.rc == 0 || fail.is_none() {
        bad.push(format!(
            "check was expected to fail on {why:?} (rc {}):\n{}{}",
            check.rc, check.stdout, check.stderr
        ));
    }
    for name in &REFUSED_STEPS[1..] {
        let s = run.step(cell, name);
        if s.rc != 0 {
            bad.push(format!("{name}: {}{}", s.stdout, s.stderr));
        }
    }
    bad
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn secs(run: &Run, cell: &str) -> f64 {
    run.steps(cell).iter().map(|s| s.secs).sum()
}

/// Whether the kernel's overlayfs can remove a lower directory with the upper on `fs`
/// (upstream 3.18-3.19 on xfs cannot: no RENAME_WHITEOUT/RENAME_EXCHANGE in xfs before 4.0).
fn removes_lower_dirs(kernel: &str, fs: &str) -> bool {
    !(kernel == "3.18.140" && fs == "xfs")
}

/// Whether the kernel mounts several lowerdirs (overlay2).
fn multi_lower(kernel: &str) -> bool {
    kernel != "3.18.140"
}

/// The labs whose outcome depends on the kernel, on one filesystem: each ran, printed its
/// observations as JSON, and what depends on the kernel is what this kernel is known to do;
/// returns (problems, a Markdown summary line per lab).
fn judge_labs(run: &Run, cell: &str) -> (Vec<String>, Vec<String>) {
    let fs = cell.split('/').next().unwrap_or("");
    let mut bad = Vec::new();
    let mut rows = Vec::new();
    for lab in ["rename", "whiteouts", "copy-up", "workdir"] {
        let Some(s) = run.steps(cell).iter().find(|s| s.name == lab) else {
            bad.push(format!("lab {lab} never ran"));
            continue;
        };
        let v: Value = match serde_json::from_str(&s.stdout) {
            Ok(v) if s.rc == 0 => v,
            _ => {
                bad.push(format!(
                    "lab {lab} failed (rc {}): {}",
                    s.rc,
                    tail(&s.stderr, 8)
                ));
                continue;
            }
        };
        rows.push(format!("{lab}: {}", lab_summary(lab, &v)));
        if lab == "whiteouts" {
            let removed = v["dir_rm_error"].is_null();
            if removed != removes_lower_dirs(&run.kernel, fs) {
                bad.push(format!(
                    "lab whiteouts: rm -rf of a lower dir {} (error {})",
                    if removed {
                        "worked, where this kernel cannot"
                    } else {
                        "failed"
                    },
                    v["dir_rm_error"]
                ));
            }
        }
        if lab == "rename" && v["off_errno"] != 18 {
            bad.push(format!("lab rename: rename(2) of a lower dir gave {} (EXDEV, 18, expected without redirect_dir)", v["off_errno"]));
        }
    }
    (bad, rows)
}

/// A lab's observations in a few words, for the Markdown summary.
fn lab_summary(lab: &str, v: &Value) -> String {
    let seen = |s: &Value| match s["kind"].as_str() {
        Some("char") => format!("char {}/{}", s["rdev"][0], s["rdev"][1]),
        Some(k) => k.to_string(),
        None => "-".to_string(),
    };
    match lab {
        "whiteouts" => format!(
            "a deleted file: {}; copying it: {}; rm -rf of a lower dir: {}; whiteouts share an inode: {}",
            seen(&v["file_whiteout"]),
            v["copy_error"].as_str().unwrap_or("?"),
            match v["dir_rm_error"].as_str() {
                Some(e) => format!("fails, {e}"),
                None => format!(
                    "{}, re-created as a dir with opaque={}",
                    seen(&v["dir_after_rm"]),
                    v["opaque"]
                ),
            },
            v["whiteouts_share_inode"]
        ),
        "copy-up" => format!(
            "chmod of a 1 MiB lower file copied {} of its {} blocks up; metacopy=on: {}",
            v["upper_after_chmod"]["blocks"],
            v["lower"]["blocks"],
            if v["metacopy_upper"].is_null() {
                "option refused".to_string()
            } else {
                format!("{} blocks copied", v["metacopy_upper"]["blocks"])
            }
        ),
        "workdir" => format!(
            "workdir on another filesystem: {}; workdir inside upperdir: {}",
            v["other_fs_error"].as_str().unwrap_or("?"),
            v["nested_error"].as_str().unwrap_or("?")
        ),
        "inodes" => {
            let runs: Vec<String> = v["runs"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|r| format!("{}: {} layers (stopped by {})", r["layout"].as_str().unwrap_or("?"), r["layers_fit"], r["stopped_by"].as_str().unwrap_or("?")))
                        .collect()
                })
                .unwrap_or_default();
            let refused = v["overlay2_refused"]
                .as_str()
                .map(|_| "; overlay2: refused (one lowerdir only)".to_string())
                .unwrap_or_default();
            format!("{}{refused}", runs.join("; "))
        }
        "rename" => {
            format!(
            "redirect_dir feature {}; rename(2) of a lower dir: errno {}; with redirect_dir=on: {}",
            if v["has_redirect_dir"] == true { "present" } else { "absent" },
            v["off_errno"],
            match v["on_errno"].as_i64() {
                None => "option refused".to_string(),
                Some(0) => format!("renamed, redirect {}", v["on_redirect"]),
                Some(e) => format!("errno {e}"),
            }
        )
        }
        _ => {
            let s = v.to_string();
            if s.len() > 300 {
                format!(
                    "{}…",
                    &s[..s.char_indices().nth(300).map_or(s.len(), |x| x.0)]
                )
            } else {
                s
            }
        }
    }
}

fn kernel_test(kernel: &str) {
    let run = boot(kernel);
    let mut bad: Vec<String> = Vec::new();
    if !run.guest.contains_key("uname") {
        panic!(
            "kernel {kernel} did not boot: {}",
            run.runner_error
                .as_deref()
                .unwrap_or("no @@guest line on its console")
        );
    }
    if !run.done {
        bad.push(format!(
            "the guest did not finish; last step begun: {}; {}",
            run.unfinished.as_deref().unwrap_or("none"),
            run.runner_error.as_deref().unwrap_or("")
        ));
    }
    for (k, v) in &run.guest {
        if k.ends_with("_failed") {
            bad.push(format!("guest: {k} {v}"));
        }
    }
    let mut md = String::new();
    writeln!(
        md,
        "### {kernel}\n\nguest `uname -r`: `{}`; booted in {} s; entropy_avail {} at boot (never seeded); \
         whole run {:.0} s (TCG)\n\n| filesystem | layout | result | steps | seconds |\n|---|---|---|---:|---:|",
        run.guest.get("uname").map_or("", String::as_str),
        run.guest.get("boot_seconds").map_or("?", String::as_str),
        run.guest.get("entropy_avail").map_or("?", String::as_str),
        run.wall_secs
    )
    .unwrap();
    for (fs, layout, exp) in expected(kernel) {
        let cell = format!("{fs}/{layout}");
        let (problems, result) = match exp {
            Expect::Pass => (
                judge_pass(&run, &cell),
                "passes the whole scenario".to_string(),
            ),
            Expect::Refused(why) => {
                let check = run.steps(&cell).iter().find(|s| s.name == "check");
                let fix = check
                    .and_then(|s| {
                        s.stdout
                            .lines()
                            .find_map(|l| l.trim().strip_prefix("fix: "))
                    })
                    .unwrap_or("?");
                (
                    judge_refused(&run, &cell, why),
                    format!("refused by `check` ({why}); its fix: {fix}"),
                )
            }
        };
        writeln!(
            md,
            "| {fs} | {layout} | {} | {} | {:.1} |",
            if problems.is_empty() {
                result
            } else {
                format!("**FAILED**: {}", problems[0].lines().next().unwrap_or(""))
            },
            run.steps(&cell).len(),
            secs(&run, &cell)
        )
        .unwrap();
        bad.extend(problems.into_iter().map(|p| format!("{cell}: {p}")));
    }
    md.push('\n');
    for fs in ["ext4", "xfs"] {
        let (problems, rows) = judge_labs(&run, &format!("{fs}/labs"));
        bad.extend(problems.into_iter().map(|p| format!("{fs}/labs: {p}")));
        for r in rows {
            writeln!(md, "- {fs}, lab {r}").unwrap();
        }
    }
    match run.steps("vm/labs").iter().find(|s| s.name == "inodes") {
        Some(s) if s.rc == 0 => {
            let v: Value = serde_json::from_str(&s.stdout).unwrap_or(Value::Null);
            writeln!(
                md,
                "- ext4 (a 24 MiB loop file with 1,024 inodes), lab inodes: {}",
                lab_summary("inodes", &v)
            )
            .unwrap();
            if v["overlay2_refused"].is_null() != multi_lower(kernel) {
                bad.push(format!(
                    "lab inodes: overlay2 refused: {}",
                    v["overlay2_refused"]
                ));
            }
        }
        Some(s) => bad.push(format!(
            "lab inodes failed (rc {}): {}",
            s.rc,
            tail(&s.stderr, 8)
        )),
        None => bad.push("lab inodes never ran".to_string()),
    }
    let out: PathBuf = repo().join(format!("target/vm/{kernel}.md"));
    std::fs::write(&out, &md).unwrap();
    eprintln!("{md}");
    assert!(
        bad.is_empty(),
        "kernel {kernel}: {} problem(s) (console: target/vm/{kernel}.log):\n- {}",
        bad.len(),
        bad.join("\n- ")
    );
}

#[test]
#[ignore = "boots QEMU guests with the static release binary: run by scripts/test.sh"]
fn vm_centos7_3_10_0_514_el7() {
    kernel_test("3.10.0-514.el7");
}

#[test]
#[ignore = "boots QEMU guests with the static release binary: run by scripts/test.sh"]
fn vm_upstream_3_18_140() {
    kernel_test("3.18.140");
}

#[test]
#[ignore = "boots QEMU guests with the static release binary: run by scripts/test.sh"]
fn vm_upstream_4_4_178() {
    kernel_test("4.4.178");
}

#[test]
#[ignore = "boots QEMU guests with the static release binary: run by scripts/test.sh"]
fn vm_debian12_own_kernel() {
    kernel_test("debian");
}

#[test]
fn console_parser_reads_steps_and_cut_off_steps() {
    let log =
        "noise\n@@guest uname 3.18.140\n@@begin ext4/overlay check\nok line\n@@stderr\nwarn\n\
               @@end ext4/overlay check rc=0 secs=0.10\n@@begin ext4/overlay demo\npartial\n";
    let run = parse("k", log);
    assert_eq!(run.guest["uname"], "3.18.140");
    let s = run.step("ext4/overlay", "check");
    assert_eq!(
        (s.stdout.as_str(), s.stderr.as_str(), s.rc),
        ("ok line\n", "warn\n", 0)
    );
    assert!((s.secs - 0.10).abs() < 1e-9);
    assert_eq!(run.unfinished.as_deref(), Some("ext4/overlay demo"));
    assert!(!run.done);
}

#[test]
fn kill_loop_judge_catches_a_half_layer_and_a_failed_command() {
    let reference: BTreeMap<String, String> = [("a".repeat(64), "d1".to_string())].into();
    let a = "a".repeat(64);
    let good = format!(
        "iter 0 delay_us=5 rc=137\ncmd 0 layers rc=0 [{{\"id\":\"{a}\",\"kind\":\"image\"}}]\n\
         cmd 0 images rc=0 []\ncmd 0 status rc=0\ntree 0 {a} d1\nresume 0 rc=0 \nrtree 0 {a} d1\n\
         iter 1 final rc=0\n"
    );
    assert!(judge_kill_loop(&good, &reference).is_empty());
    let half = good.replace(&format!("\ntree 0 {a} d1"), &format!("\ntree 0 {a} zz"));
    assert!(
        !judge_kill_loop(&half, &reference).is_empty(),
        "a listed half layer must fail"
    );
    let failed = good.replace("cmd 0 status rc=0", "cmd 0 status rc=1");
    assert!(!judge_kill_loop(&failed, &reference).is_empty());
    let failed = good.replace(&format!("rtree 0 {a} d1"), &format!("rtree 0 {a} d2"));
    assert!(
        !judge_kill_loop(&failed, &reference).is_empty(),
        "a wrong layer after the second import must fail"
    );
    let failed = good.replace("resume 0 rc=0", "resume 0 rc=1");
    assert!(!judge_kill_loop(&failed, &reference).is_empty());
    let incomplete = good.replace("\"kind\":\"image\"", "\"kind\":\"incomplete\"");
    assert!(!judge_kill_loop(&incomplete, &reference).is_empty());
}

/// scripts/vm.sh with extra arguments; (exit success, stdout + stderr).
fn vm_sh(args: &[&str]) -> (bool, String) {
    let out = Command::new(repo().join("scripts/vm.sh"))
        .args(args)
        .current_dir(repo())
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
#[ignore = "boots QEMU guests with the static release binary: run by scripts/test.sh"]
fn vm_a_kernel_that_does_not_boot_fails_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let bogus = dir.path().join("bzImage-bogus");
    std::fs::write(&bogus, vec![0u8; 1 << 20]).unwrap();
    let log = dir.path().join("bogus.log");
    let (ok, out) = vm_sh(&[
        "--timeout",
        "30",
        "--log",
        log.to_str().unwrap(),
        bogus.to_str().unwrap(),
    ]);
    assert!(!ok, "a kernel that is not one booted: {out}");
    assert!(
        out.contains("kernel bzImage-bogus did not boot"),
        "the failure names the kernel: {out}"
    );
}

#[test]
#[ignore = "boots QEMU guests with the static release binary: run by scripts/test.sh"]
fn vm_a_guest_cut_off_mid_scenario_fails_naming_the_last_step() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("cut.log");
    let mut args = vec!["--timeout", "6", "--log", log.to_str().unwrap()];
    let bin = std::env::var("OVLINK_VM_BIN").ok();
    if let Some(b) = &bin {
        args.extend(["--bin", b.as_str()]);
    }
    args.push("3.18.140");
    let (ok, out) = vm_sh(&args);
    assert!(!ok, "a guest cut off after 6 s passed: {out}");
    assert!(
        out.contains("kernel 3.18.140: the guest did not finish (timed out after 6s); last step begun: ext4/overlay "),
        "the failure names the kernel, the cause and the step: {out}"
    );
}

// --- power loss -------------------------------------------------------------------------------

/// The workloads of `scripts/vm/scenario.sh`'s `workload`: two imports (many small files; one
/// large file), `layer apply`, a container commit, `layer rm`, dockerd's Create + ApplyDiff
/// of three layers through the plugin server, and containerd's Prepare + write + Commit of
/// two snapshots through the snapshotter server.
const WORKLOADS: &[&str] = &[
    "import", "large", "apply", "commit", "rm", "plugin", "snapshot",
];

/// The kernel the power-loss guests run: several lowerdirs and xfs's rename flags, so both
/// layouts on both filesystems.
const POWERLOSS_KERNEL: &str = "4.4.178";

/// The static binary the guests run and the host's checker opens the replayed states with.
fn release_bin() -> PathBuf {
    std::env::var_os("OVLINK_VM_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            repo().join(format!(
                "dist/ovlink-{}-x86_64-linux",
                env!("CARGO_PKG_VERSION")
            ))
        })
}

/// Records `workload` on `fs`/`layout` (plus `extra` options of scripts/vm.sh) and replays
/// it: (every state held, the checker's output, its JSON result).
fn powerloss(
    workload: &str,
    fs: &str,
    layout: &str,
    tag: &str,
    extra: &[&str],
) -> (bool, String, Value) {
    let dir = repo().join(format!("target/vm/powerloss/{fs}-{layout}-{workload}{tag}"));
    let _ = std::fs::remove_dir_all(&dir);
    let bin = release_bin();
    assert!(
        bin.is_file(),
        "no release binary {}: build it with scripts/release.sh (or set OVLINK_VM_BIN)",
        bin.display()
    );
    let console = dir.with_extension("console");
    let mut args = vec![
        "--record",
        dir.to_str().unwrap(),
        "--workload",
        workload,
        "--fs",
        fs,
        "--layouts",
        layout,
        "--log",
        console.to_str().unwrap(),
        "--bin",
        bin.to_str().unwrap(),
    ];
    args.extend(extra);
    args.push(POWERLOSS_KERNEL);
    let (ok, out) = vm_sh(&args);
    assert!(
        ok,
        "recording {workload} on {fs}/{layout}{tag} failed:\n{out}"
    );
    let log = std::fs::read_to_string(&console).unwrap_or_default();
    let run = parse(POWERLOSS_KERNEL, &log);
    let step = run.step(&format!("power/{workload}"), "workload");
    assert_eq!(
        step.rc, 0,
        "the workload {workload} failed in the guest ({fs}/{layout}{tag}): {}",
        step.stderr
    );
    let json = dir.join("result.json");
    let out = Command::new("python3")
        .arg(repo().join("scripts/powerloss.py"))
        .args([
            "check",
            dir.to_str().unwrap(),
            "--fs",
            fs,
            "--layout",
            layout,
        ])
        .args(["--workload", workload, "--ovlink", bin.to_str().unwrap()])
        .args(["--max-states", "30", "--subsets", "6"])
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprint!("{text}");
    let v = std::fs::read_to_string(&json)
        .ok()
        .and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or(Value::Null);
    // The recording itself is large; what the note and the docs quote is the result.
    for f in ["initial.img", "home.img", "home.log"] {
        let _ = std::fs::remove_file(dir.join(f));
    }
    (out.status.success(), text, v)
}

/// Every workload on one filesystem and layout: every replayed state holds (and the whole log
/// replays to the guest's final disk, byte for byte).
fn powerloss_cell(fs: &str, layout: &str) {
    let mut bad = Vec::new();
    for w in WORKLOADS {
        let (ok, text, v) = powerloss(w, fs, layout, "", &[]);
        if !ok || v["states_checked"].as_u64().unwrap_or(0) == 0 || v["replay_equals_final"] != true
        {
            bad.push(format!("{w}: {text}"));
        }
    }
    assert!(
        bad.is_empty(),
        "power loss on {fs}/{layout}:\n{}",
        bad.join("\n")
    );
}

#[test]
#[ignore = "boots QEMU guests with the static release binary: run by scripts/test.sh"]
fn powerloss_ext4_overlay() {
    powerloss_cell("ext4", "overlay");
}

#[test]
#[ignore = "boots QEMU guests with the static release binary: run by scripts/test.sh"]
fn powerloss_ext4_overlay2() {
    powerloss_cell("ext4", "overlay2");
}

#[test]
#[ignore = "boots QEMU guests with the static release binary: run by scripts/test.sh"]
fn powerloss_xfs_overlay() {
    powerloss_cell("xfs", "overlay");
}

#[test]
#[ignore = "boots QEMU guests with the static release binary: run by scripts/test.sh"]
fn powerloss_xfs_overlay2() {
    powerloss_cell("xfs", "overlay2");
}

/// `--sync files` (an `fdatasync` per file, for a home on a filesystem others keep full of
/// dirty data; its staged import commits every staged tree with one directory `fsync`): the
/// same replay of an import holds, on both filesystems.
#[test]
#[ignore = "boots QEMU guests with the static release binary: run by scripts/test.sh"]
fn powerloss_import_with_sync_files() {
    let mut bad = Vec::new();
    for fs in ["ext4", "xfs"] {
        let (ok, text, v) = powerloss("import", fs, "overlay", "-files", &["--sync", "files"]);
        if !ok || v["states_checked"].as_u64().unwrap_or(0) == 0 || v["replay_equals_final"] != true
        {
            bad.push(format!("{fs}: {text}"));
        }
    }
    assert!(
        bad.is_empty(),
        "power loss with --sync files:\n{}",
        bad.join("\n")
    );
}

/// The test bites: with the data flush before a layer is published removed (a seeded bug,
/// `OVLINK_TEST_SYNC_FAULT=skip-data`), the same replay finds states where an import had
/// returned and its layers are not complete.
#[test]
#[ignore = "boots QEMU guests with the static release binary: run by scripts/test.sh"]
fn powerloss_catches_a_removed_data_flush() {
    for (fs, layout) in [("ext4", "overlay"), ("xfs", "overlay2")] {
        let (ok, text, v) = powerloss(
            "import",
            fs,
            layout,
            "-skip-data",
            &["--sync-fault", "skip-data"],
        );
        assert!(
            !ok && v["violations"].as_array().is_some_and(|a| !a.is_empty()),
            "the replay did not catch the missing data flush on {fs}/{layout}:\n{text}"
        );
    }
}
