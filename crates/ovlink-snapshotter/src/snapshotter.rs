//! The snapshotter itself: containerd's snapshot calls on an ovlink layout, with the metadata
//! in the [`Store`]. Synchronous; the gRPC service runs each call on a blocking thread.
//!
//! How a snapshot maps to a layer (legacy `overlay` layout; overlay2 in brackets):
//!
//! ```text
//! Prepare(k, "")      create(L, none): <L>/root/ [<L>/diff/]      mount: bind rw of it
//! Prepare(k, p)       create(L, P): lower-id, upper/, work/        mount: ONE overlay,
//!                     [diff/, work/, lower]                        lowerdir=<P>/root [<P> chain]
//! View(k, "")         create(L, none)                              mount: bind ro
//! View(k, p)          no layer of its own                          mount: bind ro of <P>/root
//!                                                                  [overlay, lowerdirs only]
//! Commit(n, k)        legacy: the graphdriver's commit in place: the diff of upper/ (0/0 char
//!                     devices and opaque dirs become whiteouts) applied to a hardlink copy of
//!                     <P>/root, renamed to <L>/root, then upper/ work/ lower-id removed; the
//!                     record moves from k to n (same layer). [overlay2: the record only]
//! Remove(k)           record deleted, then the layer removed (legacy: reclaimed in the
//!                     background, as `layer rm --background`; Cleanup waits for it)
//! ```
//!
//! Crash safety: a layer is created (published by one rename) before its record is written,
//! and a record deleted before its layer; at start, [`Snapshotter::open`] removes every layer
//! no record names. A commit first marks the record (`committing`), converts the layer (one
//! rename publishes `root/`), then moves the record in one transaction; a start that finds the
//! mark finishes the commit. So after a SIGKILL at any moment the next start has only complete
//! snapshots and no temporary directories (the layouts' own init reaps theirs).
//!
//! Mutating calls are serialized by one lock: their checks and their effects never interleave.
//! This module never writes into a committed snapshot's tree.

use crate::error::{Result, SnapError};
use crate::filter::Filters;
use crate::store::{Committing, Kind, Record, Store};
use ovlink_driver::Layout;
use ovlink_driver::{CreateOpts, Driver, InitConfig, LayerKind, Mount, Usage};
use ovlink_layouts::{Overlay2Driver, OverlayDriver};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Largest label (key plus value) containerd accepts.
const MAX_LABEL: usize = 4096;

/// Largest total of a snapshot's labels (keys plus values). containerd bounds one label; its
/// own metadata store bounds their total. Without a bound, ten Updates of many labels grew one
/// record to 38 MiB, and Stat and List then failed at gRPC's 16 MiB message limit, so every
/// Walk, containerd's GC included, failed. Real snapshots carry a few hundred bytes.
const MAX_LABELS_TOTAL: usize = 64 * 1024;

/// Refuses labels whose total passes [`MAX_LABELS_TOTAL`] (what a record would hold).
fn check_labels_total(key: &str, labels: &BTreeMap<String, String>) -> Result<()> {
    let total: usize = labels.iter().map(|(k, v)| k.len() + v.len()).sum();
    if total > MAX_LABELS_TOTAL {
        return Err(SnapError::InvalidArgument(format!(
            "the labels of snapshot {} would total {total} bytes, more than the maximum \
             ({MAX_LABELS_TOTAL} bytes of keys and values)",
            crate::error::quoted(key)
        )));
    }
    Ok(())
}

