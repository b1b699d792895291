//! `ovlink bench` as a library: the legacy `overlay` layout and `overlay2` side by side on the
//! same work, in fresh homes below one private work directory, every figure a median over the
//! repetitions with the ratio overlay / overlay2.
//!
//! Scenarios ([`run`] runs them in this order, each on both layouts, interleaved):
//! [`import`] (import, per-layer apply, the hardlink copy, mount and unmount cycles, a deep
//! read, inodes and bytes), [`copy_up`] (first and second write to lower files of several
//! sizes; chmod, chown, setxattr), [`page_cache`] (N containers reading the same lower files,
//! against full per-container copies), [`lifecycle`] (commit of K changed files, removal of an
//! image, container start) and [`deep`] (images of 20, 60, 120 layers).
//!
//! This crate owns the scenarios and their typed results. It never prints (it narrates through
//! a callback), never reads the environment or the command line, and never touches anything
//! outside the work directory it made (every mount below it is undone on the way out, also on
//! error). Results carry no judgement: consistency checks belong to the tests.
#![forbid(unsafe_code)]

pub mod copy_up;
pub mod deep;
pub mod error;
pub mod import;
pub mod lifecycle;
pub mod markdown;
pub mod page_cache;
pub mod svg;
mod util;

pub use error::{BenchError, Result};
pub use ovlink_report::Layout;

use serde::Serialize;
use std::path::{Path, PathBuf};

/// What to run.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// A `docker save`/OCI tarball for the import scenario instead of the generated image.
    pub image: Option<PathBuf>,
    /// Entries of the generated image's base layer.
    pub entries: usize,
    /// Layers of the generated image.
    pub layers: usize,
    /// Repetitions per layout (medians are reported).
    pub reps: usize,
    /// Most files read through the container for the deep read.
    pub reads: usize,
    /// Mount+unmount cycles per repetition.
    pub mount_cycles: usize,
    /// Where the work directory is made (not tmpfs): the fresh filesystem's image when
    /// [`BenchConfig::fresh_fs`] is set, else the work itself.
    pub dir: PathBuf,
    /// Measure on a fresh loop-mounted filesystem made for this run (the default), so that
    /// the figures repeat: on a long-used filesystem the same `tar -x` took 0.23 s or 5 s
    /// depending only on the directory it ran in. `None`: in [`BenchConfig::dir`] as it is.
    pub fresh_fs: Option<FreshFs>,
    /// The layouts to measure.
    pub layouts: Vec<Layout>,
    /// The legacy layout's `--symlinks` mode.
    pub symlinks: ovlink_fs::Specials,
    /// How new layers are made durable (`None`: the backing filesystem's default).
    pub sync: Option<ovlink_driver::SyncMode>,
    /// When a removed layer's tree is deleted (legacy layout).
    pub reclaim: ovlink_driver::ReclaimMode,
    /// Which diff the commits make.
    pub diff: ovlink_driver::DiffMode,
    /// Copy-up file sizes, bytes.
    pub copy_up_sizes: Vec<u64>,
    /// Containers of the page-cache scenario.
    pub containers: usize,
    /// Lower files of the page-cache scenario and the size of each, bytes.
    pub page_cache_files: (usize, u64),
    /// Files changed before the commit.
    pub commit_files: usize,
    /// Layer counts of the deep-stack images.
    pub deep_layers: Vec<usize>,
    /// Entries of the deep-stack images' base layer.
    pub deep_entries: usize,
    /// Also write the generated image here.
    pub write_image: Option<PathBuf>,
}

/// A filesystem made for one benchmark run: a sparse image of `size_mib` MiB, `mkfs`ed with
/// its inode tables written at once (no lazy initialisation in the background while the
/// figures are taken) and loop-mounted.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct FreshFs {
    /// ext4 (the default) or xfs.
    #[serde(serialize_with = "fs_kind_name")]
    pub kind: ovlink_fs::loopfs::FsKind,
    /// Size of the image, MiB (sparse: only what is written takes space).
    pub size_mib: u64,
}

impl Default for FreshFs {
    fn default() -> Self {
        FreshFs {
            kind: ovlink_fs::loopfs::FsKind::Ext4,
            size_mib: 16 << 10,
        }
    }
}

