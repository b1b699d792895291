//! Publishing a finished tree with renames, on every kernel and filesystem: the one place that
//! calls `renameat2` with `RENAME_NOREPLACE` or `RENAME_EXCHANGE`, and its fallbacks. Both
//! layouts publish through [`Renamer`]; nothing else in ovlink passes a rename flag.
//!
//! `renameat2` does not exist before Linux 3.15 (`ENOSYS`, e.g. CentOS/RHEL 7 kernels that
//! lack the backport), and a filesystem without the flags answers `EINVAL` (xfs before 4.0,
//! many others before 4.9). The first call on a driver's home tries the flag; the answer is
//! remembered in the driver's [`Renamer`] (one home, one filesystem), so a process pays one
//! failed call at most per flag.
//!
//! The fallbacks keep the guarantees of the flags:
//!
//! - **no-replace** ([`Renamer::rename_noreplace`]): the target's absence is checked and the
//!   plain `renameat` made while an exclusive `flock` keeps every other ovlink publisher of that
//!   directory out ([`Claim`]: a fresh open of the home for `create`, or the layer lock the
//!   caller already holds for `apply`). A plain rename of a directory also fails with
//!   `ENOTEMPTY` over a non-empty directory, and every published layer is non-empty, so even a
//!   publisher that used the flag meanwhile can never be overwritten. A crash leaves nothing
//!   on disk (the `flock` dies with the process; the temporary tree is reaped as before).
//! - **exchange** ([`Renamer::exchange`]), under the layer lock, with `T` the target:
//!
//!   ```text
//!   1. rename FROM -> T.exchange-new   (FROM may be in a subdirectory, e.g. a staging dir)
//!                                       before the commit point: a crash keeps the old T
//!   2. create T.exchange (fsync'd)      the intent record: the commit point
//!   3. rename T -> T.exchange-old
//!   4. rename T.exchange-new -> T       T is the new tree again
//!   5. rename T.exchange-old -> FROM    FROM holds the old tree, as after RENAME_EXCHANGE
//!   6. unlink T.exchange
//!   ```
//!
//!   [`complete_exchange`] (init, under the layer lock, before temporary trees are reaped)
//!   finishes steps 3-6 when the intent exists and removes a stray `T.exchange-new` when it
//!   does not, so a crash leaves the old tree or the complete new one, never half of either.
//!   The cost: between steps 3 and 4 (two renames) `T` is absent for concurrent readers that
//!   do not take the layer lock; nothing reads a layer whose apply has not returned.
//!
//! This module never follows a symlink, never renames outside the directory it is given, and
//! never guesses: an error other than `ENOSYS`/`EINVAL` from the flags is the caller's.

use crate::error::Result;
use crate::lock::{DirLock, TempDir};
use ovlink_fs::error::Context;
use ovlink_fs::FsError;
use rustix::fd::OwnedFd;
use rustix::fs::{AtFlags, Mode, OFlags, RenameFlags};
use rustix::io::Errno;
use std::ffi::OsStr;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU8, Ordering};

/// Whether `renameat2` with one flag works on a filesystem.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FlagSupport {
    /// Not tried yet on this home.
    Unknown,
    /// `renameat2` with the flag works.
    Native,
    /// `ENOSYS`: the kernel has no `renameat2` (before 3.15); the fallback is used.
    NoSyscall,
    /// `EINVAL`: the filesystem does not support the flag; the fallback is used.
    NoFlag,
}

impl FlagSupport {
    fn from_u8(v: u8) -> Self {
        match v {
            1 => FlagSupport::Native,
            2 => FlagSupport::NoSyscall,
            3 => FlagSupport::NoFlag,
            _ => FlagSupport::Unknown,
        }
    }

    fn to_u8(self) -> u8 {
        match self {
            FlagSupport::Unknown => 0,
            FlagSupport::Native => 1,
            FlagSupport::NoSyscall => 2,
            FlagSupport::NoFlag => 3,
        }
    }

    /// The flag's answer to a call: `Some` when it says something about support.
    fn of_errno(e: Errno) -> Option<Self> {
        match e {
            Errno::NOSYS => Some(FlagSupport::NoSyscall),
            Errno::INVAL => Some(FlagSupport::NoFlag),
            _ => None,
        }
    }

    /// True unless the flag is known to be missing.
    fn worth_trying(self) -> bool {
        matches!(self, FlagSupport::Unknown | FlagSupport::Native)
    }

