//! The command-line contract: every subcommand, flag and help text. Scripts and tests rely on
//! these names; change them only with the docs.

use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Args, Parser, Subcommand};
use ovlink_driver::{DiffMode, Layout, ReclaimMode, SyncMode};
use ovlink_fs::loopfs::FsKind;
use ovlink_fs::Specials;
use std::path::PathBuf;

/// A flag whose values name library values (the flag's help explains each; case-insensitive
/// for the values of environment variables such as `OVLINK_DIFF=Naive`).
fn choice<T: Clone + Send + Sync + 'static>(
    values: &'static [(&'static str, T)],
) -> impl TypedValueParser<Value = T> {
    PossibleValuesParser::new(values.iter().map(|(name, _)| *name)).try_map(move |s| {
        (values
            .iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(&s)))
        .map(|(_, v)| v.clone())
        .ok_or("not a possible value")
    })
}

/// The values of `--driver` (and `bench --only`), `--symlinks`, `--sync`, `--reclaim`,
/// `--diff-mode`.
const LAYOUTS: &[(&str, Layout)] = &[("overlay", Layout::Overlay), ("overlay2", Layout::Overlay2)];
const SYMLINKS: &[(&str, Specials)] = &[("link", Specials::Link), ("copy", Specials::Copy)];
const SYNCS: &[(&str, SyncMode)] = &[
    ("files", SyncMode::Files),
    ("syncfs", SyncMode::Syncfs),
    ("none", SyncMode::None),
];
const RECLAIMS: &[(&str, ReclaimMode)] = &[
    ("inline", ReclaimMode::Inline),
    ("background", ReclaimMode::Background),
];
const DIFFS: &[(&str, DiffMode)] = &[("native", DiffMode::Auto), ("naive", DiffMode::Naive)];
/// `bench --fs`: a fresh filesystem of that kind, or the work directory as it is.
const BENCH_FS: &[(&str, BenchFs)] = &[
    ("ext4", BenchFs(Some(FsKind::Ext4))),
    ("xfs", BenchFs(Some(FsKind::Xfs))),
    ("here", BenchFs(None)),
];

/// The value of `bench --fs`: the fresh filesystem's kind, `None` for `here`.
#[derive(Debug, Clone, Copy)]
pub struct BenchFs(pub Option<FsKind>);

/// A layer id from the command line, checked with the one layer-id rule
/// ([`ovlink_driver::id::LayerId`]) before any command runs.
fn layer_id(s: &str) -> Result<String, ovlink_driver::DriverError> {
    ovlink_driver::id::LayerId::parse(s).map(String::from)
}

/// A mount label, checked as an SELinux context ([`ovlink_driver::mount::label_option`]).
fn mount_label(s: &str) -> Result<String, ovlink_driver::DriverError> {
    ovlink_driver::mount::label_option(s).map(|_| s.to_string())
}

