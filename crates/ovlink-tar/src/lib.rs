//! Docker layer tars: the applier (a tar stream into a layer tree) and, later, the exporter.
//!
//! CONTRACT (the driver and the image importer code against this; keep it):
//! - [`apply_layer`] reads a layer tar (plain, gzip or zstd, detected by magic bytes) from
//!   `input` and applies it into the directory open as `root` (`root_shown` is its path for
//!   messages). It returns [`ApplyStats`] whose `size` is the sum of the sizes of the regular
//!   files in the tar (what Docker's ApplyDiff returns).
//! - On error the tree may be partly modified: the driver applies into a temporary copy and
//!   throws it away on error.
//! - Nothing outside `root` is ever created, changed or removed.

use std::io::Read;
use std::path::{Path, PathBuf};

use rustix::fd::BorrowedFd;

/// Options of [`apply_layer`].
#[derive(Debug, Clone, Default)]
pub struct ApplyOptions {
    /// Skip device nodes instead of failing (inside a user namespace `mknod` is refused).
    pub skip_devices: bool,
}

/// What an apply did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ApplyStats {
    /// Sum of the sizes of the regular files in the tar.
    pub size: u64,
    /// Number of tar entries read.
    pub entries: u64,
}

/// Why an apply failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TarError {
    /// A filesystem operation failed.
    #[error(transparent)]
    Fs(#[from] ovlink_fs::FsError),
    /// An entry would create or change something outside the layer tree.
    #[error("tar entry {entry:?} would escape the layer: {reason}")]
    EscapeAttempt {
        /// The entry's name as it appears in the tar.
        entry: PathBuf,
        /// Why it was refused.
        reason: String,
    },
}

/// Applies a layer tar into `root`. See the crate docs for the contract.
pub fn apply_layer(
    root: BorrowedFd<'_>,
    root_shown: &Path,
    input: &mut dyn Read,
    opts: &ApplyOptions,
) -> Result<ApplyStats, TarError> {
    let _ = (root, root_shown, input, opts);
    unimplemented!("being written")
}
