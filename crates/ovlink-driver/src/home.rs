//! A driver home, as both layouts use it: init (host checks before anything is created,
//! modes, id-map owners, d_type, the test mount and the container-operations probe), the
//! layer-dir helpers every layout builds with (`mkdir_exact`, `write_file`, `sync_dir`,
//! `open_layer`, `lock_layer`, `layer_ids`), temporary directories (`.tmp-*`) and their
//! reaping, publishing a layer built aside, the trash of removed layers and its reclaim, ENOSPC
//! classification, the mount reference counts and the `merged/` half of `get`/`put`.
//!
//! ```text
//! <home>/                      0710   this process's uid, the remapped root's gid
//!   <id>/                      0710   a layer (what is inside is the layout's)
//!   .tmp-*                            in-progress dirs (flocked while in use, reaped by init)
//!   .tmp-remove-*                     removed layers waiting to be reclaimed
//! ```
//!
//! This module never decides what a layer directory holds (that is the layout's), never
//! follows a symlink below the home, and never writes outside it.

use crate::checks::{self, OverlayFeatures};
use crate::error::{error_chain, DriverError, Result};
use crate::layout::Layout;
use crate::lock::{random_suffix, reap_temp_dirs, reap_temp_dirs_except, DirLock, TempDir};
use crate::refs::MountRefs;
use crate::rename::{Claim, Renamer};
use crate::{
    mount, validate_id, CreateOpts, DiffMode, HomeAccess, IdMap, InitConfig, LayerInfo, LayerKind,
    SyncMode, Usage,
};
use ovlink_fs::at::{open_dir, open_dir_at};
use ovlink_fs::error::Context;
use ovlink_fs::FsError;
use rustix::fd::{AsFd, OwnedFd};
use rustix::fs::{AtFlags, Mode, OFlags};
use rustix::io::Errno;
use std::ffi::OsStr;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// Prefix of every temporary directory of the home.
pub const TMP_PREFIX: &str = ".tmp-";
/// Prefix of a layer being created aside.
pub const CREATE_PREFIX: &str = ".tmp-create-";
/// Prefix of removed layers waiting to be reclaimed.
pub const TRASH_PREFIX: &str = ".tmp-remove-";
/// The label of a warning line of a layout's `status`.
pub const WARNING: &str = "Warning";
/// How a warning about an unfinished init recovery starts (the CLI prints these).
pub const RECOVERY_WARNING: &str = "init recovery did not finish";
/// A layer's mount point, present only while mounted.
pub const MERGED: &str = "merged";
/// A layer's overlayfs workdir.
pub const WORK: &str = "work";

/// The file of the home that records its owner ([`crate::HomeOwner`]).
pub const OWNER_RECORD: &str = ".owner";

/// A driver home, initialized: see the module docs.
#[derive(Debug)]
pub struct Home {
    layout: Layout,
    path: PathBuf,
    fd: OwnedFd,
    backing_fs: String,
    d_type: bool,
    fresh: bool,
    features: OverlayFeatures,
    root_ids: Option<(u32, u32)>,
    uid_maps: Vec<IdMap>,
    gid_maps: Vec<IdMap>,
    refs: MountRefs,
    renamer: Renamer,
    warnings: Vec<String>,
    sync: SyncMode,
    sync_fault: Option<crate::SyncFault>,
    diff_mode: DiffMode,
    reserved: &'static [&'static str],
}

