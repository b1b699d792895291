//! The snapshotter's error type and how each error travels to containerd as a gRPC status
//! (containerd's `errdefs` maps the codes back: NotFound, AlreadyExists, FailedPrecondition,
//! InvalidArgument).

use std::path::PathBuf;

/// The longest key quoted whole in a message.
const QUOTED_MAX: usize = 256;

/// A client's key (or name) as messages show it: quoted, and cut after [`QUOTED_MAX`] bytes
/// with its length said, so that an error about a 1 MiB key does not repeat the key until the
/// gRPC reply passes the header limit (a NotFound then arrived as RESOURCE_EXHAUSTED).
pub fn quoted(key: &str) -> String {
    if key.len() <= QUOTED_MAX {
        return format!("{key:?}");
    }
    let mut end = QUOTED_MAX;
    while !key.is_char_boundary(end) {
        end -= 1;
    }
    format!("{:?}... ({} bytes)", &key[..end], key.len())
}

/// Result alias of this crate.
pub type Result<T, E = SnapError> = std::result::Result<T, E>;

/// Why a snapshot call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SnapError {
    /// No snapshot has this key.
    #[error("snapshot {} does not exist", quoted(.key))]
    NotFound {
        /// The containerd key.
        key: String,
    },
    /// A snapshot with this key exists already.
    #[error("snapshot {} already exists", quoted(.key))]
    AlreadyExists {
        /// The containerd key.
        key: String,
    },
    /// The snapshot is not in the state the call needs (not active, has children).
    #[error("snapshot {}: {reason}", quoted(.key))]
    FailedPrecondition {
        /// The containerd key.
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// The request itself is wrong (empty key, uncommitted parent, immutable field, filter).
    #[error("{0}")]
    InvalidArgument(String),
    /// The layout failed (the error names the layer path and the operation).
    #[error("layer {id} of snapshot {}", quoted(.key))]
    Driver {
        /// The containerd key.
        key: String,
        /// The ovlink layer id.
        id: String,
        /// The driver's error.
        #[source]
        source: Box<ovlink_driver::DriverError>,
    },
    /// Opening the layout failed.
    #[error("cannot open the {layout} layout at {}", home.display())]
    Init {
        /// The layout.
        layout: &'static str,
        /// Its home.
        home: PathBuf,
        /// The driver's error.
        #[source]
        source: Box<ovlink_driver::DriverError>,
    },
    /// The metadata store failed.
    #[error("metadata store {}: {op}", path.display())]
    Store {
        /// The database file.
        path: PathBuf,
        /// What was done.
        op: &'static str,
        /// redb's error.
        #[source]
        source: Box<redb::Error>,
    },
    /// A record in the store does not parse.
    #[error("metadata store {}: record of {} is corrupt", path.display(), quoted(.key))]
    Corrupt {
        /// The database file.
        path: PathBuf,
        /// The key.
        key: String,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// A file of the snapshotter's own (state dir, temp file, socket) could not be used.
    #[error("cannot {op} {}", path.display())]
    Io {
        /// What was done.
        op: &'static str,
        /// The path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

impl SnapError {
    /// The gRPC code containerd expects for this error.
    pub fn code(&self) -> tonic::Code {
        use ovlink_driver::DriverError as D;
        match self {
            SnapError::NotFound { .. } => tonic::Code::NotFound,
            SnapError::AlreadyExists { .. } => tonic::Code::AlreadyExists,
            SnapError::FailedPrecondition { .. } => tonic::Code::FailedPrecondition,
            SnapError::InvalidArgument(_) => tonic::Code::InvalidArgument,
            SnapError::Driver { source, .. } => match source.as_ref() {
                D::LayerNotFound { .. } | D::ParentNotFound { .. } => tonic::Code::NotFound,
                D::LayerExists { .. } => tonic::Code::AlreadyExists,
                _ => tonic::Code::Internal,
            },
            _ => tonic::Code::Internal,
        }
    }
}

impl From<SnapError> for tonic::Status {
    fn from(e: SnapError) -> tonic::Status {
        tonic::Status::new(e.code(), ovlink_driver::error_chain(&e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 1 MiB key: the message stays short (it becomes a gRPC status, whose headers have a
    /// limit), names the key's start and length, and a short key is quoted whole.
    #[test]
    fn a_huge_key_is_quoted_shortened() {
        let key = format!("default/1/{}", "ä".repeat(512 * 1024));
        let msg = SnapError::NotFound { key: key.clone() }.to_string();
        assert!(msg.len() < 400, "{} bytes", msg.len());
        assert!(msg.starts_with("snapshot \"default/1/ää"), "{msg}");
        assert!(msg.contains(&format!("({} bytes)", key.len())), "{msg}");
        assert_eq!(
            SnapError::AlreadyExists { key: "k".into() }.to_string(),
            "snapshot \"k\" already exists"
        );
    }
}
