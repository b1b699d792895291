//! The command line as a pipeline stage: every read command, in text and in `--json`, exits 0
//! with nothing on stderr when its reader has already gone (`ovlink layer ls --json | head -1`).

use crate::util::*;
use std::path::PathBuf;
use std::process::Stdio;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

#[test]
fn read_commands_exit_zero_on_a_closed_stdout() {
    let t = TestRoot::new();
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
