//! Helpers shared by ovlink's tests, one copy each: layer tars built in code ([`layer`]), a
//! private test root that unmounts everything mounted below it on drop ([`root`]), loop-mounted
//! filesystems that fail the test loudly when their `mkfs` is missing ([`loopfs`], over
//! [`ovlink_fs::loopfs`]) and tree manifests for comparing layers ([`manifest`]).
//!
//! Dev-only (`publish = false`): used as a dev-dependency by the root package's and the crates'
//! tests, never by a library. Its helpers panic on failure (they are test code): a test that
//! cannot set up what it needs fails, it never passes without having run. Nothing here touches
//! a path outside the directory a test handed it.
#![allow(clippy::unwrap_used, clippy::new_without_default)] // test code: failures panic

pub mod layer;
pub mod loopfs;
pub mod manifest;
pub mod root;

pub use layer::{append_raw, TarBuilder};
pub use loopfs::LoopFs;
pub use manifest::{
    assert_same_tree, comparable, kind_of, link_groups, manifest, manifests, sha256_file, Entry,
};
pub use root::{mounts_under, require_root, TestRoot};
