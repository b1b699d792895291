//! The hostile suite: tars that try to create, change or remove something outside the layer
//! root. Each case must fail (with `EscapeAttempt`, or at least an error naming the entry)
//! and leave a sentinel directory next to the root exactly as it was.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::fs;
use std::os::unix::fs::MetadataExt;

use common::{snapshot, Env, Layer};
use ovlink_tar::TarError;
use tar::EntryType;

/// What a case must produce.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    /// `TarError::EscapeAttempt` naming this entry.
    Escape(&'static str),
    /// Some error naming this entry.
    ErrNaming(&'static str),
    /// Success (the entry is harmless); the sentinel is still checked.
    Ok,
}

struct Case {
    name: &'static str,
    build: fn(&Env, &mut Layer),
    expect: Expect,
}

fn sentinel_str(env: &Env) -> String {
    env.sentinel.to_str().unwrap().to_string()
}

fn cases() -> Vec<Case> {
    use Expect::*;
    vec![
        Case {
            name: "dotdot file",
            build: |_, l| {
                l.raw(EntryType::Regular, b"../sentinel/pwned", None, b"x", |_| {});
            },
            expect: Escape("../sentinel/pwned"),
        },
        Case {
            name: "absolute dotdot",
            build: |_, l| {
                l.raw(
                    EntryType::Regular,
                    b"/../sentinel/pwned",
                    None,
                    b"x",
                    |_| {},
                );
            },
            expect: Escape("/../sentinel/pwned"),
        },
        Case {
            name: "nested dotdot",
            build: |_, l| {
                l.raw(
                    EntryType::Regular,
                    b"a/../../sentinel/pwned",
                    None,
                    b"x",
                    |_| {},
                );
            },
            expect: Escape("a/../../sentinel/pwned"),
        },
        Case {
            name: "dotdot directory",
            build: |_, l| {
                l.raw(
                    EntryType::Directory,
                    b"../sentinel/newdir/",
                    None,
                    b"",
                    |_| {},
                );
            },
            expect: Escape("../sentinel/newdir/"),
        },
        Case {
            name: "dotdot via PAX path",
            build: |_, l| {
                l.pax(&[("path", b"../sentinel/secret")])
                    .file("innocent", b"x");
            },
            expect: Escape("../sentinel/secret"),
        },
        Case {
            name: "double leading slash",
            build: |_, l| {
                l.raw(EntryType::Regular, b"//x", None, b"x", |_| {});
            },
            expect: Escape("//x"),
        },
        Case {
            name: "symlink to / then write through it",
            build: |env, l| {
                let through = format!("evil{}/pwned", sentinel_str(env));
                l.symlink("evil", "/");
                l.raw(EntryType::Regular, through.as_bytes(), None, b"x", |_| {});
            },
            expect: Escape(""),
        },
        Case {
            name: "symlink to sentinel then overwrite a file through it",
            build: |env, l| {
                l.symlink("evil", &sentinel_str(env))
                    .file("evil/secret", b"overwritten");
            },
            expect: Escape("evil/secret"),
        },
        Case {
            name: "symlink to .. then write through it",
            build: |_, l| {
                l.symlink("evil", "..").file("evil/sentinel/pwned", b"x");
            },
            expect: Escape("evil/sentinel/pwned"),
        },
        Case {
            name: "symlink to .. then mkdir through it",
            build: |_, l| {
                l.symlink("evil", "..").dir("evil/sentinel/sub/");
            },
            expect: Escape("evil/sentinel/sub/"),
        },
        Case {
            name: "dir replaced by a symlink, then written through",
            build: |env, l| {
                l.dir("d/").file("d/ok", b"fine");
                l.symlink("d", &sentinel_str(env));
                l.file("d/pwned", b"x");
            },
            expect: Escape("d/pwned"),
        },
        Case {
            name: "symlink chain in the middle of a path",
            build: |env, l| {
                l.dir("a/")
                    .symlink("a/b", &sentinel_str(env))
                    .file("a/b/sub/pwned", b"x");
            },
            expect: Escape("a/b/sub/pwned"),
        },
        Case {
            name: "hardlink to ../",
            build: |_, l| {
                l.hardlink("x", "../sentinel/secret");
            },
            expect: Escape("x"),
        },
        Case {
            name: "hardlink to an absolute host path missing under root",
            build: |env, l| {
                let t = format!("{}/secret", sentinel_str(env));
                l.hardlink("x", &t);
            },
            expect: ErrNaming("x"),
        },
        Case {
            name: "hardlink to /etc/passwd missing under root",
            build: |_, l| {
                l.hardlink("x", "/etc/passwd");
            },
            expect: ErrNaming("x"),
        },
        Case {
            name: "hardlink to /etc/passwd present under root (Docker semantics)",
            build: |_, l| {
                l.file("etc/passwd", b"root:x:0:0::/root:/bin/sh\n")
                    .hardlink("x", "/etc/passwd");
            },
            expect: Ok,
        },
        Case {
            name: "hardlink through a symlinked dir",
            build: |env, l| {
                l.symlink("evil", &sentinel_str(env))
                    .hardlink("x", "evil/secret");
            },
            expect: Escape("x"),
        },
        Case {
            name: "hardlink through a symlink to ..",
            build: |_, l| {
                l.symlink("evil", "..")
                    .hardlink("x", "evil/sentinel/secret");
            },
            expect: Escape("x"),
        },
        Case {
            name: "hardlink to a symlink links the symlink itself",
            build: |env, l| {
                let t = format!("{}/secret", sentinel_str(env));
                l.symlink("evil", &t)
                    .hardlink("x", "evil")
                    .file("x", b"replaces the link, not the target");
            },
            expect: Ok,
        },
        Case {
            name: "whiteout .wh..",
            build: |_, l| {
                l.wh(".wh..");
            },
            expect: Escape(".wh.."),
        },
        Case {
            name: "whiteout .wh.",
            build: |_, l| {
                l.wh(".wh.");
            },
            expect: Escape(".wh."),
        },
        Case {
            name: "whiteout .wh...",
            build: |_, l| {
                l.wh("sub/.wh...");
            },
            expect: Escape("sub/.wh..."),
        },
        Case {
            name: "whiteout through a symlink",
            build: |env, l| {
                l.symlink("evil", &sentinel_str(env)).wh("evil/.wh.secret");
            },
            expect: Escape("evil/.wh.secret"),
        },
        Case {
            name: "whiteout of a whole dir through a symlink",
            build: |env, l| {
                l.symlink("evil", &sentinel_str(env)).wh("evil/.wh.sub");
            },
            expect: Escape("evil/.wh.sub"),
        },
        Case {
            name: "opaque marker through a symlink",
            build: |env, l| {
                l.symlink("evil", &sentinel_str(env))
                    .wh("evil/.wh..wh..opq");
            },
            expect: Escape("evil/.wh..wh..opq"),
        },
        Case {
            name: "whiteout with dotdot",
            build: |_, l| {
                l.raw(
                    EntryType::Regular,
                    b"../sentinel/.wh.secret",
                    None,
                    b"",
                    |_| {},
                );
            },
            expect: Escape("../sentinel/.wh.secret"),
        },
        Case {
            name: "whiteout of a symlink removes only the link",
            build: |env, l| {
                l.symlink("evil", &sentinel_str(env)).wh(".wh.evil");
            },
            expect: Ok,
        },
        Case {
            name: "opaque root removes only inside root",
            build: |env, l| {
                l.symlink("evil", &sentinel_str(env)).wh(".wh..wh..opq");
            },
            expect: Ok,
        },
        Case {
            name: "device node then write through a symlink named like it",
            build: |env, l| {
                l.symlink("evil", &format!("{}/secret", sentinel_str(env)));
                l.raw(EntryType::Fifo, b"evil", None, b"", |h| h.set_mode(0o666));
            },
            expect: Ok,
        },
        Case {
            name: "symlink as the root entry's child replaced by dir entry",
            build: |env, l| {
                l.symlink("evil", &sentinel_str(env))
                    .dir_with("evil/", |h| h.set_mode(0o777));
            },
            expect: Ok,
        },
    ]
}

#[test]
fn hostile_tars_never_reach_outside_root() {
    let mut failures = Vec::new();
    for case in cases() {
        let env = Env::new();
        let before = snapshot(&env.sentinel);
        let sentinel_md = fs::metadata(env.sentinel.join("secret")).unwrap();
        let mut l = Layer::new();
        (case.build)(&env, &mut l);
        let r = env.apply(&l.bytes());
        let after = snapshot(&env.sentinel);
        if before != after {
            failures.push(format!(
                "{}: SENTINEL CHANGED: {before:#?} -> {after:#?}",
                case.name
            ));
            continue;
        }
        assert_eq!(
            fs::metadata(env.sentinel.join("secret")).unwrap().nlink(),
            sentinel_md.nlink()
        );
        let ok = match (&case.expect, &r) {
            (Expect::Ok, Ok(_)) => true,
            (Expect::Escape(n), Err(TarError::EscapeAttempt { entry, .. })) => {
                n.is_empty() || entry.to_str() == Some(n)
            }
            (Expect::ErrNaming(n), Err(e)) => e.entry().and_then(|p| p.to_str()) == Some(*n),
            _ => false,
        };
        if !ok {
            failures.push(format!(
                "{}: expected {:?}, got {r:?}",
                case.name, case.expect
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "hostile cases failed:\n{}",
        failures.join("\n")
    );
}

#[test]
fn escape_errors_read_well() {
    let env = Env::new();
    let mut l = Layer::new();
    l.symlink("evil", "/").file("evil/etc/passwd", b"x");
    let err = env.apply(&l.bytes()).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("evil/etc/passwd") && msg.contains("symlink"),
        "{msg}"
    );
}
