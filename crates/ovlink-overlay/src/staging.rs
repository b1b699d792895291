//! The legacy layout's [`Staging`]: an image import's new layers, each a `.tmp-create-*` of
//! the home holding its parent record and its complete `root/` (a hardlink copy of the
//! layer staged before it, or of a published parent, with the tar applied), made durable by
//! one flush for all of them and then renamed into place bottom first.
//!
//! It never publishes a layer before the flush that covers every staged tree, and it never
//! stages on a container parent (an import's parents are image layers; a container parent
//! goes through [`ovlink_driver::Driver::create_and_apply`]). Dropped unpublished, every
//! staged directory is removed with its `TempDir`; after a crash the next init reaps them.

use crate::{OverlayDriver, ROOT};
use ovlink_driver::lock::TempDir;
use ovlink_driver::staging::{EarlyFlush, Staging};
use ovlink_driver::{CreateOpts, DriverError, Result, SyncMode};
use ovlink_fs::at::{is_dir_at, open_dir_at};
use ovlink_fs::FsError;
use rustix::fd::OwnedFd;
use std::ffi::OsStr;
use std::io::Read;
use std::path::PathBuf;

/// New layers built aside on one [`OverlayDriver`].
pub struct LegacyStaging<'d> {
    d: &'d OverlayDriver,
    /// Staged layers in order: their id and their `.tmp-create-*`, `root/` complete in it.
    staged: Vec<(String, TempDir)>,
    /// The background `syncfs` after each staged layer (`syncfs` mode).
    early: EarlyFlush,
}

impl<'d> LegacyStaging<'d> {
    pub(crate) fn new(d: &'d OverlayDriver) -> Self {
        LegacyStaging {
            d,
            staged: Vec::new(),
            early: EarlyFlush::default(),
        }
    }

    /// The `root/` a new layer on `parent` is copied from: the last staged layer's when it
    /// is `parent`, else the published parent's, which must be an image layer.
    fn base(&self, id: &str, parent: &str) -> Result<(OwnedFd, PathBuf)> {
        if let Some((sid, tmp)) = self.staged.last() {
            if sid == parent {
                let p = tmp.path().join(ROOT);
                return Ok((open_dir_at(tmp.fd(), ROOT, &p)?, p));
            }
        }
        let pfd = self.d.h.open_parent(id, parent)?;
        let p = self.d.h.path().join(parent).join(ROOT);
        if !is_dir_at(&pfd, ROOT) {
            return Err(DriverError::Unsupported {
                what: "staging a layer on a container layer",
            });
        }
        Ok((open_dir_at(&pfd, ROOT, &p)?, p))
    }
}

impl Staging for LegacyStaging<'_> {
    fn apply(&mut self, id: &str, parent: Option<&str>, diff: &mut dyn Read) -> Result<u64> {
        let d = self.d;
        d.h.check_create(id, parent, &CreateOpts::default())?;
        if self.staged.iter().any(|(s, _)| s == id) {
            return Err(DriverError::LayerExists { id: id.to_string() });
        }
        let base = parent.map(|p| self.base(id, p)).transpose()?;
        let tmp = d.h.create_temp()?;
        let tp = tmp.path();
        d.record_parent(tmp.fd(), parent, &tp)?;
        let (root, size) = d
            .build_root(id, tmp.fd(), &tp, base.as_ref(), diff, true)
            .map_err(|e| d.h.classify(e))?;
        ovlink_fs::crash::point("apply.before-rename");
        root.rename_noreplace(d.h.renamer(), OsStr::new(ROOT), tmp.claim())
            .map_err(|(_t, e)| FsError::io("rename into place", tp.join(ROOT), e))?;
        if d.h.sync() == SyncMode::Syncfs && d.h.flush_data() {
            self.early.start(tmp.fd());
        }
        self.staged.push((id.to_string(), tmp));
        Ok(size)
    }

    fn publish(mut self: Box<Self>) -> Result<()> {
        let d = self.d;
        self.early.wait();
        let Some((_, last)) = self.staged.last() else {
            return Ok(());
        };
        // The one flush: every staged tree, its data and its metadata, on disk before the
        // first rename (through the home's fd, open since init: it reports a writeback error
        // of any staged layer). `files` synced each file's data as it was written; one fsync
        // then commits the journal holding every staged tree (as its per-layer fsync does).
        match d.h.sync() {
            SyncMode::Syncfs if d.h.flush_data() => d.h.syncfs(d.h.fd(), d.h.path())?,
            SyncMode::Files => d.h.sync_dir(last.fd(), &last.path())?,
            _ => {}
        }
        ovlink_fs::crash::point("staging.before-publish");
        for (id, tmp) in self.staged {
            match d.h.publish_unsynced(tmp, &id) {
                // Another caller's layer of the same id (the same content): theirs is kept.
                Ok(()) | Err(DriverError::LayerExists { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        d.h.sync_dir(d.h.fd(), d.h.path())
    }
}
