//! Docker layer tars: the applier (a tar stream into a layer tree) and, later, the exporter.
//!
//! CONTRACT (the driver and the image importer code against this; keep it):
//! - [`apply_layer`] reads a layer tar (plain, gzip or zstd, detected by magic bytes) from
//!   `input` and applies it into the directory open as `root` (`root_shown` is its path for
//!   messages). It returns [`ApplyStats`] whose `size` is the sum of the sizes of the regular
//!   files in the tar (what Docker's ApplyDiff returns).
//! - `input` is always read to its end on success (the decompressed stream to its end, then
//!   whatever follows the compressed stream), so a wrapping reader that checks a digest at EOF
//!   always gets to check it; any read error fails the apply ([`TarError::Read`]). Bytes after
//!   a plain tar's end blocks are ignored; after a gzip or zstd stream they must be further
//!   members/frames (like any decoder read to its end, containerd's included).
//! - Hardlink entries share their target's inode; their own owner/mode/times are not applied
//!   (the target may be a lower layer's file).
//! - [`TarError::raw_os_error`] finds the errno (e.g. `ENOSPC`) whichever variant carries it.
//! - On error the tree may be partly modified: the driver applies into a temporary copy and
//!   throws it away on error.
//! - Nothing outside `root` is ever created, changed or removed, and no inode that existed in
//!   the tree before the apply is modified in place, except directories (their metadata is set
//!   from the tar's directory entries). Replacing an entry unlinks it and creates a new inode.
//!
//! Modules: `apply` (the entry loop and per-type creation), `decompress` (magic-byte
//! detection, decoding, draining), `guard` (extension headers bounded before the parser
//! reads them into memory), `path` (entry-name normalization), `sparse` (PAX sparse
//! maps), `tree` (fd-relative
//! walks below the root), `trie` (what the apply remembers per path), `meta` (owner/mode/times/xattrs of an entry), [`whiteout`] (the one
//! definition of whiteouts, in layer tars and in overlayfs upper dirs, [`WhiteoutFormat`],
//! opaque directories and what this apply created), `datasync` (the `fdatasync` pool of
//! [`ApplyOptions::sync_data`]).
#![forbid(unsafe_code)]

mod apply;
mod datasync;
pub mod decompress;
mod guard;
mod meta;
mod path;
mod sparse;
mod tree;
mod trie;
pub mod whiteout;

use std::io;
use std::path::{Path, PathBuf};

pub use apply::apply_layer;

/// A GNU tar header of a layer entry owned by root: type `kind`, permission bits `mode`,
/// `size` bytes of data, modified at `mtime` (unix seconds); the path is set by the caller.
/// What every tar writer of ovlink that builds layer entries by hand starts from.
pub fn root_header(kind: tar::EntryType, mode: u32, size: u64, mtime: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(mtime);
    h.set_size(size);
    h
}
pub use whiteout::WhiteoutFormat;

/// The smallest file whose writeback [`ApplyOptions::start_writeback`] starts at once.
/// Measured (docs/benchmarks.md, "Durability"): starting it for every file made a
/// 10,000-file import 7% slower (a syscall and a tiny I/O per file, which the layer's one
/// sync would have merged), while starting it for large files took a 930 MB import from
/// 1.9x to 1.3x the time of no sync at all.
pub const WRITEBACK_MIN: u64 = 256 * 1024;

/// Options of [`apply_layer`].
#[derive(Debug, Clone, Default)]
pub struct ApplyOptions {
    /// Skip device nodes instead of failing (inside a user namespace `mknod` is refused).
    pub skip_devices: bool,
    /// UID map of `--userns-remap`: the tar's owners are container ids, written as the host
    /// ids they map to. Empty: ids are written as they are.
    pub uid_maps: Vec<IdRange>,
    /// GID map, as [`ApplyOptions::uid_maps`].
    pub gid_maps: Vec<IdRange>,
    /// `fdatasync` every regular file written, from a small pool of threads while the apply
    /// goes on; [`apply_layer`] returns only when all of them are on disk. Names, modes and
    /// directories are not synced here (the caller's one `fsync` after its rename commits
    /// them on a journaling filesystem).
    pub sync_data: bool,
    /// Start the writeback of every regular file of [`WRITEBACK_MIN`] bytes or more as soon
    /// as it is written ([`ovlink_fs::writeback::start`]), so that the caller's one sync of
    /// the layer finds its data already on the way to the device. Makes nothing durable by
    /// itself.
    pub start_writeback: bool,
    /// How the tree keeps deletions: applied to the parent's content (the legacy layout, the
    /// default) or kept as overlayfs whiteouts (overlay2's `diff/`).
    pub whiteouts: WhiteoutFormat,
}

/// One range of a user-namespace id map: container ids `container_id..container_id + size`
/// are host ids `host_id..host_id + size`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdRange {
    /// First id inside the container.
    pub container_id: u32,
    /// First id on the host.
    pub host_id: u32,
    /// Number of ids in the range.
    pub size: u32,
}

