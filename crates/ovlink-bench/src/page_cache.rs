//! Page cache: N containers of one image each read the same lower files. On both overlay
//! layouts the pages are cached once, on the lower inodes (`fincore` of the lower files stays
//! at one file's worth however many containers read); a full per-container copy of the same
//! files (what a copying driver such as `vfs` does) caches N times as much. Between phases the
//! benchmark drops the cache of its own files (`posix_fadvise(DONTNEED)`), never the
//! machine's. `/proc/meminfo` Cached deltas are recorded too, but a shared machine makes them
//! noisy: `fincore` is the proof.

use crate::error::{io, Result};
use crate::util::{cached_pages, drop_cache, layer_dir, meminfo_cached_kb, Entry};
use crate::{open, row, BenchConfig, Layout, Narrator, Pair, Row};
use ovlink_driver::CreateOpts;
use serde::Serialize;
use std::io::Read as _;
use std::path::{Path, PathBuf};

/// One layout (or the full copies).
#[derive(Debug, Clone, Default, Serialize)]
pub struct CacheFigures {
    /// Pages of the file set (its size / page size).
    pub file_pages: u64,
    /// Cached pages of the lower files (or of all copies) after container 1, 2, … read them.
    pub pages_after: Vec<u64>,
    /// /proc/meminfo Cached growth over the whole phase, kB (noisy).
    pub meminfo_delta_kb: i64,
}

impl CacheFigures {
    /// Cached pages after the last container.
    pub fn last(&self) -> u64 {
        self.pages_after.last().copied().unwrap_or(0)
    }
}

/// The scenario's result.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PageCacheResult {
    /// Containers.
    pub containers: usize,
    /// Files and bytes each.
    pub files: (usize, u64),
    /// Legacy layout.
    pub overlay: Option<CacheFigures>,
    /// overlay2.
    pub overlay2: Option<CacheFigures>,
    /// A full copy of the files per container, for contrast.
    pub full_copy: CacheFigures,
}

impl PageCacheResult {
    /// The summary rows.
    pub fn rows(&self, rows: &mut Vec<Row>) {
        let g = "page cache";
        let pair = |f: &dyn Fn(&CacheFigures) -> f64| Pair {
            overlay: self.overlay.as_ref().map(f),
            overlay2: self.overlay2.as_ref().map(f),
        };
        let n = self.containers;
        row(
            rows,
            g,
            format!("cached pages of the lower files after {n} containers read them"),
            "pages",
            pair(&|c| c.last() as f64),
        );
        row(
            rows,
            g,
            "cached pages after the first container".into(),
            "pages",
            pair(&|c| c.pages_after.first().copied().unwrap_or(0) as f64),
        );
        row(
            rows,
            g,
            format!("meminfo Cached growth, {n} containers"),
            "kB",
            pair(&|c| c.meminfo_delta_kb as f64),
        );
        // The same value in both columns and no ratio: it is the contrast, not a comparison.
        let full = Some(self.full_copy.last() as f64);
        rows.push(Row {
            group: g.to_string(),
            name: format!("full per-container copy (contrast): cached pages after {n} containers"),
            unit: "pages",
            value: Pair {
                overlay: full,
                overlay2: full,
            },
            ratio: None,
        });
    }
}

fn read_all(files: &[PathBuf]) -> Result<()> {
    let mut buf = vec![0u8; 1 << 16];
    for p in files {
        let mut f = std::fs::File::open(p).map_err(io("open", p))?;
        while f.read(&mut buf).map_err(io("read", p))? > 0 {}
    }
    Ok(())
}

fn pages_of(files: &[PathBuf]) -> Result<u64> {
    files.iter().map(|p| cached_pages(p)).sum()
}

/// Runs the scenario.
pub fn run(cfg: &BenchConfig, wd: &Path, say: Narrator<'_>) -> Result<PageCacheResult> {
    let dir = wd.join("page-cache");
    std::fs::create_dir(&dir).map_err(io("create", &dir))?;
    let (nfiles, size) = cfg.page_cache_files;
    let names: Vec<String> = (0..nfiles).map(|i| format!("lib/shared-{i}.so")).collect();
    let entries: Vec<Entry> = names
        .iter()
        .map(|n| Entry::File(n.clone(), size, 0o755))
        .collect();
    let tar = dir.join("layer.tar");
    crate::util::layer_tar(&tar, &entries)?;
    let page = rustix::param::page_size() as u64;
    let file_pages = nfiles as u64 * size.div_ceil(page);
    let mut res = PageCacheResult {
        containers: cfg.containers,
        files: cfg.page_cache_files,
        ..Default::default()
    };
    for &l in &cfg.layouts {
        say(&format!(
            "page cache: {} with {} containers",
            l.name(),
            cfg.containers
        ));
        let home = dir.join(l.name());
        let d = open(l, &home, cfg)?;
        crate::util::apply(d.as_ref(), "image", None, &tar)?;
        let lower: Vec<PathBuf> = names
            .iter()
            .map(|n| layer_dir(l, &home, "image").join(n))
            .collect();
        for p in &lower {
            drop_cache(p)?;
        }
        let m0 = meminfo_cached_kb();
        let mut fig = CacheFigures {
            file_pages,
            ..Default::default()
        };
        for c in 0..cfg.containers {
            let cid = format!("pc-{c}");
            d.create_read_write(&cid, Some("image"), &CreateOpts::default())?;
            let merged = d.get(&cid, None)?;
            read_all(&names.iter().map(|n| merged.join(n)).collect::<Vec<_>>())?;
            fig.pages_after.push(pages_of(&lower)?);
        }
        fig.meminfo_delta_kb = meminfo_cached_kb() as i64 - m0 as i64;
        for c in 0..cfg.containers {
            let cid = format!("pc-{c}");
            d.put(&cid)?;
            d.remove(&cid)?;
        }
        for p in &lower {
            drop_cache(p)?;
        }
        match l {
            Layout::Overlay => res.overlay = Some(fig),
            Layout::Overlay2 => res.overlay2 = Some(fig),
        }
    }
    say("page cache: full per-container copies");
    {
        let d = open(Layout::Overlay, &dir.join("copy-src"), cfg)?;
        crate::util::apply(d.as_ref(), "image", None, &tar)?;
        let root = layer_dir(Layout::Overlay, &dir.join("copy-src"), "image");
        let mut copies = Vec::new();
        for c in 0..cfg.containers {
            for n in &names {
                let to = dir.join(format!("copy-{c}")).join(n);
                if let Some(p) = to.parent() {
                    std::fs::create_dir_all(p).map_err(io("create", p))?;
                }
                std::fs::copy(root.join(n), &to).map_err(io("copy to", &to))?;
                drop_cache(&to)?;
                copies.push(to);
            }
        }
        let m0 = meminfo_cached_kb();
        let mut fig = CacheFigures {
            file_pages,
            ..Default::default()
        };
        for c in 0..cfg.containers {
            let mine = &copies[c * nfiles..(c + 1) * nfiles];
            read_all(mine)?;
            fig.pages_after.push(pages_of(&copies)?);
        }
        fig.meminfo_delta_kb = meminfo_cached_kb() as i64 - m0 as i64;
        for p in &copies {
            drop_cache(p)?;
        }
        res.full_copy = fig;
    }
    crate::util::remove_tree(&dir)?;
    Ok(res)
}
