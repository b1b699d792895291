//! Showing a report to people: a compact table with bars for the terminal ([`text`]), and an
//! SVG line chart of cumulative inodes per layer, one line per layout, with the filesystem's
//! inode capacity as a line ([`svg`]).
//!
//! This module only formats; it never touches the filesystem.

use crate::scan::{short, HomeReport};
use std::fmt::Write as _;

/// `1234567` -> `1,234,567`.
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Bytes in B/KiB/MiB/GiB.
pub fn human_bytes(n: u64) -> String {
    const U: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < U.len() {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", U[i])
    }
}

/// A bar of `width` cells filled in proportion `value / max`.
pub fn bar(value: u64, max: u64, width: usize) -> String {
    let filled = if max == 0 {
        0
    } else {
        ((value as f64 / max as f64) * width as f64).round() as usize
    };
    let filled = filled.min(width);
    format!("{}{}", "█".repeat(filled), "░".repeat(width - filled))
}

/// The terminal view of a report.
pub fn text(r: &HomeReport) -> String {
    let mut o = String::new();
    let _ = writeln!(
        o,
        "{} home {} on {} (hardlink limit {}){}",
        r.layout.name(),
        r.home.display(),
        r.backing_fs,
        thousands(r.link_max),
        match r.symlinks {
            Some(m) => format!("; symlinks and special files: {m}"),
            None => String::new(),
        }
    );
    let _ = writeln!(o);
    let max_added = r.layers.iter().map(|l| l.inodes_added).max().unwrap_or(0);
    let rows: Vec<[String; 8]> = r
        .layers
        .iter()
        .map(|l| {
            [
                short(&l.id),
                l.kind.to_string(),
                l.depth.to_string(),
                thousands(l.entries.total()),
                thousands(l.inodes_added),
                thousands(l.inodes_shared_with_parent),
                human_bytes(l.bytes_added),
                bar(l.inodes_added, max_added, 24),
            ]
        })
        .collect();
    let head = [
        "LAYER",
        "KIND",
        "DEPTH",
        "ENTRIES",
        "+INODES",
        "SHARED",
        "+BYTES",
        "+INODES (bar)",
    ];
    let mut w: Vec<usize> = head.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (i, c) in row.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let pad = w[i].saturating_sub(c.chars().count());
                if (3..=6).contains(&i) {
                    format!("{}{c}", " ".repeat(pad))
                } else {
                    format!("{c}{}", " ".repeat(pad))
                }
            })
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let _ = writeln!(o, "{}", line(head.to_vec()));
    for row in &rows {
        let _ = writeln!(o, "{}", line(row.iter().map(String::as_str).collect()));
    }
    let _ = writeln!(o);
    let _ = writeln!(
        o,
        "ENTRIES = names in the layer's tree; +INODES = inodes this layer added to the filesystem; \
         SHARED = inodes it shares with its parent."
    );
    for l in r.layers.iter().filter(|l| l.kind == "container") {
        let _ = writeln!(
            o,
            "container {}: {} inodes in {}/, {} in work/",
            short(&l.id),
            thousands(l.upper_inodes.unwrap_or(0)),
            if r.layout.name() == "overlay" {
                "upper"
            } else {
                "diff"
            },
            thousands(l.work_inodes.unwrap_or(0))
        );
    }
    if let Some(l) = r
        .layers
        .iter()
        .filter(|l| l.max_links.is_some())
        .max_by_key(|l| l.max_links.as_ref().map(|m| m.nlink))
    {
        if let Some(m) = &l.max_links {
            let shown = match m.path.split_once('/') {
                Some((id, rest)) => format!("{}/{rest}", short(id)),
                None => m.path.clone(),
            };
            let _ = write!(
                o,
                "most links: {shown} has {} of {} possible",
                thousands(m.nlink),
                thousands(r.link_max)
            );
            match m.descendant_layers_left {
                Some(n) => {
                    let _ = writeln!(
                        o,
                        "; {} more image layers on top before EMLINK (each one adds a link)",
                        thousands(n)
                    );
                }
                None => {
                    let _ = writeln!(o, "; overlay2 layers add no links, so depth never hits it");
                }
            }
            let hist: Vec<String> = l
                .link_histogram
                .iter()
                .map(|b| {
                    let range = if b.min == b.max {
                        b.min.to_string()
                    } else if b.max == u64::MAX {
                        format!("{}+", b.min)
                    } else {
                        format!("{}-{}", b.min, b.max)
                    };
                    format!("{range} links: {}", thousands(b.count))
                })
                .collect();
            let _ = writeln!(o, "link counts in {}: {}", short(&l.id), hist.join(", "));
        }
    }
    let t = &r.totals;
    let _ = writeln!(
        o,
        "total: {} distinct inodes in the home ({} layers, {} image + {} container; {} overhead), {} on disk",
        thousands(t.distinct_inodes),
        t.layers,
        t.image_layers,
        t.container_layers,
        thousands(t.overhead_inodes),
        human_bytes(t.bytes_on_disk)
    );
    if t.pending_reclaim_layers > 0 {
        let _ = writeln!(
            o,
            "being reclaimed: {} removed layer(s), {} inodes still to be freed (deleted in the background)",
            t.pending_reclaim_layers,
            thousands(t.pending_reclaim_inodes)
        );
    }
    let f = &r.fs;
    let _ = writeln!(
        o,
        "filesystem inodes: {} used of {} ({:.1}%) {}  {} free",
        thousands(f.inodes_used),
        thousands(f.inodes_total),
        f.inodes_used_pct(),
        bar(f.inodes_used, f.inodes_total, 20),
        thousands(f.inodes_free)
    );
    let _ = writeln!(
        o,
        "filesystem bytes:  {} used of {} ({:.1}%) {}  {} free",
        human_bytes(f.bytes_used),
        human_bytes(f.bytes_total),
        f.bytes_used_pct(),
        bar(f.bytes_used, f.bytes_total, 20),
        human_bytes(f.bytes_free)
    );
    for p in &r.projections {
        match p.fits {
            Some(n) => {
                let _ = writeln!(
                    o,
                    "projection: {} more {} fit ({} inodes and {} each); {} run out first \
                     (by inodes: {}, by bytes: {})",
                    thousands(n),
                    p.what.trim_start_matches("more "),
                    thousands(p.inodes_each),
                    human_bytes(p.bytes_each),
                    p.runs_out_first,
                    p.fit_by_inodes.map(thousands).unwrap_or_else(|| "-".into()),
                    p.fit_by_bytes.map(thousands).unwrap_or_else(|| "-".into()),
                );
            }
            None => {
                let _ = writeln!(o, "projection: {} cost nothing measurable", p.what);
            }
        }
    }
    if !r.skipped_mounts.is_empty() {
        let _ = writeln!(
            o,
            "not walked (mounted): {}",
            r.skipped_mounts
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    o
}

/// One line of the chart.
#[derive(Debug, Clone)]
pub struct Series {
    /// Legend text (`overlay`, `overlay2`).
    pub name: String,
    /// Stroke colour (`#d62728`).
    pub color: String,
    /// Value at x = 0 (before the first layer).
    pub start: u64,
    /// Values at x = 1, 2, …
    pub values: Vec<u64>,
    /// Mark the point after the last value as a failure (the layer that did not fit).
    pub failed_next: bool,
}

/// A line chart of cumulative inodes per layer.
#[derive(Debug, Clone)]
pub struct Chart {
    /// Title.
    pub title: String,
    /// A line under the title.
    pub subtitle: String,
    /// X axis label.
    pub x_label: String,
    /// Y axis label.
    pub y_label: String,
    /// The lines.
    pub series: Vec<Series>,
    /// The filesystem's inode capacity, drawn as a horizontal line.
    pub capacity: Option<u64>,
}

/// Colour of the legacy layout's line.
pub const OVERLAY_COLOR: &str = "#d62728";
/// Colour of the overlay2 layout's line.
pub const OVERLAY2_COLOR: &str = "#1f77b4";

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn nice_step(max: f64, ticks: f64) -> f64 {
    let raw = (max / ticks).max(1.0);
    let mag = 10f64.powf(raw.log10().floor());
    for m in [1.0, 2.0, 2.5, 5.0, 10.0] {
        if raw <= m * mag {
            return m * mag;
        }
    }
    10.0 * mag
}

/// The chart as a standalone SVG document. The capacity line is drawn when it is at most
/// four times the highest value; otherwise a note says how far above the chart it is.
pub fn svg(c: &Chart) -> String {
    let (w, h) = (820.0f64, 460.0f64);
    let (ml, mr, mt, mb) = (80.0, 190.0, 70.0, 60.0);
    let pw = w - ml - mr;
    let ph = h - mt - mb;
    let n = c
        .series
        .iter()
        .map(|s| s.values.len() + usize::from(s.failed_next))
        .max()
        .unwrap_or(1)
        .max(1);
    let vmax = c
        .series
        .iter()
        .flat_map(|s| s.values.iter().copied())
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let cap_on_chart = c.capacity.filter(|&cap| (cap as f64) <= vmax * 4.0);
    let top = cap_on_chart.map(|cap| cap as f64).unwrap_or(vmax).max(vmax) * 1.08;
    let step = nice_step(top, 5.0);
    let top = (top / step).ceil() * step;
    let x = |i: usize| ml + pw * (i as f64) / (n as f64);
    let y = |v: f64| mt + ph - ph * v / top;
    let mut o = String::new();
    let _ = writeln!(
        o,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="Helvetica, Arial, sans-serif" font-size="12">"#
    );
    let _ = writeln!(o, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
    let _ = writeln!(
        o,
        r#"<text x="{ml}" y="28" font-size="17" font-weight="bold">{}</text>"#,
        esc(&c.title)
    );
    let _ = writeln!(
        o,
        r##"<text x="{ml}" y="48" fill="#555">{}</text>"##,
        esc(&c.subtitle)
    );
    // Grid and y ticks.
    let mut v = 0.0;
    while v <= top + 0.5 {
        let yy = y(v);
        let _ = writeln!(
            o,
            r##"<line x1="{ml}" y1="{yy:.1}" x2="{:.1}" y2="{yy:.1}" stroke="#e5e5e5"/>"##,
            ml + pw
        );
        let _ = writeln!(
            o,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
            ml - 8.0,
            yy + 4.0,
            thousands(v as u64)
        );
        v += step;
    }
    // Axes.
    let _ = writeln!(
        o,
        r##"<line x1="{ml}" y1="{mt}" x2="{ml}" y2="{:.1}" stroke="#333"/><line x1="{ml}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#333"/>"##,
        mt + ph,
        mt + ph,
        ml + pw,
        mt + ph
    );
    let every = n.div_ceil(20).max(1);
    for i in 0..=n {
        if i % every == 0 {
            let _ = writeln!(
                o,
                r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{i}</text>"#,
                x(i),
                mt + ph + 18.0
            );
        }
    }
    let _ = writeln!(
        o,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
        ml + pw / 2.0,
        h - 18.0,
        esc(&c.x_label)
    );
    let _ = writeln!(
        o,
        r#"<text transform="translate(22 {:.1}) rotate(-90)" text-anchor="middle">{}</text>"#,
        mt + ph / 2.0,
        esc(&c.y_label)
    );
    // Capacity.
    match (c.capacity, cap_on_chart) {
        (Some(cap), Some(_)) => {
            let yy = y(cap as f64);
            let _ = writeln!(
                o,
                r##"<line x1="{ml}" y1="{yy:.1}" x2="{:.1}" y2="{yy:.1}" stroke="#000" stroke-width="2" stroke-dasharray="8 5"/>"##,
                ml + pw
            );
            let _ = writeln!(
                o,
                r#"<text x="{:.1}" y="{:.1}" font-weight="bold">filesystem capacity: {} inodes</text>"#,
                ml + 8.0,
                yy - 6.0,
                thousands(cap)
            );
        }
        (Some(cap), None) => {
            let _ = writeln!(
                o,
                r##"<text x="{ml}" y="{:.1}" fill="#555">filesystem capacity: {} inodes, {:.0}x the top of this chart (not drawn)</text>"##,
                mt - 6.0,
                thousands(cap),
                cap as f64 / top
            );
        }
        _ => {}
    }
    // Lines.
    for (k, s) in c.series.iter().enumerate() {
        let pts: Vec<String> = std::iter::once((0usize, s.start))
            .chain(s.values.iter().enumerate().map(|(i, v)| (i + 1, *v)))
            .map(|(i, v)| format!("{:.1},{:.1}", x(i), y(v as f64)))
            .collect();
        let _ = writeln!(
            o,
            r#"<polyline fill="none" stroke="{}" stroke-width="3" points="{}"/>"#,
            esc(&s.color),
            pts.join(" ")
        );
        for (i, v) in s.values.iter().enumerate().filter(|_| n <= 40) {
            let _ = writeln!(
                o,
                r#"<circle cx="{:.1}" cy="{:.1}" r="3.5" fill="{}"/>"#,
                x(i + 1),
                y(*v as f64),
                esc(&s.color)
            );
        }
        if s.failed_next {
            let fx = x(s.values.len() + 1);
            let fy = y(cap_on_chart.map(|c| c as f64).unwrap_or(vmax));
            let _ = writeln!(
                o,
                r#"<path d="M{:.1},{:.1} l12,12 m0,-12 l-12,12" stroke="{}" stroke-width="3"/>"#,
                fx - 6.0,
                fy - 6.0,
                esc(&s.color)
            );
        }
        // Legend.
        let ly = mt + 10.0 + 50.0 * k as f64;
        let last = s.values.last().copied().unwrap_or(0);
        let lx = ml + pw + 14.0;
        let _ = writeln!(
            o,
            r#"<rect x="{lx:.1}" y="{:.1}" width="16" height="4" fill="{}"/><text x="{:.1}" y="{ly:.1}" font-weight="bold">{}</text>"#,
            ly - 4.0,
            esc(&s.color),
            lx + 22.0,
            esc(&s.name),
        );
        let _ = writeln!(
            o,
            r#"<text x="{lx:.1}" y="{:.1}">{} layers{}</text><text x="{lx:.1}" y="{:.1}">{} inodes</text>"#,
            ly + 16.0,
            s.values.len(),
            if s.failed_next { ", then full" } else { "" },
            ly + 31.0,
            thousands(last),
        );
    }
    let _ = writeln!(o, "</svg>");
    o
}

/// The chart of one or two reports: cumulative inodes along each report's deepest image chain.
pub fn chart_of(reports: &[&HomeReport]) -> Chart {
    let series = reports
        .iter()
        .map(|r| {
            let values = r
                .deepest_image()
                .map(|top| {
                    r.chain(&top.id)
                        .iter()
                        .map(|l| l.cumulative_inodes)
                        .collect()
                })
                .unwrap_or_default();
            Series {
                name: r.layout.name().to_string(),
                color: match r.layout.name() {
                    "overlay" => OVERLAY_COLOR,
                    _ => OVERLAY2_COLOR,
                }
                .to_string(),
                start: 0,
                values,
                failed_next: false,
            }
        })
        .collect();
    let capacity = reports.first().map(|r| r.fs.inodes_total);
    Chart {
        title: "Inodes used by an image, layer by layer".into(),
        subtitle:
            "cumulative inodes each layout adds to the backing filesystem along the image's chain"
                .into(),
        x_label: "image layers (bottom first)".into(),
        y_label: "cumulative inodes".into(),
        series,
        capacity,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(65000), "65,000");
        assert_eq!(thousands(1234567), "1,234,567");
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(bar(5, 10, 4), "██░░");
    }

    #[test]
    fn svg_is_well_formed_enough() {
        let c = Chart {
            title: "t <&>".into(),
            subtitle: "s".into(),
            x_label: "x".into(),
            y_label: "y".into(),
            series: vec![
                Series {
                    name: "overlay".into(),
                    color: OVERLAY_COLOR.into(),
                    start: 0,
                    values: vec![100, 250, 400],
                    failed_next: true,
                },
                Series {
                    name: "overlay2".into(),
                    color: OVERLAY2_COLOR.into(),
                    start: 0,
                    values: vec![100, 110, 120],
                    failed_next: false,
                },
            ],
            capacity: Some(500),
        };
        let s = svg(&c);
        assert!(s.starts_with("<svg") && s.trim_end().ends_with("</svg>"));
        assert!(s.contains("t &lt;&amp;&gt;"));
        assert!(s.contains("filesystem capacity"));
        assert_eq!(s.matches("<polyline").count(), 2);
    }
}
