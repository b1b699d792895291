//! The applier: reads the entries of a layer tar in order and makes the tree below the root
//! match them: creates files, directories, symlinks, hardlinks, fifos and device nodes with
//! their owner, mode, xattrs and times, and processes whiteouts; directory times are set at
//! the very end, deepest first.
//!
//! Rules this module keeps: everything is fd-relative to the root (parents are opened by
//! `tree`, never following a symlink; the final component is never followed either); an
//! existing non-directory is never opened for writing nor has its metadata changed — it is
//! unlinked and a fresh inode created (the tree is a hardlink copy of the parent layer, so
//! every non-directory may be shared with other layers); an existing directory is kept when
//! the tar has a directory at the same path, and only then has its metadata set. It never
//! uses the tar crate's path-based `unpack`.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use ovlink_fs::at::{open_dir_at, proc_fd_path, stat_at, DIR_FLAGS};
use ovlink_fs::error::Context;
use ovlink_fs::FsError;
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{AtFlags, FileType, Gid, Mode, OFlags, Uid, XattrFlags};
use rustix::io::Errno;

use crate::datasync::DataSync;
use crate::decompress;
use crate::guard::Guard;
use crate::meta::{self, DirTimes, Meta};
use crate::path::{self, Comps};
use crate::sparse::{self, PaxSparse};
use crate::tree::{Missing, Tree};
use crate::whiteout::{self, Created, Whiteout, WhiteoutFormat};
use crate::{ApplyOptions, ApplyStats, TarError};

/// Size of the copy buffer for regular-file contents.
const COPY_BUF: usize = 128 * 1024;

/// Applies a layer tar into `root`. See the crate docs for the contract.
///
/// `input` is a plain, gzip or zstd layer tar (detected by its first bytes). It is read to
/// its end on success. `root_shown` is the path of `root`, used only in messages.
pub fn apply_layer(
    root: BorrowedFd<'_>,
    root_shown: &Path,
    input: &mut dyn Read,
    opts: &ApplyOptions,
) -> Result<ApplyStats, TarError> {
    let read_err =
        |entry: Option<PathBuf>| move |source: io::Error| TarError::Read { entry, source };
    let raw = decompress::sniff(input).map_err(read_err(None))?;
    let mut last: Option<PathBuf> = None;
    let mut ap = Applier {
        tree: Tree::new(root, root_shown)?,
        opts,
        created: Created::default(),
        dir_times: DirTimes::default(),
        buf: vec![0u8; COPY_BUF],
        stats: ApplyStats::default(),
        sync: opts.sync_data.then(DataSync::start),
        sparse: None,
    };
    let mut dec = decompress::Decoder::new(raw).map_err(read_err(None))?;
    {
        let mut archive = tar::Archive::new(Guard::new(&mut dec));
        for entry in archive.entries().map_err(read_err(None))? {
            let mut entry = entry.map_err(read_err(last.clone()))?;
            ap.stats.entries += 1;
            let name = PathBuf::from(OsStr::from_bytes(&entry.path_bytes()));
            ap.entry(&mut entry, &name)?;
            last = Some(name);
            ovlink_fs::crash::point("tar.entry");
        }
        // After the end-of-archive blocks: read the decoded stream to its end (a gzip CRC or
        // a truncated frame shows up here) ...
        decompress::drain(archive.into_inner().into_inner()).map_err(read_err(last.clone()))?;
    }
    // ... and the raw input to its end, so a wrapping reader always sees EOF.
    decompress::drain(dec.raw_mut()).map_err(read_err(last))?;
    ap.finish()
}

/// The kind of a tar entry, as the applier handles it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    File,
    Dir,
    Symlink,
    Hardlink,
    Fifo,
    Char,
    Block,
    /// A PAX global header: ignored, as Docker does.
    Global,
}

