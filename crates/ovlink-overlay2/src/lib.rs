//! Docker's `overlay2` layout behind ovlink's [`Driver`](ovlink_driver::Driver) trait, so the
//! legacy `overlay` layout can be measured against it on the same work.
//!
//! ```text
//! <home>/                      0710
//!   l/                         0700   short links: l/<26 chars> -> ../<id>/diff
//!   <id>/                      0710   every layer, image or container
//!     diff/                    0755   this layer's own changes (overlay whiteouts kept: layer
//!                                     tars are applied with `WhiteoutFormat::Overlay`)
//!     link                     0644   its short id (no newline)
//!     lower                    0644   l/<parent link>:l/<grandparent link>:… (nearest first;
//!                                     absent for a bottom layer)
//!     work/                    0700   overlayfs workdir (only for layers with a parent)
//!     merged/                  0700   only while mounted
//!   .tmp-*                            ovlink's in-progress dirs (flocked while in use)
//! ```
//!
//! A layer costs the same few inodes whatever its depth: nothing of the parent is re-created
//! (compare the legacy layout, where every image layer re-creates every directory of its
//! parent). A chain may be at most [`MAX_LOWERS`] lower layers deep, and a mount whose
//! absolute option string exceeds one page is made with paths relative to the home, as
//! Docker does ([`mount`]).
//!
//! Modules: [`driver`] (the layout and the trait), [`diff`] (diff, changes and diff size:
//! native from `diff/` over the parent's view, naive otherwise, as Docker's overlay2 does), [`mount`] (option strings and the
//! relative-path mount), [`nativediff`] (Docker's `Native Overlay Diff` check), [`shortid`] (the `l/` names), [`staging`] (an import's new layers built aside and published together after one flush). Errors are [`ovlink_driver::DriverError`]: this
//! crate has no error type of its own because every public call is a `Driver` call.
#![forbid(unsafe_code)]

pub mod diff;
pub mod driver;
pub mod mount;
pub mod nativediff;
pub mod shortid;
pub mod staging;

pub use driver::Overlay2Driver;

/// Docker's limit on the number of lower layers of one layer (`maxDepth`).
pub const MAX_LOWERS: usize = 128;
