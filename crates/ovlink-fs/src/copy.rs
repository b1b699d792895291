//! The legacy driver's `DirCopy`: copying a layer tree, in hardlink mode (image layers) or
//! full-content mode (the `-init` pattern: a container layer on a container layer).
//!
//! Hardlink mode shares every non-directory inode with the source: regular files, and by
//! default ([`Specials::Link`]) also symlinks, fifos, sockets and device nodes (Docker
//! re-creates those; they are never modified in place, so sharing them is safe and saves one
//! inode each per layer). [`Specials::Copy`] re-creates them in every copy exactly as Docker
//! 20.10's `DirCopy` does (symlink, fifo, `mknod` for devices; owner, `security.capability`,
//! mode, times), so the tree is inode for inode what Docker builds. (A socket is re-created as
//! a socket: Docker's `unix.Mkfifo(path, st_mode)` passes the socket type bits and fails with
//! EINVAL; layer tars cannot hold sockets, so image layers never have one.) Only directories are
//! re-created, with mode, owner, times and the layer xattrs (`security.capability`,
//! `trusted.overlay.*`). A regular file needs a single `linkat` and no `stat`: the entry type
//! comes from `getdents`. When the link count limit is hit (`EMLINK`) that one entry is copied
//! instead, and the copy carries on.
//!
//! Directory metadata is applied after the directory's children, so creating them does not
//! change its times. Subtrees near the top are copied in parallel (rayon) when asked.
//!
//! This module never writes to the source tree and never follows a symlink.

use crate::at::{current_umask, open_dir_at};
use crate::error::{Context, FsError, Result};
use crate::xattr;
use rayon::prelude::*;
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{AtFlags, Dir, FileType, Mode, OFlags, Stat, Timespec, Timestamps};
use rustix::io::Errno;
use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// How non-directory entries are copied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyMode {
    /// Hardlink every non-directory entry (image layers).
    Hardlink,
    /// Copy contents and metadata; hardlinks inside the tree stay hardlinks (the `-init` copy).
    Content,
}

/// What hardlink mode does with symlinks, fifos, sockets and device nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Specials {
    /// Hardlink them like regular files (ovlink's default: one inode fewer per entry and layer).
    #[default]
    Link,
    /// Re-create them in every copy as Docker 20.10's `DirCopy` does. Content mode always
    /// re-creates them.
    Copy,
}

impl Specials {
    /// `link` or `copy` (the CLI's and the home record's spelling).
    pub fn name(self) -> &'static str {
        match self {
            Specials::Link => "link",
            Specials::Copy => "copy",
        }
    }
    /// Parses [`Specials::name`]'s spelling.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "link" => Some(Specials::Link),
            "copy" => Some(Specials::Copy),
            _ => None,
        }
    }
}

/// Options of [`copy_tree`].
#[derive(Debug, Clone, Copy)]
pub struct CopyOptions {
    /// Hardlink or content copy.
    pub mode: CopyMode,
    /// Hardlink mode: share or re-create symlinks and special files.
    pub specials: Specials,
    /// Copy sibling subtrees in parallel (rayon) down to this depth; 0 disables it.
    pub parallel_depth: usize,
    /// Skip device nodes that must be re-created (inside a user namespace `mknod` fails).
    pub skip_devices: bool,
}

impl CopyOptions {
    /// Hardlink mode, parallel over the top two levels.
    pub fn hardlink() -> Self {
        CopyOptions {
            mode: CopyMode::Hardlink,
            specials: Specials::Link,
            parallel_depth: 2,
            skip_devices: false,
        }
    }
    /// Content mode, sequential.
    pub fn content() -> Self {
        CopyOptions {
            mode: CopyMode::Content,
            specials: Specials::Copy,
            parallel_depth: 0,
            skip_devices: false,
        }
    }
}

/// What a copy did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CopyStats {
    /// Directories re-created.
    pub dirs: u64,
    /// Entries hardlinked to the source inode.
    pub linked: u64,
    /// Entries re-created or copied (content mode, or `EMLINK` fallbacks).
    pub copied: u64,
    /// Of `copied`, how many were fallbacks because the source hit the link limit.
    pub emlink_fallbacks: u64,
    /// Bytes of regular-file content copied.
    pub bytes_copied: u64,
}

#[derive(Default)]
struct Counters {
    dirs: AtomicU64,
    linked: AtomicU64,
    copied: AtomicU64,
    emlink: AtomicU64,
    bytes: AtomicU64,
}