fn kind_of(h: &tar::Header, raw_name: &[u8], name: &Path) -> Result<Kind, TarError> {
    // The raw type byte: the parser's `entry_type()` folds V7's `\0` into `0`, which would
    // lose the V7 directory below.
    Ok(match h.as_old().linkflag[0] {
        // Contiguous files ('7') are regular files; GNU sparse files ('S') too, their holes
        // kept (see `write_file`).
        b'0' | b'7' | b'S' => Kind::File,
        // Old (V7) regular-file type: a trailing slash makes it a directory (as Go's reader).
        b'\0' if raw_name.ends_with(b"/") => Kind::Dir,
        b'\0' => Kind::File,
        b'1' => Kind::Hardlink,
        b'2' => Kind::Symlink,
        b'3' => Kind::Char,
        b'4' => Kind::Block,
        b'5' => Kind::Dir,
        b'6' => Kind::Fifo,
        b'g' => Kind::Global,
        b => {
            let what = match b {
                b'V' => "GNU volume header".to_string(),
                b'M' => "GNU multi-volume continuation".to_string(),
                b'D' => "GNU dump directory".to_string(),
                b'N' => "GNU old long name".to_string(),
                b'x' | b'L' | b'K' => format!("stray extension header {:?}", b as char),
                b => format!("entry type {:?}", b as char),
            };
            return Err(TarError::Unsupported {
                entry: name.to_path_buf(),
                kind: what,
            });
        }
    })
}

fn escape(name: &Path, reason: impl Into<String>) -> TarError {
    TarError::EscapeAttempt {
        entry: name.to_path_buf(),
        reason: reason.into(),
    }
}

fn invalid(name: &Path, reason: impl Into<String>) -> TarError {
    TarError::Invalid {
        entry: name.to_path_buf(),
        reason: reason.into(),
    }
}

/// Wraps a filesystem failure with the entry's name.
fn fe(name: &Path) -> impl Fn(FsError) -> TarError + '_ {
    move |source| TarError::Entry {
        entry: name.to_path_buf(),
        source,
    }
}

struct Applier<'r> {
    tree: Tree<'r>,
    opts: &'r ApplyOptions,
    created: Created,
    dir_times: DirTimes,
    buf: Vec<u8>,
    stats: ApplyStats,
    /// The `fdatasync` pool, when [`ApplyOptions::sync_data`] is set.
    sync: Option<DataSync>,
    /// The PAX sparse description of the current entry, when it is one.
    sparse: Option<PaxSparse>,
}

