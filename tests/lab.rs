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
    let t = test_root();
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
    assert_eq!(r["symlinks"], "link");
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

/// The lab says which `--symlinks` mode its legacy layout uses.
#[test]
fn lab_inodes_shows_the_symlinks_mode() {
    let t = test_root();
    let out = t.ok(&[
        "--symlinks",
        "copy",
        "lab",
        "inodes",
        "--size",
        "16",
        "--inodes",
        "512",
        "--dirs",
        "30",
        "--no-links",
    ]);
    assert!(
        out.contains(
            "legacy layout with --symlinks copy: symlinks and special files are re-created"
        ),
        "{out}"
    );
    assert!(leftovers(t.path()).is_empty(), "{:?}", leftovers(t.path()));
}

#[test]
fn lab_refuses_nonsense() {
    let t = test_root();
    let err = t.fails(&["lab", "inodes", "--dirs", "0"]);
    assert!(err.contains("--dirs"), "{err}");
    // mkfs.ext4 cannot make a filesystem this small: the error says so. (Leftovers are checked
    // by the end-to-end test; this one runs beside it and would see its mount.)
    let err = t.fails(&["lab", "inodes", "--size", "0", "--no-links"]);
    assert!(err.contains("mkfs.ext4"), "{err}");
}

/// Runs `ovlink lab NAME ARGS… --json` and returns the observations.
fn lab(t: &TestRoot, name: &str, args: &[&str]) -> serde_json::Value {
    let out = t.ok(&[&["lab", name], args, &["--json"]].concat());
    assert!(
        t.mounts().is_empty(),
        "lab {name} left mounts: {:?}",
        t.mounts()
    );
    let left: Vec<_> = std::fs::read_dir(t.root())
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "lab {name} left {left:?} in --root");
    serde_json::from_str(&out).unwrap()
}

/// (major, minor) of the running kernel.
fn kernel() -> (u32, u32) {
    let r = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let mut it = r
        .trim()
        .split(['.', '-'])
        .map(|p| p.parse::<u32>().unwrap_or(0));
    (it.next().unwrap_or(0), it.next().unwrap_or(0))
}

#[test]
fn lab_whiteouts_observes_whiteouts_opaque_dirs_and_enxio() {
    let t = test_root();
    let r = lab(&t, "whiteouts", &[]);
    assert_eq!(r["upper_hides_lower"], true, "{r}");
    // A deleted lower file: a 0/0 character device in upper, the lower file kept.
    assert_eq!(r["file_whiteout"]["kind"], "char", "{r}");
    assert_eq!(r["file_whiteout"]["rdev"], serde_json::json!([0, 0]), "{r}");
    assert_eq!(r["lower_file_kept"], true);
    // Copying it: ENXIO, "No such device or address" (the article's cp line).
    assert_eq!(r["copy_errno"], 6, "{r}");
    assert!(r["copy_error"]
        .as_str()
        .unwrap()
        .contains("No such device or address"));
    if let Some(m) = r["cp_message"].as_str() {
        assert!(m.contains("No such device or address"), "{m}");
    }
    // rm -rf of a lower dir: a whiteout on today's kernels, not an opaque dir.
    assert_eq!(r["dir_after_rm"]["kind"], "char", "{r}");
    assert_eq!(r["dir_after_rm"]["rdev"], serde_json::json!([0, 0]));
    // The re-created dir: opaque, and empty through merged/.
    assert_eq!(r["dir_recreated"]["kind"], "dir");
    assert_eq!(r["opaque"], "y", "{r}");
    assert_eq!(r["recreated_entries"], 0);
    if kernel() >= (5, 8) {
        assert_eq!(r["whiteouts_share_inode"], true, "{r}");
        let ww = r["work_work"].as_array().unwrap();
        assert!(
            ww.iter().any(|n| n.as_str().unwrap().starts_with('#')),
            "{r}"
        );
    }
    if kernel() >= (6, 6) {
        let xs = r["upper_root_xattrs"].as_array().unwrap();
        assert!(xs.iter().any(|x| x == "trusted.overlay.uuid"), "{r}");
        assert!(r["mount_line"].as_str().unwrap().contains("uuid=on"), "{r}");
    }
}

#[test]
fn lab_copy_up_copies_the_whole_file_even_for_chmod() {
    let t = test_root();
    let r = lab(&t, "copy-up", &["--size", "4"]);
    let (lo, up) = (&r["lower"], &r["upper_after_chmod"]);
    assert_eq!(lo["size"], 4 << 20);
    assert_eq!(up["size"], lo["size"], "{r}");
    assert_eq!(up["blocks"], lo["blocks"], "chmod copied every block: {r}");
    assert_ne!(up["ino"], lo["ino"]);
    assert_eq!(up["mode"], 0o600);
    assert_eq!(r["upper_after_write"]["size"], 4 << 20, "{r}");
    assert_eq!(r["read_copies_nothing"], true);
    if !r["metacopy_upper"].is_null() {
        // metacopy=on: the size is there, the data blocks are not.
        assert_eq!(r["metacopy_upper"]["size"], 4 << 20);
        assert!(
            r["metacopy_upper"]["blocks"].as_u64().unwrap() < lo["blocks"].as_u64().unwrap() / 8
        );
        assert_eq!(r["metacopy_xattr"], true, "{r}");
    }
}

