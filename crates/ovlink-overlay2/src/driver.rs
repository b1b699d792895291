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
use ovlink_driver::diffplan::DiffPlan;
use ovlink_driver::error::{DriverError, Result};
use ovlink_driver::home::{Home, MERGED, WORK};
use ovlink_driver::lock::{DirLock, TempDir};
use ovlink_driver::{
    validate_id, Capabilities, CreateOpts, Driver, InitConfig, LayerKind, Layout, Mount, Usage,
};
use ovlink_fs::at::{is_dir_at, open_dir_at};
use ovlink_fs::error::Context;
use ovlink_fs::{copy_tree, CopyOptions, FsError};
use rustix::fd::{AsFd, OwnedFd};
use rustix::fs::{AtFlags, Mode};
use rustix::io::Errno;
use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Names inside the home and a layer directory.
pub const LINK_DIR: &str = "l";
pub(crate) const DIFF: &str = "diff";
const LINK: &str = "link";
const LOWER: &str = "lower";
/// The xattr that marks a layer made by `create_read_write`.
pub const RW_XATTR: &str = "trusted.ovlink.rw";

const TMP_DIFF_PREFIX: &str = "tmpdiff-";
/// Prefix of the mount point of a diff's read-only view of a layer (`<home>/.tmp-view-*`).
const TMP_VIEW_PREFIX: &str = ".tmp-view-";

/// The overlay2 driver, on a [`Home`]. See the crate docs for the layout.
#[derive(Debug)]
pub struct Overlay2Driver {
    h: Home,
    link_fd: OwnedFd,
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
    /// What could not be cleaned up (reported, never an error; the next init tries again).
    pub warnings: Vec<String>,
}

impl Overlay2Driver {
    /// Initializes the driver: the home's checks and creation ([`Home::init`]: nothing is
    /// created when a check refuses; a fresh home gets a test mount with two lowerdirs, what
    /// decides support: a kernel release before 4.0 is only warned about, since RHEL 7's
    /// 3.10.0-514+ has several lowerdirs), `l/` (0700), and crash recovery.
    pub fn init(cfg: &InitConfig) -> Result<Self> {
        let h = Home::init(cfg, Layout::Overlay2, &[LINK_DIR])?;
        let lpath = h.path().join(LINK_DIR);
        if ovlink_fs::at::mkdir_at(h.fd(), LINK_DIR, 0o700, &lpath)? {
            let fd = open_dir_at(h.fd(), LINK_DIR, &lpath)?;
            h.chown_layer_dir(&fd, &lpath)?;
            rustix::fs::fchmod(&fd, Mode::from_raw_mode(0o700)).ctx("change mode of", &lpath)?;
        }
        let link_fd = open_dir_at(h.fd(), LINK_DIR, &lpath)?;
        let mut driver = Overlay2Driver { h, link_fd };
        // Recovery that cannot finish (a read-only remount, a leftover it cannot reap) must
        // not stop every command: it is reported (status, and the CLI prints it) and runs
        // again at the next init.
        let rec = driver.recover().map(|r| r.warnings);
        driver.h.warn_recovery(rec);
        Ok(driver)
    }

