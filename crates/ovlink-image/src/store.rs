//! The image and container store: one JSON record per image, container and imported layer
//! under a root directory (see [`Store`] for the layout). Writes are atomic (temp file in
//! the same directory, fsync, rename, fsync of the directory) and serialized between
//! threads and processes by an `flock` on `<root>/store.lock`. Reads need no lock: a record
//! file is always either the old or the new version. This module never touches layers (the
//! driver) or archives; it only keeps records.

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{de::DeserializeOwned, Deserialize, Serialize};

use ovlink_fs::lock::FileLock;

use crate::error::{ImageError, Result};

/// Longest image or container name, in bytes.
pub const MAX_NAME_LEN: usize = 128;

/// Longest record file name (escaped name + `.json`); below `NAME_MAX` (255).
const MAX_FILE_NAME_LEN: usize = 250;

/// An imported image: what `image ls` lists and what `image save` needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// The name (`fx:layers`, `library/busybox:latest`, or a short id).
    pub name: String,
    /// The image id: `sha256:<hex>` of `config`.
    pub id: String,
    /// The raw config JSON, byte for byte as imported (it hashes to `id`). Stored once per
    /// image id in `configs/<hex>.json`, not in the record (a config named by 100 tags was
    /// 100 copies); loaded by [`Store::image`], left empty by [`Store::images`] (a listing
    /// needs no config). Records written before hold it inline, and still read.
    #[serde(default, skip_serializing)]
    pub config: String,
    /// `rootfs.diff_ids`, bottom first (`sha256:<hex>`).
    pub diff_ids: Vec<String>,
    /// The layer ids (chain ids, hex), bottom first; the last is the image's top layer.
    pub layers: Vec<String>,
    /// When it was recorded (unix seconds).
    pub created: u64,
    /// The layout (driver name) whose home holds its layers: `overlay` or `overlay2`. Records
    /// written before layouts were recorded are the legacy layout's.
    #[serde(default = "legacy_layout")]
    pub layout: String,
}

/// An image as `image ls --json` shows it: its record with the config as the JSON object it
/// is ([`Store::listing_in`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ImageListing {
    /// The record (name, id, diff ids, layers, created, layout).
    #[serde(flatten)]
    pub record: ImageRecord,
    /// The image config, parsed.
    pub config: serde_json::Value,
}

/// The legacy layout's name; its image records stay where they were before layouts were
/// recorded (`images/<name>.json`).
pub const LEGACY_LAYOUT: &str = "overlay";

fn legacy_layout() -> String {
    LEGACY_LAYOUT.to_string()
}

/// Layout names as directory names: `overlay2`.
fn is_layout_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 32
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

impl ImageRecord {
    /// The raw config bytes.
    pub fn config_bytes(&self) -> &[u8] {
        self.config.as_bytes()
    }

    /// The top layer id (what a container is created on); `None` for an image without layers.
    pub fn top_layer(&self) -> Option<&str> {
        self.layers.last().map(String::as_str)
    }
}

/// A container: its layers in the driver and the image it was made from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerRecord {
    /// The container name.
    pub name: String,
    /// The image name it was created from.
    pub image: String,
    /// Its read-write layer id.
    pub layer_id: String,
    /// Its `-init` layer id.
    pub init_layer_id: String,
    /// When it was recorded (unix seconds).
    pub created: u64,
}

/// An image layer the importer completed: the driver layer with this id holds exactly the
/// diff `diff_id` on `parent`. A driver layer without this record is an unfinished import.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerRecord {
    /// The layer id (chain id, hex).
    pub chain_id: String,
    /// The diff id of its layer tar (`sha256:<hex>`).
    pub diff_id: String,
    /// The parent layer id, if any.
    pub parent: Option<String>,
    /// What `apply_diff` returned (bytes of regular files).
    pub size: u64,
    /// When it was recorded (unix seconds).
    pub created: u64,
}

