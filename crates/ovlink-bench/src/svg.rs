//! The chart of a run: one horizontal bar per figure, the ratio overlay / overlay2 on a log
//! scale around 1 (left of the line: the legacy layout is cheaper; right: overlay2 is), the
//! two medians written beside it. Read at a glance: long bars are big differences.

use crate::BenchResult;
use std::fmt::Write as _;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A value with its unit, for the labels.
pub fn human(v: f64, unit: &str) -> String {
    match unit {
        "s" if v < 1e-3 => format!("{:.0} µs", v * 1e6),
        "s" if v < 1.0 => format!("{:.1} ms", v * 1e3),
        "s" => format!("{v:.2} s"),
        "us" => format!("{v:.1} µs"),
        "bytes" if v >= (1u64 << 30) as f64 => format!("{:.2} GiB", v / (1u64 << 30) as f64),
        "bytes" if v >= (1u64 << 20) as f64 => format!("{:.1} MiB", v / (1u64 << 20) as f64),
        "bytes" if v >= 1024.0 => format!("{:.1} KiB", v / 1024.0),
        "bytes" => format!("{v:.0} B"),
        "kB" => format!("{v:.0} kB"),
        _ => format!("{v:.0}"),
    }
}

/// The SVG document.
pub fn render(r: &BenchResult) -> String {
    let rows: Vec<_> = r.rows.iter().filter(|x| x.ratio.is_some()).collect();
    let (lw, bw, vw) = (430.0, 360.0, 250.0);
    let rh = 18.0;
    let top = 70.0;
    let w = lw + bw + vw + 20.0;
    let h = top + rh * rows.len() as f64 + 40.0;
    let mut o = String::new();
    let _ = write!(
        o,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="11">
<rect width="100%" height="100%" fill="white"/>
<text x="10" y="22" font-size="16" font-weight="bold">ovlink bench: legacy overlay / overlay2 (ratio of medians, log scale)</text>
<text x="10" y="40">{} · {} reps · {} · kernel {} · {} CPUs · symlinks {} · load {:.1}-{:.1}</text>
<text x="10" y="58" fill="#555">bar left of 1x: the legacy layout is cheaper; right: overlay2 is cheaper. Labels: overlay vs overlay2 medians.</text>
"##,
        esc(&r.image),
        r.reps,
        r.backing_fs,
        r.kernel,
        r.cpus,
        r.symlinks,
        r.load_average.0,
        r.load_average.1
    );
    // log10 ratio from -2 (0.01x) to +2 (100x)
    let x0 = lw + bw / 2.0;
    let scale = bw / 4.0;
    for (t, lab) in [
        (-2.0, "0.01x"),
        (-1.0, "0.1x"),
        (0.0, "1x"),
        (1.0, "10x"),
        (2.0, "100x"),
    ] {
        let x = x0 + t * scale;
        let _ = writeln!(
            o,
            r##"<line x1="{x}" y1="{}" x2="{x}" y2="{}" stroke="{}"/><text x="{x}" y="{}" text-anchor="middle" fill="#555">{lab}</text>"##,
            top - 4.0,
            top + rh * rows.len() as f64,
            if t == 0.0 { "#000" } else { "#ddd" },
            top + rh * rows.len() as f64 + 14.0
        );
    }
    for (i, row) in rows.iter().enumerate() {
        let y = top + rh * i as f64;
        let ratio = row.ratio.unwrap_or(1.0).max(1e-9);
        let l = ratio.log10().clamp(-2.0, 2.0);
        let (x, wdt) = if l < 0.0 {
            (x0 + l * scale, -l * scale)
        } else {
            (x0, l * scale)
        };
        let color = if l < 0.0 { "#1f77b4" } else { "#d62728" };
        let _ = writeln!(
            o,
            r##"<text x="{}" y="{}" text-anchor="end">{}: {}</text><rect x="{x}" y="{}" width="{}" height="{}" fill="{color}"/><text x="{}" y="{}">{:.2}x  ({} vs {})</text>"##,
            lw - 6.0,
            y + 12.0,
            esc(&row.group),
            esc(&row.name),
            y + 3.0,
            wdt.max(1.0),
            rh - 6.0,
            lw + bw + 6.0,
            y + 12.0,
            ratio,
            human(row.value.overlay.unwrap_or(0.0), row.unit),
            human(row.value.overlay2.unwrap_or(0.0), row.unit)
        );
    }
    o.push_str("</svg>\n");
    o
}