    /// Removes temporary directories of dead processes, re-creates short links a crash left
    /// missing and removes links whose layer is gone. Safe while other processes use the home.
    pub fn recover(&self) -> Result<Recovery> {
        let mut rec = Recovery::default();
        self.h.reap(&[], &mut rec.removed_temp, &mut rec.warnings);
        for id in self.h.layer_ids()? {
            let path = self.h.path().join(&id);
            let Some(fd) = self.h.recover_layer(
                &id,
                &[DIFF],
                &[TMP_DIFF_PREFIX],
                &mut rec.removed_temp,
                &mut rec.warnings,
            )?
            else {
                continue;
            };
            let Ok(lid) = self.read_link_id(&fd, &path) else {
                continue;
            };
            if ovlink_fs::at::exists_at(&self.link_fd, &lid) {
                continue;
            }
            // Locked: a remove holds the lock from unlinking the link to renaming the layer.
            if let Some(_lock) = DirLock::try_lock(fd, &path)? {
                if is_dir_at(self.h.fd(), &id) {
                    self.make_link(&id, &lid)?;
                    rec.relinked.push(id);
                }
            }
        }
        let mut names = Vec::new();
        {
            let lpath = self.h.path().join(LINK_DIR);
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
                if validate_id(&id).is_ok() && !is_dir_at(self.h.fd(), &id) {
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
        crate::nativediff::check(self.h.fd(), self.h.path(), extra)
    }

    /// Which diff the [`Driver`] diff methods make (set at init).
    pub fn diff_mode(&self) -> ovlink_driver::DiffMode {
        self.h.diff_mode()
    }

    /// The home this layout sits on.
    pub fn home_dir(&self) -> &Home {
        &self.h
    }

    /// The short id of layer `id` (the content of its `link` file).
    pub fn link_id(&self, id: &str) -> Result<String> {
        let fd = self.h.open_layer(id)?;
        self.read_link_id(&fd, &self.h.path().join(id))
    }

    /// The lower layers of `id`, nearest first, resolved to layer ids through `l/`.
    pub fn lower_ids(&self, id: &str) -> Result<Vec<String>> {
        let fd = self.h.open_layer(id)?;
        let lowers = self.read_lowers(&fd, &self.h.path().join(id))?;
        lowers.iter().map(|l| self.resolve_lower(l)).collect()
    }

    /// The parent of layer `id` (its nearest lower), if any.
    pub fn parent(&self, id: &str) -> Result<Option<String>> {
        Ok(self.lower_ids(id)?.into_iter().next())
    }

    fn read_link_id(&self, fd: &OwnedFd, layer: &Path) -> Result<String> {
        let shown = layer.join(LINK);
        match Home::read_small(fd, LINK, 64 * 1024, &shown)? {
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
        let Some(s) = Home::read_small(fd, LOWER, 64 * 1024, &shown)? else {
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
        let shown = self.h.path().join(lower);
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

    fn make_link(&self, id: &str, lid: &str) -> Result<()> {
        let target = format!("../{id}/{DIFF}");
        rustix::fs::symlinkat(target.as_str(), &self.link_fd, lid)
            .ctx("create short link", self.h.path().join(LINK_DIR).join(lid))?;
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
        self.build_layer_on(id, parent, opts, rw, None)
    }

    /// [`Self::build_layer`], staged ([`crate::staging`]) when `staged` is given: the parent
    /// may then be the layer staged just before (`staged`'s `Some`), whose `link` and `lower`
    /// are read in its temporary directory, and the new directory is not synced (the
    /// staging's one flush covers it).
    pub(crate) fn build_layer_on(
        &self,
        id: &str,
        parent: Option<&str>,
        opts: &CreateOpts,
        rw: bool,
        staged: Option<Option<&TempDir>>,
    ) -> Result<(TempDir, String)> {
        self.h.check_create(id, parent, opts)?;
        let lower = match parent {
            None => None,
            Some(p) => {
                let (pfd, ppath) = match staged.flatten() {
                    Some(t) => (rustix::io::dup(t.fd()).ctx("dup", t.path())?, t.path()),
                    None => (self.h.open_parent(id, p)?, self.h.path().join(p)),
                };
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
        let tmp = self.h.create_temp()?;
        let tp = tmp.path();
        let dir = tmp.fd();
        self.h.mkdir_exact(dir, DIFF, 0o755, &tp.join(DIFF))?;
        let lid = shortid::generate();
        self.h
            .write_file(dir, LINK, lid.as_bytes(), 0o644, &tp.join(LINK))?;
        if let Some(lower) = &lower {
            self.h.mkdir_exact(dir, WORK, 0o700, &tp.join(WORK))?;
            self.h
                .write_file(dir, LOWER, lower.as_bytes(), 0o644, &tp.join(LOWER))?;
        }
        if rw {
            match rustix::fs::fsetxattr(dir, RW_XATTR, b"1", rustix::fs::XattrFlags::empty()) {
                Ok(()) | Err(Errno::NOTSUP) => {}
                Err(e) => return Err(FsError::io("set xattr on", &tp, e).into()),
            }
        }
        if staged.is_none() {
            self.h.sync_dir(dir, &tp)?;
        }
        Ok((tmp, lid))
    }

    /// Publishes a layer built aside under `id` ([`Home::publish`]) and makes its short link.
    fn publish(&self, tmp: TempDir, id: &str, lid: &str) -> Result<()> {
        self.h.publish(tmp, id)?;
        self.link_published(id, lid)?;
        self.sync_links()
    }

    /// Makes the short link of layer `id`, just published; removes the layer if it cannot.
    pub(crate) fn link_published(&self, id: &str, lid: &str) -> Result<()> {
        if let Err(e) = self.make_link(id, lid) {
            let _ = self.remove(id);
            return Err(e);
        }
        Ok(())
    }

    /// Syncs the short-link directory `l/`.
    pub(crate) fn sync_links(&self) -> Result<()> {
        self.h
            .sync_dir(&self.link_fd, &self.h.path().join(LINK_DIR))
    }

    /// The view of layer `id` a diff reads, writing into no layer: its `diff/` when nothing
    /// is below it, else a read-only overlay of its `diff/` over its lowers
    /// ([`mnt::mount_view`]) in a temporary directory of the home that `plan` keeps and
    /// unmounts. (A `get` would mount the layer read-write with its `diff/` as the upper dir,
    /// and the kernel would write its own xattrs into an image layer.)
    pub(crate) fn read_only_view(&self, plan: &mut DiffPlan<'_>, id: &str) -> Result<PathBuf> {
        let (fd, path, lowers) = self.complete_layer(id)?;
        if lowers.is_empty() {
            return Ok(path.join(DIFF));
        }
        let own = format!("{LINK_DIR}/{}", self.read_link_id(&fd, &path)?);
        let layers: Vec<String> = std::iter::once(own).chain(lowers).collect();
        let tmp = self.h.temp_dir(TMP_VIEW_PREFIX, 0o700)?;
        let target = tmp.path();
        plan.temps.push(tmp);
        mnt::mount_view(
            self.h.path(),
            self.h.fd().as_fd(),
            &layers,
            self.h.features(),
            Path::new(target.file_name().unwrap_or_default()),
        )?;
        plan.views.push(target.clone());
        Ok(target)
    }

    /// Layer `id` opened (its fd and path), refused unless it has its `diff/`, and its
    /// lowers (`l/XXX`, nearest first).
    fn complete_layer(&self, id: &str) -> Result<(OwnedFd, PathBuf, Vec<String>)> {
        let fd = self.h.open_layer(id)?;
        let path = self.h.path().join(id);
        if !is_dir_at(&fd, DIFF) {
            return Err(DriverError::incomplete(id, "a layer with diff/"));
        }
        let lowers = self.read_lowers(&fd, &path)?;
        Ok((fd, path, lowers))
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
            if self.h.flush_data() {
                rustix::fs::syncfs(tmp.fd()).ctx("syncfs", &tp)?;
            }
            self.h.renamer().exchange(
                (fd, tmp.name()),
                (fd, path, lock),
                DIFF,
                self.h.durable(),
            )?;
            self.h.sync_dir(fd, path)?;
            Ok(size)
        })()
        .map_err(|e| self.h.classify(e));
        drop(tmp); // on success it holds the old diff/
        res
    }

    /// Applies a layer tar into the diff directory `tfd` (at `tp`), its AUFS whiteouts kept
    /// as overlay whiteouts; returns the size of its regular files.
    pub(crate) fn apply_tar(
        &self,
        id: &str,
        tfd: &OwnedFd,
        tp: &Path,
        diff: &mut dyn Read,
    ) -> Result<u64> {
        let topts = ovlink_tar::ApplyOptions {
            whiteouts: ovlink_tar::WhiteoutFormat::Overlay,
            // The layer's one syncfs finds its large files already written back.
            start_writeback: self.h.flush_data(),
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
        if self.h.flush_data() {
            rustix::fs::syncfs(&dfd).ctx("syncfs", tp.join(DIFF))?;
        }
        self.publish(tmp, id, &lid)?;
        Ok(size)
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

impl Driver for Overlay2Driver {
    ovlink_driver::driver_on_home!();

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            layout: Layout::Overlay2,
            max_lowers: MAX_LOWERS,
            full_image_trees: false,
            native_diff: self.h.diff_mode() != ovlink_driver::DiffMode::Naive,
        }
    }

    fn create(&self, id: &str, parent: Option<&str>, opts: &CreateOpts) -> Result<()> {
        self.create_layer(id, parent, opts, false)
            .map_err(|e| self.h.classify(e))
    }

    fn create_read_write(&self, id: &str, parent: Option<&str>, opts: &CreateOpts) -> Result<()> {
        self.create_layer(id, parent, opts, true)
            .map_err(|e| self.h.classify(e))
    }

    fn remove(&self, id: &str) -> Result<()> {
        let (fd, lock) = self.h.lock_layer(id)?;
        let path = self.h.path().join(id);
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
                            self.h.path().join(LINK_DIR).join(&lid),
                            e,
                        )
                        .into())
                    }
                }
            }
        }
        // Gone at once (renamed to the shared trash prefix), then deleted before returning.
        self.h.trash(id, fd, lock)?.reclaim()
    }

