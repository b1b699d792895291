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
    let root = ovlink_snapshotter::server::root_or_default(given_root.then_some(&*ctx.root));
    let (root, layout) = (root.as_path(), ctx.kind);
    let settings = ctx.init_config(root.to_path_buf());
    match c {
        SnapshotterCmd::Serve {
            socket,
            shutdown_timeout,
            max_connections,
            idle_timeout,
        } => {
            let (snap, rec) = Snapshotter::open(&Config {
                root: root.to_path_buf(),
                layout,
                sync: settings.sync,
                diff: settings.diff,
                symlinks: settings.symlinks,
            })
            .with_context(|| format!("cannot start the snapshotter on {}", root.display()))?;
            for line in rec.lines() {
                eprintln!("ovlink snapshotter: {line}");
            }
            let opts = ServeOptions {
                shutdown_timeout: Duration::from_secs(shutdown_timeout),
                max_connections,
                idle_timeout: Duration::from_secs(idle_timeout),
                ..ServeOptions::new(socket)
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
