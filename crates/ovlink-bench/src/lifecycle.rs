//! Commit, image removal and container start, per layout:
//!
//! * commit: a container changes K files; `diff` writes its layer tar and `create_and_apply`
//!   makes it a new image layer (what `docker commit` asks the driver). A layout without
//!   `diff` has no figure, and `commit_unsupported` says why.
//! * removal of an image: every layer of a 5-layer image removed, top first.
//! * container start: the `-init` layer and the container layer created (Docker's pair), the
//!   container mounted, and the first exec of a binary of the image through `merged/`.

use crate::error::{io, Result};
use crate::util::{median, settle, timed, Entry};
use crate::{open, row, BenchConfig, Layout, Narrator, Pair, Row};
use ovlink_driver::CreateOpts;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;

/// One layout's medians.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LifecycleFigures {
    /// diff + apply as a new layer, seconds (`None`: the layout has no diff).
    pub commit_s: Option<f64>,
    /// Bytes of the committed layer tar.
    pub commit_tar_bytes: Option<u64>,
    /// Why there is no commit figure.
    pub commit_unsupported: Option<String>,
    /// Removing every layer of the image, seconds.
    pub remove_image_s: f64,
    /// Create the layer pair, seconds.
    pub start_create_s: f64,
    /// Mount the container, seconds.
    pub start_mount_s: f64,
    /// First exec of the image's binary through merged/, seconds.
    pub start_exec_s: f64,
    /// The three together.
    pub start_s: f64,
}

/// Both layouts.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LifecycleResult {
    /// Files changed before the commit.
    pub commit_files: usize,
    /// Per layout name.
    pub layouts: BTreeMap<&'static str, LifecycleFigures>,
}

impl LifecycleResult {
    fn pair(&self, f: &dyn Fn(&LifecycleFigures) -> Option<f64>) -> Pair {
        let mut p = Pair::default();
        for l in [Layout::Overlay, Layout::Overlay2] {
            p.set(l, self.layouts.get(l.name()).and_then(f));
        }
        p
    }

    /// The summary rows.
    pub fn rows(&self, rows: &mut Vec<Row>) {
        let k = self.commit_files;
        row(
            rows,
            "commit",
            format!("commit of a container with {k} changed files (diff + apply)"),
            "s",
            self.pair(&|f| f.commit_s),
        );
        row(
            rows,
            "commit",
            "committed layer tar".into(),
            "bytes",
            self.pair(&|f| f.commit_tar_bytes.map(|b| b as f64)),
        );
        row(
            rows,
            "remove",
            "removal of a 5-layer image".into(),
            "s",
            self.pair(&|f| Some(f.remove_image_s)),
        );
        row(
            rows,
            "start",
            "container start: create the layer pair".into(),
            "s",
            self.pair(&|f| Some(f.start_create_s)),
        );
        row(
            rows,
            "start",
            "container start: mount".into(),
            "s",
            self.pair(&|f| Some(f.start_mount_s)),
        );
        row(
            rows,
            "start",
            "container start: first exec of the image's binary".into(),
            "s",
            self.pair(&|f| Some(f.start_exec_s)),
        );
        row(
            rows,
            "start",
            "container start, total".into(),
            "s",
            self.pair(&|f| Some(f.start_s)),
        );
    }
}

/// A binary to put in the image and exec from it.
fn host_binary() -> Result<std::path::PathBuf> {
    ["/usr/bin/true", "/bin/true"]
        .iter()
        .map(std::path::PathBuf::from)
        .find(|p| p.is_file())
        .ok_or_else(|| crate::BenchError::Config("no /usr/bin/true to exec from the image".into()))
}