struct Ctx<'a> {
    opts: CopyOptions,
    umask: u32,
    euid: u32,
    egid: u32,
    src_root: &'a Path,
    dst_root: &'a Path,
    dst_root_fd: BorrowedFd<'a>,
    counters: Counters,
    /// Content mode: (dev, ino) of a multiply-linked source -> its first copy, relative to dst.
    links: Mutex<HashMap<(u64, u64), PathBuf>>,
}

/// Every `STACK_HOP` levels the recursion continues on a new thread with a [`HOP_STACK`]
/// stack (a directory level costs a few hundred bytes of stack in a release build, a few KiB
/// in a debug build): a layer as deep as `PATH_MAX` allows overflowed a rayon worker's.
const STACK_HOP: usize = 128;
/// The stack of each such thread (reserved, touched only as deep as the recursion goes).
const HOP_STACK: usize = 16 << 20;

/// Copies the tree of the open directory `src` into the open (empty) directory `dst`,
/// including `src`'s own metadata onto `dst`. `src_shown`/`dst_shown` are the paths used in
/// error messages.
pub fn copy_tree(
    src: BorrowedFd<'_>,
    dst: BorrowedFd<'_>,
    src_shown: &Path,
    dst_shown: &Path,
    opts: CopyOptions,
) -> Result<CopyStats> {
    let ctx = Ctx {
        opts,
        umask: current_umask(),
        euid: rustix::process::geteuid().as_raw(),
        egid: rustix::process::getegid().as_raw(),
        src_root: src_shown,
        dst_root: dst_shown,
        dst_root_fd: dst,
        counters: Counters::default(),
        links: Mutex::new(HashMap::new()),
    };
    let st = rustix::fs::fstat(src).ctx("stat", src_shown)?;
    let own = rustix::fs::openat(src, ".", crate::at::DIR_FLAGS, Mode::empty())
        .ctx("open directory", src_shown)?;
    copy_dir(&ctx, own, dst, Path::new(""), 0, st.st_mode)?;
    apply_dir_meta(&ctx, src, dst, &st, Path::new(""), false, true)?;
    let c = &ctx.counters;
    Ok(CopyStats {
        dirs: c.dirs.load(Ordering::Relaxed),
        linked: c.linked.load(Ordering::Relaxed),
        copied: c.copied.load(Ordering::Relaxed),
        emlink_fallbacks: c.emlink.load(Ordering::Relaxed),
        bytes_copied: c.bytes.load(Ordering::Relaxed),
    })
}

/// Copies the entries of `src` (owned: read with `Dir::new`, so the directory is not reopened)
/// into `dst`, recursing into subdirectories. Returns the reader, which still owns `src`, for
/// the caller to read `src`'s own xattrs through.
fn copy_dir(
    ctx: &Ctx<'_>,
    src: OwnedFd,
    dst: BorrowedFd<'_>,
    rel: &Path,
    depth: usize,
    mode: u32,
) -> Result<Dir> {
    let mut subdirs: Vec<OsString> = Vec::new();
    let mut leaves: Vec<(OsString, FileType)> = Vec::new();
    let mut it = Dir::new(src).with_ctx("read directory", || ctx.src_root.join(rel))?;
    for ent in it.by_ref() {
        let ent = ent.with_ctx("read directory", || ctx.src_root.join(rel))?;
        let raw = ent.file_name().to_bytes();
        if raw == b"." || raw == b".." {
            continue;
        }
        let name = OsStr::from_bytes(raw).to_os_string();
        match ent.file_type() {
            FileType::Directory => subdirs.push(name),
            ft => leaves.push((name, ft)),
        }
    }
    let src = it
        .fd()
        .with_ctx("read directory", || ctx.src_root.join(rel))?;
    for (name, mut ft) in leaves {
        if ft == FileType::Unknown {
            let st = rustix::fs::statat(src, &*name, AtFlags::SYMLINK_NOFOLLOW)
                .with_ctx("stat", || ctx.src_root.join(rel).join(&name))?;
            ft = FileType::from_raw_mode(st.st_mode);
            if ft == FileType::Directory {
                subdirs.push(name);
                continue;
            }
        }
        copy_leaf(ctx, src, dst, &name, ft, rel)?;
    }
    let setgid_parent = mode & 0o2000 != 0;
    let one = |name: &OsString| -> Result<()> {
        let child_rel = rel.join(name);
        let st = rustix::fs::statat(src, name.as_os_str(), AtFlags::SYMLINK_NOFOLLOW)
            .with_ctx("stat", || ctx.src_root.join(&child_rel))?;
        // When mkdir can give the final mode directly (no special bits, nothing the umask
        // strips, no setgid inherited from the parent), the chmod afterwards is not needed.
        let perm = st.st_mode & 0o7777;
        let exact = perm & 0o7000 == 0 && perm & ctx.umask == 0 && !setgid_parent;
        rustix::fs::mkdirat(
            dst,
            name.as_os_str(),
            Mode::from_raw_mode(if exact { perm } else { 0o700 }),
        )
        .with_ctx("create directory", || ctx.dst_root.join(&child_rel))?;
        let s = open_dir_at(src, name, &ctx.src_root.join(&child_rel))?;
        let d = open_dir_at(dst, name, &ctx.dst_root.join(&child_rel))?;
        let s = if (depth + 1).is_multiple_of(STACK_HOP) {
            // Deep trees: the recursion goes on on a fresh thread with its own stack, so no
            // depth overflows the caller's (a rayon worker has 2 MiB).
            std::thread::scope(|sc| {
                std::thread::Builder::new()
                    .name("ovlink-copy-deep".into())
                    .stack_size(HOP_STACK)
                    .spawn_scoped(sc, || {
                        copy_dir(ctx, s, d.as_fd(), &child_rel, depth + 1, st.st_mode)
                    })
                    .map_err(|e| {
                        FsError::io("start a thread to copy", ctx.src_root.join(&child_rel), e)
                    })?
                    .join()
                    .unwrap_or_else(|p| std::panic::resume_unwind(p))
            })?
        } else {
            copy_dir(ctx, s, d.as_fd(), &child_rel, depth + 1, st.st_mode)?
        };
        let sfd = s
            .fd()
            .with_ctx("read directory", || ctx.src_root.join(&child_rel))?;
        apply_dir_meta(ctx, sfd, d.as_fd(), &st, &child_rel, setgid_parent, !exact)?;
        ctx.counters.dirs.fetch_add(1, Ordering::Relaxed);
        Ok(())
    };
    if depth < ctx.opts.parallel_depth && subdirs.len() > 1 && ctx.opts.mode == CopyMode::Hardlink {
        subdirs.par_iter().try_for_each(one)?;
    } else {
        subdirs.iter().try_for_each(one)?;
    }
    Ok(it)
}

