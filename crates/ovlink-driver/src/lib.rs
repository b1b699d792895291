//! The core every layout stands on: Docker's graphdriver interface ([`Driver`]) and what both
//! layouts share.
//!
//! ```text
//!          ovlink-overlay (legacy layout)   ovlink-overlay2
//!                          \                   /
//!                           ovlink-driver (this crate)
//!                          /        |          \
//!                   ovlink-tar  ovlink-diff  ovlink-fs
//! ```
//!
//! This crate owns layer ids ([`id`]), the trait, its values ([`Mount`], [`Usage`],
//! [`Capabilities`], [`Layout`], [`LayerKind`]) and its error type ([`error`]); the typed
//! settings of init ([`config`]); the [`Home`] both layouts build on (init checked before
//! anything is created, layer locks, temporary directories, publishing renames, trash and
//! reclaim, crash reaping, mount reference counts, ENOSPC classification); host checks
//! ([`checks`], [`hostcheck`], [`features`]), mounting ([`mount`]), publishing renames on every
//! kernel ([`rename`]), the part of a diff both layouts share ([`diffplan`]) and the shape of
//! `ovlink status` ([`status`]).
//!
//! It never knows a layout's directory names beyond the shared ones (`work/`, `merged/`, the
//! temporary prefixes); each layout crate owns its own.
#![forbid(unsafe_code)]

pub mod checks;
pub mod config;
pub mod diffplan;
pub mod error;
pub mod features;
pub mod home;
pub mod hostcheck;
pub mod id;
pub mod layout;
pub mod lock;
pub mod mount;
pub mod refs;
pub mod rename;
pub mod staging;
pub mod status;

pub use config::{DiffMode, HomeAccess, HomeOwner, ReclaimMode, SyncFault, SyncMode};
pub use error::{error_chain, DriverError, Result};
pub use home::Home;
pub use id::{validate_id, LayerId};
pub use layout::{Capabilities, Layout};
/// The one change list entry of ovlink (`changes`, `docker diff`), from `ovlink-diff`.
pub use ovlink_diff::{Change, ChangeKind};

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// Options of `create` / `create_read_write` (Docker's `CreateOpts`).
#[derive(Debug, Clone, Default)]
pub struct CreateOpts {
    /// SELinux mount label, passed to the overlay mount as `context=`.
    pub mount_label: Option<String>,
    /// `--storage-opt` values; the legacy overlay driver refuses every one.
    pub storage_opt: BTreeMap<String, String>,
}

/// One range of a user-namespace id map (`--userns-remap`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct IdMap {
    /// First id inside the container.
    pub container_id: u32,
    /// First id on the host.
    pub host_id: u32,
    /// Number of ids in the range.
    pub size: u32,
}

/// What `init` is given: the home, the driver options, the id maps and the typed settings of
/// [`config`].
#[derive(Debug, Clone, Default)]
pub struct InitConfig {
    /// The driver home (`<root>/overlay`).
    pub home: PathBuf,
    /// Driver options (`--storage-opt` at daemon level); the legacy driver knows none.
    pub options: Vec<String>,
    /// UID maps for `--userns-remap`; empty for none.
    pub uid_maps: Vec<IdMap>,
    /// GID maps for `--userns-remap`; empty for none.
    pub gid_maps: Vec<IdMap>,
    /// Legacy layout: share (`Link`) or re-create (`Copy`, Docker-exact) symlinks and special
    /// files in every image layer. A home records its mode when its first layer is made
    /// (`<home>/.symlinks`); `None` uses the recorded one (`Link` for a home without a record),
    /// and a mode other than the recorded one is refused while the home holds layers.
    pub symlinks: Option<ovlink_fs::Specials>,
    /// How a new layer is made durable; `None`: the default ([`SyncMode::Syncfs`]).
    pub sync: Option<SyncMode>,
    /// A seeded durability bug (the power-loss test's proof that it bites); `None` always
    /// but there.
    pub sync_fault: Option<SyncFault>,
    /// Who opens the home to write ([`HomeOwner`]): recorded in a home that has no owner yet;
    /// a home another owner recorded is refused ([`DriverError::HomeOwned`]) unless this
    /// only reads ([`HomeAccess::Existing`]). `None` records and checks nothing (tests,
    /// benchmarks, labs, which make their own homes).
    pub owner: Option<HomeOwner>,
    /// When a removed layer's tree is deleted (legacy layout).
    pub reclaim: ReclaimMode,
    /// Which diff the diff methods make.
    pub diff: DiffMode,
    /// Whether init may create and repair the home, or only opens an existing one.
    pub access: HomeAccess,
}

