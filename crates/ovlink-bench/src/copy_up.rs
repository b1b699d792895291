//! Copy-up: the first write to a lower file copies the whole file into the container's upper
//! dir (the cost the articles warn about); a second write to it does not; a metadata-only
//! change (chmod, chown, setxattr) copies it too, because ovlink mounts with
//! `metacopy=off` (as Docker does). Measured per layout on one image layer of incompressible
//! files, in a fresh container per repetition, with the bytes the upper copy holds afterwards
//! (`st_blocks`), so the figures prove what they claim.

use crate::error::{io, Result};
use crate::util::{median, settle, timed, Entry};
use crate::{open, row, BenchConfig, Layout, Narrator, Pair, Row};
use ovlink_driver::CreateOpts;
use serde::Serialize;
use std::collections::BTreeMap;
use std::os::unix::fs::{FileExt as _, MetadataExt as _};
use std::path::Path;

/// One size on one layout (medians over the repetitions).
#[derive(Debug, Clone, Default, Serialize)]
pub struct WriteFigures {
    /// File size, bytes.
    pub size: u64,
    /// open(O_WRONLY) + a 4 KiB write at offset 0 + close, the first time, seconds.
    pub first_write_s: f64,
    /// The same again, seconds.
    pub second_write_s: f64,
    /// Bytes allocated by the upper copy after the first write.
    pub upper_bytes_after_first: u64,
    /// ... and after the second.
    pub upper_bytes_after_second: u64,
}

/// A metadata-only change on one layout.
#[derive(Debug, Clone, Default, Serialize)]
pub struct MetaFigures {
    /// `chmod`, `chown` or `setxattr`.
    pub op: &'static str,
    /// File size, bytes.
    pub size: u64,
    /// Seconds (median).
    pub seconds: f64,
    /// Bytes allocated by the upper copy afterwards.
    pub upper_bytes: u64,
}

/// Both layouts.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CopyUpResult {
    /// Per layout name: one entry per size.
    pub writes: BTreeMap<&'static str, Vec<WriteFigures>>,
    /// Per layout name: chmod, chown, setxattr.
    pub meta: BTreeMap<&'static str, Vec<MetaFigures>>,
}

fn human(n: u64) -> String {
    match n {
        n if n >= 1 << 30 => format!("{} GiB", n >> 30),
        n if n >= 1 << 20 => format!("{} MiB", n >> 20),
        n => format!("{} KiB", n >> 10),
    }
}

impl CopyUpResult {
    fn pair<T>(&self, m: &BTreeMap<&'static str, Vec<T>>, i: usize, f: &dyn Fn(&T) -> f64) -> Pair {
        let mut p = Pair::default();
        for l in [Layout::Overlay, Layout::Overlay2] {
            p.set(l, m.get(l.name()).and_then(|v| v.get(i)).map(f));
        }
        p
    }

