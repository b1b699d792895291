//! The import scenario: import the image in a fresh home, the hardlink copy of the top
//! layer's tree (legacy only: what every new legacy layer pays), mount+unmount cycles of a
//! container on the top layer, a deep read (files of the bottom layer that no higher layer
//! touched, read through the container), distinct inodes and bytes of the home.
//!
//! Mount and unmount are timed after a `syncfs` of the backing filesystem: the kernel's
//! overlay unmount syncs the whole upper filesystem (`ovl_sync_fs` from
//! `generic_shutdown_super`), so without it the figure measures whatever an earlier phase
//! (the import, the hardlink copy and its removal) or another user left dirty.

use crate::error::{io, Result};
use crate::util::{median, settle, timed};
use crate::{open, row, BenchConfig, Layout, Narrator, Pair, Row};
use ovlink_driver::CreateOpts;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One repetition of one layout.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ImportSample {
    /// Whole import, seconds.
    pub import_s: f64,
    /// Per layer apply, seconds, bottom first.
    pub layer_apply_s: Vec<f64>,
    /// Hardlink copy of the top layer's tree, seconds (legacy only).
    pub hardlink_copy_s: Option<f64>,
    /// Entries that copy made.
    pub hardlink_copy_entries: Option<u64>,
    /// Median container mount (`get`), seconds.
    pub mount_s: f64,
    /// Median container unmount (`put`), seconds.
    pub unmount_s: f64,
    /// Files of the bottom layer read through the container.
    pub deep_read_files: usize,
    /// Mean time per file, microseconds.
    pub deep_read_us: f64,
    /// Lowerdirs the read went through.
    pub deep_read_layers: usize,
    /// Distinct inodes of the home.
    pub inodes: u64,
    /// Bytes on disk of the home.
    pub bytes: u64,
}

/// Both layouts.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ImportResult {
    /// What was imported.
    pub image: String,
    /// Image layers.
    pub layers: usize,
    /// Every repetition, per layout name.
    pub samples: BTreeMap<&'static str, Vec<ImportSample>>,
}

impl ImportResult {
    fn med(&self, f: &dyn Fn(&ImportSample) -> Option<f64>) -> Pair {
        let mut p = Pair::default();
        for l in [Layout::Overlay, Layout::Overlay2] {
            let v: Option<Vec<f64>> = self
                .samples
                .get(l.name())
                .map(|s| s.iter().filter_map(f).collect::<Vec<_>>())
                .filter(|v| !v.is_empty());
            p.set(l, v.map(median));
        }
        p
    }

    /// The summary rows.
    pub fn rows(&self, rows: &mut Vec<Row>) {
        let g = "import";
        row(
            rows,
            g,
            "import (whole image)".into(),
            "s",
            self.med(&|s| Some(s.import_s)),
        );
        for i in 0..self.layers {
            row(
                rows,
                g,
                format!("apply layer {}", i + 1),
                "s",
                self.med(&|s| s.layer_apply_s.get(i).copied()),
            );
        }
        let entries = self
            .samples
            .get("overlay")
            .and_then(|v| v.first())
            .and_then(|s| s.hardlink_copy_entries)
            .unwrap_or(0);
        row(
            rows,
            g,
            format!("hardlink copy of the top layer ({entries} entries)"),
            "s",
            self.med(&|s| s.hardlink_copy_s),
        );
        row(
            rows,
            g,
            "container mount (get)".into(),
            "s",
            self.med(&|s| Some(s.mount_s)),
        );
        row(
            rows,
            g,
            "container unmount (put)".into(),
            "s",
            self.med(&|s| Some(s.unmount_s)),
        );
        row(
            rows,
            g,
            "mount + unmount".into(),
            "s",
            self.med(&|s| Some(s.mount_s + s.unmount_s)),
        );
        row(
            rows,
            g,
            "deep read, per bottom-layer file".into(),
            "us",
            self.med(&|s| Some(s.deep_read_us)),
        );
        row(
            rows,
            g,
            "lowerdirs of the read".into(),
            "count",
            self.med(&|s| Some(s.deep_read_layers as f64)),
        );
        row(
            rows,
            g,
            "distinct inodes in the home".into(),
            "inodes",
            self.med(&|s| Some(s.inodes as f64)),
        );
        row(
            rows,
            g,
            "bytes on disk".into(),
            "bytes",
            self.med(&|s| Some(s.bytes as f64)),
        );
    }
}

