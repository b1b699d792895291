//! The Markdown table of a [`BenchResult`]: one row per figure, overlay and overlay2 side by
//! side with their ratio, under a line saying where and how it was measured. Pure rendering:
//! it must never measure or write anything.

use crate::svg::human;
use crate::BenchResult;

/// The Markdown table of a run.
pub fn table(r: &BenchResult) -> String {
    let mut o = format!(
        "Image: {}; {} repetitions, medians; work dir on {}{}, kernel {}, {} CPUs; legacy \
         layout --symlinks {}; load average {:.1} at the start, {:.1} at the end; {:.0} s.\n\n",
        r.image,
        r.reps,
        r.backing_fs,
        if r.fresh_fs.is_some() {
            " (a fresh loop-mounted filesystem)"
        } else {
            " (as it is)"
        },
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
