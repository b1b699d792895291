//! Applying a layer tar. An image layer's new `root/` is built in `<id>/tmproot-*`: a
//! hardlink copy of the base tree (the layer's own `root/` for a re-apply, else the parent's)
//! with the tar applied and synced per the home's [`SyncMode`], then renamed into place (or
//! exchanged with the old `root/`), and the container-layer files dropped. On a container
//! parent the tar goes through an overlay mount of a staged copy of `upper/`, exchanged with
//! the live one only once complete. Create-and-apply does all of it in a `.tmp-create-*` of
//! the home, so the layer appears under its id only complete.
//!
//! This module never writes into the base tree it copies from (hardlinks only; the tar's
//! writes replace links, see `ovlink-tar`), and a failed or crashed apply leaves the layer as
//! it was.

use crate::{OverlayDriver, LOWER_ID, ROOT, TMP_ROOT_PREFIX, TMP_UPPER_PREFIX, UPPER};
use ovlink_driver::home::{MERGED, WORK};
use ovlink_driver::lock::{DirLock, TempDir};
use ovlink_driver::mount as kmount;
use ovlink_driver::rename::Claim;
use ovlink_driver::{validate_id, CreateOpts, DriverError, LayerKind, Result, SyncMode};
use ovlink_fs::at::{is_dir_at, open_dir, open_dir_at};
use ovlink_fs::error::Context;
use ovlink_fs::{copy_tree, CopyOptions, FsError};
use rustix::fd::{AsFd, OwnedFd};
use rustix::fs::AtFlags;
use std::ffi::OsStr;
use std::io::Read;
use std::path::{Path, PathBuf};

impl OverlayDriver {
    /// Removes `upper/`, `work/`, `merged/` (unmounting it) and `lower-id` from a layer that
    /// now has its `root/`. `lower-id` goes last.
    pub(crate) fn drop_container_files(&self, fd: &OwnedFd, layer: &Path) -> Result<()> {
        let merged = layer.join(MERGED);
        if kmount::is_mount_point(&merged) {
            kmount::unmount(&merged)?;
        }
        for n in [MERGED, WORK, UPPER, LOWER_ID] {
            ovlink_fs::crash::point("apply.drop-container-files");
            ovlink_fs::remove_all_at(fd, OsStr::new(n), &layer.join(n))?;
        }
        Ok(())
    }

    /// The tree a new `root/` is built in: `<dir>/tmproot-*` holding a hardlink copy of
    /// `base` (the layer's own `root/` for a re-apply, else the parent's `root/`; nothing for
    /// a bottom layer) with the tar applied and synced per the sync mode (`staged`: the
    /// `syncfs` of [`SyncMode::Syncfs`] is left to the staging's one flush). The caller
    /// renames it into place; dropped, it is removed.
    pub(crate) fn build_root(
        &self,
        id: &str,
        dir: &OwnedFd,
        dir_path: &Path,
        base: Option<&(OwnedFd, PathBuf)>,
        diff: &mut dyn Read,
        staged: bool,
    ) -> Result<(TempDir, u64)> {
        let tmp = TempDir::new(dir, dir_path, TMP_ROOT_PREFIX, 0o755)?;
        let tp = tmp.path();
        // Content the copy had to write (link-limit fallbacks) is not in the tar's sync.
        let mut copied_data = false;
        match base {
            Some((bfd, bpath)) => {
                let st = copy_tree(
                    bfd.as_fd(),
                    tmp.fd().as_fd(),
                    bpath,
                    &tp,
                    CopyOptions {
                        specials: self.symlinks,
                        ..CopyOptions::hardlink()
                    },
                )
                // Classified here, while the partial tree still holds the space.
                .map_err(|e| self.h.classify(e.into()))?;
                copied_data = st.copied > 0;
            }
            None => self.h.chown_root(tmp.fd(), &tp)?,
        }
        ovlink_fs::crash::point("apply.after-copy");
        let mut topts = self.h.tar_options();
        topts.sync_data = self.h.sync() == SyncMode::Files && self.h.flush_data();
        let stats = ovlink_tar::apply_layer(tmp.fd().as_fd(), &tp, diff, &topts)
            .map_err(|source| DriverError::Apply {
                id: id.to_string(),
                source,
            })
            .map_err(|e| self.h.classify(e))?;
        if self.h.flush_data()
            && ((self.h.sync() == SyncMode::Syncfs && !staged)
                || (self.h.sync() == SyncMode::Files && copied_data))
        {
            rustix::fs::syncfs(tmp.fd()).ctx("syncfs", &tp)?;
        }
        Ok((tmp, stats.size))
    }

