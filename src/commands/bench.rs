//! `ovlink bench`: parses the flags into an [`ovlink_bench::BenchConfig`], runs the scenarios
//! of `ovlink-bench` (the legacy layout and overlay2 side by side, medians and ratios) and
//! prints the Markdown table; `--json` and `--svg` write every figure and the chart.

use anyhow::Context as _;
use ovlink_bench::{svg::human, BenchConfig, BenchResult, Layout};
use std::path::PathBuf;

/// Arguments of `ovlink bench`.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Smaller work for the same figures (1 repetition, copy-up up to 64 MiB, 4 containers,
    /// a 20-layer deep stack): a minute or two instead of several.
    #[arg(long)]
    pub quick: bool,
    /// A `docker save` (or OCI) tarball for the import figures instead of the generated image.
    #[arg(long, value_name = "FILE")]
    pub image: Option<PathBuf>,
    /// Entries of the generated image's base layer [default: 10000, --quick 2000].
    #[arg(long)]
    pub entries: Option<usize>,
    /// Layers of the generated image.
    #[arg(long, default_value_t = 5)]
    pub layers: usize,
    /// Repetitions per layout (the tables show medians) [default: 3, --quick 1].
    #[arg(long)]
    pub reps: Option<usize>,
    /// Most files read through the container for the deep-read figures.
    #[arg(long)]
    pub reads: Option<usize>,
    /// Copy-up file sizes, comma-separated, with K, M or G [default: 4K,1M,64M,1G;
    /// --quick 4K,1M,64M].
    #[arg(long, value_name = "SIZES", value_delimiter = ',', value_parser = parse_size)]
    pub copy_up_sizes: Option<Vec<u64>>,
    /// Containers reading the same lower files in the page-cache figures [default: 10].
    #[arg(long)]
    pub containers: Option<usize>,
    /// Files changed in the container before the commit [default: 100].
    #[arg(long)]
    pub commit_files: Option<usize>,
    /// Layer counts of the deep-stack images [default: 20,60,120; --quick 20].
    #[arg(long, value_delimiter = ',')]
    pub deep_layers: Option<Vec<usize>>,
    /// Where to work (it must not be tmpfs; default: the system's temporary directory).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Write the Markdown table to FILE (it is always printed).
    #[arg(long, value_name = "FILE")]
    pub markdown: Option<PathBuf>,
    /// Write every figure (and every repetition) as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Write the chart (ratio per figure, log scale) as SVG to FILE.
    #[arg(long, value_name = "FILE")]
    pub svg: Option<PathBuf>,
    /// Also save the generated image as FILE (for scripts/bench.sh's `cp -al` baseline).
    #[arg(long, value_name = "FILE")]
    pub write_image: Option<PathBuf>,
    /// Only overlay or only overlay2 (default: both).
    #[arg(long, value_enum)]
    pub only: Option<crate::cli::DriverKind>,
}

fn parse_size(s: &str) -> Result<u64, String> {
    let (n, mul) = match s.trim().chars().last() {
        Some('K' | 'k') => (&s[..s.len() - 1], 1u64 << 10),
        Some('M' | 'm') => (&s[..s.len() - 1], 1 << 20),
        Some('G' | 'g') => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    n.trim()
        .parse::<u64>()
        .map(|v| v * mul)
        .map_err(|_| format!("{s:?} is not a size (a number with K, M or G)"))
}

/// The Markdown table of a run.
pub fn markdown(r: &BenchResult) -> String {
    let mut o = format!(
        "Image: {}; {} repetitions, medians; work dir on {}, kernel {}, {} CPUs; legacy \
         layout --symlinks {}; load average {:.1} at the start, {:.1} at the end; {:.0} s.\n\n",
        r.image,
        r.reps,
        r.backing_fs,
        r.kernel,
        r.cpus,
        r.symlinks,
        r.load_average.0,
        r.load_average.1,
        r.wall_s
    );
    o.push_str("| scenario | measure | overlay | overlay2 | overlay / overlay2 |\n");
    o.push_str("|---|---|---:|---:|---:|\n");
    for row in &r.rows {
        let f = |v: Option<f64>| v.map_or("-".to_string(), |v| human(v, row.unit));
        o.push_str(&format!(
            "| {} | {} | {} | {} | {} |\n",
            row.group,
            row.name,
            f(row.value.overlay),
            f(row.value.overlay2),
            row.ratio.map_or("-".into(), |x| format!("{x:.2}x"))
        ));
    }
    for (name, f) in &r.lifecycle.layouts {
        if let Some(why) = &f.commit_unsupported {
            o.push_str(&format!("\n{name}: no commit figure: {why}.\n"));
        }
    }
    o
}

pub fn run(a: BenchArgs, symlinks: Option<ovlink_fs::Specials>) -> anyhow::Result<()> {
    let dir = a.dir.clone().unwrap_or_else(std::env::temp_dir);
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
    cfg.layouts = match a.only {
        Some(crate::cli::DriverKind::Overlay) => vec![Layout::Overlay],
        Some(crate::cli::DriverKind::Overlay2) => vec![Layout::Overlay2],
        None => vec![Layout::Overlay, Layout::Overlay2],
    };
    let r = ovlink_bench::run(&cfg, &mut |s| eprintln!("bench: {s}"))?;
    let md = markdown(&r);
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
