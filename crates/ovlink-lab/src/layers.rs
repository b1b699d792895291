//! `ovlink lab layers`: one generated image imported into both layouts side by side, a
//! container on each: the mount lines (one lowerdir against one per layer), the inodes each
//! home costs, and a deep read (a file only the bottom layer has) through both merged dirs.

use crate::error::{io, LabError, Result};
use crate::scratch::{mount_line, Scratch};
use crate::{LabConfig, Narrator, Say};
use ovlink_driver::{CreateOpts, Driver, InitConfig, Layout};
use serde::Serialize;
use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// What `lab layers` is asked to do.
#[derive(Debug, Clone)]
pub struct LayersConfig {
    /// Layers of the image.
    pub layers: usize,
    /// Leaf directories of its base layer (one file each).
    pub dirs: u32,
}

impl Default for LayersConfig {
    fn default() -> Self {
        LayersConfig {
            layers: 8,
            dirs: 300,
        }
    }
}

/// One layout's side.
#[derive(Debug, Clone, Serialize)]
pub struct LayoutSide {
    /// `overlay` or `overlay2`.
    pub layout: &'static str,
    /// The container's mount line.
    pub mount_line: String,
    /// lowerdirs in it.
    pub lowerdirs: usize,
    /// Bytes of the mount's option string.
    pub options_len: usize,
    /// Distinct inodes in the home (image layers and the container).
    pub home_inodes: u64,
    /// Microseconds of the first stat of the deep file through merged/ (fresh mount).
    pub first_lookup_us: f64,
    /// Mean microseconds of 1000 more stats (dentry cache warm).
    pub warm_lookup_us: f64,
    /// SHA-free content check: the deep file's bytes.
    pub deep_bytes: u64,
}

/// What `lab layers` observed.
#[derive(Debug, Clone, Serialize)]
pub struct LayersResult {
    /// Image layers.
    pub image_layers: usize,
    /// The file only the bottom layer has (relative path).
    pub deep_file: String,
    /// Legacy, then overlay2.
    pub sides: Vec<LayoutSide>,
    /// Both merged dirs gave the same bytes for the deep file.
    pub same_content: bool,
}

fn home_inodes(home: &Path) -> u64 {
    let mut seen = HashSet::new();
    // Not into the mounted merged/ dirs: those show the image, they do not cost inodes.
    for e in walkdir::WalkDir::new(home)
        .into_iter()
        .filter_entry(|e| e.file_name() != "merged")
        .filter_map(|e| e.ok())
    {
        if let Ok(m) = e.metadata() {
            seen.insert(m.ino());
        }
    }
    seen.len() as u64
}