/// Runs the scenario.
pub fn run(cfg: &BenchConfig, wd: &Path, say: Narrator<'_>) -> Result<ImportResult> {
    let (image, label) = match &cfg.image {
        Some(p) => (p.clone(), p.display().to_string()),
        None => {
            let spec = ovlink_image::GenSpec {
                entries: cfg.entries,
                layers: cfg.layers,
                ..ovlink_image::GenSpec::bench()
            };
            let p = wd.join("image.tar");
            let mut f = std::fs::File::create(&p).map_err(io("create", &p))?;
            let sum = ovlink_image::generate(&spec, &mut f).map_err(io("write", &p))?;
            if let Some(w) = &cfg.write_image {
                std::fs::copy(&p, w).map_err(io("write", w))?;
            }
            (
                p,
                format!(
                    "generated, {} entries in the base layer, {} layers, {} bytes",
                    cfg.entries, cfg.layers, sum.archive_size
                ),
            )
        }
    };
    let mut res = ImportResult {
        image: label,
        ..Default::default()
    };
    for rep in 0..cfg.reps {
        for &l in &cfg.layouts {
            say(&format!(
                "import: {} repetition {}/{}",
                l.name(),
                rep + 1,
                cfg.reps
            ));
            let root = wd.join(format!("import-{}-{rep}", l.name()));
            let s = one_rep(cfg, l, &image, &root)?;
            res.layers = res.layers.max(s.layer_apply_s.len());
            res.samples.entry(l.name()).or_default().push(s);
            crate::util::remove_tree(&root)?;
        }
    }
    Ok(res)
}

