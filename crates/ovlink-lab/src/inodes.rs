//! `ovlink lab inodes`: on a small ext4 filesystem in a loop-mounted image file (not tmpfs:
//! tmpfs charges an inode per hardlink, which would teach the wrong lesson).
//!
//! Part 1: stack image layers in the legacy layout until the filesystem runs out of inodes
//! while bytes are still free, show the error the user gets, prove nothing was lost (earlier
//! layers complete, the failed one absent, the home usable again after freeing inodes), check
//! the report's projection against what really fitted, then do the same with overlay2. Part
//! 2: a file linked up to the filesystem's hardlink limit, and what the driver does when the
//! next layer needs one more link.
//!
//! Everything happens below a private scratch directory; the loop mount and every overlay
//! mount are undone on the way out, also on error, unless `keep` is set.

use crate::error::{io, mem, LabError, Result};
use crate::scratch::Scratch;
use crate::{LabConfig, Narrator, Say};
use ovlink_driver::{Driver, DriverError, InitConfig};
use ovlink_layouts::OverlayDriver;
use ovlink_report::render::{self, bar, human_bytes, thousands};
use ovlink_report::{scan, FsStats, Layout};
use serde::Serialize;
use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// What `lab inodes` is asked to do.
#[derive(Debug, Clone)]
pub struct InodesConfig {
    /// Size of the ext4 image file, in MiB.
    pub size_mib: u64,
    /// Inodes of the ext4 filesystem (mkfs.ext4 -N; ext4 rounds it up a little).
    pub inodes: u64,
    /// Directories in the generated base image layer.
    pub dirs: u32,
    /// Stop a layout after this many layers even if the filesystem is not full.
    pub max_layers: u32,
    /// Skip part 2 (the hardlink limit).
    pub no_links: bool,
    /// Also render the chart as SVG (returned in [`LabResult::svg`]).
    pub svg: bool,
    /// The legacy layout's `--symlinks` mode (share or re-create symlinks and special files).
    pub symlinks: ovlink_fs::Specials,
}

impl Default for InodesConfig {
    fn default() -> Self {
        InodesConfig {
            size_mib: 64,
            inodes: 2048,
            dirs: 100,
            max_layers: 1000,
            no_links: false,
            svg: false,
            symlinks: ovlink_fs::Specials::Link,
        }
    }
}

// ---------------------------------------------------------------------------------------
// The generated layers.

fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    ovlink_tar::root_header(kind, mode, size, 1_600_000_000)
}

fn tar_dir(b: &mut tar::Builder<Vec<u8>>, path: &str) -> Result<()> {
    let mut h = header(tar::EntryType::Directory, 0o755, 0);
    b.append_data(&mut h, path, std::io::empty()).map_err(mem)?;
    Ok(())
}

fn tar_file(b: &mut tar::Builder<Vec<u8>>, path: &str, data: &[u8]) -> Result<()> {
    let mut h = header(tar::EntryType::Regular, 0o644, data.len() as u64);
    b.append_data(&mut h, path, data).map_err(mem)?;
    Ok(())
}

/// The base layer's tree: `srv/g<j>/d<i>/f` for `dirs` leaf directories, ten per group.
pub(crate) struct Tree {
    pub(crate) dirs: u32,
}

impl Tree {
    pub(crate) fn leaf(&self, i: u32) -> String {
        format!("srv/g{:02}/d{i:03}", i / 10)
    }

    pub(crate) fn base(&self) -> Result<Vec<u8>> {
        let mut b = tar::Builder::new(Vec::new());
        tar_dir(&mut b, "srv/")?;
        for i in 0..self.dirs {
            if i % 10 == 0 {
                tar_dir(&mut b, &format!("srv/g{:02}/", i / 10))?;
            }
            tar_dir(&mut b, &format!("{}/", self.leaf(i)))?;
            tar_file(
                &mut b,
                &format!("{}/f", self.leaf(i)),
                format!("base {i}\n").as_bytes(),
            )?;
        }
        b.into_inner().map_err(mem)
    }

