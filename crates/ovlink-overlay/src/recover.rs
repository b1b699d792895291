//! What `init` finishes after a crash: temporary directories of dead processes are reaped,
//! and an apply that crashed after renaming its `root/` into place has its container-layer
//! files dropped.
//!
//! This module never removes anything a live process holds (every temporary directory is
//! flocked by its owner) and never touches a layer it cannot lock.

use crate::{OverlayDriver, LOWER_ID, ROOT, TMP_ROOT_PREFIX, TMP_UPPER_PREFIX, UPPER};
use ovlink_driver::home::{MERGED, TRASH_PREFIX, WORK};
use ovlink_driver::lock::DirLock;
use ovlink_driver::Result;
use ovlink_fs::at::{is_dir_at, open_dir_at};
use std::path::PathBuf;

/// What `init` found and fixed in the home.
#[derive(Debug, Default, Clone)]
pub struct Recovery {
    /// Temporary directories of dead processes that were removed.
    pub removed_temp: Vec<PathBuf>,
    /// Layers whose apply had been renamed into place but not cleaned up.
    pub finished_apply: Vec<String>,
    /// What could not be cleaned up (a leftover that cannot be removed now): reported, never
    /// an error, so that a leftover never blocks the home; the next init tries again.
    pub warnings: Vec<String>,
}

impl OverlayDriver {
    /// Removes temporary directories of dead processes and finishes applies that crashed after
    /// their rename. Runs at init; safe while other processes work on the home.
    pub fn recover(&self) -> Result<Recovery> {
        let mut rec = Recovery::default();
        // In background mode, removed layers left by a dead process are reclaimed by a thread.
        let background = self.background_reclaim();
        let except: &[&str] = if background { &[TRASH_PREFIX] } else { &[] };
        self.h
            .reap(except, &mut rec.removed_temp, &mut rec.warnings);
        if background {
            self.h.spawn_reclaim_pending()?;
        }
        for id in self.h.layer_ids()? {
            let Some(fd) = self.h.recover_layer(
                &id,
                &[ROOT, UPPER],
                &[TMP_ROOT_PREFIX, TMP_UPPER_PREFIX],
                &mut rec.removed_temp,
                &mut rec.warnings,
            )?
            else {
                continue;
            };
            if is_dir_at(&fd, ROOT)
                && [LOWER_ID, UPPER, WORK, MERGED]
                    .iter()
                    .any(|n| ovlink_fs::at::exists_at(&fd, n))
            {
                if let Some(_lock) = DirLock::try_lock(fd, &self.h.path().join(&id))? {
                    let path = self.h.path().join(&id);
                    let fd = open_dir_at(self.h.fd(), &id, &path)?;
                    self.drop_container_files(&fd, &path)?;
                    rec.finished_apply.push(id);
                }
            }
        }
        Ok(rec)
    }
}
