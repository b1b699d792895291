//! Inode and byte accounting of a driver home, legacy `overlay` or `overlay2`: what each
//! layer costs the backing filesystem, what it shares with its parent, how close its files
//! are to the hardlink limit, what is left on the filesystem and which runs out first.
//!
//! ```text
//! scan(home, layout, parents) ─▶ walk every layer dir (fd-relative, one device only)
//!                               ─▶ order layers bottom-up, attribute each (dev, ino) to the
//!                                  first layer that holds it
//!                               ─▶ HomeReport { layers, totals, fs, projections }
//! render::text / render::svg    ─▶ bars for the terminal, a chart for people
//! ```
//!
//! Modules: [`walk`] (the tree walk and its counts), [`mod@scan`] (layers, parents, ordering and
//! attribution), [`project`] (filesystem figures, link limits, projections), [`render`]
//! (terminal bars and the SVG chart), [`root`] (a layout's home under an ovlink root, with the
//! image store's parents), [`error`]. This crate only reads: it never writes to a
//! home, never follows a symlink, and never descends into another filesystem (a mounted
//! `merged/`), so its distinct-inode total equals `find HOME -xdev -printf '%i\n' | sort -u |
//! wc -l`.
#![forbid(unsafe_code)]

pub mod error;
pub mod project;
pub mod render;
pub mod root;
pub mod scan;
/// The tree walk (in `ovlink-fs`, so that layouts' `usage` shares it).
pub use ovlink_fs::walk;

pub use error::{ReportError, Result};
pub use project::{link_max, FsStats, Projection};
pub use root::{chart_of_root, recorded_parents, scan_root};
pub use scan::{scan, HomeReport, LayerReport, Layout};