/// Relative paths of the regular files below `dir`, sorted.
pub(crate) fn files_below(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(dir.join(&rel)) else {
            continue;
        };
        for e in rd.flatten() {
            let Ok(ft) = e.file_type() else { continue };
            let p = rel.join(e.file_name());
            if ft.is_dir() {
                stack.push(p);
            } else if ft.is_file() {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Files of the bottom layer that the top of the chain still shows unchanged.
pub(crate) fn deep_files(
    layout: Layout,
    home: &Path,
    chain: &[String],
    max: usize,
) -> Vec<PathBuf> {
    let (Some(bottom), Some(top)) = (chain.first(), chain.last()) else {
        return Vec::new();
    };
    use std::os::unix::fs::MetadataExt;
    let b = crate::util::layer_dir(layout, home, bottom);
    match layout {
        Layout::Overlay => {
            let t = crate::util::layer_dir(layout, home, top);
            files_below(&b)
                .into_iter()
                .filter(|p| {
                    match (
                        std::fs::symlink_metadata(b.join(p)),
                        std::fs::symlink_metadata(t.join(p)),
                    ) {
                        (Ok(x), Ok(y)) => x.ino() == y.ino(),
                        _ => false,
                    }
                })
                .take(max)
                .collect()
        }
        Layout::Overlay2 => {
            let uppers: Vec<PathBuf> = chain[1..]
                .iter()
                .map(|l| crate::util::layer_dir(layout, home, l))
                .collect();
            files_below(&b)
                .into_iter()
                .filter(|p| {
                    uppers.iter().all(|u| {
                        p.ancestors()
                            .filter(|a| !a.as_os_str().is_empty())
                            .all(|a| std::fs::symlink_metadata(u.join(a)).is_err())
                    })
                })
                .take(max)
                .collect()
        }
    }
}

/// Reads `files` through `merged`; mean microseconds per file.
pub(crate) fn read_through(merged: &Path, files: &[PathBuf]) -> Result<f64> {
    let t = std::time::Instant::now();
    let mut buf = Vec::new();
    for f in files {
        buf.clear();
        let p = merged.join(f);
        let mut fh = std::fs::File::open(&p).map_err(io("open", &p))?;
        std::io::Read::read_to_end(&mut fh, &mut buf).map_err(io("read", &p))?;
    }
    Ok(if files.is_empty() {
        0.0
    } else {
        t.elapsed().as_secs_f64() * 1e6 / files.len() as f64
    })
}

/// Median get and put over `cycles` cycles of container `cid`, each after a `syncfs`.
pub(crate) fn mount_cycles(
    d: &dyn ovlink_driver::Driver,
    cid: &str,
    cycles: usize,
) -> Result<(f64, f64)> {
    let (mut g, mut p) = (Vec::new(), Vec::new());
    for _ in 0..cycles.max(1) {
        settle(d.home())?;
        let (t, _) = timed(|| Ok(d.get(cid, None)?))?;
        g.push(t);
        settle(d.home())?;
        let (t, _) = timed(|| Ok(d.put(cid)?))?;
        p.push(t);
    }
    Ok((median(g), median(p)))
}

fn one_rep(cfg: &BenchConfig, layout: Layout, image: &Path, root: &Path) -> Result<ImportSample> {
    let home = root.join(layout.name());
    let d = open(layout, &home, cfg)?;
    let store = ovlink_image::Store::open(root)?;
    let (import_s, rep) = timed(|| {
        Ok(ovlink_image::import(
            d.as_ref(),
            &store,
            image,
            Some("bench"),
            &ovlink_image::NoProgress,
        )?)
    })?;
    let chain: Vec<String> = rep.layers.iter().map(|l| l.chain_id.clone()).collect();
    let Some(top) = chain.last().cloned() else {
        return Err(crate::BenchError::Config(format!(
            "{} has no layers",
            image.display()
        )));
    };
    let parents: BTreeMap<String, Option<String>> = chain
        .iter()
        .enumerate()
        .map(|(i, id)| (id.clone(), (i > 0).then(|| chain[i - 1].clone())))
        .collect();
    let r = ovlink_report::scan(&home, layout, &parents)?;
    let files = deep_files(layout, &home, &chain, cfg.reads);
    let cid = "bench-container";
    d.create_read_write(cid, Some(&top), &CreateOpts::default())?;
    let (mount_s, unmount_s) = mount_cycles(d.as_ref(), cid, cfg.mount_cycles)?;
    let merged = d.get(cid, None)?;
    let deep_read_us = read_through(&merged, &files)?;
    d.put(cid)?;
    // Last, so that its writes (and the removal) are not what the unmounts above flush.
    let (hardlink_copy_s, hardlink_copy_entries) = if layout == Layout::Overlay {
        let src = home.join(&top).join("root");
        let dst = root.join("hardlink-copy");
        std::fs::create_dir(&dst).map_err(io("create", &dst))?;
        let s = ovlink_fs::at::open_dir(&src)?;
        let dfd = ovlink_fs::at::open_dir(&dst)?;
        let (el, stats) = timed(|| {
            Ok(ovlink_fs::copy_tree(
                rustix::fd::AsFd::as_fd(&s),
                rustix::fd::AsFd::as_fd(&dfd),
                &src,
                &dst,
                ovlink_fs::CopyOptions {
                    specials: cfg.symlinks,
                    ..ovlink_fs::CopyOptions::hardlink()
                },
            )?)
        })?;
        std::fs::remove_dir_all(&dst).map_err(io("remove", &dst))?;
        (Some(el), Some(stats.dirs + stats.linked + stats.copied))
    } else {
        (None, None)
    };
    Ok(ImportSample {
        import_s,
        layer_apply_s: rep
            .layers
            .iter()
            .map(|l| l.duration.as_secs_f64())
            .collect(),
        hardlink_copy_s,
        hardlink_copy_entries,
        mount_s,
        unmount_s,
        deep_read_files: files.len(),
        deep_read_us,
        deep_read_layers: match layout {
            Layout::Overlay => 1,
            Layout::Overlay2 => chain.len(),
        },
        inodes: r.totals.distinct_inodes,
        bytes: r.totals.bytes_on_disk,
    })
}
