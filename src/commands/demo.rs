//! `ovlink demo`: the main job on a built-in default. It generates a small deterministic image
//! (or takes `--image FILE`), imports it into a throw-away root, and walks through what the
//! seed articles demonstrate: layer directories, files shared by inode across layers while
//! directories are new inodes in every layer, a container's `lower-id`/`upper`/`work`/`merged`,
//! reads from the lower layer, copy-up of a whole file on the first write, a whiteout for a
//! delete, an opaque directory for a removed-and-recreated one, EXDEV when renaming a lower
//! directory, and finally that the lower layers are unchanged. It cleans up after itself
//! (unmounting first) unless `--keep` is given.

use crate::cli::DemoArgs;
use anyhow::{bail, Context as _};
use ovlink_driver::{CreateOpts, Driver, InitConfig, OverlayDriver};
use std::collections::{BTreeMap, HashSet};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// Removes the throw-away root on drop (unmounting anything below it first).
struct Scratch {
    dir: Option<tempfile::TempDir>,
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Some(d) = &self.dir {
            for m in ovlink_driver::mount::mounts_under(d.path()) {
                let _ = ovlink_driver::mount::unmount(&m);
            }
        }
    }
}

fn step(n: u32, title: &str) {
    println!("\n== {n}. {title}");
}

fn say(s: &str) {
    println!("   {s}");
}

pub fn run(args: DemoArgs) -> anyhow::Result<()> {
    if !rustix::process::geteuid().is_root() {
        bail!("the demo mounts overlayfs: run it as root (sudo ovlink demo)");
    }
    let tmp = tempfile::Builder::new()
        .prefix("ovlink-demo-")
        .tempdir()
        .context("cannot create a temporary directory")?;
    let mut scratch = Scratch { dir: Some(tmp) };
    let base = scratch
        .dir
        .as_ref()
        .map(|d| d.path().to_path_buf())
        .unwrap_or_default();
    let root = base.join("root");
    let result = walk(&args, &base, &root);
    if args.keep {
        let kept = scratch.dir.take().map(|d| d.keep());
        if let Some(p) = kept {
            println!(
                "\nKept the demo root at {} (ovlink --root {} layer ls).",
                p.display(),
                root.display()
            );
            println!(
                "Clean up with: ovlink --root {} layer ls; umount any merged/ dirs; rm -rf {}",
                root.display(),
                p.display()
            );
        }
    }
    drop(scratch);
    result?;
    if !args.keep {
        println!(
            "\nDone; the throw-away root {} was unmounted and removed.",
            base.display()
        );
    }
    Ok(())
}

