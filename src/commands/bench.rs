//! `ovlink bench`: parses the flags into an [`ovlink_bench::BenchConfig`], runs the scenarios
//! of `ovlink-bench` (the legacy layout and overlay2 side by side, medians and ratios) and
//! prints the Markdown table; `--json` and `--svg` write every figure and the chart.

use super::Ctx;
use crate::cli::BenchArgs;
use anyhow::{bail, Context as _};
use ovlink_bench::BenchConfig;
use std::path::Path;

/// Runs `ovlink bench` with the global settings of `ctx`. `root`: the `--root` given, if
/// any (the work directory); `driver_given`: `--driver` was given (the only layout to
/// measure).
pub fn run(
    ctx: &Ctx,
    a: BenchArgs,
    root: Option<&Path>,
    driver_given: bool,
    symlinks: Option<ovlink_fs::Specials>,
) -> anyhow::Result<()> {
    let driver = driver_given.then_some(ctx.kind);
    if let (Some(d), Some(o)) = (driver, a.only) {
        if d != o {
            bail!("--driver {d} and --only {o} disagree");
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
    cfg.fresh_fs = a.fs.0.map(|kind| ovlink_bench::FreshFs {
        kind,
        ..Default::default()
    });
    cfg.image = a.image.clone();
    cfg.layers = a.layers;
    cfg.write_image = a.write_image.clone();
    cfg.symlinks = symlinks.unwrap_or_default();
    let s = ctx.init_config(Default::default());
    (cfg.sync, cfg.reclaim, cfg.diff) = (s.sync, s.reclaim, s.diff);
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
        Some(l) => vec![l],
        None => ovlink_driver::Layout::ALL.to_vec(),
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