    /// For `ovlink check`: what it means.
    pub fn describe(self) -> &'static str {
        match self {
            FlagSupport::Unknown => "not tried yet",
            FlagSupport::Native => "yes",
            FlagSupport::NoSyscall => {
                "no (no renameat2 syscall: kernel before 3.15), fallback used"
            }
            FlagSupport::NoFlag => "no (EINVAL: the filesystem lacks it), fallback used",
        }
    }
}

/// Who keeps other publishers out while [`Renamer::rename_noreplace`] falls back to a checked
/// plain rename.
#[derive(Debug)]
pub enum Claim<'a> {
    /// Nobody yet: the fallback takes an exclusive `flock` on its own open of the directory
    /// (the home, for `create`: every ovlink create of a layer there takes the same lock).
    LockDir,
    /// The caller holds this lock on the directory itself (the layer lock, for `apply`).
    Held(&'a DirLock),
}

/// The rename flags of one home, tried once and remembered (see the module docs).
#[derive(Debug, Default)]
pub struct Renamer {
    noreplace: AtomicU8,
    exchange: AtomicU8,
}

impl Renamer {
    /// A renamer that has not tried anything yet.
    pub fn new() -> Self {
        Renamer::default()
    }

    /// What is known about `RENAME_NOREPLACE` here.
    pub fn noreplace(&self) -> FlagSupport {
        FlagSupport::from_u8(self.noreplace.load(Ordering::Relaxed))
    }

    /// What is known about `RENAME_EXCHANGE` here.
    pub fn exchange_support(&self) -> FlagSupport {
        FlagSupport::from_u8(self.exchange.load(Ordering::Relaxed))
    }

    fn learn(&self, which: &AtomicU8, s: FlagSupport) {
        which.store(s.to_u8(), Ordering::Relaxed);
        if s == FlagSupport::NoSyscall {
            // No syscall means no flag at all.
            self.noreplace.store(s.to_u8(), Ordering::Relaxed);
            self.exchange.store(s.to_u8(), Ordering::Relaxed);
        }
    }

    /// Tries both flags on two throw-away directories inside `dir` and remembers the answers
    /// (for `ovlink check`; the driver otherwise learns on first use).
    pub fn probe(&self, dir: &OwnedFd, dir_path: &Path) -> Result<(FlagSupport, FlagSupport)> {
        let tmp = TempDir::new(dir, dir_path, ".tmp-rename-probe-", 0o700)?;
        let tp = tmp.path();
        for d in ["a", "b"] {
            ovlink_fs::at::mkdir_at(tmp.fd(), d, 0o700, &tp.join(d))?;
        }
        let try_flag = |flags| rustix::fs::renameat_with(tmp.fd(), "a", tmp.fd(), "b", flags);
        let noreplace = match try_flag(RenameFlags::NOREPLACE) {
            Err(Errno::EXIST) | Err(Errno::NOTEMPTY) => FlagSupport::Native,
            Ok(()) => {
                // Replaced `b`: the flag was ignored, which no kernel does; say so plainly.
                return Err(FsError::io("probe RENAME_NOREPLACE in", &tp, Errno::INVAL).into());
            }
            Err(e) => FlagSupport::of_errno(e)
                .ok_or_else(|| FsError::io("probe RENAME_NOREPLACE in", &tp, e))?,
        };
        self.learn(&self.noreplace, noreplace);
        let exchange = match try_flag(RenameFlags::EXCHANGE) {
            Ok(()) => FlagSupport::Native,
            Err(e) => FlagSupport::of_errno(e)
                .ok_or_else(|| FsError::io("probe RENAME_EXCHANGE in", &tp, e))?,
        };
        self.learn(&self.exchange, exchange);
        Ok((self.noreplace(), self.exchange_support()))
    }

