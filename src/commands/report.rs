//! `ovlink report`: what each layer of the home costs the backing filesystem in inodes and
//! bytes, how close files are to the hardlink limit, what is left and what runs out first;
//! optionally an SVG chart of overlay vs overlay2 on the same images. Read-only: it never
//! changes the home or the image store.

use crate::cli::{DriverKind, ReportArgs};
use anyhow::Context as _;
use ovlink_report::{render, scan, HomeReport, Layout};
use std::collections::BTreeMap;
use std::path::Path;

/// The driver home's name under `--root`.
pub fn home_name(kind: DriverKind) -> &'static str {
    match kind {
        DriverKind::Overlay => "overlay",
        DriverKind::Overlay2 => "overlay2",
    }
}

fn layout(kind: DriverKind) -> Layout {
    match kind {
        DriverKind::Overlay => Layout::Overlay,
        DriverKind::Overlay2 => Layout::Overlay2,
    }
}

/// Layer parents recorded by image imports under `root` (empty when nothing was imported).
pub fn recorded_parents(root: &Path) -> BTreeMap<String, Option<String>> {
    ovlink_image::Store::open_read_only(root)
        .layer_records()
        .map(|recs| recs.into_iter().map(|r| (r.chain_id, r.parent)).collect())
        .unwrap_or_default()
}

/// Scans the home of `kind` under `root`.
pub fn scan_home(root: &Path, kind: DriverKind) -> anyhow::Result<HomeReport> {
    let home = root.join(home_name(kind));
    if !home.is_dir() {
        anyhow::bail!(
            "there is no {} home at {} (import an image first: ovlink --driver {} image import FILE)",
            home_name(kind),
            home.display(),
            home_name(kind)
        );
    }
    scan(&home, layout(kind), &recorded_parents(root))
        .with_context(|| format!("cannot report on {}", home.display()))
}

pub fn run(root: &Path, kind: DriverKind, a: ReportArgs) -> anyhow::Result<()> {
    let report = scan_home(root, kind)?;
    if let Some(file) = &a.svg {
        let other_kind = match kind {
            DriverKind::Overlay => DriverKind::Overlay2,
            DriverKind::Overlay2 => DriverKind::Overlay,
        };
        let other = if root.join(home_name(other_kind)).is_dir() {
            Some(scan_home(root, other_kind)?)
        } else {
            None
        };
        let mut both: Vec<&HomeReport> = std::iter::once(&report).chain(other.as_ref()).collect();
        both.sort_by_key(|r| r.layout.name());
        let svg = render::svg(&render::chart_of(&both));
        std::fs::write(file, svg).with_context(|| format!("cannot write {}", file.display()))?;
        if !a.json {
            eprintln!("chart written to {}", file.display());
        }
    }
    if a.json {
        return crate::output::json(&report);
    }
    print!("{}", render::text(&report));
    Ok(())
}