    /// The summary rows.
    pub fn rows(&self, rows: &mut Vec<Row>) {
        let g = "copy-up";
        let sizes: Vec<u64> = self
            .writes
            .values()
            .next()
            .map(|v| v.iter().map(|w| w.size).collect())
            .unwrap_or_default();
        for (i, s) in sizes.iter().enumerate() {
            let h = human(*s);
            row(
                rows,
                g,
                format!("first write, {h} file"),
                "s",
                self.pair(&self.writes, i, &|w| w.first_write_s),
            );
            row(
                rows,
                g,
                format!("second write, {h} file"),
                "s",
                self.pair(&self.writes, i, &|w| w.second_write_s),
            );
            row(
                rows,
                g,
                format!("upper bytes after the first write, {h} file"),
                "bytes",
                self.pair(&self.writes, i, &|w| w.upper_bytes_after_first as f64),
            );
        }
        let ops: Vec<(&'static str, u64)> = self
            .meta
            .values()
            .next()
            .map(|v| v.iter().map(|m| (m.op, m.size)).collect())
            .unwrap_or_default();
        for (i, (op, size)) in ops.iter().enumerate() {
            let h = human(*size);
            row(
                rows,
                g,
                format!("{op}, {h} file"),
                "s",
                self.pair(&self.meta, i, &|m| m.seconds),
            );
            row(
                rows,
                g,
                format!("upper bytes after {op}, {h} file"),
                "bytes",
                self.pair(&self.meta, i, &|m| m.upper_bytes as f64),
            );
        }
    }
}

const META_OPS: [&str; 3] = ["chmod", "chown", "setxattr"];

/// Size of the files the metadata changes touch: the largest copy-up size up to 64 MiB.
fn meta_size(cfg: &BenchConfig) -> u64 {
    cfg.copy_up_sizes
        .iter()
        .copied()
        .filter(|s| *s <= 64 << 20)
        .max()
        .unwrap_or(1 << 20)
}

fn write_once(p: &Path) -> Result<()> {
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(p)
        .map_err(io("open for writing", p))?;
    f.write_all_at(&[0x5a; 4096], 0).map_err(io("write", p))?;
    Ok(())
}

fn allocated(p: &Path) -> u64 {
    std::fs::symlink_metadata(p).map_or(0, |m| m.blocks() * 512)
}

/// Runs the scenario.
pub fn run(cfg: &BenchConfig, wd: &Path, say: Narrator<'_>) -> Result<CopyUpResult> {
    let dir = wd.join("copy-up");
    std::fs::create_dir(&dir).map_err(io("create", &dir))?;
    let ms = meta_size(cfg);
    let mut entries: Vec<Entry> = cfg
        .copy_up_sizes
        .iter()
        .map(|s| Entry::File(format!("data/f-{s}"), *s, 0o644))
        .collect();
    for op in META_OPS {
        for r in 0..cfg.reps {
            entries.push(Entry::File(format!("data/{op}-{r}"), ms, 0o644));
        }
    }
    let tar = dir.join("layer.tar");
    crate::util::layer_tar(&tar, &entries)?;
    let mut res = CopyUpResult::default();
    let mut raw: BTreeMap<&'static str, Vec<Vec<WriteFigures>>> = BTreeMap::new();
    let mut raw_meta: BTreeMap<&'static str, Vec<Vec<MetaFigures>>> = BTreeMap::new();
    let mut drivers = Vec::new();
    for &l in &cfg.layouts {
        let home = dir.join(l.name());
        let d = open(l, &home, cfg)?;
        crate::util::apply(d.as_ref(), "image", None, &tar)?;
        drivers.push((l, d, home));
    }
    for rep in 0..cfg.reps {
        for (l, d, home) in &drivers {
            say(&format!(
                "copy-up: {} repetition {}/{}",
                l.name(),
                rep + 1,
                cfg.reps
            ));
            let cid = format!("cu-{rep}");
            d.create_read_write(&cid, Some("image"), &CreateOpts::default())?;
            let merged = d.get(&cid, None)?;
            let upper = home.join(&cid).join(match l {
                Layout::Overlay => "upper",
                Layout::Overlay2 => "diff",
            });
            let mut w = Vec::new();
            for s in &cfg.copy_up_sizes {
                let rel = format!("data/f-{s}");
                let p = merged.join(&rel);
                // Cold lower file on both layouts: the copy-up reads it from disk.
                crate::util::drop_cache(&crate::util::layer_dir(*l, home, "image").join(&rel))?;
                settle(home)?;
                let (first, _) = timed(|| write_once(&p))?;
                let after_first = allocated(&upper.join(&rel));
                let (second, _) = timed(|| write_once(&p))?;
                w.push(WriteFigures {
                    size: *s,
                    first_write_s: first,
                    second_write_s: second,
                    upper_bytes_after_first: after_first,
                    upper_bytes_after_second: allocated(&upper.join(&rel)),
                });
            }
            raw.entry(l.name()).or_default().push(w);
            let mut m = Vec::new();
            for op in META_OPS {
                let rel = format!("data/{op}-{rep}");
                let p = merged.join(&rel);
                crate::util::drop_cache(&crate::util::layer_dir(*l, home, "image").join(&rel))?;
                settle(home)?;
                let (t, _) = timed(|| match op {
                    "chmod" => {
                        use std::os::unix::fs::PermissionsExt;
                        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600))
                            .map_err(io("chmod", &p))
                    }
                    "chown" => {
                        std::os::unix::fs::chown(&p, Some(1), Some(1)).map_err(io("chown", &p))
                    }
                    _ => rustix::fs::setxattr(
                        &p,
                        "user.ovlink-bench",
                        b"1",
                        rustix::fs::XattrFlags::empty(),
                    )
                    .map_err(|e| io("setxattr", &p)(e.into())),
                })?;
                m.push(MetaFigures {
                    op,
                    size: ms,
                    seconds: t,
                    upper_bytes: allocated(&upper.join(&rel)),
                });
            }
            raw_meta.entry(l.name()).or_default().push(m);
            d.put(&cid)?;
            d.remove(&cid)?;
        }
    }
    for (name, reps) in raw {
        let n = reps.first().map_or(0, |r| r.len());
        let v = (0..n)
            .map(|i| {
                let col = |f: &dyn Fn(&WriteFigures) -> f64| {
                    median(reps.iter().filter_map(|r| r.get(i)).map(f).collect())
                };
                WriteFigures {
                    size: reps[0][i].size,
                    first_write_s: col(&|w| w.first_write_s),
                    second_write_s: col(&|w| w.second_write_s),
                    upper_bytes_after_first: col(&|w| w.upper_bytes_after_first as f64) as u64,
                    upper_bytes_after_second: col(&|w| w.upper_bytes_after_second as f64) as u64,
                }
            })
            .collect();
        res.writes.insert(name, v);
    }
    for (name, reps) in raw_meta {
        let n = reps.first().map_or(0, |r| r.len());
        let v = (0..n)
            .map(|i| {
                let col = |f: &dyn Fn(&MetaFigures) -> f64| {
                    median(reps.iter().filter_map(|r| r.get(i)).map(f).collect())
                };
                MetaFigures {
                    op: reps[0][i].op,
                    size: reps[0][i].size,
                    seconds: col(&|m| m.seconds),
                    upper_bytes: col(&|m| m.upper_bytes as f64) as u64,
                }
            })
            .collect();
        res.meta.insert(name, v);
    }
    drop(drivers);
    crate::util::remove_tree(&dir)?;
    Ok(res)
}
