//! The legacy overlay layout: hardlinked image layers and single-lowerdir container layers.
//!
//! ```text
//! image layer                  container layer
//! <home>/<id>/   0710          <home>/<id>/   0710
//!   root/        0755            lower-id     0600  "<image layer id>"
//!                                upper/             mode of <lower>/root
//!                                work/        0700
//!                                merged/      0700  only while mounted
//! ```
//!
//! Every state change goes through a locked temporary directory and one `rename`, so a crash
//! leaves the old state or the complete new one: `create` builds `.tmp-create-*` in the home
//! and renames it to `<id>` (no-replace); `apply_diff` builds `<id>/tmproot-*` (a hardlink copy
//! of the parent's `root/` with the tar applied) and renames it to `root/` (or exchanges it with
//! an existing `root/`), then drops the container-layer files; `remove` renames `<id>` to
//! `.tmp-remove-*` first. `init` reaps what a dead process left (see [`crate::lock`]) and
//! finishes an apply that crashed after its rename.
//!
//! This module never writes into a parent layer's tree and never follows a symlink below the home.

use crate::diffplan::DiffPlan;
use crate::error::{DriverError, Result};
use crate::home::{Home, Trash, MERGED, TRASH_PREFIX, WORK};
use crate::lock::{DirLock, TempDir};
use crate::mount;
use crate::rename::Claim;
use crate::{
    validate_id, Capabilities, CreateOpts, Driver, InitConfig, LayerInfo, LayerKind, Layout, Mount,
    Usage,
};
use ovlink_fs::at::{is_dir_at, open_dir, open_dir_at};
use ovlink_fs::error::Context;
use ovlink_fs::{copy_tree, CopyOptions, FsError};
use rustix::fd::{AsFd, OwnedFd};
use rustix::fs::{AtFlags, Mode, OFlags};
use rustix::io::Errno;
use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

/// Names of the entries of a layer directory.
const ROOT: &str = "root";
const LOWER_ID: &str = "lower-id";
const UPPER: &str = "upper";

/// The xattr on a layer directory that records the parent it was created on (no extra inode;
/// Docker's layout has no such record, so a layer made by Docker has none: `parent` is then
/// its `lower-id`, or unknown for an image layer).
pub const PARENT_XATTR: &str = "trusted.ovlink.parent";

/// Prefix of the tree an apply builds (`<id>/tmproot-*`).
const TMP_ROOT_PREFIX: &str = "tmproot";
/// Prefix of the staging directory of an apply through a mount (`<id>/tmpupper-*`).
const TMP_UPPER_PREFIX: &str = "tmpupper";

/// The legacy overlay driver, on a [`Home`]. See the module docs for the layout.
#[derive(Debug)]
pub struct OverlayDriver {
    h: Home,
    symlinks: ovlink_fs::Specials,
    background_reclaim: AtomicBool,
}