    /// Renames `from` to `to` inside `dir` unless `to` exists (`Err(EEXIST)` or
    /// `Err(ENOTEMPTY)` then, and nothing changed). `RENAME_NOREPLACE` where it works,
    /// otherwise a check and a plain rename under `claim`'s lock.
    pub fn rename_noreplace(
        &self,
        dir: &OwnedFd,
        from: &OsStr,
        to: &OsStr,
        claim: Claim<'_>,
    ) -> std::result::Result<(), Errno> {
        if self.noreplace().worth_trying() {
            match rustix::fs::renameat_with(dir, from, dir, to, RenameFlags::NOREPLACE) {
                Ok(()) => {
                    self.learn(&self.noreplace, FlagSupport::Native);
                    return Ok(());
                }
                Err(e) => match FlagSupport::of_errno(e) {
                    Some(s) => self.learn(&self.noreplace, s),
                    None => return Err(e),
                },
            }
        }
        let _lock = match claim {
            Claim::LockDir => {
                let fd = rustix::fs::openat(
                    dir,
                    ".",
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                    Mode::empty(),
                )?;
                let shown = std::path::Path::new(".");
                let lock = ovlink_fs::lock::FileLock::lock(fd, shown)
                    .map_err(|e| e.raw_os_error().map_or(Errno::IO, Errno::from_raw_os_error))?;
                Some(lock)
            }
            Claim::Held(lock) => {
                let (a, b) = (rustix::fs::fstat(lock.fd())?, rustix::fs::fstat(dir)?);
                if (a.st_dev, a.st_ino) != (b.st_dev, b.st_ino) {
                    // The caller's lock is on another directory: no exclusion, no rename.
                    return Err(Errno::INVAL);
                }
                None
            }
        };
        match rustix::fs::statat(dir, to, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(_) => return Err(Errno::EXIST),
            Err(Errno::NOENT) => {}
            Err(e) => return Err(e),
        }
        ovlink_fs::crash::point("noreplace.after-check");
        rustix::fs::renameat(dir, from, dir, to)
    }