impl Home {
    /// Initializes the home of `layout`: refuses driver options, checks overlay support,
    /// then the backing filesystem and d_type where the home is or will be, BEFORE creating
    /// anything (a refused init leaves no directory), creates the home (with
    /// [`HomeAccess::Existing`], a missing home is [`DriverError::NoHome`] instead) (0710, this process's
    /// uid and the remapped root's gid) and, on a fresh home, makes a real test mount with
    /// the layout's number of lowerdirs and runs the container-operations probe in another
    /// ([`Home::check_container_ops`]); when either refuses, the directories this init created
    /// are removed again. `reserved` are names in the home that are not layers (overlay2's
    /// `l`).
    pub fn init(
        cfg: &InitConfig,
        layout: Layout,
        reserved: &'static [&'static str],
    ) -> Result<Self> {
        if let Some(o) = cfg.options.first() {
            return Err(DriverError::UnknownOption {
                layout: layout.name(),
                option: o.clone(),
            });
        }
        checks::check_overlay_available()?;
        let path = cfg.home.clone();
        let fresh = match std::fs::read_dir(&path) {
            Ok(mut it) => it.next().is_none(),
            Err(_) => true,
        };
        // Check where the home is (or will be) before creating anything, as Docker does.
        let probe = path
            .ancestors()
            .find(|p| p.is_dir())
            .unwrap_or(Path::new("/"))
            .to_path_buf();
        let backing_fs = checks::check_backing_fs(&probe).map_err(|e| relabel(e, &probe, &path))?;
        let d_type = checks::supports_dtype(&probe)?;
        let mut warnings = checks::kernel_warnings(layout);
        if !d_type {
            let fix = "reformat the backing filesystem with d_type support \
                       (xfs: mkfs.xfs -n ftype=1; ext4: mkfs.ext4 -O filetype)";
            if fresh {
                return Err(DriverError::HostCheck {
                    check: "d_type",
                    detail: format!(
                        "{} is on {backing_fs} without d_type support; {fix}",
                        path.display()
                    ),
                });
            }
            warnings.push(format!(
                "the backing filesystem has no d_type support; {fix}"
            ));
        }
        if cfg.access == HomeAccess::Existing && !path.is_dir() {
            return Err(DriverError::NoHome {
                layout: layout.name(),
                path,
            });
        }
        // What this init creates (the home and its missing parents, innermost first) is
        // removed again, while still empty, when a later step refuses: a refused init leaves
        // no directory. A home that existed, even empty, stays.
        let mut created = missing_dirs(&path);
        let sync = SyncMode::resolve(cfg.sync);
        let made = create_home_dir(&path, &mut created).and_then(|fd| {
            let home = Home {
                layout,
                path,
                fd,
                backing_fs,
                d_type,
                fresh,
                features: OverlayFeatures::read(),
                root_ids: remapped_root(&cfg.uid_maps, &cfg.gid_maps),
                uid_maps: cfg.uid_maps.clone(),
                gid_maps: cfg.gid_maps.clone(),
                refs: MountRefs::new(),
                renamer: Renamer::new(),
                warnings,
                sync,
                sync_fault: cfg.sync_fault,
                diff_mode: cfg.diff,
                reserved,
            };
            home.chown_layer_dir(&home.fd, &home.path)?;
            if fresh {
                home.check_mount()?;
                home.check_container_ops()?;
            }
            home.check_owner(cfg)?;
            Ok(home)
        });
        if made.is_err() {
            remove_empty_dirs(&created);
        }
        made
    }

    /// The home's owner ([`crate::HomeOwner`], `<home>/.owner`): a writer is refused a home
    /// another owner recorded; the snapshotter records itself in a home without a record. A
    /// reader (`HomeAccess::Existing`) only reads.
    fn check_owner(&self, cfg: &InitConfig) -> Result<()> {
        let Some(asked) = cfg.owner else {
            return Ok(());
        };
        let shown = self.path.join(OWNER_RECORD);
        let recorded = match Self::read_small(&self.fd, OWNER_RECORD, 64, &shown)? {
            None => None,
            Some(t) => Some(crate::HomeOwner::parse(t.trim()).ok_or_else(|| {
                FsError::io(
                    "parse (expected cli, plugin or snapshotter)",
                    &shown,
                    Errno::INVAL,
                )
            })?),
        };
        match recorded {
            Some(owner) if owner == asked => Ok(()),
            Some(_) if cfg.access == HomeAccess::Existing => Ok(()),
            Some(owner) => Err(DriverError::HomeOwned {
                home: self.path.clone(),
                owner,
                asked,
            }),
            None if cfg.access == HomeAccess::Existing || !asked.records_itself() => Ok(()),
            None => {
                let tmp = format!("{OWNER_RECORD}.tmp");
                let _ = rustix::fs::unlinkat(&self.fd, tmp.as_str(), rustix::fs::AtFlags::empty());
                self.write_file(
                    &self.fd,
                    &tmp,
                    format!("{}\n", asked.name()).as_bytes(),
                    0o600,
                    &shown,
                )?;
                rustix::fs::renameat(&self.fd, tmp.as_str(), &self.fd, OWNER_RECORD)
                    .ctx("rename", &shown)?;
                self.sync_dir(&self.fd, &self.path)
            }
        }
    }

    /// Does in a test mount with the layout's number of lowerdirs inside the home what a
    /// container needs (create, copy-up, delete of a lower file and directory, opaque
    /// re-create, rename: [`checks::container_ops_probe`]), then removes it.
    pub fn check_container_ops(&self) -> Result<checks::ContainerOps> {
        checks::container_ops_probe(
            &self.fd,
            &self.path,
            self.layout.test_lowers(),
            &self.features,
            &self.backing_fs,
        )
    }

    /// Really mounts a tiny overlay with the layout's number of lowerdirs inside the home (the
    /// check Docker makes), then removes it.
    pub fn check_mount(&self) -> Result<()> {
        checks::test_mount(
            &self.fd,
            &self.path,
            self.layout.test_lowers(),
            &self.features,
            &self.backing_fs,
        )
    }

    /// The layout this home holds.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// The home's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// An fd of the home directory.
    pub fn fd(&self) -> &OwnedFd {
        &self.fd
    }

    /// Docker's name of the backing filesystem (`extfs`, `xfs`, ...).
    pub fn backing_fs(&self) -> &str {
        &self.backing_fs
    }

    /// Whether the backing filesystem reports d_type.
    pub fn d_type(&self) -> bool {
        self.d_type
    }

    /// True when the home was missing or empty at init.
    pub fn fresh(&self) -> bool {
        self.fresh
    }

    /// The overlay features this kernel turns on by default (and that mounts turn off).
    pub fn features(&self) -> &OverlayFeatures {
        &self.features
    }

    /// The host uid and gid of container root under the id maps, if any maps are set.
    pub fn root_ids(&self) -> Option<(u32, u32)> {
        self.root_ids
    }

    /// The user-namespace id maps given at init (uid maps, gid maps).
    pub fn id_maps(&self) -> (&[IdMap], &[IdMap]) {
        (&self.uid_maps, &self.gid_maps)
    }

    /// The mount reference counts of this process.
    pub fn refs(&self) -> &MountRefs {
        &self.refs
    }

    /// The home's publisher of renames.
    pub fn renamer(&self) -> &Renamer {
        &self.renamer
    }

    /// How new layers are made durable.
    pub fn sync(&self) -> SyncMode {
        self.sync
    }

    /// Which diff the diff methods make (set at init).
    pub fn diff_mode(&self) -> DiffMode {
        self.diff_mode
    }

    /// False when nothing is synced ([`SyncMode::None`]).
    pub fn durable(&self) -> bool {
        self.sync != SyncMode::None
    }

    /// Whether a new layer's data is flushed before it is published: when durable, unless
    /// the power-loss test's seeded bug [`crate::SyncFault::SkipData`] is set.
    pub fn flush_data(&self) -> bool {
        self.durable() && self.sync_fault != Some(crate::SyncFault::SkipData)
    }

    /// Warnings found at init and after (for `status`).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Adds a warning for `status`.
    pub fn warn(&mut self, w: String) {
        self.warnings.push(w);
    }

    /// Reports init's recovery for `status`: each leftover it could not clean up, or the
    /// error that stopped it (it runs again at the next init either way; a recovery never
    /// stops every command).
    pub fn warn_recovery(&mut self, rec: Result<Vec<String>>) {
        match rec {
            Ok(leftovers) => {
                for w in leftovers {
                    self.warn(format!("{RECOVERY_WARNING}: {w}"));
                }
            }
            Err(e) => self.warn(format!(
                "{RECOVERY_WARNING} ({}); it runs again at the next start",
                error_chain(&e)
            )),
        }
    }

    /// `status` lines: backing filesystem, d_type, the added mount options, the layout's own
    /// `extra` lines, then the warnings.
    pub fn status(&self, extra: Vec<(String, String)>) -> Vec<(String, String)> {
        let mut v = vec![
            ("Backing Filesystem".to_string(), self.backing_fs.clone()),
            ("Supports d_type".to_string(), self.d_type.to_string()),
        ];
        let off = self.features.off_options();
        if !off.is_empty() {
            v.push(("Mount options added".to_string(), off.join(",")));
        }
        v.extend(extra);
        for w in &self.warnings {
            v.push((WARNING.to_string(), w.clone()));
        }
        v
    }

    /// Checks `id` with the layer-id rule and the layout's reserved names.
    pub fn check_id(&self, id: &str) -> Result<()> {
        validate_id(id)?;
        if self.reserved.contains(&id) {
            return Err(DriverError::InvalidLayerId {
                id: id.to_string(),
                reason: "it is a reserved name of the layout's home (overlay2's short-link directory 'l')",
            });
        }
        Ok(())
    }

    /// The path of layer `id`'s directory (after checking the id).
    pub fn layer_path(&self, id: &str) -> Result<PathBuf> {
        self.check_id(id)?;
        Ok(self.path.join(id))
    }

    /// True when layer `id` exists (an invalid id does not).
    pub fn exists(&self, id: &str) -> bool {
        self.check_id(id).is_ok() && ovlink_fs::at::is_dir_at(&self.fd, id)
    }

    /// The layer ids in the home, sorted (dot names and reserved names left out).
    pub fn layer_ids(&self) -> Result<Vec<String>> {
        let mut ids = Vec::new();
        let it = rustix::fs::Dir::read_from(&self.fd).ctx("read directory", &self.path)?;
        for ent in it {
            let ent = ent.ctx("read directory", &self.path)?;
            let n = ent.file_name().to_bytes();
            if n.starts_with(b".") {
                continue;
            }
            if let Ok(s) = std::str::from_utf8(n) {
                if self.check_id(s).is_ok() {
                    ids.push(s.to_string());
                }
            }
        }
        ids.sort();
        Ok(ids)
    }

    /// The layers in the home, sorted by id, each with the kind `kind_of` (the layout's
    /// reading of a layer dir) finds and whether its `merged/` is mounted now.
    pub fn layers(
        &self,
        kind_of: impl Fn(&OwnedFd, &Path) -> Result<LayerKind>,
    ) -> Result<Vec<LayerInfo>> {
        let mut out = Vec::new();
        for id in self.layer_ids()? {
            let path = self.path.join(&id);
            let Ok(fd) = open_dir_at(&self.fd, &id, &path) else {
                continue;
            };
            let kind = kind_of(&fd, &path)?;
            let mounted = mount::is_overlay_mounted(&path.join(MERGED));
            out.push(LayerInfo { id, kind, mounted });
        }
        Ok(out)
    }

    /// What layer `id` is, as `kind_of` reads its directory.
    pub fn layer_kind(
        &self,
        id: &str,
        kind_of: impl Fn(&OwnedFd, &Path) -> Result<LayerKind>,
    ) -> Result<LayerKind> {
        let fd = self.open_layer(id)?;
        kind_of(&fd, &self.path.join(id))
    }

    /// The checks of `create` before anything is made: both ids, no storage options, a
    /// mount label that is an SELinux context (refused at create already, not only at the
    /// first mount), and no layer `id` yet.
    pub fn check_create(&self, id: &str, parent: Option<&str>, opts: &CreateOpts) -> Result<()> {
        self.check_id(id)?;
        if let Some(p) = parent {
            self.check_id(p)?;
        }
        if let Some((k, v)) = opts.storage_opt.iter().next() {
            return Err(DriverError::StorageOptNotSupported {
                option: format!("{k}={v}"),
            });
        }
        if let Some(label) = opts.mount_label.as_deref().filter(|l| !l.is_empty()) {
            mount::label_option(label)?;
        }
        if ovlink_fs::at::exists_at(&self.fd, id) {
            return Err(DriverError::LayerExists { id: id.to_string() });
        }
        Ok(())
    }

    /// Opens layer `id`'s directory, or `LayerNotFound`.
    pub fn open_layer(&self, id: &str) -> Result<OwnedFd> {
        self.check_id(id)?;
        match open_dir_at(&self.fd, id, &self.path.join(id)) {
            Ok(fd) => Ok(fd),
            Err(e) if e.raw_os_error() == Some(Errno::NOENT.raw_os_error()) => {
                Err(DriverError::LayerNotFound { id: id.to_string() })
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Opens `parent`, the parent named for layer `id`: `ParentNotFound` when it is missing.
    pub fn open_parent(&self, id: &str, parent: &str) -> Result<OwnedFd> {
        self.open_layer(parent).map_err(|e| e.as_parent_of(id))
    }

    /// Locks layer `id` and checks it is still in place (see [`crate::lock::lock_layer_dir`]).
    pub fn lock_layer(&self, id: &str) -> Result<(OwnedFd, DirLock)> {
        let fd = self.open_layer(id)?;
        crate::lock::lock_layer_dir(&self.fd, &self.path, id, fd)
    }

    /// A locked temporary directory `<home>/<prefix><random>` with `mode`.
    pub fn temp_dir(&self, prefix: &str, mode: u32) -> Result<TempDir> {
        TempDir::new(&self.fd, &self.path, prefix, mode)
    }

    /// A locked `.tmp-create-*` (0710, owned as a layer dir) to build a layer in; published
    /// under its id by [`Home::publish`].
    pub fn create_temp(&self) -> Result<TempDir> {
        let tmp = self.temp_dir(CREATE_PREFIX, 0o710)?;
        self.chown_layer_dir(tmp.fd(), &tmp.path())?;
        Ok(tmp)
    }

    /// Owns `fd` by the (remapped) container root, when id maps are set.
    pub fn chown_root<Fd: AsFd>(&self, fd: Fd, shown: &Path) -> Result<()> {
        if let Some((u, g)) = self.root_ids {
            rustix::fs::fchown(fd, Some(uid(u)), Some(gid(g))).ctx("change owner of", shown)?;
        }
        Ok(())
    }

    /// Docker's owner of the home and of layer dirs, when id maps are set: this process's uid
    /// and the remapped root's gid (0710: the remapped root may traverse, not list).
    pub fn chown_layer_dir<Fd: AsFd>(&self, fd: Fd, shown: &Path) -> Result<()> {
        if let Some((_, g)) = self.root_ids {
            rustix::fs::fchown(fd, Some(rustix::process::getuid()), Some(gid(g)))
                .ctx("change owner of", shown)?;
        }
        Ok(())
    }

    /// Makes directory `name` in `dir` with exactly `mode`, owned by the (remapped) root.
    pub fn mkdir_exact(
        &self,
        dir: &OwnedFd,
        name: &str,
        mode: u32,
        shown: &Path,
    ) -> Result<OwnedFd> {
        rustix::fs::mkdirat(dir, name, Mode::from_raw_mode(0o700))
            .ctx("create directory", shown)?;
        let fd = open_dir_at(dir, name, shown)?;
        self.chown_root(&fd, shown)?;
        rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode)).ctx("change mode of", shown)?;
        Ok(fd)
    }

    /// Creates file `name` in `dir` (never over an existing one) with exactly `mode` and
    /// `content`, its data synced when the home is durable (before a rename publishes it).
    pub fn write_file(
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
        if self.durable() {
            f.sync_all().ctx("fsync", shown)?;
        }
        Ok(())
    }

    /// Reads the small file `name` of `dir` (at most `limit` bytes, one trailing newline
    /// dropped); `None` when it is missing.
    pub fn read_small(
        dir: &OwnedFd,
        name: &str,
        limit: u64,
        shown: &Path,
    ) -> Result<Option<String>> {
        let f = match rustix::fs::openat(
            dir,
            name,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(f) => f,
            Err(Errno::NOENT) => return Ok(None),
            Err(e) => return Err(FsError::io("open", shown, e).into()),
        };
        let mut s = String::new();
        std::fs::File::from(f)
            .take(limit)
            .read_to_string(&mut s)
            .ctx("read", shown)?;
        Ok(Some(s.trim_end_matches('\n').to_string()))
    }

    /// `fsync` of a directory, when the home is durable.
    pub fn sync_dir(&self, fd: &OwnedFd, shown: &Path) -> Result<()> {
        if self.durable() && self.sync_fault != Some(crate::SyncFault::SkipDirectories) {
            rustix::fs::fsync(fd).ctx("fsync", shown)?;
        }
        Ok(())
    }

    /// `syncfs` of the filesystem holding `fd`, when the home is durable.
    pub fn syncfs(&self, fd: &OwnedFd, shown: &Path) -> Result<()> {
        if self.durable() {
            rustix::fs::syncfs(fd).ctx("syncfs", shown)?;
        }
        Ok(())
    }

    /// Renames a layer built aside to `id` (no-replace: `LayerExists` if another process got
    /// there first, and then the one built here is removed, never theirs), then syncs the
    /// home.
    pub fn publish(&self, tmp: TempDir, id: &str) -> Result<()> {
        self.publish_unsynced(tmp, id)?;
        self.sync_dir(&self.fd, &self.path)
    }

    /// [`Home::publish`] without the home's sync: for a caller that publishes several layers
    /// and syncs the home once after the last ([`crate::staging`]).
    pub fn publish_unsynced(&self, tmp: TempDir, id: &str) -> Result<()> {
        ovlink_fs::crash::point("create.before-rename");
        match tmp.rename_noreplace(&self.renamer, OsStr::new(id), Claim::LockDir) {
            Ok(()) => {}
            Err((_tmp, Errno::EXIST)) | Err((_tmp, Errno::NOTEMPTY)) => {
                return Err(DriverError::LayerExists { id: id.to_string() })
            }
            Err((_tmp, e)) => {
                return Err(FsError::io("rename into place", self.path.join(id), e).into())
            }
        }
        ovlink_fs::crash::point("create.after-rename");
        Ok(())
    }

    /// Removes layer `id`, which the caller locked (`fd`, `lock` from [`Home::lock_layer`]),
    /// from sight: unmounts what is mounted under it, renames it to `.tmp-remove-*` (gone at
    /// once, atomically) and returns it locked, for the caller to reclaim now, in a thread,
    /// or in another process that inherits [`Trash::lock_fd`].
    pub fn trash(&self, id: &str, fd: OwnedFd, lock: DirLock) -> Result<Trash> {
        let path = self.path.join(id);
        for m in mount::mounts_under(&path) {
            mount::unmount(&m)?;
        }
        let name = format!("{TRASH_PREFIX}{}", random_suffix());
        rustix::fs::renameat(&self.fd, id, &self.fd, name.as_str())
            .ctx("move aside for removal", &path)?;
        ovlink_fs::crash::point("remove.after-rename");
        self.refs.forget(id);
        self.sync_dir(&self.fd, &self.path)?;
        drop(fd);
        Ok(Trash {
            home_fd: rustix::io::dup(&self.fd).ctx("dup", &self.path)?,
            home: self.path.clone(),
            name,
            lock,
        })
    }

    /// Deletes every removed layer that nobody is reclaiming now (`.tmp-remove-*` whose lock
    /// is free), before returning; the names deleted.
    pub fn reclaim_pending(&self) -> Result<Vec<String>> {
        Ok(reap_temp_dirs(&self.fd, &self.path, &[TRASH_PREFIX])?
            .into_iter()
            .map(|n| n.to_string_lossy().into_owned())
            .collect())
    }

    /// [`Home::reclaim_pending`] in a background thread.
    pub fn spawn_reclaim_pending(&self) -> Result<()> {
        let home_fd = rustix::io::dup(&self.fd).ctx("dup", &self.path)?;
        let home = self.path.clone();
        let _ = std::thread::Builder::new()
            .name("ovlink-reclaim".into())
            .spawn(move || reap_temp_dirs(&home_fd, &home, &[TRASH_PREFIX]));
        Ok(())
    }

    /// Reclaims the removed layer `name` whose lock another process handed over: this process
    /// inherited an fd of it (the `flock` is held while that fd is open), reachable as
    /// `held` (`/proc/self/fd/N`). Checks that `held` is that directory, then deletes it.
    pub fn reclaim_handed_over(&self, name: &str, held: &Path) -> Result<()> {
        let path = self.path.join(name);
        if !name.starts_with(TRASH_PREFIX) || name.contains('/') {
            return Err(FsError::io("reclaim", &path, Errno::INVAL).into());
        }
        let mine = rustix::fs::stat(held).ctx("stat", held)?;
        let there =
            rustix::fs::statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW).ctx("stat", &path)?;
        if (mine.st_dev, mine.st_ino) != (there.st_dev, there.st_ino) {
            return Err(FsError::io(
                "reclaim (not the handed-over directory)",
                &path,
                Errno::INVAL,
            )
            .into());
        }
        ovlink_fs::remove_all_at(&self.fd, OsStr::new(name), &path)?;
        Ok(())
    }

    /// Init's reaping of the home: removes the `.tmp-*` of dead processes (leaving names that
    /// start with one of `except`), adding what it removed to `removed` and what it could
    /// not to `warnings` (never an error: a leftover never blocks the home).
    pub fn reap(&self, except: &[&str], removed: &mut Vec<PathBuf>, warnings: &mut Vec<String>) {
        match reap_temp_dirs_except(&self.fd, &self.path, &[TMP_PREFIX], except) {
            Ok(names) => removed.extend(names.into_iter().map(|n| self.path.join(n))),
            Err(e) => warnings.push(leftover(&self.path, &e)),
        }
    }

    /// Init's recovery of layer `id`: finishes an exchange a crash interrupted on one of
    /// `exchanged` (trees that are not temporary names), then reaps the layer's temporary
    /// dirs starting with one of `prefixes` (as [`Home::reap`]). Returns the layer's fd, or
    /// `None` when it is gone.
    pub fn recover_layer(
        &self,
        id: &str,
        exchanged: &[&str],
        prefixes: &[&str],
        removed: &mut Vec<PathBuf>,
        warnings: &mut Vec<String>,
    ) -> Result<Option<OwnedFd>> {
        let path = self.path.join(id);
        let Ok(fd) = open_dir_at(&self.fd, id, &path) else {
            return Ok(None);
        };
        crate::rename::recover_exchanges(&self.fd, id, (&fd, &path), exchanged, self.durable())?;
        match reap_temp_dirs(&fd, &path, prefixes) {
            Ok(names) => removed.extend(names.into_iter().map(|n| path.join(n))),
            Err(e) => warnings.push(leftover(&path, &e)),
        }
        Ok(Some(fd))
    }

    /// The first half of `get` for a layer that is an overlay mount, under the layer's lock
    /// (`fd` of the locked layer): one more user; the first one makes `merged/` (0700, owned
    /// by the remapped root) and calls `mount(merged)`, and on failure everything is undone.
    /// Returns `merged/`.
    pub fn mount_merged(
        &self,
        id: &str,
        fd: &OwnedFd,
        mount: impl FnOnce(&Path) -> Result<()>,
    ) -> Result<PathBuf> {
        let path = self.path.join(id);
        let merged = path.join(MERGED);
        if !self.refs.acquire(id, &merged) {
            return Ok(merged);
        }
        let undo = |e: DriverError| {
            self.refs.forget(id);
            let _ = rustix::fs::unlinkat(fd, MERGED, AtFlags::REMOVEDIR);
            e
        };
        match rustix::fs::mkdirat(fd, MERGED, Mode::from_raw_mode(0o700)) {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(e) => {
                return Err(undo(
                    self.classify(FsError::io("create directory", &merged, e).into()),
                ))
            }
        }
        if let Err(e) = open_dir_at(fd, MERGED, &merged)
            .map_err(DriverError::from)
            .and_then(|m| {
                rustix::fs::fchmod(&m, Mode::from_raw_mode(0o700))
                    .ctx("change mode of", &merged)?;
                self.chown_root(&m, &merged)
            })
        {
            return Err(undo(e));
        }
        if let Err(e) = mount(&merged) {
            return Err(undo(e));
        }
        if let Some((u, g)) = self.root_ids {
            let ww = path.join(WORK).join(WORK);
            let _ = rustix::fs::chown(&ww, Some(uid(u)), Some(gid(g)));
        }
        Ok(merged)
    }

    /// The second half of `put`, under the layer's lock: one user fewer; the last one
    /// unmounts `merged/` and removes it.
    pub fn unmount_merged(&self, id: &str, fd: &OwnedFd) -> Result<()> {
        let merged = self.path.join(id).join(MERGED);
        if !self.refs.release(id, &merged) {
            return Ok(());
        }
        mount::unmount(&merged)?;
        match rustix::fs::unlinkat(fd, MERGED, AtFlags::REMOVEDIR) {
            Ok(()) | Err(Errno::NOENT) => Ok(()),
            Err(e) => Err(FsError::io("remove directory", &merged, e).into()),
        }
    }

    /// Unmounts everything under the home and forgets every count (`cleanup`).
    pub fn cleanup(&self) -> Result<()> {
        mount::unmount_all_under(&self.path)?;
        self.refs.clear();
        Ok(())
    }

    /// The walk `ovlink report` makes of the home entry `name` (a layer directory).
    pub fn walk(&self, name: &str) -> Result<ovlink_fs::walk::Walk> {
        Ok(ovlink_fs::walk::walk(
            self.fd.as_fd(),
            OsStr::new(name),
            &self.path.join(name),
            self.dev()?,
            false,
        )?)
    }

    /// The device of the home.
    pub fn dev(&self) -> Result<u64> {
        Ok(rustix::fs::fstat(&self.fd).ctx("stat", &self.path)?.st_dev)
    }

    /// What `own` adds over `below` (the walks of a layer and of its parent).
    pub fn added(own: &ovlink_fs::walk::Walk, below: Option<&ovlink_fs::walk::Walk>) -> Usage {
        let (inodes, bytes) = ovlink_fs::walk::added(own, below);
        Usage { inodes, bytes }
    }

    /// The layer-tar apply options of this home: its id maps (device nodes kept, as Docker
    /// does under --userns-remap unless dockerd itself runs in a user namespace).
    pub fn tar_options(&self) -> ovlink_tar::ApplyOptions {
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
            skip_devices: false,
            uid_maps: ranges(&self.uid_maps),
            gid_maps: ranges(&self.gid_maps),
            sync_data: false,
            // The layer's one syncfs finds its large files already written back.
            start_writeback: self.sync == SyncMode::Syncfs && self.flush_data(),
            whiteouts: ovlink_tar::WhiteoutFormat::Delete,
        }
    }

    /// The diff export options of this home: owners mapped back to container ids.
    pub fn export_options(&self) -> ovlink_diff::ExportOptions {
        let ranges = |maps: &[IdMap]| {
            maps.iter()
                .map(|m| ovlink_diff::IdRange {
                    container_id: m.container_id,
                    host_id: m.host_id,
                    size: m.size,
                })
                .collect()
        };
        ovlink_diff::ExportOptions {
            uid_maps: ranges(&self.uid_maps),
            gid_maps: ranges(&self.gid_maps),
        }
    }

    /// Turns ENOSPC into [`DriverError::NoSpace`] saying which resource ran out. Called while
    /// the failed work is still on disk, so the numbers show the moment of failure.
    pub fn classify(&self, e: DriverError) -> DriverError {
        if e.raw_os_error() != Some(Errno::NOSPC.raw_os_error()) {
            return e;
        }
        let Ok(st) = rustix::fs::statvfs(&self.path) else {
            return e;
        };
        let (what, used, total, free, hint) = if st.f_favail == 0 || st.f_ffree < 16 {
            (
                "inodes",
                st.f_files - st.f_ffree,
                st.f_files,
                st.f_favail,
                self.layout.inode_hint(),
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
            path: self.path.clone(),
            what,
            used,
            total,
            free,
            hint,
            source: Box::new(e),
        }
    }
}

