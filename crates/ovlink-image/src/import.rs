//! Importing an image archive into a [`Driver`] and recording it in the [`Store`].
//!
//! The new layers of an image are staged bottom-up under their chain ids
//! ([`Driver::staging`]): in the legacy layout each is built aside on the one before, its
//! digest verified, and all of them are made durable by one flush and published together;
//! overlay2 creates each at once. A layer that is already complete (an image layer in the
//! driver **and** a matching [`LayerRecord`] in the store) is reused; a layer that exists
//! without that record (one whose record a crash prevented, or the create-then-apply
//! remainder of an older ovlink) is removed and redone. When a layer fails (its apply, its
//! digest), the layers staged below it are still published and recorded (complete and
//! verified: the next import reuses them) and the failing one never is, so the driver never
//! keeps a layer whose content was not verified. Records are written after the layers are
//! published, the image record after all its layers. This module never parses archives
//! itself (see [`crate::archive`]) and never removes a layer it did not find unfinished or
//! create itself.

use std::path::Path;
use std::time::{Duration, Instant};

use ovlink_driver::staging::Staging;
use ovlink_driver::{Driver, DriverError, LayerKind};

use crate::archive::{Archive, ArchiveImage};
use crate::digest::{chain_ids, parse_sha256};
use ovlink_fs::lock::FileLock;

use crate::error::{ImageError, Result};
use crate::progress::Progress;
use crate::store::{unix_now, validate_image_name, ImageRecord, LayerRecord, Store};

/// What happened to one layer of an import.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerReport {
    /// The layer id: the chain id, hex without `sha256:`.
    pub chain_id: String,
    /// The diff id of its layer tar (`sha256:<hex>`).
    pub diff_id: String,
    /// What `apply_diff` returned (bytes of regular files); for a reused layer, what it
    /// returned when the layer was imported.
    pub size: u64,
    /// True when the layer existed already and was not read.
    pub reused: bool,
    /// Time spent on this layer.
    pub duration: Duration,
}

/// One imported image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageReport {
    /// The name it was recorded under first (the given name, the first RepoTag, or the
    /// first 12 hex digits of its id).
    pub name: String,
    /// Every name it was recorded under (all its RepoTags).
    pub names: Vec<String>,
    /// The image id, `sha256:<hex>` of its config.
    pub image_id: String,
    /// Its layers, bottom first.
    pub layers: Vec<LayerReport>,
}

/// What [`import`] did. `name`, `image_id` and `layers` describe the first image of the
/// archive; `images` lists every image it held (a docker-save tarball may hold several),
/// the first included.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportReport {
    /// The first image's name.
    pub name: String,
    /// The first image's id (`sha256:<hex>`).
    pub image_id: String,
    /// The first image's layers, bottom first.
    pub layers: Vec<LayerReport>,
    /// Every image imported, in archive order.
    pub images: Vec<ImageReport>,
}

/// Imports the docker-save or OCI archive (tarball or directory) at `path`: verifies and
/// creates its layers in `driver` and records the image in `store` under `name` (default:
/// every RepoTag, or the first 12 hex digits of the image id when it has none). A `name` is
/// refused for an archive holding several images.
pub fn import(
    driver: &dyn Driver,
    store: &Store,
    path: &Path,
    name: Option<&str>,
    progress: &dyn Progress,
) -> Result<ImportReport> {
    let archive = Archive::open(path)?;
    import_archive(driver, store, &archive, name, progress)
}

/// How an import stages and publishes its layers.
#[derive(Debug, Clone, Copy)]
pub struct ImportOptions {
    /// Staged layers are published once this long has passed since the last publish (and at
    /// the end): [`PUBLISH_AFTER`] by default.
    pub publish_after: Duration,
}

impl Default for ImportOptions {
    fn default() -> Self {
        ImportOptions {
            publish_after: PUBLISH_AFTER,
        }
    }
}

/// [`import`] for an archive opened already.
pub fn import_archive(
    driver: &dyn Driver,
    store: &Store,
    archive: &Archive,
    name: Option<&str>,
    progress: &dyn Progress,
) -> Result<ImportReport> {
    import_archive_with(
        driver,
        store,
        archive,
        name,
        progress,
        &ImportOptions::default(),
    )
}