pub use crate::config::SyncMode;

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
    /// Initializes the driver: the home's checks and creation ([`Home::init`]: nothing is
    /// created when a check refuses), the `--symlinks` record, and crash recovery.
    pub fn init(cfg: &InitConfig) -> Result<Self> {
        let h = Home::init(cfg, Layout::Overlay, &[])?;
        let background = cfg.reclaim == crate::ReclaimMode::Background;
        let recorded = read_symlinks_record(h.fd(), h.path())?;
        let mut driver = OverlayDriver {
            h,
            symlinks: recorded.unwrap_or_default(),
            background_reclaim: AtomicBool::new(background),
        };
        if let Some(asked) = cfg.symlinks {
            driver.set_symlinks(asked, recorded)?;
        }
        // Recovery that cannot finish (a read-only remount, a leftover it cannot reap) must
        // not stop every command: it is reported (status, and the CLI prints it) and runs
        // again at the next init.
        let rec = driver.recover().map(|r| r.warnings);
        driver.h.warn_recovery(rec);
        Ok(driver)
    }

    /// Records `asked` as the home's `--symlinks` mode (`<home>/.symlinks`), unless the home
    /// holds layers built with another one.
    fn set_symlinks(
        &mut self,
        asked: ovlink_fs::Specials,
        recorded: Option<ovlink_fs::Specials>,
    ) -> Result<()> {
        if recorded == Some(asked) {
            return Ok(());
        }
        let current = recorded.unwrap_or_default();
        if current != asked && !self.h.layer_ids()?.is_empty() {
            return Err(DriverError::SymlinksModeConflict {
                home: self.h.path().to_path_buf(),
                recorded: current.name(),
                asked: asked.name(),
            });
        }
        let shown = self.h.path().join(SYMLINKS_RECORD);
        let tmp = format!("{SYMLINKS_RECORD}.tmp");
        let _ = rustix::fs::unlinkat(self.h.fd(), tmp.as_str(), AtFlags::empty());
        self.h.write_file(
            self.h.fd(),
            &tmp,
            format!("{}\n", asked.name()).as_bytes(),
            0o600,
            &shown,
        )?;
        rustix::fs::renameat(self.h.fd(), tmp.as_str(), self.h.fd(), SYMLINKS_RECORD)
            .ctx("rename", &shown)?;
        self.h.sync_dir(self.h.fd(), self.h.path())?;
        self.symlinks = asked;
        Ok(())
    }

    /// The home's `--symlinks` mode: whether image layers share or re-create symlinks and
    /// special files.
    pub fn symlinks(&self) -> ovlink_fs::Specials {
        self.symlinks
    }

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

    /// Whether `remove` deletes the renamed-away layer in a background thread (`true`) or
    /// before it returns (`false`, the default; [`crate::ReclaimMode::Background`] at init
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

    /// Which diff the [`Driver`] diff methods make (set at init).
    pub fn diff_mode(&self) -> crate::DiffMode {
        self.h.diff_mode()
    }

    /// The home this layout sits on.
    pub fn home_dir(&self) -> &Home {
        &self.h
    }

    /// Makes `<dir>/upper` with the mode of `<src>/upper` and a content copy of it (devices
    /// and whiteouts included; not hardlinks, as overlayfs writes upper files in place).
    fn copy_upper(
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

    fn read_lower_id(&self, fd: &OwnedFd, layer: &Path) -> Result<String> {
        let path = layer.join(LOWER_ID);
        let s = Home::read_small(fd, LOWER_ID, 256, &path)?
            .ok_or_else(|| FsError::io("open", &path, Errno::NOENT))?;
        validate_id(&s)?;
        Ok(s)
    }

    fn kind_of(&self, fd: &OwnedFd, layer: &Path) -> Result<LayerKind> {
        if is_dir_at(fd, ROOT) {
            Ok(LayerKind::Image)
        } else if ovlink_fs::at::exists_at(fd, LOWER_ID) {
            Ok(LayerKind::Container {
                lower_id: self.read_lower_id(fd, layer)?,
            })
        } else {
            Ok(LayerKind::Incomplete)
        }
    }

    /// Records `parent` on a layer directory being built ([`PARENT_XATTR`]).
    fn record_parent(&self, dir: &OwnedFd, parent: Option<&str>, shown: &Path) -> Result<()> {
        if let Some(p) = parent {
            ovlink_fs::xattr::set_fd(dir, OsStr::new(PARENT_XATTR), p.as_bytes(), shown)?;
        }
        Ok(())
    }

    /// The single-lowerdir overlay mount of container layer `id` on image layer `lower`.
    fn overlay_mount(&self, id: &str, lower: &str, mount_label: Option<&str>) -> Result<Mount> {
        let path = self.h.path().join(id);
        let data = mount::overlay_options(
            &self.h.path().join(lower).join(ROOT),
            &path.join(UPPER),
            &path.join(WORK),
            self.h.features(),
            mount_label,
        )?;
        Ok(Mount::overlay(&data))
    }

    fn create_layer(&self, id: &str, parent: Option<&str>, opts: &CreateOpts) -> Result<()> {
        let tmp = self.build_layer(id, parent, opts)?;
        self.h.publish(tmp, id)
    }

    /// Builds what `create` makes for `id` in a locked `.tmp-create-*` of the home (not yet
    /// visible under its id): see [`OverlayDriver::publish`].
    fn build_layer(&self, id: &str, parent: Option<&str>, opts: &CreateOpts) -> Result<TempDir> {
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

    /// Removes `upper/`, `work/`, `merged/` (unmounting it) and `lower-id` from a layer that
    /// now has its `root/`. `lower-id` goes last.
    fn drop_container_files(&self, fd: &OwnedFd, layer: &Path) -> Result<()> {
        let merged = layer.join(MERGED);
        if mount::is_mount_point(&merged) {
            mount::unmount(&merged)?;
        }
        for n in [MERGED, WORK, UPPER, LOWER_ID] {
            ovlink_fs::crash::point("apply.drop-container-files");
            ovlink_fs::remove_all_at(fd, OsStr::new(n), &layer.join(n))?;
        }
        Ok(())
    }

    /// The tree a new `root/` is built in: `<dir>/tmproot-*` holding a hardlink copy of
    /// `base` (the layer's own `root/` for a re-apply, else the parent's `root/`; nothing for
    /// a bottom layer) with the tar applied and synced per the sync mode. The caller renames
    /// it into place; dropped, it is removed.
    fn build_root(
        &self,
        id: &str,
        dir: &OwnedFd,
        dir_path: &Path,
        base: Option<&(OwnedFd, PathBuf)>,
        diff: &mut dyn Read,
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
        topts.sync_data = self.h.sync() == SyncMode::Files;
        let stats = ovlink_tar::apply_layer(tmp.fd().as_fd(), &tp, diff, &topts)
            .map_err(|source| DriverError::Apply {
                id: id.to_string(),
                source,
            })
            .map_err(|e| self.h.classify(e))?;
        if self.h.sync() == SyncMode::Syncfs || (self.h.sync() == SyncMode::Files && copied_data) {
            rustix::fs::syncfs(tmp.fd()).ctx("syncfs", &tp)?;
        }
        Ok((tmp, stats.size))
    }

    /// `create` + `apply_diff` as one step, all of it in a `.tmp-create-*` of the home that
    /// is renamed to `id` only when complete: a failure, a crash or a read-only remount
    /// leaves no layer `id` (nothing to clean up, nothing another process could have applied
    /// to), and a concurrent creator of `id` keeps its layer (this one gets `LayerExists`).
    fn create_applied(&self, id: &str, parent: Option<&str>, diff: &mut dyn Read) -> Result<u64> {
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
        let (root, size) = self.build_root(id, tmp.fd(), &tp, parent_root.as_ref(), diff)?;
        ovlink_fs::crash::point("apply.before-rename");
        root.rename_noreplace(self.h.renamer(), OsStr::new(ROOT), tmp.claim())
            .map_err(|(_t, e)| FsError::io("rename into place", tp.join(ROOT), e))?;
        self.h.sync_dir(tmp.fd(), &tp)?;
        self.h.publish(tmp, id)?;
        Ok(size)
    }

    /// Docker's fallback when the parent has no `root/` (a container layer): the tar goes
    /// through an overlay mount, so the layer stays a container layer. Staged, so that a
    /// refused or failed tar leaves `upper/` exactly as it was: `upper/` is copied (content,
    /// not hardlinks: overlayfs writes upper files in place) into `<id>/tmpupper-*`, mounted
    /// there with its own work dir, the tar applied, and the copy exchanged with `upper/`
    /// only after the whole tar was applied (and synced). The caller holds the layer's lock;
    /// a mounted layer is refused (its mount would keep writing to the old `upper/`).
    fn apply_through_mount(
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
        if mount::is_mount_point(&path.join(MERGED)) {
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
    fn apply_in_mount(
        &self,
        id: &str,
        dir: &OwnedFd,
        dir_path: &Path,
        lower: &str,
        diff: &mut dyn Read,
    ) -> Result<u64> {
        let merged = dir_path.join(MERGED);
        self.h.mkdir_exact(dir, MERGED, 0o700, &merged)?;
        let opts = mount::overlay_options(
            &self.h.path().join(lower).join(ROOT),
            &dir_path.join(UPPER),
            &dir_path.join(WORK),
            self.h.features(),
            None,
        )?;
        mount::mount_overlay(&merged, &opts)?;
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
        let unmounted = mount::unmount(&merged);
        let stats = res?;
        unmounted?;
        rustix::fs::unlinkat(dir, MERGED, AtFlags::REMOVEDIR).ctx("remove directory", &merged)?;
        Ok(stats.size)
    }
}

impl Driver for OverlayDriver {
    fn home(&self) -> &Path {
        self.h.path()
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            layout: Layout::Overlay,
            max_lowers: 1,
            full_image_trees: true,
            native_diff: self.h.diff_mode() != crate::DiffMode::Naive,
        }
    }

    fn create(&self, id: &str, parent: Option<&str>, opts: &CreateOpts) -> Result<()> {
        self.create_layer(id, parent, opts)
            .map_err(|e| self.h.classify(e))
    }

    fn create_read_write(&self, id: &str, parent: Option<&str>, opts: &CreateOpts) -> Result<()> {
        self.create_layer(id, parent, opts)
            .map_err(|e| self.h.classify(e))
    }

    fn remove(&self, id: &str) -> Result<()> {
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

    fn mount_spec(&self, id: &str, mount_label: Option<&str>) -> Result<Mount> {
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

    fn parent(&self, id: &str) -> Result<Option<String>> {
        let fd = self.h.open_layer(id)?;
        let path = self.h.path().join(id);
        if let Some(v) = ovlink_fs::xattr::get_fd(&fd, OsStr::new(PARENT_XATTR), &path)? {
            let p = String::from_utf8_lossy(&v).into_owned();
            validate_id(&p)?;
            return Ok(Some(p));
        }
        match self.kind_of(&fd, &path)? {
            LayerKind::Container { lower_id } => Ok(Some(lower_id)),
            _ => Ok(None),
        }
    }

    fn usage(&self, id: &str) -> Result<Usage> {
        let parent = self.parent(id)?;
        self.h.open_layer(id)?;
        let own = self.h.walk(id)?;
        let below = match parent {
            Some(p) => Some(self.h.walk(&p)?),
            None => None,
        };
        Ok(Home::added(&own, below.as_ref()))
    }

    fn get(&self, id: &str, mount_label: Option<&str>) -> Result<PathBuf> {
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
            mount::mount_overlay(merged, &opts)
        })
    }

    fn put(&self, id: &str) -> Result<()> {
        let fd = self.h.open_layer(id)?;
        if is_dir_at(&fd, ROOT) {
            return Ok(());
        }
        let (fd, _lock) = self.h.lock_layer(id)?;
        self.h.unmount_merged(id, &fd)
    }

    fn exists(&self, id: &str) -> bool {
        self.h.exists(id)
    }

    fn apply_diff(&self, id: &str, parent: Option<&str>, diff: &mut dyn Read) -> Result<u64> {
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
            let (tmp, size) = self.build_root(id, &fd, &path, base.as_ref(), diff)?;
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

    fn create_and_apply(&self, id: &str, parent: Option<&str>, diff: &mut dyn Read) -> Result<u64> {
        self.create_applied(id, parent, diff)
            .map_err(|e| self.h.classify(e))
    }

    fn status(&self) -> Vec<(String, String)> {
        let symlinks = match self.symlinks {
            ovlink_fs::Specials::Link => "link (symlinks and special files shared between layers)",
            ovlink_fs::Specials::Copy => "copy (re-created in every layer, as Docker)",
        };
        self.h.status(vec![
            crate::diff::status_line(self.h.diff_mode()),
            ("Symlinks".to_string(), symlinks.to_string()),
        ])
    }

    fn metadata(&self, id: &str) -> Result<BTreeMap<String, String>> {
        let fd = self.h.open_layer(id)?;
        let path = self.h.path().join(id);
        let mut m = BTreeMap::new();
        let s = |p: PathBuf| p.to_string_lossy().into_owned();
        match self.kind_of(&fd, &path)? {
            LayerKind::Image => {
                m.insert("RootDir".into(), s(path.join(ROOT)));
            }
            LayerKind::Container { lower_id } => {
                m.insert(
                    "LowerDir".into(),
                    s(self.h.path().join(lower_id).join(ROOT)),
                );
                m.insert("UpperDir".into(), s(path.join(UPPER)));
                m.insert("WorkDir".into(), s(path.join(WORK)));
                m.insert("MergedDir".into(), s(path.join(MERGED)));
            }
            LayerKind::Incomplete => {
                return Err(DriverError::WrongKind {
                    id: id.to_string(),
                    is: "an incomplete layer",
                    needs: "an image or container layer",
                })
            }
        }
        Ok(m)
    }

    fn cleanup(&self) -> Result<()> {
        self.h.cleanup()
    }

    fn layers(&self) -> Result<Vec<LayerInfo>> {
        self.h.layers(|fd, path| self.kind_of(fd, path))
    }

    fn layer_kind(&self, id: &str) -> Result<LayerKind> {
        self.h.layer_kind(id, |fd, path| self.kind_of(fd, path))
    }

    fn diff_plan(&self, id: &str, parent: Option<&str>) -> Result<DiffPlan<'_>> {
        crate::diff::plan(self, id, parent, self.h.diff_mode())
    }
}

/// The file of the home that records its `--symlinks` mode.
pub const SYMLINKS_RECORD: &str = ".symlinks";

/// The recorded `--symlinks` mode of the home, `None` without a record.
fn read_symlinks_record(home_fd: &OwnedFd, home: &Path) -> Result<Option<ovlink_fs::Specials>> {
    let shown = home.join(SYMLINKS_RECORD);
    let fd = match rustix::fs::openat(
        home_fd,
        SYMLINKS_RECORD,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => return Ok(None),
        Err(e) => return Err(FsError::io("open", &shown, e).into()),
    };
    let mut text = String::new();
    std::io::Read::read_to_string(&mut std::fs::File::from(fd), &mut text).ctx("read", &shown)?;
    match ovlink_fs::Specials::parse(text.trim()) {
        Some(m) => Ok(Some(m)),
        None => Err(FsError::io("parse (expected `link` or `copy`)", &shown, Errno::INVAL).into()),
    }
}