impl Applier<'_> {
    /// Turns the entry's container owner into the host owner (`--userns-remap`).
    fn map_owner(&self, mut meta: Meta, name: &Path) -> Result<Meta, TarError> {
        let unmapped = |what: &str, id: u32| {
            invalid(
                name,
                format!("{what} {id} has no mapping in the user namespace's {what} map"),
            )
        };
        meta.uid = crate::map_id(&self.opts.uid_maps, meta.uid)
            .ok_or_else(|| unmapped("uid", meta.uid))?;
        meta.gid = crate::map_id(&self.opts.gid_maps, meta.gid)
            .ok_or_else(|| unmapped("gid", meta.gid))?;
        Ok(meta)
    }

    fn entry<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        name: &Path,
    ) -> Result<(), TarError> {
        let raw = entry.path_bytes().into_owned();
        let kind = kind_of(entry.header(), &raw, name)?;
        if kind == Kind::Global {
            return Ok(());
        }
        // A PAX sparse file: its real name is a PAX record.
        self.sparse = match kind {
            Kind::File => sparse::pax_info(entry, name)?,
            _ => None,
        };
        let raw = match self.sparse.as_ref().and_then(|s| s.name.clone()) {
            Some(real) => real,
            None => raw,
        };
        let comps = path::normalize(&raw).map_err(|r| r.into_error(name, ""))?;
        let Some((base, parent)) = comps.split_last() else {
            return self.root_entry(entry, kind, name);
        };
        // AUFS metadata directories at the top of the layer (`.wh..wh.plnk/...`): skipped.
        if parent
            .first()
            .is_some_and(|c| c.as_bytes().starts_with(whiteout::META_PREFIX))
        {
            return Ok(());
        }
        let format = self.opts.whiteouts;
        match whiteout::classify(base).map_err(|r| escape(name, r))? {
            Whiteout::Meta => Ok(()),
            Whiteout::Opaque if format == WhiteoutFormat::Overlay => {
                self.overlay_opaque(parent, name)
            }
            Whiteout::Opaque => self.opaque(parent, name),
            Whiteout::Remove(target) if format == WhiteoutFormat::Overlay => {
                self.overlay_whiteout(entry, parent, target, name)
            }
            Whiteout::Remove(target) => self.whiteout(parent, target, name),
            Whiteout::No => self.create(entry, kind, &comps, name),
        }
    }

    /// `.` / `./`: the root's own metadata, like a directory entry.
    fn root_entry<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        kind: Kind,
        name: &Path,
    ) -> Result<(), TarError> {
        if kind != Kind::Dir {
            return Err(invalid(name, "a non-directory entry names the layer root"));
        }
        let meta = self.map_owner(meta::read(entry, name)?, name)?;
        let shown = self.tree.shown(&[]);
        set_fd_meta(self.tree.root(), &shown, &meta, name)?;
        self.dir_times.insert(&[], &meta);
        Ok(())
    }

    /// `.wh..wh..opq` in `dir`: removes what this apply did not create there.
    fn opaque(&mut self, dir: &[OsString], name: &Path) -> Result<(), TarError> {
        let Applier {
            tree,
            created,
            dir_times,
            ..
        } = self;
        let shown = tree.shown(dir);
        let Some(fd) = tree.dir(dir, name, Missing::Absent, created)? else {
            return Ok(());
        };
        let mut rel = dir.to_vec();
        whiteout::clear_lower(fd, &mut rel, &shown, created, dir_times).map_err(fe(name))
    }

    /// `.wh.TARGET` in `dir`: removes TARGET, whatever it is.
    fn whiteout(&mut self, dir: &[OsString], target: &OsStr, name: &Path) -> Result<(), TarError> {
        let Applier {
            tree,
            created,
            dir_times,
            ..
        } = self;
        let mut comps = dir.to_vec();
        comps.push(target.to_os_string());
        let shown = tree.shown(&comps);
        let Some(fd) = tree.dir(dir, name, Missing::Absent, created)? else {
            return Ok(());
        };
        match stat_at(fd, target, &shown).map_err(fe(name))? {
            None => Ok(()),
            Some(st) => {
                if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
                    dir_times.forget_under(&comps);
                }
                ovlink_fs::remove_all_at(fd, target, &shown).map_err(fe(name))
            }
        }
    }

    /// `.wh..wh..opq` in `dir`, [`WhiteoutFormat::Overlay`]: `dir` (created if missing)
    /// becomes an opaque overlayfs directory; nothing is removed.
    fn overlay_opaque(&mut self, dir: &[OsString], name: &Path) -> Result<(), TarError> {
        let shown = self.tree.shown(dir);
        let fd = self
            .tree
            .dir(dir, name, Missing::Create, &mut self.created)?
            .ok_or_else(|| fe(name)(FsError::io("open directory", &shown, Errno::NOENT)))?;
        ovlink_fs::xattr::set_fd(fd, OsStr::new(whiteout::OVERLAY_OPAQUE_XATTR), b"y", &shown)
            .map_err(fe(name))
    }

    /// `.wh.TARGET` in `dir`, [`WhiteoutFormat::Overlay`]: TARGET becomes an overlayfs
    /// whiteout (a character device 0/0, mode 0, owned as the entry), replacing whatever this
    /// tree has there.
    fn overlay_whiteout<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        dir: &[OsString],
        target: &OsStr,
        name: &Path,
    ) -> Result<(), TarError> {
        let mut meta = self.map_owner(meta::read(entry, name)?, name)?;
        meta.mode = 0;
        meta.xattrs.clear();
        let mut comps = dir.to_vec();
        comps.push(target.to_os_string());
        let Applier {
            tree,
            created,
            dir_times,
            ..
        } = self;
        let shown = tree.shown(&comps);
        let parent = tree
            .dir(dir, name, Missing::Create, created)?
            .ok_or_else(|| {
                fe(name)(FsError::io(
                    "open directory",
                    tree_parent(&shown),
                    Errno::NOENT,
                ))
            })?;
        replace(parent, target, &shown, &comps, false, dir_times, name)?;
        make_node(
            parent,
            target,
            FileType::CharacterDevice,
            0,
            &shown,
            &meta,
            name,
        )?;
        created.insert(&comps);
        Ok(())
    }

    /// Any entry that creates something at `comps`.
    fn create<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        kind: Kind,
        comps: &Comps,
        name: &Path,
    ) -> Result<(), TarError> {
        if self.opts.skip_devices && matches!(kind, Kind::Char | Kind::Block) {
            return Ok(());
        }
        let meta = self.map_owner(meta::read(entry, name)?, name)?;
        let dev = match kind {
            Kind::Char | Kind::Block => {
                let h = entry.header();
                let major = h
                    .device_major()
                    .map_err(|e| invalid(name, format!("device major: {e}")))?;
                let minor = h
                    .device_minor()
                    .map_err(|e| invalid(name, format!("device minor: {e}")))?;
                match (major, minor) {
                    (Some(ma), Some(mi)) => rustix::fs::makedev(ma, mi),
                    _ => return Err(invalid(name, "a device entry without device numbers")),
                }
            }
            _ => 0,
        };
        let link_name = match kind {
            Kind::Symlink | Kind::Hardlink => match entry.link_name_bytes() {
                Some(l) if !l.is_empty() => l.into_owned(),
                _ => return Err(invalid(name, "a link entry without a target")),
            },
            _ => Vec::new(),
        };
        // A hardlink target is resolved first, on its own fds (the cache holds our parent).
        let link_target = if kind == Kind::Hardlink {
            let t =
                path::normalize(&link_name).map_err(|r| r.into_error(name, "hardlink target: "))?;
            let Some((tbase, tdir)) = t.split_last() else {
                return Err(invalid(name, "a hardlink to the layer root"));
            };
            Some((
                self.tree.dir_uncached(tdir, name)?,
                tbase.clone(),
                self.tree.shown(&t),
            ))
        } else {
            None
        };

        let pax_sparse = self.sparse.take();
        let Applier {
            tree,
            created,
            dir_times,
            buf,
            stats,
            sync,
            opts,
            ..
        } = self;
        let start_writeback = opts.start_writeback;
        let (base, dir) = comps
            .split_last()
            .ok_or_else(|| invalid(name, "names the layer root"))?;
        let shown = tree.shown(comps);
        let parent = tree
            .dir(dir, name, Missing::Create, created)?
            .ok_or_else(|| {
                fe(name)(FsError::io(
                    "open directory",
                    tree_parent(&shown),
                    Errno::NOENT,
                ))
            })?;

        let merge_dir = replace(
            parent,
            base,
            &shown,
            comps,
            kind == Kind::Dir,
            dir_times,
            name,
        )?;

        match kind {
            Kind::File => {
                let (n, fd) = match &pax_sparse {
                    Some(ps) => {
                        write_pax_sparse(parent, base, &shown, entry, &meta, ps, buf, name)?
                    }
                    None => write_file(parent, base, &shown, entry, &meta, buf, name)?,
                };
                stats.size += n;
                if start_writeback && n >= crate::WRITEBACK_MIN {
                    ovlink_fs::writeback::start(fd.as_fd());
                }
                if let Some(sync) = sync {
                    sync.push(fd, shown.clone()).map_err(fe(name))?;
                }
            }
            Kind::Dir => {
                if !merge_dir {
                    rustix::fs::mkdirat(parent, base, Mode::from_raw_mode(0o700))
                        .ctx("create directory", &shown)
                        .map_err(fe(name))?;
                }
                let fd = open_dir_at(parent, base, &shown).map_err(fe(name))?;
                if !merge_dir {
                    check_created(fd.as_fd(), FileType::Directory, 0, &shown, name)?;
                }
                set_fd_meta(fd.as_fd(), &shown, &meta, name)?;
                dir_times.insert(comps, &meta);
            }
            Kind::Symlink => {
                rustix::fs::symlinkat(OsStr::from_bytes(&link_name), parent, base)
                    .ctx("create symlink", &shown)
                    .map_err(fe(name))?;
                let fd = open_created(parent, base, FileType::Symlink, 0, &shown, name)?;
                set_path_meta(fd.as_fd(), &shown, &meta, false, name)?;
            }
            Kind::Hardlink => {
                // The new name shares the target's inode: its metadata is the target's and is
                // not changed (the target may be a lower layer's file).
                if let Some((tdir, tbase, tshown)) = &link_target {
                    match rustix::fs::linkat(
                        tdir,
                        tbase.as_os_str(),
                        parent,
                        base,
                        AtFlags::empty(),
                    ) {
                        Ok(()) => {}
                        Err(e @ Errno::NOENT) => {
                            return Err(fe(name)(FsError::io(
                                "hardlink to missing target",
                                tshown,
                                e,
                            )))
                        }
                        Err(e) => return Err(fe(name)(FsError::io("hardlink to", &shown, e))),
                    }
                }
            }
            Kind::Fifo | Kind::Char | Kind::Block => {
                let ft = match kind {
                    Kind::Fifo => FileType::Fifo,
                    Kind::Char => FileType::CharacterDevice,
                    _ => FileType::BlockDevice,
                };
                make_node(parent, base, ft, dev, &shown, &meta, name)?;
            }
            Kind::Global => {}
        }
        created.insert(comps);
        Ok(())
    }

    /// Sets the directory times, deepest first, on the directories that are still there.
    fn finish(mut self) -> Result<ApplyStats, TarError> {
        if let Some(sync) = self.sync.take() {
            sync.finish()?;
        }
        let mut times = std::mem::take(&mut self.dir_times);
        let Applier { tree, created, .. } = &mut self;
        times.drain(|comps, ts| -> Result<(), TarError> {
            let shown = tree.shown(comps);
            let entry: PathBuf = if comps.is_empty() {
                PathBuf::from(".")
            } else {
                comps.iter().collect()
            };
            let fd: OwnedFd = match comps.split_last() {
                None => rustix::fs::openat(tree.root(), ".", DIR_FLAGS, Mode::empty())
                    .ctx("open directory", &shown)
                    .map_err(fe(&entry))?,
                Some((base, dir)) => {
                    let Some(parent) = tree.dir(dir, &entry, Missing::Lenient, created)? else {
                        return Ok(());
                    };
                    match rustix::fs::openat(parent, base.as_os_str(), DIR_FLAGS, Mode::empty()) {
                        Ok(fd) => fd,
                        Err(Errno::NOENT) | Err(Errno::LOOP) | Err(Errno::NOTDIR) => return Ok(()),
                        Err(e) => return Err(fe(&entry)(FsError::io("open directory", &shown, e))),
                    }
                }
            };
            rustix::fs::futimens(&fd, &ts)
                .ctx("set times of", &shown)
                .map_err(fe(&entry))
        })?;
        Ok(self.stats)
    }
}