/// Where the snapshotter keeps its state.
#[derive(Debug, Clone)]
pub struct Config {
    /// ovlink's root: the layout's home is `<root>/<layout>` (what `ovlink --root` and
    /// `ovlink report` use), the metadata `<root>/snapshotter/<layout>/metadata.redb`.
    pub root: PathBuf,
    /// The layout.
    pub layout: Layout,
    /// How new layers are made durable (`None`: the backing filesystem's default). (Removed
    /// layers are always reclaimed in the background, see `Remove` above.)
    pub sync: Option<ovlink_driver::SyncMode>,
    /// Which diff the layout makes.
    pub diff: ovlink_driver::DiffMode,
    /// Legacy layout: the `--symlinks` mode to record in a new home (`None`: the recorded one;
    /// see [`InitConfig::symlinks`]).
    pub symlinks: Option<ovlink_fs::Specials>,
}

enum Layer {
    Overlay(OverlayDriver),
    Overlay2(Overlay2Driver),
}

impl Layer {
    fn driver(&self) -> &dyn Driver {
        match self {
            Layer::Overlay(d) => d,
            Layer::Overlay2(d) => d,
        }
    }

    fn home(&self) -> &ovlink_driver::Home {
        match self {
            Layer::Overlay(d) => d.home_dir(),
            Layer::Overlay2(d) => d.home_dir(),
        }
    }
}

/// What a start found and repaired.
#[derive(Debug, Default, Clone)]
pub struct Recovery {
    /// Commits a crash had interrupted, finished: (active key, committed name).
    pub finished_commits: Vec<(String, String)>,
    /// Layers no record named (a crash between creating a layer and recording it, or
    /// between deleting a record and removing its layer), removed.
    pub orphan_layers: Vec<String>,
    /// Records whose layer is missing (never expected): listed, not changed.
    pub missing_layers: Vec<String>,
    /// What could not be repaired (a commit that cannot finish, an orphan that cannot be
    /// removed): the start goes on and serves, the snapshot stays as it was (an interrupted
    /// commit's snapshot stays active), and the next start tries again.
    pub warnings: Vec<String>,
}

impl Recovery {
    /// What a start repaired and what it could not, one line each, for the operator.
    pub fn lines(&self) -> Vec<String> {
        let q = crate::error::quoted;
        let mut v: Vec<String> = (self.finished_commits.iter())
            .map(|(k, n)| format!("finished the interrupted commit of {} as {}", q(k), q(n)))
            .collect();
        v.extend(
            (self.orphan_layers.iter())
                .map(|id| format!("removed layer {id}, which no snapshot names")),
        );
        v.extend(self.warnings.iter().map(|w| format!("warning: {w}")));
        v.extend(
            (self.missing_layers.iter())
                .map(|k| format!("warning: the layer of snapshot {} is missing", q(k))),
        );
        v
    }
}

/// A snapshot's public description (containerd's `Info`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    /// Its key.
    pub name: String,
    /// Its record.
    pub record: Record,
}

/// The snapshotter. See the module docs.
pub struct Snapshotter {
    layer: Layer,
    store: Store,
    state: PathBuf,
    ops: Mutex<()>,
    counter: AtomicU64,
    reclaims: Mutex<Vec<std::thread::JoinHandle<()>>>,
}

impl std::fmt::Debug for Snapshotter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshotter")
            .field("home", &self.layer.driver().home())
            .field("state", &self.state)
            .finish()
    }
}

fn now() -> i128 {
    match std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => d.as_nanos() as i128,
        Err(e) => -(e.duration().as_nanos() as i128),
    }
}

fn check_labels(labels: &BTreeMap<String, String>) -> Result<()> {
    for (k, v) in labels {
        if k.len() + v.len() > MAX_LABEL {
            return Err(SnapError::InvalidArgument(format!(
                "label key and value length ({} bytes) greater than maximum size ({MAX_LABEL} \
                 bytes), key: {:?}",
                k.len() + v.len(),
                k.chars().take(64).collect::<String>()
            )));
        }
        if k.is_empty() {
            return Err(SnapError::InvalidArgument(
                "label key must not be empty".into(),
            ));
        }
    }
    Ok(())
}

fn not_found(key: &str) -> SnapError {
    SnapError::NotFound {
        key: key.to_string(),
    }
}

