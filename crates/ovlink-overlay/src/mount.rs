//! The mount a container layer is: one overlay mount, exactly one lowerdir (the image layer's
//! `root/`), `upper/` and `work/` of the layer, at `<id>/merged`; an image layer is its
//! `root/` itself. `get`/`put` count references through the home ([`Home::mount_merged`]).
//!
//! This module never mounts anything but a layer's own `merged/`.
//!
//! [`Home::mount_merged`]: ovlink_driver::home::Home::mount_merged

use crate::{OverlayDriver, ROOT, UPPER};
use ovlink_driver::home::WORK;
use ovlink_driver::mount as kmount;
use ovlink_driver::{DriverError, LayerKind, Mount, Result};
use ovlink_fs::at::is_dir_at;
use std::path::{Path, PathBuf};

impl OverlayDriver {
    /// The single-lowerdir overlay mount of container layer `id` on image layer `lower`.
    pub(crate) fn overlay_mount(
        &self,
        id: &str,
        lower: &str,
        mount_label: Option<&str>,
    ) -> Result<Mount> {
        let data = self.overlay_data(&self.h.path().join(id), lower, mount_label)?;
        Ok(Mount::overlay(&data))
    }

    /// The mount options of the one-lowerdir overlay of the layer-shaped directory `dir`
    /// (its `upper/` and `work/`) on image layer `lower`'s `root/`: a live layer, or the
    /// staging directory an apply through a mount uses.
    pub(crate) fn overlay_data(
        &self,
        dir: &Path,
        lower: &str,
        mount_label: Option<&str>,
    ) -> Result<String> {
        kmount::overlay_options(
            &self.h.path().join(lower).join(ROOT),
            &dir.join(UPPER),
            &dir.join(WORK),
            self.h.features(),
            mount_label,
        )
    }

    pub(crate) fn spec(&self, id: &str, mount_label: Option<&str>) -> Result<Mount> {
        let fd = self.h.open_layer(id)?;
        let path = self.h.path().join(id);
        match self.kind_of(&fd, &path)? {
            LayerKind::Image => Ok(Mount::bind(path.join(ROOT))),
            LayerKind::Container { lower_id } => self.overlay_mount(id, &lower_id, mount_label),
            LayerKind::Incomplete => {
                Err(DriverError::incomplete(id, "an image or container layer"))
            }
        }
    }

    pub(crate) fn get_layer(&self, id: &str, mount_label: Option<&str>) -> Result<PathBuf> {
        let fd = self.h.open_layer(id)?;
        let path = self.h.path().join(id);
        if is_dir_at(&fd, ROOT) {
            return Ok(path.join(ROOT));
        }
        let (fd, _lock) = self.h.lock_layer(id)?;
        let lower = match self.kind_of(&fd, &path)? {
            LayerKind::Container { lower_id } => lower_id,
            LayerKind::Image => return Ok(path.join(ROOT)),
            LayerKind::Incomplete => {
                return Err(DriverError::incomplete(id, "an image or container layer"))
            }
        };
        self.h.mount_merged(id, &fd, |merged| {
            let opts = self.overlay_mount(id, &lower, mount_label)?.data();
            kmount::mount_overlay(merged, &opts)
        })
    }

    pub(crate) fn put_layer(&self, id: &str) -> Result<()> {
        let fd = self.h.open_layer(id)?;
        if is_dir_at(&fd, ROOT) {
            return Ok(());
        }
        let (fd, _lock) = self.h.lock_layer(id)?;
        self.h.unmount_merged(id, &fd)
    }
}
