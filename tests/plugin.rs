//! The graphdriver plugin protocol without dockerd: `ovlink plugin serve --socket …` runs as a
//! child process on a socket in the test's temporary root, and `ovlink_plugin::client::Client`
//! speaks HTTP/1.1 to it. Shapes (empty `{}` requests, omitted and null fields), Init's option
//! and id-map handling, ApplyDiff/Diff streaming (a Diff piped into an ApplyDiff on a second
//! connection at the same time), concurrent Get/Put, a SIGTERM that leaves mounts in place,
//! an Init that never unmounts, recovery of a home whose server was killed (also during an
//! ApplyDiff), and one slow client that cannot stop the rest (stalled ApplyDiff with hundreds
//! of Gets queued behind it, idle and half-sent connections, a flood of connections).

use crate::util::{manifests, test_root, TarBuilder, TestRoot};
use ovlink_plugin::client::Client;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `ovlink plugin serve`; killed on drop if still running.
struct Plugin {
    child: Child,
    socket: PathBuf,
    client: Client,
}

impl Plugin {
    fn start(tr: &TestRoot) -> Plugin {
        Self::start_at(tr.path().join("plugin.sock"))
    }

    fn start_at(socket: PathBuf) -> Plugin {
        Self::start_with(socket, &[], None)
    }