    /// The leaves whose file update layer `k` rewrites.
    pub(crate) fn touched(&self, k: u32) -> Vec<u32> {
        let mut v: Vec<u32> = (0..4)
            .map(|m| (k * 7 + m * 13) % self.dirs.max(1))
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }

    /// Update layer `k` (1, 2, …): rewrites four files and adds `srv/new-<k>`.
    pub(crate) fn update(&self, k: u32) -> Result<Vec<u8>> {
        let mut b = tar::Builder::new(Vec::new());
        tar_dir(&mut b, "srv/")?;
        for i in self.touched(k) {
            tar_dir(&mut b, &format!("srv/g{:02}/", i / 10))?;
            tar_dir(&mut b, &format!("{}/", self.leaf(i)))?;
            tar_file(
                &mut b,
                &format!("{}/f", self.leaf(i)),
                format!("layer {k}\n").as_bytes(),
            )?;
        }
        tar_file(
            &mut b,
            &format!("srv/new-{k}"),
            format!("new {k}\n").as_bytes(),
        )?;
        b.into_inner().map_err(mem)
    }

    /// What `srv/…/f` of leaf `i` holds once layers `1..=k` are applied.
    pub(crate) fn content(&self, i: u32, k: u32) -> String {
        (1..=k)
            .rev()
            .find(|j| self.touched(*j).contains(&i))
            .map(|j| format!("layer {j}\n"))
            .unwrap_or_else(|| format!("base {i}\n"))
    }

    /// Checks layer `k`'s tree: the legacy `root/` is the full image at that layer; an
    /// overlay2 `diff/` holds exactly that layer's own changes.
    fn verify(&self, layout: Layout, layer_dir: &Path, k: u32) -> std::result::Result<(), String> {
        let read =
            |p: PathBuf| std::fs::read_to_string(&p).map_err(|e| format!("{}: {e}", p.display()));
        match layout {
            Layout::Overlay => {
                let root = layer_dir.join("root");
                for i in 0..self.dirs {
                    let got = read(root.join(self.leaf(i)).join("f"))?;
                    if got != self.content(i, k) {
                        return Err(format!("{}/f holds {got:?}", self.leaf(i)));
                    }
                }
                for j in 1..=k {
                    read(root.join(format!("srv/new-{j}")))?;
                }
            }
            Layout::Overlay2 => {
                let diff = layer_dir.join("diff");
                if k == 0 {
                    for i in 0..self.dirs {
                        let got = read(diff.join(self.leaf(i)).join("f"))?;
                        if got != format!("base {i}\n") {
                            return Err(format!("{}/f holds {got:?}", self.leaf(i)));
                        }
                    }
                    return Ok(());
                }
                for i in self.touched(k) {
                    let got = read(diff.join(self.leaf(i)).join("f"))?;
                    if got != format!("layer {k}\n") {
                        return Err(format!("{}/f holds {got:?}", self.leaf(i)));
                    }
                }
                read(diff.join(format!("srv/new-{k}")))?;
            }
        }
        Ok(())
    }
}

fn layer_id(k: u32) -> String {
    if k == 0 {
        "lab-base".to_string()
    } else {
        format!("lab-{k:04}")
    }
}

// ---------------------------------------------------------------------------------------
// Part 1.

