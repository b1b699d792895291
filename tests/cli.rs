//! The command line as a pipeline stage: every read command, in text and in `--json`, exits 0
//! with nothing on stderr when its reader has already gone (`ovlink layer ls --json | head -1`).

use crate::util::*;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

#[test]
fn read_commands_exit_zero_on_a_closed_stdout() {
    let t = test_root();
    t.ok(&[
        "image",
        "import",
        fixture("fx-layers.tar").to_str().unwrap(),
        "--name",
        "fx",
    ]);
    let out = t.ok(&["container", "create", "c1", "--image", "fx"]);
    let c1 = out.trim().to_string();
    let cases: &[&[&str]] = &[
        &["layer", "ls"],
        &["layer", "ls", "--json"],
        &["image", "ls"],
        &["image", "ls", "--json"],
        &["container", "ls", "--json"],
        &["changes", &c1],
        &["changes", &c1, "--json"],
        &["report"],
        &["report", "--json"],
        &["status"],
        &["status", "--json"],
        &["check"],
        &["diff", &c1],
        &["diff-size", &c1, "--json"],
        &["layer", "inspect", &c1, "--json"],
        &["check", "--json"],
        &["layer", "--help"],
    ];
    for args in cases {
        // The reader is closed before the command starts, so its first write to stdout gets
        // EPIPE every time (no race with how much fits in a pipe buffer).
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = ovlink_cmd(&t.root(), args)
            .env("TMPDIR", t.tmp())
            .stdout(Stdio::from(writer))
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "ovlink {args:?} with a closed stdout exited {:?}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.stderr.is_empty(),
            "ovlink {args:?} with a closed stdout printed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// `diff -o` and `image save -o` onto a character device (what `/dev/null` is) write through
/// it: before, the temporary file was renamed over the node, so `-o /dev/null` replaced the
/// host's `/dev/null` with a regular file holding the tar. A private node (1,3) stands in for
/// `/dev/null` here, so a regression cannot damage the machine running the test.
#[test]
fn output_onto_a_device_writes_through_it_and_keeps_the_node() {
    use std::os::unix::fs::FileTypeExt;
    let t = test_root();
    t.ok(&[
        "image",
        "import",
        fixture("fx-layers.tar").to_str().unwrap(),
        "--name",
        "fx",
    ]);
    let c1 = t.ok(&["container", "create", "c1", "--image", "fx"]);
    let c1 = c1.trim();
    let dev = t.path().join("devices");
    std::fs::create_dir(&dev).unwrap();
    let null = dev.join("null");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        &null,
        rustix::fs::FileType::CharacterDevice,
        rustix::fs::Mode::from(0o666),
        rustix::fs::makedev(1, 3),
    )
    .unwrap();
    let null_s = null.to_str().unwrap();
    for args in [
        vec!["diff", c1, "-o", null_s],
        vec!["image", "save", "fx", "-o", null_s],
    ] {
        t.ok(&args);
        let m = std::fs::symlink_metadata(&null).unwrap();
        assert!(
            m.file_type().is_char_device() && m.rdev() == rustix::fs::makedev(1, 3),
            "ovlink {args:?} replaced the device node: {m:?}"
        );
        let left: Vec<_> = std::fs::read_dir(&dev).unwrap().collect();
        assert_eq!(
            left.len(),
            1,
            "ovlink {args:?} left files beside the device"
        );
    }
    // A regular file is still written whole under its name.
    let out = t.path().join("fx.tar");
    t.ok(&["image", "save", "fx", "-o", out.to_str().unwrap()]);
    assert!(std::fs::metadata(&out).unwrap().len() > 10_000);
}

/// The layout settings are global flags, each also read from its environment variable (for
/// the scripts written before the flags); `status` says which diff is active.
#[test]
fn settings_flags_and_their_environment_variables() {
    let t = test_root();
    t.ok(&["layer", "create", "base"]); // status reads a home: it creates none
    let diff_mode = |args: &[&str], env: Option<(&str, &str)>| {
        let mut c = ovlink_cmd(&t.root(), args);
        c.env("TMPDIR", t.tmp()).env_remove("OVLINK_DIFF");
        if let Some((k, v)) = env {
            c.env(k, v);
        }
        let out = c.output().unwrap();
        assert!(
            out.status.success(),
            "{args:?} {env:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let mode = v["diff_mode"]
            .as_str()
            .unwrap_or_else(|| panic!("no diff_mode in {v}"));
        mode.split(' ').next().unwrap().to_string()
    };
    assert_eq!(diff_mode(&["status", "--json"], None), "native");
    assert_eq!(
        diff_mode(&["--diff-mode", "naive", "status", "--json"], None),
        "naive"
    );
    assert_eq!(
        diff_mode(&["status", "--json"], Some(("OVLINK_DIFF", "Naive"))),
        "naive"
    );
    // The flag wins over the variable.
    assert_eq!(
        diff_mode(
            &["--diff-mode", "native", "status", "--json"],
            Some(("OVLINK_DIFF", "naive"))
        ),
        "native"
    );
    // A value that names no mode is refused, not ignored.
    for (flag, bad) in [
        ("--sync", "fast"),
        ("--reclaim", "later"),
        ("--diff-mode", "x"),
    ] {
        let err = t.fails(&[flag, bad, "status"]);
        assert!(err.contains("invalid value"), "{flag} {bad}: {err}");
    }
}

/// The commands that open no layout of --root refuse its settings given on the command line,
/// each error naming the flag, before any work (the root is never created).
#[test]
fn commands_that_open_no_layout_refuse_its_settings_by_name() {
    let t = test_root();
    let root = t.path().join("never-created");
    for (args, flag) in [
        (&["--sync", "none", "lab", "whiteouts"][..], "--sync"),
        (&["--diff-mode", "naive", "report"], "--diff-mode"),
        (
            &["--no-fsync", "plugin", "call", "Plugin.Activate"],
            "--no-fsync",
        ),
        (
            &["--reclaim", "background", "snapshotter", "serve"],
            "--reclaim",
        ),
        (&["--symlinks", "copy", "report"], "--symlinks"),
    ] {
        let out = t.ovlink_in(&root, args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} should have failed");
        assert!(
            err.contains(&format!("error: {flag} does not apply to")),
            "{args:?}: {err}"
        );
    }
    assert!(
        !root.exists(),
        "a refused command created {}",
        root.display()
    );
}

/// `image ls --json` shows each image's config as the JSON object it is, not as a string.
#[test]
fn image_ls_json_shows_the_config_as_an_object() {
    let t = test_root();
    t.ok(&[
        "image",
        "import",
        fixture("fx-layers.tar").to_str().unwrap(),
        "--name",
        "fx",
    ]);
    let v: serde_json::Value = serde_json::from_str(&t.ok(&["image", "ls", "--json"])).unwrap();
    let img = &v.as_array().unwrap()[0];
    assert_eq!(img["name"], "fx");
    assert!(
        img["config"]["rootfs"]["diff_ids"].is_array(),
        "config is not an object: {}",
        img["config"]
    );
}

/// `image generate`: the same options give the same bytes; the printed ids are the ones an
/// import creates (both archive formats); another seed is another image; no home is opened,
/// and a failed write leaves no file under the name.
#[test]
fn image_generate_is_deterministic_and_prints_the_ids_an_import_creates() {
    let t = test_root();
    let a = t.path().join("a.tar");
    let b = t.path().join("b.tar");
    let args = |out: &Path| {
        vec![
            "image".to_string(),
            "generate".into(),
            "-o".into(),
            out.to_str().unwrap().into(),
            "--entries".into(),
            "80".into(),
            "--layers".into(),
            "3".into(),
        ]
    };
    let run = |v: Vec<String>| t.ok(&v.iter().map(String::as_str).collect::<Vec<_>>());
    let ids = run(args(&a));
    assert_eq!(ids.lines().count(), 3, "{ids}");
    assert_eq!(run(args(&b)), ids);
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
    assert!(
        !t.root().exists(),
        "image generate created the root {}",
        t.root().display()
    );
    let imported = t.ok(&["image", "import", a.to_str().unwrap()]);
    assert_eq!(
        imported, ids,
        "the ids generate printed are the ids the import made"
    );

    let oci = t.path().join("oci.tar");
    let mut o = args(&oci);
    o.push("--oci".into());
    assert_eq!(run(o), ids, "the OCI archive holds the same layers");
    let other = t.path().join("other.tar");
    let mut s = args(&other);
    s.extend(["--seed".to_string(), "2".into()]);
    assert_ne!(run(s), ids);

    let missing = t.path().join("no/such/dir/x.tar");
    let err = t.fails(&["image", "generate", "-o", missing.to_str().unwrap()]);
    assert!(err.contains("no/such/dir"), "{err}");
    let err = t.fails(&["--sync", "none", "image", "generate", "-o", "x.tar"]);
    assert!(
        err.contains("--sync does not apply to image generate"),
        "{err}"
    );
}

/// `ovlink snapshotter call` drives a running snapshotter without containerd (what the
/// power-loss test's guest does), and `ovlink snapshotter ls` lists a stopped one's store with
/// the layer behind each snapshot; `ls` is refused while a server holds the store, and on a
/// root without one.
#[test]
fn snapshotter_call_and_ls_without_containerd() {
    let t = test_root();
    let root = t.path().join("snaproot");
    let sock = t.path().join("snap.sock");
    let mut server = ovlink_cmd(
        &root,
        &["snapshotter", "serve", "--socket", sock.to_str().unwrap()],
    )
    .stderr(std::process::Stdio::null())
    .spawn()
    .unwrap();
    let call = |args: &[&str]| {
        let mut a = vec!["snapshotter", "call", "--socket", sock.to_str().unwrap()];
        a.extend_from_slice(args);
        ovlink_cmd(&root, &a).output().unwrap()
    };
    let start = std::time::Instant::now();
    while !call(&["list"]).status.success() {
        assert!(
            start.elapsed().as_secs() < 30,
            "the snapshotter did not serve"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let text = |o: std::process::Output| {
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8(o.stdout).unwrap()
    };
    // A bottom snapshot: one bind mount, `TYPE SOURCE OPTIONS`, its source a layer's root/.
    let m = text(call(&["prepare", "a1"]));
    let words: Vec<&str> = m.split_whitespace().collect();
    assert_eq!(words.len(), 3, "{m}");
    assert_eq!(words[0], "bind", "{m}");
    std::fs::write(Path::new(words[1]).join("file"), b"x").unwrap();
    let layer = Path::new(words[1])
        .parent()
        .unwrap()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    text(call(&["commit", "c1", "a1"]));
    // One on it: an overlay with exactly one lowerdir (the legacy layout).
    let m = text(call(&["prepare", "a2", "c1"]));
    assert!(
        m.starts_with("overlay overlay ") && m.matches("lowerdir=").count() == 1,
        "{m}"
    );
    let usage = text(call(&["usage", "c1"]));
    assert!(usage.contains("inodes"), "{usage}");
    let list = text(call(&["list"]));
    assert!(
        list.contains("committed c1 -") && list.contains("active a2 c1"),
        "{list}"
    );
    let err = call(&["remove", "c1"]);
    assert!(!err.status.success(), "a snapshot with a child was removed");
    assert!(
        String::from_utf8_lossy(&err.stderr).contains("FailedPrecondition"),
        "{}",
        String::from_utf8_lossy(&err.stderr)
    );
    // The store is the server's while it runs.
    let held = ovlink_cmd(&root, &["snapshotter", "ls"]).output().unwrap();
    assert!(!held.status.success(), "ls opened a store a server holds");
    rustix::process::kill_process(
        rustix::process::Pid::from_child(&server),
        rustix::process::Signal::TERM,
    )
    .unwrap();
    assert!(server.wait().unwrap().success());
    let ls = text(ovlink_cmd(&root, &["snapshotter", "ls"]).output().unwrap());
    assert!(
        ls.lines().any(|l| l == format!("committed c1 - {layer}")),
        "{ls}"
    );
    let none = ovlink_cmd(&t.path().join("elsewhere"), &["snapshotter", "ls"])
        .output()
        .unwrap();
    assert!(!none.status.success());
    assert!(
        String::from_utf8_lossy(&none.stderr).contains("there is none"),
        "{}",
        String::from_utf8_lossy(&none.stderr)
    );
}