    fn mount_spec(&self, id: &str, mount_label: Option<&str>) -> Result<Mount> {
        let fd = self.h.open_layer(id)?;
        let path = self.h.path().join(id);
        if !is_dir_at(&fd, DIFF) {
            return Err(DriverError::WrongKind {
                id: id.to_string(),
                is: "an incomplete layer",
                needs: "a layer with diff/",
            });
        }
        let lowers = self.read_lowers(&fd, &path)?;
        if lowers.is_empty() {
            return Ok(Mount::bind(path.join(DIFF)));
        }
        let spec = MountSpec {
            home: self.h.path(),
            id,
            lowers: &lowers,
            features: self.h.features(),
            mount_label,
        };
        Ok(Mount::overlay(&mnt::absolute(&spec)?))
    }

    fn parent(&self, id: &str) -> Result<Option<String>> {
        Overlay2Driver::parent(self, id)
    }

    fn usage(&self, id: &str) -> Result<Usage> {
        self.h.open_layer(id)?;
        let dev = self.h.dev()?;
        // The layer directory and its short link in l/ (what `ovlink report` counts).
        let walk = |l: &str| -> Result<ovlink_fs::walk::Walk> {
            let mut w = self.h.walk(l)?;
            let lid = self.link_id(l)?;
            let lname = format!("{LINK_DIR}/{lid}");
            if let Ok(st) =
                rustix::fs::statat(self.h.fd(), lname.as_str(), AtFlags::SYMLINK_NOFOLLOW)
            {
                if st.st_dev == dev {
                    w.inodes
                        .insert(st.st_ino, (st.st_blocks as u64).saturating_mul(512));
                }
            }
            Ok(w)
        };
        // No layer shares an inode with another in this layout (a layer holds its own
        // changes only): the parent is never walked, whatever its size.
        let own = walk(id)?;
        Ok(Home::added(&own, None))
    }