/// A removed layer, renamed to `<home>/.tmp-remove-*` and locked: it is gone for every caller,
/// its inodes are not freed yet. [`Trash::reclaim`] deletes it; dropping it unreclaimed leaves
/// it to the next [`Home::reclaim_pending`] (or init).
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

    /// Hands the tree to another process that deletes it after this one is gone: `command`
    /// is built from the trash's name and the number of the fd holding its lock, which the
    /// child inherits (close-on-exec is cleared for the spawn only); the child is started and
    /// not waited for. When it cannot be started, the tree is deleted here before returning.
    pub fn hand_over(self, command: impl FnOnce(&str, i32) -> std::process::Command) -> Result<()> {
        use rustix::fd::AsRawFd;
        use rustix::io::FdFlags;
        let fd = self.lock.fd();
        let mut cmd = command(&self.name, fd.as_raw_fd());
        let spawned = rustix::io::fcntl_setfd(fd, FdFlags::empty())
            .map_err(std::io::Error::from)
            .and_then(|()| {
                cmd.stdin(std::process::Stdio::null())
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .spawn()
            });
        let _ = rustix::io::fcntl_setfd(fd, FdFlags::CLOEXEC);
        match spawned {
            Ok(_child) => Ok(()), // not waited for: it outlives us
            Err(_) => self.reclaim(),
        }
    }

    /// Deletes it (then releases the lock).
    pub fn reclaim(self) -> Result<()> {
        let path = self.home.join(&self.name);
        ovlink_fs::remove_all_at(&self.home_fd, OsStr::new(&self.name), &path)?;
        drop(self.lock);
        Ok(())
    }
}

