//! The typed settings a layout is initialized with, beside the home and the id maps of
//! [`crate::InitConfig`]: how a new layer is made durable ([`SyncMode`]), when a removed
//! layer's tree is deleted ([`ReclaimMode`]), which diff the diff methods make ([`DiffMode`])
//! and whether init may create a missing home ([`HomeAccess`]).
//!
//! This module only defines the values and their defaults; it must never read the
//! environment or a file (the binary maps its flags and environment variables to these).

/// How `apply_diff` makes a new layer durable before it reports success (see
/// `docs/design.md`, "Durability").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SyncMode {
    /// `fdatasync` of every file the layer tar wrote (a thread pool, overlapped with the
    /// apply), then one `fsync` of the layer directory after the rename, which commits the
    /// journal holding every name, inode and directory of the new tree. Cost: this layer's
    /// own data, but one journal commit and one cache flush per file: 3 to 7 times the time
    /// of `Syncfs` on small-file images (docs/benchmarks.md, "Durability"). For a home on a
    /// filesystem other writers keep full of dirty data.
    Files,
    /// The default: every large file's writeback started as it is written, then one
    /// `syncfs` of the backing filesystem before the rename that publishes the layer, then
    /// the same `fsync` of the layer directory: one flush per layer. Cost: every dirty byte
    /// on the filesystem, whoever wrote it (on a filesystem of its own, this layer's).
    #[default]
    Syncfs,
    /// Nothing is synced: a power loss can lose a layer that was reported as created. For
    /// tests and throw-away roots.
    None,
}

impl SyncMode {
    /// `mode` if one was chosen, else the default ([`SyncMode::Syncfs`] on every filesystem:
    /// the power-loss test holds for it on ext4 and xfs, docs/design.md).
    pub fn resolve(mode: Option<SyncMode>) -> SyncMode {
        mode.unwrap_or_default()
    }
}

/// Who writes a home. A home has one owner: the snapshotter removes at its start every layer
/// no snapshot of its own names, so a home it shared with the command line (both defaulted to
/// `/var/lib/ovlink`) lost the command line's images and containers. The snapshotter records
/// itself in `<home>/.owner`; every other writer is refused such a home and may only read it.
/// The command line and the plugin write no record: their homes stay exactly Docker's tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HomeOwner {
    /// The `ovlink` commands (images, containers and layers of the command line).
    Cli,
    /// `ovlink plugin serve` (the home dockerd names).
    Plugin,
    /// `ovlink snapshotter serve` (layers named by its snapshot records only).
    Snapshotter,
}

impl HomeOwner {
    /// The record's word.
    pub fn name(self) -> &'static str {
        match self {
            HomeOwner::Cli => "cli",
            HomeOwner::Plugin => "plugin",
            HomeOwner::Snapshotter => "snapshotter",
        }
    }

    /// The owner a record names.
    pub fn parse(s: &str) -> Option<HomeOwner> {
        [HomeOwner::Cli, HomeOwner::Plugin, HomeOwner::Snapshotter]
            .into_iter()
            .find(|o| o.name() == s)
    }

    /// Whether this owner records itself in the home it writes (the snapshotter only).
    pub fn records_itself(self) -> bool {
        self == HomeOwner::Snapshotter
    }

    /// Who it is, in words.
    pub fn describe(self) -> &'static str {
        match self {
            HomeOwner::Cli => "the ovlink command line",
            HomeOwner::Plugin => "ovlink plugin serve (Docker's graphdriver plugin)",
            HomeOwner::Snapshotter => "ovlink snapshotter serve (containerd's snapshotter)",
        }
    }
}

/// A seeded durability bug, for the power-loss test only (`scripts/powerloss.py`): it must
/// make that test fail, which shows the test can see a missing flush. The binary sets it from
/// the undocumented `OVLINK_TEST_SYNC_FAULT` (`skip-data`, `skip-directories`); nothing else
/// does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncFault {
    /// The data flush before a new layer is published is skipped: the legacy layout's
    /// `fdatasync` of every file the tar wrote, overlay2's `syncfs` of the new `diff/`.
    SkipData,
    /// Every directory `fsync` is skipped (the layer directory after its rename, the home).
    SkipDirectories,
}

/// When `remove` deletes the tree of a layer it renamed away (legacy layout; overlay2 always
/// deletes before `remove` returns). Either way the layer is gone for every caller as soon as
/// `remove` returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReclaimMode {
    /// Before `remove` returns (the default).
    #[default]
    Inline,
    /// In a background thread: `remove` returns at once, the inodes are freed later (`ovlink
    /// report` shows how many are left), and a process that exits first leaves the rest to
    /// the next init or `layer reclaim`.
    Background,
}

/// Whether `init` may create a missing home.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HomeAccess {
    /// Create the home if it is missing, after the host checks (the default: every command
    /// that stores something, the plugin, the snapshotter).
    #[default]
    Create,
    /// Only open a home that exists: after the same host checks, a missing home is
    /// [`crate::DriverError::NoHome`] and nothing is created where it would be (for the
    /// commands that only read: `layer ls`, `status`, `changes`, ... on a mistyped `--root`
    /// must not leave a new home there). An existing home is initialized as with `Create`,
    /// crash recovery included, as every init is.
    Existing,
}

/// Which diff `diff`, `changes` and `diff_size` make.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DiffMode {
    /// Native from the upper dirs when they are plain diffs, else naive (the default).
    #[default]
    Auto,
    /// Always the naive diff (mount, compare the merged view with the parent's by metadata),
    /// as Docker's legacy driver does: slower, reads every directory of the image.
    Naive,
}
