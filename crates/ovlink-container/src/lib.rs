//! Containers as Docker makes them, on any [`Driver`] and the image store: an `<id>-init`
//! layer on the image's top layer holding the files Docker's init layer creates
//! (`/.dockerenv`, `/etc/hosts`, …), and the container's own layer `<id>` on top of it (a
//! copy of the init layer's upper dir, the same lower), recorded by name in the store.
//!
//! This crate owns the create (with its rollback), the remove, and which parent a layer's
//! diff is taken against by default. It must never leave a half-made container: a create
//! that fails removes the layers it made, or says which one it could not remove. It never
//! reads the environment and never prints.
#![forbid(unsafe_code)]

use ovlink_driver::{CreateOpts, Driver, DriverError};
use ovlink_image::{ContainerRecord, ImageError, ImageRecord, Store};
use std::path::{Path, PathBuf};

/// What can go wrong.
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    /// A layer operation failed.
    #[error(transparent)]
    Driver(#[from] DriverError),
    /// The image store failed (or has no such image or container).
    #[error(transparent)]
    Store(#[from] ImageError),
    /// The image has no layer to start a container on.
    #[error("image {image} has no layers")]
    NoLayers {
        /// The image name.
        image: String,
    },
    /// Filling the mounted init layer failed.
    #[error("cannot fill the init layer: {op} {}", path.display())]
    Init {
        /// What was being done.
        op: &'static str,
        /// The path inside the mounted init layer.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A create failed, and a layer it made could not be removed either.
    #[error(
        "{cause}; the half-made layer {layer} could not be removed either ({rollback}): remove it \
         with `ovlink layer rm {layer}`"
    )]
    HalfMade {
        /// Why the create failed.
        cause: Box<ContainerError>,
        /// The layer left behind.
        layer: String,
        /// Why it could not be removed.
        rollback: Box<DriverError>,
    },
}

/// This crate's result.
pub type Result<T, E = ContainerError> = std::result::Result<T, E>;

/// What Docker's `initlayer.Setup` creates when the image does not have it: a directory, an
/// empty file (0755, as Docker makes them), or a symlink to the target given.
const INIT_ENTRIES: &[(&str, Entry)] = &[
    ("dev/pts", Entry::Dir),
    ("dev/shm", Entry::Dir),
    ("proc", Entry::Dir),
    ("sys", Entry::Dir),
    (".dockerenv", Entry::File),
    ("etc/resolv.conf", Entry::File),
    ("etc/hosts", Entry::File),
    ("etc/hostname", Entry::File),
    ("dev/console", Entry::File),
    ("etc/mtab", Entry::Symlink("/proc/mounts")),
];

#[derive(Debug, Clone, Copy)]
enum Entry {
    Dir,
    File,
    Symlink(&'static str),
}

/// Fills a mounted init layer like Docker does; existing paths are left alone.
fn populate_init(merged: &Path) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let err = |op, path: &Path| {
        let path = path.to_path_buf();
        move |source| ContainerError::Init { op, path, source }
    };
    let mkdirs = |p: &Path| {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(p)
            .map_err(err("create directory", p))
    };
    for (rel, what) in INIT_ENTRIES {
        let p = merged.join(rel);
        if std::fs::symlink_metadata(&p).is_ok() {
            continue;
        }
        if let Some(parent) = p.parent() {
            mkdirs(parent)?;
        }
        match *what {
            Entry::Dir => mkdirs(&p)?,
            Entry::File => {
                std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o755)
                    .open(&p)
                    .map_err(err("create file", &p))?;
            }
            Entry::Symlink(target) => {
                std::os::unix::fs::symlink(target, &p).map_err(err("create symlink", &p))?
            }
        }
    }
    Ok(())
}

/// A new container layer id: 64 random lowercase hex digits (Docker's form).
pub fn new_id() -> String {
    (0..4)
        .map(|_| ovlink_driver::lock::random_suffix())
        .collect()
}

/// Creates container `name` on the top layer of image `img` (found in `store` for `d`'s
/// layout, [`Store::image_in`]): the init layer, filled, then the container's layer on it,
/// then the store's record. On failure the layers it made are removed again.
pub fn create(
    d: &dyn Driver,
    store: &Store,
    img: &ImageRecord,
    name: &str,
) -> Result<ContainerRecord> {
    let image = img.name.as_str();
    let top = img
        .layers
        .last()
        .ok_or_else(|| ContainerError::NoLayers {
            image: image.to_string(),
        })?
        .clone();
    let id = new_id();
    let init = format!("{id}-init");
    let record = ContainerRecord {
        name: name.to_string(),
        image: image.to_string(),
        layer_id: id.clone(),
        init_layer_id: init.clone(),
        created: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
    };
    let made = (|| -> Result<()> {
        d.create_read_write(&init, Some(&top), &CreateOpts::default())?;
        let merged = d.get(&init, None)?;
        let filled = populate_init(&merged);
        d.put(&init)?;
        filled?;
        d.create_read_write(&id, Some(&init), &CreateOpts::default())?;
        store.put_container(&record)?;
        Ok(())
    })();
    if let Err(mut e) = made {
        // Nothing half-made: drop whichever layers this call created, and say so when that
        // fails too (a layer left behind must not pass for a container).
        for l in [&id, &init] {
            if d.exists(l) {
                if let Err(rollback) = d.remove(l) {
                    e = ContainerError::HalfMade {
                        cause: Box::new(e),
                        layer: l.clone(),
                        rollback: Box::new(rollback),
                    };
                }
            }
        }
        return Err(e);
    }
    Ok(record)
}

/// Removes container `name`: its layers (unmounting them), then its record.
pub fn remove(d: &dyn Driver, store: &Store, name: &str) -> Result<ContainerRecord> {
    let c = store.container(name)?;
    for id in [&c.layer_id, &c.init_layer_id] {
        if d.exists(id) {
            d.remove(id)?;
        }
    }
    Ok(store.remove_container(name)?)
}

/// The parent layer `id` is diffed against when none is given: a container's init layer, an
/// image layer's recorded parent, or `None` (the driver's own default: the lower-id of a
/// container layer, nothing for a layer no import recorded).
pub fn diff_parent(store: &Store, id: &str) -> Result<Option<String>> {
    if let Some(c) = store.containers()?.into_iter().find(|c| c.layer_id == id) {
        return Ok(Some(c.init_layer_id));
    }
    Ok(store.layer(id)?.and_then(|l| l.parent))
}