impl InitConfig {
    /// This config (what dockerd's `/GraphDriver.Init` names: the home, options, id maps)
    /// with the durability, reclaim and diff settings and the symlinks mode of `settings`
    /// (the serving process's own flags; its symlinks mode only when it names one).
    pub fn with_settings_of(&self, settings: &InitConfig) -> InitConfig {
        InitConfig {
            sync: settings.sync,
            sync_fault: settings.sync_fault,
            owner: settings.owner,
            reclaim: settings.reclaim,
            diff: settings.diff,
            symlinks: settings.symlinks.or(self.symlinks),
            ..self.clone()
        }
    }
}

/// What a layer directory holds.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum LayerKind {
    /// A complete image layer: `root/`.
    Image,
    /// A container layer: `lower-id`, `upper/`, `work/` (and `merged/` while mounted).
    Container {
        /// The image layer it sits on.
        lower_id: String,
    },
    /// A layer dir that is neither (a crashed create, or something foreign).
    Incomplete,
}

impl LayerKind {
    /// The name `layer ls` shows and its JSON holds: `image`, `container` or `incomplete`.
    pub fn name(&self) -> &'static str {
        match self {
            LayerKind::Image => "image",
            LayerKind::Container { .. } => "container",
            LayerKind::Incomplete => "incomplete",
        }
    }

    /// The image layer a container layer sits on.
    pub fn lower_id(&self) -> Option<&str> {
        match self {
            LayerKind::Container { lower_id } => Some(lower_id),
            _ => None,
        }
    }
}

/// A layer as `layer ls` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LayerInfo {
    /// The layer id.
    pub id: String,
    /// Image or container layer.
    #[serde(flatten)]
    pub kind: LayerKind,
    /// For container layers: whether `merged/` is mounted now.
    pub mounted: bool,
}

/// What `ovlink layer inspect` shows of a layer ([`Driver::inspect`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LayerInspect {
    /// The layer id.
    pub id: String,
    /// Image or container layer.
    pub kind: LayerKind,
    /// For container layers: whether `merged/` is mounted now.
    pub mounted: bool,
    /// What `docker inspect` shows under `GraphDriver`.
    pub graph_driver: GraphDriverData,
}

/// `docker inspect`'s `GraphDriver`: the driver's name and its data (`LowerDir`, `UpperDir`,
/// ... with Docker's keys).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct GraphDriverData {
    /// The driver name (`overlay`, `overlay2`).
    pub name: String,
    /// [`Driver::metadata`].
    pub data: BTreeMap<String, String>,
}

/// What to mount to see a layer: a value a layout returns, so that a caller other than `get`
/// (a containerd snapshotter) can hand the same mount to someone else. `get` performs exactly
/// this mount.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Mount {
    /// The filesystem type: `bind` (an image layer's tree) or `overlay`.
    pub kind: String,
    /// The mount source: the bound directory, or `overlay`.
    pub source: PathBuf,
    /// Mount options, one per entry (`rbind`, `ro`, `lowerdir=...`, `upperdir=...`, ...): only
    /// options the running kernel understands, as `get` passes them.
    pub options: Vec<String>,
}

impl Mount {
    /// A `bind` of `dir` (an image layer's tree, or a layer with nothing below it).
    pub fn bind(dir: PathBuf) -> Mount {
        Mount {
            kind: "bind".into(),
            source: dir,
            options: vec!["rw".into(), "rbind".into()],
        }
    }

    /// An `overlay` mount with the option string `data` (split at its separating commas).
    pub fn overlay(data: &str) -> Mount {
        Mount {
            kind: "overlay".into(),
            source: PathBuf::from("overlay"),
            options: mount::split_options(data),
        }
    }

    /// The options joined by `,`, as the kernel's mount data.
    pub fn data(&self) -> String {
        self.options.join(",")
    }
}

/// What a layer adds to the backing filesystem: inodes and bytes on disk no layer below it
/// holds. The same figures `ovlink report` shows as a layer's "inodes added" and "bytes added".
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Usage {
    /// Inodes added.
    pub inodes: u64,
    /// Bytes on disk of those inodes (`st_blocks * 512`).
    pub bytes: u64,
}

