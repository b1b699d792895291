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

use crate::checks::{self, OverlayFeatures};
use crate::error::{DriverError, Result};
use crate::lock::{reap_temp_dirs, reap_temp_dirs_except, DirLock, TempDir};
use crate::mount;
use crate::refs::MountRefs;
use crate::rename::{Claim, Renamer};
use crate::{
    validate_id, CreateOpts, Driver, IdMap, InitConfig, LayerInfo, LayerKind, Mount, Usage,
};
use ovlink_fs::at::{is_dir_at, open_dir, open_dir_at};
use ovlink_fs::error::Context;
use ovlink_fs::{copy_tree, CopyOptions, FsError};
use rustix::fd::{AsFd, OwnedFd};
use rustix::fs::{AtFlags, Mode, OFlags};
use rustix::io::Errno;
use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

/// Names of the entries of a layer directory.
const ROOT: &str = "root";
const LOWER_ID: &str = "lower-id";
const UPPER: &str = "upper";
const WORK: &str = "work";
const MERGED: &str = "merged";

/// The xattr on a layer directory that records the parent it was created on (no extra inode;
/// Docker's layout has no such record, so a layer made by Docker has none: `parent` is then
/// its `lower-id`, or unknown for an image layer).
pub const PARENT_XATTR: &str = "trusted.ovlink.parent";

/// Prefixes of ovlink's temporary directories.
const TMP_HOME_PREFIX: &str = ".tmp-";
const TMP_ROOT_PREFIX: &str = "tmproot";
/// Prefix of the staging directory of an apply through a mount (`<id>/tmpupper-*`).
const TMP_UPPER_PREFIX: &str = "tmpupper";
/// How a warning about an unfinished init recovery starts (the CLI prints these).
pub const RECOVERY_WARNING: &str = "init recovery did not finish";
/// Prefix of removed layers waiting to be reclaimed.
pub const TRASH_PREFIX: &str = ".tmp-remove-";

/// The legacy overlay driver. See the module docs for the layout.
#[derive(Debug)]
pub struct OverlayDriver {
    home: PathBuf,
    home_fd: OwnedFd,
    backing_fs: String,
    d_type: bool,
    features: OverlayFeatures,
    root_ids: Option<(u32, u32)>,
    uid_maps: Vec<IdMap>,
    gid_maps: Vec<IdMap>,
    refs: MountRefs,
    renamer: Renamer,
    warnings: Vec<String>,
    durable: bool,
    sync: SyncMode,
    symlinks: ovlink_fs::Specials,
    background_reclaim: AtomicBool,
    diff_mode: crate::DiffMode,
}

/// A removed layer, renamed to `<home>/.tmp-remove-*` and locked: it is gone for every caller,
/// its inodes are not freed yet. [`Trash::reclaim`] deletes it; dropping it unreclaimed leaves
/// it to the next [`OverlayDriver::reclaim_pending`] (or init).
#[derive(Debug)]
pub struct Trash {
    home_fd: OwnedFd,
    home: PathBuf,
    name: String,
    lock: DirLock,
}

impl Trash {
    /// Its name in the home (`.tmp-remove-<random>`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The fd whose `flock` marks it as being reclaimed (to hand to another process).
    pub fn lock_fd(&self) -> &OwnedFd {
        self.lock.fd()
    }

