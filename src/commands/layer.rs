//! `ovlink layer …`: the graphdriver calls, one by one.

use super::open_any_driver;
use crate::cli::{DriverKind, LayerCmd};
use crate::output;
use anyhow::Context as _;
use ovlink_driver::{CreateOpts, LayerKind};
use std::path::Path;

pub fn run(root: &Path, kind: DriverKind, cmd: LayerCmd) -> anyhow::Result<()> {
    let d = open_any_driver(root, kind)?;
    match cmd {
        LayerCmd::Create { id, parent } => {
            d.create(&id, parent.as_deref(), &CreateOpts::default())?
        }
        LayerCmd::CreateRw { id, parent } => {
            d.create_read_write(&id, parent.as_deref(), &CreateOpts::default())?
        }
        LayerCmd::Apply { id, parent, file } => {
            let mut input: Box<dyn std::io::Read> = if file.as_os_str() == "-" {
                Box::new(std::io::stdin().lock())
            } else {
                Box::new(
                    std::fs::File::open(&file)
                        .with_context(|| format!("cannot open {}", file.display()))?,
                )
            };
            let created = !d.exists(&id);
            if created {
                d.create(&id, parent.as_deref(), &CreateOpts::default())?;
            }
            match d.apply_diff(&id, parent.as_deref(), &mut input) {
                Ok(size) => println!("{size}"),
                Err(e) => {
                    if created {
                        // Nothing half-done: the layer this command created goes again.
                        let _ = d.remove(&id);
                    }
                    return Err(e.into());
                }
            }
        }
        LayerCmd::Rm { id } => d.remove(&id)?,
        LayerCmd::Ls(j) => {
            let layers = d.layers()?;
            if j.json {
                return output::json(&layers);
            }
            let rows = layers
                .iter()
                .map(|l| {
                    let (kind, parent) = match &l.kind {
                        LayerKind::Image => ("image", String::new()),
                        LayerKind::Container { lower_id } => ("container", lower_id.clone()),
                        LayerKind::Incomplete => ("incomplete", String::new()),
                    };
                    vec![
                        l.id.clone(),
                        kind.to_string(),
                        if l.mounted {
                            "mounted".into()
                        } else {
                            String::new()
                        },
                        parent,
                    ]
                })
                .collect::<Vec<_>>();
            output::table(&["ID", "KIND", "STATE", "LOWER"], &rows)?;
        }
        LayerCmd::Inspect { id, json } => {
            let kind = d.layer_kind(&id)?;
            let meta = d.metadata(&id)?;
            let mounted = d.layers()?.into_iter().any(|l| l.id == id && l.mounted);
            let v = serde_json::json!({
                "Id": id,
                "Kind": kind,
                "Mounted": mounted,
                "GraphDriver": { "Name": d.name(), "Data": meta },
            });
            if json {
                return output::json(&v);
            }
            println!("id:      {id}");
            match &kind {
                LayerKind::Image => println!("kind:    image layer"),
                LayerKind::Container { lower_id } => {
                    println!("kind:    container layer on {lower_id}");
                    println!("mounted: {mounted}");
                }
                LayerKind::Incomplete => println!("kind:    incomplete"),
            }
            for (k, v) in meta {
                println!("{k}: {v}");
            }
        }
    }
    Ok(())
}