#[test]
fn lab_rename_exdev_with_redirect_dir_off_and_what_mv_does() {
    let t = test_root();
    let r = lab(&t, "rename", &[]);
    assert_eq!(r["off_errno"], 18, "EXDEV with redirect_dir=off: {r}");
    assert_eq!(r["file_rename_ok"], true);
    assert_eq!(r["upper_dir_rename_ok"], true);
    assert_eq!(r["mv_ok"], true, "mv copies and deletes: {r}");
    assert_eq!(r["mv_copied"], serde_json::json!(["a", "b"]));
    assert_eq!(r["mv_left_whiteout"], true);
    if std::path::Path::new("/sys/module/overlay/parameters/redirect_dir").exists() {
        assert_eq!(r["on_errno"], 0, "redirect_dir=on renames: {r}");
        assert_eq!(r["on_redirect"], "dir", "{r}");
    }
}

#[test]
fn lab_page_cache_one_copy_for_two_containers() {
    let t = test_root();
    let r = lab(&t, "page-cache", &["--size", "4"]);
    let pages = r["file_pages"].as_u64().unwrap();
    let first = r["after_first"].as_u64().unwrap();
    assert!(r["before"].as_u64().unwrap() < first, "{r}");
    assert!(
        first >= pages * 9 / 10,
        "the first read cached the file: {r}"
    );
    assert_eq!(
        r["after_second"].as_u64().unwrap(),
        first,
        "the second container adds no pages: {r}"
    );
    assert_eq!(r["through_merged"].as_u64().unwrap(), first, "{r}");
    assert!(
        r["upper_copy_pages"].as_u64().unwrap() >= pages * 9 / 10,
        "{r}"
    );
}

#[test]
fn lab_layers_one_lowerdir_against_one_per_layer() {
    let t = test_root();
    let r = lab(&t, "layers", &["--layers", "5", "--dirs", "100"]);
    let s = r["sides"].as_array().unwrap();
    assert_eq!(s[0]["layout"], "overlay");
    assert_eq!(s[0]["lowerdirs"], 1, "{r}");
    assert_eq!(s[1]["lowerdirs"], 5, "{r}");
    assert!(
        s[0]["home_inodes"].as_u64().unwrap() > 2 * s[1]["home_inodes"].as_u64().unwrap(),
        "{r}"
    );
    assert_eq!(r["same_content"], true);
}

#[test]
fn lab_workdir_must_be_on_the_upper_filesystem() {
    let t = test_root();
    let r = lab(&t, "workdir", &[]);
    assert!(
        r["work_entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e == "work"),
        "{r}"
    );
    assert_eq!(
        r["other_fs_errno"], 22,
        "EINVAL for a workdir on a tmpfs: {r}"
    );
    assert_eq!(r["nested_errno"], 22, "{r}");
}

#[test]
fn lab_lower_deleting_a_lower_file_frees_nothing() {
    let t = test_root();
    let r = lab(&t, "lower", &[]);
    let u = |k: &str| r[k].as_u64().unwrap() as i64;
    let file = u("file_bytes");
    assert!(u("used_before") - u("used_after_rm") < file / 8, "{r}");
    assert!(
        u("used_after_copy_up") - u("used_after_rm") >= file * 9 / 10,
        "{r}"
    );
    assert!(
        u("used_after_copy_up") - u("used_after_rm_copy") >= file * 9 / 10,
        "{r}"
    );
    assert_eq!(r["lower_intact"], true);
    assert_eq!(r["lower_edit_visible"], true, "{r}");
}

#[test]
fn lab_markdown_worksheet_and_flags() {
    let t = test_root();
    let md = t.path().join("sheet.md");
    t.ok(&["lab", "rename", "--markdown", md.to_str().unwrap()]);
    let text = std::fs::read_to_string(&md).unwrap();
    for needle in [
        "# ovlink lab rename",
        "```console\n$ cd ",
        "redirect_dir=off merged",
        "- Observed: rename(2) of a lower directory returned EXDEV",
        "> **The article vs this kernel.**",
        "## Questions",
    ] {
        assert!(text.contains(needle), "worksheet lacks {needle:?}:\n{text}");
    }
    let err = t.fails(&["--driver", "overlay2", "lab", "whiteouts"]);
    assert!(err.contains("--driver does not apply"), "{err}");
    // --root is where the lab works: --keep leaves its directory there.
    let out = t.ok(&["lab", "workdir", "--keep"]);
    let kept: Vec<_> = std::fs::read_dir(t.root())
        .unwrap()
        .filter_map(|e| e.ok())
        .collect();
    assert_eq!(kept.len(), 1, "{out}");
    assert!(kept[0]
        .file_name()
        .to_string_lossy()
        .starts_with("ovlink-lab-workdir-"));
}

#[test]
fn lab_xfs_v4_ftype0_against_this_kernel() {
    let t = test_root();
    let r = lab(&t, "xfs", &[]);
    assert_eq!(r["v5_ftype0_refused"], true, "{r}");
    assert_eq!(r["v5_ftype"], "ftype=1", "{r}");
    assert_eq!(r["v5_dtype"], true);
    assert_eq!(r["overlay_on_v5"], true);
    let config = std::process::Command::new("zcat")
        .arg("/proc/config.gz")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    if r["v4_made"] == true && config.contains("# CONFIG_XFS_SUPPORT_V4 is not set") {
        assert!(
            r["v4_mount_error"].is_string(),
            "V4 mounted without V4 support: {r}"
        );
    }
}
