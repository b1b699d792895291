//! Hostile input, end to end: every case goes through the real `ovlink` binary on a real home
//! that already holds an image layer, and must be refused with an error naming the entry
//! (or the id, or the archive member) while the whole state root — every path, type, mode,
//! owner, size, content, symlink target and inode — and a sentinel directory outside it are
//! exactly as before. Allowed-but-sensitive entries (device nodes, setuid files, absolute
//! names) must land inside the layer and nowhere else. Plus the security of the home: the
//! modes the driver sets and no world-writable file or directory of its own.

use crate::util::*;
use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

/// A home with one image layer `base` (etc/passwd, bin/sh, a directory `d`) and a sentinel
/// directory next to the state root.
struct Home {
    t: TestRoot,
    sentinel: PathBuf,
}

impl Home {
    fn new() -> Home {
        let t = test_root();
        let base = TarBuilder::new()
            .dir("etc", 0o755)
            .file("etc/passwd", 0o644, b"root:x:0:0::/root:/bin/sh\n")
            .dir("bin", 0o755)
            .file("bin/sh", 0o755, b"#!sh")
            .dir("d", 0o755)
            .file("d/keep", 0o644, b"keep")
            .write_to(t.path(), "base.tar");
        t.ok(&["layer", "apply", "base", base.to_str().unwrap()]);
        let sentinel = t.path().join("sentinel");
        std::fs::create_dir(&sentinel).unwrap();
        std::fs::write(sentinel.join("file"), b"sentinel").unwrap();
        std::fs::create_dir(sentinel.join("dir")).unwrap();
        Home { t, sentinel }
    }

    /// Everything that must not change: the state root and the sentinel.
    fn snapshot(&self) -> (BTreeMap<String, Entry>, BTreeMap<String, Entry>) {
        (manifest(&self.t.root()), manifest(&self.sentinel))
    }

    fn assert_unchanged(
        &self,
        before: &(BTreeMap<String, Entry>, BTreeMap<String, Entry>),
        case: &str,
    ) {
        let after = self.snapshot();
        if after.0 != before.0 {
            let added: Vec<_> = after
                .0
                .keys()
                .filter(|k| !before.0.contains_key(*k))
                .collect();
            let gone: Vec<_> = before
                .0
                .keys()
                .filter(|k| !after.0.contains_key(*k))
                .collect();
            let changed: Vec<_> = before
                .0
                .iter()
                .filter(|(k, v)| after.0.get(*k).is_some_and(|a| a != *v))
                .map(|(k, _)| k)
                .collect();
            panic!("{case}: the state root changed: added {added:?}, removed {gone:?}, changed {changed:?}");
        }
        assert!(
            after.1 == before.1,
            "{case}: the sentinel outside the home changed"
        );
        let home = self.t.home();
        for n in std::fs::read_dir(&home).unwrap() {
            let n = n.unwrap().file_name().to_string_lossy().into_owned();
            assert!(!n.starts_with(".tmp-"), "{case}: {n} left in the home");
        }
    }
}

type Build = fn(&Path) -> Vec<u8>;

fn tarb(f: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    f(&mut b);
    b.into_inner().unwrap()
}

fn file(b: &mut tar::Builder<Vec<u8>>, name: &str, data: &[u8]) {
    append_raw(
        b,
        tar::EntryType::Regular,
        name.as_bytes(),
        None,
        data,
        |_| {},
    );
}
fn symlink(b: &mut tar::Builder<Vec<u8>>, name: &str, target: &str) {
    append_raw(
        b,
        tar::EntryType::Symlink,
        name.as_bytes(),
        Some(target.as_bytes()),
        b"",
        |_| {},
    );
}
fn hardlink(b: &mut tar::Builder<Vec<u8>>, name: &str, target: &str) {
    append_raw(
        b,
        tar::EntryType::Link,
        name.as_bytes(),
        Some(target.as_bytes()),
        b"",
        |_| {},
    );
}
fn dir(b: &mut tar::Builder<Vec<u8>>, name: &str) {
    append_raw(
        b,
        tar::EntryType::Directory,
        name.as_bytes(),
        None,
        b"",
        |h| h.set_mode(0o755),
    );
}

