//! `ovlink bench` on small work: every figure exists and the figures are consistent with
//! what they claim (never a timing assertion): a first write copies the whole file and a
//! second does not; chmod/chown/setxattr copy it too; the lower files' page cache does not
//! grow per container on either layout but full copies do; a 20-layer legacy home uses more
//! inodes than overlay2's; commit works on both layouts.

use crate::util::*;
use serde_json::Value;

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

#[test]
fn bench_figures_exist_and_are_consistent() {
    let t = test_root();
    let json = t.path().join("bench.json");
    let svg = t.path().join("bench.svg");
    let out = t.ok(&[
        "bench",
        "--quick",
        "--entries",
        "200",
        "--copy-up-sizes",
        "4K,1M,8M",
        "--containers",
        "3",
        "--commit-files",
        "5",
        "--deep-layers",
        "20",
        "--dir",
        t.path().to_str().unwrap(),
        "--json",
        json.to_str().unwrap(),
        "--svg",
        svg.to_str().unwrap(),
    ]);
    assert!(
        out.contains("| copy-up | first write, 8 MiB file |"),
        "{out}"
    );
    let r: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(r["symlinks"], "link");
    // By default on a fresh ext4 made for the run, gone afterwards with its image.
    assert_eq!(r["fresh_fs"]["kind"], "ext4", "{}", r["fresh_fs"]);
    assert_eq!(r["backing_fs"], "extfs");
    assert!(out.contains("(a fresh loop-mounted filesystem)"), "{out}");
    let left: Vec<_> = std::fs::read_dir(t.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("ovlink-bench-"))
        .collect();
    assert!(left.is_empty(), "the bench left {left:?}");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(t.path().to_str().unwrap()),
        "the bench left a mount under {}",
        t.path().display()
    );
    let chart = std::fs::read_to_string(&svg).unwrap();
    assert!(chart.starts_with("<svg") && chart.contains("copy-up: first write"));

    for layout in ["overlay", "overlay2"] {
        // Import figures.
        let s = &r["import"]["samples"][layout][0];
        assert!(f(&s["mount_s"]) > 0.0 && f(&s["unmount_s"]) > 0.0, "{s}");
        assert!(f(&s["inodes"]) > 200.0, "{s}");
        // Copy-up: the first write copies the whole file, the second adds nothing.
        let w = r["copy_up"]["writes"][layout].as_array().unwrap();
        assert_eq!(w.len(), 3);
        for x in w {
            let size = f(&x["size"]);
            let first = f(&x["upper_bytes_after_first"]);
            assert!(
                first >= size,
                "{layout}: first write of {size} left {first} bytes: {x}"
            );
            assert_eq!(
                x["upper_bytes_after_second"], x["upper_bytes_after_first"],
                "{layout}: the second write copied again: {x}"
            );
            assert!(f(&x["first_write_s"]) > 0.0 && f(&x["second_write_s"]) > 0.0);
        }
        // A metadata-only change copies the whole file too (metacopy=off).
        let m = r["copy_up"]["meta"][layout].as_array().unwrap();
        let ops: Vec<&str> = m.iter().map(|x| x["op"].as_str().unwrap()).collect();
        assert_eq!(ops, ["chmod", "chown", "setxattr"]);
        for x in m {
            assert!(f(&x["upper_bytes"]) >= f(&x["size"]), "{layout}: {x}");
        }
        // Page cache: the lower files are cached once, however many containers read them.
        let pc = &r["page_cache"][layout];
        let pages: Vec<f64> = pc["pages_after"]
            .as_array()
            .unwrap()
            .iter()
            .map(f)
            .collect();
        let file_pages = f(&pc["file_pages"]);
        assert_eq!(pages.len(), 3);
        assert!(
            pages[0] > 0.0,
            "{layout}: nothing cached after a read: {pc}"
        );
        assert!(
            pages.iter().all(|p| *p <= file_pages),
            "{layout}: the lower files' cache grew past one copy: {pc}"
        );
        // Start.
        let l = &r["lifecycle"]["layouts"][layout];
        for k in [
            "start_create_s",
            "start_mount_s",
            "start_exec_s",
            "remove_image_s",
        ] {
            assert!(f(&l[k]) > 0.0, "{layout} {k}: {l}");
        }
    }
    // Full copies: every container's copy is cached separately.
    let fc = &r["page_cache"]["full_copy"];
    let fpages: Vec<f64> = fc["pages_after"]
        .as_array()
        .unwrap()
        .iter()
        .map(f)
        .collect();
    let one = f(&r["page_cache"]["overlay"]["pages_after"][2]);
    assert!(fpages[2] >= 2.0 * one, "full copies: {fc}, overlay: {one}");
    assert!(fpages[0] < fpages[1] && fpages[1] < fpages[2], "{fc}");
    // Commit: both layouts diff the 5 changed files and apply them as a new layer.
    let lc = &r["lifecycle"]["layouts"];
    for layout in ["overlay", "overlay2"] {
        assert!(f(&lc[layout]["commit_s"]) > 0.0, "{layout}: {lc}");
        assert!(
            f(&lc[layout]["commit_tar_bytes"]) > 5.0 * 512.0,
            "{layout}: {lc}"
        );
    }
    // Deep stacks: 20 legacy layers cost more inodes than 20 overlay2 layers.
    let d = &r["deep"]["layouts"];
    assert_eq!(d["overlay"][0]["layers"], 20);
    assert!(
        f(&d["overlay"][0]["inodes"]) > f(&d["overlay2"][0]["inodes"]),
        "{d}"
    );
    assert!(f(&d["overlay"][0]["deep_read_files"]) > 0.0);
    // Nothing left mounted.
    assert!(t.mounts().is_empty(), "{:?}", t.mounts());
}
