//! A report on an ovlink root: the home of one layout (`<root>/overlay`, `<root>/overlay2`)
//! with the layer parents the image store recorded, and the chart of both layouts' homes
//! side by side. Read-only like the rest of the crate: it opens the store read-only and never
//! creates a home.

use crate::{render, scan, HomeReport, Layout, ReportError, Result};
use std::collections::BTreeMap;
use std::path::Path;

/// Layer parents recorded by image imports under `root` (empty when nothing was imported).
pub fn recorded_parents(root: &Path) -> BTreeMap<String, Option<String>> {
    ovlink_image::Store::open_read_only(root)
        .layer_records()
        .map(|recs| recs.into_iter().map(|r| (r.chain_id, r.parent)).collect())
        .unwrap_or_default()
}

/// Scans the `layout` home under `root` ([`ReportError::NoHome`] when there is none).
pub fn scan_root(root: &Path, layout: Layout) -> Result<HomeReport> {
    let home = root.join(layout.home_name());
    if !home.is_dir() {
        return Err(ReportError::NoHome { home, layout });
    }
    scan(&home, layout, &recorded_parents(root))
}

/// The SVG chart of `report` (a home under `root`) and, when `root` holds the other layout's
/// home too, of that one beside it, legacy first.
pub fn chart_of_root(root: &Path, report: &HomeReport) -> Result<String> {
    let other = Layout::ALL.into_iter().find(|l| *l != report.layout);
    let other = match other {
        Some(l) if root.join(l.home_name()).is_dir() => Some(scan_root(root, l)?),
        _ => None,
    };
    let mut both: Vec<&HomeReport> = std::iter::once(report).chain(other.as_ref()).collect();
    both.sort_by_key(|r| r.layout.name());
    Ok(render::svg(&render::chart_of(&both)))
}