    fn get(&self, id: &str, mount_label: Option<&str>) -> Result<PathBuf> {
        let (_, path, lowers) = self.complete_layer(id)?;
        if lowers.is_empty() {
            return Ok(path.join(DIFF));
        }
        let (fd, _lock) = self.h.lock_layer(id)?;
        self.h.mount_merged(id, &fd, |_merged| {
            let spec = MountSpec {
                home: self.h.path(),
                id,
                lowers: &lowers,
                features: self.h.features(),
                mount_label,
            };
            let plan = mnt::plan(&spec)?;
            mnt::mount(&spec, self.h.fd().as_fd(), &plan)
        })
    }

    fn put(&self, id: &str) -> Result<()> {
        let fd = self.h.open_layer(id)?;
        let path = self.h.path().join(id);
        if self.read_lowers(&fd, &path)?.is_empty() {
            return Ok(());
        }
        let (fd, _lock) = self.h.lock_layer(id)?;
        self.h.unmount_merged(id, &fd)
    }

    fn apply_diff(&self, id: &str, parent: Option<&str>, diff: &mut dyn Read) -> Result<u64> {
        if let Some(p) = parent {
            self.h.check_id(p)?;
        }
        let (fd, lock) = self.h.lock_layer(id)?;
        let path = self.h.path().join(id);
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
        ovlink_driver::diffplan::dir_size(id, &path.join(DIFF))
    }

    fn create_and_apply(&self, id: &str, parent: Option<&str>, diff: &mut dyn Read) -> Result<u64> {
        self.create_and_apply_layer(id, parent, diff)
            .map_err(|e| self.h.classify(e))?;
        ovlink_driver::diffplan::dir_size(id, &self.h.path().join(id).join(DIFF))
    }

    fn staging(&self) -> Result<Box<dyn ovlink_driver::staging::Staging + '_>> {
        Ok(Box::new(crate::staging::Overlay2Staging::new(self)))
    }

    fn status(&self) -> Vec<(String, String)> {
        // Computed as Docker does (a test mount with the kernel's defaults), each time.
        let (native, why) = match self.native_diff(&[]) {
            Ok(crate::nativediff::NativeDiff::Native) => (true, None),
            Ok(crate::nativediff::NativeDiff::Naive(why)) => (false, Some(why)),
            Err(e) => (false, Some(e.to_string())),
        };
        let mut extra = vec![("Native Overlay Diff".to_string(), native.to_string())];
        if let Some(why) = why {
            extra.push((
                ovlink_driver::home::WARNING.to_string(),
                format!("Docker would not use the native diff for overlay2 here: {why}"),
            ));
        }
        self.h.status(extra)
    }

    fn metadata(&self, id: &str) -> Result<BTreeMap<String, String>> {
        let fd = self.h.open_layer(id)?;
        let path = self.h.path().join(id);
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
                .map(|l| Ok(s(self.h.path().join(self.resolve_lower(l)?).join(DIFF))))
                .collect();
            m.insert("LowerDir".into(), dirs?.join(":"));
        }
        Ok(m)
    }

    fn diff_plan(&self, id: &str, parent: Option<&str>) -> Result<DiffPlan<'_>> {
        self.plan_diff(id, parent)
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
