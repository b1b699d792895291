//! `ovlink lab <name>` and `ovlink demo`: argument parsing and printing only. The scenarios
//! live in the `ovlink-lab` crate, which narrates through [`Printer`] and returns typed
//! observations (printed as JSON with `--json`; a Markdown worksheet with `--markdown`).

use anyhow::{bail, Context as _};
use ovlink_lab::{Event, LabConfig, Narrator, Worksheet};
use serde::Serialize;
use std::io::Write as _;
use std::path::{Path, PathBuf};

/// `ovlink lab …`
#[derive(Debug, clap::Subcommand)]
pub enum LabCmd {
    /// Run a small ext4 filesystem out of inodes with image layers (legacy overlay, then
    /// overlay2), then push one file to the hardlink limit.
    Inodes(InodesArgs),
    /// The first write to a lower file, even chmod, copies the whole file up (sizes,
    /// blocks, timing); metacopy=on copies only metadata.
    CopyUp(SizedArgs),
    /// Deletes: a whiteout (0/0 char device), copying it (ENXIO), rm -rf of a lower dir,
    /// the re-created opaque dir, shared whiteout inodes, the fresh upper's uuid.
    Whiteouts(Common),
    /// rename(2) of a lower dir: EXDEV with redirect_dir=off, success with redirect_dir=on,
    /// and what mv does instead (copy and delete).
    Rename(Common),
    /// Two containers read one lower file: its pages are cached once (fincore figures).
    PageCache(SizedArgs),
    /// One image in the legacy overlay and in overlay2 side by side: lowerdirs, inodes, a
    /// deep read.
    Layers(LayersArgs),
    /// The workdir's role, and the mount error when it is not on the upper's filesystem.
    Workdir(Common),
    /// Deleted lower files still use space; editing the lower dir under a mount.
    Lower(Common),
    /// d_type on xfs: an ftype=0 (V4) filesystem against today's kernel and mkfs.xfs.
    Xfs(Common),
}

/// What every lab takes.
#[derive(Debug, Clone, clap::Args)]
pub struct Common {
    /// Print the observations as JSON on stdout (the narration goes to stderr).
    #[arg(long)]
    pub json: bool,
    /// Also write the lab as a student worksheet (commands, observations, questions).
    #[arg(long, value_name = "FILE")]
    pub markdown: Option<PathBuf>,
    /// Keep the lab's directory (and its mounts) and print where it is.
    #[arg(long)]
    pub keep: bool,
}

/// A lab with one big file.
#[derive(Debug, Clone, clap::Args)]
pub struct SizedArgs {
    /// Size of the big lower file, in MiB.
    #[arg(long, value_name = "MIB")]
    pub size: Option<u64>,
    #[command(flatten)]
    pub common: Common,
}

/// Arguments of `ovlink lab layers`.
#[derive(Debug, Clone, clap::Args)]
pub struct LayersArgs {
    /// Layers of the image.
    #[arg(long, default_value_t = 8)]
    pub layers: usize,
    /// Leaf directories of its base layer (one file each).
    #[arg(long, default_value_t = 300)]
    pub dirs: u32,
    #[command(flatten)]
    pub common: Common,
}

/// Arguments of `ovlink lab inodes`.
#[derive(Debug, Clone, clap::Args)]
pub struct InodesArgs {
    /// Size of the ext4 image file, in MiB.
    #[arg(long, default_value_t = 64, value_name = "MIB")]
    pub size: u64,
    /// Inodes of the ext4 filesystem (mkfs.ext4 -N; ext4 rounds it up a little).
    #[arg(long, default_value_t = 2048)]
    pub inodes: u64,
    /// Directories in the generated base image layer (every legacy layer re-creates them).
    #[arg(long, default_value_t = 100)]
    pub dirs: u32,
    /// Stop a layout after this many layers even if the filesystem is not full.
    #[arg(long, default_value_t = 1000)]
    pub max_layers: u32,
    /// Skip part 2 (the hardlink limit).
    #[arg(long)]
    pub no_links: bool,
    /// Also write the chart (inodes used per layer, both layouts, capacity line) as SVG.
    #[arg(long, value_name = "FILE")]
    pub svg: Option<PathBuf>,
    #[command(flatten)]
    pub common: Common,
}

/// Prints the narration: stdout normally, stderr under `--json`; records it for a worksheet.
pub struct Printer {
    json: bool,
    sheet: Worksheet,
}

impl Printer {
    /// A printer for stdout (`json`: for stderr).
    pub fn new(json: bool) -> Printer {
        Printer {
            json,
            sheet: Worksheet::new(),
        }
    }

    /// What was narrated, as a Markdown worksheet.
    pub fn worksheet(&self, kernel: &str) -> String {
        self.sheet.markdown(kernel)
    }

    fn line(&self, s: &str) {
        if self.json {
            eprintln!("{s}");
        } else {
            println!("{s}");
            let _ = std::io::stdout().flush();
        }
    }
}

