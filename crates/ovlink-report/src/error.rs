//! The report's error type: what could not be read, and where.

use std::path::PathBuf;

/// Result alias of this crate.
pub type Result<T, E = ReportError> = std::result::Result<T, E>;

/// Why a report could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReportError {
    /// Reading the home failed (the error names the path and the operation).
    #[error(transparent)]
    Fs(#[from] ovlink_fs::FsError),
    /// The directory is not a driver home of the layout asked for.
    #[error("{} is not an {layout} driver home: {reason}", path.display())]
    NotAHome {
        /// The directory.
        path: PathBuf,
        /// The layout asked for.
        layout: &'static str,
        /// What is missing or wrong.
        reason: String,
    },
    /// The root holds no home of the layout asked for.
    #[error(
        "there is no {layout} home at {} (import an image first: ovlink --driver {layout} image import FILE)",
        home.display()
    )]
    NoHome {
        /// Where the home would be.
        home: PathBuf,
        /// The layout asked for.
        layout: crate::Layout,
    },
    /// Writing the chart failed.
    #[error("cannot write the chart to {}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}