impl FreshFs {
    /// mkfs's flags: unattended, and nothing left to initialise after it.
    pub fn mkfs_args(&self) -> &'static [&'static str] {
        match self.kind {
            ovlink_fs::loopfs::FsKind::Ext4 => {
                &["-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0"]
            }
            ovlink_fs::loopfs::FsKind::Xfs | ovlink_fs::loopfs::FsKind::Btrfs => &["-q", "-f"],
        }
    }
}

fn fs_kind_name<S: serde::Serializer>(
    k: &ovlink_fs::loopfs::FsKind,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(k.program().trim_start_matches("mkfs."))
}

impl BenchConfig {
    /// The defaults of `ovlink bench` (under 10 minutes on 2 cores).
    pub fn full(dir: PathBuf) -> Self {
        BenchConfig {
            image: None,
            entries: 10_000,
            layers: 5,
            reps: 3,
            reads: 2000,
            mount_cycles: 5,
            dir,
            fresh_fs: Some(FreshFs::default()),
            layouts: vec![Layout::Overlay, Layout::Overlay2],
            symlinks: ovlink_fs::Specials::Link,
            sync: None,
            reclaim: Default::default(),
            diff: Default::default(),
            copy_up_sizes: vec![4 << 10, 1 << 20, 64 << 20, 1 << 30],
            containers: 10,
            page_cache_files: (8, 4 << 20),
            commit_files: 100,
            deep_layers: vec![20, 60, 120],
            deep_entries: 2000,
            write_image: None,
        }
    }

    /// `--quick`: the same figures on smaller work.
    pub fn quick(dir: PathBuf) -> Self {
        BenchConfig {
            entries: 2000,
            reps: 1,
            reads: 500,
            mount_cycles: 3,
            copy_up_sizes: vec![4 << 10, 1 << 20, 64 << 20],
            containers: 4,
            page_cache_files: (4, 1 << 20),
            commit_files: 20,
            deep_layers: vec![20],
            deep_entries: 300,
            ..BenchConfig::full(dir)
        }
    }
}

/// A figure measured on both layouts.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Pair {
    /// Legacy layout.
    pub overlay: Option<f64>,
    /// overlay2.
    pub overlay2: Option<f64>,
}

impl Pair {
    /// overlay / overlay2, when both exist and overlay2 is not 0.
    pub fn ratio(&self) -> Option<f64> {
        match (self.overlay, self.overlay2) {
            (Some(a), Some(b)) if b > 0.0 => Some(a / b),
            _ => None,
        }
    }
    /// The value of `layout`.
    pub fn get(&self, layout: Layout) -> Option<f64> {
        match layout {
            Layout::Overlay => self.overlay,
            Layout::Overlay2 => self.overlay2,
        }
    }
    /// Sets the value of `layout`.
    pub fn set(&mut self, layout: Layout, v: Option<f64>) {
        match layout {
            Layout::Overlay => self.overlay = v,
            Layout::Overlay2 => self.overlay2 = v,
        }
    }
}

/// One row of the summary: a figure, its unit and both layouts' medians.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// Scenario (`import`, `copy-up`, …).
    pub group: String,
    /// What was measured.
    pub name: String,
    /// `s`, `us`, `bytes`, `pages`, `inodes`, `count`.
    pub unit: &'static str,
    /// The medians.
    pub value: Pair,
    /// overlay / overlay2.
    pub ratio: Option<f64>,
}

/// The whole run.
#[derive(Debug, Clone, Serialize)]
pub struct BenchResult {
    /// The import scenario's image.
    pub image: String,
    /// Repetitions.
    pub reps: usize,
    /// The legacy layout's `--symlinks` mode.
    pub symlinks: &'static str,
    /// Filesystem of the work directory.
    pub backing_fs: String,
    /// The fresh filesystem the run made, if it made one.
    pub fresh_fs: Option<FreshFs>,
    /// Kernel release.
    pub kernel: String,
    /// CPUs.
    pub cpus: usize,
    /// Load average (1 min) at the start and the end: the machine may be shared.
    pub load_average: (f64, f64),
    /// Wall time of the whole run, seconds.
    pub wall_s: f64,
    /// Import scenario.
    pub import: import::ImportResult,
    /// Copy-up scenario.
    pub copy_up: copy_up::CopyUpResult,
    /// Page-cache scenario.
    pub page_cache: page_cache::PageCacheResult,
    /// Commit, removal, start.
    pub lifecycle: lifecycle::LifecycleResult,
    /// Deep stacks.
    pub deep: deep::DeepResult,
    /// Every figure as a row (what the table and the chart show).
    pub rows: Vec<Row>,
}

