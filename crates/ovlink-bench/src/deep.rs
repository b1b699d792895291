//! Deep stacks: images of 20, 60 and 120 layers (a base of many small directories, one file
//! added per layer) created layer by layer on both layouts. The legacy
//! layout hardlink-copies the whole tree for every layer (import time and inodes grow with
//! layers × directories); overlay2 stacks one lowerdir per layer (a lookup goes through up to
//! that many directories). Measured: import time, a deep read through a container (files of
//! the bottom layer no higher layer touched), distinct inodes of the home.

use crate::error::{io, Result};
use crate::import::{deep_files, read_through};
use crate::util::{timed, Entry};
use crate::{open, row, BenchConfig, Layout, Narrator, Pair, Row};
use ovlink_driver::CreateOpts;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;

/// One image on one layout.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DeepFigures {
    /// Layers of the image.
    pub layers: usize,
    /// Import, seconds.
    pub import_s: f64,
    /// Deep read per file, microseconds.
    pub deep_read_us: f64,
    /// Files read.
    pub deep_read_files: usize,
    /// Distinct inodes of the home.
    pub inodes: u64,
    /// Bytes on disk.
    pub bytes: u64,
}

/// Both layouts, one entry per image.
#[derive(Debug, Clone, Default, Serialize)]
pub struct DeepResult {
    /// Entries of the base layer.
    pub entries: usize,
    /// Per layout name.
    pub layouts: BTreeMap<&'static str, Vec<DeepFigures>>,
}

impl DeepResult {
    /// The summary rows.
    pub fn rows(&self, rows: &mut Vec<Row>) {
        let n = self.layouts.values().next().map(|v| v.len()).unwrap_or(0);
        for i in 0..n {
            let pair = |f: &dyn Fn(&DeepFigures) -> f64| {
                let mut p = Pair::default();
                for l in [Layout::Overlay, Layout::Overlay2] {
                    p.set(l, self.layouts.get(l.name()).and_then(|v| v.get(i)).map(f));
                }
                p
            };
            let layers = self.layouts.values().next().map_or(0, |v| v[i].layers);
            let g = "deep stack";
            row(
                rows,
                g,
                format!("{layers} layers: import"),
                "s",
                pair(&|f| f.import_s),
            );
            row(
                rows,
                g,
                format!("{layers} layers: deep read per file"),
                "us",
                pair(&|f| f.deep_read_us),
            );
            row(
                rows,
                g,
                format!("{layers} layers: distinct inodes"),
                "inodes",
                pair(&|f| f.inodes as f64),
            );
            row(
                rows,
                g,
                format!("{layers} layers: bytes on disk"),
                "bytes",
                pair(&|f| f.bytes as f64),
            );
        }
    }
}

/// Runs the scenario.
pub fn run(cfg: &BenchConfig, wd: &Path, say: Narrator<'_>) -> Result<DeepResult> {
    let dir = wd.join("deep");
    std::fs::create_dir(&dir).map_err(io("create", &dir))?;
    let mut res = DeepResult {
        entries: cfg.deep_entries,
        ..Default::default()
    };
    // The base: `deep_entries` files, ten per directory (real images have thousands of
    // directories, which is what the legacy layout re-creates per layer); each layer above
    // adds one file.
    let base = dir.join("base.tar");
    let entries: Vec<Entry> = (0..cfg.deep_entries.max(1))
        .map(|i| Entry::File(format!("usr/d{}/f{i}", i / 10), 512, 0o644))
        .collect();
    crate::util::layer_tar(&base, &entries)?;
    let small = dir.join("small.tar");
    crate::util::layer_tar(&small, &[Entry::File("opt/added".into(), 512, 0o644)])?;
    for &n in &cfg.deep_layers {
        for &l in &cfg.layouts {
            say(&format!("deep stack: {n} layers on {}", l.name()));
            let root = dir.join(format!("{}-{n}", l.name()));
            let home = root.join(l.name());
            let d = open(l, &home, cfg)?;
            let chain: Vec<String> = (0..n.max(1)).map(|i| format!("deep-{i}")).collect();
            let (import_s, _) = timed(|| {
                for (i, id) in chain.iter().enumerate() {
                    let parent = i.checked_sub(1).map(|p| chain[p].as_str());
                    crate::util::apply(
                        d.as_ref(),
                        id,
                        parent,
                        if i == 0 { &base } else { &small },
                    )?;
                }
                Ok(())
            })?;
            let parents: BTreeMap<String, Option<String>> = chain
                .iter()
                .enumerate()
                .map(|(i, id)| (id.clone(), (i > 0).then(|| chain[i - 1].clone())))
                .collect();
            let r = ovlink_report::scan(&home, l, &parents)?;
            let files = deep_files(l, &home, &chain, cfg.reads);
            let top = chain.last().cloned().unwrap_or_default();
            d.create_read_write("deep-c", Some(&top), &CreateOpts::default())?;
            let merged = d.get("deep-c", None)?;
            let us = read_through(&merged, &files)?;
            d.put("deep-c")?;
            res.layouts.entry(l.name()).or_default().push(DeepFigures {
                layers: chain.len(),
                import_s,
                deep_read_us: us,
                deep_read_files: files.len(),
                inodes: r.totals.distinct_inodes,
                bytes: r.totals.bytes_on_disk,
            });
            drop(d);
            crate::util::remove_tree(&root)?;
        }
    }
    crate::util::remove_tree(&dir)?;
    Ok(res)
}
