//! The whiteout format option of `apply_layer`, table-driven over both formats: the same
//! starting tree and the same layer tar, the tree each format must leave. `Delete` (the
//! legacy layout) applies deletions to the tree; `Overlay` (overlay2's `diff/`) keeps them
//! as 0/0 character devices and the opaque xattr, and removes nothing else.
#![allow(clippy::unwrap_used, missing_docs)]

mod common;

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use common::{Env, Layer};
use ovlink_tar::whiteout::{is_overlay_whiteout, OVERLAY_OPAQUE_XATTR};
use ovlink_tar::{ApplyOptions, WhiteoutFormat};

/// The tree below `root`, one line per path: `d` (with ` opaque` when it has the overlay
/// opaque xattr), `f CONTENT`, `wh uid=N` (an overlay whiteout, checked to be mode 0), or
/// `other`.
fn listing(root: &Path) -> BTreeMap<String, String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        let mut names: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        names.sort();
        for p in names {
            let md = fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            let what = if md.is_dir() {
                let opaque = ovlink_fs::xattr::get(&p, OsStr::new(OVERLAY_OPAQUE_XATTR)).unwrap();
                walk(root, &p, out);
                match opaque.as_deref() {
                    Some(b"y") => "d opaque".to_string(),
                    Some(v) => format!("d opaque={v:?}"),
                    None => "d".to_string(),
                }
            } else if md.is_file() {
                format!("f {}", String::from_utf8(fs::read(&p).unwrap()).unwrap())
            } else if md.file_type().is_char_device() && is_overlay_whiteout(md.mode(), md.rdev()) {
                assert_eq!(md.mode() & 0o7777, 0, "{rel}: a whiteout is mode 0");
                format!("wh uid={}", md.uid())
            } else {
                "other".to_string()
            };
            out.insert(rel, what);
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// The starting tree: a lower layer's content (legacy layout) or this layer's own earlier
/// content (overlay2's `diff/` before an `apply_diff`).
fn start(env: &Env) {
    for d in ["etc", "opt/tree/x", "d", "y"] {
        fs::create_dir_all(env.p(d)).unwrap();
    }
    for (f, c) in [
        ("etc/a", "a"),
        ("etc/b", "b"),
        ("opt/tree/x/y", "y"),
        ("opt/keep", "k"),
        ("d/old", "old"),
        ("x", "old x"),
        ("y/old", "old y"),
    ] {
        fs::write(env.p(f), c).unwrap();
    }
}

struct Case {
    name: &'static str,
    tar: fn(&mut Layer),
    /// Paths whose line differs from the starting tree, per format (`None`: absent).
    delete: &'static [(&'static str, Option<&'static str>)],
    overlay: &'static [(&'static str, Option<&'static str>)],
}

const CASES: &[Case] = &[
    Case {
        name: "whiteout of a file",
        tar: |l| {
            l.raw(tar::EntryType::Regular, b"etc/.wh.a", None, b"", |h| {
                h.set_uid(7)
            });
        },
        delete: &[("etc/a", None)],
        overlay: &[("etc/a", Some("wh uid=7"))],
    },
    Case {
        name: "whiteout of a directory",
        tar: |l| {
            l.wh("opt/.wh.tree");
        },
        delete: &[
            ("opt/tree", None),
            ("opt/tree/x", None),
            ("opt/tree/x/y", None),
        ],
        overlay: &[
            ("opt/tree", Some("wh uid=0")),
            ("opt/tree/x", None),
            ("opt/tree/x/y", None),
        ],
    },
    Case {
        name: "whiteout in a directory the tree does not have",
        tar: |l| {
            l.wh("gone/.wh.x");
        },
        delete: &[],
        overlay: &[("gone", Some("d")), ("gone/x", Some("wh uid=0"))],
    },
    Case {
        name: "opaque directory",
        tar: |l| {
            l.dir("d/").file("d/new", b"n").wh("d/.wh..wh..opq");
        },
        delete: &[("d/old", None), ("d/new", Some("f n"))],
        overlay: &[("d", Some("d opaque")), ("d/new", Some("f n"))],
    },
    Case {
        name: "opaque marker before the directory's own entry",
        tar: |l| {
            l.wh("d/.wh..wh..opq").dir("d/").file("d/new", b"n");
        },
        delete: &[("d/old", None), ("d/new", Some("f n"))],
        overlay: &[("d", Some("d opaque")), ("d/new", Some("f n"))],
    },
    Case {
        name: "opaque directory the tree does not have",
        tar: |l| {
            l.wh("n/.wh..wh..opq");
        },
        delete: &[],
        overlay: &[("n", Some("d opaque"))],
    },
    Case {
        name: "re-added after its whiteout",
        tar: |l| {
            l.wh(".wh.x")
                .file("x", b"new x")
                .wh(".wh.y")
                .dir("y/")
                .file("y/z", b"z");
        },
        delete: &[
            ("x", Some("f new x")),
            ("y/old", None),
            ("y/z", Some("f z")),
        ],
        overlay: &[
            ("x", Some("f new x")),
            ("y/old", None),
            ("y/z", Some("f z")),
        ],
    },
    Case {
        name: "AUFS metadata is skipped",
        tar: |l| {
            l.wh(".wh..wh.aufs")
                .dir(".wh..wh.plnk/")
                .file(".wh..wh.plnk/1", b"");
        },
        delete: &[],
        overlay: &[],
    },
];

#[test]
fn whiteout_formats() {
    for case in CASES {
        for (format, changes) in [
            (WhiteoutFormat::Delete, case.delete),
            (WhiteoutFormat::Overlay, case.overlay),
        ] {
            let env = Env::new();
            start(&env);
            let mut want = listing(&env.root);
            for (p, line) in changes {
                match line {
                    Some(l) => want.insert(p.to_string(), l.to_string()),
                    None => want.remove(*p),
                };
            }
            let mut l = Layer::new();
            (case.tar)(&mut l);
            let opts = ApplyOptions {
                whiteouts: format,
                ..Default::default()
            };
            env.apply_opts(&l.bytes(), &opts)
                .unwrap_or_else(|e| panic!("{} ({format:?}): {e}", case.name));
            assert_eq!(listing(&env.root), want, "{} ({format:?})", case.name);
            assert_eq!(
                fs::read(env.sentinel.join("secret")).unwrap(),
                b"do not touch"
            );
        }
    }
}

#[test]
fn the_default_format_deletes() {
    assert_eq!(ApplyOptions::default().whiteouts, WhiteoutFormat::Delete);
}