    /// Starts with extra `serve` flags, under `prlimit --nofile=N` when `nofile` is given.
    fn start_with(socket: PathBuf, extra: &[&str], nofile: Option<u32>) -> Plugin {
        let bin = env!("CARGO_BIN_EXE_ovlink");
        let mut cmd = match nofile {
            Some(n) => {
                let mut c = Command::new("prlimit");
                c.arg(format!("--nofile={n}:{n}")).arg(bin);
                c
            }
            None => Command::new(bin),
        };
        let child = cmd
            .args(["plugin", "serve", "--shutdown-timeout", "20"])
            .args(extra)
            .arg("--socket")
            .arg(&socket)
            .env("OVLINK_NO_FSYNC", "1")
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::os::unix::net::UnixStream::connect(&socket).is_err() {
            assert!(
                Instant::now() < deadline,
                "the plugin did not listen on {socket:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let client = Client::new(&socket).unwrap();
        Plugin {
            child,
            socket,
            client,
        }
    }

    fn call(&self, method: &str, body: Value) -> (u16, Value) {
        self.client.call_json(method, &body).unwrap()
    }

    /// Calls and asserts HTTP 200 without `Err`; returns the answer.
    fn ok(&self, method: &str, body: Value) -> Value {
        let (status, v) = self.call(method, body.clone());
        assert_eq!(status, 200, "{method} {body} -> {v}");
        assert!(v.get("Err").is_none(), "{method} {body} -> {v}");
        v
    }

    /// Calls and asserts a failure; returns the `Err` message.
    fn err(&self, method: &str, body: Value) -> String {
        let (status, v) = self.call(method, body.clone());
        assert_ne!(status, 200, "{method} {body} should fail, got {v}");
        v["Err"]
            .as_str()
            .unwrap_or_else(|| panic!("{method}: no Err in {v}"))
            .to_string()
    }

    fn init(&self, home: &Path) {
        self.ok(
            "GraphDriver.Init",
            json!({"Home": home, "Opts": null, "UIDMaps": null, "GIDMaps": null}),
        );
    }

    fn apply(&self, id: &str, parent: &str, tar: impl Read + Send + 'static) -> u64 {
        let (status, out) = self
            .client
            .send_reader(
                &format!("GraphDriver.ApplyDiff?id={id}&parent={parent}"),
                tar,
            )
            .unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(status, 200, "ApplyDiff {id}: {v}");
        v["Size"].as_u64().unwrap_or(0)
    }

    fn sigterm(&mut self) -> String {
        let pid = rustix::process::Pid::from_child(&self.child);
        rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
        let status = self.child.wait().unwrap();
        let mut log = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            e.read_to_string(&mut log).unwrap();
        }
        assert!(status.success(), "plugin exited with {status}: {log}");
        log
    }
}

impl Drop for Plugin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn is_mounted(p: &Path) -> bool {
    crate::util::mounts_under(p).iter().any(|m| m == p)
}

#[test]
fn plugin_activate_init_and_call_shapes() {
    let tr = test_root();
    let p = Plugin::start(&tr);
    let mode = std::fs::metadata(&p.socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "socket mode");

    assert_eq!(
        p.ok("Plugin.Activate", json!({})),
        json!({"Implements": ["GraphDriver"]})
    );
    assert_eq!(
        p.ok("GraphDriver.Capabilities", json!({})),
        json!({"Capabilities": {"ReproducesExactDiffs": false}})
    );
    // Before Init: Exists is false, everything else says what is missing.
    assert_eq!(p.ok("GraphDriver.Exists", json!({"ID": "x"})), json!({}));
    assert!(p
        .err("GraphDriver.Get", json!({"ID": "x"}))
        .contains("Init"));

    let home = tr.path().join("data").join("ovlink");
    let e = p.err(
        "GraphDriver.Init",
        json!({"Home": home, "Opts": ["overlay.size=1G"]}),
    );
    assert!(
        e.contains("unknown option") && e.contains("overlay.size=1G"),
        "{e}"
    );
    assert!(p.err("GraphDriver.Init", json!({})).contains("Home"));
    p.init(&home);
    let st = std::fs::metadata(&home).unwrap();
    assert_eq!(st.mode() & 0o7777, 0o710);

    // Create with every field omitted but the id; a layer without parent: root/ 0755, 0:0.
    assert_eq!(p.ok("GraphDriver.Create", json!({"ID": "base"})), json!({}));
    let (status, raw) = p
        .client
        .call(
            "GraphDriver.Create",
            br#"{"ID":"base2","Parent":"","MountLabel":"","StorageOpt":null}"#,
        )
        .unwrap();
    assert_eq!((status, raw.as_slice()), (200, &b"{}"[..]));
    let e = p.err("GraphDriver.Create", json!({"ID": "base"}));
    assert!(e.contains("already exists"), "{e}");
    let e = p.err(
        "GraphDriver.Create",
        json!({"ID": "so", "StorageOpt": {"size": "1G"}}),
    );
    assert!(e.contains("storage options"), "{e}");
    assert!(p
        .err("GraphDriver.Create", json!({"ID": "../x"}))
        .contains("invalid layer id"));
    assert!(p
        .err("GraphDriver.Create", json!({"ID": "y", "Parent": "nope"}))
        .contains("nope"));

    let dir = p.ok("GraphDriver.Get", json!({"ID": "base"}))["Dir"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(PathBuf::from(&dir), home.join("base/root"));
    let m = std::fs::metadata(&dir).unwrap();
    assert_eq!((m.mode() & 0o7777, m.uid(), m.gid()), (0o755, 0, 0));
    p.ok("GraphDriver.Put", json!({"ID": "base"}));

    assert_eq!(
        p.ok("GraphDriver.Exists", json!({"ID": "base"})),
        json!({"Exists": true})
    );
    assert_eq!(
        p.ok("GraphDriver.Exists", json!({"ID": "missing"})),
        json!({})
    );
    assert_eq!(p.ok("GraphDriver.Exists", json!({})), json!({}));

    // Container layer and its -init layer; Get mounts once, the last Put unmounts.
    p.ok(
        "GraphDriver.CreateReadWrite",
        json!({"ID": "c-init", "Parent": "base"}),
    );
    p.ok(
        "GraphDriver.CreateReadWrite",
        json!({"ID": "c", "Parent": "c-init", "MountLabel": ""}),
    );
    let merged = home.join("c/merged");
    let d1 = p.ok("GraphDriver.Get", json!({"ID": "c"}));
    assert_eq!(d1, json!({"Dir": merged}));
    assert!(is_mounted(&merged));
    assert_eq!(
        p.ok("GraphDriver.Get", json!({"ID": "c", "MountLabel": ""})),
        d1
    );
    p.ok("GraphDriver.Put", json!({"ID": "c"}));
    assert!(is_mounted(&merged), "one Get is still open");
    p.ok("GraphDriver.Put", json!({"ID": "c"}));
    assert!(!is_mounted(&merged));

    let md = p.ok("GraphDriver.GetMetadata", json!({"ID": "c"}));
    assert_eq!(md["Metadata"]["UpperDir"], json!(home.join("c/upper")));
    assert_eq!(md["Metadata"]["LowerDir"], json!(home.join("base/root")));
    assert_eq!(md["Metadata"]["MergedDir"], json!(merged));
    let md = p.ok("GraphDriver.GetMetadata", json!({"ID": "base"}));
    assert_eq!(md, json!({"Metadata": {"RootDir": home.join("base/root")}}));
    assert!(p
        .err("GraphDriver.GetMetadata", json!({"ID": "zz"}))
        .contains("zz"));

    // Status: an empty body counts as {}; pairs of strings.
    let (status, raw) = p.client.call("GraphDriver.Status", b"").unwrap();
    assert_eq!(status, 200);
    let v: Value = serde_json::from_slice(&raw).unwrap();
    let pairs = v["Status"].as_array().unwrap();
    assert!(pairs.iter().any(|kv| kv[0] == "Backing Filesystem"), "{v}");
    assert!(pairs.iter().all(|kv| kv.as_array().unwrap().len() == 2));

    let (status, v) = p.call("GraphDriver.Frobnicate", json!({}));
    assert_eq!(status, 404);
    assert!(v["Err"].as_str().unwrap().contains("Frobnicate"));
    let (status, _) = p.client.call("GraphDriver.Get", b"{not json").unwrap();
    assert_eq!(status, 500);

    p.ok("GraphDriver.Remove", json!({"ID": "c"}));
    assert_eq!(p.ok("GraphDriver.Exists", json!({"ID": "c"})), json!({}));
    assert!(p
        .err("GraphDriver.Remove", json!({"ID": "c"}))
        .contains("does not exist"));
    p.ok("GraphDriver.Cleanup", json!({}));
}

/// Yields `len` bytes of a deterministic pattern without holding them.
struct Pattern {
    left: u64,
    n: u8,
}

impl Read for Pattern {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = (buf.len() as u64).min(self.left) as usize;
        for b in &mut buf[..n] {
            self.n = self.n.wrapping_mul(31).wrapping_add(7);
            *b = self.n;
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// A tar with one big file streamed from `Pattern` (written by a thread into a pipe).
fn big_tar_stream(size: u64) -> impl Read + Send + 'static {
    let (r, mut w) = std::os::unix::net::UnixStream::pair().unwrap();
    std::thread::spawn(move || {
        let mut b = tar::Builder::new(&mut w);
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o644);
        h.set_size(size);
        h.set_mtime(1_600_000_000);
        b.append_data(&mut h, "big.bin", Pattern { left: size, n: 1 })
            .unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o600);
        h.set_size(5);
        b.append_data(&mut h, "etc/small", &b"hello"[..]).unwrap();
        b.finish().unwrap();
        drop(b);
        w.flush().unwrap();
    });
    r
}

#[test]
fn plugin_apply_diff_streams_and_diff_pipes_into_apply() {
    let tr = test_root();
    let p = Plugin::start(&tr);
    let home = tr.path().join("home");
    p.init(&home);

    // A 48 MiB layer streamed in chunks (the server never needs it whole).
    const BIG: u64 = 48 << 20;
    p.ok("GraphDriver.Create", json!({"ID": "l1"}));
    let size = p.apply("l1", "", big_tar_stream(BIG));
    assert_eq!(size, BIG + 5);
    let m = std::fs::metadata(home.join("l1/root/big.bin")).unwrap();
    assert_eq!(m.len(), BIG);
    assert_eq!(
        std::fs::read(home.join("l1/root/etc/small")).unwrap(),
        b"hello"
    );

    // A second layer from a small tar with a whiteout.
    let tar = TarBuilder::new()
        .dir("etc", 0o755)
        .file("etc/new", 0o644, b"new!")
        .whiteout("etc", "small")
        .build();
    p.ok("GraphDriver.Create", json!({"ID": "l2", "Parent": "l1"}));
    assert_eq!(p.apply("l2", "l1", std::io::Cursor::new(tar)), 4);
    assert!(!home.join("l2/root/etc/small").exists());
    assert_eq!(
        p.ok("GraphDriver.DiffSize", json!({"ID": "l2", "Parent": "l1"})),
        json!({"Size": 4})
    );

    // Diff of l1 (whole layer) read on one connection while it streams straight into an
    // ApplyDiff on a second connection: a server that serves one request at a time deadlocks.
    let mut s = std::os::unix::net::UnixStream::connect(&p.socket).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    let body = br#"{"ID":"l1"}"#;
    write!(
        s,
        "POST /GraphDriver.Diff HTTP/1.0\r\nHost: plugin\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    s.write_all(body).unwrap();
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    assert!(line.contains(" 200 "), "Diff status line: {line}");
    loop {
        line.clear();
        r.read_line(&mut line).unwrap();
        if line == "\r\n" {
            break;
        }
    }
    p.ok("GraphDriver.Create", json!({"ID": "copy"}));
    assert_eq!(p.apply("copy", "", r), BIG + 5);
    let a = crate::util::sha256_file(&home.join("l1/root/big.bin"));
    let b = crate::util::sha256_file(&home.join("copy/root/big.bin"));
    assert_eq!(a, b);

    // A broken tar: the error comes back as Err, the layer keeps its state.
    p.ok("GraphDriver.Create", json!({"ID": "bad"}));
    let (status, out) = p
        .client
        .send_reader(
            "GraphDriver.ApplyDiff?id=bad",
            std::io::Cursor::new(vec![7u8; 3000]),
        )
        .unwrap();
    let v: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(status, 500, "{v}");
    assert!(v["Err"].as_str().unwrap().contains("bad"), "{v}");
    assert!(home.join("bad/root").is_dir());

    // Diff of a missing layer is a JSON error, not a broken stream.
    let (status, out) = p
        .client
        .call("GraphDriver.Diff", br#"{"ID":"nope"}"#)
        .unwrap();
    assert_eq!(status, 500);
    assert!(String::from_utf8_lossy(&out).contains("nope"));
}

#[test]
fn plugin_concurrent_get_put_then_sigterm_keeps_mounts() {
    let tr = test_root();
    let mut p = Plugin::start(&tr);
    let home = tr.path().join("home");
    p.init(&home);
    p.ok("GraphDriver.Create", json!({"ID": "img"}));
    for c in ["c1", "c2", "c3"] {
        p.ok(
            "GraphDriver.CreateReadWrite",
            json!({"ID": c, "Parent": "img"}),
        );
    }
    let socket = p.socket.clone();
    let threads: Vec<_> = (0..6)
        .map(|t| {
            let socket = socket.clone();
            std::thread::spawn(move || {
                let c = Client::new(&socket).unwrap();
                let id = ["c1", "c2", "c3"][t % 3];
                for _ in 0..15 {
                    let (s, v) = c.call_json("GraphDriver.Get", &json!({"ID": id})).unwrap();
                    assert_eq!(s, 200, "{v}");
                    let (s, v) = c.call_json("GraphDriver.Put", &json!({"ID": id})).unwrap();
                    assert_eq!(s, 200, "{v}");
                }
                let (s, _) = c.call_json("GraphDriver.Get", &json!({"ID": id})).unwrap();
                assert_eq!(s, 200);
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    // Each thread kept one Get: every layer is mounted, with two references each.
    for c in ["c1", "c2", "c3"] {
        assert!(is_mounted(&home.join(c).join("merged")), "{c}");
    }
    p.ok("GraphDriver.Put", json!({"ID": "c1"}));
    assert!(
        is_mounted(&home.join("c1/merged")),
        "c1 still has one reference"
    );

    // SIGTERM (a restart for an upgrade): running containers keep their root filesystems.
    let log = p.sigterm();
    assert!(log.contains("SIGTERM"), "{log}");
    assert!(!p.socket.exists(), "the socket is removed at exit");
    for c in ["c1", "c2", "c3"] {
        assert!(
            is_mounted(&home.join(c).join("merged")),
            "{c} was unmounted by the plugin's own shutdown: {log}"
        );
    }
    assert!(log.contains("3 container layer(s)"), "{log}");
    drop(p);

    // The restarted plugin serves at once; each mount counts as one reference.
    let p = Plugin::start(&tr);
    p.ok("GraphDriver.Get", json!({"ID": "c1"}));
    p.ok("GraphDriver.Put", json!({"ID": "c1"}));
    assert!(
        is_mounted(&home.join("c1/merged")),
        "the container's own use"
    );
    p.ok("GraphDriver.Put", json!({"ID": "c1"}));
    assert!(!is_mounted(&home.join("c1/merged")), "released by its Put");
    // dockerd's own shutdown (Cleanup) unmounts the rest.
    p.ok("GraphDriver.Cleanup", json!({}));
    assert!(crate::util::mounts_under(&home).is_empty());
}

#[test]
fn plugin_init_recovers_a_home_left_by_a_killed_server() {
    let tr = test_root();
    let home = tr.path().join("home");
    let mut p = Plugin::start(&tr);
    p.init(&home);
    p.ok("GraphDriver.Create", json!({"ID": "img"}));
    p.ok(
        "GraphDriver.CreateReadWrite",
        json!({"ID": "c", "Parent": "img"}),
    );
    p.ok("GraphDriver.Get", json!({"ID": "c"}));
    assert!(is_mounted(&home.join("c/merged")));
    p.child.kill().unwrap();
    p.child.wait().unwrap();
    drop(p);
    std::fs::create_dir(home.join(".tmp-create-crashed")).unwrap();

    // The stale socket is replaced, and the server re-initializes from its record of the last
    // Init (dockerd does not repeat Init), without unmounting what containers may still use.
    let p = Plugin::start(&tr);
    assert!(tr.path().join("plugin.init.json").is_file());
    assert_eq!(
        p.ok("GraphDriver.Exists", json!({"ID": "c"})),
        json!({"Exists": true})
    );
    assert!(is_mounted(&home.join("c/merged")));
    // dockerd's Init (its own restart, --live-restore: the container still runs) keeps the
    // mount and reaps the temp dir.
    p.init(&home);
    assert!(
        is_mounted(&home.join("c/merged")),
        "Init unmounted a running container's root filesystem"
    );
    assert!(!home.join(".tmp-create-crashed").exists());
    // The mount counts as one reference: a Get and a Put keep it, the container's Put ends it.
    p.ok("GraphDriver.Get", json!({"ID": "c"}));
    p.ok("GraphDriver.Put", json!({"ID": "c"}));
    assert!(is_mounted(&home.join("c/merged")));
    p.ok("GraphDriver.Put", json!({"ID": "c"}));
    assert!(!is_mounted(&home.join("c/merged")));
    // The layer still works.
    p.ok("GraphDriver.Get", json!({"ID": "c"}));
    assert!(is_mounted(&home.join("c/merged")));
    p.ok("GraphDriver.Put", json!({"ID": "c"}));
    assert!(!is_mounted(&home.join("c/merged")));

    // A second server on a live socket is refused.
    let out = Command::new(env!("CARGO_BIN_EXE_ovlink"))
        .args(["plugin", "serve", "--socket"])
        .arg(&p.socket)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already listening"));
}

/// Sends the head of a chunked ApplyDiff and `first` as its first chunk, then nothing: the
/// returned socket keeps the request open until dropped.
fn stalled_apply(socket: &Path, query: &str, first: &[u8]) -> std::os::unix::net::UnixStream {
    let mut s = std::os::unix::net::UnixStream::connect(socket).unwrap();
    write!(
        s,
        "POST /GraphDriver.ApplyDiff?{query} HTTP/1.1\r\nHost: plugin\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n",
        first.len()
    )
    .unwrap();
    s.write_all(first).unwrap();
    s.write_all(b"\r\n").unwrap();
    s.flush().unwrap();
    s
}

/// The first 1024 bytes of a tar whose first file is 1 MiB: an apply that has started and
/// needs more.
fn tar_start() -> Vec<u8> {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(0o644);
    h.set_size(1 << 20);
    h.set_path("big").unwrap();
    h.set_cksum();
    let mut v = h.as_bytes().to_vec();
    v.extend_from_slice(&[1u8; 512]);
    v
}

fn wait_for(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn has_tmproot(layer: &Path) -> bool {
    std::fs::read_dir(layer).is_ok_and(|rd| {
        rd.flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with("tmproot"))
    })
}

#[test]
fn plugin_killed_during_apply_diff_removes_the_layer_at_restart() {
    let tr = test_root();
    let home = tr.path().join("home");
    let mut p = Plugin::start(&tr);
    p.init(&home);
    // A parentless image layer and one on a parent, both mid-apply when the plugin dies.
    p.ok("GraphDriver.Create", json!({"ID": "base"}));
    p.apply(
        "base",
        "",
        std::io::Cursor::new(TarBuilder::new().file("a", 0o644, b"a").build()),
    );
    p.ok("GraphDriver.Create", json!({"ID": "top"}));
    p.ok("GraphDriver.Create", json!({"ID": "mid", "Parent": "base"}));
    let s1 = stalled_apply(&p.socket, "id=top", &tar_start());
    let s2 = stalled_apply(&p.socket, "id=mid&parent=base", &tar_start());
    wait_for("both applies to start", Duration::from_secs(20), || {
        has_tmproot(&home.join("top")) && has_tmproot(&home.join("mid"))
    });
    assert!(home.join(".ovlink-apply.top").is_file());
    assert!(home.join(".ovlink-apply.mid").is_file());
    // Applied aside: the parentless layer's root/ holds nothing of the half-read tar.
    assert_eq!(std::fs::read_dir(home.join("top/root")).unwrap().count(), 0);
    p.child.kill().unwrap();
    p.child.wait().unwrap();
    drop((s1, s2, p));

    // Restarted while dockerd runs (from the Init record): both layers are removed.
    let p = Plugin::start(&tr);
    for id in ["top", "mid"] {
        assert_eq!(
            p.ok("GraphDriver.Exists", json!({"ID": id})),
            json!({}),
            "{id}"
        );
        assert!(!home.join(format!(".ovlink-apply.{id}")).exists());
    }
    assert_eq!(
        p.ok("GraphDriver.Exists", json!({"ID": "base"})),
        json!({"Exists": true})
    );
    p.ok("GraphDriver.Remove", json!({"ID": "base"}));
    let left: Vec<_> = std::fs::read_dir(&home)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "left in the home: {left:?}");
}

fn threads_of(child: &Child) -> usize {
    let st = std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap();
    st.lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap()
}

/// Runs `f` in a thread and asserts it finishes within `limit` (the call answered at all;
/// the bound is generous, not a timing).
fn answers<T: Send + 'static>(
    what: &str,
    limit: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit)
        .unwrap_or_else(|_| panic!("{what} did not answer within {limit:?}"))
}

#[test]
fn plugin_a_stalled_apply_diff_and_300_gets_behind_it_stop_nothing_else() {
    let tr = test_root();
    let home = tr.path().join("home");
    let p = Plugin::start(&tr);
    p.init(&home);
    p.ok("GraphDriver.Create", json!({"ID": "base"}));
    p.ok("GraphDriver.Create", json!({"ID": "l", "Parent": "base"}));
    p.ok(
        "GraphDriver.CreateReadWrite",
        json!({"ID": "other", "Parent": "base"}),
    );
    let stalled = stalled_apply(&p.socket, "id=l&parent=base", &tar_start());
    wait_for("the apply to start", Duration::from_secs(20), || {
        has_tmproot(&home.join("l"))
    });
    let before = threads_of(&p.child);

    // 300 Gets of the layer being applied: they wait for it, without a thread each.
    let gets: Vec<_> = (0..300)
        .map(|_| {
            let socket = p.socket.clone();
            std::thread::spawn(move || {
                let c = Client::new(&socket).unwrap();
                c.call_json("GraphDriver.Get", &json!({"ID": "l"})).unwrap()
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(2));
    let waiting = threads_of(&p.child);
    assert!(
        waiting < before + 50,
        "300 queued Gets took {} threads (from {before} to {waiting})",
        waiting - before
    );

    // Everything else answers: Status, Exists, Get/Put of another layer.
    let limit = Duration::from_secs(20);
    for (method, body) in [
        ("GraphDriver.Status", json!({})),
        ("GraphDriver.Exists", json!({"ID": "base"})),
        ("GraphDriver.Get", json!({"ID": "other"})),
        ("GraphDriver.Put", json!({"ID": "other"})),
        ("GraphDriver.GetMetadata", json!({"ID": "l"})),
    ] {
        let socket = p.socket.clone();
        let (status, v) = answers(method, limit, move || {
            Client::new(&socket)
                .unwrap()
                .call_json(method, &body)
                .unwrap()
        });
        assert_eq!(status, 200, "{method}: {v}");
    }

    // The stalled client goes away: its apply fails, the layer keeps its state, and the
    // queued Gets are served one after the other.
    drop(stalled);
    for g in gets {
        let (status, v) = g.join().unwrap();
        assert_eq!(status, 200, "{v}");
    }
    assert!(is_mounted(&home.join("l/merged")));
    p.ok("GraphDriver.Remove", json!({"ID": "l"}));
    assert!(!home.join(".ovlink-apply.l").exists());
    assert!(crate::util::mounts_under(&home).is_empty());
}

/// Reads from `s` until EOF or error; true when the server closed it within `limit`.
fn closed_by_server(s: &mut std::os::unix::net::UnixStream, limit: Duration) -> bool {
    s.set_read_timeout(Some(limit)).unwrap();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

#[test]
fn plugin_closes_idle_and_half_sent_connections_and_stalled_bodies() {
    let tr = test_root();
    let home = tr.path().join("home");
    let p = Plugin::start_with(
        tr.path().join("plugin.sock"),
        &["--header-timeout", "2", "--body-idle-timeout", "3"],
        None,
    );
    p.init(&home);
    // Idle (nothing sent), half a request head, half a JSON body.
    let mut idle = std::os::unix::net::UnixStream::connect(&p.socket).unwrap();
    let mut half_head = std::os::unix::net::UnixStream::connect(&p.socket).unwrap();
    half_head
        .write_all(b"POST /GraphDriver.Status HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let mut half_body = std::os::unix::net::UnixStream::connect(&p.socket).unwrap();
    half_body
        .write_all(b"POST /GraphDriver.Status HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
        .unwrap();
    for (what, s) in [
        ("idle", &mut idle),
        ("half head", &mut half_head),
        ("half body", &mut half_body),
    ] {
        assert!(
            closed_by_server(s, Duration::from_secs(20)),
            "{what} connection kept open"
        );
    }
    // A stalled ApplyDiff body fails with the timeout named; the layer keeps its state.
    p.ok("GraphDriver.Create", json!({"ID": "l"}));
    let mut s = stalled_apply(&p.socket, "id=l", &tar_start());
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    assert!(
        answer.contains(" 500 ") && answer.contains("idle timeout"),
        "{answer}"
    );
    assert_eq!(std::fs::read_dir(home.join("l/root")).unwrap().count(), 0);
    assert!(!home.join(".ovlink-apply.l").exists());
    // A Diff whose client stops reading: the stream fails after the idle timeout and the
    // layer's queue moves on (a Remove of it answers).
    p.ok("GraphDriver.Create", json!({"ID": "big"}));
    p.apply("big", "", big_tar_stream(48 << 20));
    let mut d = std::os::unix::net::UnixStream::connect(&p.socket).unwrap();
    let body = br#"{"ID":"big"}"#;
    write!(
        d,
        "POST /GraphDriver.Diff HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    d.write_all(body).unwrap();
    let mut first = [0u8; 16];
    d.read_exact(&mut first).unwrap();
    assert!(first.starts_with(b"HTTP/1.1 200"));
    let socket = p.socket.clone();
    let (status, v) = answers(
        "Remove behind a stalled Diff",
        Duration::from_secs(30),
        move || {
            Client::new(&socket)
                .unwrap()
                .call_json("GraphDriver.Remove", &json!({"ID": "big"}))
                .unwrap()
        },
    );
    assert_eq!(status, 200, "{v}");
    drop(d);
    p.ok("GraphDriver.Status", json!({}));
}

#[test]
fn plugin_survives_a_flood_of_connections_at_its_fd_limit() {
    let tr = test_root();
    let home = tr.path().join("home");
    let mut p = Plugin::start_with(
        tr.path().join("plugin.sock"),
        &["--header-timeout", "3", "--max-connections", "100"],
        Some(256),
    );
    p.init(&home);
    // Far more connections than the plugin has fds (256): it serves at most 96 (half its fds,
    // 64 spare), the rest wait in the listen backlog, and accept() never runs out of fds.
    let held: Vec<_> = (0..600)
        .map(|_| std::os::unix::net::UnixStream::connect(&p.socket).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    // While the flood is held, a new client is served once idle ones time out.
    let socket = p.socket.clone();
    let (status, _) = answers(
        "Status during the flood",
        Duration::from_secs(60),
        move || {
            Client::new(&socket)
                .unwrap()
                .call_json("GraphDriver.Status", &json!({}))
                .unwrap()
        },
    );
    assert_eq!(status, 200);
    drop(held);
    p.ok("GraphDriver.Create", json!({"ID": "after"}));
    let log = p.sigterm();
    assert!(log.contains("serving at most 96 connections"), "{log}");
    assert!(log.contains("the limit (--max-connections)"), "{log}");
    let emfile = log.matches("Too many open files").count();
    assert!(emfile <= 3, "accept spun on EMFILE ({emfile} lines): {log}");
}

/// Issue 11 items 1 and 2 through the plugin protocol: ids that overlayfs would unescape
/// (`\.\.` as an image layer, `\..` as a container layer) and labels that add options are
/// refused by Create, CreateReadWrite, ApplyDiff and Get; the directories a mount through
/// them would reach (`<root>/root`, `<root>/upper`, `<root>/work`) are unchanged and nothing
/// is mounted.
#[test]
fn plugin_refuses_escaping_ids_and_labels() {
    let tr = test_root();
    let p = Plugin::start(&tr);
    let root = tr.path().join("data");
    let home = root.join("overlay");
    p.init(&home);
    p.ok("GraphDriver.Create", json!({"ID": "base"}));
    let tar = TarBuilder::new().file("f", 0o644, b"x").build();
    p.apply("base", "", std::io::Cursor::new(tar.clone()));
    p.ok(
        "GraphDriver.CreateReadWrite",
        json!({"ID": "c1", "Parent": "base"}),
    );
    let sentinels = crate::ids_mounts::make_sentinels(&root);
    let before = manifests(&sentinels);
    for id in crate::ids_mounts::HOSTILE_IDS {
        for (method, body) in [
            ("GraphDriver.Create", json!({"ID": id})),
            ("GraphDriver.Create", json!({"ID": id, "Parent": "base"})),
            (
                "GraphDriver.CreateReadWrite",
                json!({"ID": id, "Parent": "base"}),
            ),
            (
                "GraphDriver.CreateReadWrite",
                json!({"ID": "c2", "Parent": id}),
            ),
            ("GraphDriver.Get", json!({"ID": id})),
            ("GraphDriver.Put", json!({"ID": id})),
            ("GraphDriver.Remove", json!({"ID": id})),
            ("GraphDriver.Changes", json!({"ID": id, "Parent": ""})),
        ] {
            let e = p.err(method, body.clone());
            assert!(e.contains("invalid layer id"), "{method} {body}: {e}");
        }
        let q: String = id.bytes().map(|b| format!("%{b:02X}")).collect();
        let (status, out) = p
            .client
            .send_reader(
                &format!("GraphDriver.ApplyDiff?id={q}&parent=base"),
                std::io::Cursor::new(tar.clone()),
            )
            .unwrap();
        assert_ne!(
            status,
            200,
            "ApplyDiff {id:?}: {}",
            String::from_utf8_lossy(&out)
        );
    }
    let evil = format!(
        "\",upperdir={},workdir={},\"",
        root.join("upper").display(),
        root.join("work").display()
    );
    let e = p.err("GraphDriver.Get", json!({"ID": "c1", "MountLabel": evil}));
    assert!(e.contains("mount label"), "{e}");
    // Refused at create already (Docker passes the label to CreateReadWrite).
    let e = p.err(
        "GraphDriver.CreateReadWrite",
        json!({"ID": "c3", "Parent": "base", "MountLabel": evil}),
    );
    assert!(e.contains("mount label"), "{e}");
    assert!(!home.join("c3").exists());
    p.ok(
        "GraphDriver.CreateReadWrite",
        json!({"ID": "c4", "Parent": "base", "MountLabel": "system_u:object_r:container_file_t:s0:c1,c2"}),
    );
    assert!(!is_mounted(&home.join("c1").join("merged")));
    assert!(tr.mounts().is_empty(), "{:?}", tr.mounts());
    assert_eq!(manifests(&sentinels), before);
    // The layers that are fine still work.
    let dir = p.ok("GraphDriver.Get", json!({"ID": "c1"}))["Dir"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(Path::new(&dir).join("f").exists());
    p.ok("GraphDriver.Put", json!({"ID": "c1"}));
}

#[test]
fn plugin_init_with_uid_gid_maps_owns_layers_by_the_remapped_ids() {
    let tr = test_root();
    let p = Plugin::start(&tr);
    let home = tr.path().join("home");
    let map = json!([{"container_id": 0, "host_id": 100000, "size": 65536}]);
    p.ok(
        "GraphDriver.Init",
        json!({"Home": home, "UIDMaps": map, "GIDMaps": map}),
    );
    // Docker's owners: home and layer dirs 0:<remapped root gid>, their contents remapped root.
    let m = std::fs::metadata(&home).unwrap();
    assert_eq!((m.uid(), m.gid(), m.mode() & 0o7777), (0, 100000, 0o710));
    p.ok("GraphDriver.Create", json!({"ID": "l"}));
    let devices = TarBuilder::new()
        .dir("dev/", 0o755)
        .raw(tar::EntryType::Char, b"dev/null", None, b"", |h| {
            h.set_mode(0o666);
            h.set_device_major(1).unwrap();
            h.set_device_minor(3).unwrap();
        })
        .build();
    let tar = TarBuilder::new()
        .dir("app", 0o755)
        .owned_file("app/f", 0o640, 1000, 50, b"data")
        .file("rootfile", 0o644, b"r")
        .build();
    let mut both = devices[..devices.len() - 1024].to_vec();
    both.extend_from_slice(&tar);
    assert_eq!(p.apply("l", "", std::io::Cursor::new(both)), 5);
    let md = |rel: &str| {
        let m = std::fs::symlink_metadata(home.join("l/root").join(rel)).unwrap();
        (m.uid(), m.gid())
    };
    let l = std::fs::metadata(home.join("l")).unwrap();
    assert_eq!((l.uid(), l.gid(), l.mode() & 0o7777), (0, 100000, 0o710));
    assert_eq!(md(""), (100000, 100000));
    assert_eq!(md("app"), (100000, 100000));
    assert_eq!(md("app/f"), (101000, 100050));
    assert_eq!(md("rootfile"), (100000, 100000));
    // Device nodes of the image are kept (the built-in driver keeps them under remapping).
    let dn = std::fs::symlink_metadata(home.join("l/root/dev/null")).unwrap();
    assert!(std::os::unix::fs::FileTypeExt::is_char_device(
        &dn.file_type()
    ));
    assert_eq!(dn.rdev(), rustix::fs::makedev(1, 3));
    p.ok(
        "GraphDriver.CreateReadWrite",
        json!({"ID": "c", "Parent": "l"}),
    );
    let c = std::fs::metadata(home.join("c")).unwrap();
    assert_eq!((c.uid(), c.gid()), (0, 100000), "c");
    for d in ["c/upper", "c/work"] {
        let m = std::fs::metadata(home.join(d)).unwrap();
        assert_eq!((m.uid(), m.gid()), (100000, 100000), "{d}");
    }
    // A file the container writes (host ids) comes back in Diff as container ids.
    let merged = PathBuf::from(
        p.ok("GraphDriver.Get", json!({"ID": "c"}))["Dir"]
            .as_str()
            .unwrap(),
    );
    let mm = std::fs::metadata(&merged).unwrap();
    assert_eq!((mm.uid(), mm.gid()), (100000, 100000), "merged/");
    std::fs::write(merged.join("app/new"), b"x").unwrap();
    std::os::unix::fs::lchown(merged.join("app/new"), Some(101000), Some(100050)).unwrap();
    let diff_owners = || {
        let (status, out) = p
            .client
            .call("GraphDriver.Diff", br#"{"ID":"c","Parent":"l"}"#)
            .unwrap();
        let mut owners = std::collections::BTreeMap::new();
        let mut ar = tar::Archive::new(&out[..]);
        let read = ar.entries().and_then(|es| {
            for e in es {
                let e = e?;
                let h = e.header();
                owners.insert(
                    e.path()?.to_string_lossy().into_owned(),
                    (h.uid()?, h.gid()?),
                );
            }
            Ok(())
        });
        (
            status,
            owners,
            read.is_ok(),
            String::from_utf8_lossy(&out).into_owned(),
        )
    };
    let (status, owners, complete, _) = diff_owners();
    assert_eq!(status, 200);
    assert!(complete);
    assert_eq!(owners.get("app/new"), Some(&(1000, 50)), "{owners:?}");
    assert_eq!(owners.get("app/"), Some(&(0, 0)), "{owners:?}");
    // A host id outside the map cannot be written as a container id: the Diff fails (a JSON
    // error naming the file, or a broken stream once data went out) and never carries it.
    std::os::unix::fs::lchown(merged.join("app/new"), Some(5), Some(5)).unwrap();
    let (status, owners, complete, text) = diff_owners();
    assert!(
        !owners.contains_key("app/new"),
        "an unmapped owner was written"
    );
    assert!(status != 200 || !complete, "the Diff succeeded: {owners:?}");
    if status != 200 {
        assert!(
            text.contains("app/new") && text.contains("host uid 5"),
            "{text}"
        );
    }
    p.ok("GraphDriver.Put", json!({"ID": "c"}));
    // An owner outside the map is refused with the entry named.
    p.ok("GraphDriver.Create", json!({"ID": "l2", "Parent": "l"}));
    let tar = TarBuilder::new()
        .owned_file("huge", 0o644, 70000, 0, b"x")
        .build();
    let (status, out) = p
        .client
        .send_reader(
            "GraphDriver.ApplyDiff?id=l2&parent=l",
            std::io::Cursor::new(tar),
        )
        .unwrap();
    assert_eq!(status, 500);
    let msg = String::from_utf8_lossy(&out);
    assert!(msg.contains("huge") && msg.contains("70000"), "{msg}");
}

#[test]
fn plugin_serve_records_symlinks_copy_in_the_home_dockerd_names() {
    let tr = test_root();
    let p = Plugin::start_with(tr.path().join("plugin.sock"), &["--symlinks", "copy"], None);
    let home = tr.path().join("home");
    p.init(&home);
    let tar = TarBuilder::new().symlink("link", "target").build();
    p.ok("GraphDriver.Create", json!({"ID": "base"}));
    p.apply("base", "", std::io::Cursor::new(tar));
    let top = TarBuilder::new().file("top", 0o644, b"t").build();
    p.ok("GraphDriver.Create", json!({"ID": "top", "Parent": "base"}));
    p.apply("top", "base", std::io::Cursor::new(top));
    let record = std::fs::read_to_string(home.join(".symlinks")).unwrap();
    assert_eq!(record.trim(), "copy");
    // Copy mode: each image layer has its own symlink inode (Docker 20.10's tree).
    let ino = |l: &str| {
        let m = std::fs::symlink_metadata(home.join(l).join("root/link")).unwrap();
        (m.ino(), m.nlink())
    };
    let (base, top) = (ino("base"), ino("top"));
    assert_ne!(base.0, top.0, "copy mode re-creates the symlink");
    assert_eq!((base.1, top.1), (1, 1));
}
