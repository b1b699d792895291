//! `ovlink snapshotter …`: containerd's proxy snapshotter. This module only maps the flags to
//! the `ovlink-snapshotter` crate's typed options and prints what a start repaired; the
//! service, the store and the lifecycle are in that crate.

use crate::cli::SnapshotterCmd;
use anyhow::Context as _;
use ovlink_snapshotter::{Config, ServeOptions, Snapshotter};
use std::sync::Arc;
use std::time::Duration;

/// Runs `ovlink snapshotter …`.
pub fn run(ctx: &super::Ctx, c: SnapshotterCmd, given_root: bool) -> anyhow::Result<()> {
    // Its own root unless one is given: a home has one owner.
    let root = match given_root {
        true => ctx.root.clone(),
        false => std::path::PathBuf::from(ovlink_snapshotter::server::DEFAULT_ROOT),
    };
    let (root, layout) = (root.as_path(), ctx.kind);
    let settings = ctx.init_config(root.to_path_buf());
    match c {
        SnapshotterCmd::Serve {
            socket,
            shutdown_timeout,
        } => {
            let (snap, rec) = Snapshotter::open(&Config {
                root: root.to_path_buf(),
                layout,
                sync: settings.sync,
                diff: settings.diff,
                symlinks: settings.symlinks,
            })
            .with_context(|| format!("cannot start the snapshotter on {}", root.display()))?;
            for (k, n) in &rec.finished_commits {
                eprintln!("ovlink snapshotter: finished the interrupted commit of {k:?} as {n:?}");
            }
            for id in &rec.orphan_layers {
                eprintln!("ovlink snapshotter: removed layer {id}, which no snapshot names");
            }
            for w in &rec.warnings {
                eprintln!("ovlink snapshotter: warning: {w}");
            }
            for k in &rec.missing_layers {
                eprintln!("ovlink snapshotter: warning: the layer of snapshot {k:?} is missing");
            }
            let opts = ServeOptions {
                socket,
                shutdown_timeout: Duration::from_secs(shutdown_timeout),
            };
            let home = snap.home().to_path_buf();
            ovlink_snapshotter::serve(Arc::new(snap), &opts, |s| {
                eprintln!(
                    "ovlink snapshotter: serving {} ({}) on {}",
                    home.display(),
                    layout.name(),
                    s.display()
                );
            })
            .context("snapshotter")?;
            Ok(())
        }
    }
}
