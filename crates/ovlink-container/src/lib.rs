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
use std::path::Path;

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
    /// Filling the mounted init layer failed (the cause names the path and the operation).
    #[error("cannot fill the init layer")]
    Init(#[from] ovlink_fs::FsError),
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

/// Fills a mounted init layer like Docker does; existing paths are left alone. Every call is
/// relative to a directory fd opened below `merged` without following a symlink
/// ([`ovlink_fs::at`]), so a symlink in the image (`etc -> /host/etc`) can never lead a create
/// out of the layer: an entry under a parent that is a symlink or not a directory is the
/// image's own business and is left alone too.
fn populate_init(merged: &Path) -> Result<()> {
    use ovlink_fs::{at, FsError};
    use rustix::fs::{FileType, Mode, OFlags};
    let root = at::open_dir(merged)?;
    'entries: for (rel, what) in INIT_ENTRIES {
        let (dirs, name) = rel.rsplit_once('/').unwrap_or(("", rel));
        let mut dir = at::open_beneath(&root, Path::new(""), merged)?;
        let mut shown = merged.to_path_buf();
        for c in dirs.split('/').filter(|c| !c.is_empty()) {
            shown.push(c);
            match at::stat_at(&dir, c, &shown)? {
                None => drop(at::mkdir_at(&dir, c, 0o755, &shown)?),
                Some(st) if FileType::from_raw_mode(st.st_mode) != FileType::Directory => {
                    continue 'entries
                }
                Some(_) => {}
            }
            dir = at::open_dir_at(&dir, c, &shown)?;
        }
        shown.push(name);
        if at::exists_at(&dir, name) {
            continue;
        }
        match *what {
            Entry::Dir => drop(at::mkdir_at(&dir, name, 0o755, &shown)?),
            Entry::File => {
                let flags = OFlags::WRONLY
                    | OFlags::CREATE
                    | OFlags::EXCL
                    | OFlags::NOFOLLOW
                    | OFlags::CLOEXEC;
                rustix::fs::openat(&dir, name, flags, Mode::from_raw_mode(0o755))
                    .map_err(|e| FsError::io("create file", &shown, e))?;
            }
            Entry::Symlink(target) => rustix::fs::symlinkat(target, &dir, name)
                .map_err(|e| FsError::io("create symlink", &shown, e))?,
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn populate_init_creates_docker_s_entries_and_keeps_existing_ones() {
        let t = tempfile::tempdir().unwrap();
        let m = t.path().join("merged");
        std::fs::create_dir_all(m.join("etc")).unwrap();
        std::fs::write(m.join("etc/hosts"), "kept\n").unwrap();
        populate_init(&m).unwrap();
        assert_eq!(
            std::fs::read_to_string(m.join("etc/hosts")).unwrap(),
            "kept\n"
        );
        for d in ["dev/pts", "dev/shm", "proc", "sys"] {
            assert!(
                std::fs::symlink_metadata(m.join(d)).unwrap().is_dir(),
                "{d}"
            );
        }
        let f = std::fs::symlink_metadata(m.join(".dockerenv")).unwrap();
        assert!(f.is_file() && f.len() == 0);
        assert_eq!(
            std::fs::read_link(m.join("etc/mtab")).unwrap(),
            Path::new("/proc/mounts")
        );
        // A second fill changes nothing.
        let ino = std::fs::metadata(m.join(".dockerenv")).unwrap().ino();
        populate_init(&m).unwrap();
        assert_eq!(std::fs::metadata(m.join(".dockerenv")).unwrap().ino(), ino);
    }

    #[test]
    fn populate_init_never_follows_a_symlink_out_of_the_layer() {
        let t = tempfile::tempdir().unwrap();
        let (m, outside) = (t.path().join("merged"), t.path().join("outside"));
        std::fs::create_dir_all(&m).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        // The image's etc and dev point out of the layer; a dangling .dockerenv too.
        std::os::unix::fs::symlink(&outside, m.join("etc")).unwrap();
        std::os::unix::fs::symlink(&outside, m.join("dev")).unwrap();
        std::os::unix::fs::symlink(outside.join("env"), m.join(".dockerenv")).unwrap();
        populate_init(&m).unwrap();
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0);
        assert!(std::fs::symlink_metadata(m.join("proc")).unwrap().is_dir());
        assert!(std::fs::symlink_metadata(m.join(".dockerenv"))
            .unwrap()
            .file_type()
            .is_symlink());
    }
}
