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
use ovlink_driver::{Driver, InitConfig};
use ovlink_layouts::OverlayDriver;
use std::path::PathBuf;

/// Which global flags were given (command line or environment), not defaulted.
#[derive(Debug, Clone, Copy, Default)]
pub struct Given {
    /// `--root` / `OVLINK_ROOT`.
    pub root: bool,
    /// `--driver`.
    pub driver: bool,
}

/// What every command is given by the global flags: the root, the layout and the layout's
/// settings (`--sync`, `--reclaim`, `--diff-mode`); the one place that opens a layout.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// `--root`.
    pub root: PathBuf,
    /// `--driver`.
    pub kind: DriverKind,
    /// The settings, with an empty home (filled in by [`Ctx::init_config`]).
    base: InitConfig,
}

impl Ctx {
    /// The init config of the home `home` with the global settings.
    pub fn init_config(&self, home: PathBuf) -> InitConfig {
        InitConfig {
            home,
            ..self.base.clone()
        }
    }

    /// The layout `--driver` names.
    pub fn layout(&self) -> ovlink_driver::checks::Layout {
        match self.kind {
            DriverKind::Overlay => ovlink_driver::checks::Layout::Overlay,
            DriverKind::Overlay2 => ovlink_driver::checks::Layout::Overlay2,
        }
    }

    /// Initializes the driver of the chosen layout on `<root>/<overlay|overlay2>` and prints
    /// the warnings of a recovery that could not finish.
    pub fn open(&self) -> anyhow::Result<Box<dyn Driver>> {
        let d = self.open_layout()?;
        report_recovery(d.as_ref());
        Ok(d)
    }

    /// Initializes the legacy overlay driver on `<root>/overlay`.
    pub fn open_legacy(&self) -> anyhow::Result<OverlayDriver> {
        let home = self.root.join("overlay");
        OverlayDriver::init(&self.init_config(home.clone()))
            .with_context(|| format!("cannot initialize the overlay driver in {}", home.display()))
    }

    fn open_layout(&self) -> anyhow::Result<Box<dyn Driver>> {
        let layout = self.layout();
        let home = self.root.join(layout.home_name());
        ovlink_layouts::open(layout, &self.init_config(home.clone())).with_context(|| {
            format!(
                "cannot initialize the {} driver in {}",
                layout.name(),
                home.display()
            )
        })
    }
}

/// Runs the parsed command line.
pub fn run(cli: Cli, given: Given) -> anyhow::Result<()> {
    let ctx = Ctx {
        root: cli.root.clone(),
        kind: cli.driver,
        base: cli.init_config(PathBuf::new()),
    };
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
            symlinks: Some(m.specials()),
            ..ctx.init_config(home.clone())
        })
        .with_context(|| format!("cannot set --symlinks for {}", home.display()))?;
    }
    match cli.command {
        Command::Check(j) => check::run(&ctx, j.json),
        Command::Layer(c) => layer::run(&ctx, c),
        Command::Mount { id, mount_label } => {
            let d = ctx.open()?;
            let p = d.get(&id, mount_label.as_deref())?;
            println!("{}", p.display());
            Ok(())
        }
        Command::Diff { id, parent, output } => layer::diff(&ctx, &id, parent, output),
        Command::Changes { id, parent, json } => layer::changes(&ctx, &id, parent, json),
        Command::DiffSize { id, parent, json } => layer::diff_size(&ctx, &id, parent, json),
        Command::Umount { id } => Ok(ctx.open()?.put(&id)?),
        Command::Status(j) => {
            let d = ctx.open()?;
            let mut st = vec![("Storage Driver".to_string(), d.name().to_string())];
            st.push(("Home".to_string(), d.home().display().to_string()));
            st.extend(d.status());
            if j.json {
                crate::output::json(&crate::output::status_object(&st))
            } else {
                for (k, v) in st {
                    println!("{k}: {v}");
                }
                Ok(())
            }
        }
        Command::Image(c) => image::run(&ctx, c),
        Command::Container(c) => container::run(&ctx, c),
        Command::Report(a) => report::run(root, kind, a),
        Command::Bench(a) => bench::run(
            a,
            given.root.then_some(root),
            given.driver.then_some(kind),
            cli.symlinks.map(|m| m.specials()),
        ),
        Command::Lab(c) => lab::run(
            given.root.then_some(root),
            given.driver,
            c,
            cli.symlinks.map(|m| m.specials()),
        ),
        Command::Plugin(_) if given.root => anyhow::bail!(
            "--root does not apply to the plugin: dockerd names the driver home in \
             /GraphDriver.Init (<data-root>/<storage-driver>)"
        ),
        Command::Plugin(c) => plugin::run(&ctx, c),
        Command::Snapshotter(c) => snapshotter::run(&ctx, c),
        Command::Demo(a) => demo::run(given.root.then_some(root), kind, a),
    }
}

/// Prints the warnings of an init whose recovery could not finish (the command goes on).
fn report_recovery(d: &dyn Driver) {
    for (k, v) in d.status() {
        if k == "Warning" && v.starts_with(ovlink_driver::home::RECOVERY_WARNING) {
            eprintln!("ovlink: warning: {}: {v}", d.home().display());
        }
    }
}
