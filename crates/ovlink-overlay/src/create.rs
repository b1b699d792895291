//! `create`: an image layer (`root/`, empty or, once applied, a hardlink tree) or a container
//! layer (`lower-id`, `upper/`, `work/`), built in a locked `.tmp-create-*` of the home and
//! renamed to `<id>` without replacing anything. A container parent is Docker's `-init`
//! pattern: the same lower, a full copy of the parent's `upper/`.
//!
//! This module never writes into the parent layer.

use crate::{OverlayDriver, LOWER_ID, PARENT_XATTR, ROOT, UPPER};
use ovlink_driver::home::WORK;
use ovlink_driver::lock::TempDir;
use ovlink_driver::{CreateOpts, DriverError, LayerKind, Result};
use ovlink_fs::at::open_dir_at;
use ovlink_fs::error::Context;
use ovlink_fs::{copy_tree, CopyOptions};
use rustix::fd::{AsFd, OwnedFd};
use rustix::fs::AtFlags;
use std::ffi::OsStr;
use std::path::Path;

impl OverlayDriver {
    /// Makes `<dir>/upper` with the mode of `<src>/upper` and a content copy of it (devices
    /// and whiteouts included; not hardlinks, as overlayfs writes upper files in place).
    pub(crate) fn copy_upper(
        &self,
        src: &OwnedFd,
        src_path: &Path,
        dir: &OwnedFd,
        dir_path: &Path,
    ) -> Result<OwnedFd> {
        let from = open_dir_at(src, UPPER, &src_path.join(UPPER))?;
        let st = rustix::fs::fstat(&from).ctx("stat", src_path.join(UPPER))?;
        let to = self
            .h
            .mkdir_exact(dir, UPPER, st.st_mode & 0o7777, &dir_path.join(UPPER))?;
        let mut copts = CopyOptions::content();
        copts.skip_devices = false;
        copy_tree(
            from.as_fd(),
            to.as_fd(),
            &src_path.join(UPPER),
            &dir_path.join(UPPER),
            copts,
        )
        .map_err(|e| self.h.classify(e.into()))?;
        Ok(to)
    }

    /// Records `parent` on a layer directory being built ([`PARENT_XATTR`]).
    pub(crate) fn record_parent(
        &self,
        dir: &OwnedFd,
        parent: Option<&str>,
        shown: &Path,
    ) -> Result<()> {
        if let Some(p) = parent {
            ovlink_fs::xattr::set_fd(dir, OsStr::new(PARENT_XATTR), p.as_bytes(), shown)?;
        }
        Ok(())
    }

    pub(crate) fn create_layer(
        &self,
        id: &str,
        parent: Option<&str>,
        opts: &CreateOpts,
    ) -> Result<()> {
        let tmp = self.build_layer(id, parent, opts)?;
        self.h.publish(tmp, id)
    }

    /// Builds what `create` makes for `id` in a locked `.tmp-create-*` of the home (not yet
    /// visible under its id): see [`OverlayDriver::publish`].
    pub(crate) fn build_layer(
        &self,
        id: &str,
        parent: Option<&str>,
        opts: &CreateOpts,
    ) -> Result<TempDir> {
        self.h.check_create(id, parent, opts)?;
        let tmp = self.h.create_temp()?;
        let tp = tmp.path();
        let dir = tmp.fd();
        self.record_parent(dir, parent, &tp)?;
        match parent {
            None => {
                self.h.mkdir_exact(dir, ROOT, 0o755, &tp.join(ROOT))?;
            }
            Some(p) => {
                let pfd = self.h.open_parent(id, p)?;
                let ppath = self.h.path().join(p);
                match self.kind_of(&pfd, &ppath)? {
                    LayerKind::Image => {
                        let st = rustix::fs::statat(&pfd, ROOT, AtFlags::SYMLINK_NOFOLLOW)
                            .ctx("stat", ppath.join(ROOT))?;
                        self.h
                            .mkdir_exact(dir, UPPER, st.st_mode & 0o7777, &tp.join(UPPER))?;
                        self.h.mkdir_exact(dir, WORK, 0o700, &tp.join(WORK))?;
                        self.h.write_file(
                            dir,
                            LOWER_ID,
                            p.as_bytes(),
                            0o600,
                            &tp.join(LOWER_ID),
                        )?;
                    }
                    LayerKind::Container { lower_id } => {
                        // Docker's "-init" pattern: same lower, a full copy of the parent's upper.
                        let up = self.copy_upper(&pfd, &ppath, dir, &tp)?;
                        if self.h.durable() {
                            // The copied files' data, before the rename publishes them.
                            rustix::fs::syncfs(&up).ctx("syncfs", tp.join(UPPER))?;
                        }
                        self.h.mkdir_exact(dir, WORK, 0o700, &tp.join(WORK))?;
                        self.h.write_file(
                            dir,
                            LOWER_ID,
                            lower_id.as_bytes(),
                            0o600,
                            &tp.join(LOWER_ID),
                        )?;
                    }
                    LayerKind::Incomplete => {
                        return Err(DriverError::WrongKind {
                            id: p.to_string(),
                            is: "an incomplete layer",
                            needs: "an image or container layer as parent",
                        })
                    }
                }
            }
        }
        self.h.sync_dir(tmp.fd(), &tp)?;
        Ok(tmp)
    }
}