fn walk(args: &DemoArgs, base: &Path, root: &Path) -> anyhow::Result<()> {
    let home = root.join("overlay");
    println!(
        "ovlink demo: Docker's legacy overlay driver, step by step, in {}",
        root.display()
    );

    step(1, "an image");
    let image_path = match &args.image {
        Some(p) => {
            say(&format!("using {}", p.display()));
            p.clone()
        }
        None => {
            let p = base.join("demo-image.tar");
            let spec = ovlink_image::generate::GenSpec::demo();
            let mut f = std::fs::File::create(&p)
                .with_context(|| format!("cannot create {}", p.display()))?;
            let summary = ovlink_image::generate::generate(&spec, &mut f)
                .context("cannot generate the demo image")?;
            say(&format!(
                "generated a deterministic docker-save image {} ({} layers, {} bytes):",
                p.display(),
                summary.layers.len(),
                summary.archive_size
            ));
            for (i, l) in summary.layers.iter().enumerate() {
                say(&format!(
                    "  layer {i}: {} files, {} dirs, {} symlinks, {} hardlinks, {} whiteouts ({} opaque)",
                    l.files, l.dirs, l.symlinks, l.hardlinks, l.whiteouts, l.opaque
                ));
            }
            p
        }
    };

    step(
        2,
        "import it: every layer is a full tree of hardlinks into its parent",
    );
    let driver = OverlayDriver::init(&InitConfig {
        home: home.clone(),
        ..Default::default()
    })?;
    let store = ovlink_image::Store::open(root)?;
    let report = ovlink_image::import(
        &driver,
        &store,
        &image_path,
        Some("demo"),
        &ovlink_image::NoProgress,
    )?;
    let layers: Vec<String> = report.layers.iter().map(|l| l.chain_id.clone()).collect();
    for (i, l) in report.layers.iter().enumerate() {
        say(&format!(
            "layer {i}: {}  ({} bytes of files)",
            short(&l.chain_id),
            l.size
        ));
    }
    say(&format!("$ ls -l {}", home.display()));
    for l in &layers {
        let m = std::fs::metadata(home.join(l))?;
        let names: Vec<String> = std::fs::read_dir(home.join(l))?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        say(&format!(
            "  {}  {}/   holds: {}",
            mode_string(&m),
            short(l),
            names.join(" ")
        ));
    }

    step(
        3,
        "same file, same inode in every layer; directories are new inodes each time",
    );
    let top = layers.last().cloned().context("the image has no layers")?;
    let bottom_root = home.join(&layers[0]).join("root");
    let shared = find_first(&bottom_root, |m| m.file_type().is_file() && m.len() > 0)
        .context("the bottom layer has no regular file")?;
    let shared_dir = find_first(&bottom_root, |m| m.is_dir()).unwrap_or_default();
    for l in &layers {
        let r = home.join(l).join("root");
        let f = std::fs::symlink_metadata(r.join(&shared));
        let d = std::fs::symlink_metadata(r.join(&shared_dir));
        match (f, d) {
            (Ok(f), Ok(d)) => say(&format!(
                "{}: /{} inode {} (links {}), dir /{} inode {}",
                short(l),
                shared.display(),
                f.ino(),
                f.nlink(),
                shared_dir.display(),
                d.ino()
            )),
            _ => say(&format!(
                "{}: /{} was deleted in this layer",
                short(l),
                shared.display()
            )),
        }
    }
    let counts = inode_counts(&home, &layers)?;
    for (l, (entries, new)) in layers.iter().zip(&counts) {
        say(&format!(
            "{}: {entries} entries, {new} new inodes on the backing filesystem",
            short(l)
        ));
    }
    say("(every layer pays one inode per directory: that is how this driver runs out of inodes; see `ovlink lab inodes`)");

    step(
        4,
        "a container: lower-id, upper/, work/, and merged/ while mounted",
    );
    let cid = "demo-container";
    driver.create_read_write(cid, Some(&top), &CreateOpts::default())?;
    let cdir = home.join(cid);
    say(&format!("$ ls -l {}", cdir.display()));
    for e in sorted_entries(&cdir)? {
        let m = std::fs::symlink_metadata(cdir.join(&e))?;
        say(&format!("  {}  {e}", mode_string(&m)));
    }
    say(&format!(
        "$ cat lower-id  ->  {}",
        std::fs::read_to_string(cdir.join("lower-id"))?
    ));
    let merged = driver.get(cid, None)?;
    let line = std::fs::read_to_string("/proc/self/mounts")?
        .lines()
        .find(|l| l.split(' ').nth(1) == Some(merged.to_str().unwrap_or_default()))
        .map(|l| l.to_string())
        .unwrap_or_default();
    say(&format!("mounted: {line}"));
    say("what `docker inspect` shows under GraphDriver.Data:");
    for (k, v) in driver.metadata(cid)? {
        say(&format!("  {k}: {v}"));
    }
    let lower_root = home.join(&top).join("root");
    let lower_before = tree_digest(&home, &layers)?;

    step(
        5,
        "read: a file only in the lower layer is read from there; upper/ stays empty",
    );
    let upper = cdir.join("upper");
    // A file the layers share (several links), else any non-empty file.
    let target = find_first(&lower_root, |m| {
        m.file_type().is_file() && m.len() > 0 && m.nlink() > 1
    })
    .or_else(|| find_first(&lower_root, |m| m.file_type().is_file() && m.len() > 0))
    .context("no file to read")?;
    let data = std::fs::read(merged.join(&target))?;
    say(&format!(
        "read /{} through merged/: {} bytes; upper/ has {} entries",
        target.display(),
        data.len(),
        count(&upper)
    ));
    let nl = std::fs::metadata(merged.join(&target))?.nlink();
    say(&format!(
        "inside the container /{} shows {nl} links (the layers' hardlinks): gzip and postfix refuse such files",
        target.display()
    ));

    step(
        6,
        "write: the first write copies the WHOLE file up into upper/ (copy_up)",
    );
    let big = find_largest(&lower_root, &[&target]).unwrap_or(target.clone());
    let size = std::fs::metadata(lower_root.join(&big))?.len();
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(merged.join(&big))?;
        f.write_all(b"x")?;
    }
    let up = std::fs::metadata(upper.join(&big))?;
    say(&format!(
        "appended 1 byte to /{} ({size} bytes): upper/{} is {} bytes, a full copy",
        big.display(),
        big.display(),
        up.len()
    ));
    say(&format!(
        "the lower file is unchanged: {} bytes, inode {} still has {} links",
        std::fs::metadata(lower_root.join(&big))?.len(),
        std::fs::metadata(lower_root.join(&big))?.ino(),
        std::fs::metadata(lower_root.join(&big))?.nlink()
    ));
    std::fs::write(
        merged.join("created-in-container.txt"),
        b"hello from the container\n",
    )?;
    say("created /created-in-container.txt: it exists only in upper/");

    step(
        7,
        "delete: a whiteout (character device 0/0) in upper/ hides the lower file",
    );
    let victim = walkdir::WalkDir::new(&lower_root)
        .sort_by_file_name()
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_file())
        .filter_map(|e| {
            e.path()
                .strip_prefix(&lower_root)
                .ok()
                .map(|p| p.to_path_buf())
        })
        .find(|p| *p != target && *p != big)
        .unwrap_or(target.clone());
    std::fs::remove_file(merged.join(&victim))?;
    let wh = std::fs::symlink_metadata(upper.join(&victim))?;
    say(&format!(
        "rm /{}: upper/{} is a {} {},{} ; the lower file still exists: {}",
        victim.display(),
        victim.display(),
        if wh.file_type().is_char_device() {
            "character device"
        } else {
            "?"
        },
        rustix::fs::major(wh.rdev()),
        rustix::fs::minor(wh.rdev()),
        lower_root.join(&victim).exists()
    ));

    step(
        8,
        "remove a directory and make it again: an opaque directory in upper/",
    );
    let top_dirs = top_level_dirs(&lower_root);
    let touched = [&target, &big, &victim];
    let untouched: Vec<&PathBuf> = top_dirs
        .iter()
        .filter(|d| !touched.iter().any(|t| t.starts_with(d)))
        .collect();
    if let Some(dir) = untouched.first() {
        std::fs::remove_dir_all(merged.join(dir))?;
        std::fs::create_dir(merged.join(dir))?;
        let mut v = [0u8; 4];
        let opaque = rustix::fs::lgetxattr(upper.join(dir), "trusted.overlay.opaque", &mut v[..])
            .map(|n| String::from_utf8_lossy(&v[..n]).into_owned())
            .unwrap_or_default();
        say(&format!(
            "rm -rf /{d} && mkdir /{d}: upper/{d} has trusted.overlay.opaque={opaque:?}; merged/{d} is empty ({} entries)",
            count(&merged.join(dir)),
            d = dir.display()
        ));
    }

    step(
        9,
        "rename a directory of the lower layer: EXDEV, tools must copy and delete",
    );
    if let Some(dir) = untouched.get(1) {
        match std::fs::rename(merged.join(dir), merged.join("renamed-dir")) {
            Err(e) => say(&format!("mv /{} /renamed-dir: {e}", dir.display())),
            Ok(()) => say("rename succeeded (this kernel follows redirects for this mount)"),
        }
    }

    step(10, "what the kernel put in upper/");
    for (p, what) in upper_listing(&upper)? {
        say(&format!("{what:<22} /{p}"));
    }

    step(11, "the lower layers are unchanged");
    driver.put(cid)?;
    let lower_after = tree_digest(&home, &layers)?;
    say(&format!(
        "{} entries in the image layers, identical before and after (types, modes, owners, contents, inodes): {}",
        lower_after.len(),
        lower_before == lower_after
    ));
    if lower_before != lower_after {
        bail!("the lower layers changed: this is a bug");
    }
    say("the container was unmounted; merged/ is gone again");
    Ok(())
}

fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

fn mode_string(m: &std::fs::Metadata) -> String {
    let t = if m.is_dir() {
        'd'
    } else if m.file_type().is_symlink() {
        'l'
    } else {
        '-'
    };
    let mode = m.mode();
    let mut s = String::from(t);
    for (i, c) in "rwxrwxrwx".chars().enumerate() {
        s.push(if mode & (1 << (8 - i)) != 0 { c } else { '-' });
    }
    s
}

fn sorted_entries(dir: &Path) -> anyhow::Result<Vec<String>> {
    let mut v: Vec<String> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    Ok(v)
}

fn count(dir: &Path) -> usize {
    std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

/// The first entry (in sorted walk order) below `root` matching `pred`, as a relative path.
fn find_first(root: &Path, pred: impl Fn(&std::fs::Metadata) -> bool) -> Option<PathBuf> {
    walkdir::WalkDir::new(root)
        .min_depth(1)
        .sort_by_file_name()
        .into_iter()
        .filter_map(|e| e.ok())
        .find(|e| e.metadata().map(|m| pred(&m)).unwrap_or(false))
        .and_then(|e| e.path().strip_prefix(root).ok().map(|p| p.to_path_buf()))
}

/// The top-level directories of `root`, sorted, as relative paths.
fn top_level_dirs(root: &Path) -> Vec<PathBuf> {
    walkdir::WalkDir::new(root)
        .min_depth(1)
        .max_depth(1)
        .sort_by_file_name()
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_dir())
        .filter_map(|e| e.path().strip_prefix(root).ok().map(|p| p.to_path_buf()))
        .collect()
}

