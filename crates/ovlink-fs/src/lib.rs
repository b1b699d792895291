//! fd-relative filesystem primitives for ovlink.
//!
//! This crate owns every low-level walk ovlink does over a layer tree: opening directories
//! without following symlinks ([`at`]), reading and copying the xattrs that overlay layers care
//! about ([`xattr`]), the legacy driver's `DirCopy` in hardlink and full-content modes
//! ([`copy`]), removing whole trees ([`remove`]), the one file-lock type (an `flock` with `EINTR` retried, [`lock::FileLock`]), loop-mounted filesystem images ([`loopfs`]), user-named output files written without ever replacing a device ([`output`]), starting a file's writeback early ([`writeback`], the crate's one `unsafe` call), a server's file-descriptor budget ([`fdlimit`]) and the counting walk both the report and a
//! layout's `usage` use ([`walk`]). Everything works relative to directory
//! file descriptors opened with `O_NOFOLLOW`, so a walk can never leave the tree it was handed.
//! It never modifies an inode it did not create, except when removing a tree.
#![deny(unsafe_code)]

pub mod at;
pub mod copy;
pub mod crash;
pub mod error;
pub mod fdlimit;
pub mod lock;
pub mod loopfs;
pub mod output;
pub mod remove;
pub mod walk;
pub mod writeback;
pub mod xattr;

pub use copy::{copy_tree, CopyMode, CopyOptions, CopyStats, Specials};
pub use error::{FsError, Result};
pub use remove::remove_all_at;
