//! Hardening, round two (issue 11): inputs that cost resources out of proportion (memory
//! quadratic in path depth, configs named many times, sparse files, trees deeper than the
//! open-file limit) and the smaller input cases (V7 directories, xattrs that do not fit, a
//! home on procfs). Each case runs the real `ovlink` binary on a real home; peak memory is
//! measured in the command's own process (`VmHWM`, polled), fd limits are set per command
//! with `prlimit`.

use crate::util::*;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// Runs `cmd`, polling its `VmHWM` until it exits; returns its output and peak RSS in KiB.
/// The command runs under an address-space limit of `as_limit_mb` (through `prlimit`), so a
/// memory bomb fails the test instead of the machine.
fn measured(root: &Path, tmp: &Path, args: &[&str], as_limit_mb: u64) -> (Output, u64) {
    let mut c = Command::new("prlimit");
    c.arg(format!("--as={}", as_limit_mb << 20))
        .arg(env!("CARGO_BIN_EXE_ovlink"))
        .arg("--root")
        .arg(root)
        .args(args)
        .env_remove("OVLINK_ROOT")
        .env("TMPDIR", tmp)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = c.spawn().expect("prlimit (util-linux) is needed");
    let pid = child.id();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let poll = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut peak = 0u64;
            let status = format!("/proc/{pid}/status");
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok(s) = std::fs::read_to_string(&status) {
                    // prlimit execs ovlink in the same process: only count ovlink.
                    let is_ovlink = s
                        .lines()
                        .any(|l| l.starts_with("Name:") && l.contains("ovlink"));
                    if let Some(kb) = s
                        .lines()
                        .find_map(|l| l.strip_prefix("VmHWM:"))
                        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse::<u64>().ok())
                    {
                        if is_ovlink {
                            peak = peak.max(kb);
                        }
                    }
                }
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
            peak
        })
    };
    let out = child.wait_with_output().unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let peak = poll.join().unwrap();
    (out, peak)
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A plain tar of regular files named `names` (long names as GNU long-name entries).
fn tar_of(names: &[Vec<u8>]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for n in names {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_size(1);
        h.set_mode(0o644);
        h.set_mtime(1_600_000_000);
        let p = std::path::Path::new(std::ffi::OsStr::from_bytes_compat(n));
        b.append_data(&mut h, p, &b"x"[..]).unwrap();
    }
    b.into_inner().unwrap()
}

trait FromBytes {
    fn from_bytes_compat(b: &[u8]) -> &Self;
}
impl FromBytes for std::ffi::OsStr {
    fn from_bytes_compat(b: &[u8]) -> &Self {
        std::os::unix::ffi::OsStrExt::from_bytes(b)
    }
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut c = Command::new("gzip")
        .arg("-9c")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("gzip is needed");
    let mut stdin = c.stdin.take().unwrap();
    let data = data.to_vec();
    let w = std::thread::spawn(move || stdin.write_all(&data).unwrap());
    let out = c.wait_with_output().unwrap();
    w.join().unwrap();
    out.stdout
}

fn deep_name(depth: usize) -> Vec<u8> {
    let mut n = b"a/".repeat(depth - 1);
    n.push(b'f');
    n
}

/// A home with one small image layer `base`; returns the root and the tar path helper.
fn home_with_base() -> TestRoot {
    let t = test_root();
    let base = TarBuilder::new()
        .dir("etc", 0o755)
        .file("etc/passwd", 0o644, b"root:x:0:0::/root:/bin/sh\n")
        .write_to(t.path(), "base.tar");
    t.ok(&["layer", "apply", "base", base.to_str().unwrap()]);
    t
}

fn write(t: &TestRoot, name: &str, data: &[u8]) -> PathBuf {
    let p = t.path().join(name);
    std::fs::write(&p, data).unwrap();
    p
}

/// Item 4: one entry 12,000 directories deep (a ~200-byte gzip) and one 4,000 deep: refused
/// at once, naming the entry and the limit, in bounded memory, with the home unchanged.
#[test]
fn deep_entries_refused_in_bounded_memory() {
    let t = home_with_base();
    let before = manifest(&t.root());
    for depth in [12_000usize, 4_000] {
        let gz = gzip(&tar_of(&[deep_name(depth)]));
        eprintln!("{depth} deep: {} bytes of gzip", gz.len());
        let p = write(&t, &format!("deep{depth}.tar.gz"), &gz);
        let (out, peak_kb) = measured(
            &t.root(),
            &t.tmp(),
            &[
                "layer",
                "apply",
                "--parent",
                "base",
                &format!("deep{depth}"),
                p.to_str().unwrap(),
            ],
            3072,
        );
        eprintln!("{depth} deep: peak RSS {} MiB", peak_kb / 1024);
        let msg = text(&out);
        assert!(!out.status.success(), "{depth} deep was accepted: {msg}");
        assert_eq!(out.status.code(), Some(1), "{depth} deep: killed? {msg}");
        assert!(
            msg.contains("a/a/a"),
            "{depth} deep: the entry is not named: {msg}"
        );
        assert!(
            msg.contains("PATH_MAX"),
            "{depth} deep: the limit is not named: {msg}"
        );
        assert!(peak_kb < 200 * 1024, "{depth} deep: peak RSS {peak_kb} KiB");
        assert_eq!(
            manifest(&t.root()),
            before,
            "{depth} deep: the home changed"
        );
    }
}

