//! `ovlink snapshotter …`: containerd's proxy snapshotter. This module only maps the flags to
//! the `ovlink-snapshotter` crate's typed options and prints what a start repaired; the
//! service, the store and the lifecycle are in that crate.

use crate::cli::{SnapshotCall, SnapshotterCmd};
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
        SnapshotterCmd::Ls { json } => {
            let recs = ovlink_snapshotter::snapshotter::records_of(root, layout)?;
            print!(
                "{}",
                ovlink_snapshotter::snapshotter::render_records(&recs, json)?
            );
            Ok(())
        }
        SnapshotterCmd::Call { socket, json, call } => call_one(&socket, json, call),
    }
}

/// `ovlink snapshotter call`: one call, its answer printed.
fn call_one(socket: &std::path::Path, json: bool, call: SnapshotCall) -> anyhow::Result<()> {
    use ovlink_snapshotter::client::{render_list, render_mounts, render_usage, Client};
    let mut c = Client::connect(socket)?;
    let out = match call {
        SnapshotCall::Prepare { key, parent } => render_mounts(&c.prepare(&key, &parent)?, json)?,
        SnapshotCall::View { key, parent } => render_mounts(&c.view(&key, &parent)?, json)?,
        SnapshotCall::Mounts { key } => render_mounts(&c.mounts(&key)?, json)?,
        SnapshotCall::Commit { name, key } => c.commit(&name, &key).map(|()| String::new())?,
        SnapshotCall::Remove { key } => c.remove(&key).map(|()| String::new())?,
        SnapshotCall::Stat { key } => serde_json::to_string_pretty(&c.stat(&key)?)? + "\n",
        SnapshotCall::Usage { key } => render_usage(c.usage(&key)?, json),
        SnapshotCall::List => render_list(&c.list()?, json)?,
    };
    print!("{out}");
    Ok(())
}
