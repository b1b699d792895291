//! Dispatch of the subcommands; each group lives in its own module.

mod bench;
mod check;
mod container;
mod image;
mod lab;
mod layer;
mod plugin;
mod report;
mod snapshotter;

use crate::cli::{Cli, Command, Given, PluginCmd};
use anyhow::Context as _;
use ovlink_driver::{Driver, InitConfig, Layout};
use ovlink_layouts::OverlayDriver;
use std::path::PathBuf;

/// What every command is given by the global flags: the root, the layout and the layout's
/// settings (`--sync`, `--reclaim`, `--diff-mode`); the one place that opens a layout.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// `--root`.
    pub root: PathBuf,
    /// `--driver`.
    pub kind: Layout,
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
        let layout = self.kind;
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
    let (root, kind) = (cli.root.as_path(), cli.driver);
    let symlinks = cli.symlinks;
    // The commands that open no layout of --root refuse its settings rather than ignore them.
    for flag in &given.settings {
        let refused = match (&cli.command, *flag) {
            (Command::Lab(_), _) => "the labs (they make their own homes, with the defaults)",
            (Command::Report(_), _) => "report (it only reads the home)",
            (Command::Plugin(PluginCmd::Call { .. }), _) => "plugin call (it only asks a server)",
            (Command::Snapshotter(_), "--reclaim") => {
                "the snapshotter (it always reclaims removed layers in the background)"
            }
            _ => continue,
        };
        anyhow::bail!("{flag} does not apply to {refused}");
    }
    if cli.symlinks.is_some() && matches!(cli.command, Command::Report(_)) {
        anyhow::bail!("--symlinks does not apply to report (it only reads the home)");
    }
    if let (Some(m), false) = (
        cli.symlinks,
        matches!(cli.command, Command::Bench(_) | Command::Lab(_)),
    ) {
        // Recorded in (or checked against) the home once; every later open uses the record.
        if kind == Layout::Overlay2 {
            anyhow::bail!("--symlinks is a setting of the legacy overlay layout (overlay2 copies no layer trees)");
        }
        let home = root.join(kind.home_name());
        OverlayDriver::init(&InitConfig {
            symlinks: Some(m),
            ..ctx.init_config(home.clone())
        })
        .with_context(|| format!("cannot set --symlinks for {}", home.display()))?;
    }
    let given_root = given.root.then_some(root);
    match cli.command {
        Command::Check(j) => check::run(&ctx, j.json),
        Command::Layer(c) => layer::run(&ctx, c),
        Command::Mount { layer, mount_label } => {
            let p = ctx.open()?.get(&layer.id, mount_label.as_deref())?;
            println!("{}", p.display());
            Ok(())
        }
        Command::Umount(l) => Ok(ctx.open()?.put(&l.id)?),
        Command::Diff { target, output } => layer::diff(&ctx, target, output),
        Command::Changes { target, json } => layer::changes(&ctx, target, json),
        Command::DiffSize { target, json } => layer::diff_size(&ctx, target, json.json),
        Command::Status(j) => layer::status(&ctx, j.json),
        Command::Image(c) => image::run(&ctx, c),
        Command::Container(c) => container::run(&ctx, c),
        Command::Report(a) => report::run(root, kind, a),
        Command::Bench(a) => bench::run(&ctx, a, given_root, given.driver, symlinks),
        Command::Lab(_) if given.driver => anyhow::bail!(
            "--driver does not apply to the labs: `lab inodes` and `lab layers` run both layouts \
             side by side, the others use plain overlay mounts (try `ovlink --driver overlay2 demo`)"
        ),
        Command::Lab(c) => lab::run(given_root, c, symlinks),
        Command::Plugin(_) if given.root => anyhow::bail!(
            "--root does not apply to the plugin: dockerd names the driver home in \
             /GraphDriver.Init (<data-root>/<storage-driver>)"
        ),
        Command::Plugin(c) => plugin::run(&ctx, c),
        Command::Snapshotter(c) => snapshotter::run(&ctx, c),
        Command::Demo(a) => lab::demo(&ctx, given_root, a),
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
