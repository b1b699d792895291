//! `ovlink image …`: import `docker save` / OCI tarballs through the driver, list images.

use super::Ctx;
use crate::cli::ImageCmd;
use crate::output;
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;

/// Shows a progress bar per layer on a terminal; silent otherwise.
struct Bar {
    bar: Option<ProgressBar>,
}

impl Bar {
    fn new() -> Self {
        Bar {
            bar: std::io::stderr().is_terminal().then(ProgressBar::hidden),
        }
    }
}

impl ovlink_image::Progress for Bar {
    fn layer_started(&self, index: usize, total: usize, id: &str, size: u64) {
        if let Some(b) = &self.bar {
            b.set_draw_target(indicatif::ProgressDrawTarget::stderr());
            b.reset();
            b.set_length(size);
            b.set_style(
                ProgressStyle::with_template(
                    "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            b.set_message(format!(
                "layer {}/{} {}",
                index + 1,
                total,
                &id[..id.len().min(12)]
            ));
        }
    }
    fn bytes(&self, n: u64) {
        if let Some(b) = &self.bar {
            b.inc(n);
        }
    }
    fn layer_done(&self, _index: usize, _reused: bool) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

pub fn run(ctx: &Ctx, cmd: ImageCmd) -> anyhow::Result<()> {
    let (root, kind) = (ctx.root.as_path(), ctx.kind);
    match cmd {
        ImageCmd::Import { file, name } => {
            let d = ctx.open()?;
            let store = ovlink_image::Store::open(root)?;
            let report =
                ovlink_image::import(d.as_ref(), &store, &file, name.as_deref(), &Bar::new())?;
            for l in &report.layers {
                println!("{}", l.chain_id);
            }
            let reused = report.layers.iter().filter(|l| l.reused).count();
            eprintln!(
                "imported {} as {} ({} layers, {} already present)",
                file.display(),
                report.name,
                report.layers.len(),
                reused
            );
            Ok(())
        }
        ImageCmd::Ls(j) => {
            let store = ovlink_image::Store::open_read_only(root);
            // Only this layout's images: another layout's have no layers here.
            let images = store.images_in(kind.name())?;
            if j.json {
                return output::json(&store.listing_in(kind.name())?);
            }
            let rows = images
                .iter()
                .map(|i| {
                    vec![
                        i.name.clone(),
                        i.id.trim_start_matches("sha256:")
                            .chars()
                            .take(12)
                            .collect(),
                        i.layers.len().to_string(),
                        i.layers
                            .last()
                            .map(|l| l[..l.len().min(12)].to_string())
                            .unwrap_or_default(),
                    ]
                })
                .collect::<Vec<_>>();
            output::table(&["NAME", "IMAGE ID", "LAYERS", "TOP LAYER"], &rows)
        }
        ImageCmd::Generate {
            output,
            entries,
            layers,
            seed,
            name,
            oci,
        } => {
            use ovlink_image::generate::{GenFormat, GenSpec};
            let spec = GenSpec::sized(entries, layers as usize, seed, name);
            let s = ovlink_image::genfile::generate_file(&spec, GenFormat::of(oci), &output)?;
            for id in s.chain_ids() {
                println!("{id}");
            }
            eprintln!("generated {} in {}", s.describe(), output.display());
            Ok(())
        }
        ImageCmd::Save { images, output } => {
            let d = ctx.open()?;
            let store = ovlink_image::Store::open(root)?;
            let names: Vec<&str> = images.iter().map(String::as_str).collect();
            let report = ovlink_image::save(d.as_ref(), &store, &names, &output)?;
            for (name, id, layers) in &report.images {
                eprintln!(
                    "saved {name} ({id}, {} layers) to {}",
                    layers.len(),
                    output.display()
                );
            }
            Ok(())
        }
    }
}