/// Narration: one line at a time (progress, what is measured now).
pub type Narrator<'a> = &'a mut dyn FnMut(&str);

/// Runs every scenario of `cfg` and returns the results.
pub fn run(cfg: &BenchConfig, say: Narrator<'_>) -> Result<BenchResult> {
    if !rustix::process::geteuid().is_root() {
        return Err(BenchError::NotRoot);
    }
    if cfg.reps == 0 || cfg.layouts.is_empty() {
        return Err(BenchError::Config(
            "--reps must be at least 1 and at least one layout chosen".into(),
        ));
    }
    let started = std::time::Instant::now();
    let load0 = util::load_average();
    if let Some(f) = cfg.fresh_fs {
        say(&format!(
            "work: a fresh {} filesystem ({} MiB, sparse) loop-mounted in {}",
            f.kind.program().trim_start_matches("mkfs."),
            f.size_mib,
            cfg.dir.display()
        ));
    }
    let work = util::Work::new(&cfg.dir, cfg.fresh_fs)?;
    let wd = work.path().to_path_buf();
    let (_, backing_fs) = ovlink_driver::checks::backing_fs(&wd)?;
    if backing_fs == "tmpfs" {
        return Err(BenchError::Config(format!(
            "{} is on tmpfs, which counts every hardlink as an inode; use --dir on ext4 or xfs",
            wd.display()
        )));
    }
    say("import: import, apply, hardlink copy, mount/unmount cycles, deep read, inodes");
    let import = import::run(cfg, &wd, say)?;
    say("copy-up: first and second write, chmod, chown, setxattr");
    let copy_up = copy_up::run(cfg, &wd, say)?;
    say("page cache: containers reading the same lower files, against full copies");
    let page_cache = page_cache::run(cfg, &wd, say)?;
    say("lifecycle: commit, image removal, container start");
    let lifecycle = lifecycle::run(cfg, &wd, say)?;
    say("deep stacks");
    let deep = deep::run(cfg, &wd, say)?;
    let mut rows = Vec::new();
    import.rows(&mut rows);
    copy_up.rows(&mut rows);
    page_cache.rows(&mut rows);
    lifecycle.rows(&mut rows);
    deep.rows(&mut rows);
    let uts = rustix::system::uname();
    drop(work);
    Ok(BenchResult {
        image: import.image.clone(),
        reps: cfg.reps,
        symlinks: cfg.symlinks.name(),
        backing_fs,
        fresh_fs: cfg.fresh_fs,
        kernel: uts.release().to_string_lossy().into_owned(),
        cpus: std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1),
        load_average: (load0, util::load_average()),
        wall_s: started.elapsed().as_secs_f64(),
        import,
        copy_up,
        page_cache,
        lifecycle,
        deep,
        rows,
    })
}

/// Adds a row.
pub(crate) fn row(rows: &mut Vec<Row>, group: &str, name: String, unit: &'static str, v: Pair) {
    rows.push(Row {
        group: group.to_string(),
        name,
        unit,
        ratio: v.ratio(),
        value: v,
    });
}

/// Opens a fresh driver of `layout` at `home` with the settings of `c`.
pub fn open(
    layout: Layout,
    home: &Path,
    c: &BenchConfig,
) -> Result<Box<dyn ovlink_driver::Driver>> {
    let cfg = ovlink_driver::InitConfig {
        home: home.to_path_buf(),
        symlinks: (layout == Layout::Overlay).then_some(c.symlinks),
        sync: c.sync,
        reclaim: c.reclaim,
        diff: c.diff,
        ..Default::default()
    };
    Ok(ovlink_layouts::open(layout, &cfg)?)
}