/// [`import_archive`] with `opts`.
pub fn import_archive_with(
    driver: &dyn Driver,
    store: &Store,
    archive: &Archive,
    name: Option<&str>,
    progress: &dyn Progress,
    opts: &ImportOptions,
) -> Result<ImportReport> {
    let images = archive.images();
    if let (Some(n), true) = (name, images.len() > 1) {
        return Err(ImageError::InvalidName {
            name: n.to_string(),
            reason: "the archive holds several images; a name can only be given to one",
        });
    }
    // Decide and check every name before touching the driver.
    let mut all_names = Vec::with_capacity(images.len());
    for image in images {
        let names = image_names(image, name);
        for n in &names {
            validate_image_name(n)?;
        }
        all_names.push(names);
    }
    let mut reports = Vec::with_capacity(images.len());
    for (index, (image, names)) in images.iter().zip(all_names).enumerate() {
        let layers = import_layers(driver, store, archive, index, image, progress, opts)?;
        let config =
            String::from_utf8(image.config.to_vec()).map_err(|_| ImageError::InvalidImage {
                path: archive.path().display().to_string(),
                reason: "the image config is not UTF-8".to_string(),
            })?;
        let record = ImageRecord {
            name: String::new(),
            id: image.config_digest.clone(),
            config,
            diff_ids: image.diff_ids.clone(),
            layers: layers.iter().map(|l| l.chain_id.clone()).collect(),
            created: unix_now(),
            layout: driver.name().to_string(),
        };
        for n in &names {
            store.put_image(&ImageRecord {
                name: n.clone(),
                ..record.clone()
            })?;
        }
        reports.push(ImageReport {
            name: names[0].clone(),
            names,
            image_id: image.config_digest.clone(),
            layers,
        });
    }
    let first = reports[0].clone();
    Ok(ImportReport {
        name: first.name,
        image_id: first.image_id,
        layers: first.layers,
        images: reports,
    })
}

/// The names an image gets: the given one, its RepoTags, or its short id. Never empty.
fn image_names(image: &ArchiveImage, name: Option<&str>) -> Vec<String> {
    if let Some(n) = name {
        return vec![n.to_string()];
    }
    let mut tags: Vec<String> = Vec::new();
    for t in &image.repo_tags {
        if !tags.contains(t) {
            tags.push(t.clone());
        }
    }
    if tags.is_empty() {
        let hex = parse_sha256(&image.config_digest).unwrap_or(&image.config_digest);
        tags.push(hex.chars().take(12).collect());
    }
    tags
}

fn driver_err<'a>(layer: &'a str, op: &'static str) -> impl FnOnce(DriverError) -> ImageError + 'a {
    move |source| ImageError::Driver {
        layer: layer.to_string(),
        op,
        source: Box::new(source),
    }
}

/// Removes layer `id`; a layer that is not there is fine.
fn remove_layer(driver: &dyn Driver, id: &str) -> Result<()> {
    match driver.remove(id) {
        Ok(()) | Err(DriverError::LayerNotFound { .. }) => Ok(()),
        Err(e) => Err(driver_err(id, "remove")(e)),
    }
}

fn import_layers(
    driver: &dyn Driver,
    store: &Store,
    archive: &Archive,
    image_index: usize,
    image: &ArchiveImage,
    progress: &dyn Progress,
    opts: &ImportOptions,
) -> Result<Vec<LayerReport>> {
    let chain = chain_ids(&image.diff_ids);
    let total = chain.len();
    let mut reports = Vec::with_capacity(total);
    // One importer at a time, across processes: without it a parallel import of an image
    // sharing a layer could take a layer another left unfinished (an older ovlink, a layout
    // that creates at once) for a crashed one and remove it under it. A dead importer's lock
    // goes with it.
    let _importing = import_lock(store)?;
    // The new layers, built aside each on the one before and published together after one
    // flush, every PUBLISH_AFTER and at the end: a failure or a crash before a publish leaves
    // none of the layers it would have published.
    let mut staging = driver.staging().map_err(driver_err(&chain[0], "staging"))?;
    let mut records = Vec::new();
    let mut since = Instant::now();
    let staged = (|| -> Result<()> {
        for (i, id) in chain.iter().enumerate() {
            let parent = i.checked_sub(1).map(|p| chain[p].as_str());
            let diff_id = &image.diff_ids[i];
            let start = Instant::now();
            progress.layer_started(i, total, id, image.layers[i].size);
            // A complete layer is kept even above a staged one (in the legacy layout a layer
            // does not need its parent; in overlay2 the staged parent is already published).
            if let Some(size) = reusable(driver, store, id, diff_id, parent)? {
                reports.push(LayerReport {
                    chain_id: id.clone(),
                    diff_id: diff_id.clone(),
                    size,
                    reused: true,
                    duration: start.elapsed(),
                });
                progress.layer_done(i, true);
                continue;
            }

            // Open the member before creating anything, so an unreadable archive leaves nothing.
            let mut stream = archive.layer_stream(image_index, i, id, progress)?;
            let size = match staging.apply(id, parent, &mut stream) {
                Ok(size) => size,
                Err(source) => {
                    return Err(match stream.diagnose() {
                        Some(m) => m.into_error(),
                        None => driver_err(id, "create_and_apply")(source),
                    })
                }
            };
            // The digest is checked before anything is published.
            stream.finish()?;
            records.push(LayerRecord {
                chain_id: id.clone(),
                diff_id: diff_id.clone(),
                parent: parent.map(str::to_string),
                size,
                created: unix_now(),
            });
            reports.push(LayerReport {
                chain_id: id.clone(),
                diff_id: diff_id.clone(),
                size,
                reused: false,
                duration: start.elapsed(),
            });
            progress.layer_done(i, false);
            ovlink_fs::crash::point("import.between-layers");
            // Group commit: a long import publishes what it staged every PUBLISH_AFTER, so
            // a crash or a kill costs at most that much work and the layer under way.
            if since.elapsed() >= opts.publish_after && i + 1 < total {
                let full = std::mem::replace(
                    &mut staging,
                    driver.staging().map_err(driver_err(id, "staging"))?,
                );
                publish_staged(driver, store, full, &mut records)?;
                since = Instant::now();
            }
        }
        Ok(())
    })();
    // What was staged is published and recorded even when a later layer failed: those
    // layers are complete and verified, and the next import reuses them.
    let recorded = publish_staged(driver, store, staging, &mut records);
    // The first error is what matters.
    staged.and(recorded)?;
    Ok(reports)
}