impl std::ops::AddAssign for Usage {
    fn add_assign(&mut self, o: Usage) {
        self.inodes += o.inodes;
        self.bytes += o.bytes;
    }
}

/// The [`Driver`] methods a layout built on a [`Home`] answers from it unchanged: `home`,
/// `init_warnings`, `exists`, `cleanup`, `layers` and `layer_kind`. Expanded inside `impl Driver for X`, where `X`
/// keeps its home in a field `h` and tells its layer kinds apart with
/// `fn kind_of(&self, fd: &OwnedFd, layer: &Path) -> Result<LayerKind>`.
#[macro_export]
macro_rules! driver_on_home {
    () => {
        fn home(&self) -> &::std::path::Path {
            self.h.path()
        }

        fn init_warnings(&self) -> &[::std::string::String] {
            self.h.warnings()
        }

        fn exists(&self, id: &str) -> bool {
            self.h.exists(id)
        }

        fn cleanup(&self) -> $crate::Result<()> {
            self.h.cleanup()
        }

        fn layers(&self) -> $crate::Result<::std::vec::Vec<$crate::LayerInfo>> {
            self.h.layers(|fd, path| self.kind_of(fd, path))
        }

        fn layer_kind(&self, id: &str) -> $crate::Result<$crate::LayerKind> {
            self.h.layer_kind(id, |fd, path| self.kind_of(fd, path))
        }
    };
}