/// The host id of container id `id` under `maps` (`id` itself when `maps` is empty; `None`
/// when no range holds it).
pub fn map_id(maps: &[IdRange], id: u32) -> Option<u32> {
    if maps.is_empty() {
        return Some(id);
    }
    maps.iter().find_map(|m| {
        let off = id.checked_sub(m.container_id)?;
        (off < m.size).then(|| m.host_id.checked_add(off)).flatten()
    })
}

/// What an apply did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ApplyStats {
    /// Sum of the sizes of the regular files in the tar.
    pub size: u64,
    /// Number of tar entries read.
    pub entries: u64,
}

/// Why an apply failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TarError {
    /// A filesystem operation failed.
    #[error(transparent)]
    Fs(#[from] ovlink_fs::FsError),
    /// An entry would create or change something outside the layer tree.
    #[error("tar entry {entry:?} would escape the layer: {reason}")]
    EscapeAttempt {
        /// The entry's name as it appears in the tar.
        entry: PathBuf,
        /// Why it was refused.
        reason: String,
    },
    /// Reading the layer stream failed: a truncated or corrupt archive, a decompression
    /// error, or an error of the input reader itself (such as a digest mismatch at EOF).
    #[error("cannot read the layer tar stream{}", match entry {
        Some(e) => format!(" (at or after entry {e:?})"),
        None => String::new(),
    })]
    Read {
        /// The entry being read, or the last entry read before the failure; `None` when the
        /// stream failed before its first entry.
        entry: Option<PathBuf>,
        /// The read or decode error.
        #[source]
        source: io::Error,
    },
    /// The tar has an entry of a type a layer cannot hold.
    #[error("tar entry {entry:?} has an unsupported type: {kind}")]
    Unsupported {
        /// The entry's name as it appears in the tar.
        entry: PathBuf,
        /// The entry type.
        kind: String,
    },
    /// An entry's header holds a value that cannot be applied (an out-of-range owner, a
    /// malformed PAX record, a hardlink without a target, ...).
    #[error("tar entry {entry:?} is invalid: {reason}")]
    Invalid {
        /// The entry's name as it appears in the tar.
        entry: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Setting an extended attribute of an entry failed: the filesystem has no room for it
    /// (`ENOSPC`: ext4 keeps a file's xattrs in its inode and one block; `E2BIG`), or does not
    /// support its namespace (`ENOTSUP`: `user.*` on tmpfs before 6.6, for one).
    #[error("cannot set xattr {key:?} ({size} bytes) of tar entry {entry:?} on {}{}", path.display(), xattr_hint(source))]
    Xattr {
        /// The entry's name as it appears in the tar.
        entry: PathBuf,
        /// The xattr name.
        key: std::ffi::OsString,
        /// The size of its value.
        size: usize,
        /// The path it was set on.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A filesystem operation failed while applying an entry (the source names the
    /// operation and the path).
    #[error("cannot apply tar entry {entry:?}")]
    Entry {
        /// The entry's name as it appears in the tar.
        entry: PathBuf,
        /// The failed operation.
        #[source]
        source: ovlink_fs::FsError,
    },
}

/// What an xattr errno means for the user.
fn xattr_hint(e: &io::Error) -> &'static str {
    match e.raw_os_error().map(rustix::io::Errno::from_raw_os_error) {
        Some(rustix::io::Errno::NOSPC) => {
            ": no room for it (the file's xattr space is full, or the filesystem is)"
        }
        Some(rustix::io::Errno::TOOBIG) => ": larger than the filesystem allows",
        Some(rustix::io::Errno::NOTSUP) => ": the filesystem does not support this xattr namespace",
        _ => "",
    }
}

impl TarError {
    /// The OS errno at the root of this error, if any (for `ENOSPC` detection and the like).
    /// [`TarError::Xattr`] gives `None`: an xattr that does not fit in its file is not a
    /// full disk, and callers must not report it as one.
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            TarError::Fs(e) | TarError::Entry { source: e, .. } => e.raw_os_error(),
            TarError::Read { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }

    /// True when the cause is "no space left on device".
    pub fn is_no_space(&self) -> bool {
        self.raw_os_error() == Some(rustix::io::Errno::NOSPC.raw_os_error())
    }

    /// The tar entry the error is about, when there is one.
    pub fn entry(&self) -> Option<&Path> {
        match self {
            TarError::EscapeAttempt { entry, .. }
            | TarError::Unsupported { entry, .. }
            | TarError::Invalid { entry, .. }
            | TarError::Xattr { entry, .. }
            | TarError::Entry { entry, .. } => Some(entry),
            TarError::Read { entry, .. } => entry.as_deref(),
            TarError::Fs(_) => None,
        }
    }
}
