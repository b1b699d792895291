//! The labs' error type: what failed, on which path, and why. A lab that finds the kernel
//! doing something it cannot explain says so ([`LabError::Unexpected`]) instead of guessing.

use std::path::{Path, PathBuf};

/// Errors of the scenarios.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
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
    /// An external tool (mkfs, mount, fincore, cp, mv) is missing or failed.
    #[error("{tool}: {detail}")]
    Tool {
        /// The tool and what it was for.
        tool: String,
        /// What went wrong (its stderr, or how to install it).
        detail: String,
    },
    /// The scenario cannot run with what it was given (not root, a bad size, …).
    #[error("{0}")]
    Refused(String),
    /// The kernel did something the scenario does not know how to explain.
    #[error("unexpected: {0}")]
    Unexpected(String),
    /// A driver call failed.
    #[error(transparent)]
    Driver(#[from] ovlink_driver::DriverError),
    /// An image-store or import call failed.
    #[error(transparent)]
    Image(#[from] ovlink_image::ImageError),
    /// A report scan failed.
    #[error(transparent)]
    Report(#[from] ovlink_report::ReportError),
    /// A loop-mounted filesystem could not be made (its mkfs missing or failing).
    #[error(transparent)]
    LoopFs(#[from] ovlink_fs::loopfs::LoopFsError),
    /// An fd-relative filesystem helper failed.
    #[error(transparent)]
    Fs(#[from] ovlink_fs::error::FsError),
}

/// Result with [`LabError`].
pub type Result<T> = std::result::Result<T, LabError>;

/// `map_err` helper: `.map_err(io("read", &path))`.
pub(crate) fn io<'a, E: Into<std::io::Error>>(
    op: &'static str,
    path: &'a Path,
) -> impl FnOnce(E) -> LabError + 'a {
    move |e| LabError::Io {
        op,
        path: path.to_path_buf(),
        source: e.into(),
    }
}

/// Errors of in-memory work (tar building) that has no path.
pub(crate) fn mem(e: std::io::Error) -> LabError {
    LabError::Io {
        op: "build in memory",
        path: PathBuf::from("(a generated layer tar)"),
        source: e,
    }
}

impl From<walkdir::Error> for LabError {
    fn from(e: walkdir::Error) -> Self {
        let path = e.path().map(Path::to_path_buf).unwrap_or_default();
        LabError::Io {
            op: "walk",
            path,
            source: e.into(),
        }
    }
}
