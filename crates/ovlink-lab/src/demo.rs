//! `ovlink demo`: the main job on a built-in default, on either layout. It generates a small
//! deterministic image (or takes a given `docker save` tarball), imports it into a throw-away
//! root and walks through what the seed articles demonstrate: the layer directories (legacy:
//! full `root/` trees sharing files by inode, new directory inodes in every layer; overlay2:
//! `diff/`, `link`, `lower`, the `l/` short links), a container (`lower-id` or `lower`,
//! `upper`/`diff`, `work`, `merged` and its mount line), a read from the lower layer, copy-up of
//! a whole file on the first write, a whiteout for a delete, an opaque directory for a removed
//! and re-created one, rename(2) of a lower directory, and that the image layers are unchanged.
//! It cleans up after itself (unmounting first) unless `keep` is set.

use crate::error::{io, LabError, Result};
use crate::scratch::{mount_line, Scratch};
use crate::{LabConfig, Narrator, Say};
use ovlink_driver::{CreateOpts, DiffMode, Driver, InitConfig, Layout, ReclaimMode, SyncMode};
use serde::Serialize;
use std::collections::{BTreeMap, HashSet};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// Where a layer's content lives in `layout`: the legacy `root/` tree, overlay2's `diff/`.
fn content_dir(layout: Layout) -> &'static str {
    match layout {
        Layout::Overlay => "root",
        Layout::Overlay2 => "diff",
    }
}

/// What the demo is asked to do.
#[derive(Debug, Clone)]
pub struct DemoConfig {
    /// The layout.
    pub layout: Layout,
    /// A `docker save` tarball instead of the generated image.
    pub image: Option<PathBuf>,
    /// How the demo's layers are made durable (`None`: the backing filesystem's default).
    pub sync: Option<SyncMode>,
    /// When a removed layer's tree is deleted.
    pub reclaim: ReclaimMode,
    /// Which diff the driver makes.
    pub diff: DiffMode,
    /// Legacy layout: share or re-create symlinks and special files in image layers (`None`:
    /// the default, `link`).
    pub symlinks: Option<ovlink_fs::Specials>,
}

/// What the demo observed.
#[derive(Debug, Clone, Serialize)]
pub struct DemoResult {
    /// The layout walked through.
    pub layout: Layout,
    /// The image layer ids, bottom first.
    pub layers: Vec<String>,
    /// The container's mount line (/proc/self/mounts).
    pub mount_line: String,
    /// The container's lowerdirs, top first, as mounted (overlay2: `l/<short id>` names).
    pub lowerdirs: Vec<String>,
    /// overlay2: the `lower` file of the container layer.
    pub lower_file: Option<String>,
    /// overlay2: `l/<name> -> <target>` of every short link.
    pub short_links: Vec<(String, String)>,
    /// Bytes of the copied-up file in the lower layer and in upper after a 1-byte append.
    pub copy_up: (u64, u64),
    /// The deleted file's upper entry: (kind, major, minor).
    pub whiteout: (String, u32, u32),
    /// trusted.overlay.opaque of the re-created directory.
    pub opaque: Option<String>,
    /// What rename(2) of a lower directory returned: `ok` or the errno text.
    pub rename: Option<String>,
    /// The image layers are byte-, mode- and inode-identical before and after.
    pub lower_unchanged: bool,
    /// Where the throw-away root was kept.
    pub kept: Option<PathBuf>,
}

/// Runs the demo.
pub fn run(cfg: &LabConfig, d: &DemoConfig, n: &dyn Narrator) -> Result<DemoResult> {
    crate::scratch::require_root("demo")?;
    let mut scratch = Scratch::new(cfg, "demo")?;
    let base = scratch.path().to_path_buf();
    let root = base.join("root");
    let say = Say(n);
    let result = walk(d, &say, &base, &root);
    let kept = if cfg.keep {
        let kept = scratch.keep();
        if let Some(p) = &kept {
            say.text(format!(
                "Kept the demo root at {} (ovlink --root {} --driver {} layer ls).",
                p.display(),
                root.display(),
                d.layout.name()
            ));
            say.text(format!(
                "Clean up with: umount {}/{}/*/merged; rm -rf {}",
                root.display(),
                d.layout.name(),
                p.display()
            ));
        }
        kept
    } else {
        None
    };
    drop(scratch);
    let mut r = result?;
    if kept.is_none() {
        say.text(format!(
            "Done; the throw-away root {} was unmounted and removed.",
            base.display()
        ));
    }
    r.kept = kept;
    Ok(r)
}