/// Docker's legacy `overlay` storage driver, re-implemented: image layers are full trees of
/// hardlinks into their parent, containers are overlayfs mounts with a single lowerdir.
#[derive(Debug, Parser)]
#[command(name = "ovlink", version, about, long_about = None, after_help = AFTER_HELP)]
pub struct Cli {
    /// State directory; the driver home is DIR/overlay, images are recorded in DIR/images.
    #[arg(
        long,
        global = true,
        env = "OVLINK_ROOT",
        default_value = "/var/lib/ovlink",
        value_name = "DIR"
    )]
    pub root: PathBuf,

    /// Layer layout: the legacy `overlay` (hardlinked image layers) or `overlay2` (one diff
    /// dir per layer, several lowerdirs), so both can be compared on the same work.
    #[arg(long, global = true, value_parser = choice(LAYOUTS), default_value = "overlay")]
    pub driver: Layout,

    /// Legacy layout only: `link` hardlinks symlinks, fifos and device nodes between image
    /// layers (one inode for all layers); `copy` re-creates them in every layer exactly as
    /// Docker 20.10's legacy driver does, so the home is inode for inode what Docker builds.
    /// A home records its mode (`<home>/.symlinks`) and keeps it: later commands use the
    /// recorded mode, and another mode is refused while the home holds layers.
    /// [default: the recorded mode, else link]
    #[arg(long, global = true, value_name = "MODE", value_parser = choice(SYMLINKS))]
    pub symlinks: Option<Specials>,

    /// How a new layer is made durable before `layer apply`, `image import` or a commit says
    /// it exists. `syncfs`: one flush per layer (each large file's writeback started as it
    /// is written, then one sync of the backing filesystem before the layer is published);
    /// costs every dirty byte on that filesystem, whoever wrote it. `files`: fdatasync every
    /// file the layer tar wrote, then one fsync of the layer directory; costs only this
    /// layer's data but a flush per file (3 to 7 times slower on small files): for a home on
    /// a filesystem others keep full of dirty data. `none`: nothing is synced, so a power cut
    /// can lose a layer that was reported created (tests, throw-away roots; Docker's own
    /// behaviour). overlay2 knows only synced (files or syncfs) and none. [default: syncfs]
    #[arg(long, global = true, env = "OVLINK_SYNC", value_name = "MODE", value_parser = choice(SYNCS))]
    pub sync: Option<SyncMode>,

    /// The power-loss test's seeded durability bug (`skip-data`, `skip-directories`): only
    /// for showing that test fails without a flush; never documented as a setting.
    #[arg(long, global = true, hide = true, env = "OVLINK_TEST_SYNC_FAULT", value_name = "FAULT",
          value_parser = parse_sync_fault)]
    pub sync_fault: Option<ovlink_driver::SyncFault>,

    /// Same as --sync none (for scripts: OVLINK_NO_FSYNC set to any value but "false").
    #[arg(long, global = true, env = "OVLINK_NO_FSYNC", value_parser = flag_is_set)]
    pub no_fsync: bool,

    /// When `layer rm` (and container rm) deletes the removed layer's tree, legacy layout.
    /// The layer is gone at once either way (renamed away atomically). `inline`: its inodes
    /// are freed before the command returns. `background`: a thread deletes it and the
    /// command returns sooner; what a short-lived process does not finish is left for the next
    /// command's init or `layer reclaim` (`ovlink report` shows it meanwhile).
    #[arg(long, global = true, env = "OVLINK_RECLAIM", value_name = "MODE")]
    #[arg(default_value = "inline", value_parser = choice(RECLAIMS))]
    pub reclaim: ReclaimMode,

    /// How `diff`, `changes`, `diff-size`, commit and save find what a layer changed.
    /// `native`: read the upper dir alone (only what the container wrote is looked at), falling
    /// back to naive when it is not a plain diff (redirect_dir/metacopy xattrs). `naive`:
    /// mount the layer and compare the whole merged tree with its parent's by metadata, as
    /// Docker's legacy driver does; same result, costs a walk of the whole image.
    #[arg(long, global = true, env = "OVLINK_DIFF", value_name = "MODE")]
    #[arg(ignore_case = true, default_value = "native", value_parser = choice(DIFFS))]
    pub diff_mode: DiffMode,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// `--no-fsync` / `OVLINK_NO_FSYNC`: set unless the value is `false` (clap passes `true` for
/// the bare flag and `false` for its absence).
fn flag_is_set(s: &str) -> Result<bool, std::convert::Infallible> {
    Ok(s != "false")
}

/// Which global flags were given (command line or environment), not defaulted.
#[derive(Debug, Clone, Default)]
pub struct Given {
    /// `--root` / `OVLINK_ROOT`.
    pub root: bool,
    /// `--driver`.
    pub driver: bool,
    /// The layout settings given on the command line (`--sync`, `--no-fsync`, `--reclaim`,
    /// `--diff-mode`), for the commands that refuse them. Their environment variables are
    /// defaults for the commands they apply to and are not refused.
    pub settings: Vec<&'static str>,
}

/// Parses the command line (exiting with clap's message on an error).
pub fn parse() -> (Cli, Given) {
    parse_from(std::env::args_os()).unwrap_or_else(|e| e.exit())
}

/// Parses `args` (the program name first).
pub fn parse_from<T: Into<std::ffi::OsString> + Clone>(
    args: impl IntoIterator<Item = T>,
) -> Result<(Cli, Given), clap::Error> {
    use clap::parser::ValueSource;
    use clap::{CommandFactory as _, FromArgMatches as _};
    let m = Cli::command().try_get_matches_from(args)?;
    let given = |id: &str| {
        m.value_source(id)
            .is_some_and(|s| s != ValueSource::DefaultValue)
    };
    let settings = [
        ("sync", "--sync"),
        ("no_fsync", "--no-fsync"),
        ("reclaim", "--reclaim"),
        ("diff_mode", "--diff-mode"),
    ];
    let given = Given {
        root: given("root"),
        driver: given("driver"),
        settings: (settings.into_iter())
            .filter(|(id, _)| m.value_source(id) == Some(ValueSource::CommandLine))
            .map(|(_, flag)| flag)
            .collect(),
    };
    Ok((Cli::from_arg_matches(&m)?, given))
}

