//! `ovlink lab <name>` and `ovlink demo`: argument parsing and printing only. The scenarios
//! live in the `ovlink-lab` crate, which narrates through [`Printer`] (each event printed as
//! its `Display` text) and returns typed observations (JSON with `--json`; a Markdown
//! worksheet with `--markdown`).

use super::Ctx;
use crate::cli::{Common, DemoArgs, LabCmd};
use anyhow::Context as _;
use ovlink_lab::{Event, Lab, LabConfig, Narrator, Observations, Worksheet};
use serde::Serialize;
use std::io::Write as _;
use std::path::Path;

/// Prints the narration: stdout normally, stderr under `--json`; records it for a worksheet.
struct Printer {
    json: bool,
    sheet: Worksheet,
}

impl Printer {
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
        for l in e.to_string().lines() {
            self.line(l);
        }
    }
}

/// Runs a scenario in a scratch directory inside `--root` when it was given (so a teacher can
/// run it on the filesystem under discussion), else in the temporary directory; writes the
/// worksheet and prints the observations as `c` asks.
fn narrate<T: Serialize>(
    root: Option<&Path>,
    c: &Common,
    name: &str,
    scenario: impl FnOnce(&LabConfig, &Printer) -> ovlink_lab::Result<T>,
) -> anyhow::Result<(T, Printer)> {
    let p = Printer {
        json: c.json,
        sheet: Worksheet::new(),
    };
    let cfg = LabConfig {
        base: root.map(Path::to_path_buf),
        keep: c.keep,
    };
    let r = scenario(&cfg, &p)?;
    if let Some(f) = &c.markdown {
        std::fs::write(f, p.sheet.markdown(&ovlink_lab::kernel_release()))
            .with_context(|| format!("cannot write the worksheet {}", f.display()))?;
        p.line(&format!("worksheet for {name} written to {}", f.display()));
    }
    if c.json {
        crate::output::json(&r)?;
    }
    Ok((r, p))
}

/// Runs `ovlink lab …`. `root`: the `--root` given, if any.
pub fn run(
    root: Option<&Path>,
    c: LabCmd,
    symlinks: Option<ovlink_fs::Specials>,
) -> anyhow::Result<()> {
    use ovlink_lab::{copy_up, inodes, layers, page_cache};
    let mut svg = None;
    let (lab, common) = match c {
        LabCmd::Inodes(a) => {
            svg = a.svg;
            let cfg = inodes::InodesConfig {
                size_mib: a.size,
                inodes: a.inodes,
                dirs: a.dirs,
                max_layers: a.max_layers,
                no_links: a.no_links,
                svg: svg.is_some(),
                symlinks: symlinks.unwrap_or_default(),
            };
            (Lab::Inodes(cfg), a.common)
        }
        LabCmd::CopyUp(a) => {
            let mut cfg = copy_up::CopyUpConfig::default();
            cfg.size_mib = a.size.unwrap_or(cfg.size_mib);
            (Lab::CopyUp(cfg), a.common)
        }
        LabCmd::PageCache(a) => {
            let mut cfg = page_cache::PageCacheConfig::default();
            cfg.size_mib = a.size.unwrap_or(cfg.size_mib);
            (Lab::PageCache(cfg), a.common)
        }
        LabCmd::Layers(a) => {
            let cfg = layers::LayersConfig {
                layers: a.layers,
                dirs: a.dirs,
            };
            (Lab::Layers(cfg), a.common)
        }
        LabCmd::Whiteouts(c) => (Lab::Whiteouts, c),
        LabCmd::Rename(c) => (Lab::Rename, c),
        LabCmd::Workdir(c) => (Lab::Workdir, c),
        LabCmd::Lower(c) => (Lab::Lower, c),
        LabCmd::Xfs(c) => (Lab::Xfs, c),
    };
    let name = format!("lab {}", lab.name());
    let (r, p) = narrate(root, &common, &name, |cfg, p| lab.run(cfg, p))?;
    if let (Some(path), Observations::Inodes(ovlink_lab::inodes::LabResult { svg: Some(s), .. })) =
        (&svg, &r)
    {
        std::fs::write(path, s).with_context(|| format!("cannot write {}", path.display()))?;
        p.line(&format!("chart written to {}", path.display()));
    }
    Ok(())
}

/// Runs `ovlink demo` on the `--driver` layout with the `--sync`, `--reclaim` and
/// `--diff-mode` settings. `root`: the `--root` given, if any.
pub fn demo(ctx: &Ctx, root: Option<&Path>, a: DemoArgs) -> anyhow::Result<()> {
    let s = ctx.init_config(Default::default());
    let cfg = ovlink_lab::demo::DemoConfig {
        layout: ctx.kind,
        image: a.image,
        sync: s.sync,
        reclaim: s.reclaim,
        diff: s.diff,
        symlinks: s.symlinks,
    };
    narrate(root, &a.common, "demo", |lab, p| {
        ovlink_lab::demo::run(lab, &cfg, p)
    })
    .map(drop)
}