/// One layout's run.
#[derive(Debug, Serialize)]
pub struct LayoutRun {
    /// `overlay` or `overlay2`.
    pub layout: &'static str,
    /// Image layers that fitted (the base layer included).
    pub layers_fit: u32,
    /// Inodes used on the filesystem after each layer (index 0: after the base layer).
    pub inodes_used: Vec<u64>,
    /// Inodes used before the first layer.
    pub inodes_used_before: u64,
    /// Inodes each layer added (the same index as `inodes_used`).
    pub inodes_per_layer: Vec<u64>,
    /// Why it stopped: `inodes`, `bytes`, `depth` (overlay2's 128-layer limit), `max-layers`.
    pub stopped_by: String,
    /// The error the user got, as printed.
    pub error: Option<String>,
    /// Filesystem figures right after the failure.
    pub fs_at_failure: Option<FsStats>,
    /// The report's projection after layer 1: how many more layers of that kind fit.
    pub predicted_more_after_layer1: Option<u64>,
    /// How many more really fitted after layer 1.
    pub actual_more_after_layer1: u32,
    /// Every layer that fitted still holds exactly its content.
    pub earlier_layers_complete: bool,
    /// The layer that failed left nothing behind.
    pub failed_layer_absent: bool,
    /// After removing the top layer, the failed layer could be applied.
    pub usable_after_freeing: bool,
}

/// What `lab inodes` found.
#[derive(Debug, Serialize)]
pub struct LabResult {
    /// The legacy layout's `--symlinks` mode (`link` or `copy`).
    pub symlinks: &'static str,
    /// Filesystem size in bytes.
    pub fs_bytes: u64,
    /// Filesystem inodes.
    pub fs_inodes: u64,
    /// Directories in the base layer.
    pub dirs: u32,
    /// The legacy layout's run, then overlay2's (where the kernel can run it).
    pub runs: Vec<LayoutRun>,
    /// Why overlay2 could not run here (its init's refusal: one lowerdir only before 4.0).
    pub overlay2_refused: Option<String>,
    /// Part 2, unless skipped.
    pub links: Option<LinkRun>,
    /// The chart as SVG, when asked for.
    #[serde(skip)]
    pub svg: Option<String>,
    /// Where the scratch directory was kept.
    pub kept: Option<PathBuf>,
}

fn open(layout: Layout, home: &Path, symlinks: ovlink_fs::Specials) -> Result<Box<dyn Driver>> {
    let cfg = InitConfig {
        home: home.to_path_buf(),
        symlinks: (layout == Layout::Overlay).then_some(symlinks),
        ..Default::default()
    };
    Ok(ovlink_layouts::open(layout, &cfg)?)
}

pub(crate) fn add_layer(
    d: &dyn Driver,
    id: &str,
    parent: Option<&str>,
    tar: &[u8],
) -> std::result::Result<(), DriverError> {
    // Built aside: a layer that hits the full disk leaves nothing behind to clean up.
    d.create_and_apply(id, parent, &mut &tar[..]).map(|_| ())
}

fn chain_parents(n: u32) -> BTreeMap<String, Option<String>> {
    (0..n)
        .map(|k| (layer_id(k), (k > 0).then(|| layer_id(k - 1))))
        .collect()
}

/// True when `e` is, or is caused by, "no space left on device" (inodes or bytes).
fn no_space(e: &DriverError) -> bool {
    if matches!(e, DriverError::NoSpace { .. }) {
        return true;
    }
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cur {
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            if io.raw_os_error() == Some(rustix::io::Errno::NOSPC.raw_os_error()) {
                return true;
            }
        }
        cur = c.source();
    }
    false
}

