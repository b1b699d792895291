//! `ovlink layer …`: the graphdriver calls, one by one.

use super::Ctx;
use crate::cli::{DiffTarget, LayerCmd};
use crate::output;
use anyhow::Context as _;
use ovlink_driver::{CreateOpts, Layout};
use std::io::Write as _;
use std::path::PathBuf;

pub fn run(ctx: &Ctx, cmd: LayerCmd) -> anyhow::Result<()> {
    match (&cmd, ctx.kind) {
        (
            LayerCmd::Rm {
                layer,
                background: true,
            },
            Layout::Overlay,
        ) => return remove_in_background(ctx, &layer.id),
        (LayerCmd::Reclaim { name, lock_fd }, Layout::Overlay) => {
            let d = ctx.open_legacy()?;
            if let (Some(name), Some(fd)) = (name, lock_fd) {
                let held = PathBuf::from(format!("/proc/self/fd/{fd}"));
                return Ok(d.reclaim_handed_over(name, &held)?);
            }
            for n in d.reclaim_pending()? {
                println!("{n}");
            }
            return Ok(());
        }
        (LayerCmd::Reclaim { .. }, _) => {
            anyhow::bail!("layer reclaim is for the overlay layout (overlay2 removes at once)")
        }
        _ => {}
    }
    let d = ctx.open()?;
    match cmd {
        LayerCmd::Create(l) => d.create(&l.id, l.parent.as_deref(), &CreateOpts::default())?,
        LayerCmd::CreateRw(l) => {
            d.create_read_write(&l.id, l.parent.as_deref(), &CreateOpts::default())?
        }
        LayerCmd::Apply { layer, file } => {
            let (id, parent) = (layer.id, layer.parent);
            let mut input: Box<dyn std::io::Read> = if file.as_os_str() == "-" {
                Box::new(std::io::stdin().lock())
            } else {
                Box::new(
                    std::fs::File::open(&file)
                        .with_context(|| format!("cannot open {}", file.display()))?,
                )
            };
            let size = d.apply_or_create(&id, parent.as_deref(), &mut input)?;
            println!("{size}");
        }
        LayerCmd::Rm { layer, .. } => d.remove(&layer.id)?,
        LayerCmd::Reclaim { .. } => {} // handled above
        LayerCmd::Ls(j) => {
            let layers = d.layers()?;
            if j.json {
                return output::json(&layers);
            }
            let rows = layers
                .iter()
                .map(|l| {
                    let state = if l.mounted { "mounted" } else { "" };
                    let lower = l.kind.lower_id().unwrap_or_default();
                    [&l.id, l.kind.name(), state, lower]
                        .map(String::from)
                        .to_vec()
                })
                .collect::<Vec<_>>();
            output::table(&["ID", "KIND", "STATE", "LOWER"], &rows)?;
        }
        LayerCmd::Inspect { layer, json } => {
            let l = d.inspect(&layer.id)?;
            if json.json {
                return output::json(&l);
            }
            println!("id:      {}", l.id);
            match l.kind.lower_id() {
                Some(lower) => println!(
                    "kind:    container layer on {lower}\nmounted: {}",
                    l.mounted
                ),
                None => println!("kind:    {} layer", l.kind.name()),
            }
            for (k, v) in l.graph_driver.data {
                println!("{k}: {v}");
            }
        }
    }
    Ok(())
}

/// `ovlink status`: the driver's `docker info` lines.
pub fn status(ctx: &Ctx, json: bool) -> anyhow::Result<()> {
    let st = ovlink_driver::status::lines(ctx.open()?.as_ref());
    if json {
        return output::json(&ovlink_driver::status::object(&st));
    }
    for (k, v) in st {
        println!("{k}: {v}");
    }
    Ok(())
}

/// `ovlink diff`
pub fn diff(ctx: &Ctx, t: DiffTarget, output: Option<PathBuf>) -> anyhow::Result<()> {
    let d = ctx.open()?;
    let parent = d.diff_parent(&t.id, t.parent.as_deref())?;
    let id = t.id.as_str();
    match output {
        Some(path) => {
            // A regular file appears only complete; /dev/null or a fifo is written in place.
            let out = ovlink_fs::output::OutputFile::create(&path, ".ovlink-diff-")?;
            let mut w = std::io::BufWriter::new(out.file());
            d.diff(id, parent.as_deref(), &mut w)?;
            w.flush()
                .with_context(|| format!("cannot write {}", path.display()))?;
            drop(w);
            out.commit(false)?;
        }
        None => {
            if std::io::IsTerminal::is_terminal(&std::io::stdout()) {
                anyhow::bail!("refusing to write a tar to a terminal: use -o FILE or a pipe");
            }
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            d.diff(id, parent.as_deref(), &mut out)?;
            out.flush()?;
        }
    }
    Ok(())
}

/// `ovlink changes`
pub fn changes(ctx: &Ctx, t: DiffTarget, json: bool) -> anyhow::Result<()> {
    let d = ctx.open()?;
    let parent = d.diff_parent(&t.id, t.parent.as_deref())?;
    let changes = d.changes(&t.id, parent.as_deref())?;
    if json {
        return output::json(&changes);
    }
    // One line per change, sorted as `docker diff | sort` prints them (A, C, D; by path).
    let mut lines: Vec<String> = changes.iter().map(|c| format!("{c}\n")).collect();
    lines.sort();
    let mut out = std::io::stdout().lock();
    lines.iter().try_for_each(|l| out.write_all(l.as_bytes()))?;
    Ok(())
}

/// `ovlink diff-size`
pub fn diff_size(ctx: &Ctx, t: DiffTarget, json: bool) -> anyhow::Result<()> {
    let d = ctx.open()?;
    let parent = d.diff_parent(&t.id, t.parent.as_deref())?;
    let size = d.diff_size(&t.id, parent.as_deref())?;
    if json {
        return output::json(&serde_json::json!({ "size": size }));
    }
    println!("{size}");
    Ok(())
}

/// `layer rm --background`: the layer is renamed away now; a detached `ovlink layer reclaim`
/// inherits the fd holding the trash's lock and deletes the tree after this process is gone.
/// If it cannot be started, the tree is deleted here.
fn remove_in_background(ctx: &Ctx, id: &str) -> anyhow::Result<()> {
    let trash = ctx.open_legacy()?.remove_detached(id)?;
    let Ok(exe) = std::env::current_exe() else {
        return Ok(trash.reclaim()?);
    };
    Ok(trash.hand_over(|name, fd| {
        let mut c = std::process::Command::new(exe);
        c.arg("--root").arg(&ctx.root);
        c.args([
            "layer",
            "reclaim",
            "--name",
            name,
            "--lock-fd",
            &fd.to_string(),
        ]);
        c
    })?)
}