/// Seconds since the epoch, now (0 if the clock is before 1970).
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn check_common(name: &str) -> Result<()> {
    let bad = |reason| {
        Err(ImageError::InvalidName {
            name: name.to_string(),
            reason,
        })
    };
    if name.is_empty() {
        return bad("empty");
    }
    if name.len() > MAX_NAME_LEN {
        return bad("longer than 128 bytes");
    }
    if name == "." || name == ".." {
        return bad("`.` and `..` are not names");
    }
    if name.chars().any(char::is_control) {
        return bad("contains a NUL or control character");
    }
    Ok(())
}

/// Checks an image name: non-empty, at most 128 bytes, no NUL or control characters, not
/// `.`/`..`. `/` and `:` are allowed (they are escaped in file names).
pub fn validate_image_name(name: &str) -> Result<()> {
    check_common(name)?;
    escape_name(name).map(|_| ())
}

/// Checks a container name: as [`validate_image_name`], and no `/`.
pub fn validate_container_name(name: &str) -> Result<()> {
    check_common(name)?;
    if name.contains('/') {
        return Err(ImageError::InvalidName {
            name: name.to_string(),
            reason: "contains `/`",
        });
    }
    escape_name(name).map(|_| ())
}

/// The file-name form of a name: bytes other than `[A-Za-z0-9_.-]` (and a leading `.`)
/// become `%XX`, so `library/busybox:latest` is `library%2Fbusybox%3Alatest`. Record files
/// never start with `.` (temp files do).
pub fn escape_name(name: &str) -> Result<String> {
    let mut out = String::with_capacity(name.len());
    for (i, b) in name.bytes().enumerate() {
        let keep = b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || (b == b'.' && i > 0);
        if keep {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    if out.len() + ".json".len() > MAX_FILE_NAME_LEN {
        return Err(ImageError::InvalidName {
            name: name.to_string(),
            reason: "too long once escaped for a file name",
        });
    }
    Ok(out)
}

/// The inverse of [`escape_name`]; `None` for a string it cannot have produced.
pub fn unescape_name(escaped: &str) -> Option<String> {
    let bytes = escaped.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = escaped.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// The image/container store rooted at a directory:
///
/// ```text
/// <root>/                     0700
///   store.lock                0600  flock'd (exclusive) by every write
///   images/<name>.json        0600  ImageRecord of the legacy layout; name escaped (escape_name)
///   images/<layout>/<name>.json     ImageRecord of another layout (overlay2): each layout has
///                                   its own names, as each has its own layers
///   configs/<hex>.json        0600  the config of image id sha256:<hex>, once per id
///   containers/<name>.json    0600  ContainerRecord
///   layers/<chain-id>.json    0600  LayerRecord of each completed image layer
///   */.tmp-<pid>-<n>                a write in progress (removed at open when stale)
/// ```
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

impl Store {
    /// Opens the store at `root` for reading only: nothing is created, locked or removed (a
    /// store that does not exist reads as empty), so read commands work on a read-only
    /// filesystem and leave no `images/`, `containers/`, `layers/` or `store.lock` behind.
    /// Writes through it fail as they would on a store that does not exist.
    pub fn open_read_only(root: &Path) -> Store {
        Store {
            root: root.to_path_buf(),
        }
    }

    /// Opens (creating, mode 0700) the store at `root` and removes temp files that crashed
    /// writers left behind.
    pub fn open(root: &Path) -> Result<Store> {
        let store = Store {
            root: root.to_path_buf(),
        };
        let mut builder = fs::DirBuilder::new();
        builder.recursive(true).mode(0o700);
        for dir in [
            store.root.clone(),
            store.images_dir(),
            store.configs_dir(),
            store.containers_dir(),
            store.layers_dir(),
        ] {
            builder
                .create(&dir)
                .map_err(|e| ImageError::io("create directory", &dir, e))?;
        }
        let _lock = store.lock()?;
        let mut dirs = vec![
            store.images_dir(),
            store.configs_dir(),
            store.containers_dir(),
            store.layers_dir(),
        ];
        dirs.extend(store.layout_image_dirs()?);
        for dir in dirs {
            let entries = fs::read_dir(&dir).map_err(|e| ImageError::io("list", &dir, e))?;
            for entry in entries {
                let entry = entry.map_err(|e| ImageError::io("list", &dir, e))?;
                if entry.file_name().to_string_lossy().starts_with(".tmp-") {
                    let p = entry.path();
                    match fs::remove_file(&p) {
                        Ok(()) => {}
                        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                        Err(e) => return Err(ImageError::io("remove stale temp file", &p, e)),
                    }
                }
            }
        }
        Ok(store)
    }

    /// The store root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn images_dir(&self) -> PathBuf {
        self.root.join("images")
    }

    fn configs_dir(&self) -> PathBuf {
        self.root.join("configs")
    }

    /// `configs/<hex>.json` of image id `id`.
    fn config_path(&self, id: &str) -> Result<PathBuf> {
        let hex = crate::digest::parse_sha256(id).ok_or_else(|| ImageError::InvalidImage {
            path: id.to_string(),
            reason: "an image id must be sha256:<64 hex digits>".to_string(),
        })?;
        Ok(self.configs_dir().join(format!("{hex}.json")))
    }

    /// Writes the config of `image` to `configs/` unless it is there already (the id is the
    /// config's digest: the same id is the same bytes).
    fn put_config(&self, image: &ImageRecord) -> Result<()> {
        let path = self.config_path(&image.id)?;
        if image.config.is_empty() || path.exists() {
            return Ok(());
        }
        self.write_atomic_bytes(&path, image.config_bytes())
    }

    /// Fills the config of `rec` from `configs/` (records written before hold it inline).
    fn load_config(&self, mut rec: ImageRecord) -> Result<ImageRecord> {
        if rec.config.is_empty() {
            let path = self.config_path(&rec.id)?;
            let bytes = fs::read(&path).map_err(|e| ImageError::io("read", &path, e))?;
            rec.config = String::from_utf8(bytes).map_err(|_| ImageError::InvalidImage {
                path: path.display().to_string(),
                reason: "the image config is not UTF-8".to_string(),
            })?;
        }
        Ok(rec)
    }

    fn containers_dir(&self) -> PathBuf {
        self.root.join("containers")
    }

    fn layers_dir(&self) -> PathBuf {
        self.root.join("layers")
    }

    fn image_path(&self, name: &str) -> Result<PathBuf> {
        self.image_path_in(name, LEGACY_LAYOUT)
    }

    /// Where `layout`'s image records are: `images/` for the legacy layout (as before
    /// layouts were recorded), `images/<layout>/` for the others.
    fn images_dir_of(&self, layout: &str) -> PathBuf {
        if layout == LEGACY_LAYOUT {
            self.images_dir()
        } else {
            self.images_dir().join(layout)
        }
    }

    /// The `images/<layout>/` directories that exist.
    fn layout_image_dirs(&self) -> Result<Vec<PathBuf>> {
        let dir = self.images_dir();
        let mut v = Vec::new();
        for e in fs::read_dir(&dir).map_err(|e| ImageError::io("list", &dir, e))? {
            let e = e.map_err(|e| ImageError::io("list", &dir, e))?;
            let name = e.file_name();
            let name = name.to_string_lossy();
            let is_dir = e.file_type().map(|t| t.is_dir()).unwrap_or(false);
            if is_dir && !name.starts_with('.') && is_layout_name(&name) {
                v.push(e.path());
            }
        }
        v.sort();
        Ok(v)
    }

    fn image_path_in(&self, name: &str, layout: &str) -> Result<PathBuf> {
        validate_image_name(name)?;
        if !is_layout_name(layout) {
            return Err(ImageError::InvalidName {
                name: layout.to_string(),
                reason: "a layout name is lowercase letters and digits",
            });
        }
        Ok(self
            .images_dir_of(layout)
            .join(format!("{}.json", escape_name(name)?)))
    }

    /// `image_path_in` for a record, creating its layout's directory.
    fn image_path_for(&self, image: &ImageRecord) -> Result<PathBuf> {
        let path = self.image_path_in(&image.name, &image.layout)?;
        let dir = self.images_dir_of(&image.layout);
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|e| ImageError::io("create directory", &dir, e))?;
        Ok(path)
    }

    fn container_path(&self, name: &str) -> Result<PathBuf> {
        validate_container_name(name)?;
        Ok(self
            .containers_dir()
            .join(format!("{}.json", escape_name(name)?)))
    }

    /// A layer record's file. Layer ids follow the one layer-id rule
    /// ([`ovlink_driver::validate_id`]), whatever made the layer (the importer's chain ids,
    /// `layer create c1`, Docker's `<hex>-init`): the rule's alphabet is a safe file name.
    fn layer_path(&self, layer_id: &str) -> Result<PathBuf> {
        ovlink_driver::validate_id(layer_id).map_err(|e| ImageError::InvalidName {
            name: layer_id.to_string(),
            reason: match e {
                ovlink_driver::DriverError::InvalidLayerId { reason, .. } => reason,
                _ => "not a layer id",
            },
        })?;
        Ok(self.layers_dir().join(format!("{layer_id}.json")))
    }

    fn lock(&self) -> Result<FileLock> {
        Ok(FileLock::create(&self.root.join("store.lock"), 0o600)?)
    }

    fn write_atomic<T: Serialize>(&self, path: &Path, value: &T) -> Result<()> {
        let mut data = serde_json::to_vec_pretty(value)
            .map_err(|e| ImageError::io("serialize record for", path, io::Error::other(e)))?;
        data.push(b'\n');
        self.write_atomic_bytes(path, &data)
    }

    fn write_atomic_bytes(&self, path: &Path, data: &[u8]) -> Result<()> {
        let dir = path.parent().unwrap_or(&self.root);
        let tmp = dir.join(format!(
            ".tmp-{}-{}",
            std::process::id(),
            TMP_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let result = (|| {
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)
                .map_err(|e| ImageError::io("create", &tmp, e))?;
            f.write_all(data)
                .map_err(|e| ImageError::io("write", &tmp, e))?;
            f.sync_all().map_err(|e| ImageError::io("fsync", &tmp, e))?;
            fs::rename(&tmp, path).map_err(|e| ImageError::io("rename into place", path, e))
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result?;
        sync_dir(dir)
    }

    fn remove_file(&self, path: &Path) -> Result<()> {
        fs::remove_file(path).map_err(|e| ImageError::io("remove", path, e))?;
        sync_dir(path.parent().unwrap_or(&self.root))
    }

    /// Records `image` under its name, replacing an image of that name (a re-tag, as
    /// `docker load` does). Returns the record it replaced.
    pub fn put_image(&self, image: &ImageRecord) -> Result<Option<ImageRecord>> {
        let path = self.image_path_for(image)?;
        let _lock = self.lock()?;
        let previous = read_record::<ImageRecord>(&path)?
            .map(|r| self.load_config(r))
            .transpose()?;
        self.put_config(image)?;
        self.write_atomic(&path, image)?;
        Ok(previous)
    }

    /// Records `image` under its name; fails with [`ImageError::ImageExists`] if taken.
    pub fn add_image(&self, image: &ImageRecord) -> Result<()> {
        let path = self.image_path_for(image)?;
        let _lock = self.lock()?;
        if path.exists() {
            return Err(ImageError::ImageExists {
                name: image.name.clone(),
            });
        }
        self.put_config(image)?;
        self.write_atomic(&path, image)
    }

    /// The image named `name`, or [`ImageError::ImageNotFound`].
    pub fn image(&self, name: &str) -> Result<ImageRecord> {
        let path = self.image_path(name)?;
        let rec = read_record(&path)?.ok_or_else(|| ImageError::ImageNotFound {
            name: name.to_string(),
        })?;
        self.load_config(rec)
    }

    /// The image named `name` of `layout` (each layout has its own names: the same name may
    /// be an image in both). [`ImageError::WrongLayout`] when only another layout has it (its
    /// layers are not in this one), [`ImageError::ImageNotFound`] when none does.
    pub fn image_in(&self, name: &str, layout: &str) -> Result<ImageRecord> {
        if let Some(rec) = read_record::<ImageRecord>(&self.image_path_in(name, layout)?)? {
            return self.load_config(rec);
        }
        let mut others = vec![self.images_dir()];
        others.extend(self.layout_image_dirs()?);
        for dir in others {
            let p = dir.join(format!("{}.json", escape_name(name)?));
            if let Some(rec) = read_record::<ImageRecord>(&p)? {
                if rec.layout != layout {
                    return Err(ImageError::WrongLayout {
                        name: name.to_string(),
                        layout: rec.layout,
                        wanted: layout.to_string(),
                    });
                }
            }
        }
        Err(ImageError::ImageNotFound {
            name: name.to_string(),
        })
    }

    /// The images of `layout`, sorted by name; their `config` is not loaded.
    pub fn images_in(&self, layout: &str) -> Result<Vec<ImageRecord>> {
        let dir = self.images_dir_of(layout);
        if layout != LEGACY_LAYOUT && !dir.is_dir() {
            return Ok(Vec::new());
        }
        let mut v: Vec<ImageRecord> = list_records(&dir)?;
        v.retain(|i| i.layout == layout);
        v.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(v)
    }

    /// The images of `layout` with their configs parsed, sorted by name (`image ls --json`).
    pub fn listing_in(&self, layout: &str) -> Result<Vec<ImageListing>> {
        let mut v = Vec::new();
        for rec in self.images_in(layout)? {
            let rec = self.load_config(rec)?;
            let path = self.config_path(&rec.id)?;
            let config = serde_json::from_str(&rec.config)
                .map_err(|source| ImageError::BadRecord { path, source })?;
            v.push(ImageListing {
                record: rec,
                config,
            });
        }
        Ok(v)
    }

    /// All images of every layout, sorted by name (then layout); their `config` is not
    /// loaded (see [`ImageRecord::config`]).
    pub fn images(&self) -> Result<Vec<ImageRecord>> {
        let mut v: Vec<ImageRecord> = list_records(&self.images_dir())?;
        for dir in self.layout_image_dirs()? {
            v.extend(list_records::<ImageRecord>(&dir)?);
        }
        v.sort_by(|a, b| (&a.name, &a.layout).cmp(&(&b.name, &b.layout)));
        Ok(v)
    }

    /// Removes the image named `name` and returns its record. Fails with
    /// [`ImageError::ImageInUse`] while a container record names it. Its layers stay in
    /// the driver (see [`Store::layers_in_use`] to find which may go).
    pub fn remove_image(&self, name: &str) -> Result<ImageRecord> {
        let path = self.image_path(name)?;
        let _lock = self.lock()?;
        let rec = read_record::<ImageRecord>(&path)?.ok_or_else(|| ImageError::ImageNotFound {
            name: name.to_string(),
        })?;
        let rec = self.load_config(rec)?;
        // The first user by name, so the message is stable.
        if let Some(c) = self.containers()?.into_iter().find(|c| c.image == name) {
            return Err(ImageError::ImageInUse {
                name: name.to_string(),
                container: c.name,
            });
        }
        self.remove_file(&path)?;
        // Its config goes with the last record of its id.
        if !self.images()?.iter().any(|i| i.id == rec.id) {
            let config = self.config_path(&rec.id)?;
            match fs::remove_file(&config) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(ImageError::io("remove", &config, e)),
            }
        }
        Ok(rec)
    }

    /// Records a new container; fails with [`ImageError::ContainerExists`] if taken.
    pub fn put_container(&self, container: &ContainerRecord) -> Result<()> {
        let path = self.container_path(&container.name)?;
        let _lock = self.lock()?;
        if path.exists() {
            return Err(ImageError::ContainerExists {
                name: container.name.clone(),
            });
        }
        self.write_atomic(&path, container)
    }

    /// The container named `name`, or [`ImageError::ContainerNotFound`].
    pub fn container(&self, name: &str) -> Result<ContainerRecord> {
        let path = self.container_path(name)?;
        read_record(&path)?.ok_or_else(|| ImageError::ContainerNotFound {
            name: name.to_string(),
        })
    }

    /// All containers, sorted by name.
    pub fn containers(&self) -> Result<Vec<ContainerRecord>> {
        let mut v: Vec<ContainerRecord> = list_records(&self.containers_dir())?;
        v.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(v)
    }

    /// Removes the container named `name` and returns its record (its layers stay in the
    /// driver: the caller removes them).
    pub fn remove_container(&self, name: &str) -> Result<ContainerRecord> {
        let path = self.container_path(name)?;
        let _lock = self.lock()?;
        let rec = read_record::<ContainerRecord>(&path)?.ok_or_else(|| {
            ImageError::ContainerNotFound {
                name: name.to_string(),
            }
        })?;
        self.remove_file(&path)?;
        Ok(rec)
    }

    /// Records a completed image layer (replacing an older record of that id).
    pub fn put_layer(&self, layer: &LayerRecord) -> Result<()> {
        let path = self.layer_path(&layer.chain_id)?;
        let _lock = self.lock()?;
        self.write_atomic(&path, layer)
    }

    /// The record of layer `chain_id`, if the importer completed it.
    pub fn layer(&self, chain_id: &str) -> Result<Option<LayerRecord>> {
        read_record(&self.layer_path(chain_id)?)
    }

    /// All layer records, sorted by chain id.
    pub fn layer_records(&self) -> Result<Vec<LayerRecord>> {
        let mut v: Vec<LayerRecord> = list_records(&self.layers_dir())?;
        v.sort_by(|a, b| a.chain_id.cmp(&b.chain_id));
        Ok(v)
    }

    /// Forgets layer `chain_id` (call before or after removing it from the driver); true
    /// if there was a record.
    pub fn remove_layer(&self, chain_id: &str) -> Result<bool> {
        let path = self.layer_path(chain_id)?;
        let _lock = self.lock()?;
        match fs::symlink_metadata(&path) {
            Ok(_) => {
                self.remove_file(&path)?;
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(ImageError::io("stat", &path, e)),
        }
    }

    /// Every driver layer id some record still needs: the layers of every image and the
    /// layer and init layer of every container.
    pub fn layers_in_use(&self) -> Result<BTreeSet<String>> {
        let mut set = BTreeSet::new();
        for image in self.images()? {
            set.extend(image.layers);
        }
        for c in self.containers()? {
            set.insert(c.layer_id);
            set.insert(c.init_layer_id);
        }
        Ok(set)
    }
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| ImageError::io("fsync directory", dir, e))
}

fn read_record<T: DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(ImageError::io("read", path, e)),
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|source| ImageError::BadRecord {
            path: path.to_path_buf(),
            source,
        })
}

fn list_records<T: DeserializeOwned>(dir: &Path) -> Result<Vec<T>> {
    let mut out = Vec::new();
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        // A store opened read-only before anything was recorded.
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(ImageError::io("list", dir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| ImageError::io("list", dir, e))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') || !name.ends_with(".json") {
            continue;
        }
        // A record removed between read_dir and read is simply gone.
        if let Some(rec) = read_record(&entry.path())? {
            out.push(rec);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_round_trips() {
        for name in [
            "fx:layers",
            "library/busybox:latest",
            "a%b",
            ".hidden",
            "ünï",
            "x.y-z_1",
        ] {
            let e = escape_name(name).expect("escape");
            assert!(!e.starts_with('.'));
            assert!(!e.contains('/') && !e.contains(':'));
            assert_eq!(unescape_name(&e).as_deref(), Some(name));
        }
        assert_eq!(
            escape_name("library/busybox:latest").ok().as_deref(),
            Some("library%2Fbusybox%3Alatest")
        );
        assert_eq!(escape_name("x.y").ok().as_deref(), Some("x.y"));
    }

    #[test]
    fn names_are_validated() {
        for bad in ["", ".", "..", "a\0b", "a\nb", &"x".repeat(129)] {
            assert!(
                matches!(
                    validate_image_name(bad),
                    Err(ImageError::InvalidName { .. })
                ),
                "{bad:?}"
            );
        }
        assert!(validate_image_name("library/busybox:latest").is_ok());
        assert!(validate_image_name(&"x".repeat(128)).is_ok());
        // 128 bytes that all need escaping are too long for a file name.
        assert!(validate_image_name(&"/".repeat(128)).is_err());
        assert!(validate_container_name("a/b").is_err());
        assert!(validate_container_name("web-1").is_ok());
    }
}