/// True when `home` holds an entry that looks like a layer (a 64-hex or other non-dot name)
/// and has no owner record: a home another writer made before owners were recorded.
fn holds_unrecorded_layers(home: &Path) -> bool {
    if home.join(ovlink_driver::home::OWNER_RECORD).exists() {
        return false;
    }
    std::fs::read_dir(home).is_ok_and(|it| {
        it.filter_map(|e| e.ok())
            .any(|e| !e.file_name().to_string_lossy().starts_with('.') && e.file_name() != "l")
    })
}

impl Snapshotter {
    /// Opens the layout and the store under `cfg.root` and repairs what a crash left (see the
    /// module docs).
    pub fn open(cfg: &Config) -> Result<(Snapshotter, Recovery)> {
        let home = cfg.root.join(cfg.layout.name());
        let state = cfg.root.join("snapshotter").join(cfg.layout.name());
        std::fs::create_dir_all(&state).map_err(|e| SnapError::Io {
            op: "create the state directory",
            path: state.clone(),
            source: e,
        })?;
        // A home has one owner: this start removes every layer no snapshot of its names, so
        // a home with layers but no owner record and no snapshot store of ours (an older
        // ovlink's command-line home) is refused before anything is touched; the init then
        // refuses a home another owner recorded, and records ours in a new one.
        let store_file = state.join("metadata.redb");
        if !store_file.exists() && holds_unrecorded_layers(&home) {
            return Err(SnapError::Init {
                layout: cfg.layout.name(),
                home: home.clone(),
                source: Box::new(ovlink_driver::DriverError::HomeOwned {
                    home: home.clone(),
                    owner: ovlink_driver::HomeOwner::Cli,
                    asked: ovlink_driver::HomeOwner::Snapshotter,
                }),
            });
        }
        let icfg = InitConfig {
            home: home.clone(),
            sync: cfg.sync,
            diff: cfg.diff,
            symlinks: cfg.symlinks,
            owner: Some(ovlink_driver::HomeOwner::Snapshotter),
            ..Default::default()
        };
        let init_err = |e| SnapError::Init {
            layout: cfg.layout.name(),
            home: home.clone(),
            source: Box::new(e),
        };
        let layer = match cfg.layout {
            Layout::Overlay => Layer::Overlay(OverlayDriver::init(&icfg).map_err(init_err)?),
            Layout::Overlay2 => Layer::Overlay2(Overlay2Driver::init(&icfg).map_err(init_err)?),
        };
        let store = Store::open(&state.join("metadata.redb"))?;
        let s = Snapshotter {
            layer,
            store,
            state,
            ops: Mutex::new(()),
            counter: AtomicU64::new(0),
            reclaims: Mutex::new(Vec::new()),
        };
        let rec = s.recover()?;
        Ok((s, rec))
    }