/// Owner, layer xattrs, mode and times of a re-created directory, after its children.
/// `force` = 1 when the parent was setgid (the new dir inherited a gid and the setgid bit).
fn apply_dir_meta(
    ctx: &Ctx<'_>,
    src: BorrowedFd<'_>,
    dst: BorrowedFd<'_>,
    st: &Stat,
    rel: &Path,
    setgid_parent: bool,
    chmod: bool,
) -> Result<()> {
    let dst_path = || ctx.dst_root.join(rel);
    if setgid_parent || st.st_uid != ctx.euid || st.st_gid != ctx.egid {
        rustix::fs::fchown(
            dst,
            Some(rustix::fs::Uid::from_raw(st.st_uid)),
            Some(rustix::fs::Gid::from_raw(st.st_gid)),
        )
        .with_ctx("change owner of", dst_path)?;
    }
    for (name, value) in xattr::read_all_fd(src, &ctx.src_root.join(rel), xattr::is_layer_xattr)? {
        xattr::set_fd(dst, &name, &value, &dst_path())?;
    }
    // mkdir used 0700 unless it could set the exact mode; chown may have cleared setgid.
    if chmod {
        rustix::fs::fchmod(dst, Mode::from_raw_mode(st.st_mode & 0o7777))
            .with_ctx("change mode of", dst_path)?;
    }
    rustix::fs::futimens(dst, &times_of(st)).with_ctx("set times of", dst_path)?;
    Ok(())
}

fn times_of(st: &Stat) -> Timestamps {
    Timestamps {
        last_access: Timespec {
            tv_sec: st.st_atime as _,
            tv_nsec: st.st_atime_nsec as _,
        },
        last_modification: Timespec {
            tv_sec: st.st_mtime as _,
            tv_nsec: st.st_mtime_nsec as _,
        },
    }
}

