//! fd-relative walks below the layer root, one component at a time with
//! `openat(O_NOFOLLOW | O_DIRECTORY)`, with a cache of the open directories of the last walk
//! (entries come grouped by directory, so most walks reuse all of it); the cache keeps a
//! bounded number of them open, so an entry as deep as `PATH_MAX` allows does not need one
//! fd per level (the caller's open-file limit may be 1024).
//!
//! A symlink met as an intermediate component is refused ([`TarError::EscapeAttempt`]); a
//! missing directory is created (mode 0755) only when asked. This module never follows a
//! symlink, never opens anything but directories, and never removes anything. The cached
//! fds stay valid because the applier only removes entries strictly below the directory it
//! resolved last.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

use ovlink_fs::at::DIR_FLAGS;
use ovlink_fs::error::Context;
use ovlink_fs::FsError;
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{AtFlags, FileType, Mode};
use rustix::io::Errno;

use crate::whiteout::Created;
use crate::TarError;

/// What a walk does with a missing (or non-directory) component.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Missing {
    /// Create missing directories (0755, like Docker); a non-directory is an error.
    Create,
    /// A missing or non-directory component gives `Ok(None)`; a symlink is refused.
    Absent,
    /// Like `Absent`, and a symlink also gives `Ok(None)` (for the final pass over
    /// directory times, which must touch nothing but the directories it set times for).
    Lenient,
}

/// One component opened.
enum Step {
    Dir(OwnedFd),
    Missing,
    Symlink,
    NotDir,
}

fn step(dir: BorrowedFd<'_>, name: &OsStr, shown: &Path) -> Result<Step, FsError> {
    match rustix::fs::openat(dir, name, DIR_FLAGS, Mode::empty()) {
        Ok(fd) => Ok(Step::Dir(fd)),
        Err(Errno::NOENT) => Ok(Step::Missing),
        Err(Errno::LOOP) | Err(Errno::NOTDIR) => {
            match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Symlink => {
                    Ok(Step::Symlink)
                }
                Ok(_) => Ok(Step::NotDir),
                Err(Errno::NOENT) => Ok(Step::Missing),
                Err(e) => Err(FsError::io("stat", shown, e)),
            }
        }
        Err(e) => Err(FsError::io("open directory", shown, e)),
    }
}

fn shown_of(root_shown: &Path, comps: &[OsString]) -> PathBuf {
    let mut p = root_shown.to_path_buf();
    p.extend(comps);
    p
}

/// How many of the deepest directories of the last walk stay open.
const FD_WINDOW: usize = 16;
/// Every `FD_STRIDE`-th directory of the last walk stays open too, so a walk restarts at most
/// this many components up.
const FD_STRIDE: usize = 64;

/// The layer root and the directories of the last walk.
pub(crate) struct Tree<'r> {
    /// The root, reopened as a readable directory (the caller's fd may be `O_PATH`).
    root: OwnedFd,
    root_shown: &'r Path,
    /// Directories from the root down: `stack[i]` is `comps[..=i]` of the last walk, with its
    /// fd while it is kept open (see [`Tree::trim`]).
    stack: Vec<(OsString, Option<OwnedFd>)>,
}

impl<'r> Tree<'r> {
    /// Opens the walk state over `root`.
    pub(crate) fn new(root: BorrowedFd<'_>, root_shown: &'r Path) -> Result<Self, FsError> {
        let root = rustix::fs::openat(root, ".", DIR_FLAGS, Mode::empty())
            .ctx("open directory", root_shown)?;
        Ok(Tree {
            root,
            root_shown,
            stack: Vec::new(),
        })
    }

