//! `ovlink bench`: the legacy overlay layout and overlay2 side by side on the same image (a
//! generated one, or any `docker save` tarball), several repetitions each, medians and
//! ratios, written as a Markdown table and JSON.
//!
//! Measured per layout and repetition, each in a fresh root: import time, per-layer apply
//! time, the hardlink copy of the top layer's tree (what the legacy layout pays for every new
//! layer; overlay2 has none), container mount and unmount, a deep read (files of the bottom
//! layer read through a container, i.e. through every layer), distinct inodes and bytes on
//! disk of the home. Everything happens below a temporary directory that is removed (and
//! unmounted) on the way out.

use anyhow::{bail, Context as _};
use ovlink_driver::{CreateOpts, Driver, InitConfig, OverlayDriver};
use ovlink_overlay2::Overlay2Driver;
use ovlink_report::render::{human_bytes, thousands};
use ovlink_report::Layout;
use serde::Serialize;
use std::collections::{BTreeMap, HashSet};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Arguments of `ovlink bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// A `docker save` (or OCI) tarball to measure instead of the generated image.
    #[arg(long, value_name = "FILE")]
    pub image: Option<PathBuf>,
    /// Entries of the generated image's base layer.
    #[arg(long, default_value_t = 10_000)]
    pub entries: usize,
    /// Layers of the generated image.
    #[arg(long, default_value_t = 5)]
    pub layers: usize,
    /// Repetitions per layout (the tables show medians).
    #[arg(long, default_value_t = 3)]
    pub reps: usize,
    /// Most files read through the container for the deep-read figure.
    #[arg(long, default_value_t = 2000)]
    pub reads: usize,
    /// Where to work (it must not be tmpfs; default: the system's temporary directory).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Write the Markdown table to FILE (it is always printed).
    #[arg(long, value_name = "FILE")]
    pub markdown: Option<PathBuf>,
    /// Write all results as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Also save the generated image as FILE (for scripts/bench.sh's `cp -al` baseline).
    #[arg(long, value_name = "FILE")]
    pub write_image: Option<PathBuf>,
    /// Only overlay or only overlay2 (default: both).
    #[arg(long, value_enum)]
    pub only: Option<crate::cli::DriverKind>,
}

/// One repetition of one layout.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    /// Whole import (read, verify, create, apply every layer), seconds.
    pub import_s: f64,
    /// Per layer apply time from the importer, seconds, bottom first.
    pub layer_apply_s: Vec<f64>,
    /// Hardlink copy of the top layer's tree, seconds (legacy only).
    pub hardlink_copy_s: Option<f64>,
    /// Entries the hardlink copy made.
    pub hardlink_copy_entries: Option<u64>,
    /// Container mount (first `get`), seconds.
    pub mount_s: f64,
    /// Container unmount (last `put`), seconds.
    pub unmount_s: f64,
    /// Files of the bottom layer read through the container.
    pub deep_read_files: usize,
    /// Mean time per file for that read, microseconds.
    pub deep_read_us: f64,
    /// Layers the read went through (the container's lowers).
    pub deep_read_layers: usize,
    /// Distinct inodes of the home after the import.
    pub inodes: u64,
    /// Bytes on disk of the home after the import.
    pub bytes: u64,
}

/// Medians of one layout.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// `overlay` or `overlay2`.
    pub layout: &'static str,
    /// Medians, same fields as [`Sample`].
    pub median: Sample,
    /// Every repetition.
    pub samples: Vec<Sample>,
}

/// The whole run.
#[derive(Debug, Serialize)]
pub struct BenchResult {
    /// What was measured.
    pub image: String,
    /// Image layers.
    pub layers: usize,
    /// Repetitions.
    pub reps: usize,
    /// Filesystem the work dir is on.
    pub backing_fs: String,
    /// Kernel release.
    pub kernel: String,
    /// CPUs.
    pub cpus: usize,
    /// Per layout.
    pub results: Vec<Summary>,
}

/// Removes (after unmounting everything below) the work directory on drop.
struct Work {
    dir: Option<tempfile::TempDir>,
}

impl Drop for Work {
    fn drop(&mut self) {
        if let Some(d) = &self.dir {
            for m in ovlink_driver::mount::mounts_under(d.path()) {
                let _ = ovlink_driver::mount::unmount(&m);
            }
        }
    }
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn median_u(v: Vec<u64>) -> u64 {
    median(v.into_iter().map(|x| x as f64).collect()).round() as u64
}

fn medians(s: &[Sample]) -> Sample {
    let f = |g: &dyn Fn(&Sample) -> f64| median(s.iter().map(g).collect());
    let layers = s.first().map(|x| x.layer_apply_s.len()).unwrap_or(0);
    Sample {
        import_s: f(&|x| x.import_s),
        layer_apply_s: (0..layers)
            .map(|i| f(&|x| x.layer_apply_s.get(i).copied().unwrap_or(0.0)))
            .collect(),
        hardlink_copy_s: s
            .iter()
            .map(|x| x.hardlink_copy_s)
            .collect::<Option<Vec<f64>>>()
            .map(median),
        hardlink_copy_entries: s.first().and_then(|x| x.hardlink_copy_entries),
        mount_s: f(&|x| x.mount_s),
        unmount_s: f(&|x| x.unmount_s),
        deep_read_files: s.first().map(|x| x.deep_read_files).unwrap_or(0),
        deep_read_us: f(&|x| x.deep_read_us),
        deep_read_layers: s.first().map(|x| x.deep_read_layers).unwrap_or(0),
        inodes: median_u(s.iter().map(|x| x.inodes).collect()),
        bytes: median_u(s.iter().map(|x| x.bytes).collect()),
    }
}

fn open(layout: Layout, home: &Path) -> anyhow::Result<Box<dyn Driver>> {
    let cfg = InitConfig {
        home: home.to_path_buf(),
        ..Default::default()
    };
    Ok(match layout {
        Layout::Overlay => Box::new(OverlayDriver::init(&cfg)?),
        Layout::Overlay2 => Box::new(Overlay2Driver::init(&cfg)?),
    })
}

/// Relative paths of the regular files below `dir`.
fn files_below(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(dir.join(&rel)) else {
            continue;
        };
        for e in rd.flatten() {
            let Ok(ft) = e.file_type() else { continue };
            let p = rel.join(e.file_name());
            if ft.is_dir() {
                stack.push(p);
            } else if ft.is_file() {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Files of the bottom layer that the top of the chain still shows unchanged.
fn deep_files(layout: Layout, home: &Path, chain: &[String], max: usize) -> Vec<PathBuf> {
    let (Some(bottom), Some(top)) = (chain.first(), chain.last()) else {
        return Vec::new();
    };
    use std::os::unix::fs::MetadataExt;
    match layout {
        Layout::Overlay => {
            let b = home.join(bottom).join("root");
            let t = home.join(top).join("root");
            files_below(&b)
                .into_iter()
                .filter(|p| {
                    match (
                        std::fs::symlink_metadata(b.join(p)),
                        std::fs::symlink_metadata(t.join(p)),
                    ) {
                        (Ok(x), Ok(y)) => x.ino() == y.ino(),
                        _ => false,
                    }
                })
                .take(max)
                .collect()
        }
        Layout::Overlay2 => {
            let b = home.join(bottom).join("diff");
            let uppers: Vec<PathBuf> = chain[1..]
                .iter()
                .map(|l| home.join(l).join("diff"))
                .collect();
            files_below(&b)
                .into_iter()
                .filter(|p| {
                    // Untouched above: neither the path nor any parent appears in a higher diff.
                    uppers.iter().all(|u| {
                        p.ancestors()
                            .filter(|a| !a.as_os_str().is_empty())
                            .all(|a| std::fs::symlink_metadata(u.join(a)).is_err())
                    })
                })
                .take(max)
                .collect()
        }
    }
}

fn one_rep(
    layout: Layout,
    image: &Path,
    work: &Path,
    rep: usize,
    reads: usize,
) -> anyhow::Result<Sample> {
    let root = work.join(format!("{}-{rep}", layout.name()));
    let home = root.join(layout.name());
    let d = open(layout, &home)?;
    let store = ovlink_image::Store::open(&root)?;
    let t = Instant::now();
    let rep_import = ovlink_image::import(
        d.as_ref(),
        &store,
        image,
        Some("bench"),
        &ovlink_image::NoProgress,
    )
    .with_context(|| format!("cannot import {} ({})", image.display(), layout.name()))?;
    let import_s = secs(t.elapsed());
    let chain: Vec<String> = rep_import
        .layers
        .iter()
        .map(|l| l.chain_id.clone())
        .collect();
    let top = chain.last().context("the image has no layers")?.clone();
    let parents: BTreeMap<String, Option<String>> = chain
        .iter()
        .enumerate()
        .map(|(i, id)| (id.clone(), (i > 0).then(|| chain[i - 1].clone())))
        .collect();
    let r = ovlink_report::scan(&home, layout, &parents)?;
    let (hardlink_copy_s, hardlink_copy_entries) = if layout == Layout::Overlay {
        let src = home.join(&top).join("root");
        let dst = root.join("hardlink-copy");
        std::fs::create_dir(&dst)?;
        let s = ovlink_fs::at::open_dir(&src)?;
        let dfd = ovlink_fs::at::open_dir(&dst)?;
        let t = Instant::now();
        let stats = ovlink_fs::copy_tree(
            rustix::fd::AsFd::as_fd(&s),
            rustix::fd::AsFd::as_fd(&dfd),
            &src,
            &dst,
            ovlink_fs::CopyOptions::hardlink(),
        )?;
        let el = secs(t.elapsed());
        std::fs::remove_dir_all(&dst)?;
        (Some(el), Some(stats.dirs + stats.linked + stats.copied))
    } else {
        (None, None)
    };
    let files = deep_files(layout, &home, &chain, reads);
    let cid = "bench-container";
    d.create_read_write(cid, Some(&top), &CreateOpts::default())?;
    let t = Instant::now();
    let merged = d.get(cid, None)?;
    let mount_s = secs(t.elapsed());
    let t = Instant::now();
    let mut buf = Vec::new();
    for f in &files {
        buf.clear();
        let mut fh = std::fs::File::open(merged.join(f))
            .with_context(|| format!("cannot open {} in the container", f.display()))?;
        std::io::Read::read_to_end(&mut fh, &mut buf)?;
    }
    let read = t.elapsed();
    let t = Instant::now();
    d.put(cid)?;
    let unmount_s = secs(t.elapsed());
    let deep_read_layers = match layout {
        Layout::Overlay => 1,
        Layout::Overlay2 => chain.len(),
    };
    Ok(Sample {
        import_s,
        layer_apply_s: rep_import.layers.iter().map(|l| secs(l.duration)).collect(),
        hardlink_copy_s,
        hardlink_copy_entries,
        mount_s,
        unmount_s,
        deep_read_files: files.len(),
        deep_read_us: if files.is_empty() {
            0.0
        } else {
            read.as_secs_f64() * 1e6 / files.len() as f64
        },
        deep_read_layers,
        inodes: r.totals.distinct_inodes,
        bytes: r.totals.bytes_on_disk,
    })
}

fn ms(s: f64) -> String {
    format!("{:.1} ms", s * 1000.0)
}

fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 {
        format!("{:.2}x", a / b)
    } else {
        "-".into()
    }
}

/// The Markdown table of a run (overlay, overlay2, overlay/overlay2).
pub fn markdown(r: &BenchResult) -> String {
    let mut o = String::new();
    let get = |name: &str| {
        r.results
            .iter()
            .find(|s| s.layout == name)
            .map(|s| &s.median)
    };
    let (a, b) = (get("overlay"), get("overlay2"));
    o.push_str(&format!(
        "Image: {} ({} layers); {} repetitions, medians; work dir on {}, kernel {}, {} CPUs.\n\n",
        r.image, r.layers, r.reps, r.backing_fs, r.kernel, r.cpus
    ));
    o.push_str("| measure | overlay | overlay2 | overlay / overlay2 |\n|---|---:|---:|---:|\n");
    let row = |o: &mut String,
               name: &str,
               f: &dyn Fn(&Sample) -> Option<f64>,
               fmt: &dyn Fn(f64) -> String| {
        let x = a.and_then(f);
        let y = b.and_then(f);
        o.push_str(&format!(
            "| {name} | {} | {} | {} |\n",
            x.map(fmt).unwrap_or_else(|| "-".into()),
            y.map(fmt).unwrap_or_else(|| "-".into()),
            match (x, y) {
                (Some(x), Some(y)) => ratio(x, y),
                _ => "-".into(),
            }
        ));
    };
    row(&mut o, "import (whole image)", &|s| Some(s.import_s), &ms);
    let layers = a.or(b).map(|s| s.layer_apply_s.len()).unwrap_or(0);
    for i in 0..layers {
        row(
            &mut o,
            &format!("apply layer {}", i + 1),
            &|s| s.layer_apply_s.get(i).copied(),
            &ms,
        );
    }
    let entries = a.and_then(|s| s.hardlink_copy_entries).unwrap_or(0);
    row(
        &mut o,
        &format!(
            "hardlink copy of the top layer ({} entries)",
            thousands(entries)
        ),
        &|s| s.hardlink_copy_s,
        &ms,
    );
    row(&mut o, "container mount", &|s| Some(s.mount_s), &ms);
    row(&mut o, "container unmount", &|s| Some(s.unmount_s), &ms);
    let files = a.or(b).map(|s| s.deep_read_files).unwrap_or(0);
    row(
        &mut o,
        &format!("deep read: bottom-layer file through the container, per file ({files} files)"),
        &|s| Some(s.deep_read_us),
        &|v| format!("{v:.1} µs"),
    );
    row(
        &mut o,
        "lowerdirs the read goes through",
        &|s| Some(s.deep_read_layers as f64),
        &|v| format!("{v:.0}"),
    );
    row(
        &mut o,
        "distinct inodes in the home",
        &|s| Some(s.inodes as f64),
        &|v| thousands(v as u64),
    );
    row(&mut o, "bytes on disk", &|s| Some(s.bytes as f64), &|v| {
        human_bytes(v as u64)
    });
    o
}

pub fn run(a: BenchArgs) -> anyhow::Result<()> {
    if !rustix::process::geteuid().is_root() {
        bail!("the benchmark mounts overlayfs: run it as root");
    }
    if a.reps == 0 {
        bail!("--reps must be at least 1");
    }
    let base = a.dir.clone().unwrap_or_else(std::env::temp_dir);
    let tmp = tempfile::Builder::new()
        .prefix("ovlink-bench-")
        .tempdir_in(&base)
        .with_context(|| format!("cannot create a work directory in {}", base.display()))?;
    let work = Work { dir: Some(tmp) };
    let wd = work
        .dir
        .as_ref()
        .map(|d| d.path().to_path_buf())
        .context("no work directory")?;
    let (_, backing_fs) = ovlink_driver::checks::backing_fs(&wd)?;
    if backing_fs == "tmpfs" {
        bail!(
            "{} is on tmpfs, which counts every hardlink as an inode; use --dir on ext4 or xfs",
            wd.display()
        );
    }
    let (image, label) = match &a.image {
        Some(p) => (p.clone(), p.display().to_string()),
        None => {
            let spec = ovlink_image::GenSpec {
                entries: a.entries,
                layers: a.layers,
                ..ovlink_image::GenSpec::bench()
            };
            let p = wd.join("image.tar");
            let mut f = std::fs::File::create(&p)?;
            let sum = ovlink_image::generate(&spec, &mut f).context("cannot generate the image")?;
            f.flush()?;
            if let Some(w) = &a.write_image {
                std::fs::copy(&p, w).with_context(|| format!("cannot write {}", w.display()))?;
            }
            (
                p,
                format!(
                    "generated, {} entries in the base layer, {} docker-save tarball",
                    thousands(a.entries as u64),
                    human_bytes(sum.archive_size)
                ),
            )
        }
    };
    let layouts: Vec<Layout> = match a.only {
        Some(crate::cli::DriverKind::Overlay) => vec![Layout::Overlay],
        Some(crate::cli::DriverKind::Overlay2) => vec![Layout::Overlay2],
        None => vec![Layout::Overlay, Layout::Overlay2],
    };
    let mut samples: BTreeMap<&'static str, Vec<Sample>> = BTreeMap::new();
    for rep in 0..a.reps {
        for &l in &layouts {
            eprintln!("bench: {} repetition {}/{} …", l.name(), rep + 1, a.reps);
            let s = one_rep(l, &image, &wd, rep, a.reads)?;
            samples.entry(l.name()).or_default().push(s);
            // Keep the disk from filling up over repetitions.
            let root = wd.join(format!("{}-{rep}", l.name()));
            for m in ovlink_driver::mount::mounts_under(&root) {
                ovlink_driver::mount::unmount(&m)?;
            }
            std::fs::remove_dir_all(&root)?;
        }
    }
    let mut layers_seen = HashSet::new();
    let results: Vec<Summary> = layouts
        .iter()
        .map(|l| {
            let v = samples.remove(l.name()).unwrap_or_default();
            layers_seen.insert(v.first().map(|s| s.layer_apply_s.len()).unwrap_or(0));
            Summary {
                layout: l.name(),
                median: medians(&v),
                samples: v,
            }
        })
        .collect();
    let uts = rustix::system::uname();
    let result = BenchResult {
        image: label,
        layers: layers_seen.into_iter().max().unwrap_or(0),
        reps: a.reps,
        backing_fs,
        kernel: uts.release().to_string_lossy().into_owned(),
        cpus: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        results,
    };
    let md = markdown(&result);
    print!("{md}");
    if let Some(p) = &a.markdown {
        std::fs::write(p, &md).with_context(|| format!("cannot write {}", p.display()))?;
    }
    if let Some(p) = &a.json {
        let f =
            std::fs::File::create(p).with_context(|| format!("cannot write {}", p.display()))?;
        serde_json::to_writer_pretty(f, &result)?;
    }
    drop(work);
    Ok(())
}