/// Runs the scenario.
pub fn run(cfg: &BenchConfig, wd: &Path, say: Narrator<'_>) -> Result<LifecycleResult> {
    let dir = wd.join("lifecycle");
    std::fs::create_dir(&dir).map_err(io("create", &dir))?;
    let bin = host_binary()?;
    // A 5-layer image: a base with the binary and K files the commit will change, four small
    // layers above.
    let mut tars = Vec::new();
    let mut base = vec![Entry::Host("bin/true".into(), bin)];
    for i in 0..cfg.commit_files.max(1) {
        base.push(Entry::File(format!("etc/conf-{i}"), 4096, 0o644));
    }
    for i in 0..200 {
        base.push(Entry::File(format!("usr/share/doc-{i}"), 2048, 0o644));
    }
    for n in 0..5 {
        let t = dir.join(format!("layer-{n}.tar"));
        if n == 0 {
            crate::util::layer_tar(&t, &base)?;
        } else {
            crate::util::layer_tar(&t, &[Entry::File(format!("opt/layer-{n}"), 8192, 0o644)])?;
        }
        tars.push(t);
    }
    let mut raw: BTreeMap<&'static str, Vec<LifecycleFigures>> = BTreeMap::new();
    for rep in 0..cfg.reps {
        for &l in &cfg.layouts {
            say(&format!(
                "lifecycle: {} repetition {}/{}",
                l.name(),
                rep + 1,
                cfg.reps
            ));
            let home = dir.join(format!("{}-{rep}", l.name()));
            let d = open(l, &home, cfg)?;
            let ids: Vec<String> = (0..tars.len()).map(|n| format!("img-{n}")).collect();
            for (n, t) in tars.iter().enumerate() {
                crate::util::apply(
                    d.as_ref(),
                    &ids[n],
                    n.checked_sub(1).map(|p| ids[p].as_str()),
                    t,
                )?;
            }
            let top = ids[ids.len() - 1].clone();
            let mut f = LifecycleFigures::default();
            // Container start.
            settle(&home)?;
            let (create, _) = timed(|| {
                d.create_read_write("ctr-init", Some(&top), &CreateOpts::default())?;
                d.create_read_write("ctr", Some("ctr-init"), &CreateOpts::default())?;
                Ok(())
            })?;
            let (mount, merged) = timed(|| Ok(d.get("ctr", None)?))?;
            let exe = merged.join("bin/true");
            let (exec, status) = timed(|| {
                std::process::Command::new(&exe)
                    .status()
                    .map_err(io("exec", &exe))
            })?;
            if !status.success() {
                return Err(crate::BenchError::Config(format!(
                    "{} exited with {status}",
                    exe.display()
                )));
            }
            f.start_create_s = create;
            f.start_mount_s = mount;
            f.start_exec_s = exec;
            f.start_s = create + mount + exec;
            // Commit: change K files, diff, apply as a new layer.
            for i in 0..cfg.commit_files {
                let p = merged.join(format!("etc/conf-{i}"));
                std::fs::write(&p, format!("changed {i}\n")).map_err(io("write", &p))?;
            }
            d.put("ctr")?;
            settle(&home)?;
            let tarp = dir.join(format!("commit-{}-{rep}.tar", l.name()));
            let committed = timed(|| {
                let mut out = std::fs::File::create(&tarp).map_err(io("create", &tarp))?;
                d.diff("ctr", Some("ctr-init"), &mut out)?;
                drop(out);
                crate::util::apply(d.as_ref(), "committed", Some(&top), &tarp)
            });
            match committed {
                Ok((t, _)) => {
                    f.commit_s = Some(t);
                    f.commit_tar_bytes = std::fs::metadata(&tarp).ok().map(|m| m.len());
                    d.remove("committed")?;
                }
                Err(crate::BenchError::Driver(ovlink_driver::DriverError::Unsupported {
                    what,
                })) => {
                    f.commit_unsupported = Some(format!("{} has no {what}", l.name()));
                }
                Err(e) => return Err(e),
            }
            let _ = std::fs::remove_file(&tarp);
            d.remove("ctr")?;
            d.remove("ctr-init")?;
            // Removal of the image.
            settle(&home)?;
            let (rm, _) = timed(|| {
                for id in ids.iter().rev() {
                    d.remove(id)?;
                }
                Ok(())
            })?;
            f.remove_image_s = rm;
            raw.entry(l.name()).or_default().push(f);
            drop(d);
            crate::util::remove_tree(&home)?;
        }
    }
    let mut res = LifecycleResult {
        commit_files: cfg.commit_files,
        ..Default::default()
    };
    for (name, v) in raw {
        let m = |g: &dyn Fn(&LifecycleFigures) -> f64| median(v.iter().map(g).collect());
        let commit: Vec<f64> = v.iter().filter_map(|x| x.commit_s).collect();
        res.layouts.insert(
            name,
            LifecycleFigures {
                commit_s: (!commit.is_empty()).then(|| median(commit)),
                commit_tar_bytes: v.iter().find_map(|x| x.commit_tar_bytes),
                commit_unsupported: v.iter().find_map(|x| x.commit_unsupported.clone()),
                remove_image_s: m(&|x| x.remove_image_s),
                start_create_s: m(&|x| x.start_create_s),
                start_mount_s: m(&|x| x.start_mount_s),
                start_exec_s: m(&|x| x.start_exec_s),
                start_s: m(&|x| x.start_s),
            },
        );
    }
    crate::util::remove_tree(&dir)?;
    Ok(res)
}
