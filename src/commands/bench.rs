//! `ovlink bench`: parses the flags into an [`ovlink_bench::BenchConfig`], runs the scenarios
//! of `ovlink-bench` (the legacy layout and overlay2 side by side, medians and ratios) and
//! prints the Markdown table; `--json` and `--svg` write every figure and the chart.

use crate::cli::{BenchArgs, DriverKind};
use anyhow::{bail, Context as _};
use ovlink_bench::{BenchConfig, Layout};
use std::path::Path;

/// Runs `ovlink bench`. `root` and `driver`: the global `--root` and `--driver`, when given
/// (the work directory, and the only layout to measure).
pub fn run(
    a: BenchArgs,
    root: Option<&Path>,
    driver: Option<DriverKind>,
    symlinks: Option<ovlink_fs::Specials>,
) -> anyhow::Result<()> {
    if let (Some(d), Some(o)) = (driver, a.only) {
        if d != o {
            bail!("--driver {} and --only {} disagree", d.name(), o.name());
        }
    }
    let dir = (a.dir.clone())
        .or_else(|| root.map(Path::to_path_buf))
        .unwrap_or_else(std::env::temp_dir);
    let mut cfg = if a.quick {
        BenchConfig::quick(dir)
    } else {
        BenchConfig::full(dir)
    };
    cfg.image = a.image.clone();
    cfg.layers = a.layers;
    cfg.write_image = a.write_image.clone();
    cfg.symlinks = symlinks.unwrap_or_default();
    macro_rules! set {
        ($($f:ident),*) => { $( if let Some(v) = a.$f.clone() { cfg.$f = v; } )* };
    }
    set!(
        entries,
        reps,
        reads,
        copy_up_sizes,
        containers,
        commit_files,
        deep_layers
    );
    cfg.layouts = match a.only.or(driver) {
        Some(DriverKind::Overlay) => vec![Layout::Overlay],
        Some(DriverKind::Overlay2) => vec![Layout::Overlay2],
        None => vec![Layout::Overlay, Layout::Overlay2],
    };
    let r = ovlink_bench::run(&cfg, &mut |s| eprintln!("bench: {s}"))?;
    let md = ovlink_bench::markdown::table(&r);
    print!("{md}");
    if let Some(p) = &a.markdown {
        std::fs::write(p, &md).with_context(|| format!("cannot write {}", p.display()))?;
    }
    if let Some(p) = &a.json {
        let f =
            std::fs::File::create(p).with_context(|| format!("cannot write {}", p.display()))?;
        serde_json::to_writer_pretty(f, &r)?;
    }
    if let Some(p) = &a.svg {
        std::fs::write(p, ovlink_bench::svg::render(&r))
            .with_context(|| format!("cannot write {}", p.display()))?;
    }
    Ok(())
}