/// Item 4: what is allowed (names just under PATH_MAX, 2,047 directories deep) costs memory
/// linear in the entries: sixteen such entries under different top directories stay small.
#[test]
fn deepest_allowed_entries_cost_linear_memory() {
    let t = home_with_base();
    let names: Vec<Vec<u8>> = (0..16u8)
        .map(|i| {
            let mut n = vec![b'a' + i, b'/'];
            n.extend(b"a/".repeat(2045));
            n.push(b'f');
            assert!(n.len() <= 4095);
            n
        })
        .collect();
    let p = write(&t, "wide-deep.tar", &tar_of(&names));
    let (out, peak_kb) = measured(
        &t.root(),
        &t.tmp(),
        &[
            "layer",
            "apply",
            "--parent",
            "base",
            "deepok",
            p.to_str().unwrap(),
        ],
        3072,
    );
    eprintln!("16 entries 2047 deep: peak RSS {} MiB", peak_kb / 1024);
    assert!(out.status.success(), "{}", text(&out));
    assert!(peak_kb < 200 * 1024, "peak RSS {peak_kb} KiB");
    // Longer than PATH_MAX with the home in front: read relative to the layer root.
    let root = ovlink_fs::at::open_dir(&t.home().join("deepok/root")).unwrap();
    let f = rustix::fs::openat(
        &root,
        std::ffi::OsStr::from_bytes_compat(&names[3]),
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::NOFOLLOW,
        rustix::fs::Mode::empty(),
    )
    .expect("the deepest file of the fourth entry");
    let mut data = String::new();
    std::io::Read::read_to_string(&mut std::fs::File::from(f), &mut data).unwrap();
    assert_eq!(data, "x");
    // A child of that layer: the hardlink copy of a tree 2,047 deep (it overflowed a copy
    // thread's stack and aborted the CLI).
    let small = write(&t, "small.tar", &tar_of(&[b"top".to_vec()]));
    let out = t.ovlink(&[
        "layer",
        "apply",
        "--parent",
        "deepok",
        "child",
        small.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "child of a deep layer: {}",
        text(&out)
    );
    assert!(t.home().join("child/root/top").is_file());
}

/// Item 4: a component longer than NAME_MAX is refused naming the entry and the limit.
#[test]
fn overlong_component_refused() {
    let t = home_with_base();
    let before = manifest(&t.root());
    let mut name = b"d/".to_vec();
    name.extend(std::iter::repeat(b'n').take(300));
    let p = write(&t, "longcomp.tar", &tar_of(&[name]));
    let err = t.fails(&[
        "layer",
        "apply",
        "--parent",
        "base",
        "lc",
        p.to_str().unwrap(),
    ]);
    assert!(err.contains("NAME_MAX"), "{err}");
    assert!(err.contains("nnnn"), "{err}");
    assert_eq!(manifest(&t.root()), before);
}

/// Makes a chain of directories `depth` deep (a file at every tenth level) below `dir`,
/// holding one fd at a time, so no open-file limit matters here.
fn deep_tree(dir: &Path, depth: usize) {
    let mut cur = ovlink_fs::at::open_dir(dir).unwrap();
    for i in 0..depth {
        rustix::fs::mkdirat(&cur, "d", rustix::fs::Mode::from_raw_mode(0o755)).unwrap();
        if i % 10 == 0 {
            let f = rustix::fs::openat(
                &cur,
                "f",
                rustix::fs::OFlags::CREATE | rustix::fs::OFlags::WRONLY,
                rustix::fs::Mode::from_raw_mode(0o644),
            )
            .unwrap();
            drop(f);
        }
        cur = ovlink_fs::at::open_dir_at(&cur, "d", Path::new("d")).unwrap();
    }
}

/// `ovlink ARGS` under an open-file limit of `nofile` (soft and hard).
fn with_nofile(t: &TestRoot, nofile: u32, args: &[&str]) -> Output {
    Command::new("prlimit")
        .arg(format!("--nofile={nofile}:{nofile}"))
        .arg(env!("CARGO_BIN_EXE_ovlink"))
        .arg("--root")
        .arg(t.root())
        .args(args)
        .env_remove("OVLINK_ROOT")
        .env("TMPDIR", t.tmp())
        .output()
        .expect("prlimit (util-linux) is needed")
}

fn leftovers(home: &Path) -> Vec<String> {
    std::fs::read_dir(home)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".tmp-"))
        .collect()
}