fn compress(cmd: &str, data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut c = Command::new(cmd)
        .arg("-c")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(data).unwrap();
    let out = c.wait_with_output().unwrap();
    assert!(out.status.success());
    out.stdout
}

fn good_layer() -> Vec<u8> {
    tarb(|b| {
        dir(b, "x");
        for i in 0..50 {
            file(b, &format!("x/f{i}"), &[i as u8; 3000]);
        }
    })
}

struct Case {
    name: &'static str,
    build: Build,
    /// Text the error must contain (the entry's name).
    names: &'static str,
}

fn hostile_cases() -> Vec<Case> {
    vec![
        Case {
            name: "dotdot entry",
            build: |_| tarb(|b| file(b, "../../../../sentinel-pwned", b"x")),
            names: "../../../../sentinel-pwned",
        },
        Case {
            name: "nested dotdot entry",
            build: |_| tarb(|b| file(b, "etc/../../escape", b"x")),
            names: "etc/../../escape",
        },
        Case {
            name: "absolute dotdot entry",
            build: |_| tarb(|b| file(b, "/../escape", b"x")),
            names: "/../escape",
        },
        Case {
            name: "double-slash absolute entry",
            build: |_| tarb(|b| file(b, "//escape", b"x")),
            names: "//escape",
        },
        Case {
            name: "symlink to .. then written through",
            build: |_| {
                tarb(|b| {
                    symlink(b, "up", "..");
                    file(b, "up/pwned", b"x");
                })
            },
            names: "up/pwned",
        },
        Case {
            name: "symlink to / then written through",
            build: |_| {
                tarb(|b| {
                    symlink(b, "slash", "/");
                    file(b, "slash/etc/pwned", b"x");
                })
            },
            names: "slash/etc/pwned",
        },
        Case {
            name: "absolute symlink to the sentinel then written through",
            build: |s| {
                let target = s.to_str().unwrap().to_string();
                tarb(|b| {
                    symlink(b, "s", &target);
                    file(b, "s/pwned", b"x");
                })
            },
            names: "s/pwned",
        },
        Case {
            name: "symlink to a lower-layer file's dir, then a dir entry through it",
            build: |_| {
                tarb(|b| {
                    symlink(b, "l", "/etc");
                    dir(b, "l/sub");
                })
            },
            names: "l/sub",
        },
        Case {
            name: "hardlink outside the tree",
            build: |_| tarb(|b| hardlink(b, "h", "../../../../../etc/passwd")),
            names: "\"h\"",
        },
        Case {
            name: "hardlink to a path not yet extracted",
            build: |_| {
                tarb(|b| {
                    hardlink(b, "early", "later");
                    file(b, "later", b"x");
                })
            },
            names: "early",
        },
        Case {
            name: "hardlink through a symlink",
            build: |_| {
                tarb(|b| {
                    symlink(b, "up", "..");
                    hardlink(b, "h", "up/base/root/etc/passwd");
                })
            },
            names: "\"h\"",
        },
        Case {
            name: "whiteout .wh..",
            build: |_| tarb(|b| file(b, ".wh..", b"")),
            names: ".wh..",
        },
        Case {
            name: "whiteout .wh.",
            build: |_| tarb(|b| file(b, "d/.wh.", b"")),
            names: "d/.wh.",
        },
        Case {
            name: "whiteout through a symlink",
            build: |s| {
                let target = s.to_str().unwrap().to_string();
                tarb(|b| {
                    symlink(b, "s", &target);
                    file(b, "s/.wh.file", b"");
                })
            },
            names: "s/.wh.file",
        },
        Case {
            name: "opaque whiteout through a symlink",
            build: |s| {
                let target = s.to_str().unwrap().to_string();
                tarb(|b| {
                    symlink(b, "s", &target);
                    file(b, "s/.wh..wh..opq", b"");
                })
            },
            names: "s/.wh..wh..opq",
        },
        Case {
            name: "directory replaced by a symlink then written through",
            build: |_| {
                tarb(|b| {
                    symlink(b, "d", "/");
                    file(b, "d/etc/pwned", b"x");
                })
            },
            names: "d/etc/pwned",
        },
        Case {
            name: "device node through a symlink",
            build: |_| {
                tarb(|b| {
                    symlink(b, "up", "..");
                    append_raw(b, tar::EntryType::Char, b"up/null", None, b"", |h| {
                        h.set_device_major(1).unwrap();
                        h.set_device_minor(3).unwrap();
                    });
                })
            },
            names: "up/null",
        },
        Case {
            name: "setuid file through a symlink",
            build: |_| {
                tarb(|b| {
                    symlink(b, "up", "../..");
                    append_raw(b, tar::EntryType::Regular, b"up/suid", None, b"x", |h| {
                        h.set_mode(0o4755)
                    });
                })
            },
            names: "up/suid",
        },
        Case {
            name: "absurd size (8 GiB header, no data)",
            build: |_| {
                tarb(|b| {
                    file(b, "ok", b"fine");
                    let mut h = tar::Header::new_gnu();
                    h.set_path("huge").unwrap();
                    h.set_entry_type(tar::EntryType::Regular);
                    h.set_size(0o77777777777);
                    h.set_mode(0o644);
                    h.set_cksum();
                    b.get_mut().extend_from_slice(h.as_bytes());
                    b.get_mut().extend_from_slice(&[0u8; 4096]);
                })
            },
            names: "huge",
        },
        Case {
            name: "absurd PAX record length",
            build: |_| {
                tarb(|b| {
                    let rec = b"99999999999999999999 path=x\n";
                    append_raw(b, tar::EntryType::XHeader, b"pax", None, rec, |_| {});
                    file(b, "victim", b"x");
                })
            },
            names: "victim",
        },
        Case {
            name: "absurd owner in PAX",
            build: |_| {
                tarb(|b| {
                    let rec = b"30 uid=99999999999999999999\n";
                    append_raw(b, tar::EntryType::XHeader, b"pax", None, rec, |_| {});
                    file(b, "owned", b"x");
                })
            },
            names: "owned",
        },
        Case {
            name: "absurd GNU long name (1 GiB)",
            build: |_| {
                tarb(|b| {
                    file(b, "first", b"x");
                    let mut h = tar::Header::new_gnu();
                    h.as_old_mut().name[..13].copy_from_slice(b"././@LongLink");
                    h.set_entry_type(tar::EntryType::GNULongName);
                    h.set_size(1 << 30);
                    h.set_cksum();
                    b.get_mut().extend_from_slice(h.as_bytes());
                    b.get_mut().extend_from_slice(&[b'a'; 2048]);
                })
            },
            names: "first",
        },
        Case {
            name: "truncated plain tar",
            build: |_| {
                let mut t = good_layer();
                t.truncate(40_000);
                t
            },
            names: "x/f",
        },
        Case {
            name: "truncated gzip",
            build: |_| {
                let mut t = compress("gzip", &good_layer());
                let n = t.len() / 2;
                t.truncate(n);
                t
            },
            names: "cannot read the layer tar stream",
        },
        Case {
            name: "corrupt gzip (CRC)",
            build: |_| {
                let mut t = compress("gzip", &good_layer());
                let n = t.len() - 6;
                t[n] ^= 0xff;
                t
            },
            names: "cannot read the layer tar stream",
        },
        Case {
            name: "truncated zstd",
            build: |_| {
                let mut t = compress("zstd", &good_layer());
                let n = t.len() / 2;
                t.truncate(n);
                t
            },
            names: "cannot read the layer tar stream",
        },
        Case {
            name: "corrupt zstd",
            build: |_| {
                let mut t = compress("zstd", &good_layer());
                let n = t.len() / 2;
                t[n] ^= 0x55;
                t[n + 1] ^= 0xaa;
                t
            },
            names: "cannot read the layer tar stream",
        },
        Case {
            name: "garbage",
            build: |_| {
                (0..20_000u32)
                    .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
                    .collect()
            },
            names: "cannot read the layer tar stream",
        },
    ]
}