impl Cli {
    /// The layout settings of the global flags, on `home` (no options, id maps or symlinks
    /// mode: those come from the home's record or from dockerd).
    pub fn init_config(&self, home: PathBuf) -> ovlink_driver::InitConfig {
        ovlink_driver::InitConfig {
            home,
            sync: if self.no_fsync {
                Some(SyncMode::None)
            } else {
                self.sync
            },
            reclaim: self.reclaim,
            diff: self.diff_mode,
            symlinks: self.symlinks,
            sync_fault: self.sync_fault,
            ..Default::default()
        }
    }
}

impl Command {
    /// The name of a command that only reads the home and the image store (it opens only a
    /// home that exists, and the store read-only), or `None`.
    pub fn read_only(&self) -> Option<&'static str> {
        Some(match self {
            Command::Report(_) => "report",
            Command::Status(_) => "status",
            Command::Changes { .. } => "changes",
            Command::Diff { .. } => "diff",
            Command::DiffSize { .. } => "diff-size",
            Command::Layer(LayerCmd::Ls(_)) => "layer ls",
            Command::Layer(LayerCmd::Inspect { .. }) => "layer inspect",
            Command::Image(ImageCmd::Ls(_)) => "image ls",
            Command::Container(ContainerCmd::Ls(_)) => "container ls",
            _ => return None,
        })
    }
}

/// Refuses, before any work, a global flag given to a command it does not apply to (each
/// error names the flag; docs/cli.md has the table).
pub fn refuse_flags(cli: &Cli, given: &Given) -> anyhow::Result<()> {
    let cmd = &cli.command;
    let plugin_call = matches!(cmd, Command::Plugin(PluginCmd::Call { .. }));
    for flag in &given.settings {
        let refused = match (cmd, *flag) {
            (Command::Lab(_), _) => "the labs (they make their own homes, with the defaults)",
            (Command::Report(_), _) => "report (it only reads the home)",
            (Command::Image(ImageCmd::Generate { .. }), _) => {
                "image generate (it writes a file and opens no home)"
            }
            _ if plugin_call => "plugin call (it only asks a server)",
            (Command::Snapshotter(_), "--reclaim") => {
                "the snapshotter (it always reclaims removed layers in the background)"
            }
            _ => continue,
        };
        anyhow::bail!("{flag} does not apply to {refused}");
    }
    let both = matches!(cmd, Command::Bench(_) | Command::Lab(_));
    if cli.symlinks.is_some() {
        if let Some(name) = cmd.read_only() {
            anyhow::bail!("--symlinks does not apply to {name} (it only reads the home)");
        }
        if plugin_call {
            anyhow::bail!("--symlinks does not apply to plugin call (it only asks a server)");
        }
        if matches!(cmd, Command::Image(ImageCmd::Generate { .. })) {
            anyhow::bail!("--symlinks does not apply to image generate (it opens no home)");
        }
        if cli.driver == Layout::Overlay2 && !both {
            anyhow::bail!("--symlinks is a setting of the legacy overlay layout (overlay2 copies no layer trees)");
        }
    }
    if given.driver && matches!(cmd, Command::Lab(_)) {
        anyhow::bail!(
            "--driver does not apply to the labs: `lab inodes` and `lab layers` run both layouts \
             side by side, the others use plain overlay mounts (try `ovlink --driver overlay2 demo`)"
        );
    }
    if given.root && matches!(cmd, Command::Plugin(_)) {
        anyhow::bail!(
            "--root does not apply to the plugin: dockerd names the driver home in \
             /GraphDriver.Init (<data-root>/<storage-driver>)"
        );
    }
    Ok(())
}

const AFTER_HELP: &str = "\
Quick start (as root):
  ovlink demo                               # the whole story on a generated image, in a throw-away root
  ovlink image import image.tar --name app  # a `docker save` or OCI tarball
  ovlink container create web --image app   # prints the container's layer id
  ovlink mount <layer-id>                   # prints the merged dir
  ovlink umount <layer-id>
