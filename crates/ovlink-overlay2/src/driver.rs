//! The overlay2 layout and its [`Driver`] implementation (see the crate docs for the tree).
//!
//! Every state change goes through a locked temporary directory and one `rename`, as in the
//! legacy driver: `create` builds `.tmp-create-*` in the home, renames it to `<id>` (no-replace)
//! and only then makes the `l/` short link; `apply_diff` builds `<id>/tmpdiff-*` (a hardlink
//! copy of the current `diff/` with the rewritten tar applied) and exchanges it with `diff/`;
//! `remove` unlinks the short link, then renames `<id>` to `.tmp-remove-*`. `init` reaps what a
//! dead process left, re-creates a short link a crash left missing and removes dangling ones.
//!
//! Docker's overlay2 does not record on disk whether a layer is an image or a container layer;
//! ovlink marks layers made by `create_read_write` with the xattr `trusted.ovlink.rw` on the
//! layer directory (no extra inode), so `layer ls` and `ovlink report` can tell them apart.
//!
//! This module never writes into another layer's `diff/` and never follows a symlink below the
//! home (the `l/` links are only read with `readlinkat` or handed to the kernel's mount).

use crate::mount::{self as mnt, MountSpec};
use crate::{shortid, MAX_LOWERS};
use ovlink_driver::checks::{self, OverlayFeatures};
use ovlink_driver::error::{DriverError, Result};
use ovlink_driver::lock::{random_suffix, reap_temp_dirs, DirLock, TempDir};
use ovlink_driver::mount as dmount;
use ovlink_driver::overlay::RECOVERY_WARNING;
use ovlink_driver::refs::MountRefs;
use ovlink_driver::rename::{Claim, Renamer};
use ovlink_driver::{
    validate_id, CreateOpts, Driver, InitConfig, LayerInfo, LayerKind, Mount, Usage,
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

/// Names inside the home and a layer directory.
pub const LINK_DIR: &str = "l";
const DIFF: &str = "diff";
const LINK: &str = "link";
const LOWER: &str = "lower";
const WORK: &str = "work";
const MERGED: &str = "merged";
/// The xattr that marks a layer made by `create_read_write`.
pub const RW_XATTR: &str = "trusted.ovlink.rw";

const TMP_HOME_PREFIX: &str = ".tmp-";
const TMP_DIFF_PREFIX: &str = "tmpdiff-";

/// The overlay2 driver. See the crate docs for the layout.
#[derive(Debug)]
pub struct Overlay2Driver {
    home: PathBuf,
    home_fd: OwnedFd,
    link_fd: OwnedFd,
    backing_fs: String,
    d_type: bool,
    features: OverlayFeatures,
    root_ids: Option<(u32, u32)>,
    refs: MountRefs,
    renamer: Renamer,
    warnings: Vec<String>,
    durable: bool,
    diff_mode: ovlink_driver::DiffMode,
}

/// What `init` found and fixed in the home.
#[derive(Debug, Default, Clone)]
pub struct Recovery {
    /// Temporary directories of dead processes that were removed.
    pub removed_temp: Vec<PathBuf>,
    /// Short links re-created for layers that had lost theirs.
    pub relinked: Vec<String>,
    /// Short links removed because their layer is gone.
    pub dangling_removed: Vec<String>,
}

impl Overlay2Driver {
    /// Initializes the driver: refuses options, checks overlay support, the backing
    /// filesystem and d_type, creates the home (0710) and `l/` (0700), makes a test mount with
    /// two lowerdirs on a fresh home (what decides support: a kernel release before 4.0 is
    /// only warned about, since RHEL 7's 3.10.0-514+ has several lowerdirs), and recovers
    /// from crashes.
    pub fn init(cfg: &InitConfig) -> Result<Self> {
        if !cfg.options.is_empty() {
            return Err(DriverError::Unsupported {
                what: "driver options for overlay2",
            });
        }
        checks::check_overlay_available()?;
        let home = cfg.home.clone();
        let root_ids = ovlink_driver::overlay::remapped_root(&cfg.uid_maps, &cfg.gid_maps);
        let fresh = match std::fs::read_dir(&home) {
            Ok(mut it) => it.next().is_none(),
            Err(_) => true,
        };
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
        let chown = |fd: &OwnedFd, p: &Path| -> Result<()> {
            if let Some((u, g)) = root_ids {
                rustix::fs::fchown(fd, Some(uid(u)), Some(gid(g))).ctx("change owner of", p)?;
            }
            Ok(())
        };
        chown(&home_fd, &home)?;
        let backing_fs = checks::check_backing_fs(&home)?;
        let d_type = checks::supports_dtype(&home)?;
        let mut warnings = checks::kernel_warnings(checks::Layout::Overlay2);
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
        let lpath = home.join(LINK_DIR);
        if ovlink_fs::at::mkdir_at(&home_fd, LINK_DIR, 0o700, &lpath)? {
            let fd = open_dir_at(&home_fd, LINK_DIR, &lpath)?;
            chown(&fd, &lpath)?;
            rustix::fs::fchmod(&fd, Mode::from_raw_mode(0o700)).ctx("change mode of", &lpath)?;
        }
        let link_fd = open_dir_at(&home_fd, LINK_DIR, &lpath)?;
        let mut driver = Overlay2Driver {
            home,
            home_fd,
            link_fd,
            backing_fs,
            d_type,
            features: OverlayFeatures::read(),
            root_ids,
            refs: MountRefs::new(),
            renamer: Renamer::new(),
            warnings,
            // overlay2 syncs each layer it writes (no `Files`/`Syncfs` distinction), or nothing.
            durable: cfg.sync != Some(ovlink_driver::SyncMode::None),
            diff_mode: cfg.diff,
        };
        if fresh {
            driver.check_mount()?;
        }
        // Recovery that cannot finish (a read-only remount, a leftover it cannot reap) must
        // not stop every command: it is reported (status, and the CLI prints it) and runs
        // again at the next init.
        if let Err(e) = driver.recover() {
            driver.warnings.push(format!(
                "{RECOVERY_WARNING} ({}); it runs again at the next start",
                ovlink_driver::overlay::error_chain(&e)
            ));
        }
        Ok(driver)
    }

    /// Mounts a tiny overlay with two lowerdirs inside the home (Docker's
    /// `supportsMultipleLowerDir` check), then removes it.
    pub fn check_mount(&self) -> Result<()> {
        checks::test_mount(
            &self.home_fd,
            &self.home,
            2,
            &self.features,
            &self.backing_fs,
        )
    }

    /// Removes temporary directories of dead processes, re-creates short links a crash left
    /// missing and removes links whose layer is gone. Safe while other processes use the home.
    pub fn recover(&self) -> Result<Recovery> {
        let mut rec = Recovery::default();
        for n in reap_temp_dirs(&self.home_fd, &self.home, &[TMP_HOME_PREFIX])? {
            rec.removed_temp.push(self.home.join(n));
        }
        for id in self.layer_ids()? {
            let path = self.home.join(&id);
            let Ok(fd) = open_dir_at(&self.home_fd, &id, &path) else {
                continue;
            };
            // First: an exchange a crash interrupted (its trees are not temporary names).
            ovlink_driver::rename::recover_exchanges(
                &self.home_fd,
                &id,
                (&fd, &path),
                &[DIFF],
                self.durable,
            )?;
            for n in reap_temp_dirs(&fd, &path, &[TMP_DIFF_PREFIX])? {
                rec.removed_temp.push(path.join(n));
            }
            let Ok(lid) = self.read_link_id(&fd, &path) else {
                continue;
            };
            if ovlink_fs::at::exists_at(&self.link_fd, &lid) {
                continue;
            }
            // Locked: a remove holds the lock from unlinking the link to renaming the layer.
            if let Some(_lock) = DirLock::try_lock(fd, &path)? {
                if is_dir_at(&self.home_fd, &id) {
                    self.make_link(&id, &lid)?;
                    rec.relinked.push(id);
                }
            }
        }
        let mut names = Vec::new();
        {
            let lpath = self.home.join(LINK_DIR);
            let it = rustix::fs::Dir::read_from(&self.link_fd).ctx("read directory", &lpath)?;
            for ent in it {
                let ent = ent.ctx("read directory", &lpath)?;
                let n = ent.file_name().to_bytes();
                if n != b"." && n != b".." {
                    names.push(String::from_utf8_lossy(n).into_owned());
                }
            }
        }
        for n in names {
            let Ok(target) = rustix::fs::readlinkat(&self.link_fd, n.as_str(), Vec::new()) else {
                continue;
            };
            if let Some(id) = id_of_link_target(target.as_bytes()) {
                if validate_id(&id).is_ok() && !is_dir_at(&self.home_fd, &id) {
                    let _ = rustix::fs::unlinkat(&self.link_fd, n.as_str(), AtFlags::empty());
                    rec.dangling_removed.push(n);
                }
            }
        }
        Ok(rec)
    }

    /// Docker's `Native Overlay Diff` check, run in the home ([`crate::nativediff`]);
    /// `extra` mount options are for tests (`redirect_dir=on`).
    pub fn native_diff(&self, extra: &[&str]) -> Result<crate::nativediff::NativeDiff> {
        crate::nativediff::check(&self.home_fd, &self.home, extra)
    }

    /// Which diff the [`Driver`] diff methods make (set at init).
    pub fn diff_mode(&self) -> ovlink_driver::DiffMode {
        self.diff_mode
    }

    /// Warnings found at init (for `status`).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The overlay features this kernel turns on by default (and that mounts turn off).
    pub fn features(&self) -> &OverlayFeatures {
        &self.features
    }

    /// The short id of layer `id` (the content of its `link` file).
    pub fn link_id(&self, id: &str) -> Result<String> {
        let fd = self.open_layer(id)?;
        self.read_link_id(&fd, &self.home.join(id))
    }

    /// The lower layers of `id`, nearest first, resolved to layer ids through `l/`.
    pub fn lower_ids(&self, id: &str) -> Result<Vec<String>> {
        let fd = self.open_layer(id)?;
        let lowers = self.read_lowers(&fd, &self.home.join(id))?;
        lowers.iter().map(|l| self.resolve_lower(l)).collect()
    }

    /// The parent of layer `id` (its nearest lower), if any.
    pub fn parent(&self, id: &str) -> Result<Option<String>> {
        Ok(self.lower_ids(id)?.into_iter().next())
    }

    fn layer_ids(&self) -> Result<Vec<String>> {
        let mut ids = Vec::new();
        let it = rustix::fs::Dir::read_from(&self.home_fd).ctx("read directory", &self.home)?;
        for ent in it {
            let ent = ent.ctx("read directory", &self.home)?;
            let n = ent.file_name().to_bytes();
            if n.starts_with(b".") || n == LINK_DIR.as_bytes() {
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

    fn check_id(id: &str) -> Result<()> {
        validate_id(id)?;
        if id == LINK_DIR {
            return Err(DriverError::InvalidLayerId {
                id: id.to_string(),
                reason: "'l' is overlay2's short-link directory",
            });
        }
        Ok(())
    }

    fn open_layer(&self, id: &str) -> Result<OwnedFd> {
        Self::check_id(id)?;
        match open_dir_at(&self.home_fd, id, &self.home.join(id)) {
            Ok(fd) => Ok(fd),
            Err(e) if e.raw_os_error() == Some(Errno::NOENT.raw_os_error()) => {
                Err(DriverError::LayerNotFound { id: id.to_string() })
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Locks layer `id` and checks it is still in place (a remove may have raced us).
    fn lock_layer(&self, id: &str) -> Result<(OwnedFd, DirLock)> {
        let fd = self.open_layer(id)?;
        ovlink_driver::lock::lock_layer_dir(&self.home_fd, &self.home, id, fd)
    }

    fn read_small(fd: &OwnedFd, name: &str, shown: &Path) -> Result<Option<String>> {
        let f = match rustix::fs::openat(
            fd,
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
            .take(64 * 1024)
            .read_to_string(&mut s)
            .ctx("read", shown)?;
        Ok(Some(s.trim_end_matches('\n').to_string()))
    }

    fn read_link_id(&self, fd: &OwnedFd, layer: &Path) -> Result<String> {
        let shown = layer.join(LINK);
        match Self::read_small(fd, LINK, &shown)? {
            Some(s) if shortid::is_valid(&s) => Ok(s),
            Some(_) => Err(DriverError::WrongKind {
                id: layer_name(layer),
                is: "a layer with a malformed link file",
                needs: "a short id of letters and digits",
            }),
            None => Err(DriverError::WrongKind {
                id: layer_name(layer),
                is: "an incomplete layer (no link file)",
                needs: "a complete overlay2 layer",
            }),
        }
    }

    /// The `lower` file's entries (`l/XXX`), nearest first; empty for a bottom layer.
    fn read_lowers(&self, fd: &OwnedFd, layer: &Path) -> Result<Vec<String>> {
        let shown = layer.join(LOWER);
        let Some(s) = Self::read_small(fd, LOWER, &shown)? else {
            return Ok(Vec::new());
        };
        let mut v = Vec::new();
        for part in s.split(':') {
            match part.strip_prefix("l/") {
                Some(l) if shortid::is_valid(l) => v.push(part.to_string()),
                _ => {
                    return Err(DriverError::WrongKind {
                        id: layer_name(layer),
                        is: "a layer with a malformed lower file",
                        needs: "entries of the form l/<short id>",
                    })
                }
            }
        }
        Ok(v)
    }

    /// `l/XXX` -> the layer id its link points into.
    fn resolve_lower(&self, lower: &str) -> Result<String> {
        let name = lower.strip_prefix("l/").unwrap_or(lower);
        let shown = self.home.join(lower);
        let target =
            rustix::fs::readlinkat(&self.link_fd, name, Vec::new()).ctx("read link", &shown)?;
        id_of_link_target(target.as_bytes())
            .filter(|id| validate_id(id).is_ok())
            .ok_or_else(|| DriverError::WrongKind {
                id: lower.to_string(),
                is: "a short link not of the form ../<id>/diff",
                needs: "a link into a layer's diff/ (a valid layer id)",
            })
    }

    fn chown_root<Fd: AsFd>(&self, fd: Fd, shown: &Path) -> Result<()> {
        if let Some((u, g)) = self.root_ids {
            rustix::fs::fchown(fd, Some(uid(u)), Some(gid(g))).ctx("change owner of", shown)?;
        }
        Ok(())
    }

    fn mkdir_exact(&self, dir: &OwnedFd, name: &str, mode: u32, shown: &Path) -> Result<OwnedFd> {
        rustix::fs::mkdirat(dir, name, Mode::from_raw_mode(0o700))
            .ctx("create directory", shown)?;
        let fd = open_dir_at(dir, name, shown)?;
        self.chown_root(&fd, shown)?;
        rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode)).ctx("change mode of", shown)?;
        Ok(fd)
    }

    fn write_file(
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
        std::fs::File::from(fd)
            .write_all(content)
            .ctx("write", shown)?;
        Ok(())
    }

    fn sync_dir(&self, fd: &OwnedFd, shown: &Path) -> Result<()> {
        if self.durable {
            rustix::fs::fsync(fd).ctx("fsync", shown)?;
        }
        Ok(())
    }

    fn make_link(&self, id: &str, lid: &str) -> Result<()> {
        let target = format!("../{id}/{DIFF}");
        rustix::fs::symlinkat(target.as_str(), &self.link_fd, lid)
            .ctx("create short link", self.home.join(LINK_DIR).join(lid))?;
        Ok(())
    }

    fn create_layer(
        &self,
        id: &str,
        parent: Option<&str>,
        opts: &CreateOpts,
        rw: bool,
    ) -> Result<()> {
        let (tmp, lid) = self.build_layer(id, parent, opts, rw)?;
        self.publish(tmp, id, &lid)
    }

    /// Builds layer `id` in a locked `.tmp-create-*` of the home; returns it and its short id.
    fn build_layer(
        &self,
        id: &str,
        parent: Option<&str>,
        opts: &CreateOpts,
        rw: bool,
    ) -> Result<(TempDir, String)> {
        Self::check_id(id)?;
        if let Some(p) = parent {
            Self::check_id(p)?;
        }
        if let Some((k, v)) = opts.storage_opt.iter().next() {
            return Err(DriverError::StorageOptNotSupported {
                option: format!("{k}={v}"),
            });
        }
        if let Some(label) = opts.mount_label.as_deref().filter(|l| !l.is_empty()) {
            dmount::label_option(label)?;
        }
        if ovlink_fs::at::exists_at(&self.home_fd, id) {
            return Err(DriverError::LayerExists { id: id.to_string() });
        }
        let lower = match parent {
            None => None,
            Some(p) => {
                let pfd = self.open_layer(p).map_err(|e| match e {
                    DriverError::LayerNotFound { .. } => DriverError::ParentNotFound {
                        id: id.to_string(),
                        parent: p.to_string(),
                    },
                    e => e,
                })?;
                let ppath = self.home.join(p);
                let mut lowers = vec![format!("l/{}", self.read_link_id(&pfd, &ppath)?)];
                lowers.extend(self.read_lowers(&pfd, &ppath)?);
                if lowers.len() > MAX_LOWERS {
                    return Err(DriverError::Unsupported {
                        what: "a layer with more than 128 lower layers (overlay2's max depth)",
                    });
                }
                Some(lowers.join(":"))
            }
        };
        let tmp = TempDir::new(&self.home_fd, &self.home, ".tmp-create-", 0o710)?;
        let tp = tmp.path();
        self.chown_root(tmp.fd(), &tp)?;
        let dir = tmp.fd();
        self.mkdir_exact(dir, DIFF, 0o755, &tp.join(DIFF))?;
        let lid = shortid::generate();
        Self::write_file(dir, LINK, lid.as_bytes(), 0o644, &tp.join(LINK))?;
        if let Some(lower) = &lower {
            self.mkdir_exact(dir, WORK, 0o700, &tp.join(WORK))?;
            Self::write_file(dir, LOWER, lower.as_bytes(), 0o644, &tp.join(LOWER))?;
        }
        if rw {
            match rustix::fs::fsetxattr(dir, RW_XATTR, b"1", rustix::fs::XattrFlags::empty()) {
                Ok(()) | Err(Errno::NOTSUP) => {}
                Err(e) => return Err(FsError::io("set xattr on", &tp, e).into()),
            }
        }
        self.sync_dir(dir, &tp)?;
        Ok((tmp, lid))
    }

    /// Renames a layer built aside to `id` (no-replace: `LayerExists` when another process
    /// made `id` first; theirs is kept) and makes its short link.
    fn publish(&self, tmp: TempDir, id: &str, lid: &str) -> Result<()> {
        match tmp.rename_noreplace(&self.renamer, OsStr::new(id), Claim::LockDir) {
            Ok(()) => {}
            Err((_tmp, Errno::EXIST)) | Err((_tmp, Errno::NOTEMPTY)) => {
                return Err(DriverError::LayerExists { id: id.to_string() })
            }
            Err((_tmp, e)) => {
                return Err(FsError::io("rename into place", self.home.join(id), e).into())
            }
        }
        if let Err(e) = self.make_link(id, lid) {
            let _ = self.remove(id);
            return Err(e);
        }
        self.sync_dir(&self.link_fd, &self.home.join(LINK_DIR))?;
        self.sync_dir(&self.home_fd, &self.home)?;
        Ok(())
    }

    /// Turns ENOSPC into [`DriverError::NoSpace`] saying which resource ran out. Called while
    /// the failed work is still on disk, so the numbers show the moment of failure.
    fn classify(&self, e: DriverError) -> DriverError {
        if errno_of(&e) != Some(Errno::NOSPC.raw_os_error()) {
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
                "; remove unused layers ('ovlink layer rm') or reformat with more inodes \
                 (mkfs.ext4 -N or -i)",
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

    fn kind_of(&self, fd: &OwnedFd, layer: &Path) -> Result<LayerKind> {
        if !is_dir_at(fd, DIFF) || self.read_link_id(fd, layer).is_err() {
            return Ok(LayerKind::Incomplete);
        }
        let rw = ovlink_fs::xattr::get_fd(fd, OsStr::new(RW_XATTR), layer)?.is_some();
        if !rw {
            return Ok(LayerKind::Image);
        }
        let lowers = self.read_lowers(fd, layer)?;
        let lower_id = match lowers.first() {
            Some(l) => self.resolve_lower(l)?,
            None => String::new(),
        };
        Ok(LayerKind::Container { lower_id })
    }

    fn apply_into(
        &self,
        id: &str,
        (fd, lock): (&OwnedFd, &DirLock),
        path: &Path,
        diff: &mut dyn Read,
    ) -> Result<u64> {
        let dpath = path.join(DIFF);
        let dfd = open_dir_at(fd, DIFF, &dpath)?;
        let tmp = TempDir::new(fd, path, TMP_DIFF_PREFIX, 0o755)?;
        let tp = tmp.path();
        let res = (|| -> Result<u64> {
            copy_tree(
                dfd.as_fd(),
                tmp.fd().as_fd(),
                &dpath,
                &tp,
                CopyOptions::hardlink(),
            )?;
            let size = self.apply_tar(id, tmp.fd(), &tp, diff)?;
            if self.durable {
                rustix::fs::syncfs(tmp.fd()).ctx("syncfs", &tp)?;
            }
            self.renamer
                .exchange((fd, tmp.name()), (fd, path, lock), DIFF, self.durable)?;
            self.sync_dir(fd, path)?;
            Ok(size)
        })()
        .map_err(|e| self.classify(e));
        drop(tmp); // on success it holds the old diff/
        res
    }

    /// Applies a layer tar into the diff directory `tfd` (at `tp`), its AUFS whiteouts kept
    /// as overlay whiteouts; returns the size of its regular files.
    fn apply_tar(&self, id: &str, tfd: &OwnedFd, tp: &Path, diff: &mut dyn Read) -> Result<u64> {
        let topts = ovlink_tar::ApplyOptions {
            whiteouts: ovlink_tar::WhiteoutFormat::Overlay,
            ..Default::default()
        };
        ovlink_tar::apply_layer(tfd.as_fd(), tp, diff, &topts)
            .map(|stats| stats.size)
            .map_err(|source| DriverError::Apply {
                id: id.to_string(),
                source,
            })
    }

    /// `create` + `apply_diff` as one step: the layer is built and the tar applied in a
    /// `.tmp-create-*` that is renamed to `id` only when complete (see
    /// [`Driver::create_and_apply`]).
    fn create_and_apply_layer(
        &self,
        id: &str,
        parent: Option<&str>,
        diff: &mut dyn Read,
    ) -> Result<u64> {
        let (tmp, lid) = self.build_layer(id, parent, &CreateOpts::default(), false)?;
        let tp = tmp.path();
        let dfd = open_dir_at(tmp.fd(), DIFF, &tp.join(DIFF))?;
        let size = self.apply_tar(id, &dfd, &tp.join(DIFF), diff)?;
        if self.durable {
            rustix::fs::syncfs(&dfd).ctx("syncfs", tp.join(DIFF))?;
        }
        self.publish(tmp, id, &lid)?;
        Ok(size)
    }
}

/// The OS errno at the root of `e`, looking inside every kind of tar error too.
fn errno_of(e: &DriverError) -> Option<i32> {
    match e {
        DriverError::Apply { source, .. } => source.raw_os_error(),
        e => e.raw_os_error(),
    }
}

/// `../<id>/diff` -> `<id>`.
fn id_of_link_target(t: &[u8]) -> Option<String> {
    let s = std::str::from_utf8(t).ok()?;
    let id = s.strip_prefix("../")?.strip_suffix("/diff")?;
    (!id.contains('/') && !id.is_empty()).then(|| id.to_string())
}

fn layer_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn uid(u: u32) -> rustix::fs::Uid {
    rustix::fs::Uid::from_raw(u)
}
fn gid(g: u32) -> rustix::fs::Gid {
    rustix::fs::Gid::from_raw(g)
}

impl Driver for Overlay2Driver {
    fn name(&self) -> &'static str {
        "overlay2"
    }

    fn home(&self) -> &Path {
        &self.home
    }

    fn create(&self, id: &str, parent: Option<&str>, opts: &CreateOpts) -> Result<()> {
        self.create_layer(id, parent, opts, false)
            .map_err(|e| self.classify(e))
    }

    fn create_read_write(&self, id: &str, parent: Option<&str>, opts: &CreateOpts) -> Result<()> {
        self.create_layer(id, parent, opts, true)
            .map_err(|e| self.classify(e))
    }

    fn remove(&self, id: &str) -> Result<()> {
        let (fd, lock) = self.lock_layer(id)?;
        let path = self.home.join(id);
        for m in dmount::mounts_under(&path) {
            dmount::unmount(&m)?;
        }
        if let Ok(lid) = self.read_link_id(&fd, &path) {
            let ours = rustix::fs::readlinkat(&self.link_fd, lid.as_str(), Vec::new())
                .ok()
                .and_then(|t| id_of_link_target(t.as_bytes()))
                .is_some_and(|t| t == id);
            if ours {
                match rustix::fs::unlinkat(&self.link_fd, lid.as_str(), AtFlags::empty()) {
                    Ok(()) | Err(Errno::NOENT) => {}
                    Err(e) => {
                        return Err(FsError::io(
                            "remove short link",
                            self.home.join(LINK_DIR).join(&lid),
                            e,
                        )
                        .into())
                    }
                }
            }
        }
        let trash = format!(".tmp-remove-{}", random_suffix());
        rustix::fs::renameat(&self.home_fd, id, &self.home_fd, trash.as_str())
            .ctx("move aside for removal", &path)?;
        self.refs.forget(id);
        self.sync_dir(&self.home_fd, &self.home)?;
        ovlink_fs::remove_all_at(&self.home_fd, OsStr::new(&trash), &self.home.join(&trash))?;
        drop(lock);
        Ok(())
    }

    fn mount_spec(&self, id: &str, mount_label: Option<&str>) -> Result<Mount> {
        let fd = self.open_layer(id)?;
        let path = self.home.join(id);
        if !is_dir_at(&fd, DIFF) {
            return Err(DriverError::WrongKind {
                id: id.to_string(),
                is: "an incomplete layer",
                needs: "a layer with diff/",
            });
        }
        let lowers = self.read_lowers(&fd, &path)?;
        if lowers.is_empty() {
            return Ok(Mount {
                kind: "bind".into(),
                source: path.join(DIFF),
                options: vec!["rw".into(), "rbind".into()],
            });
        }
        let spec = MountSpec {
            home: &self.home,
            id,
            lowers: &lowers,
            features: &self.features,
            mount_label,
        };
        Ok(Mount {
            kind: "overlay".into(),
            source: PathBuf::from("overlay"),
            options: dmount::split_options(&mnt::absolute(&spec)?),
        })
    }

    fn parent(&self, id: &str) -> Result<Option<String>> {
        Overlay2Driver::parent(self, id)
    }

    fn usage(&self, id: &str) -> Result<Usage> {
        let parent = Overlay2Driver::parent(self, id)?;
        let dev = rustix::fs::fstat(&self.home_fd)
            .ctx("stat", &self.home)?
            .st_dev;
        // The layer directory and its short link in l/ (what `ovlink report` counts).
        let walk = |l: &str| -> Result<ovlink_fs::walk::Walk> {
            let mut w = ovlink_fs::walk::walk(
                self.home_fd.as_fd(),
                OsStr::new(l),
                &self.home.join(l),
                dev,
                false,
            )?;
            let lid = self.link_id(l)?;
            let lname = format!("{LINK_DIR}/{lid}");
            if let Ok(st) =
                rustix::fs::statat(&self.home_fd, lname.as_str(), AtFlags::SYMLINK_NOFOLLOW)
            {
                if st.st_dev == dev {
                    w.inodes
                        .insert(st.st_ino, (st.st_blocks as u64).saturating_mul(512));
                }
            }
            Ok(w)
        };
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
        if !is_dir_at(&fd, DIFF) {
            return Err(DriverError::WrongKind {
                id: id.to_string(),
                is: "an incomplete layer",
                needs: "a layer with diff/",
            });
        }
        let lowers = self.read_lowers(&fd, &path)?;
        if lowers.is_empty() {
            return Ok(path.join(DIFF));
        }
        let (fd, _lock) = self.lock_layer(id)?;
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
            Err(e) => {
                return Err(undo(
                    self.classify(FsError::io("create directory", &merged, e).into()),
                ))
            }
        }
        if let Err(e) = open_dir_at(&fd, MERGED, &merged).and_then(|m| {
            if let Some((u, g)) = self.root_ids {
                rustix::fs::fchown(&m, Some(uid(u)), Some(gid(g)))
                    .ctx("change owner of", &merged)?;
            }
            rustix::fs::fchmod(&m, Mode::from_raw_mode(0o700)).ctx("change mode of", &merged)
        }) {
            return Err(undo(e.into()));
        }
        let spec = MountSpec {
            home: &self.home,
            id,
            lowers: &lowers,
            features: &self.features,
            mount_label,
        };
        let plan = match mnt::plan(&spec) {
            Ok(p) => p,
            Err(e) => return Err(undo(e)),
        };
        if let Err(e) = mnt::mount(&spec, self.home_fd.as_fd(), &plan) {
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
        let path = self.home.join(id);
        if self.read_lowers(&fd, &path)?.is_empty() {
            return Ok(());
        }
        let (fd, _lock) = self.lock_layer(id)?;
        let merged = path.join(MERGED);
        if !self.refs.release(id, &merged) {
            return Ok(());
        }
        dmount::unmount(&merged)?;
        match rustix::fs::unlinkat(&fd, MERGED, AtFlags::REMOVEDIR) {
            Ok(()) | Err(Errno::NOENT) => Ok(()),
            Err(e) => Err(FsError::io("remove directory", &merged, e).into()),
        }
    }

    fn exists(&self, id: &str) -> bool {
        Self::check_id(id).is_ok() && is_dir_at(&self.home_fd, id)
    }

    fn apply_diff(&self, id: &str, parent: Option<&str>, diff: &mut dyn Read) -> Result<u64> {
        if let Some(p) = parent {
            Self::check_id(p)?;
        }
        let (fd, lock) = self.lock_layer(id)?;
        let path = self.home.join(id);
        if !is_dir_at(&fd, DIFF) {
            return Err(DriverError::WrongKind {
                id: id.to_string(),
                is: "an incomplete layer",
                needs: "a layer with diff/",
            });
        }
        let res = self.apply_into(id, (&fd, &lock), &path, diff);
        drop(lock);
        res?;
        crate::diff::dir_size(id, &path.join(DIFF))
    }

    fn create_and_apply(&self, id: &str, parent: Option<&str>, diff: &mut dyn Read) -> Result<u64> {
        self.create_and_apply_layer(id, parent, diff)
            .map_err(|e| self.classify(e))?;
        crate::diff::dir_size(id, &self.home.join(id).join(DIFF))
    }

    fn status(&self) -> Vec<(String, String)> {
        let mut v = vec![
            ("Backing Filesystem".to_string(), self.backing_fs.clone()),
            ("Supports d_type".to_string(), self.d_type.to_string()),
        ];
        // Computed as Docker does (a test mount with the kernel's defaults), each time.
        let (native, why) = match self.native_diff(&[]) {
            Ok(crate::nativediff::NativeDiff::Native) => (true, None),
            Ok(crate::nativediff::NativeDiff::Naive(why)) => (false, Some(why)),
            Err(e) => (false, Some(e.to_string())),
        };
        v.push(("Native Overlay Diff".to_string(), native.to_string()));
        if let Some(why) = why {
            v.push((
                "Warning".to_string(),
                format!("Docker would not use the native diff for overlay2 here: {why}"),
            ));
        }
        let off = self.features.off_options();
        if !off.is_empty() {
            v.push(("Mount options added".to_string(), off.join(",")));
        }
        for w in &self.warnings {
            v.push(("Warning".to_string(), w.clone()));
        }
        v
    }

    fn metadata(&self, id: &str) -> Result<BTreeMap<String, String>> {
        let fd = self.open_layer(id)?;
        let path = self.home.join(id);
        if let LayerKind::Incomplete = self.kind_of(&fd, &path)? {
            return Err(DriverError::WrongKind {
                id: id.to_string(),
                is: "an incomplete layer",
                needs: "a layer with diff/ and link",
            });
        }
        let s = |p: PathBuf| p.to_string_lossy().into_owned();
        let mut m = BTreeMap::new();
        m.insert("WorkDir".into(), s(path.join(WORK)));
        m.insert("MergedDir".into(), s(path.join(MERGED)));
        m.insert("UpperDir".into(), s(path.join(DIFF)));
        let lowers = self.read_lowers(&fd, &path)?;
        if !lowers.is_empty() {
            let dirs: Result<Vec<String>> = lowers
                .iter()
                .map(|l| Ok(s(self.home.join(self.resolve_lower(l)?).join(DIFF))))
                .collect();
            m.insert("LowerDir".into(), dirs?.join(":"));
        }
        Ok(m)
    }

    fn cleanup(&self) -> Result<()> {
        dmount::unmount_all_under(&self.home)?;
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
            let mounted = dmount::is_overlay_mounted(&path.join(MERGED));
            out.push(LayerInfo { id, kind, mounted });
        }
        Ok(out)
    }

    fn layer_kind(&self, id: &str) -> Result<LayerKind> {
        let fd = self.open_layer(id)?;
        self.kind_of(&fd, &self.home.join(id))
    }

    fn diff(&self, id: &str, parent: Option<&str>, out: &mut dyn Write) -> Result<()> {
        crate::diff::diff(self, id, parent, out).map_err(|e| self.classify(e))
    }

    fn changes(&self, id: &str, parent: Option<&str>) -> Result<Vec<ovlink_driver::Change>> {
        crate::diff::changes(self, id, parent)
    }

    fn diff_size(&self, id: &str, parent: Option<&str>) -> Result<u64> {
        crate::diff::diff_size(self, id, parent)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn link_targets() {
        assert_eq!(id_of_link_target(b"../abc/diff"), Some("abc".into()));
        assert_eq!(id_of_link_target(b"../a/b/diff"), None);
        assert_eq!(id_of_link_target(b"/abs/diff"), None);
        assert_eq!(id_of_link_target(b"../abc/root"), None);
    }
}