/// Item 6: a layer holding a tree 3,000 directories deep (made by a process with a high
/// open-file limit) is removed by a CLI limited to 256 open files; a `.tmp-remove-*` left
/// with such a tree is reaped by init under the same limit; `layer ls` and `status` work.
#[test]
fn tree_deeper_than_the_fd_limit_is_removed_and_reaped() {
    let t = home_with_base();
    t.ok(&["layer", "create", "--parent", "base", "deep"]);
    // An image layer with its tree.
    let p = write(&t, "one.tar", &tar_of(&[b"x".to_vec()]));
    t.ok(&["layer", "apply", "img", p.to_str().unwrap()]);
    deep_tree(&t.home().join("img/root"), 3000);
    let out = with_nofile(&t, 256, &["layer", "rm", "img"]);
    assert!(out.status.success(), "layer rm at 256 fds: {}", text(&out));
    assert!(!t.home().join("img").exists());
    assert_eq!(leftovers(&t.home()), Vec::<String>::new());

    // A removed layer left behind by a process that died (no lock held): init reaps it.
    let trash = t.home().join(".tmp-remove-deadbeef");
    std::fs::create_dir(&trash).unwrap();
    deep_tree(&trash, 3000);
    let out = with_nofile(&t, 256, &["layer", "ls"]);
    assert!(out.status.success(), "layer ls at 256 fds: {}", text(&out));
    assert!(!trash.exists(), "init did not reap {}", trash.display());
    let out = with_nofile(&t, 256, &["status"]);
    assert!(out.status.success(), "status at 256 fds: {}", text(&out));
}

/// Item 6: a leftover init cannot reap (here an immutable file inside) never blocks the
/// home: init warns, naming it, and `layer ls`, `status` work.
#[test]
fn unreapable_leftover_is_a_warning_not_an_error() {
    let t = home_with_base();
    let trash = t.home().join(".tmp-remove-stuck");
    std::fs::create_dir_all(trash.join("a/b")).unwrap();
    std::fs::write(trash.join("a/b/pinned"), b"x").unwrap();
    let st = Command::new("chattr")
        .arg("+i")
        .arg(trash.join("a/b/pinned"))
        .status()
        .expect("chattr is needed");
    assert!(
        st.success(),
        "chattr +i failed (the test directory must be on ext4/xfs)"
    );
    let ls = t.ovlink(&["layer", "ls"]);
    let status = t.ovlink(&["status"]);
    let _ = Command::new("chattr")
        .arg("-i")
        .arg(trash.join("a/b/pinned"))
        .status();
    assert!(ls.status.success(), "layer ls: {}", text(&ls));
    assert!(
        String::from_utf8_lossy(&ls.stdout).contains("base"),
        "{}",
        text(&ls)
    );
    let err = String::from_utf8_lossy(&ls.stderr);
    assert!(
        err.contains(".tmp-remove-stuck"),
        "no warning naming the leftover: {err}"
    );
    assert!(status.status.success(), "status: {}", text(&status));
    // Once removable, the next init reaps it.
    t.ok(&["layer", "ls"]);
    assert!(!trash.exists());
}

/// A V7 (pre-POSIX) header: no magic, the type byte as given.
fn v7_header(name: &[u8], kind: u8, mode: u32, size: usize) -> [u8; 512] {
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name);
    let field = |h: &mut [u8; 512], off: usize, len: usize, v: u64| {
        let s = format!("{v:0w$o}\0", w = len - 1);
        h[off..off + len].copy_from_slice(s.as_bytes());
    };
    field(&mut h, 100, 8, u64::from(mode));
    field(&mut h, 108, 8, 0);
    field(&mut h, 116, 8, 0);
    field(&mut h, 124, 12, size as u64);
    field(&mut h, 136, 12, 1_600_000_000);
    h[156] = kind;
    h[148..156].fill(b' ');
    let sum: u32 = h.iter().map(|b| u32::from(*b)).sum();
    let s = format!("{sum:06o}\0 ");
    h[148..156].copy_from_slice(s.as_bytes());
    h
}

/// Item 12: a V7 directory entry (type `\0`, trailing `/`) is a directory, as in Go's
/// reader, not an empty file (the parser reports the type as `0`).
#[test]
fn v7_directory_entry_is_a_directory() {
    let t = home_with_base();
    let mut tar = Vec::new();
    tar.extend(v7_header(b"v7dir/", 0, 0o750, 0));
    tar.extend(v7_header(b"v7dir/f", 0, 0o644, 2));
    let mut data = [0u8; 512];
    data[..2].copy_from_slice(b"hi");
    tar.extend(data);
    tar.extend([0u8; 1024]);
    let p = write(&t, "v7.tar", &tar);
    t.ok(&[
        "layer",
        "apply",
        "--parent",
        "base",
        "v7",
        p.to_str().unwrap(),
    ]);
    let d = t.home().join("v7/root/v7dir");
    let md = std::fs::symlink_metadata(&d).unwrap();
    assert!(md.is_dir(), "v7dir/ became {:?}", md.file_type());
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&md.permissions()) & 0o7777,
        0o750
    );
    assert_eq!(std::fs::read(d.join("f")).unwrap(), b"hi");
}

