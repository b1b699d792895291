//! Image import and bookkeeping for ovlink: reading `docker save` and OCI image layout
//! archives with every digest verified while streaming ([`archive`], [`digest`]), importing
//! their layers into a [`ovlink_driver::Driver`] under chain ids ([`mod@import`]), the on-disk
//! image/container store ([`store`]), writing images back out ([`save`]), and a
//! deterministic image generator for demos, tests and benchmarks ([`mod@generate`]). The
//! archives' JSON documents are typed once in [`wire`], for the reader and the writers; the
//! outer tar both writers write is `tarball`'s.
//!
//! ```text
//! archive.tar ──Archive::open──▶ manifests + configs (verified)
//!             ──LayerStream────▶ decompress, hash blob + diff id, check at EOF
//!             ──import─────────▶ driver.create + apply_diff per chain id, bottom-up
//!                                store: images/<name>.json, layers/<chain-id>.json
//! ```
#![forbid(unsafe_code)]

pub mod archive;
pub mod digest;
pub mod error;
pub mod generate;
pub mod genfile;
pub mod import;
pub mod progress;
pub mod save;
pub mod store;
mod tarball;
pub mod wire;

pub use archive::{Archive, ArchiveImage, ArchiveLayer, Compression, Format, LayerStream};
pub use error::{ImageError, Result};
pub use generate::{
    generate, generate_oci, generate_with, GenFormat, GenLayout, GenSpec, GenSummary,
};
pub use import::{
    import, import_archive, import_archive_with, ImageReport, ImportOptions, ImportReport,
    LayerReport, PUBLISH_AFTER,
};
pub use progress::{NoProgress, Progress};
pub use save::{commit, save, CommitReport, SaveReport};
pub use store::{ContainerRecord, ImageListing, ImageRecord, LayerRecord, Store};
