//! overlay2's [`Staging`]: an image import's new layers, each a `.tmp-create-*` of the home
//! with its `diff/` applied, its `link` and its `lower` (naming the short link of the layer
//! staged before it, which exists once they are published together), made durable by one
//! `syncfs` for all of them, then renamed into place bottom first, each given its short link
//! in `l/`, and the home and `l/` synced once.
//!
//! It never publishes a layer before the flush that covers every staged layer. Dropped
//! unpublished, every staged directory is removed with its `TempDir`; after a crash the next
//! init reaps them (and makes a published layer's missing short link, as after a crash of
//! a single create).

use crate::driver::{Overlay2Driver, DIFF};
use ovlink_driver::lock::TempDir;
use ovlink_driver::staging::{EarlyFlush, Staging};
use ovlink_driver::{CreateOpts, DriverError, Result};
use ovlink_fs::at::open_dir_at;
use std::io::Read;

/// New layers built aside on one [`Overlay2Driver`].
pub struct Overlay2Staging<'d> {
    d: &'d Overlay2Driver,
    /// Staged layers in order: id, temporary directory, short link id.
    staged: Vec<(String, TempDir, String)>,
    /// The background `syncfs` after each staged layer.
    early: EarlyFlush,
}

impl<'d> Overlay2Staging<'d> {
    pub(crate) fn new(d: &'d Overlay2Driver) -> Self {
        Overlay2Staging {
            d,
            staged: Vec::new(),
            early: EarlyFlush::default(),
        }
    }
}

impl Staging for Overlay2Staging<'_> {
    fn apply(&mut self, id: &str, parent: Option<&str>, diff: &mut dyn Read) -> Result<u64> {
        let d = self.d;
        if self.staged.iter().any(|(s, _, _)| s == id) {
            return Err(DriverError::LayerExists { id: id.to_string() });
        }
        let below = match (self.staged.last(), parent) {
            (Some((sid, tmp, _)), Some(p)) if sid == p => Some(tmp),
            _ => None,
        };
        let (tmp, lid) =
            d.build_layer_on(id, parent, &CreateOpts::default(), false, Some(below))?;
        let tp = tmp.path();
        let dfd = open_dir_at(tmp.fd(), DIFF, &tp.join(DIFF))?;
        d.apply_tar(id, &dfd, &tp.join(DIFF), diff)
            .map_err(|e| d.home_dir().classify(e))?;
        // What `create_and_apply` reports: the bytes of `diff/`.
        let size = ovlink_driver::diffplan::dir_size(id, &tp.join(DIFF))?;
        if d.home_dir().flush_data() {
            self.early.start(tmp.fd());
        }
        self.staged.push((id.to_string(), tmp, lid));
        Ok(size)
    }

    fn publish(mut self: Box<Self>) -> Result<()> {
        let d = self.d;
        let h = d.home_dir();
        self.early.wait();
        if self.staged.is_empty() {
            return Ok(());
        }
        if h.flush_data() {
            // The one flush: every staged layer, data and metadata, before the first rename
            // (through the home's fd, open since init: it reports a writeback error of any
            // staged layer).
            h.syncfs(h.fd(), h.path())?;
        }
        ovlink_fs::crash::point("staging.before-publish");
        for (id, tmp, lid) in self.staged {
            match h.publish_unsynced(tmp, &id) {
                Ok(()) => d.link_published(&id, &lid)?,
                // Another caller's layer of the same id (the same content): theirs is kept,
                // with its own short link.
                Err(DriverError::LayerExists { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        h.sync_dir(h.fd(), h.path())?;
        d.sync_links()
    }
}