/// Whatever is at `base` in `parent` now goes, except a directory when `keep_dir` (the tar
/// has a directory at the same path: it is merged). Returns true when a directory is kept.
fn replace(
    parent: BorrowedFd<'_>,
    base: &OsStr,
    shown: &Path,
    comps: &[OsString],
    keep_dir: bool,
    dir_times: &mut DirTimes,
    name: &Path,
) -> Result<bool, TarError> {
    let Some(st) = stat_at(parent, base, shown).map_err(fe(name))? else {
        return Ok(false);
    };
    let is_dir = FileType::from_raw_mode(st.st_mode) == FileType::Directory;
    if is_dir && keep_dir {
        return Ok(true);
    }
    if is_dir {
        dir_times.forget_under(comps);
        ovlink_fs::remove_all_at(parent, base, shown).map_err(fe(name))?;
    } else {
        rustix::fs::unlinkat(parent, base, AtFlags::empty())
            .ctx("remove", shown)
            .map_err(fe(name))?;
    }
    Ok(false)
}

/// Creates the fifo or device node `base` in `parent` with `meta` (mode included).
fn make_node(
    parent: BorrowedFd<'_>,
    base: &OsStr,
    ft: FileType,
    dev: u64,
    shown: &Path,
    meta: &Meta,
    name: &Path,
) -> Result<(), TarError> {
    // Created 0600: the final mode is set below, on the inode itself.
    rustix::fs::mknodat(parent, base, ft, Mode::from_raw_mode(0o600), dev)
        .ctx("create node", shown)
        .map_err(fe(name))?;
    let fd = open_created(parent, base, ft, dev, shown, name)?;
    set_path_meta(fd.as_fd(), shown, meta, true, name)
}