    /// Deletes it (then releases the lock).
    pub fn reclaim(self) -> Result<()> {
        let path = self.home.join(&self.name);
        ovlink_fs::remove_all_at(&self.home_fd, OsStr::new(&self.name), &path)?;
        drop(self.lock);
        Ok(())
    }
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
    /// Initializes the driver: refuses options, checks the kernel, overlay support, the
    /// backing filesystem and d_type, creates the home (0710), and recovers from crashes.
    pub fn init(cfg: &InitConfig) -> Result<Self> {
        if let Some(o) = cfg.options.first() {
            return Err(DriverError::UnknownOption { option: o.clone() });
        }
        checks::check_overlay_available()?;
        let home = cfg.home.clone();
        let root_ids = remapped_root(&cfg.uid_maps, &cfg.gid_maps);
        let fresh = match std::fs::read_dir(&home) {
            Ok(mut it) => it.next().is_none(),
            Err(_) => true,
        };
        // Check where the home is (or will be) before creating anything, as Docker does:
        // a refused init leaves no directory behind.
        let probe = home
            .ancestors()
            .find(|p| p.is_dir())
            .unwrap_or(Path::new("/"))
            .to_path_buf();
        let backing_fs = checks::check_backing_fs(&probe).map_err(|e| relabel(e, &probe, &home))?;
        let d_type = checks::supports_dtype(&probe)?;
        let mut warnings = checks::kernel_warnings(checks::Layout::Overlay);
        if !d_type {
            let fix = "reformat the backing filesystem with d_type support \
                       (xfs: mkfs.xfs -n ftype=1; ext4: mkfs.ext4 -O filetype)";
            if fresh {
                return Err(DriverError::HostCheck {
                    check: "d_type",
                    detail: format!(
                        "{} is on {backing_fs} without d_type support; {fix}",
                        home.display()
                    ),
                });
            }
            warnings.push(format!(
                "the backing filesystem has no d_type support; {fix}"
            ));
        }
        if let Some(parent) = home.parent() {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o711)
                .create(parent)
                .ctx("create directory", parent)?;
        }
        match rustix::fs::mkdir(&home, Mode::from_raw_mode(0o710)) {
            Ok(()) => {
                rustix::fs::chmod(&home, Mode::from_raw_mode(0o710))
                    .ctx("change mode of", &home)?;
            }
            Err(Errno::EXIST) => {}
            Err(e) => return Err(FsError::io("create directory", &home, e).into()),
        }
        let home_fd = open_dir(&home)?;
        if let Some((_, g)) = root_ids {
            // Docker's owner of the home and of layer dirs: this process's uid, the remapped
            // root's gid (0710: the remapped root may traverse, not list).
            rustix::fs::fchown(&home_fd, Some(rustix::process::getuid()), Some(gid(g)))
                .ctx("change owner of", &home)?;
        }
        let sync = SyncMode::resolve(cfg.sync, &backing_fs);
        let background = cfg.reclaim == crate::ReclaimMode::Background;
        let recorded = read_symlinks_record(&home_fd, &home)?;
        let mut driver = OverlayDriver {
            home,
            home_fd,
            sync,
            symlinks: recorded.unwrap_or_default(),
            backing_fs,
            d_type,
            features: OverlayFeatures::read(),
            root_ids,
            uid_maps: cfg.uid_maps.clone(),
            gid_maps: cfg.gid_maps.clone(),
            refs: MountRefs::new(),
            renamer: Renamer::new(),
            warnings,
            durable: sync != SyncMode::None,
            background_reclaim: AtomicBool::new(background),
            diff_mode: cfg.diff,
        };
        if fresh {
            driver.check_mount()?;
        }
        if let Some(asked) = cfg.symlinks {
            driver.set_symlinks(asked, recorded)?;
        }
        // Recovery that cannot finish (a read-only remount, a leftover it cannot reap) must
        // not stop every command: it is reported (status, and the CLI prints it) and runs
        // again at the next init.
        match driver.recover() {
            // What it could not clean up is reported the same way, entry by entry.
            Ok(rec) => driver.warnings.extend(
                rec.warnings
                    .into_iter()
                    .map(|w| format!("{RECOVERY_WARNING}: {w}")),
            ),
            Err(e) => driver.warnings.push(format!(
                "{RECOVERY_WARNING} ({}); it runs again at the next start",
                error_chain(&e)
            )),
        }
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
        if current != asked && !self.layer_ids()?.is_empty() {
            return Err(DriverError::SymlinksModeConflict {
                home: self.home.clone(),
                recorded: current.name(),
                asked: asked.name(),
            });
        }
        let shown = self.home.join(SYMLINKS_RECORD);
        let tmp = format!("{SYMLINKS_RECORD}.tmp");
        let _ = rustix::fs::unlinkat(&self.home_fd, tmp.as_str(), AtFlags::empty());
        self.write_file(
            &self.home_fd,
            &tmp,
            format!("{}\n", asked.name()).as_bytes(),
            0o600,
            &shown,
        )?;
        rustix::fs::renameat(&self.home_fd, tmp.as_str(), &self.home_fd, SYMLINKS_RECORD)
            .ctx("rename", &shown)?;
        self.sync_dir(&self.home_fd, &self.home)?;
        self.symlinks = asked;
        Ok(())
    }

    /// The home's `--symlinks` mode: whether image layers share or re-create symlinks and
    /// special files.
    pub fn symlinks(&self) -> ovlink_fs::Specials {
        self.symlinks
    }

    /// Really mounts a tiny overlay with one lowerdir inside the home (the check Docker
    /// makes), then removes it.
    pub fn check_mount(&self) -> Result<()> {
        checks::test_mount(
            &self.home_fd,
            &self.home,
            1,
            &self.features,
            &self.backing_fs,
        )
    }

    /// Removes temporary directories of dead processes and finishes applies that crashed after
    /// their rename. Runs at init; safe while other processes work on the home.
    pub fn recover(&self) -> Result<Recovery> {
        let mut rec = Recovery::default();
        // In background mode, removed layers left by a dead process are reclaimed by a thread.
        let background = self.background_reclaim();
        let except: &[&str] = if background { &[TRASH_PREFIX] } else { &[] };
        let leftover = |dir: &Path, e: DriverError| {
            format!(
                "cannot clean up leftovers in {} ({}); the next init tries again",
                dir.display(),
                error_chain(&e)
            )
        };
        match reap_temp_dirs_except(&self.home_fd, &self.home, &[TMP_HOME_PREFIX], except) {
            Ok(names) => rec
                .removed_temp
                .extend(names.into_iter().map(|n| self.home.join(n))),
            Err(e) => rec.warnings.push(leftover(&self.home, e)),
        }
        if background {
            self.spawn_reclaim_pending()?;
        }
        for id in self.layer_ids()? {
            let path = self.home.join(&id);
            let Ok(fd) = open_dir_at(&self.home_fd, &id, &path) else {
                continue;
            };
            // First: an exchange a crash interrupted (its trees are not temporary names).
            crate::rename::recover_exchanges(
                &self.home_fd,
                &id,
                (&fd, &path),
                &[ROOT, UPPER],
                self.durable,
            )?;
            match reap_temp_dirs(&fd, &path, &[TMP_ROOT_PREFIX, TMP_UPPER_PREFIX]) {
                Ok(names) => rec
                    .removed_temp
                    .extend(names.into_iter().map(|n| path.join(n))),
                Err(e) => rec.warnings.push(leftover(&path, e)),
            }
            if is_dir_at(&fd, ROOT)
                && [LOWER_ID, UPPER, WORK, MERGED]
                    .iter()
                    .any(|n| ovlink_fs::at::exists_at(&fd, n))
            {
                if let Some(_lock) = DirLock::try_lock(fd, &path)? {
                    let fd = open_dir_at(&self.home_fd, &id, &path)?;
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
        let (fd, lock) = self.lock_layer(id)?;
        let path = self.home.join(id);
        for m in mount::mounts_under(&path) {
            mount::unmount(&m)?;
        }
        let name = format!("{TRASH_PREFIX}{}", crate::lock::random_suffix());
        rustix::fs::renameat(&self.home_fd, id, &self.home_fd, name.as_str())
            .ctx("move aside for removal", &path)?;
        ovlink_fs::crash::point("remove.after-rename");
        self.refs.forget(id);
        self.sync_dir(&self.home_fd, &self.home)?;
        drop(fd);
        Ok(Trash {
            home_fd: rustix::io::dup(&self.home_fd).ctx("dup", &self.home)?,
            home: self.home.clone(),
            name,
            lock,
        })
    }

    /// Deletes every removed layer that nobody is reclaiming now (`.tmp-remove-*` whose lock
    /// is free), before returning; the names deleted.
    pub fn reclaim_pending(&self) -> Result<Vec<String>> {
        Ok(reap_temp_dirs(&self.home_fd, &self.home, &[TRASH_PREFIX])?
            .into_iter()
            .map(|n| n.to_string_lossy().into_owned())
            .collect())
    }

    /// [`OverlayDriver::reclaim_pending`] in a background thread.
    pub fn spawn_reclaim_pending(&self) -> Result<()> {
        let home_fd = rustix::io::dup(&self.home_fd).ctx("dup", &self.home)?;
        let home = self.home.clone();
        let _ = std::thread::Builder::new()
            .name("ovlink-reclaim".into())
            .spawn(move || reap_temp_dirs(&home_fd, &home, &[TRASH_PREFIX]));
        Ok(())
    }

    /// Reclaims the removed layer `name` whose lock another process handed over: this process
    /// inherited an fd of it (the `flock` is held while that fd is open), reachable as
    /// `held` (`/proc/self/fd/N`). Checks that `held` is that directory, then deletes it.
    pub fn reclaim_handed_over(&self, name: &str, held: &Path) -> Result<()> {
        let path = self.home.join(name);
        if !name.starts_with(TRASH_PREFIX) || name.contains('/') {
            return Err(FsError::io("reclaim", &path, Errno::INVAL).into());
        }
        let mine = rustix::fs::stat(held).ctx("stat", held)?;
        let there = rustix::fs::statat(&self.home_fd, name, AtFlags::SYMLINK_NOFOLLOW)
            .ctx("stat", &path)?;
        if (mine.st_dev, mine.st_ino) != (there.st_dev, there.st_ino) {
            return Err(FsError::io(
                "reclaim (not the handed-over directory)",
                &path,
                Errno::INVAL,
            )
            .into());
        }
        ovlink_fs::remove_all_at(&self.home_fd, OsStr::new(name), &path)?;
        Ok(())
    }

    /// How `apply_diff` makes layers durable.
    pub fn sync_mode(&self) -> SyncMode {
        self.sync
    }

    /// Which diff the [`Driver`] diff methods make (set at init).
    pub fn diff_mode(&self) -> crate::DiffMode {
        self.diff_mode
    }

    /// The user-namespace id maps given at init (uid maps, gid maps).
    pub fn id_maps(&self) -> (&[IdMap], &[IdMap]) {
        (&self.uid_maps, &self.gid_maps)
    }

    /// Warnings found at init (for `status`).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The overlay features this kernel turns on by default (and that mounts turn off).
    pub fn features(&self) -> &OverlayFeatures {
        &self.features
    }

    /// The path of layer `id`'s directory (after validating the id).
    pub fn layer_path(&self, id: &str) -> Result<PathBuf> {
        validate_id(id)?;
        Ok(self.home.join(id))
    }

    fn layer_ids(&self) -> Result<Vec<String>> {
        let mut ids = Vec::new();
        let it = rustix::fs::Dir::read_from(&self.home_fd).ctx("read directory", &self.home)?;
        for ent in it {
            let ent = ent.ctx("read directory", &self.home)?;
            let n = ent.file_name().to_bytes();
            if n.starts_with(b".") {
                continue;
            }
            if let Ok(s) = std::str::from_utf8(n) {
                if validate_id(s).is_ok() {
                    ids.push(s.to_string());
                }
            }
        }
        ids.sort();
        Ok(ids)
    }

    /// Opens layer `id`'s directory, or `LayerNotFound`.
    fn open_layer(&self, id: &str) -> Result<OwnedFd> {
        validate_id(id)?;
        match open_dir_at(&self.home_fd, id, &self.home.join(id)) {
            Ok(fd) => Ok(fd),
            Err(e) if e.raw_os_error() == Some(Errno::NOENT.raw_os_error()) => {
                Err(DriverError::LayerNotFound { id: id.to_string() })
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Opens `parent`, the parent named for layer `id`: `ParentNotFound` when it is missing.
    fn open_parent(&self, id: &str, parent: &str) -> Result<OwnedFd> {
        self.open_layer(parent).map_err(|e| match e {
            DriverError::LayerNotFound { .. } => DriverError::ParentNotFound {
                id: id.to_string(),
                parent: parent.to_string(),
            },
            e => e,
        })
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
        let to = self.mkdir_exact(dir, UPPER, st.st_mode & 0o7777, &dir_path.join(UPPER))?;
        let mut copts = CopyOptions::content();
        copts.skip_devices = false;
        copy_tree(
            from.as_fd(),
            to.as_fd(),
            &src_path.join(UPPER),
            &dir_path.join(UPPER),
            copts,
        )
        .map_err(|e| self.classify(e.into()))?;
        Ok(to)
    }

    /// Locks layer `id` and checks it is still in place (see [`crate::lock::lock_layer_dir`]).
    fn lock_layer(&self, id: &str) -> Result<(OwnedFd, DirLock)> {
        let fd = self.open_layer(id)?;
        crate::lock::lock_layer_dir(&self.home_fd, &self.home, id, fd)
    }

    fn read_lower_id(&self, fd: &OwnedFd, layer: &Path) -> Result<String> {
        let path = layer.join(LOWER_ID);
        let f = rustix::fs::openat(
            fd,
            LOWER_ID,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .ctx("open", &path)?;
        let mut s = String::new();
        std::fs::File::from(f)
            .take(256)
            .read_to_string(&mut s)
            .ctx("read", &path)?;
        let s = s.trim_end_matches('\n').to_string();
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

    fn chown_root<Fd: AsFd>(&self, fd: Fd, shown: &Path) -> Result<()> {
        if let Some((u, g)) = self.root_ids {
            rustix::fs::fchown(fd, Some(uid(u)), Some(gid(g))).ctx("change owner of", shown)?;
        }
        Ok(())
    }

    /// Makes directory `name` in `dir` with exactly `mode`, owned by the (remapped) root.
    fn mkdir_exact(&self, dir: &OwnedFd, name: &str, mode: u32, shown: &Path) -> Result<OwnedFd> {
        rustix::fs::mkdirat(dir, name, Mode::from_raw_mode(0o700))
            .ctx("create directory", shown)?;
        let fd = open_dir_at(dir, name, shown)?;
        self.chown_root(&fd, shown)?;
        rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode)).ctx("change mode of", shown)?;
        Ok(fd)
    }

    fn write_file(
        &self,
        dir: &OwnedFd,
        name: &str,
        content: &[u8],
        mode: u32,
        shown: &Path,
    ) -> Result<()> {
        let fd = rustix::fs::openat(
            dir,
            name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(mode),
        )
        .ctx("create", shown)?;
        rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode)).ctx("change mode of", shown)?;
        let mut f = std::fs::File::from(fd);
        f.write_all(content).ctx("write", shown)?;
        if self.durable {
            // Its data must be on disk before the rename makes the layer visible.
            f.sync_all().ctx("fsync", shown)?;
        }
        Ok(())
    }

    fn sync_dir(&self, fd: &OwnedFd, shown: &Path) -> Result<()> {
        if self.durable {
            rustix::fs::fsync(fd).ctx("fsync", shown)?;
        }
        Ok(())
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
        let path = self.home.join(id);
        let data = mount::overlay_options(
            &self.home.join(lower).join(ROOT),
            &path.join(UPPER),
            &path.join(WORK),
            &self.features,
            mount_label,
        )?;
        Ok(Mount {
            kind: "overlay".into(),
            source: PathBuf::from("overlay"),
            options: mount::split_options(&data),
        })
    }

    fn create_layer(&self, id: &str, parent: Option<&str>, opts: &CreateOpts) -> Result<()> {
        let tmp = self.build_layer(id, parent, opts)?;
        self.publish(tmp, id)
    }

    /// Builds what `create` makes for `id` in a locked `.tmp-create-*` of the home (not yet
    /// visible under its id): see [`OverlayDriver::publish`].
    fn build_layer(&self, id: &str, parent: Option<&str>, opts: &CreateOpts) -> Result<TempDir> {
        validate_id(id)?;
        if let Some(p) = parent {
            validate_id(p)?;
        }
        if let Some((k, v)) = opts.storage_opt.iter().next() {
            return Err(DriverError::StorageOptNotSupported {
                option: format!("{k}={v}"),
            });
        }
        if let Some(label) = opts.mount_label.as_deref().filter(|l| !l.is_empty()) {
            // Refused at create already, not only at the first mount.
            mount::label_option(label)?;
        }
        if ovlink_fs::at::exists_at(&self.home_fd, id) {
            return Err(DriverError::LayerExists { id: id.to_string() });
        }
        let tmp = TempDir::new(&self.home_fd, &self.home, ".tmp-create-", 0o710)?;
        let tp = tmp.path();
        if let Some((_, g)) = self.root_ids {
            rustix::fs::fchown(tmp.fd(), Some(rustix::process::getuid()), Some(gid(g)))
                .ctx("change owner of", &tp)?;
        }
        let dir = tmp.fd();
        self.record_parent(dir, parent, &tp)?;
        match parent {
            None => {
                self.mkdir_exact(dir, ROOT, 0o755, &tp.join(ROOT))?;
            }
            Some(p) => {
                let pfd = self.open_parent(id, p)?;
                let ppath = self.home.join(p);
                match self.kind_of(&pfd, &ppath)? {
                    LayerKind::Image => {
                        let st = rustix::fs::statat(&pfd, ROOT, AtFlags::SYMLINK_NOFOLLOW)
                            .ctx("stat", ppath.join(ROOT))?;
                        self.mkdir_exact(dir, UPPER, st.st_mode & 0o7777, &tp.join(UPPER))?;
                        self.mkdir_exact(dir, WORK, 0o700, &tp.join(WORK))?;
                        self.write_file(dir, LOWER_ID, p.as_bytes(), 0o600, &tp.join(LOWER_ID))?;
                    }
                    LayerKind::Container { lower_id } => {
                        // Docker's "-init" pattern: same lower, a full copy of the parent's upper.
                        let up = self.copy_upper(&pfd, &ppath, dir, &tp)?;
                        if self.durable {
                            // The copied files' data, before the rename publishes them.
                            rustix::fs::syncfs(&up).ctx("syncfs", tp.join(UPPER))?;
                        }
                        self.mkdir_exact(dir, WORK, 0o700, &tp.join(WORK))?;
                        self.write_file(
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
        self.sync_dir(tmp.fd(), &tp)?;
        Ok(tmp)
    }

    /// Renames a layer built aside to `id` (no-replace: `LayerExists` if another process got
    /// there first, and then the one built here is removed, never theirs).
    fn publish(&self, tmp: TempDir, id: &str) -> Result<()> {
        ovlink_fs::crash::point("create.before-rename");
        match tmp.rename_noreplace(&self.renamer, OsStr::new(id), Claim::LockDir) {
            Ok(()) => {}
            Err((_tmp, Errno::EXIST)) | Err((_tmp, Errno::NOTEMPTY)) => {
                return Err(DriverError::LayerExists { id: id.to_string() })
            }
            Err((_tmp, e)) => {
                return Err(FsError::io("rename into place", self.home.join(id), e).into())
            }
        }
        ovlink_fs::crash::point("create.after-rename");
        self.sync_dir(&self.home_fd, &self.home)?;
        Ok(())
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

    /// Turns ENOSPC into [`DriverError::NoSpace`] saying which resource ran out.
    fn classify(&self, e: DriverError) -> DriverError {
        if e.raw_os_error() != Some(Errno::NOSPC.raw_os_error()) {
            return e;
        }
        let Ok(st) = rustix::fs::statvfs(&self.home) else {
            return e;
        };
        let (what, used, total, free, hint) = if st.f_favail == 0 || st.f_ffree < 16 {
            (
                "inodes",
                st.f_files - st.f_ffree,
                st.f_files,
                st.f_favail,
                "; every image layer re-creates its parent's directories: remove unused layers \
                 ('ovlink layer rm'), reformat with more inodes (mkfs.ext4 -i), or use the overlay2 layout",
            )
        } else {
            let bs = st.f_frsize;
            (
                "bytes",
                (st.f_blocks - st.f_bfree) * bs,
                st.f_blocks * bs,
                st.f_bavail * bs,
                "; free space on the backing filesystem or move the root (--root)",
            )
        };
        DriverError::NoSpace {
            fs: self.backing_fs.clone(),
            path: self.home.clone(),
            what,
            used,
            total,
            free,
            hint,
            source: Box::new(e),
        }
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
                .map_err(|e| self.classify(e.into()))?;
                copied_data = st.copied > 0;
            }
            None => self.chown_root(tmp.fd(), &tp)?,
        }
        ovlink_fs::crash::point("apply.after-copy");
        let mut topts = self.tar_options();
        topts.sync_data = self.sync == SyncMode::Files;
        let stats = ovlink_tar::apply_layer(tmp.fd().as_fd(), &tp, diff, &topts)
            .map_err(|source| DriverError::Apply {
                id: id.to_string(),
                source,
            })
            .map_err(|e| self.classify(e))?;
        if self.sync == SyncMode::Syncfs || (self.sync == SyncMode::Files && copied_data) {
            rustix::fs::syncfs(tmp.fd()).ctx("syncfs", &tp)?;
        }
        Ok((tmp, stats.size))
    }

    /// `create` + `apply_diff` as one step, all of it in a `.tmp-create-*` of the home that
    /// is renamed to `id` only when complete: a failure, a crash or a read-only remount
    /// leaves no layer `id` (nothing to clean up, nothing another process could have applied
    /// to), and a concurrent creator of `id` keeps its layer (this one gets `LayerExists`).
    fn create_and_apply_layer(
        &self,
        id: &str,
        parent: Option<&str>,
        diff: &mut dyn Read,
    ) -> Result<u64> {
        validate_id(id)?;
        if let Some(p) = parent {
            validate_id(p)?;
        }
        if ovlink_fs::at::exists_at(&self.home_fd, id) {
            return Err(DriverError::LayerExists { id: id.to_string() });
        }
        let parent_root = match parent {
            None => None,
            Some(p) => {
                let pfd = self.open_parent(id, p)?;
                let ppath = self.home.join(p);
                if !is_dir_at(&pfd, ROOT) {
                    // A container parent: a container layer with a copy of its upper/, the
                    // tar applied through an overlay mount of the copy.
                    let tmp = self.build_layer(id, parent, &CreateOpts::default())?;
                    let lower = self.read_lower_id(tmp.fd(), &tmp.path())?;
                    let size = self.apply_in_mount(id, tmp.fd(), &tmp.path(), &lower, diff)?;
                    if self.durable {
                        // What the tar wrote through the mount, before the rename publishes it.
                        rustix::fs::syncfs(tmp.fd()).ctx("syncfs", tmp.path())?;
                    }
                    self.sync_dir(tmp.fd(), &tmp.path())?;
                    self.publish(tmp, id)?;
                    return Ok(size);
                }
                Some((
                    open_dir_at(&pfd, ROOT, &ppath.join(ROOT))?,
                    ppath.join(ROOT),
                ))
            }
        };
        let tmp = TempDir::new(&self.home_fd, &self.home, ".tmp-create-", 0o710)?;
        let tp = tmp.path();
        self.chown_root(tmp.fd(), &tp)?;
        self.record_parent(tmp.fd(), parent, &tp)?;
        let (root, size) = self.build_root(id, tmp.fd(), &tp, parent_root.as_ref(), diff)?;
        ovlink_fs::crash::point("apply.before-rename");
        root.rename_noreplace(&self.renamer, OsStr::new(ROOT), tmp.claim())
            .map_err(|(_t, e)| FsError::io("rename into place", tp.join(ROOT), e))?;
        self.sync_dir(tmp.fd(), &tp)?;
        self.publish(tmp, id)?;
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
        (fd, lock): (&OwnedFd, &DirLock),
        path: &Path,
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
        self.mkdir_exact(stage.fd(), WORK, 0o700, &sp.join(WORK))?;
        let size = self.apply_in_mount(id, stage.fd(), &sp, &lower_id, diff)?;
        if self.durable {
            rustix::fs::syncfs(&staged).ctx("syncfs", sp.join(UPPER))?;
        }
        ovlink_fs::crash::point("apply.mount-before-exchange");
        self.renamer.exchange(
            (stage.fd(), OsStr::new(UPPER)),
            (fd, path, lock),
            UPPER,
            self.durable,
        )?;
        self.sync_dir(fd, path)?;
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
        self.mkdir_exact(dir, MERGED, 0o700, &merged)?;
        let opts = mount::overlay_options(
            &self.home.join(lower).join(ROOT),
            &dir_path.join(UPPER),
            &dir_path.join(WORK),
            &self.features,
            None,
        )?;
        mount::mount_overlay(&merged, &opts)?;
        let res = open_dir(&merged)
            .map_err(DriverError::from)
            .and_then(|mfd| {
                ovlink_tar::apply_layer(mfd.as_fd(), &merged, diff, &self.tar_options()).map_err(
                    |source| DriverError::Apply {
                        id: id.to_string(),
                        source,
                    },
                )
            });
        // Classified while the mount still holds what the tar wrote; the tar's error wins
        // over an unmount error (reaping the temporary tree unmounts it anyway).
        let res = res.map_err(|e| self.classify(e));
        let unmounted = mount::unmount(&merged);
        let stats = res?;
        unmounted?;
        rustix::fs::unlinkat(dir, MERGED, AtFlags::REMOVEDIR).ctx("remove directory", &merged)?;
        Ok(stats.size)
    }

    fn tar_options(&self) -> ovlink_tar::ApplyOptions {
        let ranges = |maps: &[IdMap]| {
            maps.iter()
                .map(|m| ovlink_tar::IdRange {
                    container_id: m.container_id,
                    host_id: m.host_id,
                    size: m.size,
                })
                .collect()
        };
        ovlink_tar::ApplyOptions {
            // Docker keeps device nodes under --userns-remap (it skips them only when dockerd
            // itself runs in a user namespace, where mknod fails).
            skip_devices: false,
            uid_maps: ranges(&self.uid_maps),
            gid_maps: ranges(&self.gid_maps),
            sync_data: false,
            whiteouts: ovlink_tar::WhiteoutFormat::Delete,
        }
    }
}

impl Driver for OverlayDriver {
    fn name(&self) -> &'static str {
        "overlay"
    }

    fn home(&self) -> &Path {
        &self.home
    }

    fn create(&self, id: &str, parent: Option<&str>, opts: &CreateOpts) -> Result<()> {
        self.create_layer(id, parent, opts)
            .map_err(|e| self.classify(e))
    }

    fn create_read_write(&self, id: &str, parent: Option<&str>, opts: &CreateOpts) -> Result<()> {
        self.create_layer(id, parent, opts)
            .map_err(|e| self.classify(e))
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
        let fd = self.open_layer(id)?;
        let path = self.home.join(id);
        match self.kind_of(&fd, &path)? {
            LayerKind::Image => Ok(Mount {
                kind: "bind".into(),
                source: path.join(ROOT),
                options: vec!["rw".into(), "rbind".into()],
            }),
            LayerKind::Container { lower_id } => self.overlay_mount(id, &lower_id, mount_label),
            LayerKind::Incomplete => Err(DriverError::WrongKind {
                id: id.to_string(),
                is: "an incomplete layer",
                needs: "an image or container layer",
            }),
        }
    }

    fn parent(&self, id: &str) -> Result<Option<String>> {
        let fd = self.open_layer(id)?;
        let path = self.home.join(id);
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
        let dev = rustix::fs::fstat(&self.home_fd)
            .ctx("stat", &self.home)?
            .st_dev;
        let walk = |l: &str| {
            ovlink_fs::walk::walk(
                self.home_fd.as_fd(),
                OsStr::new(l),
                &self.home.join(l),
                dev,
                false,
            )
        };
        self.open_layer(id)?;
        let own = walk(id)?;
        let below = match parent {
            Some(p) => Some(walk(&p)?),
            None => None,
        };
        let (inodes, bytes) = ovlink_fs::walk::added(&own, below.as_ref());
        Ok(Usage { inodes, bytes })
    }

    fn get(&self, id: &str, mount_label: Option<&str>) -> Result<PathBuf> {
        let fd = self.open_layer(id)?;
        let path = self.home.join(id);
        if is_dir_at(&fd, ROOT) {
            return Ok(path.join(ROOT));
        }
        let (fd, _lock) = self.lock_layer(id)?;
        let lower = match self.kind_of(&fd, &path)? {
            LayerKind::Container { lower_id } => lower_id,
            LayerKind::Image => return Ok(path.join(ROOT)),
            LayerKind::Incomplete => {
                return Err(DriverError::WrongKind {
                    id: id.to_string(),
                    is: "an incomplete layer",
                    needs: "an image or container layer",
                })
            }
        };
        let merged = path.join(MERGED);
        if !self.refs.acquire(id, &merged) {
            return Ok(merged);
        }
        let undo = |e: DriverError| {
            self.refs.forget(id);
            let _ = rustix::fs::unlinkat(&fd, MERGED, AtFlags::REMOVEDIR);
            e
        };
        match rustix::fs::mkdirat(&fd, MERGED, Mode::from_raw_mode(0o700)) {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(e) => return Err(undo(FsError::io("create directory", &merged, e).into())),
        }
        if let Err(e) = open_dir_at(&fd, MERGED, &merged)
            .map_err(DriverError::from)
            .and_then(|m| {
                rustix::fs::fchmod(&m, Mode::from_raw_mode(0o700))
                    .ctx("change mode of", &merged)?;
                self.chown_root(&m, &merged)
            })
        {
            return Err(undo(e));
        }
        let opts = self
            .overlay_mount(id, &lower, mount_label)
            .map_err(&undo)?
            .data();
        if let Err(e) = mount::mount_overlay(&merged, &opts) {
            return Err(undo(e));
        }
        if let Some((u, g)) = self.root_ids {
            let ww = path.join(WORK).join(WORK);
            let _ = rustix::fs::chown(&ww, Some(uid(u)), Some(gid(g)));
        }
        Ok(merged)
    }

    fn put(&self, id: &str) -> Result<()> {
        let fd = self.open_layer(id)?;
        if is_dir_at(&fd, ROOT) {
            return Ok(());
        }
        let (_fd, _lock) = self.lock_layer(id)?;
        let merged = self.home.join(id).join(MERGED);
        if !self.refs.release(id, &merged) {
            return Ok(());
        }
        mount::unmount(&merged)?;
        match rustix::fs::unlinkat(&fd, MERGED, AtFlags::REMOVEDIR) {
            Ok(()) | Err(Errno::NOENT) => Ok(()),
            Err(e) => Err(FsError::io("remove directory", &merged, e).into()),
        }
    }

    fn exists(&self, id: &str) -> bool {
        validate_id(id).is_ok() && is_dir_at(&self.home_fd, id)
    }

    fn apply_diff(&self, id: &str, parent: Option<&str>, diff: &mut dyn Read) -> Result<u64> {
        if let Some(p) = parent {
            validate_id(p)?;
        }
        let (fd, lock) = self.lock_layer(id)?;
        let path = self.home.join(id);
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
            let pfd = self.open_parent(id, p)?;
            let ppath = self.home.join(p);
            if !is_dir_at(&pfd, ROOT) {
                let res = self.apply_through_mount(id, (&fd, &lock), &path, diff);
                drop(lock);
                return res.map_err(|e| self.classify(e));
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
                self.renamer.exchange(
                    (&fd, tmp.name()),
                    (&fd, &path, &lock),
                    ROOT,
                    self.durable,
                )?;
                drop(tmp); // now holds the old root/: removed
            } else {
                tmp.rename_noreplace(&self.renamer, OsStr::new(ROOT), Claim::Held(&lock))
                    .map_err(|(_t, e)| FsError::io("rename into place", path.join(ROOT), e))?;
            }
            ovlink_fs::crash::point("apply.after-rename");
            self.sync_dir(&fd, &path)?;
            self.drop_container_files(&fd, &path)?;
            Ok(size)
        })();
        drop(lock);
        res.map_err(|e| self.classify(e))
    }

    fn create_and_apply(&self, id: &str, parent: Option<&str>, diff: &mut dyn Read) -> Result<u64> {
        self.create_and_apply_layer(id, parent, diff)
            .map_err(|e| self.classify(e))
    }

    fn status(&self) -> Vec<(String, String)> {
        let mut v = vec![
            ("Backing Filesystem".to_string(), self.backing_fs.clone()),
            ("Supports d_type".to_string(), self.d_type.to_string()),
        ];
        let off = self.features.off_options();
        if !off.is_empty() {
            v.push(("Mount options added".to_string(), off.join(",")));
        }
        v.push(crate::diff::status_line(self.diff_mode));
        v.push((
            "Symlinks".to_string(),
            match self.symlinks {
                ovlink_fs::Specials::Link => {
                    "link (symlinks and special files shared between layers)"
                }
                ovlink_fs::Specials::Copy => "copy (re-created in every layer, as Docker)",
            }
            .to_string(),
        ));
        for w in &self.warnings {
            v.push(("Warning".to_string(), w.clone()));
        }
        v
    }

    fn metadata(&self, id: &str) -> Result<BTreeMap<String, String>> {
        let fd = self.open_layer(id)?;
        let path = self.home.join(id);
        let mut m = BTreeMap::new();
        let s = |p: PathBuf| p.to_string_lossy().into_owned();
        match self.kind_of(&fd, &path)? {
            LayerKind::Image => {
                m.insert("RootDir".into(), s(path.join(ROOT)));
            }
            LayerKind::Container { lower_id } => {
                m.insert("LowerDir".into(), s(self.home.join(lower_id).join(ROOT)));
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
        mount::unmount_all_under(&self.home)?;
        self.refs.clear();
        Ok(())
    }

    fn layers(&self) -> Result<Vec<LayerInfo>> {
        let mut out = Vec::new();
        for id in self.layer_ids()? {
            let path = self.home.join(&id);
            let Ok(fd) = open_dir_at(&self.home_fd, &id, &path) else {
                continue;
            };
            let kind = self.kind_of(&fd, &path)?;
            let mounted = matches!(kind, LayerKind::Container { .. })
                && mount::is_overlay_mounted(&path.join(MERGED));
            out.push(LayerInfo { id, kind, mounted });
        }
        Ok(out)
    }

    fn layer_kind(&self, id: &str) -> Result<LayerKind> {
        let fd = self.open_layer(id)?;
        self.kind_of(&fd, &self.home.join(id))
    }

    fn diff(&self, id: &str, parent: Option<&str>, out: &mut dyn Write) -> Result<()> {
        // ENOSPC writing the tar (commit and save write it under the root): say which.
        crate::diff::diff(self, id, parent, out).map_err(|e| self.classify(e))
    }

    fn changes(&self, id: &str, parent: Option<&str>) -> Result<Vec<crate::Change>> {
        crate::diff::changes(self, id, parent)
    }

    fn diff_size(&self, id: &str, parent: Option<&str>) -> Result<u64> {
        crate::diff::diff_size(self, id, parent)
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

fn uid(u: u32) -> rustix::fs::Uid {
    rustix::fs::Uid::from_raw(u)
}
fn gid(g: u32) -> rustix::fs::Gid {
    rustix::fs::Gid::from_raw(g)
}

/// Names the home (not the ancestor that was probed) in a host-check error.
fn relabel(e: DriverError, probe: &Path, home: &Path) -> DriverError {
    match e {
        DriverError::HostCheck { check, detail } => DriverError::HostCheck {
            check,
            detail: detail.replacen(&probe.display().to_string(), &home.display().to_string(), 1),
        },
        e => e,
    }
}

/// The host ids of container root under the given maps, if any maps are set.
pub fn remapped_root(uid_maps: &[IdMap], gid_maps: &[IdMap]) -> Option<(u32, u32)> {
    if uid_maps.is_empty() && gid_maps.is_empty() {
        return None;
    }
    let find = |maps: &[IdMap]| {
        maps.iter()
            .find(|m| m.container_id == 0 && m.size > 0)
            .map(|m| m.host_id)
            .unwrap_or(0)
    };
    Some((find(uid_maps), find(gid_maps)))
}

/// The error and its causes on one line.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
