//! The driver's error type. Variants a caller can match; I/O causes stay in `source()` and
//! the message names the layer, path or check that failed, and the fix where there is one.

use std::path::PathBuf;

/// Result alias of this crate.
pub type Result<T, E = DriverError> = std::result::Result<T, E>;

/// Why a driver call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DriverError {
    /// The layer id cannot be used as a directory name.
    #[error("invalid layer id {id:?}: {reason}")]
    InvalidLayerId {
        /// The id as given.
        id: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// No such layer.
    #[error("layer {id} does not exist")]
    LayerNotFound {
        /// The id.
        id: String,
    },
    /// The layer exists already.
    #[error("layer {id} already exists")]
    LayerExists {
        /// The id.
        id: String,
    },
    /// A create-and-apply found that another caller created the layer while it ran: theirs is
    /// kept and this tar was not applied.
    #[error(
        "layer {id} was created by another process while this apply ran; it is kept, this tar \
         was not applied (run again to apply it on top)"
    )]
    CreatedMeanwhile {
        /// The id.
        id: String,
    },
    /// The parent named in a call does not exist.
    #[error("parent layer {parent} of {id} does not exist")]
    ParentNotFound {
        /// The layer being made.
        id: String,
        /// The missing parent.
        parent: String,
    },
    /// The layer is not of the kind the call needs.
    #[error("layer {id} is {is}, but this needs {needs}")]
    WrongKind {
        /// The id.
        id: String,
        /// What it is.
        is: &'static str,
        /// What the call needs.
        needs: &'static str,
    },
    /// An option the driver does not know.
    #[error("{layout}: unknown option {option:?} (the {layout} driver takes no options)")]
    UnknownOption {
        /// The layout's name.
        layout: &'static str,
        /// The option.
        option: String,
    },
    /// `--symlinks` other than the mode the home's layers were built with.
    #[error(
        "{home}: its layers were built with --symlinks {recorded} (recorded in {home}/.symlinks); \
         --symlinks {asked} needs a new home (or remove every layer first)"
    )]
    SymlinksModeConflict {
        /// The home.
        home: std::path::PathBuf,
        /// The recorded mode.
        recorded: &'static str,
        /// The mode asked for.
        asked: &'static str,
    },
    /// The home belongs to another writer (its `.owner` record).
    #[error(
        "{} belongs to {} (its .owner record), which names its layers itself: {} may only \
         read it; give each its own --root (the snapshotter's default is \
         /var/lib/ovlink-snapshotter)",
        home.display(), owner.describe(), asked.describe()
    )]
    HomeOwned {
        /// The home.
        home: std::path::PathBuf,
        /// Its recorded owner.
        owner: crate::HomeOwner,
        /// Who asked to write.
        asked: crate::HomeOwner,
    },
    /// `--storage-opt` given to create.
    #[error("overlay: storage options are not supported (got {option:?})")]
    StorageOptNotSupported {
        /// The first option.
        option: String,
    },
    /// A command that only reads found no home to read ([`crate::HomeAccess::Existing`]).
    #[error("no {layout} home at {}: nothing has been stored with this layout under this root yet (a command that only reads creates none)", path.display())]
    NoHome {
        /// The layout asked for.
        layout: &'static str,
        /// The home that is missing.
        path: PathBuf,
    },
    /// A host check failed at init.
    #[error("{check}: {detail}")]
    HostCheck {
        /// Which check (`overlay support`, `backing filesystem`, `d_type`, `kernel version`).
        check: &'static str,
        /// What was found and how to fix it.
        detail: String,
    },
    /// A path or mount label that cannot be put into overlay mount options safely (it
    /// holds a character the option parser reads as syntax, or is not an SELinux context).
    #[error("refusing to mount overlay: {what} {value:?} {reason}")]
    UnsafeMountOption {
        /// What it is (`lowerdir`, `upperdir`, `workdir`, `mount label`).
        what: &'static str,
        /// The value as given.
        value: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// The kernel refused the mount for lack of privilege (EPERM): mounting overlayfs needs
    /// CAP_SYS_ADMIN.
    #[error("cannot mount overlay on {}: permission denied (EPERM); ovlink must run as root (CAP_SYS_ADMIN)", target.display())]
    MountNotPermitted {
        /// The mount point.
        target: PathBuf,
        /// The OS error (EPERM).
        #[source]
        source: std::io::Error,
    },
    /// The overlay mount failed.
    #[error("cannot mount overlay on {} (options {options})", target.display())]
    Mount {
        /// The mount point.
        target: PathBuf,
        /// The option string passed to the kernel.
        options: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Unmounting failed.
    #[error("cannot unmount {}", target.display())]
    Unmount {
        /// The mount point.
        target: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The backing filesystem ran out of inodes or bytes.
    #[error("no space left on {fs} at {}: {what} exhausted ({used} of {total} used, {free} free){hint}", path.display())]
    NoSpace {
        /// Backing filesystem type name.
        fs: String,
        /// The path where it happened.
        path: PathBuf,
        /// `inodes` or `bytes`.
        what: &'static str,
        /// Used units.
        used: u64,
        /// Total units.
        total: u64,
        /// Free units.
        free: u64,
        /// A fix.
        hint: &'static str,
        /// The underlying failure.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Applying a layer tar failed.
    #[error("cannot apply layer tar to {id}")]
    Apply {
        /// The layer.
        id: String,
        /// Why.
        #[source]
        source: ovlink_tar::TarError,
    },
    /// Computing or writing a layer diff failed (the cause names the path or tar entry).
    #[error("cannot diff layer {id}")]
    Diff {
        /// The layer being diffed.
        id: String,
        /// Why.
        #[source]
        source: ovlink_diff::DiffError,
    },
    /// A filesystem operation failed (the error names the path).
    #[error(transparent)]
    Fs(#[from] ovlink_fs::FsError),
    /// The call is not implemented by this driver.
    #[error("{what} is not supported by this driver")]
    Unsupported {
        /// The call.
        what: &'static str,
    },
}

impl DriverError {
    /// `WrongKind` for a layer dir that is neither an image nor a container layer.
    pub fn incomplete(id: &str, needs: &'static str) -> DriverError {
        DriverError::WrongKind {
            id: id.to_string(),
            is: "an incomplete layer",
            needs,
        }
    }

    /// `LayerNotFound` of `parent` read as the missing parent of `id` (`ParentNotFound`).
    pub fn as_parent_of(self, id: &str) -> DriverError {
        match self {
            DriverError::LayerNotFound { id: parent } => DriverError::ParentNotFound {
                id: id.to_string(),
                parent,
            },
            e => e,
        }
    }

    /// The OS errno at the root of this error, if any.
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            DriverError::Fs(e) => e.raw_os_error(),
            DriverError::Mount { source, .. }
            | DriverError::Unmount { source, .. }
            | DriverError::MountNotPermitted { source, .. } => source.raw_os_error(),
            // Any variant: an ENOSPC while creating an entry is `TarError::Entry`.
            DriverError::Apply { source, .. } => source.raw_os_error(),
            DriverError::Diff { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }
}

/// Wraps a diff error with the layer it was about (both layouts).
pub fn diff_err(id: &str) -> impl Fn(ovlink_diff::DiffError) -> DriverError + '_ {
    move |source| DriverError::Diff {
        id: id.to_string(),
        source,
    }
}

/// The error and its causes on one line.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