fn run_layout(
    say: &Say<'_>,
    mnt: &Path,
    layout: Layout,
    tree: &Tree,
    max_layers: u32,
    symlinks: ovlink_fs::Specials,
) -> Result<LayoutRun> {
    let name = layout.name();
    let home = mnt.join(name);
    let before = FsStats::of(mnt)?;
    let d = open(layout, &home, symlinks)?;
    let base = tree.base()?;
    say.out(format!(
        "{:<7} {:>9} {:>9}   {:<32} {}",
        "LAYER", "+INODES", "USED", "INODES (capacity)", "BYTES USED"
    ));
    let mut run = LayoutRun {
        layout: name,
        layers_fit: 0,
        inodes_used: Vec::new(),
        inodes_used_before: before.inodes_used,
        inodes_per_layer: Vec::new(),
        stopped_by: String::new(),
        error: None,
        fs_at_failure: None,
        predicted_more_after_layer1: None,
        actual_more_after_layer1: 0,
        earlier_layers_complete: false,
        failed_layer_absent: false,
        usable_after_freeing: false,
    };
    let mut prev_used = before.inodes_used;
    let mut k = 0u32;
    let mut failed: Option<(String, Vec<u8>)> = None;
    loop {
        if k >= max_layers {
            run.stopped_by = "max-layers".into();
            break;
        }
        if layout == Layout::Overlay2 && k > ovlink_overlay2::MAX_LOWERS as u32 {
            run.stopped_by = "depth".into();
            break;
        }
        let id = layer_id(k);
        let parent = (k > 0).then(|| layer_id(k - 1));
        let tar = if k == 0 {
            base.clone()
        } else {
            tree.update(k)?
        };
        match add_layer(d.as_ref(), &id, parent.as_deref(), &tar) {
            Ok(()) => {}
            Err(e) if no_space(&e) => {
                let fs = FsStats::of(mnt)?;
                run.stopped_by = if fs.bytes_free > 4 * tar.len() as u64 + (1 << 20) {
                    "inodes".into()
                } else {
                    "bytes".into()
                };
                run.error = Some(ovlink_driver::error_chain(&e));
                run.fs_at_failure = Some(fs);
                failed = Some((id, tar));
                break;
            }
            Err(e)
                if layout == Layout::Overlay2 && matches!(e, DriverError::Unsupported { .. }) =>
            {
                run.stopped_by = "depth".into();
                run.error = Some(e.to_string());
                break;
            }
            Err(e) => {
                return Err(LabError::Unexpected(format!(
                    "cannot add layer {k} ({name}): {}",
                    ovlink_driver::error_chain(&e)
                )))
            }
        }
        let fs = FsStats::of(mnt)?;
        let added = fs.inodes_used.saturating_sub(prev_used);
        prev_used = fs.inodes_used;
        run.inodes_used.push(fs.inodes_used);
        run.inodes_per_layer.push(added);
        run.layers_fit = k + 1;
        if k == 1 {
            let r = scan(&home, layout, &chain_parents(2))?;
            run.predicted_more_after_layer1 = r
                .projections
                .iter()
                .find(|p| p.what.contains(&ovlink_report::scan::short(&id)))
                .and_then(|p| p.fits);
        }
        if k > 1 {
            run.actual_more_after_layer1 += 1;
        }
        let show = k < 3 || k.is_multiple_of(5) || fs.inodes_free < 3 * added.max(1);
        if show {
            say.out(format!(
                "{:<7} {:>9} {:>9}   {} {:>3.0}%   {}",
                if k == 0 {
                    "base".to_string()
                } else {
                    k.to_string()
                },
                format!("+{}", thousands(added)),
                thousands(fs.inodes_used),
                bar(fs.inodes_used, fs.inodes_total, 24),
                fs.inodes_used_pct(),
                human_bytes(fs.bytes_used),
            ));
        }
        if k == 1 {
            if let Some(p) = run.predicted_more_after_layer1 {
                say.out(format!(
                    "        (ovlink report now projects {} more layers like this one before the filesystem is full)",
                    thousands(p)
                ));
            }
        }
        k += 1;
    }
    let fs = FsStats::of(mnt)?;
    match &run.error {
        Some(err) => {
            say.out(format!("layer {k}: FAILED"));
            say.out(format!("  the error: ovlink: error: {err}"));
            if run.stopped_by == "inodes" && err.contains("bytes exhausted") {
                say.text(
                    "  (the message blames bytes because the driver looked at the filesystem after \
                     removing its half-built copy, which gave some inodes back; df -i below shows \
                     what ran out)",
                );
            }
            say.out(format!(
                "  df -i:     {} of {} inodes used, {} free ({:.0}%)   df -h: {} of {} used, {} free",
                thousands(fs.inodes_used),
                thousands(fs.inodes_total),
                thousands(fs.inodes_free),
                fs.inodes_used_pct(),
                human_bytes(fs.bytes_used),
                human_bytes(fs.bytes_total),
                human_bytes(fs.bytes_free)
            ));
            say.saw(format!(
                "diagnosis: the filesystem ran out of {} ({} still free) after {} layers",
                run.stopped_by,
                if run.stopped_by == "inodes" {
                    format!("{} of bytes", human_bytes(fs.bytes_free))
                } else {
                    format!("{} inodes", thousands(fs.inodes_free))
                },
                run.layers_fit
            ));
        }
        None => say.text(format!(
            "stopped after {} layers ({}), {} inodes still free",
            run.layers_fit,
            match run.stopped_by.as_str() {
                "depth" => "overlay2's limit of 128 lower layers".to_string(),
                s => s.to_string(),
            },
            thousands(fs.inodes_free)
        )),
    }
    if let Some(p) = run.predicted_more_after_layer1 {
        say.saw(format!(
            "projection check: after layer 1 the report projected {} more layers; {} more fitted",
            thousands(p),
            run.actual_more_after_layer1
        ));
    }

    // Nothing lost.
    let mut complete = true;
    for j in 0..run.layers_fit {
        if let Err(e) = tree.verify(layout, &home.join(layer_id(j)), j) {
            say.text(format!("  layer {j} is damaged: {e}"));
            complete = false;
        }
    }
    run.earlier_layers_complete = complete;
    let leftovers: Vec<String> = std::fs::read_dir(&home)
        .map_err(io("list", &home))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".tmp-"))
        .collect();
    if let Some((fid, ftar)) = &failed {
        run.failed_layer_absent = !d.exists(fid) && leftovers.is_empty();
        say.saw(format!(
            "nothing lost: all {} earlier layers are complete: {}; the failed layer {} left nothing behind: {}",
            run.layers_fit,
            yes(complete),
            fid,
            yes(run.failed_layer_absent)
        ));
        // Free inodes by removing the top layer, then the failed layer's tar fits again.
        if run.layers_fit >= 2 {
            let top = layer_id(run.layers_fit - 1);
            let free_before = FsStats::of(mnt)?.inodes_free;
            d.remove(&top)?;
            let freed = FsStats::of(mnt)?.inodes_free.saturating_sub(free_before);
            let below = layer_id(run.layers_fit - 2);
            let retry = add_layer(d.as_ref(), &top, Some(&below), ftar);
            run.usable_after_freeing = retry.is_ok();
            say.saw(format!(
                "usable again: 'ovlink layer rm {top}' freed {} inodes; then the layer that failed \
                 applied in its place: {}",
                thousands(freed),
                match &retry {
                    Ok(()) => "yes".to_string(),
                    Err(e) => format!("NO ({e})"),
                }
            ));
        }
    }
    d.cleanup()?;
    Ok(run)
}

