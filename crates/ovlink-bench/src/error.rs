//! The benchmark's error type: what failed, on which path, and why.

use std::path::PathBuf;

/// Errors of the scenarios.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// A filesystem call failed.
    #[error("cannot {op} {}: {source}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// On what.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The benchmark mounts overlayfs.
    #[error("the benchmark mounts overlayfs: run it as root")]
    NotRoot,
    /// The configuration cannot be run.
    #[error("{0}")]
    Config(String),
    /// A driver call failed.
    #[error(transparent)]
    Driver(#[from] ovlink_driver::DriverError),
    /// An image import failed.
    #[error(transparent)]
    Image(#[from] ovlink_image::ImageError),
    /// A report scan failed.
    #[error(transparent)]
    Report(#[from] ovlink_report::ReportError),
    /// A filesystem helper failed.
    #[error(transparent)]
    Fs(#[from] ovlink_fs::FsError),
    /// The fresh loop-mounted filesystem could not be made.
    #[error("cannot make the benchmark's fresh filesystem (--fs here measures in --dir as it is)")]
    FreshFs(#[from] ovlink_fs::loopfs::LoopFsError),
    /// `fincore` (util-linux) failed or is missing.
    #[error(transparent)]
    Lab(#[from] ovlink_lab::LabError),
}

/// The crate's result.
pub type Result<T> = std::result::Result<T, BenchError>;

/// Wraps an I/O error with the operation and path.
pub(crate) fn io(
    op: &'static str,
    path: impl Into<PathBuf>,
) -> impl FnOnce(std::io::Error) -> BenchError {
    let path = path.into();
    move |source| BenchError::Io { op, path, source }
}