    /// The root directory fd (readable; usable for metadata calls).
    pub(crate) fn root(&self) -> BorrowedFd<'_> {
        self.root.as_fd()
    }

    /// The path shown in messages for `comps` below the root.
    pub(crate) fn shown(&self, comps: &[OsString]) -> PathBuf {
        shown_of(self.root_shown, comps)
    }

    /// Opens the directory at `comps` below the root (reusing the last walk's fds), for the
    /// tar entry `entry`. `created` records the directories a [`Missing::Create`] walk made.
    pub(crate) fn dir(
        &mut self,
        comps: &[OsString],
        entry: &Path,
        missing: Missing,
        created: &mut Created,
    ) -> Result<Option<BorrowedFd<'_>>, TarError> {
        let same = self
            .stack
            .iter()
            .zip(comps)
            .take_while(|((have, _), want)| have == *want)
            .count();
        // Restart below the deepest directory of the common part that is still open (at
        // most FD_STRIDE components up): the ones between are opened again by name.
        let keep = (0..=same)
            .rev()
            .find(|&k| k == 0 || self.stack[k - 1].1.is_some())
            .unwrap_or(0);
        self.stack.truncate(keep);
        let root_shown = self.root_shown;
        for i in keep..comps.len() {
            let name = &comps[i];
            let shown = || shown_of(root_shown, &comps[..=i]);
            let cur = self
                .stack
                .last()
                .and_then(|(_, fd)| fd.as_ref())
                .map_or(self.root.as_fd(), |fd| fd.as_fd());
            let entry_err = |source: FsError| TarError::Entry {
                entry: entry.to_path_buf(),
                source,
            };
            let mut st = step(cur, name, &shown()).map_err(entry_err)?;
            if matches!(st, Step::Missing) && missing == Missing::Create {
                match rustix::fs::mkdirat(cur, name, Mode::from_raw_mode(0o755)) {
                    Ok(()) => {
                        created.insert(&comps[..=i]);
                        st = step(cur, name, &shown()).map_err(entry_err)?;
                        if let Step::Dir(fd) = &st {
                            // mkdir applied the umask; Docker's parents are 0755.
                            rustix::fs::fchmod(fd, Mode::from_raw_mode(0o755))
                                .with_ctx("change mode of", shown)
                                .map_err(entry_err)?;
                        }
                    }
                    Err(Errno::EXIST) => st = step(cur, name, &shown()).map_err(entry_err)?,
                    Err(e) => return Err(entry_err(FsError::io("create directory", shown(), e))),
                }
            }
            match st {
                Step::Dir(fd) => {
                    self.stack.push((name.clone(), Some(fd)));
                    self.trim();
                }
                Step::Symlink if missing == Missing::Lenient => return Ok(None),
                Step::Symlink => {
                    return Err(TarError::EscapeAttempt {
                        entry: entry.to_path_buf(),
                        reason: format!(
                            "{} is a symlink (symlinks in the tree are never followed)",
                            comps[..=i].iter().collect::<PathBuf>().display()
                        ),
                    })
                }
                Step::Missing | Step::NotDir
                    if matches!(missing, Missing::Absent | Missing::Lenient) =>
                {
                    return Ok(None)
                }
                Step::Missing => {
                    return Err(entry_err(FsError::io(
                        "open directory",
                        shown(),
                        Errno::NOENT,
                    )));
                }
                Step::NotDir => return Err(entry_err(FsError::NotADirectory { path: shown() })),
            }
        }
        Ok(Some(
            self.stack
                .last()
                .and_then(|(_, fd)| fd.as_ref())
                .map_or(self.root.as_fd(), |fd| fd.as_fd()),
        ))
    }

    /// Closes the directories of the stack that are neither among the last [`FD_WINDOW`]
    /// nor at a multiple of [`FD_STRIDE`]: the walk holds at most `depth / FD_STRIDE +
    /// FD_WINDOW` fds (48 at the deepest entry `PATH_MAX` allows), not one per level.
    fn trim(&mut self) {
        let len = self.stack.len();
        if len > FD_WINDOW {
            let i = len - FD_WINDOW - 1;
            if !(i + 1).is_multiple_of(FD_STRIDE) {
                self.stack[i].1 = None;
            }
        }
    }

    /// Opens the directory at `comps` without touching the cache (for hardlink targets, which
    /// are resolved while the entry's own parent is held).
    pub(crate) fn dir_uncached(
        &self,
        comps: &[OsString],
        entry: &Path,
    ) -> Result<OwnedFd, TarError> {
        let entry_err = |source: FsError| TarError::Entry {
            entry: entry.to_path_buf(),
            source,
        };
        let mut cur = rustix::fs::openat(&self.root, ".", DIR_FLAGS, Mode::empty())
            .ctx("open directory", self.root_shown)
            .map_err(entry_err)?;
        for i in 0..comps.len() {
            let shown = self.shown(&comps[..=i]);
            match step(cur.as_fd(), &comps[i], &shown).map_err(entry_err)? {
                Step::Dir(fd) => cur = fd,
                Step::Symlink => {
                    return Err(TarError::EscapeAttempt {
                        entry: entry.to_path_buf(),
                        reason: format!(
                            "hardlink target directory {} is a symlink",
                            comps[..=i].iter().collect::<PathBuf>().display()
                        ),
                    })
                }
                Step::Missing => {
                    return Err(entry_err(FsError::io(
                        "open directory",
                        shown,
                        Errno::NOENT,
                    )))
                }
                Step::NotDir => return Err(entry_err(FsError::NotADirectory { path: shown })),
            }
        }
        Ok(cur)
    }
}