fn yes(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "NO"
    }
}

// ---------------------------------------------------------------------------------------
// Part 2.

/// The hardlink-limit demonstration.
#[derive(Debug, Serialize)]
pub struct LinkRun {
    /// The filesystem's link limit.
    pub link_max: u64,
    /// Links of the shared file after layer 1 was stacked on it.
    pub nlink_at_limit: u64,
    /// The next layer's copy of the file is a new inode (the driver copied instead of linking).
    pub next_layer_copied: bool,
    /// Links of the next layer's copy.
    pub next_layer_nlink: u64,
    /// The content is intact in every layer.
    pub content_intact: bool,
    /// Seconds it took to make the links.
    pub link_seconds: f64,
}

fn links_part(say: &Say<'_>, mnt: &Path) -> Result<LinkRun> {
    let home = mnt.join("overlay-links");
    let d = OverlayDriver::init(&InitConfig {
        home: home.clone(),
        ..Default::default()
    })?;
    let magic = ovlink_driver::checks::backing_fs(mnt)?.0;
    let (limit, fs_name) = ovlink_report::link_max(magic);
    let mut b = tar::Builder::new(Vec::new());
    tar_dir(&mut b, "app/")?;
    tar_file(&mut b, "app/shared", b"shared by every layer\n")?;
    let base = b.into_inner().map_err(mem)?;
    add_layer(&d, "links-0", None, &base)?;
    let file = home.join("links-0/root/app/shared");
    // The base layer holds 1 link; links-1 will add one more. Fill up to limit - 1 from the
    // outside, so that links-1 takes the file exactly to the limit.
    let extra = mnt.join("extra-links");
    std::fs::create_dir(&extra).map_err(io("create", &extra))?;
    let want = limit.saturating_sub(2);
    say.text(format!(
        "making {} hardlinks to {} (the {fs_name} limit is {}) …",
        thousands(want),
        file.display(),
        thousands(limit)
    ));
    let started = std::time::Instant::now();
    let src = ovlink_fs::at::open_dir(&home.join("links-0/root/app"))?;
    let dst = ovlink_fs::at::open_dir(&extra)?;
    for i in 0..want {
        rustix::fs::linkat(
            &src,
            "shared",
            &dst,
            format!("l{i}").as_str(),
            rustix::fs::AtFlags::empty(),
        )
        .map_err(io("make another hardlink to", &file))?;
    }
    let link_seconds = started.elapsed().as_secs_f64();
    let nlink = |p: &Path| {
        std::fs::symlink_metadata(p)
            .map(|m| (m.nlink(), m.ino()))
            .map_err(io("stat", p))
    };
    say.text(format!(
        "  done in {link_seconds:.1}s: the file now has {} links",
        thousands(nlink(&file)?.0)
    ));
    let empty = tar::Builder::new(Vec::new()).into_inner().map_err(mem)?;
    add_layer(&d, "links-1", Some("links-0"), &empty)?;
    let (at_limit, ino0) = nlink(&file)?;
    say.text(format!(
        "  layer links-1 on top: its root/app/shared is one more hardlink: {} links = the limit",
        thousands(at_limit)
    ));
    add_layer(&d, "links-2", Some("links-1"), &empty)?;
    let f2 = home.join("links-2/root/app/shared");
    let (n2, ino2) = nlink(&f2)?;
    let copied = ino2 != ino0;
    say.text(format!(
        "  layer links-2 on top needs link number {}: the kernel says EMLINK (too many links).",
        thousands(limit + 1)
    ));
    if copied {
        say.text(format!(
            "  ovlink copied the file instead (new inode {ino2}, {n2} link): the layer is complete, it just \
             costs one more inode and the file's bytes. Docker's own driver failed the pull here."
        ));
    } else {
        say.text("  the file was linked again (this filesystem's limit was not reached)");
    }
    let intact = ["links-0", "links-1", "links-2"].iter().all(|l| {
        std::fs::read(home.join(l).join("root/app/shared"))
            .is_ok_and(|c| c == b"shared by every layer\n")
    });
    say.text(format!(
        "  the file reads the same in all three layers: {}",
        yes(intact)
    ));
    let r = scan(&home, Layout::Overlay, &chain_parents(0))?;
    if let Some(m) = r
        .layers
        .iter()
        .filter_map(|l| l.max_links.as_ref())
        .max_by_key(|m| m.nlink)
    {
        say.text(format!(
            "  ovlink report: most links {} of {}: {} more image layers before EMLINK",
            thousands(m.nlink),
            thousands(r.link_max),
            thousands(m.descendant_layers_left.unwrap_or(0))
        ));
    }
    std::fs::remove_dir_all(&extra).map_err(io("remove", &extra))?;
    Ok(LinkRun {
        link_max: limit,
        nlink_at_limit: at_limit,
        next_layer_copied: copied,
        next_layer_nlink: n2,
        content_intact: intact,
        link_seconds,
    })
}