fn leftover(dir: &Path, e: &DriverError) -> String {
    format!(
        "cannot clean up leftovers in {} ({}); the next init tries again",
        dir.display(),
        error_chain(e)
    )
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

/// `path` and its ancestors that do not exist (innermost first): what creating it makes. (A
/// relative path's last ancestor, the empty path, is the working directory: never listed.)
fn missing_dirs(path: &Path) -> Vec<PathBuf> {
    path.ancestors()
        .take_while(|p| {
            !p.as_os_str().is_empty()
                && matches!(std::fs::symlink_metadata(p),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound)
        })
        .map(Path::to_path_buf)
        .collect()
}

/// Creates the home (0710) and its missing parents (0711), and opens it. `created` lists what
/// was missing; the home leaves it when another process made it first.
fn create_home_dir(path: &Path, created: &mut Vec<PathBuf>) -> Result<OwnedFd> {
    if let Some(parent) = path.parent() {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o711)
            .create(parent)
            .ctx("create directory", parent)?;
    }
    match rustix::fs::mkdir(path, Mode::from_raw_mode(0o710)) {
        Ok(()) => {
            rustix::fs::chmod(path, Mode::from_raw_mode(0o710)).ctx("change mode of", path)?;
        }
        Err(Errno::EXIST) => created.retain(|p| p != path),
        Err(e) => return Err(FsError::io("create directory", path, e).into()),
    }
    Ok(open_dir(path)?)
}

/// Removes `dirs` in order (innermost first) while they are empty: `rmdir` only, so nothing
/// another process put there meanwhile is ever removed; the first that is not empty stops it.
fn remove_empty_dirs(dirs: &[PathBuf]) {
    for d in dirs {
        if std::fs::remove_dir(d).is_err() {
            break;
        }
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

fn uid(u: u32) -> rustix::fs::Uid {
    rustix::fs::Uid::from_raw(u)
}

fn gid(g: u32) -> rustix::fs::Gid {
    rustix::fs::Gid::from_raw(g)
}
