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

use crate::cli::{self, Cli, Command, Given};
use anyhow::Context as _;
use ovlink_driver::{Driver, HomeAccess, InitConfig, Layout};
use ovlink_layouts::OverlayDriver;
use std::path::PathBuf;

/// What every command is given by the global flags: the root, the layout and the layout's
/// settings (`--symlinks`, `--sync`, `--reclaim`, `--diff-mode`); the one place that opens a
/// layout.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// `--root`.
    pub root: PathBuf,
    /// `--driver`.
    pub kind: Layout,
    /// The settings, with an empty home (filled in by [`Ctx::init_config`]) and the access
    /// of the command: [`HomeAccess::Existing`] for one that only reads.
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

    /// Initializes the driver of the chosen layout on `<root>/<overlay|overlay2>` (creating
    /// the home unless the command only reads, recording `--symlinks`, finishing what a crash
    /// left) and prints the warnings of a recovery that could not finish.
    pub fn open(&self) -> anyhow::Result<Box<dyn Driver>> {
        let layout = self.kind;
        let home = self.root.join(layout.home_name());
        let d =
            ovlink_layouts::open(layout, &self.init_config(home.clone())).with_context(|| {
                format!(
                    "cannot open the {} driver in {}",
                    layout.name(),
                    home.display()
                )
            })?;
        report_recovery(d.as_ref());
        Ok(d)
    }

    /// Initializes the legacy overlay driver on `<root>/overlay`.
    pub fn open_legacy(&self) -> anyhow::Result<OverlayDriver> {
        let home = self.root.join("overlay");
        OverlayDriver::init(&self.init_config(home.clone()))
            .with_context(|| format!("cannot initialize the overlay driver in {}", home.display()))
    }
}

/// Runs the parsed command line.
pub fn run(cli: Cli, given: Given) -> anyhow::Result<()> {
    cli::refuse_flags(&cli, &given)?;
    let access = match cli.command.read_only() {
        Some(_) => HomeAccess::Existing,
        None => HomeAccess::Create,
    };
    let ctx = Ctx {
        root: cli.root.clone(),
        kind: cli.driver,
        base: InitConfig {
            access,
            // The plugin and the snapshotter name themselves (a home has one owner).
            owner: Some(ovlink_driver::HomeOwner::Cli),
            ..cli.init_config(PathBuf::new())
        },
    };
    let (root, kind) = (cli.root.as_path(), cli.driver);
    let symlinks = cli.symlinks;
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
        Command::Lab(c) => lab::run(given_root, c, symlinks),
        Command::Plugin(c) => plugin::run(&ctx, c),
        Command::Snapshotter(c) => snapshotter::run(&ctx, c, given.root),
        Command::Demo(a) => lab::demo(&ctx, given_root, a),
    }
}

/// Prints the warnings of an init whose recovery could not finish (the command goes on).
fn report_recovery(d: &dyn Driver) {
    for w in ovlink_driver::status::recovery_warnings(d) {
        eprintln!("ovlink: warning: {}: {w}", d.home().display());
    }
}