See docs/ for the layout, the inode story and the benchmarks.";

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check what this kernel and filesystem can do for the layout chosen with --driver: each
    /// feature (overlay, backing filesystem, d_type, test mounts with one and two lowerdirs,
    /// renameat2 flags, redirect_dir/index/metacopy), which layout needs it, and the fix for
    /// each that fails (then the exit status is non-zero). The kernel release is only reported.
    Check(JsonFlag),
    /// Low-level layer operations (Docker's graphdriver calls).
    #[command(subcommand)]
    Layer(LayerCmd),
    /// Mount a container layer (overlay at `<id>/merged`) and print the path to use; for an
    /// image layer, print its root/. Counts live in one process only: a `mount` of a layer
    /// that is mounted already prints its path, and one `umount` unmounts it, however many
    /// `mount`s came before (the plugin counts every Get and Put).
    Mount {
        #[command(flatten)]
        layer: LayerArg,
        /// SELinux label for the mount (an SELinux context such as
        /// system_u:object_r:container_file_t:s0:c1,c2, passed as context="…").
        #[arg(long, value_parser = mount_label)]
        mount_label: Option<String>,
    },
    /// Unmount a container layer's merged/ (from the command line there is no count across
    /// commands: this unmounts it, see `mount`).
    Umount(LayerArg),
    /// Write a Docker layer tar of what a layer changed against its parent (`docker save`'s
    /// layer.tar, `docker commit`'s input): to stdout, or to -o FILE.
    Diff {
        #[command(flatten)]
        target: DiffTarget,
        /// Write the tar to FILE instead of stdout.
        #[arg(short = 'o', long = "output", value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// List what a layer changed, as `docker diff` prints it (A added, C changed, D deleted).
    Changes {
        #[command(flatten)]
        target: DiffTarget,
        /// Print JSON (the plugin protocol's Kind numbers: 0 changed, 1 added, 2 deleted).
        #[arg(long)]
        json: bool,
    },
    /// Bytes a layer changed, as `docker ps -s` counts them: regular files and symlinks
    /// (their target's length), a hardlinked file once.
    DiffSize {
        #[command(flatten)]
        target: DiffTarget,
        #[command(flatten)]
        json: JsonFlag,
    },
    /// What `docker info` shows for the storage driver, of a home that exists (like every
    /// command that only reads, it creates none; `check` tells what a new one would get).
    Status(JsonFlag),
    /// Images: import `docker save`/OCI tarballs, list them.
    #[command(subcommand)]
    Image(ImageCmd),
    /// Containers: a read-write layer (plus its `-init` layer) on an image's top layer.
    #[command(subcommand)]
    Container(ContainerCmd),
    /// Inodes each layer costs the backing filesystem, what is left, and when it runs out.
    Report(ReportArgs),
    /// Benchmarks: overlay vs overlay2 side by side on a generated image or a tarball (in a
    /// directory inside --root when given; only the --driver layout when given).
    Bench(BenchArgs),
    /// Short, self-cleaning labs for teaching: each prints the shell commands to retype, what
    /// the kernel did, and where the articles are out of date (`--markdown` for a worksheet).
    ///
    /// A lab works in a fresh directory inside --root when it is given (else in $TMPDIR) and
    /// removes it, unmounting first, unless --keep. --driver, --sync, --reclaim and
    /// --diff-mode do not apply (`inodes` and `layers` run both layouts, with the defaults).
    /// docs/teaching.md is the lesson guide.
    #[command(subcommand)]
    Lab(LabCmd),
    /// Docker's graphdriver plugin protocol, so a real dockerd (20.10, --experimental) stores
    /// its images and containers with ovlink.
    #[command(subcommand)]
    Plugin(PluginCmd),
    /// containerd's snapshots service (a proxy snapshotter, `[proxy_plugins.ovlink]` in
    /// containerd's config.toml) on the --driver layout: snapshots are ovlink layers in
    /// DIR/overlay (or DIR/overlay2), their metadata in DIR/snapshotter/. docs/containerd.md.
    #[command(subcommand)]
    Snapshotter(SnapshotterCmd),
    /// Walk through the layout --driver names (legacy overlay or overlay2) on a generated
    /// image (or --image FILE) in a throw-away root (inside --root when given): import, mount
    /// a container, write/overwrite/delete, show the upper dir.
    Demo(DemoArgs),
}