/// Item 12: an xattr that does not fit in its file (ext4 with 128-byte inodes and 1 KiB
/// blocks keeps a file's xattrs in one block) fails naming the key, its size and the entry,
/// and is not reported as a full disk; an xattr the filesystem does not support (an unknown
/// namespace: `ENOTSUP`) names its key too.
#[test]
fn xattr_errors_name_the_key_not_a_full_disk() {
    let t = test_root();
    let dir = t.path().join("fs");
    std::fs::create_dir(&dir).unwrap();
    let fs = LoopFs::new(
        &dir,
        32,
        &["mkfs.ext4", "-q", "-F", "-I", "128", "-b", "1024"],
    );
    let root = fs.mnt.join("root");
    let run = |args: &[&str]| {
        ovlink_cmd(&root, args)
            .env("TMPDIR", t.tmp())
            .output()
            .unwrap()
    };
    let p = write(
        &t,
        "big-xattr.tar",
        &TarBuilder::new()
            .file_with_xattrs("big.txt", b"hi", &[("trusted.big", &[b'v'; 2000])])
            .build(),
    );
    let out = run(&["layer", "apply", "bigx", p.to_str().unwrap()]);
    let msg = text(&out);
    assert!(!out.status.success(), "{msg}");
    assert!(msg.contains("trusted.big"), "the xattr is not named: {msg}");
    assert!(msg.contains("2000 bytes"), "its size is not given: {msg}");
    assert!(msg.contains("big.txt"), "the entry is not named: {msg}");
    assert!(
        !msg.contains("no space left on extfs"),
        "reported as a full disk: {msg}"
    );
    assert!(
        !root.join("overlay/bigx").exists(),
        "the failed layer was left"
    );

    let p = write(
        &t,
        "odd-xattr.tar",
        &TarBuilder::new()
            .file_with_xattrs("odd.txt", b"hi", &[("foo.bar", b"1")])
            .build(),
    );
    let out = run(&["layer", "apply", "oddx", p.to_str().unwrap()]);
    let msg = text(&out);
    assert!(!out.status.success(), "{msg}");
    assert!(msg.contains("foo.bar"), "the xattr is not named: {msg}");
    assert!(msg.contains("odd.txt"), "the entry is not named: {msg}");
    assert!(msg.contains("not support"), "{msg}");
}

/// Item 12: a home on procfs (or sysfs) is refused naming the filesystem, creating nothing.
#[test]
fn home_on_procfs_is_refused() {
    for root in [
        "/proc/ovlink-test-root",
        "/proc/self/ovlink",
        "/sys/kernel/ovlink-test",
    ] {
        let out = ovlink_cmd(Path::new(root), &["layer", "ls"])
            .output()
            .unwrap();
        let msg = text(&out);
        assert!(!out.status.success(), "{root}: {msg}");
        assert!(msg.contains("pseudo-filesystem"), "{root}: {msg}");
        assert!(!Path::new(root).exists());
        let out = ovlink_cmd(Path::new(root), &["check"]).output().unwrap();
        assert!(
            text(&out).contains("pseudo-filesystem"),
            "{root}: {}",
            text(&out)
        );
    }
}

/// A GNU sparse ('S') entry `name` of `real` bytes with data segments `(offset, bytes)`.
fn gnu_sparse_tar(name: &str, real: u64, segs: &[(u64, &[u8])]) -> Vec<u8> {
    let mut h = tar::Header::new_gnu();
    h.set_path(name).unwrap();
    h.set_entry_type(tar::EntryType::GNUSparse);
    h.set_mode(0o644);
    h.set_mtime(1_600_000_000);
    let mut data = Vec::new();
    {
        let g = h.as_gnu_mut().unwrap();
        for (i, (off, bytes)) in segs.iter().enumerate() {
            assert_eq!(bytes.len() % 512, 0);
            g.sparse[i].set_offset(*off);
            g.sparse[i].set_length(bytes.len() as u64);
            data.extend_from_slice(bytes);
        }
        // The final zero-length segment at the real size: a trailing hole.
        g.sparse[segs.len()].set_offset(real);
        g.sparse[segs.len()].set_length(0);
        g.set_real_size(real);
    }
    h.set_size(data.len() as u64);
    h.set_cksum();
    let mut b = tar::Builder::new(Vec::new());
    b.append(&h, &data[..]).unwrap();
    b.into_inner().unwrap()
}