    /// The layout's home.
    pub fn home(&self) -> &Path {
        self.layer.driver().home()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ()> {
        // A panic in another call cannot leave the store half-written (transactions), so a
        // poisoned lock is still usable.
        self.ops.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn driver_err(key: &str, id: &str) -> impl FnOnce(ovlink_driver::DriverError) -> SnapError {
        let (key, id) = (key.to_string(), id.to_string());
        move |source| SnapError::Driver {
            key,
            id,
            source: Box::new(source),
        }
    }

    fn recover(&self) -> Result<Recovery> {
        let _g = self.lock();
        let mut r = Recovery::default();
        // Repairs that fail are warnings, never a failed start: a server that cannot start
        // also cannot serve the Removes and the GC that would free what it needs.
        for (key, rec) in self.store.all()? {
            if let Some(c) = rec.committing.clone() {
                match self.finish_commit(&key, &rec, &c) {
                    Ok(()) => r.finished_commits.push((key, c.name)),
                    Err(e) => r.warnings.push(format!(
                        "the interrupted commit of {} as {} cannot finish: {}; the snapshot \
                         stays active, the next start tries again",
                        crate::error::quoted(&key),
                        crate::error::quoted(&c.name),
                        ovlink_driver::error::error_chain(&e)
                    )),
                }
            }
        }
        for (id, e) in self.remove_orphans(&mut r.orphan_layers)? {
            r.warnings.push(format!(
                "layer {id} (no snapshot names it) cannot be removed: {}; Cleanup and the next \
                 start try again",
                ovlink_driver::error::error_chain(&e)
            ));
        }
        let all = self.store.all()?;
        let d = self.layer.driver();
        for (key, rec) in &all {
            if let Some(id) = &rec.layer {
                if !d.exists(id) {
                    r.missing_layers.push(key.clone());
                }
            }
        }
        Ok(r)
    }

    /// Removes every layer no record names (a crash between creating a layer and recording
    /// it, or a Remove whose layer removal failed after its record could not be put back),
    /// listing them in `removed`; returns those that could not be removed, with why. The
    /// caller holds the ops lock.
    fn remove_orphans(&self, removed: &mut Vec<String>) -> Result<Vec<(String, SnapError)>> {
        let named: BTreeSet<String> = self
            .store
            .all()?
            .into_iter()
            .filter_map(|(_, r)| r.layer)
            .collect();
        let d = self.layer.driver();
        let mut failed = Vec::new();
        for info in d.layers().map_err(Self::driver_err("", ""))? {
            if !named.contains(&info.id) {
                match self.remove_layer("(none)", &info.id) {
                    Ok(()) => removed.push(info.id),
                    Err(e) => failed.push((info.id, e)),
                }
            }
        }
        Ok(failed)
    }

    fn new_layer_id(&self, key: &str) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let mut h = Sha256::new();
        h.update(key.as_bytes());
        h.update(now().to_le_bytes());
        h.update(n.to_le_bytes());
        h.update(std::process::id().to_le_bytes());
        hex::encode(h.finalize())
    }

    fn get(&self, key: &str) -> Result<Record> {
        self.store.get(key)?.ok_or_else(|| not_found(key))
    }

    /// The layer of committed snapshot `parent` (for a new snapshot on it).
    fn parent_layer(&self, parent: &str) -> Result<Option<String>> {
        if parent.is_empty() {
            return Ok(None);
        }
        let p = self.store.get(parent)?.ok_or_else(|| not_found(parent))?;
        if p.kind != Kind::Committed {
            return Err(SnapError::InvalidArgument(format!(
                "parent {} is not a committed snapshot",
                crate::error::quoted(parent)
            )));
        }
        Ok(p.layer)
    }

    fn create(
        &self,
        kind: Kind,
        key: &str,
        parent: &str,
        labels: BTreeMap<String, String>,
    ) -> Result<Vec<Mount>> {
        if key.is_empty() {
            return Err(SnapError::InvalidArgument(
                "the snapshot key is empty".into(),
            ));
        }
        check_labels(&labels)?;
        check_labels_total(key, &labels)?;
        let _g = self.lock();
        if self.store.get(key)?.is_some() {
            return Err(SnapError::AlreadyExists {
                key: key.to_string(),
            });
        }
        let parent_layer = self.parent_layer(parent)?;
        let own = kind == Kind::Active || parent.is_empty();
        let layer = if own {
            let id = self.new_layer_id(key);
            self.layer
                .driver()
                .create(&id, parent_layer.as_deref(), &CreateOpts::default())
                .map_err(Self::driver_err(key, &id))?;
            Some(id)
        } else {
            None
        };
        let t = now();
        let rec = Record {
            layer: layer.clone(),
            kind,
            parent: parent.to_string(),
            labels,
            created: t,
            updated: t,
            committing: None,
        };
        let res = self
            .store
            .write(|tx| tx.put(key, &rec))
            .and_then(|()| self.mounts_of(key, &rec));
        if res.is_err() {
            if let Some(id) = &layer {
                let _ = self.store.write(|tx| tx.delete(key));
                let _ = self.layer.driver().remove(id);
            }
        }
        res
    }

    /// Prepare: a new active snapshot on committed `parent` (or none).
    pub fn prepare(
        &self,
        key: &str,
        parent: &str,
        labels: BTreeMap<String, String>,
    ) -> Result<Vec<Mount>> {
        self.create(Kind::Active, key, parent, labels)
    }

    /// View: a new read-only view of committed `parent` (or of an empty tree).
    pub fn view(
        &self,
        key: &str,
        parent: &str,
        labels: BTreeMap<String, String>,
    ) -> Result<Vec<Mount>> {
        self.create(Kind::View, key, parent, labels)
    }

    /// Mounts: the mounts of an active snapshot or a view, again.
    pub fn mounts(&self, key: &str) -> Result<Vec<Mount>> {
        let rec = self.get(key)?;
        self.mounts_of(key, &rec)
    }

    fn mounts_of(&self, key: &str, rec: &Record) -> Result<Vec<Mount>> {
        let d = self.layer.driver();
        match (rec.kind, &rec.layer) {
            (Kind::Committed, _) => Err(SnapError::FailedPrecondition {
                key: key.to_string(),
                reason: "is committed: only active snapshots and views have mounts".into(),
            }),
            (Kind::Active, Some(id)) => Ok(vec![d
                .mount_spec(id, None)
                .map_err(Self::driver_err(key, id))?]),
            (Kind::View, Some(id)) => {
                let m = d.mount_spec(id, None).map_err(Self::driver_err(key, id))?;
                Ok(vec![read_only(m)])
            }
            (Kind::View, None) => {
                let p = self.get(&rec.parent)?;
                let Some(pid) = p.layer else {
                    return Err(not_found(&rec.parent));
                };
                let m = d
                    .mount_spec(&pid, None)
                    .map_err(Self::driver_err(&rec.parent, &pid))?;
                Ok(vec![read_only(m)])
            }
            (Kind::Active, None) => Err(not_found(key)),
        }
    }

    /// Commit: active `key` becomes committed `name` (see the module docs).
    pub fn commit(&self, name: &str, key: &str, labels: BTreeMap<String, String>) -> Result<()> {
        if name.is_empty() {
            return Err(SnapError::InvalidArgument(
                "the snapshot name is empty".into(),
            ));
        }
        check_labels(&labels)?;
        check_labels_total(name, &labels)?;
        let _g = self.lock();
        let rec = self.get(key)?;
        if rec.kind != Kind::Active {
            return Err(SnapError::FailedPrecondition {
                key: key.to_string(),
                reason: format!("is a {} snapshot, not an active one", rec.kind.name()),
            });
        }
        if self.store.get(name)?.is_some() {
            return Err(SnapError::AlreadyExists {
                key: name.to_string(),
            });
        }
        // What containerd wrote through the snapshot's mounts is in the page cache: one flush
        // makes it durable before the commit is marked. A start that finds the mark finishes
        // the commit with what is on disk, so the mark must never be on disk before the data
        // (found by the power-loss replay: committed snapshots whose files were empty after a
        // cut, finished by the next start).
        if let Some(id) = &rec.layer {
            self.sync_layer(key, id)?;
        }
        let c = Committing {
            name: name.to_string(),
            labels,
        };
        let mut marked = rec.clone();
        marked.committing = Some(c.clone());
        self.store.write(|tx| tx.put(key, &marked))?;
        match self.finish_commit(key, &marked, &c) {
            Ok(()) => Ok(()),
            Err(e) => {
                // The layer is still the active one (the conversion publishes by one rename,
                // and failed before it): drop the mark.
                let _ = self.store.write(|tx| tx.put(key, &rec));
                Err(e)
            }
        }
    }

    /// One `syncfs` of the filesystem holding layer `id` (of snapshot `key`), when the home is
    /// durable.
    fn sync_layer(&self, key: &str, id: &str) -> Result<()> {
        let h = self.layer.home();
        if !h.flush_data() {
            return Ok(());
        }
        let path = h.path().join(id);
        let dir = ovlink_fs::at::open_dir_at(h.fd(), id, &path)
            .map_err(|e| Self::driver_err(key, id)(e.into()))?;
        h.syncfs(&dir, &path).map_err(Self::driver_err(key, id))
    }

    /// Converts the layer (legacy: into an image layer) and moves the record `key` -> name.
    fn finish_commit(&self, key: &str, rec: &Record, c: &Committing) -> Result<()> {
        let id = rec.layer.clone().ok_or_else(|| not_found(key))?;
        if let Layer::Overlay(d) = &self.layer {
            let kind = d.layer_kind(&id).map_err(Self::driver_err(key, &id))?;
            if let LayerKind::Container { lower_id } = kind {
                let mut tmp = tempfile::tempfile_in(&self.state).map_err(|e| SnapError::Io {
                    op: "create a temporary file in",
                    path: self.state.clone(),
                    source: e,
                })?;
                d.diff(&id, Some(&lower_id), &mut tmp)
                    .map_err(Self::driver_err(key, &id))?;
                tmp.seek(SeekFrom::Start(0)).map_err(|e| SnapError::Io {
                    op: "rewind the diff of",
                    path: d.home().join(&id),
                    source: e,
                })?;
                d.apply_diff(&id, None, &mut tmp)
                    .map_err(Self::driver_err(key, &id))?;
            }
        }
        let t = now();
        let committed = Record {
            layer: Some(id),
            kind: Kind::Committed,
            parent: rec.parent.clone(),
            labels: c.labels.clone(),
            created: t,
            updated: t,
            committing: None,
        };
        self.store.write(|tx| {
            tx.delete(key)?;
            tx.put(&c.name, &committed)
        })
    }

    /// Remove: deletes a snapshot that has no children.
    pub fn remove(&self, key: &str) -> Result<()> {
        let _g = self.lock();
        let rec = self.store.write(|tx| {
            let rec = tx.get(key)?.ok_or_else(|| not_found(key))?;
            if tx.has_children(key)? {
                return Err(SnapError::FailedPrecondition {
                    key: key.to_string(),
                    reason: "has children: remove them first".into(),
                });
            }
            if rec.committing.is_some() {
                return Err(SnapError::FailedPrecondition {
                    key: key.to_string(),
                    reason: "is being committed".into(),
                });
            }
            tx.delete(key)?;
            Ok(rec)
        })?;
        // All or nothing: when the layer cannot be removed (no fd left, a busy mount), the
        // record is put back and the snapshot is as it was; when the layer is gone even so
        // (only the removal's tail failed), the snapshot is removed.
        if let Some(id) = &rec.layer {
            if let Err(e) = self.remove_layer(key, id) {
                if !self.layer.driver().exists(id) {
                    return Ok(());
                }
                // If even that fails, the layer is an orphan: Cleanup or the next start
                // removes it.
                let _ = self.store.write(|tx| tx.put(key, &rec));
                return Err(e);
            }
        }
        Ok(())
    }

    /// Removes layer `id`. Legacy: renamed away at once (gone for every caller), its inodes
    /// freed by a background thread, as `ovlink layer rm --background` does; Cleanup waits
    /// for those threads. overlay2: removed before returning.
    fn remove_layer(&self, key: &str, id: &str) -> Result<()> {
        match &self.layer {
            Layer::Overlay(d) => {
                let trash = d.remove_detached(id).map_err(Self::driver_err(key, id))?;
                // If the thread cannot start, the trash stays for Cleanup or the next start.
                if let Ok(h) = std::thread::Builder::new()
                    .name("ovlink-reclaim".into())
                    .spawn(move || {
                        let _ = trash.reclaim();
                    })
                {
                    let mut v = self.reclaims.lock().unwrap_or_else(|p| p.into_inner());
                    v.retain(|h| !h.is_finished());
                    v.push(h);
                }
                Ok(())
            }
            Layer::Overlay2(d) => d.remove(id).map_err(Self::driver_err(key, id)),
        }
    }

    /// Stat.
    pub fn stat(&self, key: &str) -> Result<Info> {
        Ok(Info {
            name: key.to_string(),
            record: self.get(key)?,
        })
    }

    /// Update: changes labels. `paths` empty: all labels replaced; `labels`: the same;
    /// `labels.<k>`: that label set (or removed when `labels` has no `<k>`); anything else
    /// is an immutable field (InvalidArgument).
    pub fn update(
        &self,
        key: &str,
        labels: BTreeMap<String, String>,
        paths: &[String],
    ) -> Result<Info> {
        check_labels(&labels)?;
        let _g = self.lock();
        let rec = self.store.write(|tx| {
            let mut rec = tx.get(key)?.ok_or_else(|| not_found(key))?;
            if paths.is_empty() {
                rec.labels = labels.clone();
            }
            for p in paths {
                if p == "labels" {
                    rec.labels = labels.clone();
                } else if let Some(k) = p.strip_prefix("labels.") {
                    match labels.get(k) {
                        Some(v) => rec.labels.insert(k.to_string(), v.clone()),
                        None => rec.labels.remove(k),
                    };
                } else {
                    return Err(SnapError::InvalidArgument(format!(
                        "cannot update {} field on snapshot {}: only labels can change",
                        crate::error::quoted(p),
                        crate::error::quoted(key)
                    )));
                }
            }
            check_labels_total(key, &rec.labels)?;
            rec.updated = now();
            tx.put(key, &rec)?;
            Ok(rec)
        })?;
        Ok(Info {
            name: key.to_string(),
            record: rec,
        })
    }

    /// List: every snapshot matching `filters` (see [`crate::filter`]), sorted by key.
    pub fn list(&self, filters: &[String]) -> Result<Vec<Info>> {
        let mut out = Vec::new();
        self.list_each(filters, |i| {
            out.push(i);
            true
        })?;
        Ok(out)
    }

    /// [`Snapshotter::list`] one snapshot at a time: `f` gets each one the filters match, in
    /// key order, and stops the walk by returning false. What List streams: the store is never
    /// decoded whole (270 MiB of labels took the server to 4.6 GiB when it was).
    pub fn list_each(&self, filters: &[String], mut f: impl FnMut(Info) -> bool) -> Result<()> {
        let filt = Filters::parse(filters)?;
        self.store.each(|name, record| {
            if !filt.matches(&name, &record) {
                return true;
            }
            f(Info { name, record })
        })
    }

    /// Usage: what the snapshot adds to the backing filesystem (`ovlink report`'s inodes and
    /// bytes added for its layer; a view of a parent owns nothing).
    pub fn usage(&self, key: &str) -> Result<Usage> {
        let rec = self.get(key)?;
        match &rec.layer {
            Some(id) => self
                .layer
                .driver()
                .usage(id)
                .map_err(Self::driver_err(key, id)),
            None => Ok(Usage::default()),
        }
    }

    /// Cleanup: reclaims what Remove left to the background (legacy), before returning: waits
    /// for the running reclaims, removes the layers no snapshot names (what a failed Remove or
    /// a crash left), then deletes the trash (`.tmp-remove-*`).
    pub fn cleanup(&self) -> Result<()> {
        let running: Vec<_> =
            std::mem::take(&mut *self.reclaims.lock().unwrap_or_else(|p| p.into_inner()));
        for h in running {
            let _ = h.join();
        }
        // Layers no snapshot names (what a failed Remove could leave), then the trash.
        let failed = {
            let _g = self.lock();
            self.remove_orphans(&mut Vec::new())?
        };
        let running: Vec<_> =
            std::mem::take(&mut *self.reclaims.lock().unwrap_or_else(|p| p.into_inner()));
        for h in running {
            let _ = h.join();
        }
        if let Layer::Overlay(d) = &self.layer {
            d.reclaim_pending().map_err(Self::driver_err("", ""))?;
        }
        match failed.into_iter().next() {
            Some((_, e)) => Err(e),
            None => Ok(()),
        }
    }

    /// The ovlink layer id of snapshot `key` (`None` for a view of a parent).
    pub fn layer_of(&self, key: &str) -> Result<Option<String>> {
        Ok(self.get(key)?.layer)
    }
}

/// The records of a stopped snapshotter's store at `root` for `layout`, sorted by key
/// (`ovlink snapshotter ls`). Fails when there is no store there, or when a running server
/// holds it (redb locks the file).
pub fn records_of(root: &Path, layout: Layout) -> Result<Vec<(String, Record)>> {
    let file = root
        .join("snapshotter")
        .join(layout.name())
        .join("metadata.redb");
    if !file.exists() {
        return Err(SnapError::Io {
            op: "open the snapshot store (there is none)",
            path: file,
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        });
    }
    Store::open(&file)?.all()
}

/// Records as `ovlink snapshotter ls` prints them: `KIND KEY PARENT LAYER` (`-` for none),
/// or JSON objects with those fields.
pub fn render_records(recs: &[(String, Record)], json: bool) -> serde_json::Result<String> {
    if json {
        let v: Vec<_> = recs
            .iter()
            .map(|(k, r)| {
                serde_json::json!({
                    "key": k, "kind": r.kind.name(), "parent": r.parent, "layer": r.layer,
                })
            })
            .collect();
        return serde_json::to_string_pretty(&v).map(|s| s + "\n");
    }
    Ok(recs
        .iter()
        .map(|(k, r)| {
            format!(
                "{} {} {} {}\n",
                r.kind.name(),
                k,
                crate::client::dash(&r.parent),
                r.layer.as_deref().unwrap_or("-")
            )
        })
        .collect())
}

/// The read-only form of a layer's mount: a bind gets `ro`; an overlay loses its upper and
/// work dirs and gets the upper as its top lowerdir (an overlay without upperdir is read-only).
fn read_only(mut m: Mount) -> Mount {
    if m.kind == "bind" {
        m.options.retain(|o| o != "rw" && o != "ro");
        m.options.insert(0, "ro".into());
        return m;
    }
    let upper = m
        .options
        .iter()
        .find_map(|o| o.strip_prefix("upperdir=").map(str::to_string));
    let mut out = Vec::new();
    for o in &m.options {
        if o.starts_with("upperdir=") || o.starts_with("workdir=") {
            continue;
        }
        match (o.strip_prefix("lowerdir="), &upper) {
            (Some(l), Some(u)) => out.push(format!("lowerdir={u}:{l}")),
            _ => out.push(o.clone()),
        }
    }
    m.options = out;
    m
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn read_only_mounts() {
        let b = read_only(Mount {
            kind: "bind".into(),
            source: "/h/a/root".into(),
            options: vec!["rw".into(), "rbind".into()],
        });
        assert_eq!(b.options, ["ro", "rbind"]);
        let o = read_only(Mount {
            kind: "overlay".into(),
            source: "overlay".into(),
            options: vec![
                "lowerdir=/h/l/B:/h/l/C".into(),
                "upperdir=/h/a/diff".into(),
                "workdir=/h/a/work".into(),
                "index=off".into(),
            ],
        });
        assert_eq!(o.options, ["lowerdir=/h/a/diff:/h/l/B:/h/l/C", "index=off"]);
    }
}