/// How long an import stages layers before it publishes them: the flush per batch costs
/// little against that much work (a `syncfs` took 5-60 ms after a layer of 10,000 files),
/// and a crash or a kill loses at most that much of it, plus the layer under way.
pub const PUBLISH_AFTER: Duration = Duration::from_secs(10);

/// Publishes what `staging` holds ([`Staging::publish`]: one flush, then the renames), then
/// writes the records of `records`, which it empties. On failure, a layer it published
/// without a record is removed again (the next import makes it again).
fn publish_staged(
    driver: &dyn Driver,
    store: &Store,
    staging: Box<dyn Staging + '_>,
    records: &mut Vec<LayerRecord>,
) -> Result<()> {
    let top = records
        .last()
        .map(|r| r.chain_id.clone())
        .unwrap_or_default();
    let recorded = staging
        .publish()
        .map_err(driver_err(&top, "publish"))
        .and_then(|()| {
            ovlink_fs::crash::point("import.before-record");
            records.iter().try_for_each(|r| store.put_layer(r))
        });
    if recorded.is_err() {
        for r in records.iter() {
            if store.layer(&r.chain_id).ok().flatten().is_none() && driver.exists(&r.chain_id) {
                let _ = remove_layer(driver, &r.chain_id);
            }
        }
    }
    records.clear();
    recorded
}

/// Takes the store's import lock (`<store>/import.lock`, flock, exclusive), released on drop.
fn import_lock(store: &Store) -> Result<FileLock> {
    Ok(FileLock::create(&store.root().join("import.lock"), 0o600)?)
}

/// `Some(size)` when layer `id` is complete and can be reused; otherwise clears whatever is
/// left of it (an unfinished layer, a stale record) and returns `None`.
fn reusable(
    driver: &dyn Driver,
    store: &Store,
    id: &str,
    diff_id: &str,
    parent: Option<&str>,
) -> Result<Option<u64>> {
    let record = store.layer(id)?;
    if driver.exists(id) {
        match driver
            .layer_kind(id)
            .map_err(driver_err(id, "layer_kind"))?
        {
            LayerKind::Image => {
                if let Some(rec) = &record {
                    if rec.diff_id == diff_id && rec.parent.as_deref() == parent {
                        return Ok(Some(rec.size));
                    }
                }
            }
            LayerKind::Container { lower_id } => {
                // An import that died between create and the end of its apply leaves a
                // layer on `parent` that looks like a container layer: ours to redo when no
                // record knows it.
                let unfinished = record.is_none()
                    && parent == Some(lower_id.as_str())
                    && !store.layers_in_use()?.contains(id);
                if !unfinished {
                    return Err(ImageError::LayerConflict {
                        layer: id.to_string(),
                        kind: "container",
                    });
                }
            }
            LayerKind::Incomplete => {}
        }
        remove_layer(driver, id)?;
    }
    if record.is_some() {
        store.remove_layer(id)?;
    }
    Ok(None)
}