/// Item 11: a 2 KiB GNU sparse tar of a 512 MiB file keeps its holes (a few blocks
/// allocated, not 512 MiB) and reads back right: data where the tar has data, zeros between.
#[test]
fn gnu_sparse_file_keeps_its_holes() {
    use std::io::{Read, Seek, SeekFrom};
    use std::os::unix::fs::MetadataExt;
    let t = home_with_base();
    let a = [b'A'; 512];
    let b = [b'B'; 512];
    let real = 512u64 << 20;
    let tar = gnu_sparse_tar("big.img", real, &[(0, &a), (256 << 20, &b)]);
    assert!(tar.len() <= 4096, "{} bytes", tar.len());
    let p = write(&t, "sparse.tar", &tar);
    let out = t.ok(&[
        "layer",
        "apply",
        "--parent",
        "base",
        "sp",
        p.to_str().unwrap(),
    ]);
    assert!(
        out.contains(&real.to_string()),
        "the applied size is the real size: {out}"
    );
    let f = t.home().join("sp/root/big.img");
    let md = std::fs::metadata(&f).unwrap();
    eprintln!(
        "sparse: size {} bytes, {} KiB allocated",
        md.len(),
        md.blocks() / 2
    );
    assert_eq!(md.len(), real);
    assert!(
        md.blocks() * 512 < 1 << 20,
        "{} blocks allocated: the holes were written",
        md.blocks()
    );
    let mut file = std::fs::File::open(&f).unwrap();
    let mut buf = [0u8; 512];
    file.read_exact(&mut buf).unwrap();
    assert_eq!(buf, a);
    file.seek(SeekFrom::Start(100 << 20)).unwrap();
    file.read_exact(&mut buf).unwrap();
    assert_eq!(buf, [0u8; 512]);
    file.seek(SeekFrom::Start(256 << 20)).unwrap();
    file.read_exact(&mut buf).unwrap();
    assert_eq!(buf, b);
    file.seek(SeekFrom::Start(real - 512)).unwrap();
    file.read_exact(&mut buf).unwrap();
    assert_eq!(buf, [0u8; 512]);
}

fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}

/// Total bytes of the files below `dir`.
fn bytes_under(dir: &Path) -> u64 {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_file())
        .map(|e| e.metadata().unwrap().len())
        .sum()
}

