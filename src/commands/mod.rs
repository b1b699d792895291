//! Dispatch of the subcommands; each group lives in its own module.

pub mod bench;
mod check;
mod container;
mod demo;
mod image;
pub mod lab;
mod layer;
pub mod plugin;
pub mod report;
mod snapshotter;

use crate::cli::{Cli, Command, DriverKind};
use anyhow::Context as _;
use ovlink_driver::{Driver, InitConfig, OverlayDriver};
use std::path::Path;

/// Which global flags were given (command line or environment), not defaulted.
#[derive(Debug, Clone, Copy, Default)]
pub struct Given {
    /// `--root` / `OVLINK_ROOT`.
    pub root: bool,
    /// `--driver`.
    pub driver: bool,
}

/// Runs the parsed command line.
pub fn run(cli: Cli, given: Given) -> anyhow::Result<()> {
    let root = cli.root.as_path();
    let kind = cli.driver;
    if let (Some(m), false) = (
        cli.symlinks,
        matches!(cli.command, Command::Bench(_) | Command::Lab(_)),
    ) {
        // Recorded in (or checked against) the home once; every later open uses the record.
        if kind == DriverKind::Overlay2 {
            anyhow::bail!("--symlinks is a setting of the legacy overlay layout (overlay2 copies no layer trees)");
        }
        let home = root.join("overlay");
        OverlayDriver::init(&InitConfig {
            home: home.clone(),
            symlinks: Some(m.specials()),
            ..Default::default()
        })
        .with_context(|| format!("cannot set --symlinks for {}", home.display()))?;
    }
    match cli.command {
        Command::Check(j) => check::run(root, kind, j.json),
        Command::Layer(c) => layer::run(root, kind, c),
        Command::Mount { id, mount_label } => {
            let d = open_any_driver(root, kind)?;
            let p = d.get(&id, mount_label.as_deref())?;
            println!("{}", p.display());
            Ok(())
        }
        Command::Diff { id, parent, output } => layer::diff(root, kind, &id, parent, output),
        Command::Changes { id, parent, json } => layer::changes(root, kind, &id, parent, json),
        Command::DiffSize { id, parent, json } => layer::diff_size(root, kind, &id, parent, json),
        Command::Umount { id } => Ok(open_any_driver(root, kind)?.put(&id)?),
        Command::Status(j) => {
            let d = open_any_driver(root, kind)?;
            let mut st = vec![("Storage Driver".to_string(), d.name().to_string())];
            st.push(("Home".to_string(), d.home().display().to_string()));
            st.extend(d.status());
            if j.json {
                crate::output::json(&st)
            } else {
                for (k, v) in st {
                    println!("{k}: {v}");
                }
                Ok(())
            }
        }
        Command::Image(c) => image::run(root, kind, c),
        Command::Container(c) => container::run(root, kind, c),
        Command::Report(a) => report::run(root, kind, a),
        Command::Bench(a) => bench::run(a, cli.symlinks.map(|m| m.specials())),
        Command::Lab(c) => lab::run(
            given.root.then_some(root),
            given.driver,
            c,
            cli.symlinks.map(|m| m.specials()),
        ),
        Command::Plugin(c) => plugin::run(kind, c),
        Command::Snapshotter(c) => snapshotter::run(root, kind, c),
        Command::Demo(a) => demo::run(given.root.then_some(root), kind, a),
    }
}

/// Initializes the overlay driver on `<root>/overlay`.
pub fn open_driver(root: &Path) -> anyhow::Result<OverlayDriver> {
    let home = root.join("overlay");
    OverlayDriver::init(&InitConfig {
        home: home.clone(),
        ..Default::default()
    })
    .with_context(|| format!("cannot initialize the overlay driver in {}", home.display()))
}

/// Prints the warnings of an init whose recovery could not finish (the command goes on).
fn report_recovery(d: &dyn Driver) {
    for (k, v) in d.status() {
        if k == "Warning" && v.starts_with(ovlink_driver::overlay::RECOVERY_WARNING) {
            eprintln!("ovlink: warning: {}: {v}", d.home().display());
        }
    }
}

/// Initializes the driver of the chosen layout on `<root>/<overlay|overlay2>`.
pub fn open_any_driver(root: &Path, kind: DriverKind) -> anyhow::Result<Box<dyn Driver>> {
    let d = open_layout(root, kind)?;
    report_recovery(d.as_ref());
    Ok(d)
}

fn open_layout(root: &Path, kind: DriverKind) -> anyhow::Result<Box<dyn Driver>> {
    match kind {
        DriverKind::Overlay => Ok(Box::new(open_driver(root)?)),
        DriverKind::Overlay2 => {
            let home = root.join("overlay2");
            Ok(Box::new(
                ovlink_overlay2::Overlay2Driver::init(&InitConfig {
                    home: home.clone(),
                    ..Default::default()
                })
                .with_context(|| {
                    format!(
                        "cannot initialize the overlay2 driver in {}",
                        home.display()
                    )
                })?,
            ))
        }
    }
}
