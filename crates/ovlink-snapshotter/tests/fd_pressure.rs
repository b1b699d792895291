//! Remove under fd pressure (issue 24, item 8): with the process out of file descriptors,
//! 58 of 400 Removes answered INTERNAL after deleting the record (Stat then said NotFound) and
//! left their layer dirs behind, which only a restart reclaimed. A Remove is all or nothing
//! now, and Cleanup removes the layers no snapshot names. Its own test binary: it lowers the
//! process's RLIMIT_NOFILE, which would disturb tests running beside it.
#![allow(missing_docs, clippy::unwrap_used)]

use ovlink_driver::Layout;
use ovlink_snapshotter::{Config, Snapshotter};
use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// The lowest fd number not in use: with RLIMIT_NOFILE set to it, no fd can be opened (a new
/// fd takes the lowest free number, and the limit bounds the number).
fn lowest_free_fd() -> u64 {
    let used: std::collections::BTreeSet<u64> = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    // The directory read just now had an fd of its own, free again.
    (0..)
        .find(|n| !used.contains(n) || *n == *used.iter().max().unwrap())
        .unwrap()
}

#[test]
fn remove_is_all_or_nothing_and_cleanup_reclaims_what_is_left() {
    assert!(
        rustix::process::geteuid().is_root(),
        "the snapshotter's homes need root (scripts/test.sh)"
    );
    for layout in [Layout::Overlay, Layout::Overlay2] {
        let base = std::env::var_os("OVLINK_TEST_TMP")
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir);
        let t = tempfile::Builder::new()
            .prefix("ovlink-snap-fd-")
            .tempdir_in(base)
            .unwrap();
        let cfg = Config {
            root: t.path().join("root"),
            layout,
            sync: None,
            diff: Default::default(),
            symlinks: None,
        };
        let (s, _) = Snapshotter::open(&cfg).unwrap();
        s.prepare("x", "", BTreeMap::new()).unwrap();
        let layer = s.layer_of("x").unwrap().unwrap();

        // No fd left: the Remove fails, and leaves the snapshot exactly as it was.
        let saved = getrlimit(Resource::Nofile);
        let squeezed = Rlimit {
            current: Some(lowest_free_fd()),
            maximum: saved.maximum,
        };
        setrlimit(Resource::Nofile, squeezed).unwrap();
        let r = s.remove("x");
        setrlimit(Resource::Nofile, saved).unwrap();
        assert!(r.is_err(), "{layout:?}: a Remove without fds succeeded");
        assert!(
            s.stat("x").is_ok(),
            "{layout:?}: the failed Remove deleted the record ({r:?})"
        );
        assert!(s.home().join(&layer).exists(), "{layout:?}");

        // A layer no record names (what a Remove could leave when even the record could not
        // come back): Cleanup removes it, without a restart.
        s.remove("x").unwrap();
        s.cleanup().unwrap();
        let orphan = "0".repeat(64);
        std::fs::create_dir(s.home().join(&orphan)).unwrap();
        std::fs::create_dir(s.home().join(&orphan).join(match layout {
            Layout::Overlay => "root",
            Layout::Overlay2 => "diff",
        }))
        .unwrap();
        s.cleanup().unwrap();
        assert!(
            !s.home().join(&orphan).exists(),
            "{layout:?}: Cleanup left a layer no snapshot names"
        );
    }
}