/// Runs `lab layers`.
pub fn run(cfg: &LabConfig, c: &LayersConfig, n: &dyn Narrator) -> Result<LayersResult> {
    crate::scratch::require_root("lab layers")?;
    let say = Say(n);
    let s = Scratch::new(cfg, "lab-layers")?;
    let d = s.path().to_path_buf();
    let root = d.join("root");
    say.title("ovlink lab layers: the same image in the legacy overlay and in overlay2");
    let tree = crate::inodes::Tree {
        dirs: c.dirs.max(1),
    };
    let n_layers = c.layers.max(2) as u32;
    say.cmd(format!("cd {}", d.display()));
    say.text(format!(
        "the image: a base layer with {} directories and {} files (srv/gNN/dNNN/f), then {} small \
         update layers that each rewrite 4 files and add one",
        tree.dirs + tree.dirs.div_ceil(10) + 1,
        tree.dirs,
        n_layers - 1
    ));
    let drivers = Layout::ALL
        .into_iter()
        .map(|l| {
            let cfg = InitConfig {
                home: root.join(l.home_name()),
                ..Default::default()
            };
            Ok((l.name(), ovlink_layouts::open(l, &cfg)?))
        })
        .collect::<Result<Vec<(&'static str, Box<dyn Driver>)>>>()?;
    let ids: Vec<String> = (0..n_layers).map(|k| format!("layer-{k}")).collect();
    let mut merged = Vec::new();
    for (name, drv) in &drivers {
        for k in 0..n_layers {
            let tar = if k == 0 {
                tree.base()?
            } else {
                tree.update(k)?
            };
            let parent = (k > 0).then(|| ids[k as usize - 1].as_str());
            // The same tars on disk, so the printed commands can be retyped (with --keep).
            let file = d.join(format!("layer-{k}.tar"));
            std::fs::write(&file, &tar).map_err(io("write", &file))?;
            crate::inodes::add_layer(drv.as_ref(), &ids[k as usize], parent, &tar)?;
        }
        say.cmd(format!(
            "ovlink --root root --driver {name} layer apply layer-0 layer-0.tar; ovlink --root root --driver {name} layer apply layer-1 --parent layer-0 layer-1.tar; … layer-{}",
            n_layers - 1
        ));
        let cid = format!("ctr-{name}");
        let top = &ids[n_layers as usize - 1];
        drv.create_read_write(&cid, Some(top), &CreateOpts::default())?;
        say.cmd(format!(
            "ovlink --root root --driver {name} layer create-rw {cid} --parent {top}; ovlink --root root --driver {name} mount {cid}"
        ));
        merged.push(drv.get(&cid, None)?);
    }
    // A file only the bottom layer has: a leaf no update layer rewrites.
    let deep_leaf = (0..tree.dirs)
        .rev()
        .find(|i| (1..n_layers).all(|k| !tree.touched(k).contains(i)))
        .ok_or_else(|| LabError::Unexpected("every file is rewritten by some layer".into()))?;
    let deep = PathBuf::from(tree.leaf(deep_leaf)).join("f");
    let layer_ids = ids;

    say.step("the two mounts");
    let mut sides = Vec::new();
    let mut contents = Vec::new();
    for ((name, _), m) in drivers.iter().zip(&merged) {
        let line = mount_line(m).unwrap_or_default();
        let opts = line.split(' ').nth(3).unwrap_or_default().to_string();
        let lowerdirs = opts
            .split(',')
            .find_map(|o| o.strip_prefix("lowerdir="))
            .map(|l| l.split(':').count())
            .unwrap_or(0);
        say.cmd(format!("grep {} /proc/mounts", m.display()));
        say.out(line.clone());
        let p = m.join(&deep);
        let t = Instant::now();
        let meta = std::fs::metadata(&p).map_err(io("stat", &p))?;
        let first_lookup_us = t.elapsed().as_secs_f64() * 1e6;
        let t = Instant::now();
        for _ in 0..1000 {
            std::fs::metadata(&p).map_err(io("stat", &p))?;
        }
        let warm_lookup_us = t.elapsed().as_secs_f64() * 1e6 / 1000.0;
        contents.push(std::fs::read(&p).map_err(io("read", &p))?);
        let home = root.join(name);
        sides.push(LayoutSide {
            layout: name,
            mount_line: line,
            lowerdirs,
            options_len: opts.len(),
            home_inodes: home_inodes(&home),
            first_lookup_us,
            warm_lookup_us,
            deep_bytes: meta.len(),
        });
    }
    say.step("side by side");
    say.out(format!(
        "{:<9} {:>9} {:>12} {:>12} {:>16} {:>15}",
        "LAYOUT", "LOWERDIRS", "OPTIONS", "INODES", "1ST STAT (us)", "WARM STAT (us)"
    ));
    for sd in &sides {
        say.out(format!(
            "{:<9} {:>9} {:>12} {:>12} {:>16.1} {:>15.2}",
            sd.layout,
            sd.lowerdirs,
            format!("{} B", sd.options_len),
            sd.home_inodes,
            sd.first_lookup_us,
            sd.warm_lookup_us
        ));
    }
    say.saw(format!(
        "the legacy container mounts {} lowerdir (the top layer's root/ already holds the whole image, as hardlinks \
         and re-made directories); overlay2 mounts {} (one per layer) and its homes cost {} inodes against {}",
        sides[0].lowerdirs, sides[1].lowerdirs, sides[1].home_inodes, sides[0].home_inodes
    ));
    say.saw(format!(
        "/{}, which only the bottom layer has, reads the same through both: {}; a first lookup walks the \
         lowerdirs top to bottom in overlay2 (timings are one machine's, for discussion, not proof)",
        deep.display(),
        contents.windows(2).all(|w| w[0] == w[1])
    ));
    say.article(
        "overlay2 reads slightly slower than overlay at first because it looks through several layers",
        "measured above on this machine: both pay the lookup once, then the dentry cache answers",
    );
    for (_, drv) in &drivers {
        drv.cleanup()?;
    }
    say.ask("Why does the legacy layout need only one lowerdir?");
    say.ask("Where do the extra inodes of the legacy home come from?");
    say.ask("Why does overlay2 mount with l/ short names and a working directory?");
    let same_content = contents.windows(2).all(|w| w[0] == w[1]);
    s.finish(cfg, &say);
    Ok(LayersResult {
        image_layers: layer_ids.len(),
        deep_file: deep.display().to_string(),
        sides,
        same_content,
    })
}
