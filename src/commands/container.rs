//! `ovlink container …`: a container is Docker's pair of layers on an image's top layer: an
//! `<id>-init` layer holding the files Docker's init layer creates (`/.dockerenv`,
//! `/etc/hosts`, …), and the container's own layer `<id>` on top of it (a copy of the init
//! layer's upper dir, the same lower).

use super::Ctx;
use crate::cli::ContainerCmd;
use crate::output;
use anyhow::Context as _;
use ovlink_driver::CreateOpts;
use std::path::Path;

/// What Docker's `initlayer.Setup` creates when the image does not have it.
const INIT_ENTRIES: &[(&str, &str)] = &[
    ("dev/pts", "dir"),
    ("dev/shm", "dir"),
    ("proc", "dir"),
    ("sys", "dir"),
    (".dockerenv", "file"),
    ("etc/resolv.conf", "file"),
    ("etc/hosts", "file"),
    ("etc/hostname", "file"),
    ("dev/console", "file"),
    ("etc/mtab", "/proc/mounts"),
];

/// Fills a mounted init layer like Docker does; existing paths are left alone.
fn populate_init(merged: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    for (rel, what) in INIT_ENTRIES {
        let p = merged.join(rel);
        if std::fs::symlink_metadata(&p).is_ok() {
            continue;
        }
        if let Some(parent) = p.parent() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(parent)?;
        }
        match *what {
            "dir" => std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(&p)?,
            "file" => {
                std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o755)
                    .open(&p)?;
            }
            target => std::os::unix::fs::symlink(target, &p)?,
        }
    }
    Ok(())
}

fn new_id() -> String {
    (0..4)
        .map(|_| ovlink_driver::lock::random_suffix())
        .collect()
}

pub fn run(ctx: &Ctx, cmd: ContainerCmd) -> anyhow::Result<()> {
    let (root, kind) = (ctx.root.as_path(), ctx.kind);
    let store = match cmd {
        // A read command: works on a read-only root and creates nothing.
        ContainerCmd::Ls(_) => ovlink_image::Store::open_read_only(root),
        _ => ovlink_image::Store::open(root)?,
    };
    match cmd {
        ContainerCmd::Create { name, image } => {
            let img = store.image_in(&image, kind.name())?;
            let top = img
                .layers
                .last()
                .context("the image has no layers")?
                .clone();
            let d = ctx.open()?;
            let id = new_id();
            let init = format!("{id}-init");
            let made = (|| -> anyhow::Result<()> {
                d.create_read_write(&init, Some(&top), &CreateOpts::default())?;
                let merged = d.get(&init, None)?;
                let filled = populate_init(&merged)
                    .with_context(|| format!("cannot fill the init layer at {}", merged.display()));
                d.put(&init)?;
                filled?;
                d.create_read_write(&id, Some(&init), &CreateOpts::default())?;
                store.put_container(&ovlink_image::ContainerRecord {
                    name: name.clone(),
                    image: image.clone(),
                    layer_id: id.clone(),
                    init_layer_id: init.clone(),
                    created: std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map(|d| d.as_secs())
                        .unwrap_or(0),
                })?;
                Ok(())
            })();
            if let Err(mut e) = made {
                // Nothing half-made: drop whichever layers this command created, and say so
                // when that fails too (a layer left behind must not pass for a container).
                for l in [&id, &init] {
                    if d.exists(l) {
                        if let Err(re) = d.remove(l) {
                            e = anyhow::anyhow!(
                                "{e:#}; the half-made layer {l} could not be removed either \
                                 ({re}): remove it with `ovlink layer rm {l}`"
                            );
                        }
                    }
                }
                return Err(e);
            }
            println!("{id}");
            Ok(())
        }
        ContainerCmd::Ls(j) => {
            let cs = store.containers()?;
            if j.json {
                return output::json(&cs);
            }
            let rows = cs
                .iter()
                .map(|c| vec![c.name.clone(), c.image.clone(), c.layer_id.clone()])
                .collect::<Vec<_>>();
            output::table(&["NAME", "IMAGE", "LAYER ID"], &rows)
        }
        ContainerCmd::Commit { name, image } => {
            let d = ctx.open()?;
            let r = ovlink_image::commit(d.as_ref(), &store, &name, &image)?;
            println!("{}", r.image_id);
            eprintln!(
                "committed {name} as {} (new layer {}, {} bytes of files)",
                r.name, r.layer_id, r.size
            );
            Ok(())
        }
        ContainerCmd::Rm { name } => {
            let c = store.container(&name)?;
            let d = ctx.open()?;
            for id in [&c.layer_id, &c.init_layer_id] {
                if d.exists(id) {
                    d.remove(id)?;
                }
            }
            store.remove_container(&name)?;
            Ok(())
        }
    }
}
