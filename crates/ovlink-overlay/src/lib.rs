//! The legacy `overlay` layout of Docker 20.10: hardlinked image layers and single-lowerdir
//! container layers, on the [`Home`] of `ovlink-driver`.
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
//! leaves the old state or the complete new one. The crate is split by operation, each module
//! an `impl OverlayDriver` block:
//!
//! | module | owns |
//! |---|---|
//! | [`create`] | `create`: `.tmp-create-*` in the home renamed to `<id>` (no-replace); the `-init` copy of an upper dir |
//! | [`apply`] | `apply_diff` and create-and-apply: `<id>/tmproot-*` (a hardlink copy of the parent's `root/` with the tar applied, synced per [`SyncMode`]) renamed or exchanged into `root/`; the apply through a mount onto a container parent |
//! | [`staging`] | an import's new layers built aside, each on the one before, made durable by one flush and published bottom first |
//! | [`mount`] | the one-lowerdir mount a container layer is, `get`/`put` |
//! | [`remove`] | `remove`: rename to the trash prefix, then reclaim now, in a thread or in another process |
//! | [`recover`] | what `init` finishes after a crash |
//! | [`diff`] | `diff`/`changes`/`diff_size`, natively from `upper/` |
//!
//! This crate never writes into a parent layer's tree and never follows a symlink below the
//! home (every path below the home is reached fd-relative, through `ovlink_fs::at`).
#![forbid(unsafe_code)]

pub mod apply;
pub mod create;
pub mod diff;
pub mod mount;
pub mod recover;
pub mod remove;
pub mod staging;

pub use ovlink_driver::SyncMode;
pub use recover::Recovery;

use ovlink_driver::diffplan::DiffPlan;
use ovlink_driver::home::{Home, MERGED, WORK};
use ovlink_driver::{
    validate_id, Capabilities, CreateOpts, Driver, DriverError, InitConfig, LayerKind, Layout,
    Mount, Result, Usage,
};
use ovlink_fs::at::is_dir_at;
use ovlink_fs::error::Context;
use ovlink_fs::FsError;
use rustix::fd::OwnedFd;
use rustix::fs::AtFlags;
use rustix::io::Errno;
use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

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

impl OverlayDriver {
    /// Initializes the driver: the home's checks and creation ([`Home::init`]: nothing is
    /// created when a check refuses), the `--symlinks` record, and crash recovery.
    pub fn init(cfg: &InitConfig) -> Result<Self> {
        let h = Home::init(cfg, Layout::Overlay, &[])?;
        let background = cfg.reclaim == ovlink_driver::ReclaimMode::Background;
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

    /// Which diff the [`Driver`] diff methods make (set at init).
    pub fn diff_mode(&self) -> ovlink_driver::DiffMode {
        self.h.diff_mode()
    }

    /// The home this layout sits on.
    pub fn home_dir(&self) -> &Home {
        &self.h
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
}

impl Driver for OverlayDriver {
    ovlink_driver::driver_on_home!();

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            layout: Layout::Overlay,
            max_lowers: 1,
            full_image_trees: true,
            native_diff: self.h.diff_mode() != ovlink_driver::DiffMode::Naive,
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
        self.remove_layer(id)
    }

    fn mount_spec(&self, id: &str, mount_label: Option<&str>) -> Result<Mount> {
        self.spec(id, mount_label)
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
        let fd = self.h.open_layer(id)?;
        let own = self.h.walk(id)?;
        // Only an image layer shares inodes with its parent (its `root/` is a hardlink copy
        // of the parent's), so only its walk subtracts the parent's. A container layer's
        // `upper/` holds new inodes only (a copy-up makes one): its usage never walks the
        // image below it, whatever its size (containerd's CRI asks it of every active
        // snapshot every 10 s).
        let below = match is_dir_at(&fd, ROOT) {
            true => match self.parent(id)? {
                Some(p) => Some(self.h.walk(&p)?),
                None => None,
            },
            false => None,
        };
        Ok(Home::added(&own, below.as_ref()))
    }

    fn get(&self, id: &str, mount_label: Option<&str>) -> Result<PathBuf> {
        self.get_layer(id, mount_label)
    }

    fn put(&self, id: &str) -> Result<()> {
        self.put_layer(id)
    }

    fn apply_diff(&self, id: &str, parent: Option<&str>, diff: &mut dyn Read) -> Result<u64> {
        self.apply_existing(id, parent, diff)
    }

    fn create_and_apply(&self, id: &str, parent: Option<&str>, diff: &mut dyn Read) -> Result<u64> {
        self.create_applied(id, parent, diff)
            .map_err(|e| self.h.classify(e))
    }

    fn staging(&self) -> Result<Box<dyn ovlink_driver::staging::Staging + '_>> {
        Ok(Box::new(staging::LegacyStaging::new(self)))
    }

    fn status(&self) -> Vec<(String, String)> {
        let symlinks = match self.symlinks {
            ovlink_fs::Specials::Link => "link (symlinks and special files shared between layers)",
            ovlink_fs::Specials::Copy => "copy (re-created in every layer, as Docker)",
        };
        self.h.status(vec![
            self.diff_status(),
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

    fn diff_plan(&self, id: &str, parent: Option<&str>) -> Result<DiffPlan<'_>> {
        self.plan_diff(id, parent)
    }
}

/// The file of the home that records its `--symlinks` mode.
pub const SYMLINKS_RECORD: &str = ".symlinks";

/// The recorded `--symlinks` mode of the home, `None` without a record.
fn read_symlinks_record(home_fd: &OwnedFd, home: &Path) -> Result<Option<ovlink_fs::Specials>> {
    let shown = home.join(SYMLINKS_RECORD);
    let Some(text) = Home::read_small(home_fd, SYMLINKS_RECORD, 64, &shown)? else {
        return Ok(None);
    };
    match ovlink_fs::Specials::parse(text.trim()) {
        Some(m) => Ok(Some(m)),
        None => Err(FsError::io("parse (expected `link` or `copy`)", &shown, Errno::INVAL).into()),
    }
}