fn tree_parent(p: &Path) -> PathBuf {
    p.parent().map(Path::to_path_buf).unwrap_or_default()
}

/// Creates the regular file `base` in `parent` with the entry's content and metadata;
/// returns the number of bytes written and the file, still open.
fn write_file<R: Read>(
    parent: BorrowedFd<'_>,
    base: &OsStr,
    shown: &Path,
    entry: &mut tar::Entry<'_, R>,
    meta: &Meta,
    buf: &mut [u8],
    name: &Path,
) -> Result<(u64, OwnedFd), TarError> {
    let mut file = create_file(parent, base, shown, name)?;
    let want = entry.size();
    let mut written: u64 = 0;
    // A sparse entry (GNU 'S'): the parser hands out its holes as zeros; they are skipped
    // with a seek, never written, and the size set at the end, as Docker's applier does
    // (Go's tar reader seeks over holes). Any all-zero block of it becomes a hole.
    let sparse = entry.header().entry_type().is_gnu_sparse();
    let mut hole: u64 = 0;
    loop {
        let n = match entry.read(buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(source) => {
                return Err(TarError::Read {
                    entry: Some(name.to_path_buf()),
                    source,
                })
            }
        };
        if sparse {
            for block in buf[..n].chunks(HOLE_BLOCK) {
                if block == &ZEROS[..block.len()] {
                    hole += block.len() as u64;
                    continue;
                }
                if hole > 0 {
                    skip(&mut file, hole)
                        .ctx("seek in", shown)
                        .map_err(fe(name))?;
                    hole = 0;
                }
                file.write_all(block)
                    .ctx("write", shown)
                    .map_err(fe(name))?;
            }
        } else {
            file.write_all(&buf[..n])
                .ctx("write", shown)
                .map_err(fe(name))?;
        }
        written += n as u64;
    }
    if sparse {
        // A trailing hole: the size, without writing it.
        file.set_len(written)
            .ctx("set the size of", shown)
            .map_err(fe(name))?;
    }
    if written != want {
        return Err(TarError::Read {
            entry: Some(name.to_path_buf()),
            source: io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("the archive ends inside this entry ({written} of {want} bytes)"),
            ),
        });
    }
    let fd = finish_file(file, shown, meta, name)?;
    Ok((written, fd))
}