/// The largest regular file below `root` other than those in `not`.
fn find_largest(root: &Path, not: &[&PathBuf]) -> Option<PathBuf> {
    walkdir::WalkDir::new(root)
        .sort_by_file_name()
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_file())
        .filter(|e| !not.iter().any(|n| root.join(n) == e.path()))
        .max_by_key(|e| e.metadata().map(|m| m.len()).unwrap_or(0))
        .and_then(|e| e.path().strip_prefix(root).ok().map(|p| p.to_path_buf()))
}

/// (entries, inodes first seen in this layer) per layer, bottom-up.
fn inode_counts(home: &Path, layers: &[String]) -> anyhow::Result<Vec<(usize, usize)>> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for l in layers {
        let mut entries = 0;
        let mut new = 0;
        for e in walkdir::WalkDir::new(home.join(l))
            .into_iter()
            .filter_map(|e| e.ok())
        {
            let m = e.metadata()?;
            entries += 1;
            if seen.insert((m.dev(), m.ino())) {
                new += 1;
            }
        }
        out.push((entries, new));
    }
    Ok(out)
}

/// A digest of every image-layer entry: path -> (type, mode, owner, size, inode, content hash).
fn tree_digest(home: &Path, layers: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for l in layers {
        let r = home.join(l).join("root");
        for e in walkdir::WalkDir::new(&r)
            .sort_by_file_name()
            .into_iter()
            .filter_map(|e| e.ok())
        {
            let m = e.metadata()?;
            let content = if m.is_file() {
                use std::hash::{Hash, Hasher};
                let mut h = std::collections::hash_map::DefaultHasher::new();
                std::fs::read(e.path())?.hash(&mut h);
                h.finish()
            } else {
                0
            };
            out.insert(
                format!(
                    "{l}/{}",
                    e.path().strip_prefix(&r).unwrap_or(e.path()).display()
                ),
                format!(
                    "{:o} {} {} {} {} {} {content:x}",
                    m.mode(),
                    m.uid(),
                    m.gid(),
                    m.len(),
                    m.ino(),
                    m.nlink()
                ),
            );
        }
    }
    Ok(out)
}

fn upper_listing(upper: &Path) -> anyhow::Result<Vec<(String, &'static str)>> {
    let mut out = Vec::new();
    for e in walkdir::WalkDir::new(upper)
        .min_depth(1)
        .sort_by_file_name()
        .into_iter()
        .filter_map(|e| e.ok())
    {
        let m = std::fs::symlink_metadata(e.path())?;
        let rel = e
            .path()
            .strip_prefix(upper)
            .unwrap_or(e.path())
            .display()
            .to_string();
        let what = if m.file_type().is_char_device() && m.rdev() == 0 {
            "whiteout (char 0/0)"
        } else if m.is_dir() {
            let mut v = [0u8; 4];
            if rustix::fs::lgetxattr(e.path(), "trusted.overlay.opaque", &mut v[..]).is_ok() {
                "opaque directory"
            } else {
                "directory"
            }
        } else if m.file_type().is_symlink() {
            "symlink"
        } else {
            "copied-up/new file"
        };
        out.push((rel, what));
    }
    Ok(out)
}