/// `ovlink snapshotter …`
#[derive(Debug, Subcommand)]
pub enum SnapshotterCmd {
    /// Serve containerd's snapshots gRPC API on a unix socket (as root, on the host). Layers
    /// go to --root (default here: /var/lib/ovlink-snapshotter, not the command line's root:
    /// a home has one owner, and this one removes at start every layer no snapshot names) with
    /// the --driver layout; `ovlink --root DIR report` shows what each snapshot costs (the
    /// figures `ctr snapshots usage` prints). SIGTERM lets in-flight calls finish; a restart
    /// keeps every snapshot.
    Serve {
        /// Socket path (containerd's `address`); created 0600, its directory 0700.
        #[arg(long, default_value = ovlink_snapshotter::server::DEFAULT_SOCKET)]
        socket: PathBuf,
        /// Seconds to wait for in-flight calls after SIGTERM before exiting anyway.
        #[arg(long, default_value_t = 60)]
        shutdown_timeout: u64,
        /// Connections served at once; more wait in the socket's backlog until one closes.
        /// Capped by the open-file limit (the soft limit is raised to the hard one at start).
        #[arg(long, default_value_t = 1000)]
        max_connections: usize,
        /// Seconds a connection may stay with no call running before it is closed
        /// (containerd reconnects at its next call).
        #[arg(long, default_value_t = 600)]
        idle_timeout: u64,
    },
    /// Send one call to a running snapshotter and print the answer (what `ctr snapshots`
    /// asks of containerd, asked of the snapshotter directly: diagnostics and scripts).
    /// Mounts print one per line, `TYPE SOURCE OPTION,OPTION...`, ready for `mount -t TYPE -o
    /// OPTIONS SOURCE TARGET`.
    Call {
        /// The server's socket.
        #[arg(long, default_value = ovlink_snapshotter::server::DEFAULT_SOCKET)]
        socket: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// The call.
        #[command(subcommand)]
        call: SnapshotCall,
    },
    /// List the snapshots of a stopped snapshotter's store (--root, --driver): key, kind,
    /// parent and the ovlink layer that holds it. A running server holds its store: ask it
    /// with `call list` instead.
    Ls {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// The calls of `ovlink snapshotter call`.
#[derive(Debug, Subcommand)]
pub enum SnapshotCall {
    /// A new active snapshot KEY on committed PARENT (none: an empty one); prints its mounts.
    Prepare {
        /// Its key.
        key: String,
        /// The committed snapshot it is made on.
        #[arg(default_value = "")]
        parent: String,
    },
    /// A read-only snapshot KEY of committed PARENT; prints its mounts.
    View {
        /// Its key.
        key: String,
        /// The committed snapshot it shows.
        parent: String,
    },
    /// The mounts of active or view snapshot KEY.
    Mounts {
        /// The key.
        key: String,
    },
    /// Active snapshot KEY becomes committed NAME.
    Commit {
        /// The committed snapshot's name.
        name: String,
        /// The active snapshot's key.
        key: String,
    },
    /// Removes snapshot KEY (it must have no children).
    Remove {
        /// The key.
        key: String,
    },
    /// Kind, parent and labels of snapshot KEY.
    Stat {
        /// The key.
        key: String,
    },
    /// Inodes and bytes snapshot KEY adds.
    Usage {
        /// The key.
        key: String,
    },
    /// Every snapshot: kind, key, parent.
    List,
}

/// A layer the command works on.
#[derive(Debug, Args)]
pub struct LayerArg {
    /// Layer id.
    #[arg(value_parser = layer_id)]
    pub id: String,
}

/// A layer and the parent its changes are taken against.
#[derive(Debug, Args)]
pub struct DiffTarget {
    /// Layer id.
    #[arg(value_parser = layer_id)]
    pub id: String,
    /// Parent to compare with (default: the parent the layout recorded when the layer was
    /// made: a container's init layer, an init layer's image layer, an image layer's parent).
    #[arg(long, value_parser = layer_id)]
    pub parent: Option<String>,
}

/// A new layer and its parent.
#[derive(Debug, Args)]
pub struct NewLayer {
    /// New layer id (a single directory name).
    #[arg(value_parser = layer_id)]
    pub id: String,
    /// Parent layer id.
    #[arg(long, value_parser = layer_id)]
    pub parent: Option<String>,
}

/// `--json` for read commands.
#[derive(Debug, Args, Clone, Copy)]
pub struct JsonFlag {
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `ovlink layer …`
#[derive(Debug, Subcommand)]
pub enum LayerCmd {
    /// Create an image layer: an empty root/ without parent; on an image layer: lower-id,
    /// upper/, work/ until a diff is applied.
    Create(NewLayer),
    /// Create a container layer (lower-id, upper/, work/); on a container parent, its upper/
    /// is copied (Docker's `-init` pattern).
    CreateRw(NewLayer),
    /// Apply a layer tar (plain, gzip or zstd; '-' for stdin) to a layer, creating it on
    /// --parent first if it does not exist. Prints the size of the files applied.
    Apply {
        #[command(flatten)]
        layer: NewLayer,
        /// The tar file, or '-' for standard input.
        file: PathBuf,
    },
    /// Remove a layer (unmounting it first). The layer is renamed out of the way at once;
    /// its tree is deleted before the command returns, or with --background by a detached
    /// `ovlink layer reclaim` process (`ovlink report` shows the inodes still to be freed).
    Rm {
        #[command(flatten)]
        layer: LayerArg,
        /// Return as soon as the layer is gone; delete its tree in a detached process.
        #[arg(long)]
        background: bool,
    },
    /// Delete removed layers still waiting to be reclaimed (`.tmp-remove-*` that no other
    /// process is deleting). Init does this too.
    Reclaim {
        /// Internal (`layer rm --background`): the removed layer handed over.
        #[arg(long, hide = true, requires = "lock_fd")]
        name: Option<String>,
        /// Internal: the inherited fd holding its lock.
        #[arg(long, hide = true, requires = "name")]
        lock_fd: Option<i32>,
    },
    /// List layers (of a home that exists: a command that only reads creates none).
    Ls(JsonFlag),
    /// Show a layer: kind, parent, mount state, and what `docker inspect` shows.
    Inspect {
        #[command(flatten)]
        layer: LayerArg,
        #[command(flatten)]
        json: JsonFlag,
    },
}

/// `ovlink image …`
#[derive(Debug, Subcommand)]
pub enum ImageCmd {
    /// Import a `docker save` or OCI image-layout tarball; prints the layer ids bottom-first.
    Import {
        /// The tarball.
        file: PathBuf,
        /// Name to record the image under (default: its first repo tag).
        #[arg(long)]
        name: Option<String>,
    },
    /// List images.
    Ls(JsonFlag),
    /// Write a deterministic generated image (directories, files, symlinks, a hardlink pair,
    /// a setuid file, a fifo, a long name; each upper layer adds, rewrites and deletes files,
    /// removes a directory and re-creates one as opaque): the same options give the same
    /// bytes, so the same layer ids. Prints its layer ids bottom-first, as an import will.
    Generate {
        /// Output file.
        #[arg(short = 'o', long = "output", value_name = "FILE")]
        output: PathBuf,
        /// Approximate entries of the base layer (at least 20 are made).
        #[arg(long, default_value_t = 300)]
        entries: usize,
        /// Layers (at least 1).
        #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=1000))]
        layers: u64,
        /// Seed of the content: another seed, another image.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// The image's repo:tag.
        #[arg(long, default_value = "ovlink/gen:demo")]
        name: String,
        /// An OCI image-layout tarball with gzip layers instead of `docker save`'s format.
        #[arg(long)]
        oci: bool,
    },
    /// Write images as a `docker save` tarball that `docker load` accepts (each layer tar
    /// regenerated from disk against its parent; the imported config and history kept).
    Save {
        /// Image names.
        #[arg(required = true)]
        images: Vec<String>,
        /// Output file.
        #[arg(short = 'o', long = "output", value_name = "FILE")]
        output: PathBuf,
    },
}

/// `ovlink container …`
#[derive(Debug, Subcommand)]
pub enum ContainerCmd {
    /// Create a container layer on the image's top layer; prints its layer id.
    Create {
        /// Container name.
        name: String,
        /// Image name.
        #[arg(long)]
        image: String,
    },
    /// List containers.
    Ls(JsonFlag),
    /// Turn a container's changes into a new image layer on top of its image (applied like
    /// any image layer: a hardlinked root/), recorded as image --name.
    Commit {
        /// Container name.
        name: String,
        /// Name of the new image.
        #[arg(long = "name", id = "image_name", value_name = "IMAGE")]
        image: String,
    },
    /// Remove a container's layers (unmounting them).
    Rm {
        /// Container name.
        name: String,
    },
}

/// `ovlink demo`
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// A `docker save` tarball to use instead of the generated image.
    #[arg(long)]
    pub image: Option<PathBuf>,
    #[command(flatten)]
    pub common: Common,
}

/// `ovlink plugin …`
#[derive(Debug, Subcommand)]
pub enum PluginCmd {
    /// Serve Docker's graphdriver plugin protocol on a unix socket (as root, on the host).
    /// The layout is the global --driver (overlay or overlay2). Start dockerd with
    /// `--experimental --storage-driver NAME`; its driver home will be `<data-root>/NAME`.
    Serve {
        /// Plugin name: dockerd finds it as /run/docker/plugins/NAME.sock.
        #[arg(long, default_value = "ovlink")]
        name: String,
        /// Socket path (default /run/docker/plugins/NAME.sock); created 0600. dockerd's Init is
        /// recorded beside it (NAME.init.json) so that a restarted plugin serves at once.
        #[arg(long)]
        socket: Option<PathBuf>,
        /// Seconds to wait for in-flight requests after SIGTERM before exiting anyway. Mounts
        /// stay in place either way (running containers keep their root filesystems); only
        /// dockerd's /GraphDriver.Cleanup unmounts.
        #[arg(long, default_value_t = 60)]
        shutdown_timeout: u64,
        /// Seconds a client may take to send a request head; also how long an idle kept-alive
        /// connection stays open, and the bound for a JSON body.
        #[arg(long, default_value_t = 120)]
        header_timeout: u64,
        /// Seconds without a byte moving after which a layer tar streamed in (ApplyDiff) or
        /// out (Diff) fails. dockerd streams at disk speed; keep this long (a `docker import`
        /// of a URL streams at the speed of that server).
        #[arg(long, default_value_t = 600)]
        body_idle_timeout: u64,
        /// Connections served at once; more wait until one closes. Capped by the open-file
        /// limit (the soft limit is raised to the hard one at start).
        #[arg(long, default_value_t = 1000)]
        max_connections: usize,
    },
    /// Send one protocol call to a running plugin and print the answer (for diagnostics),
    /// e.g. `ovlink plugin call GraphDriver.Status`.
    Call {
        /// Plugin name (socket /run/docker/plugins/NAME.sock).
        #[arg(long, default_value = "ovlink")]
        name: String,
        /// Socket path, instead of the one derived from --name.
        #[arg(long)]
        socket: Option<PathBuf>,
        /// Method, e.g. `Plugin.Activate` or `GraphDriver.Get`.
        method: String,
        /// JSON request body.
        #[arg(default_value = "{}", conflicts_with = "body_file")]
        body: String,
        /// Stream the body from FILE (`-`: standard input) instead: the layer tar of
        /// `GraphDriver.ApplyDiff?id=ID&parent=PARENT`.
        #[arg(long, value_name = "FILE")]
        body_file: Option<PathBuf>,
    },
}

/// Arguments of `ovlink report`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Print the full report as JSON instead of the table.
    #[arg(long)]
    pub json: bool,
    /// Also write an SVG chart of cumulative inodes per layer to FILE: overlay and overlay2
    /// side by side when both homes exist under --root, with the filesystem's inode capacity.
    #[arg(long, value_name = "FILE")]
    pub svg: Option<PathBuf>,
}

/// Arguments of `ovlink bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Smaller work for the same figures (1 repetition, copy-up up to 64 MiB, 4 containers,
    /// a 20-layer deep stack): a minute or two instead of several.
    #[arg(long)]
    pub quick: bool,
    /// A `docker save` (or OCI) tarball for the import figures instead of the generated image.
    #[arg(long, value_name = "FILE")]
    pub image: Option<PathBuf>,
    /// Entries of the generated image's base layer [default: 10000, --quick 2000].
    #[arg(long)]
    pub entries: Option<usize>,
    /// Layers of the generated image.
    #[arg(long, default_value_t = 5)]
    pub layers: usize,
    /// Repetitions per layout (the tables show medians) [default: 3, --quick 1].
    #[arg(long)]
    pub reps: Option<usize>,
    /// Most files read through the container for the deep-read figures.
    #[arg(long)]
    pub reads: Option<usize>,
    /// Copy-up file sizes, comma-separated, with K, M or G [default: 4K,1M,64M,1G;
    /// --quick 4K,1M,64M].
    #[arg(long, value_name = "SIZES", value_delimiter = ',', value_parser = parse_size)]
    pub copy_up_sizes: Option<Vec<u64>>,
    /// Containers reading the same lower files in the page-cache figures [default: 10].
    #[arg(long)]
    pub containers: Option<usize>,
    /// Files changed in the container before the commit [default: 100].
    #[arg(long)]
    pub commit_files: Option<usize>,
    /// Layer counts of the deep-stack images [default: 20,60,120; --quick 20].
    #[arg(long, value_delimiter = ',')]
    pub deep_layers: Option<Vec<usize>>,
    /// Where to work (it must not be tmpfs; default: the global --root when given, else the
    /// system's temporary directory; --dir wins over --root). With --fs ext4 or xfs only
    /// the fresh filesystem's image file is there.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Measure on a fresh filesystem made for this run: `ext4` or `xfs`, a sparse 16 GiB
    /// image loop-mounted below --dir and removed at the end, so that figures repeat (on a
    /// long-used filesystem the same `tar -x` took 0.23 s or 5 s depending only on the
    /// directory it ran in); `here`: in --dir itself, as it is.
    #[arg(long, value_name = "FS", default_value = "ext4", value_parser = choice(BENCH_FS))]
    pub fs: BenchFs,
    /// Write the Markdown table to FILE (it is always printed).
    #[arg(long, value_name = "FILE")]
    pub markdown: Option<PathBuf>,
    /// Write every figure (and every repetition) as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Write the chart (ratio per figure, log scale) as SVG to FILE.
    #[arg(long, value_name = "FILE")]
    pub svg: Option<PathBuf>,
    /// Also save the generated image as FILE (for scripts/bench.sh's `cp -al` baseline).
    #[arg(long, value_name = "FILE")]
    pub write_image: Option<PathBuf>,
    /// Only overlay or only overlay2 (default: the global --driver when given, else both).
    #[arg(long, value_parser = choice(LAYOUTS))]
    pub only: Option<Layout>,
}

