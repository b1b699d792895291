//! Layer diffs for ovlink: what a layer changed against its parent, as a change list
//! (`docker diff`), as a Docker layer tar (`docker commit`, `docker save`), or as a size.
//!
//! A diff compares two [`Tree`]s. The native diff of a container layer reads its upper dir
//! over the lower root ([`Tree::overlay`]): a 0/0 character device is a deletion, an opaque
//! directory replaces the lower directory, everything else is an addition or a change, and
//! only what the upper dirs name is looked at, so the cost follows the size of the change,
//! not of the image. An image layer's `root/` is compared with its parent's
//! ([`Tree::plain`]); unchanged files are the parent's inodes. The naive diff (Docker's
//! legacy driver's only one) compares a mounted merged view with the lower root by metadata
//! ([`Compare::Naive`]); it is the fallback when [`check_plain_upper`] says the upper dir
//! was written with `redirect_dir` or `metacopy` on.
//!
//! Modules: `tree` (trees, overlay conventions), `walk` (the comparison), `changes` (the
//! change list), `export` (the tar writer and the size), `error`.
//!
//! This crate never writes to a tree and never follows a symlink below a tree's root. It
//! knows nothing about the driver's layout: the driver builds the trees.
#![forbid(unsafe_code)]

mod changes;
pub mod error;
mod export;
mod tree;
mod walk;

pub use changes::{Change, ChangeKind};
pub use error::{DiffError, Result};
pub use export::{ExportOptions, ExportStats, IdRange};
pub use tree::{check_plain_upper, is_exported_xattr, Tree, OVERLAY_METACOPY, OVERLAY_REDIRECT};
pub use walk::Compare;

use std::io::Write;

/// The changes of `new` against `old` (none: everything in `new` is added), sorted by path.
/// `/` is never listed; a directory is listed as modified when its own mode, owner or xattrs
/// changed or when something inside it changed; a deleted directory is listed once.
pub fn changes(new: &Tree, old: Option<&Tree>, cmp: Compare) -> Result<Vec<Change>> {
    let sink = ovlink_fs::walk::on_walk_stack(|| {
        walk::Walker::new(new, old, cmp, changes::ChangeSink::default()).run()
    })?;
    let mut out = sink.out;
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// Writes the Docker layer tar of `new` against `old` (none: all of `new`) to `out`,
/// streaming file contents. Returns the bytes of regular files written and the entry count.
pub fn export(
    new: &Tree,
    old: Option<&Tree>,
    cmp: Compare,
    out: &mut dyn Write,
) -> Result<ExportStats> {
    export_with(new, old, cmp, out, &ExportOptions::default())
}

/// [`export`] with owners mapped from host to container ids (`--userns-remap`).
pub fn export_with(
    new: &Tree,
    old: Option<&Tree>,
    cmp: Compare,
    out: &mut dyn Write,
    opts: &ExportOptions,
) -> Result<ExportStats> {
    // The walk runs on a thread with a stack for any depth it accepts
    // (ovlink_fs::walk::on_walk_stack); `out` stays on this one, fed through a bounded
    // channel, so any writer will do.
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(8);
    let walk = move || {
        let mut w = ChannelWriter {
            tx,
            buf: Vec::with_capacity(CHUNK),
        };
        let stats = {
            let sink = export::TarSink::new(Some(&mut w as &mut dyn Write), opts.clone());
            walk::Walker::new(new, old, cmp, sink).run()?.finish()?
        };
        w.send().map_err(|source| DiffError::Write {
            entry: String::new(),
            source,
        })?;
        Ok(stats)
    };
    let mut written: std::io::Result<()> = Ok(());
    let walked = std::thread::scope(|s| {
        let h = std::thread::Builder::new()
            .name("ovlink-export".into())
            .stack_size(ovlink_fs::walk::WALK_STACK)
            .spawn_scoped(s, walk)
            .map_err(|source| DiffError::Write {
                entry: String::new(),
                source,
            })?;
        for chunk in rx.iter() {
            if let Err(e) = out.write_all(&chunk) {
                written = Err(e);
                break; // the receiver goes: the walk's next write fails and it stops
            }
        }
        drop(rx);
        h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))
    });
    match (walked, written) {
        // The output's own error, not the closed channel the walk then met.
        (Err(_), Err(source)) | (Ok(_), Err(source)) => Err(DiffError::Write {
            entry: "(output)".into(),
            source,
        }),
        (r, Ok(())) => r,
    }
}

/// Bytes handed from the export's walk to the thread holding the output, in chunks.
const CHUNK: usize = 256 * 1024;

/// The walk's end of the export channel.
struct ChannelWriter {
    tx: std::sync::mpsc::SyncSender<Vec<u8>>,
    buf: Vec<u8>,
}

impl ChannelWriter {
    fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        self.tx
            .send(chunk)
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the output failed"))
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}

/// The size Docker reports for these changes (`docker ps -s`, `system df`): its
/// `archive.ChangesSize`, the `lstat` size of every added or changed entry that is not a
/// directory (symlinks count their target's length), an inode linked more than once counted
/// once. Reads no file content.
pub fn size(new: &Tree, old: Option<&Tree>, cmp: Compare) -> Result<u64> {
    let sink = export::TarSink::<std::io::Sink>::new(None, ExportOptions::default());
    Ok(
        ovlink_fs::walk::on_walk_stack(|| walk::Walker::new(new, old, cmp, sink).run())?
            .finish()?
            .changes_size,
    )
}