    /// Swaps `from` (an entry of `from_dir`, on the same filesystem) and `target` inside
    /// `dir` (the layer directory, locked by `lock`): after it, `target` is the tree that was
    /// `from`, and `from` holds the old `target`. `RENAME_EXCHANGE` where it works, otherwise
    /// the intent-recorded renames of the module docs. `durable`: fsync the intent and `dir`.
    pub fn exchange(
        &self,
        (from_dir, from): (&OwnedFd, &OsStr),
        (dir, dir_path, lock): (&OwnedFd, &Path, &DirLock),
        target: &str,
        durable: bool,
    ) -> Result<()> {
        let shown = dir_path.join(target);
        if self.exchange_support().worth_trying() {
            match rustix::fs::renameat_with(from_dir, from, dir, target, RenameFlags::EXCHANGE) {
                Ok(()) => {
                    self.learn(&self.exchange, FlagSupport::Native);
                    return Ok(());
                }
                Err(e) => match FlagSupport::of_errno(e) {
                    Some(s) => self.learn(&self.exchange, s),
                    None => return Err(FsError::io("exchange into place", &shown, e).into()),
                },
            }
        }
        let (a, b) = (
            rustix::fs::fstat(lock.fd()).ctx("stat", dir_path)?,
            rustix::fs::fstat(dir).ctx("stat", dir_path)?,
        );
        if (a.st_dev, a.st_ino) != (b.st_dev, b.st_ino) {
            return Err(FsError::io(
                "exchange (the lock is not this layer's)",
                &shown,
                Errno::INVAL,
            )
            .into());
        }
        // A crashed exchange before us (its owner died while we waited for the lock).
        complete_exchange(dir, dir_path, target, durable)?;
        let n = Names::of(target);
        let sync_dir = |why| -> Result<()> {
            if durable {
                rustix::fs::fsync(dir).ctx(why, dir_path)?;
            }
            Ok(())
        };
        rustix::fs::renameat(from_dir, from, dir, n.new.as_str())
            .ctx("move aside for the exchange", dir_path.join(&n.new))?;
        ovlink_fs::crash::point("exchange.after-new");
        let intent = dir_path.join(&n.intent);
        let fd = rustix::fs::openat(
            dir,
            n.intent.as_str(),
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .ctx("create the exchange intent", &intent)?;
        let mut f = std::fs::File::from(fd);
        writeln!(f, "exchange {target} with {}", n.new).ctx("write", &intent)?;
        if durable {
            f.sync_all().ctx("fsync", &intent)?;
        }
        drop(f);
        sync_dir("fsync")?;
        ovlink_fs::crash::point("exchange.after-intent");
        rustix::fs::renameat(dir, target, dir, n.old.as_str()).ctx("move aside", &shown)?;
        ovlink_fs::crash::point("exchange.after-old");
        rustix::fs::renameat(dir, n.new.as_str(), dir, target).ctx("rename into place", &shown)?;
        ovlink_fs::crash::point("exchange.after-swap");
        rustix::fs::renameat(dir, n.old.as_str(), from_dir, from)
            .ctx("move the old tree aside", dir_path.join(&n.old))?;
        rustix::fs::unlinkat(dir, n.intent.as_str(), AtFlags::empty())
            .ctx("remove the exchange intent", &intent)?;
        sync_dir("fsync")?;
        Ok(())
    }
}

/// The names the exchange fallback uses next to `target`.
struct Names {
    intent: String,
    new: String,
    old: String,
}

impl Names {
    fn of(target: &str) -> Self {
        Names {
            intent: format!("{target}.exchange"),
            new: format!("{target}.exchange-new"),
            old: format!("{target}.exchange-old"),
        }
    }
}

/// True when `dir` holds what an interrupted exchange of `target` leaves (two `statat`s):
/// init then takes the layer lock and calls [`complete_exchange`].
pub fn exchange_pending(dir: &OwnedFd, target: &str) -> bool {
    let n = Names::of(target);
    ovlink_fs::at::exists_at(dir, &n.intent) || ovlink_fs::at::exists_at(dir, &n.new)
}

/// Init's part, for the layer directory `dir` (opened as `id` in `home_fd`): for each of
/// `targets` with an interrupted exchange, takes the layer lock if it is free (a live owner
/// finishes its own) and completes it. Runs before temporary trees are reaped.
pub fn recover_exchanges(
    home_fd: &OwnedFd,
    id: &str,
    (dir, dir_path): (&OwnedFd, &Path),
    targets: &[&str],
    durable: bool,
) -> Result<()> {
    for t in targets {
        if exchange_pending(dir, t) {
            let lfd = ovlink_fs::at::open_dir_at(home_fd, id, dir_path)?;
            if let Some(_lock) = DirLock::try_lock(lfd, dir_path)? {
                complete_exchange(dir, dir_path, t, durable)?;
            }
        }
    }
    Ok(())
}

/// Finishes an exchange of `target` in `dir` that a crash interrupted (see the module docs);
/// `true` when there was one to finish or clean up. The caller holds the layer lock.
pub fn complete_exchange(
    dir: &OwnedFd,
    dir_path: &Path,
    target: &str,
    durable: bool,
) -> Result<bool> {
    let n = Names::of(target);
    let has = |name: &str| ovlink_fs::at::exists_at(dir, name);
    let remove = |name: &str| -> Result<()> {
        ovlink_fs::remove_all_at(dir, OsStr::new(name), &dir_path.join(name))?;
        Ok(())
    };
    let intent = has(&n.intent);
    let (new, old) = (has(&n.new), has(&n.old));
    if !intent {
        // Before the commit point (or after the last step): the tree at `target` stands.
        if new {
            remove(&n.new)?;
        }
        if old && has(target) {
            remove(&n.old)?;
        }
        return Ok(new || old);
    }
    let shown = dir_path.join(target);
    if new {
        if has(target) && !old {
            rustix::fs::renameat(dir, target, dir, n.old.as_str()).ctx("move aside", &shown)?;
        }
        rustix::fs::renameat(dir, n.new.as_str(), dir, target).ctx("rename into place", &shown)?;
    } else if !has(target) {
        return Err(FsError::io(
            "complete the interrupted exchange (neither the new nor the old tree is there) of",
            &shown,
            Errno::NOENT,
        )
        .into());
    }
    // `target` is the new tree now (or, when the intent outlived a rename a power cut lost,
    // still the old one: the new tree is then at neither name, and the old state stands).
    if has(&n.old) {
        remove(&n.old)?;
    }
    rustix::fs::unlinkat(dir, n.intent.as_str(), AtFlags::empty())
        .ctx("remove the exchange intent", dir_path.join(&n.intent))?;
    if durable {
        rustix::fs::fsync(dir).ctx("fsync", dir_path)?;
    }
    Ok(true)
}

/// Publishing a [`TempDir`].
impl TempDir {
    /// The claim for publishing into this directory (see [`Claim`]): its own
    /// lock, held while it lives, keeps every other publisher out.
    pub fn claim(&self) -> Claim<'_> {
        match self.lock() {
            Some(l) => Claim::Held(l),
            None => Claim::LockDir,
        }
    }