fn copy_leaf(
    ctx: &Ctx<'_>,
    src: BorrowedFd<'_>,
    dst: BorrowedFd<'_>,
    name: &OsStr,
    ft: FileType,
    rel: &Path,
) -> Result<()> {
    let share = ft == FileType::RegularFile || ctx.opts.specials == Specials::Link;
    if ctx.opts.mode == CopyMode::Hardlink && share {
        match rustix::fs::linkat(src, name, dst, name, AtFlags::empty()) {
            Ok(()) => {
                ctx.counters.linked.fetch_add(1, Ordering::Relaxed);
                return Ok(());
            }
            Err(Errno::MLINK) => {
                ctx.counters.emlink.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                return Err(FsError::io(
                    "hardlink",
                    ctx.dst_root.join(rel).join(name),
                    e,
                ))
            }
        }
    }
    let st = rustix::fs::statat(src, name, AtFlags::SYMLINK_NOFOLLOW)
        .with_ctx("stat", || ctx.src_root.join(rel).join(name))?;
    if ctx.opts.mode == CopyMode::Content && st.st_nlink > 1 {
        let key = (st.st_dev, st.st_ino);
        let mut links = ctx.links.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(first) = links.get(&key) {
            rustix::fs::linkat(
                ctx.dst_root_fd,
                first.as_path(),
                dst,
                name,
                AtFlags::empty(),
            )
            .with_ctx("hardlink", || ctx.dst_root.join(rel).join(name))?;
            return Ok(());
        }
        links.insert(key, rel.join(name));
    }
    recreate(ctx, src, dst, name, ft, &st, rel)?;
    ctx.counters.copied.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

/// Re-creates one non-directory entry with its content and metadata.
fn recreate(
    ctx: &Ctx<'_>,
    src: BorrowedFd<'_>,
    dst: BorrowedFd<'_>,
    name: &OsStr,
    ft: FileType,
    st: &Stat,
    rel: &Path,
) -> Result<()> {
    let src_path = || ctx.src_root.join(rel).join(name);
    let dst_path = || ctx.dst_root.join(rel).join(name);
    let perm = st.st_mode & 0o7777;
    match ft {
        FileType::RegularFile => {
            let s = rustix::fs::openat(
                src,
                name,
                OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .with_ctx("open", src_path)?;
            let d = rustix::fs::openat(
                dst,
                name,
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o600),
            )
            .with_ctx("create", dst_path)?;
            let mut sf = std::fs::File::from(s);
            let mut df = std::fs::File::from(d);
            let n = std::io::copy(&mut sf, &mut df).with_ctx("copy", dst_path)?;
            ctx.counters.bytes.fetch_add(n, Ordering::Relaxed);
            let d: OwnedFd = df.into();
            rustix::fs::fchown(&d, Some(uid(st)), Some(gid(st)))
                .with_ctx("change owner of", dst_path)?;
            let sfd: OwnedFd = sf.into();
            for (xn, xv) in xattr::read_all_fd(&sfd, &src_path(), xattr::is_layer_xattr)? {
                xattr::set_fd(&d, &xn, &xv, &dst_path())?;
            }
            rustix::fs::fchmod(&d, Mode::from_raw_mode(perm))
                .with_ctx("change mode of", dst_path)?;
            rustix::fs::futimens(&d, &times_of(st)).with_ctx("set times of", dst_path)?;
            return Ok(());
        }
        FileType::Symlink => {
            let target =
                rustix::fs::readlinkat(src, name, Vec::new()).with_ctx("read link", src_path)?;
            rustix::fs::symlinkat(target.as_c_str(), dst, name)
                .with_ctx("create symlink", dst_path)?;
        }
        FileType::CharacterDevice | FileType::BlockDevice if ctx.opts.skip_devices => return Ok(()),
        FileType::Fifo | FileType::Socket | FileType::CharacterDevice | FileType::BlockDevice => {
            rustix::fs::mknodat(dst, name, ft, Mode::from_raw_mode(perm & 0o777), st.st_rdev)
                .with_ctx("create node", dst_path)?;
        }
        _ => {
            return Err(FsError::io(
                "copy (unknown file type)",
                src_path(),
                Errno::INVAL,
            ))
        }
    }
    // Symlinks and nodes: owner, xattrs, mode (not for symlinks), times, all without following.
    rustix::fs::chownat(
        dst,
        name,
        Some(uid(st)),
        Some(gid(st)),
        AtFlags::SYMLINK_NOFOLLOW,
    )
    .with_ctx("change owner of", dst_path)?;
    let sp = crate::at::proc_path(src, name);
    let dp = crate::at::proc_path(dst, name);
    for (xn, xv) in xattr::read_all(&sp, xattr::is_layer_xattr)? {
        xattr::set(&dp, &xn, &xv)?;
    }
    if ft != FileType::Symlink {
        rustix::fs::chmodat(dst, name, Mode::from_raw_mode(perm), AtFlags::empty())
            .with_ctx("change mode of", dst_path)?;
    }
    rustix::fs::utimensat(dst, name, &times_of(st), AtFlags::SYMLINK_NOFOLLOW)
        .with_ctx("set times of", dst_path)?;
    Ok(())
}

fn uid(st: &Stat) -> rustix::fs::Uid {
    rustix::fs::Uid::from_raw(st.st_uid)
}
fn gid(st: &Stat) -> rustix::fs::Gid {
    rustix::fs::Gid::from_raw(st.st_gid)
}
