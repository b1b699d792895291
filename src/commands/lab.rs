//! `ovlink lab <name>` and `ovlink demo`: argument parsing and printing only. The scenarios
//! live in the `ovlink-lab` crate, which narrates through [`Printer`] and returns typed
//! observations (printed as JSON with `--json`; a Markdown worksheet with `--markdown`).

use crate::cli::{Common, LabCmd};
use anyhow::{bail, Context as _};
use ovlink_lab::{Event, LabConfig, Narrator, Worksheet};
use serde::Serialize;
use std::io::Write as _;
use std::path::Path;

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