/// The table: each hostile tar applied as a new layer on `base` (and, where it applies, onto
/// `base` itself) is refused naming the entry, and nothing in the home or outside changed.
#[test]
fn hostile_layers_are_refused_and_the_home_is_exactly_as_before() {
    let h = Home::new();
    let _ = h.t.ok(&["layer", "ls"]); // the store and lock files exist from here on
    let mut failures = Vec::new();
    for (i, case) in hostile_cases().into_iter().enumerate() {
        let tar = h.t.path().join(format!("hostile-{i}.tar"));
        std::fs::write(&tar, (case.build)(&h.sentinel)).unwrap();
        let before = h.snapshot();
        for args in [
            vec![
                "layer",
                "apply",
                "evil",
                "--parent",
                "base",
                tar.to_str().unwrap(),
            ],
            vec!["layer", "apply", "evil2", tar.to_str().unwrap()],
        ] {
            let out = h.t.ovlink(&args);
            let err = String::from_utf8_lossy(&out.stderr);
            if out.status.success() {
                failures.push(format!("{}: accepted ({args:?})", case.name));
                continue;
            }
            if !err.contains(case.names) {
                failures.push(format!(
                    "{}: error does not name {:?}: {err}",
                    case.name, case.names
                ));
            }
            h.assert_unchanged(&before, case.name);
        }
    }
    assert!(
        failures.is_empty(),
        "{} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Device nodes, setuid files and absolute names are allowed (Docker allows them) but land
/// inside the new layer's tree and nowhere else.
#[test]
fn devices_setuid_and_absolute_names_stay_inside() {
    let h = Home::new();
    let tar = tarb(|b| {
        append_raw(b, tar::EntryType::Char, b"dev/null", None, b"", |h| {
            h.set_device_major(1).unwrap();
            h.set_device_minor(3).unwrap();
            h.set_mode(0o666);
        });
        append_raw(b, tar::EntryType::Block, b"dev/loopx", None, b"", |h| {
            h.set_device_major(7).unwrap();
            h.set_device_minor(200).unwrap();
            h.set_mode(0o600);
        });
        append_raw(
            b,
            tar::EntryType::Regular,
            b"usr/bin/su",
            None,
            b"su",
            |h| h.set_mode(0o4755),
        );
        append_raw(
            b,
            tar::EntryType::Regular,
            b"usr/bin/wall",
            None,
            b"w",
            |h| h.set_mode(0o2755),
        );
        file(b, "/etc/absolute", b"inside");
    });
    let p = h.t.path().join("allowed.tar");
    std::fs::write(&p, tar).unwrap();
    let sentinel_before = manifest(&h.sentinel);
    h.t.ok(&[
        "layer",
        "apply",
        "ok",
        "--parent",
        "base",
        p.to_str().unwrap(),
    ]);
    let root = h.t.home().join("ok/root");
    let m = manifest(&root);
    assert_eq!(m["dev/null"].kind, "char");
    assert_eq!(m["dev/null"].rdev, Some((1, 3)));
    assert_eq!(m["dev/loopx"].kind, "block");
    assert_eq!(m["usr/bin/su"].mode, 0o4755);
    assert_eq!(m["usr/bin/wall"].mode, 0o2755);
    assert_eq!(std::fs::read(root.join("etc/absolute")).unwrap(), b"inside");
    assert!(!Path::new("/etc/absolute").exists());
    assert!(manifest(&h.sentinel) == sentinel_before);
    assert!(!h.t.path().join("dev").exists());
}

/// Layer ids and parent ids that are paths, empty, too long or reserved are refused before
/// anything is created.
#[test]
fn bad_layer_ids_are_refused() {
    let h = Home::new();
    let _ = h.t.ok(&["layer", "ls"]);
    let tar = TarBuilder::new()
        .file("f", 0o644, b"x")
        .write_to(h.t.path(), "ok.tar");
    let long = "a".repeat(300);
    let before = h.snapshot();
    let bad: &[&str] = &[
        "../escape",
        "a/b",
        "/abs",
        "",
        ".",
        "..",
        ".tmp-x",
        &long,
        "a:b",
        "a,b",
        "a\nb",
    ];
    for id in bad {
        for args in [
            vec!["layer", "create", id],
            vec!["layer", "create-rw", id, "--parent", "base"],
            vec!["layer", "create", "fine", "--parent", id],
            vec!["layer", "apply", id, tar.to_str().unwrap()],
            vec![
                "layer",
                "apply",
                "fine",
                "--parent",
                id,
                tar.to_str().unwrap(),
            ],
            vec!["layer", "rm", id],
            vec!["mount", id],
        ] {
            let err = h.t.fails(&args);
            assert!(
                err.contains("layer id") || err.contains("invalid") || err.contains("not found"),
                "{args:?}: {err}"
            );
            h.assert_unchanged(&before, &format!("{args:?}"));
        }
    }
}

/// Writes a docker-save archive from (name, bytes) members.
fn archive(dir: &Path, name: &str, members: &[(&str, Vec<u8>)]) -> PathBuf {
    let p = dir.join(name);
    let mut b = tar::Builder::new(Vec::new());
    for (n, data) in members {
        append_raw(
            &mut b,
            tar::EntryType::Regular,
            n.as_bytes(),
            None,
            data,
            |_| {},
        );
    }
    std::fs::write(&p, b.into_inner().unwrap()).unwrap();
    p
}

fn sha(b: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(b))
}

/// A docker-save archive whose manifest points outside the archive, or whose config or
/// layer digests do not match: refused naming the member, nothing imported.
#[test]
fn hostile_image_archives_are_refused() {
    let h = Home::new();
    let _ = h.t.ok(&["image", "ls"]);
    let layer = TarBuilder::new().file("hello", 0o644, b"hi").build();
    let diff = format!("sha256:{}", sha(&layer));
    let config = |diff: &str| {
        format!(r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":["{diff}"]}}}}"#)
            .into_bytes()
    };
    let good_cfg = config(&diff);
    let cfg_name = format!("{}.json", sha(&good_cfg));
    let manifest = |cfg: &str, layer: &str| {
        format!(r#"[{{"Config":"{cfg}","RepoTags":["evil:latest"],"Layers":["{layer}"]}}]"#)
            .into_bytes()
    };
    let bad_cfg = config(&format!("sha256:{}", "0".repeat(64)));
    let bad_cfg_name = format!("{}.json", sha(&bad_cfg));
    let ones = format!("{}.json", "1".repeat(64));
    type Members<'a> = Vec<(&'a str, Vec<u8>)>;
    let cases: Vec<(&str, Members, &str)> = vec![
        (
            "layer path outside",
            vec![
                ("manifest.json", manifest(&cfg_name, "../../etc/passwd")),
                (&cfg_name, good_cfg.clone()),
            ],
            "../../etc/passwd",
        ),
        (
            "absolute layer path",
            vec![
                ("manifest.json", manifest(&cfg_name, "/etc/passwd")),
                (&cfg_name, good_cfg.clone()),
            ],
            "/etc/passwd",
        ),
        (
            "config path outside",
            vec![
                ("manifest.json", manifest("../config.json", "l/layer.tar")),
                ("l/layer.tar", layer.clone()),
            ],
            "../config.json",
        ),
        (
            "missing layer member",
            vec![
                ("manifest.json", manifest(&cfg_name, "nope/layer.tar")),
                (&cfg_name, good_cfg.clone()),
            ],
            "nope/layer.tar",
        ),
        (
            "config digest mismatch",
            vec![
                ("manifest.json", manifest(&ones, "l/layer.tar")),
                (&ones, good_cfg.clone()),
                ("l/layer.tar", layer.clone()),
            ],
            "1111",
        ),
        (
            "layer diff id mismatch",
            vec![
                ("manifest.json", manifest(&bad_cfg_name, "l/layer.tar")),
                (&bad_cfg_name, bad_cfg.clone()),
                ("l/layer.tar", layer.clone()),
            ],
            "l/layer.tar",
        ),
    ];
    // A good archive first: it imports, and the import lock file exists from here on.
    let ok = archive(
        h.t.path(),
        "good.tar",
        &[
            ("manifest.json", manifest(&cfg_name, "l/layer.tar")),
            (&cfg_name, good_cfg.clone()),
            ("l/layer.tar", layer.clone()),
        ],
    );
    h.t.ok(&["image", "import", ok.to_str().unwrap(), "--name", "good"]);
    for (name, members, names) in cases {
        let members: Vec<(&str, Vec<u8>)> = members;
        let p = archive(
            h.t.path(),
            &format!("{}.tar", name.replace(' ', "-")),
            &members,
        );
        let before = h.snapshot();
        let err = h.t.fails(&["image", "import", p.to_str().unwrap()]);
        assert!(
            err.contains(names),
            "{name}: error does not name {names:?}: {err}"
        );
        h.assert_unchanged(&before, name);
    }
}

// ---------------------------------------------------------------------------------------
// Security of the home.

/// Modes as the real driver sets them (no world access to layer dirs), and no file or
/// directory the tool creates (outside layer contents from tars) is world-writable.
#[test]
fn home_modes_and_no_world_writable_files() {
    let h = Home::new();
    let t = &h.t;
    let img = crate::faults::gen_image(t.path(), "sec", 40, 2, 5);
    t.ok(&["image", "import", img.to_str().unwrap(), "--name", "sec"]);
    let layer = t
        .ok(&["container", "create", "c", "--image", "sec"])
        .trim()
        .to_string();
    let merged = t.ok(&["mount", &layer]).trim().to_string();
    let home = t.home();
    let mode = |p: &Path| std::fs::symlink_metadata(p).unwrap().mode() & 0o7777;
    assert_eq!(mode(&home), 0o710, "home");
    assert_eq!(mode(&home.join("base")), 0o710);
    assert_eq!(mode(&home.join("base/root")), 0o755);
    let l = home.join(&layer);
    assert_eq!(mode(&l), 0o710);
    assert_eq!(mode(&l.join("work")), 0o700);
    // merged/ is made 0700, but while mounted stat shows the overlay root (upper/'s mode).
    assert_eq!(mode(&l.join("lower-id")), 0o600);
    for d in ["images", "containers", "layers"] {
        let p = t.root().join(d);
        if p.exists() {
            assert_eq!(mode(&p), 0o700, "{d}");
            for f in std::fs::read_dir(&p).unwrap() {
                let f = f.unwrap().path();
                assert_eq!(mode(&f) & 0o077, 0, "{} readable by others", f.display());
            }
        }
    }
    // Nothing the tool made is world-writable: walk the state root but not into layer
    // contents (root/, upper/, merged/ hold what the tars said).
    let mut bad = Vec::new();
    for e in walkdir::WalkDir::new(t.root())
        .into_iter()
        .filter_entry(|e| !matches!(e.file_name().to_str(), Some("root" | "upper" | "merged")))
    {
        let e = e.unwrap();
        let m = e.path().symlink_metadata().unwrap();
        if !m.file_type().is_symlink() && m.permissions().mode() & 0o002 != 0 {
            bad.push(e.path().display().to_string());
        }
    }
    assert!(bad.is_empty(), "world-writable: {bad:?}");
    // Other users cannot reach into a layer: the home is 0710 (group search only).
    assert_eq!(mode(&home) & 0o007, 0);
    assert!(Path::new(&merged).is_dir());
    t.ok(&["umount", &layer]);
}