/// Creates the new regular file `base` in `parent` (0600, `O_EXCL | O_NOFOLLOW`: always a
/// fresh inode of this apply's).
fn create_file(
    parent: BorrowedFd<'_>,
    base: &OsStr,
    shown: &Path,
    name: &Path,
) -> Result<File, TarError> {
    let fd = rustix::fs::openat(
        parent,
        base,
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )
    .ctx("create", shown)
    .map_err(fe(name))?;
    Ok(File::from(fd))
}

/// Owner, xattrs, mode and times of a file just written; returns its fd.
fn finish_file(file: File, shown: &Path, meta: &Meta, name: &Path) -> Result<OwnedFd, TarError> {
    let fd = OwnedFd::from(file);
    set_fd_meta(fd.as_fd(), shown, meta, name)?;
    rustix::fs::futimens(&fd, &meta.timestamps())
        .ctx("set times of", shown)
        .map_err(fe(name))?;
    Ok(fd)
}

/// Creates the regular file `base` from a PAX sparse entry: each data segment written at
/// its offset, the holes between seeked over, the size set to the real size. Returns the
/// real size and the file, still open.
#[allow(clippy::too_many_arguments)]
fn write_pax_sparse<R: Read>(
    parent: BorrowedFd<'_>,
    base: &OsStr,
    shown: &Path,
    entry: &mut tar::Entry<'_, R>,
    meta: &Meta,
    ps: &PaxSparse,
    buf: &mut [u8],
    name: &Path,
) -> Result<(u64, OwnedFd), TarError> {
    use std::io::{Seek, SeekFrom};
    let read_err = |source: io::Error| TarError::Read {
        entry: Some(name.to_path_buf()),
        source,
    };
    let (map, _) = match &ps.map {
        Some(m) => (m.clone(), 0),
        None => sparse::read_map(entry, name)?,
    };
    let mut file = create_file(parent, base, shown, name)?;
    let mut end = 0u64;
    for (off, len) in map {
        let stop = off.checked_add(len).filter(|s| *s <= ps.real_size);
        if off < end || stop.is_none() {
            return Err(invalid(
                name,
                format!(
                    "PAX sparse file: segment at {off} of {len} bytes is out of order or past \
                     the real size {}",
                    ps.real_size
                ),
            ));
        }
        file.seek(SeekFrom::Start(off))
            .ctx("seek in", shown)
            .map_err(fe(name))?;
        let mut left = len;
        while left > 0 {
            let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            let n = match entry.read(&mut buf[..want]) {
                Ok(0) => {
                    return Err(read_err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the archive ends inside a sparse segment",
                    )))
                }
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(read_err(e)),
            };
            file.write_all(&buf[..n])
                .ctx("write", shown)
                .map_err(fe(name))?;
            left -= n as u64;
        }
        end = off + len;
    }
    let mut extra = [0u8; 1];
    if entry.read(&mut extra).map_err(read_err)? != 0 {
        return Err(invalid(
            name,
            "PAX sparse file: more data than its sparse map lists",
        ));
    }
    file.set_len(ps.real_size)
        .ctx("set the size of", shown)
        .map_err(fe(name))?;
    let fd = finish_file(file, shown, meta, name)?;
    Ok((ps.real_size, fd))
}