    /// Renames this directory under a new name (the caller then owns it) unless that name
    /// exists (`EEXIST`/`ENOTEMPTY`); an error leaves it. Through `renamer`, so it works
    /// without `RENAME_NOREPLACE` too (see this module); `claim` keeps other publishers
    /// out when the flag is missing.
    pub fn rename_noreplace(
        self,
        renamer: &Renamer,
        new_name: &OsStr,
        claim: Claim<'_>,
    ) -> std::result::Result<(), (Self, Errno)> {
        match renamer.rename_noreplace(self.parent_fd(), self.name(), new_name, claim) {
            Ok(()) => {
                self.persist();
                Ok(())
            }
            Err(e) => Err((self, e)),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn dir() -> (tempfile::TempDir, OwnedFd, PathBuf) {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().to_path_buf();
        let fd = ovlink_fs::at::open_dir(&p).unwrap();
        (t, fd, p)
    }

    fn names(p: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(p)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    }

    /// Every crash state of the exchange fallback, completed: the target is the old or the
    /// new tree, whole, and nothing else is left.
    #[test]
    fn completes_every_crash_state() {
        // (entries present after the crash, which tree `root` must hold afterwards)
        let states: &[(&[&str], &str)] = &[
            (&["root", "root.exchange-new"], "old"),
            (&["root", "root.exchange-new", "root.exchange"], "new"),
            (
                &["root.exchange-old", "root.exchange-new", "root.exchange"],
                "new",
            ),
            (&["root", "root.exchange-old", "root.exchange"], "new"),
            (&["root", "root.exchange"], "same"),
            (&["root"], "same"),
        ];
        for (present, want) in states {
            let (_t, fd, p) = dir();
            for name in *present {
                if name.ends_with(".exchange") {
                    std::fs::write(p.join(name), "x").unwrap();
                    continue;
                }
                std::fs::create_dir(p.join(name)).unwrap();
                let content = match *name {
                    "root" if present.contains(&"root.exchange-old") => "new",
                    "root" => "old",
                    "root.exchange-new" => "new",
                    _ => "old",
                };
                std::fs::write(p.join(name).join("which"), content).unwrap();
            }
            let before = std::fs::read_to_string(p.join("root/which")).ok();
            complete_exchange(&fd, &p, "root", false).unwrap();
            assert_eq!(names(&p), ["root"], "{present:?}");
            let got = std::fs::read_to_string(p.join("root/which")).unwrap();
            match *want {
                "same" => assert_eq!(Some(got), before, "{present:?}"),
                w => assert_eq!(got, w, "{present:?}"),
            }
        }
    }

    #[test]
    fn noreplace_fallback_refuses_an_existing_target() {
        let (_t, fd, p) = dir();
        std::fs::create_dir_all(p.join("a/x")).unwrap();
        std::fs::create_dir_all(p.join("b/y")).unwrap();
        let r = Renamer::new();
        r.learn(&r.noreplace, FlagSupport::NoSyscall);
        let e = r
            .rename_noreplace(&fd, OsStr::new("a"), OsStr::new("b"), Claim::LockDir)
            .unwrap_err();
        assert_eq!(e, Errno::EXIST);
        assert!(p.join("b/y").exists() && p.join("a/x").exists());
        r.rename_noreplace(&fd, OsStr::new("a"), OsStr::new("c"), Claim::LockDir)
            .unwrap();
        assert!(p.join("c/x").exists() && !p.join("a").exists());
        assert_eq!(r.exchange_support(), FlagSupport::NoSyscall);
    }

    #[test]
    fn exchange_fallback_swaps() {
        let (_t, fd, p) = dir();
        std::fs::create_dir_all(p.join("root/old")).unwrap();
        std::fs::create_dir_all(p.join("tmp/new")).unwrap();
        let lock = DirLock::lock(ovlink_fs::at::open_dir(&p).unwrap(), &p).unwrap();
        let r = Renamer::new();
        r.learn(&r.exchange, FlagSupport::NoFlag);
        r.exchange((&fd, OsStr::new("tmp")), (&fd, &p, &lock), "root", true)
            .unwrap();
        assert!(p.join("root/new").exists() && p.join("tmp/old").exists());
        assert_eq!(names(&p), ["root", "tmp"]);
        assert_eq!(r.noreplace(), FlagSupport::Unknown, "EINVAL is per flag");
    }

    #[test]
    fn probe_learns_both_flags() {
        let (_t, fd, p) = dir();
        let r = Renamer::new();
        let (a, b) = r.probe(&fd, &p).unwrap();
        // tmpfs and ext4 on any kernel this runs on have both flags.
        assert_eq!((a, b), (FlagSupport::Native, FlagSupport::Native));
        assert!(names(&p).is_empty(), "the probe cleans up");
    }
}
