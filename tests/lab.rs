//! `ovlink lab inodes` end to end on a small loop-mounted ext4: both layouts run the
//! filesystem out of inodes while bytes are free, the report's projection matches what really
//! fitted, nothing is lost, the hardlink limit is hit and handled, and nothing stays mounted.

use crate::util::*;

/// Mounts and loop devices of labs run by the test whose directory is `dir`.
fn leftovers(dir: &std::path::Path) -> Vec<String> {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let loops = std::process::Command::new("losetup")
        .arg("-a")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    mounts
        .lines()
        .chain(loops.lines())
        .filter(|l| l.contains("ovlink-lab-") && l.contains(dir.to_str().unwrap_or("/")))
        .map(str::to_string)
        .collect()
}

#[test]
fn lab_inodes_end_to_end_on_a_small_ext4() {
    let t = TestRoot::new();
    let svg = t.path().join("lab.svg");
    let out = t.ok(&[
        "lab",
        "inodes",
        "--size",
        "16",
        "--inodes",
        "512",
        "--dirs",
        "30",
        "--json",
        "--svg",
        svg.to_str().unwrap(),
    ]);
    let r: serde_json::Value = serde_json::from_str(&out).unwrap();
    let runs = r["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2);
    for run in runs {
        let name = run["layout"].as_str().unwrap();
        assert_eq!(run["stopped_by"], "inodes", "{name}: {run}");
        let err = run["error"].as_str().unwrap();
        assert!(err.contains("No space left on device"), "{name}: {err}");
        let fs = &run["fs_at_failure"];
        assert!(
            fs["bytes_free"].as_u64().unwrap() > 4 << 20,
            "{name}: bytes were still free: {fs}"
        );
        assert_eq!(run["earlier_layers_complete"], true, "{name}");
        assert_eq!(run["failed_layer_absent"], true, "{name}");
        assert_eq!(run["usable_after_freeing"], true, "{name}");
        // The projection made after layer 1 against what really fitted: a layer briefly
        // needs a temporary directory while it is applied, hence the one of slack.
        let predicted = run["predicted_more_after_layer1"].as_u64().unwrap() as i64;
        let actual = run["actual_more_after_layer1"].as_u64().unwrap() as i64;
        assert!(
            (predicted - actual).abs() <= 1,
            "{name}: projected {predicted} more layers, {actual} fitted"
        );
    }
    assert_eq!(runs[0]["layout"], "overlay");
    // The overlay2 run stops on inodes, so its error comes classified from the driver.
    assert!(runs[1]["error"]
        .as_str()
        .unwrap()
        .contains("inodes exhausted"));
    let (o, o2) = (
        runs[0]["layers_fit"].as_u64().unwrap(),
        runs[1]["layers_fit"].as_u64().unwrap(),
    );
    assert!(o2 >= 2 * o, "overlay2 fits far more layers: {o} vs {o2}");
    eprintln!("lab on 16 MiB / 512 inodes: overlay {o} layers, overlay2 {o2} layers");
    let links = &r["links"];
    assert_eq!(links["link_max"], 65000);
    assert_eq!(links["nlink_at_limit"], 65000);
    assert_eq!(links["next_layer_copied"], true);
    assert_eq!(links["next_layer_nlink"], 1);
    assert_eq!(links["content_intact"], true);
    let chart = std::fs::read_to_string(&svg).unwrap();
    assert_eq!(chart.matches("<polyline").count(), 2);
    assert!(chart.contains("filesystem capacity"));
    assert!(leftovers(t.path()).is_empty(), "{:?}", leftovers(t.path()));
}

#[test]
fn lab_refuses_nonsense() {
    let t = TestRoot::new();
    let err = t.fails(&["lab", "inodes", "--dirs", "0"]);
    assert!(err.contains("--dirs"), "{err}");
    // mkfs.ext4 cannot make a filesystem this small: the error says so. (Leftovers are checked
    // by the end-to-end test; this one runs beside it and would see its mount.)
    let err = t.fails(&["lab", "inodes", "--size", "0", "--no-links"]);
    assert!(err.contains("mkfs.ext4"), "{err}");
}