fn parse_sync_fault(s: &str) -> Result<ovlink_driver::SyncFault, String> {
    match s {
        "skip-data" => Ok(ovlink_driver::SyncFault::SkipData),
        "skip-directories" => Ok(ovlink_driver::SyncFault::SkipDirectories),
        _ => Err(format!("{s:?}: skip-data or skip-directories")),
    }
}

fn parse_size(s: &str) -> Result<u64, String> {
    let (n, mul) = match s.trim().chars().last() {
        Some('K' | 'k') => (&s[..s.len() - 1], 1u64 << 10),
        Some('M' | 'm') => (&s[..s.len() - 1], 1 << 20),
        Some('G' | 'g') => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    n.trim()
        .parse::<u64>()
        .map(|v| v * mul)
        .map_err(|_| format!("{s:?} is not a size (a number with K, M or G)"))
}

/// `ovlink lab …`
#[derive(Debug, Subcommand)]
pub enum LabCmd {
    /// Run a small ext4 filesystem out of inodes with image layers (legacy overlay, then
    /// overlay2), then push one file to the hardlink limit.
    Inodes(InodesArgs),
    /// The first write to a lower file, even chmod, copies the whole file up (sizes,
    /// blocks, timing); metacopy=on copies only metadata.
    CopyUp(SizedArgs),
    /// Deletes: a whiteout (0/0 char device), copying it (ENXIO), rm -rf of a lower dir,
    /// the re-created opaque dir, shared whiteout inodes, the fresh upper's uuid.
    Whiteouts(Common),
    /// rename(2) of a lower dir: EXDEV with redirect_dir=off, success with redirect_dir=on,
    /// and what mv does instead (copy and delete).
    Rename(Common),
    /// Two containers read one lower file: its pages are cached once (fincore figures).
    PageCache(SizedArgs),
    /// One image in the legacy overlay and in overlay2 side by side: lowerdirs, inodes, a
    /// deep read.
    Layers(LayersArgs),
    /// The workdir's role, and the mount error when it is not on the upper's filesystem.
    Workdir(Common),
    /// Deleted lower files still use space; editing the lower dir under a mount.
    Lower(Common),
    /// d_type on xfs: an ftype=0 (V4) filesystem against today's kernel and mkfs.xfs.
    Xfs(Common),
}

/// What every lab and the demo take.
#[derive(Debug, Clone, Args)]
pub struct Common {
    /// Print the observations as JSON on stdout (the narration goes to stderr).
    #[arg(long)]
    pub json: bool,
    /// Also write the walkthrough as a student worksheet in Markdown (commands,
    /// observations, questions).
    #[arg(long, value_name = "FILE")]
    pub markdown: Option<PathBuf>,
    /// Keep the throw-away directory (and its mounts) and print where it is.
    #[arg(long)]
    pub keep: bool,
}

/// A lab with one big file.
#[derive(Debug, Clone, Args)]
pub struct SizedArgs {
    /// Size of the big lower file, in MiB (at least 1).
    #[arg(long, value_name = "MIB", value_parser = clap::value_parser!(u64).range(1..))]
    pub size: Option<u64>,
    #[command(flatten)]
    pub common: Common,
}

/// Arguments of `ovlink lab layers`.
#[derive(Debug, Clone, Args)]
pub struct LayersArgs {
    /// Layers of the image.
    #[arg(long, default_value_t = 8)]
    pub layers: usize,
    /// Leaf directories of its base layer (one file each).
    #[arg(long, default_value_t = 300)]
    pub dirs: u32,
    #[command(flatten)]
    pub common: Common,
}

/// Arguments of `ovlink lab inodes`.
#[derive(Debug, Clone, Args)]
pub struct InodesArgs {
    /// Size of the ext4 image file, in MiB.
    #[arg(long, default_value_t = 64, value_name = "MIB")]
    pub size: u64,
    /// Inodes of the ext4 filesystem (mkfs.ext4 -N; ext4 rounds it up a little).
    #[arg(long, default_value_t = 2048)]
    pub inodes: u64,
    /// Directories in the generated base image layer (every legacy layer re-creates them).
    #[arg(long, default_value_t = 100)]
    pub dirs: u32,
    /// Stop a layout after this many layers even if the filesystem is not full.
    #[arg(long, default_value_t = 1000)]
    pub max_layers: u32,
    /// Skip part 2 (the hardlink limit).
    #[arg(long)]
    pub no_links: bool,
    /// Also write the chart (inodes used per layer, both layouts, capacity line) as SVG.
    #[arg(long, value_name = "FILE")]
    pub svg: Option<PathBuf>,
    #[command(flatten)]
    pub common: Common,
}
