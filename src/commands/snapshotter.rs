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
            if json {
                let v: Vec<_> = recs
                    .iter()
                    .map(|(k, r)| {
                        serde_json::json!({
                            "key": k, "kind": r.kind.name(), "parent": r.parent, "layer": r.layer,
                        })
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                for (k, r) in &recs {
                    let dash = |s: &str| {
                        if s.is_empty() {
                            "-".to_string()
                        } else {
                            s.to_string()
                        }
                    };
                    println!(
                        "{} {} {} {}",
                        r.kind.name(),
                        k,
                        dash(&r.parent),
                        r.layer.as_deref().unwrap_or("-")
                    );
                }
            }
            Ok(())
        }
        SnapshotterCmd::Call { socket, json, call } => call_one(&socket, json, call),
    }
}

/// `ovlink snapshotter call`: one call, its answer printed.
fn call_one(socket: &std::path::Path, json: bool, call: SnapshotCall) -> anyhow::Result<()> {
    use ovlink_snapshotter::client::{Client, MountSpec};
    let mut c = Client::connect(socket)?;
    let print_mounts = |m: Vec<MountSpec>| -> anyhow::Result<()> {
        if json {
            println!("{}", serde_json::to_string_pretty(&m)?);
        } else {
            for m in m {
                println!("{} {} {}", m.kind, m.source, m.options.join(","));
            }
        }
        Ok(())
    };
    match call {
        SnapshotCall::Prepare { key, parent } => print_mounts(c.prepare(&key, &parent)?),
        SnapshotCall::View { key, parent } => print_mounts(c.view(&key, &parent)?),
        SnapshotCall::Mounts { key } => print_mounts(c.mounts(&key)?),
        SnapshotCall::Commit { name, key } => Ok(c.commit(&name, &key)?),
        SnapshotCall::Remove { key } => Ok(c.remove(&key)?),
        SnapshotCall::Stat { key } => {
            println!("{}", serde_json::to_string_pretty(&c.stat(&key)?)?);
            Ok(())
        }
        SnapshotCall::Usage { key } => {
            let (inodes, bytes) = c.usage(&key)?;
            if json {
                println!("{}", serde_json::json!({"inodes": inodes, "bytes": bytes}));
            } else {
                println!("{inodes} inodes, {bytes} bytes");
            }
            Ok(())
        }
        SnapshotCall::List => {
            let all = c.list()?;
            if json {
                println!("{}", serde_json::to_string_pretty(&all)?);
            } else {
                for i in all {
                    let parent = if i.parent.is_empty() { "-" } else { &i.parent };
                    println!("{} {} {}", i.kind, i.name, parent);
                }
            }
            Ok(())
        }
    }
}
