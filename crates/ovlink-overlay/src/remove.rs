//! `remove`: the layer is renamed to the home's trash prefix under its lock (gone at once,
//! atomically), then its tree is deleted now, in a background thread, or by another process
//! that inherits the trash's lock.
//!
//! This module never deletes a tree that is still visible under a layer id.

use crate::OverlayDriver;
use ovlink_driver::home::Trash;
use ovlink_driver::Result;
use std::path::Path;
use std::sync::atomic::Ordering;

impl OverlayDriver {
    /// Whether `remove` deletes the renamed-away layer in a background thread (`true`) or
    /// before it returns (`false`, the default; [`ovlink_driver::ReclaimMode::Background`] at init
    /// turns it on). Either way the layer is gone for every caller as soon as `remove` returns; in
    /// background mode its inodes are freed later (`ovlink report` shows how many are left),
    /// and a process that exits first leaves the rest to the next init or `layer reclaim`.
    pub fn set_background_reclaim(&self, on: bool) {
        self.background_reclaim.store(on, Ordering::Relaxed);
    }

    /// See [`OverlayDriver::set_background_reclaim`].
    pub fn background_reclaim(&self) -> bool {
        self.background_reclaim.load(Ordering::Relaxed)
    }

    /// Unmounts layer `id`, renames it to `.tmp-remove-*` (it is gone at once, atomically)
    /// and returns it locked, for the caller to reclaim now, in a thread, or in another
    /// process that inherits [`Trash::lock_fd`].
    pub fn remove_detached(&self, id: &str) -> Result<Trash> {
        let (fd, lock) = self.h.lock_layer(id)?;
        self.h.trash(id, fd, lock)
    }

    /// Deletes every removed layer that nobody is reclaiming now (`.tmp-remove-*` whose lock
    /// is free), before returning; the names deleted.
    pub fn reclaim_pending(&self) -> Result<Vec<String>> {
        self.h.reclaim_pending()
    }

    /// [`OverlayDriver::reclaim_pending`] in a background thread.
    pub fn spawn_reclaim_pending(&self) -> Result<()> {
        self.h.spawn_reclaim_pending()
    }

    /// Reclaims the removed layer `name` whose lock another process handed over (see
    /// [`Home::reclaim_handed_over`]).
    pub fn reclaim_handed_over(&self, name: &str, held: &Path) -> Result<()> {
        self.h.reclaim_handed_over(name, held)
    }

    pub(crate) fn remove_layer(&self, id: &str) -> Result<()> {
        let trash = self.remove_detached(id)?;
        if self.background_reclaim() {
            // A failure (to spawn, or to delete) leaves the trash to the next reclaim; the
            // layer is gone already.
            let _ = std::thread::Builder::new()
                .name("ovlink-reclaim".into())
                .spawn(move || trash.reclaim());
            return Ok(());
        }
        trash.reclaim()
    }
}