/// Docker's graphdriver interface. Every method documents its contract; ids are validated
/// ([`validate_id`]) before any path is built from them.
pub trait Driver: Send + Sync {
    /// The driver's name as `docker info` shows it (`overlay`, `overlay2`): its layout's.
    fn name(&self) -> &'static str {
        self.capabilities().layout.name()
    }

    /// The driver home.
    fn home(&self) -> &Path;

    /// The warnings init recorded (the kernel release, d_type, a recovery that could not
    /// finish), which `status` lists among its `Warning` lines; nothing is checked again.
    fn init_warnings(&self) -> &[String];

    /// What this layout can do where the two differ (lowerdirs per mount, whole image trees,
    /// native diff).
    fn capabilities(&self) -> Capabilities;

    /// Creates image layer `id` on `parent` (none: an empty `root/`). Fails with
    /// [`DriverError::LayerExists`] if `id` exists; leaves nothing behind on failure.
    fn create(&self, id: &str, parent: Option<&str>, opts: &CreateOpts) -> Result<()>;

    /// Creates container layer `id` on `parent`; identical to `create` for this layout.
    fn create_read_write(&self, id: &str, parent: Option<&str>, opts: &CreateOpts) -> Result<()>;

    /// Removes layer `id` entirely, unmounting it first if needed. Missing: `LayerNotFound`.
    fn remove(&self, id: &str) -> Result<()>;

    /// Describes the mount that shows layer `id`, without mounting: an image layer (or a layer
    /// with nothing below it) is a `bind` of its tree, a layer on a parent is one `overlay`
    /// mount (legacy: exactly one lowerdir). [`Driver::get`] performs this mount.
    fn mount_spec(&self, id: &str, mount_label: Option<&str>) -> Result<Mount>;

    /// The parent layer of `id` as the layout itself records it (`None`: a bottom layer).
    fn parent(&self, id: &str) -> Result<Option<String>>;

    /// The parent the changes of `id` are taken against: `given` (`--parent`), else the one
    /// the layout recorded ([`Driver::parent`]: a container's init layer, an init or container
    /// layer's image layer, an image layer's parent).
    fn diff_parent(&self, id: &str, given: Option<&str>) -> Result<Option<String>> {
        match given {
            Some(p) => Ok(Some(p.to_string())),
            None => self.parent(id),
        }
    }

    /// What layer `id` adds over its parent ([`Usage`]), counted with the walk `ovlink
    /// report` uses. Only a layer that shares inodes with its parent (a legacy image layer's
    /// hardlinked `root/`) has the parent walked too; a container layer, or any overlay2
    /// layer, is walked alone, so the cost is the layer's own size, never its image's.
    fn usage(&self, id: &str) -> Result<Usage>;

    /// Returns the directory to use: `root/` of an image layer, or the mounted `merged/` of a
    /// container layer (mounting it on the first get; reference-counted).
    fn get(&self, id: &str, mount_label: Option<&str>) -> Result<PathBuf>;

    /// Releases one `get`; the last put of a container layer unmounts it.
    fn put(&self, id: &str) -> Result<()>;

    /// True when layer `id` exists (any error counts as false).
    fn exists(&self, id: &str) -> bool;

    /// Streams a layer tar (plain, gzip or zstd) into layer `id`, created on `parent` before.
    /// Returns the size of the regular files in the tar. On error or crash the layer keeps
    /// its previous state.
    fn apply_diff(&self, id: &str, parent: Option<&str>, diff: &mut dyn Read) -> Result<u64>;

    /// Creates layer `id` on `parent` and applies `diff` to it as one step (`ovlink layer
    /// apply` of a new layer). The layer appears under its id only complete: a failure or a
    /// crash leaves no layer `id`, so there is nothing to clean up and nothing another
    /// caller could have applied to meanwhile; if another caller creates `id` first, this
    /// fails with [`DriverError::LayerExists`] and theirs is kept. Both layouts build it
    /// aside; this default (create, apply, remove on failure) is for simple test drivers.
    fn create_and_apply(&self, id: &str, parent: Option<&str>, diff: &mut dyn Read) -> Result<u64> {
        self.create(id, parent, &CreateOpts::default())?;
        self.apply_diff(id, parent, diff).inspect_err(|_| {
            let _ = self.remove(id);
        })
    }

    /// New layers built aside and published together ([`staging::Staging`]): what an image
    /// import uses, so that its new layers cost one flush, not one each. The default creates
    /// each layer at once ([`staging::Immediate`]).
    fn staging(&self) -> Result<Box<dyn staging::Staging + '_>> {
        Ok(Box::new(staging::Immediate::new(self)))
    }

    /// `ovlink layer apply`: applies `diff` to layer `id` when it exists (which keeps its
    /// previous state on failure), else creates it on `parent` with the tar as one step
    /// ([`Driver::create_and_apply`]: nothing is left on failure). When another caller creates
    /// `id` meanwhile, theirs is kept and this is [`DriverError::CreatedMeanwhile`].
    fn apply_or_create(&self, id: &str, parent: Option<&str>, diff: &mut dyn Read) -> Result<u64> {
        if self.exists(id) {
            return self.apply_diff(id, parent, diff);
        }
        self.create_and_apply(id, parent, diff)
            .map_err(|e| match e {
                DriverError::LayerExists { id } => DriverError::CreatedMeanwhile { id },
                e => e,
            })
    }

    /// `docker info` lines: `[("Backing Filesystem", "extfs"), ("Supports d_type", "true")]`.
    fn status(&self) -> Vec<(String, String)>;

    /// `docker inspect`'s GraphDriver.Data for layer `id`.
    fn metadata(&self, id: &str) -> Result<BTreeMap<String, String>>;

    /// Unmounts everything this driver mounted under the home.
    fn cleanup(&self) -> Result<()>;

    /// The layers in the home, sorted by id.
    fn layers(&self) -> Result<Vec<LayerInfo>>;

    /// What layer `id` is (image, container, incomplete).
    fn layer_kind(&self, id: &str) -> Result<LayerKind>;

    /// Layer `id` as `ovlink layer inspect` shows it: kind, mount state and `docker
    /// inspect`'s GraphDriver data.
    fn inspect(&self, id: &str) -> Result<LayerInspect> {
        Ok(LayerInspect {
            id: id.to_string(),
            kind: self.layer_kind(id)?,
            mounted: self.layers()?.iter().any(|l| l.id == id && l.mounted),
            graph_driver: GraphDriverData {
                name: self.name().to_string(),
                data: self.metadata(id)?,
            },
        })
    }

    /// What to compare to diff `id` against `parent` (the layout's part of a diff; the
    /// three methods below make the tar, the list and the size from it).
    fn diff_plan(&self, id: &str, parent: Option<&str>) -> Result<diffplan::DiffPlan<'_>>;

    /// Writes a Docker layer tar of what `id` changed against `parent` to `out`.
    fn diff(&self, id: &str, parent: Option<&str>, out: &mut dyn Write) -> Result<()> {
        self.diff_plan(id, parent)?.export(out)
    }

    /// The changes `docker diff` prints for `id` against `parent`.
    fn changes(&self, id: &str, parent: Option<&str>) -> Result<Vec<Change>> {
        self.diff_plan(id, parent)?.changes()
    }

    /// Bytes of the regular files changed in `id` against `parent`.
    fn diff_size(&self, id: &str, parent: Option<&str>) -> Result<u64> {
        self.diff_plan(id, parent)?.size()
    }
}