/// Item 5: a docker-save whose manifest names one 20 MB config 100 times (100 tags): the
/// config is read once, recorded once, and `image ls` does not read it; peak memory of the
/// import and of `image ls` stays small, the records small. A manifest with more images than
/// one archive may hold is refused naming the limit.
#[test]
fn one_config_named_a_hundred_times_costs_it_once() {
    let t = test_root();
    let layer = tar_of(&[b"etc/hello".to_vec()]);
    let diff_id = format!("sha256:{}", sha256_hex(&layer));
    let pad = "x".repeat(20 << 20);
    let config = format!(
        r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":["{diff_id}"]}},"pad":"{pad}"}}"#
    );
    let cfg_name = format!("{}.json", sha256_hex(config.as_bytes()));
    let entries: Vec<String> = (0..100)
        .map(|i| {
            format!(r#"{{"Config":"{cfg_name}","RepoTags":["big:{i}"],"Layers":["l1/layer.tar"]}}"#)
        })
        .collect();
    let manifest = format!("[{}]", entries.join(","));
    let archive = |manifest: &str| {
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in [
            ("manifest.json", manifest.as_bytes()),
            (cfg_name.as_str(), config.as_bytes()),
            ("l1/layer.tar", &layer[..]),
        ] {
            let mut h = tar::Header::new_ustar();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_entry_type(tar::EntryType::Regular);
            b.append_data(&mut h, name, data).unwrap();
        }
        b.into_inner().unwrap()
    };
    let p = write(&t, "hundred.tar", &archive(&manifest));
    let (out, import_kb) = measured(
        &t.root(),
        &t.tmp(),
        &["image", "import", p.to_str().unwrap()],
        8192,
    );
    assert!(out.status.success(), "{}", text(&out));
    let records = bytes_under(&t.root().join("images"));
    let configs = bytes_under(&t.root().join("configs"));
    let (ls, ls_kb) = measured(&t.root(), &t.tmp(), &["image", "ls"], 8192);
    assert!(ls.status.success(), "{}", text(&ls));
    eprintln!(
        "100 tags of one 20 MiB config: import peak {} MiB, image ls peak {} MiB, records {} KiB, configs {} MiB",
        import_kb / 1024,
        ls_kb / 1024,
        records / 1024,
        configs >> 20
    );
    assert_eq!(
        String::from_utf8_lossy(&ls.stdout).matches("big:").count(),
        100
    );
    assert!(import_kb < 200 * 1024, "import peak RSS {import_kb} KiB");
    assert!(ls_kb < 50 * 1024, "image ls peak RSS {ls_kb} KiB");
    assert!(records < 1 << 20, "image records hold {records} bytes");
    assert!(
        configs < 21 << 20,
        "configs hold {configs} bytes: more than one copy"
    );
    // The config of one image is still there, byte for byte (what `image save` needs).
    let saved = t.path().join("saved.tar");
    t.ok(&["image", "save", "big:7", "-o", saved.to_str().unwrap()]);
    let mut a = tar::Archive::new(std::fs::File::open(&saved).unwrap());
    // (Its diff ids are those of the re-exported layer, so its name may differ.)
    let found = a.entries().unwrap().map(|e| e.unwrap()).any(|e| {
        let n = e.path().unwrap().to_string_lossy().into_owned();
        n.ends_with(".json") && n != "manifest.json" && e.size() > 20 << 20
    });
    assert!(found, "image save lost the config");

    // Too many images in one manifest: refused naming the limit.
    let many: Vec<String> = (0..1025)
        .map(|i| {
            format!(r#"{{"Config":"{cfg_name}","RepoTags":["m:{i}"],"Layers":["l1/layer.tar"]}}"#)
        })
        .collect();
    let p = write(&t, "many.tar", &archive(&format!("[{}]", many.join(","))));
    let err = t.fails(&["image", "import", p.to_str().unwrap()]);
    assert!(err.contains("1025 images") && err.contains("1024"), "{err}");
}

/// Sibling of item 4: a GNU long-name header of 512 MiB (about 1 MiB of gzip) was read
/// whole into memory by the tar parser before any check; now it is refused as soon as its
/// header passes, in bounded memory, naming the limit.
#[test]
fn huge_long_name_header_refused_in_bounded_memory() {
    let t = home_with_base();
    let before = manifest(&t.root());
    let mut h = tar::Header::new_gnu();
    h.set_path("././@LongLink").unwrap();
    h.set_entry_type(tar::EntryType::GNULongName);
    let size: u64 = 512 << 20;
    h.set_size(size);
    h.set_cksum();
    let mut c = Command::new("gzip")
        .arg("-1c")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("gzip is needed");
    let mut stdin = c.stdin.take().unwrap();
    let head = h.as_bytes().to_vec();
    let w = std::thread::spawn(move || {
        stdin.write_all(&head).unwrap();
        let chunk = vec![b'a'; 1 << 20];
        for _ in 0..(size >> 20) {
            stdin.write_all(&chunk).unwrap();
        }
        stdin.write_all(&[0u8; 1536]).unwrap();
    });
    let gz = c.wait_with_output().unwrap().stdout;
    w.join().unwrap();
    eprintln!("long-name bomb: {} KiB of gzip", gz.len() / 1024);
    let p = write(&t, "longname.tar.gz", &gz);
    let (out, peak_kb) = measured(
        &t.root(),
        &t.tmp(),
        &[
            "layer",
            "apply",
            "--parent",
            "base",
            "ln",
            p.to_str().unwrap(),
        ],
        3072,
    );
    eprintln!("long-name bomb: peak RSS {} MiB", peak_kb / 1024);
    let msg = text(&out);
    assert_eq!(out.status.code(), Some(1), "{msg}");
    assert!(msg.contains("long-name extension header"), "{msg}");
    assert!(peak_kb < 100 * 1024, "peak RSS {peak_kb} KiB");
    assert_eq!(manifest(&t.root()), before);
}

/// A PAX sparse entry (GNU tar `--sparse --format=posix`) of format `version` for a file
/// `big.img` of `real` bytes with one 512-byte segment of `H` at 1 MiB.
fn pax_sparse_tar(version: &str, real: u64) -> Vec<u8> {
    let off = 1u64 << 20;
    let real_s = real.to_string();
    let off_s = off.to_string();
    let map = format!("{off},512,{real},0");
    let mut recs: Vec<(&str, Vec<u8>)> = vec![("GNU.sparse.name", b"big.img".to_vec())];
    let mut data = Vec::new();
    match version {
        "1.0" => {
            recs.push(("GNU.sparse.major", b"1".to_vec()));
            recs.push(("GNU.sparse.minor", b"0".to_vec()));
            recs.push(("GNU.sparse.realsize", real_s.clone().into_bytes()));
            let mut m = format!("2\n{off}\n512\n{real}\n0\n").into_bytes();
            m.resize(512, 0);
            data.extend(m);
        }
        "0.1" => {
            recs.push(("GNU.sparse.size", real_s.clone().into_bytes()));
            recs.push(("GNU.sparse.numblocks", b"2".to_vec()));
            recs.push(("GNU.sparse.map", map.into_bytes()));
        }
        _ => {
            recs.push(("GNU.sparse.size", real_s.clone().into_bytes()));
            recs.push(("GNU.sparse.numblocks", b"2".to_vec()));
            recs.push(("GNU.sparse.offset", off_s.into_bytes()));
            recs.push(("GNU.sparse.numbytes", b"512".to_vec()));
            recs.push(("GNU.sparse.offset", real_s.into_bytes()));
            recs.push(("GNU.sparse.numbytes", b"0".to_vec()));
        }
    }
    data.extend([b'H'; 512]);
    let mut b = tar::Builder::new(Vec::new());
    b.append_pax_extensions(recs.iter().map(|(k, v)| (*k, &v[..])))
        .unwrap();
    let mut h = tar::Header::new_ustar();
    h.set_path("GNUSparseFile.1/big.img").unwrap();
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_mtime(1_600_000_000);
    h.set_cksum();
    b.append(&h, &data[..]).unwrap();
    b.into_inner().unwrap()
}

/// Item 11, PAX formats: sparse files in PAX 0.0, 0.1 and 1.0 (which the tar parser does not
/// decode) are written under their real name, at their real size, with their holes; before,
/// each became `GNUSparseFile.N/big.img` holding the packed data (and, for 1.0, the map).
#[test]
fn pax_sparse_files_are_decoded_with_holes() {
    use std::io::{Read, Seek, SeekFrom};
    use std::os::unix::fs::MetadataExt;
    let t = home_with_base();
    let real = 64u64 << 20;
    for v in ["1.0", "0.1", "0.0"] {
        let id = format!("pax{}", v.replace('.', ""));
        let p = write(&t, &format!("{id}.tar"), &pax_sparse_tar(v, real));
        let out = t.ok(&[
            "layer",
            "apply",
            "--parent",
            "base",
            &id,
            p.to_str().unwrap(),
        ]);
        assert!(out.contains(&real.to_string()), "{v}: size {out}");
        let root = t.home().join(&id).join("root");
        assert!(
            !root.join("GNUSparseFile.1").exists(),
            "{v}: the packed name was used"
        );
        let f = root.join("big.img");
        let md = std::fs::metadata(&f).unwrap_or_else(|e| panic!("{v}: {e}"));
        assert_eq!(md.len(), real, "{v}");
        assert!(md.blocks() * 512 < 1 << 20, "{v}: {} blocks", md.blocks());
        let mut file = std::fs::File::open(&f).unwrap();
        let mut buf = [0u8; 512];
        file.read_exact(&mut buf).unwrap();
        assert_eq!(buf, [0u8; 512], "{v}");
        file.seek(SeekFrom::Start(1 << 20)).unwrap();
        file.read_exact(&mut buf).unwrap();
        assert_eq!(buf, [b'H'; 512], "{v}");
    }
}

/// A process in a running container swaps a file of its upper dir, again and again, for a
/// FIFO and for a node of a device (the numbers of /dev/zero, standing for a host disk) while
/// `ovlink diff` exports the layer (what `docker commit --pause=false`, the plugin's Diff and
/// the snapshotter's Commit do). Every export ends promptly (an open of the FIFO would block
/// for ever), and the tar never holds a regular file `f` with anything but the file's own
/// bytes: the exporter reads only the inode it listed, and only when it is a regular file;
/// otherwise the export fails naming the file that changed.
#[test]
fn privileged_diff_never_reads_what_a_racing_writer_swaps_in() {
    const FILES: u64 = 64;
    let t = home_with_base();
    t.ok(&["layer", "create-rw", "c1", "--parent", "base"]);
    let upper = t.home().join("c1/upper");
    for i in 0..FILES {
        std::fs::write(upper.join(format!("f{i}")), b"regular\n").unwrap();
    }
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let swapper = {
        let (stop, upper) = (stop.clone(), upper.clone());
        std::thread::spawn(move || {
            let dir = ovlink_fs::at::open_dir(&upper).unwrap();
            let g = upper.parent().unwrap().join("g"); // beside upper/: only f* are seen in it
            let mut n = 0u64;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let name = format!("f{}", n % FILES);
                let (kind, dev) = match (n / FILES) % 3 {
                    0 => (rustix::fs::FileType::Fifo, 0),
                    1 => (
                        rustix::fs::FileType::CharacterDevice,
                        rustix::fs::makedev(1, 5),
                    ),
                    _ => {
                        std::fs::write(&g, b"regular\n").unwrap();
                        std::fs::rename(&g, upper.join(&name)).unwrap();
                        n += 1;
                        continue;
                    }
                };
                let _ = rustix::fs::unlinkat(&dir, name.as_str(), rustix::fs::AtFlags::empty());
                rustix::fs::mknodat(
                    &dir,
                    name.as_str(),
                    kind,
                    rustix::fs::Mode::from_raw_mode(0o644),
                    dev,
                )
                .unwrap();
                n += 1;
            }
            n
        })
    };
    let out = t.path().join("c1.tar");
    let (mut ok, mut changed, mut gone) = (0, 0, 0);
    let started = std::time::Instant::now();
    while started.elapsed() < std::time::Duration::from_secs(8) && ok + changed + gone < 400 {
        let mut child = ovlink_cmd(&t.root(), &["diff", "c1", "-o", out.to_str().unwrap()])
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let waited = std::time::Instant::now();
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            if waited.elapsed() > std::time::Duration::from_secs(10) {
                let _ = child.kill();
                stop.store(true, std::sync::atomic::Ordering::Relaxed);
                panic!("ovlink diff blocked on what was swapped in (a FIFO opened?)");
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        };
        let mut err = String::new();
        std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
        if status.success() {
            ok += 1;
            let mut ar = tar::Archive::new(std::fs::File::open(&out).unwrap());
            for e in ar.entries().unwrap() {
                let mut e = e.unwrap();
                if e.header().entry_type().is_file() {
                    let mut data = Vec::new();
                    std::io::Read::read_to_end(&mut e, &mut data).unwrap();
                    assert_eq!(
                        data, b"regular\n",
                        "the layer holds bytes that were not the file's"
                    );
                }
            }
        } else {
            // Refused by the check, or a name was gone for a moment (the swap's unlink):
            // either way a clean error naming the file.
            let vanished = err.contains("upper/f") && err.contains("No such file or directory");
            assert!(
                err.contains("changed while being read") || vanished,
                "diff failed otherwise: {err}"
            );
            changed += usize::from(!vanished);
            gone += usize::from(vanished);
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let swaps = swapper.join().unwrap();
    eprintln!(
        "{ok} exports, {changed} refused a swapped file, {gone} found one gone, {swaps} swaps"
    );
    assert!(ok + changed + gone > 0);
}

/// A home has one owner (issue 24, item 2). The snapshotter removes at its start every layer
/// no snapshot of its own names: started on the command line's root (both defaulted to
/// /var/lib/ovlink) it deleted an imported image's layers and a container. Now it refuses such
/// a home before touching anything; a home the snapshotter made is recorded as its own, and
/// the command line is refused a write there (and may still read it).
#[test]
fn privileged_the_snapshotter_and_the_command_line_never_share_a_home() {
    use ovlink_snapshotter::{Config, Snapshotter};
    let t = home_with_base();
    t.ok(&["layer", "create-rw", "c1", "--parent", "base"]);
    let before = t.ok(&["layer", "ls"]);
    // The snapshotter on the command line's root: refused, nothing removed.
    let sock = t.path().join("snap.sock");
    let out = ovlink_cmd(
        &t.root(),
        &["snapshotter", "serve", "--socket", sock.to_str().unwrap()],
    )
    .output()
    .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "the snapshotter started on the CLI's home"
    );
    assert!(
        err.contains("belongs to the ovlink command line") && err.contains("own --root"),
        "{err}"
    );
    assert_eq!(
        t.ok(&["layer", "ls"]),
        before,
        "the refused start removed layers"
    );
    assert!(!t.home().join(".owner").exists());

    // A home the snapshotter made: recorded, and refused to the command line's writes.
    let sroot = t.path().join("snaproot");
    let cfg = Config {
        root: sroot.clone(),
        layout: ovlink_driver::Layout::Overlay,
        sync: None,
        diff: Default::default(),
        symlinks: None,
    };
    let (snap, _) = Snapshotter::open(&cfg).unwrap();
    drop(snap);
    assert_eq!(
        std::fs::read_to_string(sroot.join("overlay/.owner")).unwrap(),
        "snapshotter\n"
    );
    let tar = write(
        &t,
        "l.tar",
        &TarBuilder::new().file("f", 0o644, b"x").build(),
    );
    for args in [
        vec!["layer", "create", "x"],
        vec!["layer", "apply", "y", tar.to_str().unwrap()],
        vec!["image", "import", tar.to_str().unwrap()],
    ] {
        let out = t.ovlink_in(&sroot, &args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "{args:?} wrote into the snapshotter's home"
        );
        assert!(
            err.contains("belongs to ovlink snapshotter serve"),
            "{args:?}: {err}"
        );
    }
    // Reading is fine.
    t.ok_in(&sroot, &["layer", "ls"]);
    t.ok_in(&sroot, &["report"]);
    // And the snapshotter reopens its own home.
    let (snap, _) = Snapshotter::open(&cfg).unwrap();
    drop(snap);
}

/// `levels` nested directories `d` below `dir`, made fd-relative (deeper than PATH_MAX), as a
/// process in a container makes them with `mkdir d; cd d` in a loop.
fn deep_chain(dir: &Path, levels: usize) {
    let mut fd = ovlink_fs::at::open_dir(dir).unwrap();
    for _ in 0..levels {
        rustix::fs::mkdirat(&fd, "d", rustix::fs::Mode::from_raw_mode(0o755)).unwrap();
        fd = ovlink_fs::at::open_dir_at(&fd, "d", dir).unwrap();
    }
}

/// A container builds a deep directory chain (issue 24, item 1: Usage aborted the snapshotter
/// at ~3,000 levels, Commit's export at ~1,500, and a restart re-ran the commit). 1,600
/// levels: every walk works (diff, changes, diff-size, report, the commit's export into a new
/// layer); 5,000 levels: each refuses with the depth and the path, and no process crashes.
#[test]
fn privileged_deep_trees_are_walked_or_refused_never_a_crash() {
    for (levels, ok) in [(1600, true), (5000, false)] {
        let t = home_with_base();
        t.ok(&["layer", "create-rw", "c1", "--parent", "base"]);
        deep_chain(&t.home().join("c1/upper"), levels);
        let out = t.path().join("c1.tar");
        for args in [
            vec!["diff", "c1", "-o", out.to_str().unwrap()],
            vec!["changes", "c1"],
            vec!["diff-size", "c1"],
            vec!["report", "--json"],
        ] {
            let o = t.ovlink(&args);
            let err = String::from_utf8_lossy(&o.stderr);
            assert!(
                o.status.code().is_some(),
                "{levels} levels: {args:?} was killed by a signal (a stack overflow?): {err}"
            );
            if ok {
                assert!(o.status.success(), "{levels} levels: {args:?}: {err}");
            } else if args[0] != "report" {
                assert!(!o.status.success(), "{levels} levels: {args:?} passed");
                assert!(
                    err.contains("more than 4096 directories deep"),
                    "{args:?}: {err}"
                );
            }
        }
        if ok {
            let mut names = 0;
            for e in tar::Archive::new(std::fs::File::open(&out).unwrap())
                .entries()
                .unwrap()
            {
                e.unwrap();
                names += 1;
            }
            assert_eq!(names, levels, "the diff holds every level of the chain");
        }
    }
}
