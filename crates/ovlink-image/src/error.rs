//! The one public error type of `ovlink-image`, [`ImageError`]. Every variant names what it
//! was about (archive member, digest, layer id, image or container name, file path) and the
//! operation; OS and parser causes stay in `source()`. This module must never hide an
//! `io::Error` behind a blanket `From`: each call site says what it was doing.

use std::io;
use std::path::PathBuf;

use ovlink_driver::DriverError;

/// Result alias of this crate.
pub type Result<T, E = ImageError> = std::result::Result<T, E>;

/// Why an import, a store operation or an archive read failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImageError {
    /// Data did not hash to the digest the archive promised (layer, blob or config).
    #[error("digest mismatch for {what}: expected {expected}, got {actual}")]
    DigestMismatch {
        /// What was hashed (names the layer / member / blob).
        what: String,
        /// The digest the manifest or config promised (`sha256:...`).
        expected: String,
        /// The digest of the data actually read (`sha256:...`).
        actual: String,
    },
    /// A path in a manifest is absolute, contains `..`, or a link leaves the archive.
    #[error("archive path {path:?} escapes the archive (absolute paths and `..` are refused)")]
    ManifestEscape {
        /// The path as written in the manifest (or the link target).
        path: String,
    },
    /// A manifest names a member that the archive does not contain.
    #[error("archive member {path:?} named by the manifest is missing")]
    MissingBlob {
        /// The path as written in the manifest.
        path: String,
    },
    /// A filesystem operation failed; the error names the operation and the path.
    #[error(transparent)]
    Fs(#[from] ovlink_fs::FsError),
    /// A manifest, index or config is not valid JSON of the expected shape.
    #[error("cannot parse {path}")]
    BadManifest {
        /// The member it was read from.
        path: String,
        /// The parser error.
        #[source]
        source: serde_json::Error,
    },
    /// The archive is well-formed JSON but describes something this importer refuses.
    #[error("invalid image in {path}: {reason}")]
    InvalidImage {
        /// The member (or archive) concerned.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// The input is neither a docker-save nor an OCI image layout (tarball or directory).
    #[error("{} is neither a docker-save archive nor an OCI image layout (no manifest.json, no oci-layout + index.json)", path.display())]
    UnknownFormat {
        /// The input path.
        path: PathBuf,
    },
    /// A driver call failed for a layer.
    #[error("driver {op} failed for layer {layer}")]
    Driver {
        /// The layer id (chain id, hex).
        layer: String,
        /// The driver call (`create`, `apply_diff`, `remove`, `layer_kind`).
        op: &'static str,
        /// The driver's error (boxed: it is large).
        #[source]
        source: Box<DriverError>,
    },
    /// An existing layer with an image's chain id is not an image layer (and is not ours to
    /// remove).
    #[error(
        "layer {layer} exists but is a {kind} layer, not an image layer; refusing to touch it"
    )]
    LayerConflict {
        /// The layer id.
        layer: String,
        /// What the driver says it is.
        kind: &'static str,
    },
    /// A file operation failed.
    #[error("cannot {op} {}", path.display())]
    Io {
        /// What was being done (`"open"`, `"read"`, `"rename"`, ...).
        op: &'static str,
        /// The path concerned (for archive members: `archive!member`).
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The image was imported with another layout: its layers are not in this one.
    #[error(
        "image {name} belongs to the {layout} layout (it was imported with --driver {layout}); \
         it has no layers in {wanted}: import it again with --driver {wanted}"
    )]
    WrongLayout {
        /// The image name.
        name: String,
        /// The layout it was imported with.
        layout: String,
        /// The layout asked for.
        wanted: String,
    },
    /// No image of that name in the store.
    #[error("no such image: {name}")]
    ImageNotFound {
        /// The name.
        name: String,
    },
    /// An image of that name exists already.
    #[error("image {name} already exists")]
    ImageExists {
        /// The name.
        name: String,
    },
    /// The image is used by a container and cannot be removed.
    #[error("image {name} is used by container {container}")]
    ImageInUse {
        /// The image name.
        name: String,
        /// A container using it.
        container: String,
    },
    /// No container of that name in the store.
    #[error("no such container: {name}")]
    ContainerNotFound {
        /// The name.
        name: String,
    },
    /// A container of that name exists already.
    #[error("container {name} already exists")]
    ContainerExists {
        /// The name.
        name: String,
    },
    /// A name cannot be used for an image or a container.
    #[error("invalid name {name:?}: {reason}")]
    InvalidName {
        /// The name as given.
        name: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// A store record file is not valid JSON of the expected shape.
    #[error("corrupt store record {}", path.display())]
    BadRecord {
        /// The record file.
        path: PathBuf,
        /// The parser error.
        #[source]
        source: serde_json::Error,
    },
}

impl ImageError {
    /// Builds an [`ImageError::Io`].
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        ImageError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}
