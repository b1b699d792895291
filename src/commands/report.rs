//! `ovlink report`: prints [`ovlink_report::scan_root`]'s report of the `--driver` home (a
//! table, or JSON) and writes the chart of both homes with `--svg`. Read-only: it never
//! changes the home or the image store.

use crate::cli::ReportArgs;
use anyhow::Context as _;
use ovlink_driver::Layout;
use std::path::Path;

pub fn run(root: &Path, layout: Layout, a: ReportArgs) -> anyhow::Result<()> {
    let report = ovlink_report::scan_root(root, layout)?;
    if let Some(file) = &a.svg {
        let svg = ovlink_report::chart_of_root(root, &report)?;
        std::fs::write(file, svg).with_context(|| format!("cannot write {}", file.display()))?;
        if !a.json {
            eprintln!("chart written to {}", file.display());
        }
    }
    if a.json {
        return crate::output::json(&report);
    }
    print!("{}", ovlink_report::render::text(&report));
    Ok(())
}