impl Narrator for Printer {
    fn event(&self, e: &Event) {
        self.sheet.event(e);
        match e {
            Event::Title { text } => self.line(text),
            Event::Step { text } => {
                self.line("");
                self.line(&format!("== {text}"));
            }
            Event::Command { text } => self.line(&format!("$ {text}")),
            Event::Output { text } => {
                for l in text.lines() {
                    self.line(&format!("   {l}"));
                }
            }
            Event::Observed { text } => self.line(&format!("   -> {text}")),
            Event::Article { claim, kernel } => {
                self.line(&format!("   ! the article says: {claim}"));
                self.line(&format!("     this kernel: {kernel}"));
            }
            Event::Question { text } => self.line(&format!("   ? for students: {text}")),
            Event::Text { text } => self.line(&format!("   {text}")),
        }
    }
}

/// Where a scenario makes its scratch directory: inside `--root` when it was given (so a
/// teacher can run it on the filesystem under discussion), else the temporary directory.
pub fn config(root: Option<&Path>, keep: bool) -> LabConfig {
    LabConfig {
        base: root.map(Path::to_path_buf),
        keep,
    }
}

fn finish<T: Serialize>(p: &Printer, c: &Common, name: &str, r: &T) -> anyhow::Result<()> {
    if let Some(f) = &c.markdown {
        std::fs::write(f, p.worksheet(&ovlink_lab::kernel_release()))
            .with_context(|| format!("cannot write the worksheet {}", f.display()))?;
        p.line(&format!(
            "worksheet for lab {name} written to {}",
            f.display()
        ));
    }
    if c.json {
        crate::output::json(r)?;
    }
    Ok(())
}

/// Runs `ovlink lab …`. `root`: the `--root` given on the command line, if any.
pub fn run(
    root: Option<&Path>,
    driver_given: bool,
    c: LabCmd,
    symlinks: Option<ovlink_fs::Specials>,
) -> anyhow::Result<()> {
    if driver_given {
        bail!(
            "--driver does not apply to the labs: `lab inodes` and `lab layers` run both layouts \
             side by side, the others use plain overlay mounts (try `ovlink --driver overlay2 demo`)"
        );
    }
    match c {
        LabCmd::Inodes(a) => {
            let p = Printer::new(a.common.json);
            let cfg = ovlink_lab::inodes::InodesConfig {
                size_mib: a.size,
                inodes: a.inodes,
                dirs: a.dirs,
                max_layers: a.max_layers,
                no_links: a.no_links,
                svg: a.svg.is_some(),
                symlinks: symlinks.unwrap_or_default(),
            };
            let r = ovlink_lab::inodes::run(&config(root, a.common.keep), &cfg, &p)?;
            if let (Some(path), Some(svg)) = (&a.svg, &r.svg) {
                std::fs::write(path, svg)
                    .with_context(|| format!("cannot write {}", path.display()))?;
                p.line(&format!("chart written to {}", path.display()));
            }
            finish(&p, &a.common, "inodes", &r)
        }
        LabCmd::CopyUp(a) => {
            let p = Printer::new(a.common.json);
            let mut cfg = ovlink_lab::copy_up::CopyUpConfig::default();
            if let Some(s) = a.size {
                cfg.size_mib = s.max(1);
            }
            let r = ovlink_lab::copy_up::run(&config(root, a.common.keep), &cfg, &p)?;
            finish(&p, &a.common, "copy-up", &r)
        }
        LabCmd::Whiteouts(c) => {
            let p = Printer::new(c.json);
            let r = ovlink_lab::whiteouts::run(&config(root, c.keep), &p)?;
            finish(&p, &c, "whiteouts", &r)
        }
        LabCmd::Rename(c) => {
            let p = Printer::new(c.json);
            let r = ovlink_lab::rename::run(&config(root, c.keep), &p)?;
            finish(&p, &c, "rename", &r)
        }
        LabCmd::PageCache(a) => {
            let p = Printer::new(a.common.json);
            let mut cfg = ovlink_lab::page_cache::PageCacheConfig::default();
            if let Some(s) = a.size {
                cfg.size_mib = s.max(1);
            }
            let r = ovlink_lab::page_cache::run(&config(root, a.common.keep), &cfg, &p)?;
            finish(&p, &a.common, "page-cache", &r)
        }
        LabCmd::Layers(a) => {
            let p = Printer::new(a.common.json);
            let cfg = ovlink_lab::layers::LayersConfig {
                layers: a.layers,
                dirs: a.dirs,
            };
            let r = ovlink_lab::layers::run(&config(root, a.common.keep), &cfg, &p)?;
            finish(&p, &a.common, "layers", &r)
        }
        LabCmd::Workdir(c) => {
            let p = Printer::new(c.json);
            let r = ovlink_lab::workdir::run(&config(root, c.keep), &p)?;
            finish(&p, &c, "workdir", &r)
        }
        LabCmd::Lower(c) => {
            let p = Printer::new(c.json);
            let r = ovlink_lab::lower::run(&config(root, c.keep), &p)?;
            finish(&p, &c, "lower", &r)
        }
        LabCmd::Xfs(c) => {
            let p = Printer::new(c.json);
            let r = ovlink_lab::xfs::run(&config(root, c.keep), &p)?;
            finish(&p, &c, "xfs", &r)
        }
    }
}