/// The unit in which a sparse entry's zeros become holes (a page, the usual block size).
const HOLE_BLOCK: usize = 4096;
/// One block of zeros to compare with.
static ZEROS: [u8; HOLE_BLOCK] = [0; HOLE_BLOCK];

/// Moves the write position of `file` `n` bytes on (over a hole).
fn skip(file: &mut File, n: u64) -> io::Result<()> {
    use std::io::{Seek, SeekFrom};
    let n = i64::try_from(n).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    file.seek(SeekFrom::Current(n)).map(|_| ())
}

/// Owner, xattrs, then mode (chown clears setuid/setgid) on an open file or directory this
/// apply created (or a directory the tar names). Times are set by the caller.
fn set_fd_meta(fd: BorrowedFd<'_>, shown: &Path, meta: &Meta, name: &Path) -> Result<(), TarError> {
    rustix::fs::fchown(
        fd,
        Some(Uid::from_raw(meta.uid)),
        Some(Gid::from_raw(meta.gid)),
    )
    .ctx("change owner of", shown)
    .map_err(fe(name))?;
    for (k, v) in &meta.xattrs {
        rustix::fs::fsetxattr(fd, k.as_os_str(), v, XattrFlags::empty())
            .map_err(|e| xattr_err(name, k, v, shown, e))?;
    }
    rustix::fs::fchmod(fd, Mode::from_raw_mode(meta.mode))
        .ctx("change mode of", shown)
        .map_err(fe(name))
}

/// A failed `setxattr`, naming the key, its size and the entry. Its errno is kept out of
/// [`TarError::raw_os_error`]: an xattr that does not fit (`ENOSPC`, `E2BIG`) is not a full
/// disk, and must not be reported as one.
fn xattr_err(name: &Path, key: &OsStr, value: &[u8], shown: &Path, e: Errno) -> TarError {
    TarError::Xattr {
        entry: name.to_path_buf(),
        key: key.to_os_string(),
        size: value.len(),
        path: shown.to_path_buf(),
        source: e.into(),
    }
}