fn open(d: &DemoConfig, home: &Path) -> Result<Box<dyn Driver>> {
    let cfg = InitConfig {
        home: home.to_path_buf(),
        sync: d.sync,
        reclaim: d.reclaim,
        diff: d.diff,
        symlinks: d.symlinks,
        ..Default::default()
    };
    Ok(ovlink_layouts::open(d.layout, &cfg)?)
}

fn walk(d: &DemoConfig, say: &Say<'_>, base: &Path, root: &Path) -> Result<DemoResult> {
    let layout = d.layout;
    let home = root.join(layout.name());
    let content = content_dir(layout);
    say.title(format!(
        "ovlink demo: Docker's {} driver, step by step, in {}",
        match layout {
            Layout::Overlay => "legacy overlay",
            Layout::Overlay2 => "overlay2",
        },
        root.display()
    ));

    say.step("1. an image");
    let image_path = match &d.image {
        Some(p) => {
            say.text(format!("using {}", p.display()));
            p.clone()
        }
        None => {
            let p = base.join("demo-image.tar");
            let spec = ovlink_image::generate::GenSpec::demo();
            let mut f = std::fs::File::create(&p).map_err(io("create", &p))?;
            let summary =
                ovlink_image::generate::generate(&spec, &mut f).map_err(io("generate", &p))?;
            say.text(format!(
                "generated a deterministic docker-save image {} ({} layers, {} bytes):",
                p.display(),
                summary.layers.len(),
                summary.archive_size
            ));
            for (i, l) in summary.layers.iter().enumerate() {
                say.out(format!(
                    "  layer {i}: {} files, {} dirs, {} symlinks, {} hardlinks, {} whiteouts ({} opaque)",
                    l.files, l.dirs, l.symlinks, l.hardlinks, l.whiteouts, l.opaque
                ));
            }
            p
        }
    };

    say.step(match layout {
        Layout::Overlay => "2. import it: every layer is a full tree of hardlinks into its parent",
        Layout::Overlay2 => {
            "2. import it: every layer holds only its own changes (diff/), named by a short link"
        }
    });
    let driver = open(d, &home)?;
    let store = ovlink_image::Store::open(root)?;
    let report = ovlink_image::import(
        driver.as_ref(),
        &store,
        &image_path,
        Some("demo"),
        &ovlink_image::NoProgress,
    )?;
    let layers: Vec<String> = report.layers.iter().map(|l| l.chain_id.clone()).collect();
    for (i, l) in report.layers.iter().enumerate() {
        say.out(format!(
            "layer {i}: {}  ({} bytes of files)",
            short(&l.chain_id),
            l.size
        ));
    }
    say.cmd(format!("ls -l {}", home.display()));
    for l in &layers {
        let m = std::fs::metadata(home.join(l)).map_err(io("stat", &home.join(l)))?;
        say.out(format!(
            "  {}  {}/   holds: {}",
            mode_string(&m),
            short(l),
            crate::scratch::names(&home.join(l)).join(" ")
        ));
    }
    let top = layers
        .last()
        .cloned()
        .ok_or_else(|| LabError::Refused("the image has no layers".into()))?;
    let mut short_links = Vec::new();
    if layout == Layout::Overlay2 {
        say.cmd(format!("ls -l {}/l", home.display()));
        for name in crate::scratch::names(&home.join("l")) {
            let t = std::fs::read_link(home.join("l").join(&name))
                .map_err(io("read link", &home.join("l").join(&name)))?;
            say.out(format!("  {name} -> {}", t.display()));
            short_links.push((name, t.display().to_string()));
        }
        for l in &layers {
            let link = std::fs::read_to_string(home.join(l).join("link")).unwrap_or_default();
            let lower = std::fs::read_to_string(home.join(l).join("lower"))
                .unwrap_or_else(|_| "(no lower file: the bottom layer)".into());
            say.cmd(format!("cat {}/{{link,lower}}", short(l)));
            say.out(format!("  link: {link}   lower: {lower}"));
        }
        say.text(
            "Why the short links: a mount's options must fit in one page (4096 bytes). 64-hex \
             layer paths make a 25-layer lowerdir too long; l/<26 chars> names, mounted from the \
             home as the working directory, keep it short. The lower file lists the layers \
             below, nearest first, as the lowerdir order wants.",
        );
    }

    say.step(match layout {
        Layout::Overlay => {
            "3. same file, same inode in every layer; directories are new inodes each time"
        }
        Layout::Overlay2 => {
            "3. each file lives once, in the layer that wrote it; nothing of the parent is re-created"
        }
    });
    let bottom = home.join(&layers[0]).join(content);
    let shared = find_first(&bottom, |m| m.file_type().is_file() && m.len() > 0)
        .ok_or_else(|| LabError::Refused("the bottom layer has no regular file".into()))?;
    let shared_dir = find_first(&bottom, |m| m.is_dir()).unwrap_or_default();
    for l in &layers {
        let r = home.join(l).join(content);
        let f = std::fs::symlink_metadata(r.join(&shared));
        let dm = std::fs::symlink_metadata(r.join(&shared_dir));
        match (f, dm) {
            (Ok(f), Ok(dm)) => say.out(format!(
                "{}: /{} inode {} (links {}), dir /{} inode {}",
                short(l),
                shared.display(),
                f.ino(),
                f.nlink(),
                shared_dir.display(),
                dm.ino()
            )),
            _ => say.out(format!(
                "{}: /{} is not in this layer's {content}/",
                short(l),
                shared.display()
            )),
        }
    }
    let counts = inode_counts(&home, &layers)?;
    for (l, (entries, new)) in layers.iter().zip(&counts) {
        say.saw(format!(
            "{}: {entries} entries, {new} new inodes on the backing filesystem",
            short(l)
        ));
    }
    say.text(match layout {
        Layout::Overlay => "(every layer pays one inode per directory: that is how this driver runs out of inodes; see `ovlink lab inodes`)",
        Layout::Overlay2 => "(a layer costs only what it changed: compare `ovlink demo --driver overlay`, and `ovlink lab layers`)",
    });

    say.step(match layout {
        Layout::Overlay => "4. a container: lower-id, upper/, work/, and merged/ while mounted",
        Layout::Overlay2 => {
            "4. a container: diff/ (the upper), work/, lower (every layer below), merged/ while mounted"
        }
    });
    let cid = "demo-container";
    driver.create_read_write(cid, Some(&top), &CreateOpts::default())?;
    let cdir = home.join(cid);
    say.cmd(format!("ls -l {}", cdir.display()));
    for e in crate::scratch::names(&cdir) {
        let m = std::fs::symlink_metadata(cdir.join(&e)).map_err(io("stat", &cdir.join(&e)))?;
        say.out(format!("  {}  {e}", mode_string(&m)));
    }
    let mut lower_file = None;
    match layout {
        Layout::Overlay => {
            let p = cdir.join("lower-id");
            say.cmd("cat lower-id");
            say.out(std::fs::read_to_string(&p).map_err(io("read", &p))?);
        }
        Layout::Overlay2 => {
            let p = cdir.join("lower");
            let s = std::fs::read_to_string(&p).map_err(io("read", &p))?;
            say.cmd("cat lower");
            say.out(s.clone());
            lower_file = Some(s);
        }
    }
    let merged = driver.get(cid, None)?;
    let line = mount_line(&merged).unwrap_or_default();
    say.cmd(format!("grep {} /proc/mounts", merged.display()));
    say.out(line.clone());
    let lowerdirs: Vec<String> = line
        .split([' ', ','])
        .find_map(|o| o.strip_prefix("lowerdir="))
        .map(|l| l.split(':').map(str::to_string).collect())
        .unwrap_or_default();
    say.saw(format!(
        "{} lowerdir{} in the mount{}",
        lowerdirs.len(),
        if lowerdirs.len() == 1 { "" } else { "s" },
        match layout {
            Layout::Overlay => " (the legacy layout: always exactly one, the image's top root/)",
            Layout::Overlay2 => {
                " (overlay2: one per image layer, top first, as l/ short links; relative to the home when the options would not fit in a page)"
            }
        }
    ));
    say.text("what `docker inspect` shows under GraphDriver.Data:");
    let meta = driver.metadata(cid)?;
    for (k, v) in &meta {
        say.out(format!("  {k}: {v}"));
    }
    let upper = PathBuf::from(
        meta.get("UpperDir")
            .ok_or_else(|| LabError::Unexpected("no UpperDir in the metadata".into()))?,
    );
    let lower_top = home.join(&top).join(content);
    let lower_before = tree_digest(&home, &layers, content)?;
    // What the container sees as its lower tree (overlay2: the union of the image's layers).
    let image_view = merged.clone();
    let lower_file_of = |rel: &Path| -> Option<PathBuf> {
        layers
            .iter()
            .rev()
            .map(|l| home.join(l).join(content).join(rel))
            .find(|p| std::fs::symlink_metadata(p).is_ok())
    };

    say.step("5. read: a file only in the lower layer is read from there; upper stays empty");
    let target = find_first(&image_view, |m| {
        m.file_type().is_file() && m.len() > 0 && m.nlink() > 1
    })
    .or_else(|| find_first(&image_view, |m| m.file_type().is_file() && m.len() > 0))
    .ok_or_else(|| LabError::Refused("the image has no file to read".into()))?;
    let tp = merged.join(&target);
    let data = std::fs::read(&tp).map_err(io("read", &tp))?;
    say.cmd(format!("cat merged/{} | wc -c; ls upper", target.display()));
    say.saw(format!(
        "read /{} through merged/: {} bytes; the upper dir has {} entries",
        target.display(),
        data.len(),
        count(&upper)
    ));
    let nl = std::fs::metadata(&tp).map_err(io("stat", &tp))?.nlink();
    if layout == Layout::Overlay {
        say.saw(format!(
            "inside the container /{} shows {nl} links (the layers' hardlinks): gzip and postfix refuse such files",
            target.display()
        ));
    }

    say.step("6. write: the first write copies the WHOLE file up into the upper dir (copy_up)");
    let big = find_largest(&image_view, &[&target]).unwrap_or(target.clone());
    let big_lower = lower_file_of(&big)
        .ok_or_else(|| LabError::Unexpected(format!("/{} is in no layer", big.display())))?;
    let size = std::fs::metadata(&big_lower)
        .map_err(io("stat", &big_lower))?
        .len();
    {
        use std::io::Write;
        let p = merged.join(&big);
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&p)
            .map_err(io("open for append", &p))?;
        f.write_all(b"x").map_err(io("append to", &p))?;
    }
    let up = std::fs::metadata(upper.join(&big)).map_err(io("stat", &upper.join(&big)))?;
    say.cmd(format!("echo -n x >> merged/{}", big.display()));
    say.saw(format!(
        "appended 1 byte to /{} ({size} bytes): upper/{} is {} bytes, a full copy",
        big.display(),
        big.display(),
        up.len()
    ));
    let lm = std::fs::metadata(&big_lower).map_err(io("stat", &big_lower))?;
    say.saw(format!(
        "the lower file is unchanged: {} bytes, inode {} still has {} links",
        lm.len(),
        lm.ino(),
        lm.nlink()
    ));
    let created = merged.join("created-in-container.txt");
    std::fs::write(&created, b"hello from the container\n").map_err(io("write", &created))?;
    say.saw("created /created-in-container.txt: it exists only in the upper dir");

    say.step("7. delete: a whiteout (character device 0/0) in the upper dir hides the lower file");
    let victim = walkdir::WalkDir::new(&image_view)
        .sort_by_file_name()
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_file())
        .filter_map(|e| {
            e.path()
                .strip_prefix(&image_view)
                .ok()
                .map(|p| p.to_path_buf())
        })
        .find(|p| *p != target && *p != big && !p.starts_with("created-in-container.txt"))
        .unwrap_or(target.clone());
    let vp = merged.join(&victim);
    std::fs::remove_file(&vp).map_err(io("remove", &vp))?;
    let wh =
        std::fs::symlink_metadata(upper.join(&victim)).map_err(io("stat", &upper.join(&victim)))?;
    let wh_kind = if wh.file_type().is_char_device() {
        "character device"
    } else {
        "?"
    };
    let whiteout = (
        wh_kind.to_string(),
        rustix::fs::major(wh.rdev()),
        rustix::fs::minor(wh.rdev()),
    );
    say.cmd(format!(
        "rm merged/{}; ls -l upper/{}",
        victim.display(),
        victim.display()
    ));
    say.saw(format!(
        "rm /{}: upper/{} is a {} {},{} ; the lower file still exists: {}",
        victim.display(),
        victim.display(),
        whiteout.0,
        whiteout.1,
        whiteout.2,
        lower_file_of(&victim).is_some()
    ));

    say.step("8. remove a directory and make it again: an opaque directory in the upper dir");
    let top_dirs = top_level_dirs(&image_view);
    let touched = [&target, &big, &victim];
    let untouched: Vec<&PathBuf> = top_dirs
        .iter()
        .filter(|d| !touched.iter().any(|t| t.starts_with(d)))
        .collect();
    let mut opaque = None;
    if let Some(dir) = untouched.first() {
        let p = merged.join(dir);
        std::fs::remove_dir_all(&p).map_err(io("remove", &p))?;
        let wh_dir = crate::scratch::seen(&upper.join(dir))?;
        std::fs::create_dir(&p).map_err(io("create", &p))?;
        opaque = crate::scratch::xattr(&upper.join(dir), "trusted.overlay.opaque")?;
        say.cmd(format!(
            "rm -rf merged/{d}; ls -l upper/{d}; mkdir merged/{d}; getfattr -n trusted.overlay.opaque upper/{d}",
            d = dir.display()
        ));
        if let Some(w) = wh_dir {
            say.saw(format!(
                "after rm -rf: upper/{} is a {} {}",
                dir.display(),
                w.kind,
                w.rdev.map(|(a, b)| format!("{a},{b}")).unwrap_or_default()
            ));
        }
        say.saw(format!(
            "rm -rf /{d} && mkdir /{d}: upper/{d} has trusted.overlay.opaque={:?}; merged/{d} is empty ({} entries)",
            opaque.clone().unwrap_or_default(),
            count(&merged.join(dir)),
            d = dir.display()
        ));
        say.article(
            "deleting a directory in the container creates an opaque directory in the upper dir",
            "rm -rf of a lower directory leaves a whiteout (char 0/0), like a file; only a directory \
             made again with the same name is opaque (trusted.overlay.opaque=y). See `ovlink lab whiteouts`.",
        );
    }

    say.step("9. rename a directory of the lower layer");
    let mut rename = None;
    if let Some(dir) = untouched.get(1) {
        let r = std::fs::rename(merged.join(dir), merged.join("renamed-dir"));
        let text = match &r {
            Err(e) => crate::scratch::errno_text(e),
            Ok(()) => "ok".to_string(),
        };
        say.text(format!(
            "rename(2) /{} -> /renamed-dir: {}",
            dir.display(),
            match &r {
                Err(e) => e.to_string(),
                Ok(()) => {
                    "succeeded (this mount has redirect_dir on: the upper dir records a redirect)"
                        .into()
                }
            }
        ));
        if r.is_err() {
            say.article(
                "mv of such a directory fails with \"Invalid cross-device link\"",
                "rename(2) fails with EXDEV, but mv(1) then copies the tree and deletes the \
                 original, so `mv` succeeds (slowly, copying everything up). See `ovlink lab rename`.",
            );
        }
        rename = Some(text);
    }

    say.step("10. what the kernel put in the upper dir");
    for (p, what) in upper_listing(&upper)? {
        say.out(format!("{what:<22} /{p}"));
    }

    say.step("11. the lower layers are unchanged");
    driver.put(cid)?;
    let lower_after = tree_digest(&home, &layers, content)?;
    let lower_unchanged = lower_before == lower_after;
    say.saw(format!(
        "{} entries in the image layers, identical before and after (types, modes, owners, contents, inodes): {}",
        lower_after.len(),
        lower_unchanged
    ));
    if !lower_unchanged {
        return Err(LabError::Unexpected(
            "the lower layers changed: this is a bug".into(),
        ));
    }
    say.text("the container was unmounted; merged/ is gone again");
    let _ = lower_top;
    Ok(DemoResult {
        layout,
        layers,
        mount_line: line,
        lowerdirs,
        lower_file,
        short_links,
        copy_up: (size, up.len()),
        whiteout,
        opaque,
        rename,
        lower_unchanged,
        kept: None,
    })
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
fn inode_counts(home: &Path, layers: &[String]) -> Result<Vec<(usize, usize)>> {
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
fn tree_digest(home: &Path, layers: &[String], content: &str) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for l in layers {
        let r = home.join(l).join(content);
        for e in walkdir::WalkDir::new(&r)
            .sort_by_file_name()
            .into_iter()
            .filter_map(|e| e.ok())
        {
            let m = std::fs::symlink_metadata(e.path()).map_err(io("stat", e.path()))?;
            let hash = if m.is_file() {
                use std::hash::{Hash, Hasher};
                let mut h = std::collections::hash_map::DefaultHasher::new();
                std::fs::read(e.path())
                    .map_err(io("read", e.path()))?
                    .hash(&mut h);
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
                    "{:o} {} {} {} {} {} {} {hash:x}",
                    m.mode(),
                    m.uid(),
                    m.gid(),
                    m.len(),
                    m.ino(),
                    m.nlink(),
                    m.rdev()
                ),
            );
        }
    }
    Ok(out)
}

fn upper_listing(upper: &Path) -> Result<Vec<(String, &'static str)>> {
    let mut out = Vec::new();
    for e in walkdir::WalkDir::new(upper)
        .min_depth(1)
        .sort_by_file_name()
        .into_iter()
        .filter_map(|e| e.ok())
    {
        let m = std::fs::symlink_metadata(e.path()).map_err(io("stat", e.path()))?;
        let rel = e
            .path()
            .strip_prefix(upper)
            .unwrap_or(e.path())
            .display()
            .to_string();
        let what = if m.file_type().is_char_device() && m.rdev() == 0 {
            "whiteout (char 0/0)"
        } else if m.is_dir() {
            if crate::scratch::xattr(e.path(), "trusted.overlay.opaque")?.is_some() {
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