    /// `create` + `apply_diff` as one step, all of it in a `.tmp-create-*` of the home that
    /// is renamed to `id` only when complete: a failure, a crash or a read-only remount
    /// leaves no layer `id` (nothing to clean up, nothing another process could have applied
    /// to), and a concurrent creator of `id` keeps its layer (this one gets `LayerExists`).
    pub(crate) fn create_applied(
        &self,
        id: &str,
        parent: Option<&str>,
        diff: &mut dyn Read,
    ) -> Result<u64> {
        self.h.check_create(id, parent, &CreateOpts::default())?;
        let parent_root = match parent {
            None => None,
            Some(p) => {
                let pfd = self.h.open_parent(id, p)?;
                let ppath = self.h.path().join(p);
                if !is_dir_at(&pfd, ROOT) {
                    // A container parent: a container layer with a copy of its upper/, the
                    // tar applied through an overlay mount of the copy.
                    let tmp = self.build_layer(id, parent, &CreateOpts::default())?;
                    let lower = self.read_lower_id(tmp.fd(), &tmp.path())?;
                    let size = self.apply_in_mount(id, tmp.fd(), &tmp.path(), &lower, diff)?;
                    if self.h.durable() {
                        // What the tar wrote through the mount, before the rename publishes it.
                        rustix::fs::syncfs(tmp.fd()).ctx("syncfs", tmp.path())?;
                    }
                    self.h.sync_dir(tmp.fd(), &tmp.path())?;
                    self.h.publish(tmp, id)?;
                    return Ok(size);
                }
                Some((
                    open_dir_at(&pfd, ROOT, &ppath.join(ROOT))?,
                    ppath.join(ROOT),
                ))
            }
        };
        let tmp = self.h.create_temp()?;
        let tp = tmp.path();
        self.record_parent(tmp.fd(), parent, &tp)?;
        let (root, size) = self.build_root(id, tmp.fd(), &tp, parent_root.as_ref(), diff, false)?;
        ovlink_fs::crash::point("apply.before-rename");
        root.rename_noreplace(self.h.renamer(), OsStr::new(ROOT), tmp.claim())
            .map_err(|(_t, e)| FsError::io("rename into place", tp.join(ROOT), e))?;
        self.h.sync_dir(tmp.fd(), &tp)?;
        self.h.publish(tmp, id)?;
        Ok(size)
    }

    pub(crate) fn apply_existing(
        &self,
        id: &str,
        parent: Option<&str>,
        diff: &mut dyn Read,
    ) -> Result<u64> {
        if let Some(p) = parent {
            validate_id(p)?;
        }
        let (fd, lock) = self.h.lock_layer(id)?;
        let path = self.h.path().join(id);
        let has_root = is_dir_at(&fd, ROOT);
        let parent = match (parent, self.kind_of(&fd, &path)?) {
            (Some(p), _) => Some(p.to_string()),
            (None, LayerKind::Container { lower_id }) => Some(lower_id),
            (None, _) => None,
        };
        // The tree to start from: our own root/ (a re-apply), else the parent's root/.
        let base: Option<(OwnedFd, PathBuf)> = if has_root {
            Some((open_dir_at(&fd, ROOT, &path.join(ROOT))?, path.join(ROOT)))
        } else if let Some(p) = &parent {
            let pfd = self.h.open_parent(id, p)?;
            let ppath = self.h.path().join(p);
            if !is_dir_at(&pfd, ROOT) {
                let res = self.apply_through_mount(id, (&fd, &lock, &path), diff);
                drop(lock);
                return res.map_err(|e| self.h.classify(e));
            }
            Some((
                open_dir_at(&pfd, ROOT, &ppath.join(ROOT))?,
                ppath.join(ROOT),
            ))
        } else {
            None
        };
        let res = (|| -> Result<u64> {
            let (tmp, size) = self.build_root(id, &fd, &path, base.as_ref(), diff, false)?;
            ovlink_fs::crash::point("apply.before-rename");
            if has_root {
                self.h.renamer().exchange(
                    (&fd, tmp.name()),
                    (&fd, &path, &lock),
                    ROOT,
                    self.h.durable(),
                )?;
                drop(tmp); // now holds the old root/: removed
            } else {
                tmp.rename_noreplace(self.h.renamer(), OsStr::new(ROOT), Claim::Held(&lock))
                    .map_err(|(_t, e)| FsError::io("rename into place", path.join(ROOT), e))?;
            }
            ovlink_fs::crash::point("apply.after-rename");
            self.h.sync_dir(&fd, &path)?;
            self.drop_container_files(&fd, &path)?;
            Ok(size)
        })();
        drop(lock);
        res.map_err(|e| self.h.classify(e))
    }

