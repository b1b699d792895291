//! The error type of `ovlink-diff`. Every variant names the path it was about and what was
//! being done; the OS cause stays in `source()`.

use std::path::PathBuf;

/// Result alias of this crate.
pub type Result<T, E = DiffError> = std::result::Result<T, E>;

/// Why a diff, a change list or a diff size could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DiffError {
    /// A filesystem operation on one of the trees failed (the error names the path).
    #[error(transparent)]
    Fs(#[from] ovlink_fs::FsError),
    /// Reading a file's content failed.
    #[error("cannot read {}", path.display())]
    Read {
        /// The file being read.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Writing the layer tar failed (the writer's error).
    #[error("cannot write the layer tar entry {entry:?}")]
    Write {
        /// The tar entry being written.
        entry: String,
        /// The writer's error.
        #[source]
        source: std::io::Error,
    },
    /// A file changed size while its content was being written to the tar.
    #[error("{} changed while it was being exported ({expected} bytes expected)", path.display())]
    Changed {
        /// The file.
        path: PathBuf,
        /// The size its header announced.
        expected: u64,
    },
    /// A host id has no container id under the id map (`--userns-remap`): the file cannot be
    /// written into a layer tar with container ids.
    #[error("{}: host {what} {id} has no mapping in the user namespace's {what} map (it cannot be written as a container id)", path.display())]
    Unmapped {
        /// The file.
        path: PathBuf,
        /// `uid` or `gid`.
        what: &'static str,
        /// The host id.
        id: u32,
    },
    /// The upper dir holds overlay metadata (`redirect_dir` or `metacopy`) that makes it
    /// something other than a plain diff: the caller must compare the merged view instead.
    #[error("{} carries {xattr}: the upper dir is not a plain diff", path.display())]
    NotPlainUpper {
        /// The entry carrying the xattr.
        path: PathBuf,
        /// The xattr found (`trusted.overlay.redirect`, `trusted.overlay.metacopy`).
        xattr: &'static str,
    },
}

impl DiffError {
    /// The OS errno at the root of this error, if any.
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            DiffError::Fs(e) => e.raw_os_error(),
            DiffError::Read { source, .. } | DiffError::Write { source, .. } => {
                source.raw_os_error()
            }
            _ => None,
        }
    }
}
