//! `ovlink demo`: parsing and printing only; the walkthrough is `ovlink_lab::demo`, on the
//! layout `--driver` names, in a throw-away directory (inside `--root` when it was given).

use super::lab::{config, Printer};
use crate::cli::{DemoArgs, DriverKind};
use anyhow::Context as _;
use ovlink_lab::demo::{DemoConfig, DemoLayout};
use std::path::Path;

/// Runs `ovlink demo`. `root`: the `--root` given on the command line, if any.
pub fn run(root: Option<&Path>, kind: DriverKind, args: DemoArgs) -> anyhow::Result<()> {
    let p = Printer::new(args.json);
    let layout = match kind {
        DriverKind::Overlay => DemoLayout::Overlay,
        DriverKind::Overlay2 => DemoLayout::Overlay2,
    };
    let r = ovlink_lab::demo::run(
        &config(root, args.keep),
        &DemoConfig {
            layout,
            image: args.image,
        },
        &p,
    )?;
    if let Some(f) = &args.markdown {
        std::fs::write(f, p.worksheet(&ovlink_lab::kernel_release()))
            .with_context(|| format!("cannot write the worksheet {}", f.display()))?;
    }
    if args.json {
        crate::output::json(&r)?;
    }
    Ok(())
}