    /// Docker's fallback when the parent has no `root/` (a container layer): the tar goes
    /// through an overlay mount, so the layer stays a container layer. Staged, so that a
    /// refused or failed tar leaves `upper/` exactly as it was: `upper/` is copied (content,
    /// not hardlinks: overlayfs writes upper files in place) into `<id>/tmpupper-*`, mounted
    /// there with its own work dir, the tar applied, and the copy exchanged with `upper/`
    /// only after the whole tar was applied (and synced). The caller holds the layer's lock;
    /// a mounted layer is refused (its mount would keep writing to the old `upper/`).
    pub(crate) fn apply_through_mount(
        &self,
        id: &str,
        (fd, lock, path): (&OwnedFd, &DirLock, &Path),
        diff: &mut dyn Read,
    ) -> Result<u64> {
        let LayerKind::Container { lower_id } = self.kind_of(fd, path)? else {
            return Err(DriverError::WrongKind {
                id: id.to_string(),
                is: "an incomplete layer",
                needs: "a container layer to apply through a mount",
            });
        };
        if kmount::is_mount_point(&path.join(MERGED)) {
            return Err(DriverError::WrongKind {
                id: id.to_string(),
                is: "mounted",
                needs: "an unmounted layer to apply a tar through its container parent \
                        (umount it first)",
            });
        }
        let stage = TempDir::new(fd, path, TMP_UPPER_PREFIX, 0o700)?;
        let sp = stage.path();
        let staged = self.copy_upper(fd, path, stage.fd(), &sp)?;
        self.h
            .mkdir_exact(stage.fd(), WORK, 0o700, &sp.join(WORK))?;
        let size = self.apply_in_mount(id, stage.fd(), &sp, &lower_id, diff)?;
        if self.h.durable() {
            rustix::fs::syncfs(&staged).ctx("syncfs", sp.join(UPPER))?;
        }
        ovlink_fs::crash::point("apply.mount-before-exchange");
        self.h.renamer().exchange(
            (stage.fd(), OsStr::new(UPPER)),
            (fd, path, lock),
            UPPER,
            self.h.durable(),
        )?;
        self.h.sync_dir(fd, path)?;
        drop(stage); // now holds the old upper/: removed
        Ok(size)
    }

    /// Mounts `<dir>/merged` (lowerdir `<lower>/root`, `<dir>/upper`, `<dir>/work`), applies
    /// the tar into it, and unmounts it again whatever happened; `dir` is not a live layer
    /// (a staging or `.tmp-create-*` directory).
    pub(crate) fn apply_in_mount(
        &self,
        id: &str,
        dir: &OwnedFd,
        dir_path: &Path,
        lower: &str,
        diff: &mut dyn Read,
    ) -> Result<u64> {
        let merged = dir_path.join(MERGED);
        self.h.mkdir_exact(dir, MERGED, 0o700, &merged)?;
        let opts = self.overlay_data(dir_path, lower, None)?;
        kmount::mount_overlay(&merged, &opts)?;
        let res = open_dir(&merged)
            .map_err(DriverError::from)
            .and_then(|mfd| {
                ovlink_tar::apply_layer(mfd.as_fd(), &merged, diff, &self.h.tar_options()).map_err(
                    |source| DriverError::Apply {
                        id: id.to_string(),
                        source,
                    },
                )
            });
        // Classified while the mount still holds what the tar wrote; the tar's error wins
        // over an unmount error (reaping the temporary tree unmounts it anyway).
        let res = res.map_err(|e| self.h.classify(e));
        let unmounted = kmount::unmount(&merged);
        let stats = res?;
        unmounted?;
        rustix::fs::unlinkat(dir, MERGED, AtFlags::REMOVEDIR).ctx("remove directory", &merged)?;
        Ok(stats.size)
    }
}