// ---------------------------------------------------------------------------------------

/// Runs `lab inodes`.
pub fn run(cfg: &LabConfig, a: &InodesConfig, n: &dyn Narrator) -> Result<LabResult> {
    crate::scratch::require_root("lab inodes")?;
    if a.dirs == 0 {
        return Err(LabError::Refused("--dirs must be at least 1".into()));
    }
    let say = Say(n);
    let tree = Tree { dirs: a.dirs };
    say.title("ovlink lab inodes: why the legacy overlay driver runs a filesystem out of inodes long before it runs out of bytes");
    say.step(format!(
        "a fresh {} MiB ext4 filesystem with about {} inodes, in a loop-mounted file",
        a.size_mib,
        thousands(a.inodes)
    ));
    let mut scratch = Scratch::new(cfg, "lab-inodes")?;
    let mnt = scratch.loop_fs(
        "mnt",
        a.size_mib,
        "mkfs.ext4",
        &["-q", "-F", "-N", &a.inodes.to_string(), "-E", "nodiscard"],
    )?;
    let img = scratch.join("mnt.img");
    let fs0 = FsStats::of(&mnt)?;
    say.cmd(format!("cd {}", scratch.path().display()));
    say.cmd(format!(
        "truncate -s {}M mnt.img && mkfs.ext4 -q -N {} mnt.img && mkdir mnt && mount -o loop mnt.img mnt",
        a.size_mib, a.inodes
    ));
    say.cmd("df -i mnt; df -h mnt");
    say.saw(format!(
        "df -i: {} inodes, {} used (ext4's own), {} free;  df -h: {} free",
        thousands(fs0.inodes_total),
        thousands(fs0.inodes_used),
        thousands(fs0.inodes_free),
        human_bytes(fs0.bytes_free)
    ));
    say.text(format!(
        "An inode is what the filesystem keeps per file or directory (owner, mode, size, where the \
         bytes are). ext4 fixes their number when it is made: this one has {}.",
        thousands(fs0.inodes_total)
    ));
    say.text(format!(
        "The image: a base layer with {} directories and {} small files, then update layers that each \
         rewrite 4 files and add one.",
        tree.dirs + tree.dirs.div_ceil(10) + 1,
        tree.dirs
    ));

    let mut runs = Vec::new();
    say.step("part 1a: the legacy overlay layout: every layer is a full tree (hardlinks for files, NEW directories)");
    say.text(format!(
        "legacy layout with --symlinks {}: {}",
        a.symlinks.name(),
        match a.symlinks {
            ovlink_fs::Specials::Link =>
                "symlinks and special files are hardlinked between layers (ovlink's saving)",
            ovlink_fs::Specials::Copy =>
                "symlinks and special files are re-created in every layer, as Docker does",
        }
    ));
    runs.push(run_layout(
        &say,
        &mnt,
        Layout::Overlay,
        &tree,
        a.max_layers,
        a.symlinks,
    )?);
    // Free the filesystem for the second layout.
    let oh = mnt.join("overlay");
    std::fs::remove_dir_all(&oh).map_err(io("remove", &oh))?;
    say.step("part 1b: the same layers with overlay2: each layer holds only its own changes");
    // A kernel without several lowerdirs (upstream before 4.0) cannot run overlay2 at all:
    // its init refuses the home, and the lab says so instead of failing.
    let mut overlay2_refused = None;
    match run_layout(
        &say,
        &mnt,
        Layout::Overlay2,
        &tree,
        a.max_layers,
        a.symlinks,
    ) {
        Ok(r) => runs.push(r),
        Err(LabError::Driver(e @ DriverError::HostCheck { .. })) => {
            let why = ovlink_driver::error::error_chain(&e);
            say.saw(format!(
                "overlay2 cannot run on this kernel: {why}. The legacy layout mounts one lowerdir \
                 only, which is why Docker kept it for kernels before 4.0"
            ));
            overlay2_refused = Some(why);
        }
        Err(e) => return Err(e),
    }
    let o2h = mnt.join("overlay2");
    if o2h.exists() {
        std::fs::remove_dir_all(&o2h).map_err(io("remove", &o2h))?;
    }

    say.step("the result");
    let most = runs.iter().map(|r| r.layers_fit).max().unwrap_or(1);
    for r in &runs {
        let per = r
            .inodes_per_layer
            .get(1..)
            .map(|v| v.iter().sum::<u64>() / (v.len().max(1) as u64))
            .unwrap_or(0);
        say.text(format!(
            "{:<9} {} {:>4} layers  (about {} inodes per update layer; stopped by {})",
            r.layout,
            bar(r.layers_fit as u64, most as u64, 40),
            r.layers_fit,
            thousands(per),
            r.stopped_by
        ));
    }
    if let [o, o2] = &runs[..] {
        say.text(format!(
            "overlay2 stacked {:.1}x as many layers on the same filesystem. The legacy layout re-creates \
             every directory of the image in every layer (a directory cannot be hardlinked), so each \
             layer costs as many inodes as the image has directories, while its bytes are almost nothing.",
            o2.layers_fit as f64 / o.layers_fit.max(1) as f64
        ));
        say.text("How to check a real host: 'df -i /var/lib/docker' (IUse%), and 'ovlink report'. Fixes: \
             remove unused images, make the filesystem with more inodes (mkfs.ext4 -i 4096 or -N), use xfs \
             (inodes allocated on demand), or move to overlay2.");
    }
    let chart = render::Chart {
        title: "Inodes used on the filesystem, layer by layer".into(),
        subtitle: format!(
            "{} MiB ext4, {} inodes; base layer with {} directories, then small update layers",
            a.size_mib,
            thousands(fs0.inodes_total),
            tree.dirs
        ),
        x_label: "image layers stacked".into(),
        y_label: "inodes used (df -i)".into(),
        series: runs
            .iter()
            .map(|r| render::Series {
                name: r.layout.to_string(),
                color: if r.layout == "overlay" {
                    render::OVERLAY_COLOR
                } else {
                    render::OVERLAY2_COLOR
                }
                .into(),
                start: r.inodes_used_before,
                values: r.inodes_used.clone(),
                failed_next: r.error.is_some(),
            })
            .collect(),
        capacity: Some(fs0.inodes_total),
    };
    let svg = a.svg.then(|| render::svg(&chart));

    let links = if a.no_links {
        None
    } else {
        say.step("part 2: the hardlink limit");
        say.text("Every legacy layer adds one hardlink to each file it inherits; ext4 allows 65,000 links per inode.");
        Some(links_part(&say, &mnt)?)
    };
    say.ask("How many inodes does one more legacy image layer cost here, and what decides it?");
    say.ask("df -h says there is space left: why can docker pull still fail with \"no space left on device\"?");
    say.ask("Why does overlay2 not pay for the directories of the layers below?");

    let kept = if cfg.keep {
        let dir = scratch.keep();
        if let Some(dir) = &dir {
            say.text(format!(
                "kept: {} is still mounted on {}; clean up with: umount {} && rm -rf {}",
                img.display(),
                mnt.display(),
                mnt.display(),
                dir.display()
            ));
        }
        dir
    } else {
        drop(scratch);
        say.text("Done: the filesystem was unmounted and its image file removed.");
        None
    };
    Ok(LabResult {
        symlinks: a.symlinks.name(),
        fs_bytes: fs0.bytes_total,
        fs_inodes: fs0.inodes_total,
        dirs: tree.dirs,
        runs,
        overlay2_refused,
        links,
        svg,
        kept,
    })
}
