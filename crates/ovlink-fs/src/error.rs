//! The error type of `ovlink-fs`: every failure carries the operation and the path it was
//! about. The message names what failed; the OS cause stays in `source()`.

use std::io;
use std::path::{Path, PathBuf};

/// Result alias of this crate.
pub type Result<T, E = FsError> = std::result::Result<T, E>;

/// A filesystem operation that failed, with its path.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FsError {
    /// A system call failed.
    #[error("cannot {op} {}", path.display())]
    Io {
        /// What was being done (`"link"`, `"mkdir"`, ...).
        op: &'static str,
        /// The path it was done to (for fd-relative calls, the logical path).
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A regular file a walk listed was replaced before it could be read (see
    /// [`crate::at::open_listed_file`]): nothing of the new entry was opened or read.
    #[error(
        "{} changed while being read: it was the regular file with inode {listed_ino} when \
         listed, it is now {now}; nothing of it was read (a process writing to the layer \
         meanwhile? retry when it is stopped)",
        path.display()
    )]
    Changed {
        /// The path.
        path: PathBuf,
        /// The inode the walk listed.
        listed_ino: u64,
        /// What the name is now.
        now: String,
    },
    /// A tree deeper than the walks go ([`crate::walk::MAX_DEPTH`] directories): refused
    /// with this error, before the walk's recursion could exhaust a thread's stack.
    #[error(
        "{} is more than {limit} directories deep below the tree walked: refused (ovlink walks \
         trees up to that depth)",
        path.display()
    )]
    TooDeep {
        /// The first directory past the limit (its path as far as it is known).
        path: PathBuf,
        /// The limit.
        limit: usize,
    },
    /// A path component that had to be a directory is something else (often a symlink).
    #[error("{} is not a directory (symlinks are not followed)", path.display())]
    NotADirectory {
        /// The offending path.
        path: PathBuf,
    },
}

impl FsError {
    /// Builds an [`FsError::Io`] from anything convertible to `io::Error` (such as rustix's `Errno`).
    pub fn io(op: &'static str, path: impl AsRef<Path>, source: impl Into<io::Error>) -> Self {
        FsError::Io {
            op,
            path: path.as_ref().to_path_buf(),
            source: source.into(),
        }
    }

    /// The raw OS error number, when the cause is an OS error.
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            FsError::Io { source, .. } => source.raw_os_error(),
            FsError::NotADirectory { .. } => Some(rustix::io::Errno::NOTDIR.raw_os_error()),
            FsError::Changed { .. } | FsError::TooDeep { .. } => None,
        }
    }

    /// True when the cause is "no space left on device" (bytes or inodes).
    pub fn is_no_space(&self) -> bool {
        self.raw_os_error() == Some(rustix::io::Errno::NOSPC.raw_os_error())
    }
}

/// Extension to attach an operation and a path to rustix/io results.
pub trait Context<T> {
    /// Maps the error into [`FsError::Io`] with `op` and `path`.
    fn ctx(self, op: &'static str, path: impl AsRef<Path>) -> Result<T>;
    /// Like [`Context::ctx`] but builds the path lazily (only on error).
    fn with_ctx<P: AsRef<Path>>(self, op: &'static str, path: impl FnOnce() -> P) -> Result<T>;
}

impl<T, E: Into<io::Error>> Context<T> for std::result::Result<T, E> {
    fn ctx(self, op: &'static str, path: impl AsRef<Path>) -> Result<T> {
        self.map_err(|e| FsError::io(op, path, e))
    }
    fn with_ctx<P: AsRef<Path>>(self, op: &'static str, path: impl FnOnce() -> P) -> Result<T> {
        self.map_err(|e| FsError::io(op, path(), e))
    }
}