/// Opens the symlink or node `base` this apply just created in `parent` as an `O_PATH` fd,
/// without following it, and checks it is the inode the apply made (see [`check_created`]).
/// Every later metadata call goes through this fd, so a concurrent writer in the tree (an
/// apply through a container's `merged/`) that swaps the entry for a symlink to a host file
/// cannot redirect any of them.
fn open_created(
    parent: BorrowedFd<'_>,
    base: &OsStr,
    ft: FileType,
    rdev: u64,
    shown: &Path,
    name: &Path,
) -> Result<OwnedFd, TarError> {
    let fd = rustix::fs::openat(
        parent,
        base,
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .ctx("open", shown)
    .map_err(fe(name))?;
    check_created(fd.as_fd(), ft, rdev, shown, name)?;
    Ok(fd)
}

/// Checks that the open `fd` is an entry this apply has just created: of type `ft` (with
/// device number `rdev` for a device), owned by this process's effective uid (a fresh inode
/// is; a process in the tree cannot make one of ours) and, unless a directory, with a single
/// link. Anything else means the entry was replaced under the apply.
fn check_created(
    fd: BorrowedFd<'_>,
    ft: FileType,
    rdev: u64,
    shown: &Path,
    name: &Path,
) -> Result<(), TarError> {
    let st = rustix::fs::fstat(fd).ctx("stat", shown).map_err(fe(name))?;
    let dev_ok =
        !matches!(ft, FileType::CharacterDevice | FileType::BlockDevice) || st.st_rdev == rdev;
    let links_ok = ft == FileType::Directory || st.st_nlink == 1;
    if FileType::from_raw_mode(st.st_mode) != ft
        || !dev_ok
        || !links_ok
        || st.st_uid != rustix::process::geteuid().as_raw()
    {
        return Err(TarError::EscapeAttempt {
            entry: name.to_path_buf(),
            reason: format!(
                "{} was replaced while the apply was creating it (a process writing into the \
                 same tree?); nothing was changed on the replacement",
                shown.display()
            ),
        });
    }
    Ok(())
}

/// Owner, xattrs, mode (when `chmod`: never on a symlink) and times of the symlink or node
/// open as the `O_PATH` fd `fd` (from [`open_created`]). `chown` is `AT_EMPTY_PATH` on the
/// fd; xattrs, mode and times go through `/proc/self/fd/N`, which resolves to the fd's own
/// inode (a symlink itself, never its target). All of this works on Linux 3.10 (`O_PATH`
/// and `AT_EMPTY_PATH` are 2.6.39), which has no `lchmod` and no `fchmod` on `O_PATH`.
fn set_path_meta(
    fd: BorrowedFd<'_>,
    shown: &Path,
    meta: &Meta,
    chmod: bool,
    name: &Path,
) -> Result<(), TarError> {
    rustix::fs::chownat(
        fd,
        "",
        Some(Uid::from_raw(meta.uid)),
        Some(Gid::from_raw(meta.gid)),
        AtFlags::EMPTY_PATH,
    )
    .ctx("change owner of", shown)
    .map_err(fe(name))?;
    let p = proc_fd_path(fd);
    for (k, v) in &meta.xattrs {
        match rustix::fs::setxattr(&p, k.as_os_str(), v, XattrFlags::empty()) {
            Ok(()) => {}
            // The kernel refuses user.* xattrs on symlinks and device nodes.
            Err(Errno::PERM) | Err(Errno::NOTSUP) if k.as_bytes().starts_with(b"user.") => {}
            Err(e) => return Err(xattr_err(name, k, v, shown, e)),
        }
    }
    if chmod {
        rustix::fs::chmod(&p, Mode::from_raw_mode(meta.mode))
            .ctx("change mode of", shown)
            .map_err(fe(name))?;
    }
    rustix::fs::utimensat(rustix::fs::CWD, &p, &meta.timestamps(), AtFlags::empty())
        .ctx("set times of", shown)
        .map_err(fe(name))
}
