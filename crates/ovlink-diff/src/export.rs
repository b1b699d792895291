//! The Docker layer tar writer: the walk's results as tar entries, streamed to a writer.
//!
//! Headers are written the way Docker's `pkg/archive` (Go's `archive/tar`, USTAR whenever it
//! can) writes them, so that a layer committed through ovlink can get the digest Docker would
//! give it: the mode field with the file-type bits (`0100644`, `040755`, `0120777` …), owner
//! names looked up in the host's `/etc/passwd` and `/etc/group` (Go's `FileInfoHeader` does),
//! device fields `0000000` on every entry, the checksum as `%06o\0 `, mtime in seconds, long
//! names split into the ustar prefix at the last `/` that fits (Go's `splitUSTARPath`), else a
//! PAX header (`dir/PaxHeaders.0/name`, mode/owner/mtime 0, records sorted by key) with `path`
//! and `linkpath` records, the main header's name cut to 100 bytes (a GNU long-name entry when
//! the name holds a newline, which PAX readers that split records at newlines cannot take).
//! Xattrs travel as PAX `SCHILY.xattr.*` (the ones [`crate::is_exported_xattr`] keeps). Under
//! an id map ([`ExportOptions`]) owners are written as container ids (host -> container), and
//! a host id outside the map is an error naming the file. A regular file linked more than once in the diff is written once;
//! its other names are hardlink entries to the first. A deleted entry is an empty file
//! `.wh.NAME` (mode 0, owner 0, the directory's mtime); an opaque directory is followed by
//! `DIR/.wh..wh..opq`. Sockets are skipped, as Docker does. File contents are copied in
//! small chunks: memory stays flat whatever the layer size.
//!
//! The same sink, without a writer, computes the diff size: the bytes of the regular files
//! the tar would carry (hardlinks once), which is what applying the tar reports.
//!
//! This module never writes to a tree.

use crate::error::{DiffError, Result};
use crate::tree::{is_exported_xattr, xattrs_of, Obj};
use crate::walk::{Event, Kind, Sink};
use ovlink_fs::FsError;
use rustix::fs::{FileType, Stat};
use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::path::Path;
use tar::{EntryType, Header};

const NAME_LEN: usize = 100;
const PREFIX_LEN: usize = 155;
const WHITEOUT_PREFIX: &[u8] = b".wh.";
const OPAQUE_MARKER: &[u8] = b".wh..wh..opq";

/// What an export wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExportStats {
    /// Bytes of regular-file content in the tar (hardlinked files once).
    pub size: u64,
    /// Entries written (not counting PAX and long-name helper entries).
    pub entries: u64,
    /// Docker's `archive.ChangesSize` of the same changes: the `lstat` size of every added or
    /// changed entry that is not a directory (regular files, symlinks: the target's length,
    /// devices and fifos: 0), an inode linked more than once counted once.
    pub changes_size: u64,
}

/// One range of a user-namespace id map (`--userns-remap`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdRange {
    /// First id inside the container.
    pub container_id: u32,
    /// First id on the host.
    pub host_id: u32,
    /// Number of ids.
    pub size: u32,
}

/// How [`crate::export_with`] writes owners.
#[derive(Debug, Clone, Default)]
pub struct ExportOptions {
    /// UID ranges; empty: host uids are written as they are.
    pub uid_maps: Vec<IdRange>,
    /// GID ranges; empty: host gids are written as they are.
    pub gid_maps: Vec<IdRange>,
}

/// The container id of host id `host` under `maps` (none: the same id).
fn to_container(maps: &[IdRange], host: u32) -> Option<u32> {
    if maps.is_empty() {
        return Some(host);
    }
    maps.iter()
        .find(|m| host >= m.host_id && host - m.host_id < m.size)
        .map(|m| m.container_id + (host - m.host_id))
}

/// User and group names of the host, read once from `/etc/passwd` and `/etc/group` (what
/// Go's `user.LookupId` finds for local users); missing files mean no names.
#[derive(Debug, Default)]
struct Names {
    loaded: bool,
    users: HashMap<u32, String>,
    groups: HashMap<u32, String>,
}

impl Names {
    fn load(&mut self) {
        if self.loaded {
            return;
        }
        self.loaded = true;
        let parse = |path: &str| {
            let mut m = HashMap::new();
            if let Ok(text) = std::fs::read_to_string(path) {
                for line in text.lines() {
                    let mut f = line.split(':');
                    if let (Some(name), Some(_), Some(id)) = (f.next(), f.next(), f.next()) {
                        if let Ok(id) = id.parse::<u32>() {
                            m.entry(id).or_insert_with(|| name.to_string());
                        }
                    }
                }
            }
            m
        };
        self.users = parse("/etc/passwd");
        self.groups = parse("/etc/group");
    }
}

/// Writes (or, without a builder, only measures) the layer tar.
pub(crate) struct TarSink<W: Write> {
    builder: Option<tar::Builder<W>>,
    /// (dev, ino) of a multiply-linked regular file already in the tar -> its tar name.
    links: HashMap<(u64, u64), Vec<u8>>,
    /// (dev, ino) of multiply-linked entries already counted in `changes_size`.
    counted: std::collections::HashSet<(u64, u64)>,
    opts: ExportOptions,
    names: Names,
    pub(crate) stats: ExportStats,
}

impl<W: Write> TarSink<W> {
    pub(crate) fn new(out: Option<W>, opts: ExportOptions) -> Self {
        TarSink {
            builder: out.map(tar::Builder::new),
            links: HashMap::new(),
            counted: std::collections::HashSet::new(),
            opts,
            names: Names::default(),
            stats: ExportStats::default(),
        }
    }

    /// A header for `st` as Go's `tar.FileInfoHeader` + Docker's `FileInfoHeader` make it.
    fn header(&mut self, kind: EntryType, st: &Stat, shown: &Path) -> Result<Header> {
        let unmapped = |what: &'static str, id: u32| DiffError::Unmapped {
            path: shown.to_path_buf(),
            what,
            id,
        };
        let uid = to_container(&self.opts.uid_maps, st.st_uid).ok_or(unmapped("uid", st.st_uid))?;
        let gid = to_container(&self.opts.gid_maps, st.st_gid).ok_or(unmapped("gid", st.st_gid))?;
        let mut h = Header::new_ustar();
        h.set_entry_type(kind);
        h.set_mode(st.st_mode & 0o177777);
        h.set_uid(u64::from(uid));
        h.set_gid(u64::from(gid));
        h.set_mtime(u64::try_from(st.st_mtime).unwrap_or(0));
        h.set_size(0);
        let _ = h.set_device_major(0);
        let _ = h.set_device_minor(0);
        // Names of the host ids (Go looks them up before Docker maps the ids).
        self.names.load();
        if let Some(n) = self.names.users.get(&st.st_uid).filter(|n| n.len() <= 32) {
            let _ = h.set_username(n);
        }
        if let Some(n) = self.names.groups.get(&st.st_gid).filter(|n| n.len() <= 32) {
            let _ = h.set_groupname(n);
        }
        Ok(h)
    }

    /// Adds `st` to [`ExportStats::changes_size`] when Docker's `ChangesSize` counts it.
    fn count_change(&mut self, kind: Kind, st: &Stat) {
        if !matches!(kind, Kind::Add | Kind::Modify)
            || FileType::from_raw_mode(st.st_mode) == FileType::Directory
        {
            return;
        }
        if st.st_nlink > 1 && !self.counted.insert((st.st_dev, st.st_ino)) {
            return;
        }
        self.stats.changes_size += u64::try_from(st.st_size).unwrap_or(0);
    }

    /// Writes the end-of-archive blocks.
    pub(crate) fn finish(self) -> Result<ExportStats> {
        if let Some(b) = self.builder {
            b.into_inner().map_err(|source| DiffError::Write {
                entry: "(end of archive)".into(),
                source,
            })?;
        }
        Ok(self.stats)
    }
}

/// The checksum as Go writes it: six octal digits, NUL, space.
fn set_go_cksum(h: &mut Header) {
    let b = h.as_mut_bytes();
    b[148..156].fill(b' ');
    let sum: u32 = b.iter().map(|x| u32::from(*x)).sum();
    let digits = format!("{sum:06o}");
    b[148..154].copy_from_slice(&digits.as_bytes()[digits.len() - 6..]);
    b[154] = 0;
    b[155] = b' ';
}

/// The name of a PAX header entry for `path`: `dir/PaxHeaders.0/base` (Go's), ASCII, at most
/// 100 bytes, no trailing `/`.
fn pax_entry_name(path: &[u8]) -> Vec<u8> {
    let trimmed = path.strip_suffix(b"/").unwrap_or(path);
    let (dir, base) = match trimmed.iter().rposition(|b| *b == b'/') {
        Some(i) => (&trimmed[..=i], &trimmed[i + 1..]),
        None => (&b""[..], trimmed),
    };
    let mut n = dir.to_vec();
    n.extend_from_slice(b"PaxHeaders.0");
    if !base.is_empty() {
        n.push(b'/');
        n.extend_from_slice(base);
    }
    let mut n: Vec<u8> = n.into_iter().filter(u8::is_ascii).collect();
    n.truncate(NAME_LEN);
    while n.last() == Some(&b'/') {
        n.pop();
    }
    n
}

/// Appends one PAX record (`LEN KEY=VALUE\n`, LEN counting itself).
fn pax_record(buf: &mut Vec<u8>, key: &[u8], value: &[u8]) {
    let rest = 1 + key.len() + 1 + value.len() + 1;
    let mut len = rest + 1;
    while len != rest + len.to_string().len() {
        len = rest + len.to_string().len();
    }
    buf.extend_from_slice(len.to_string().as_bytes());
    buf.push(b' ');
    buf.extend_from_slice(key);
    buf.push(b'=');
    buf.extend_from_slice(value);
    buf.push(b'\n');
}

/// Splits `path` into a ustar prefix and name as Go's `splitUSTARPath` does (the last `/`
/// within the first 156 bytes), if it fits that way.
fn ustar_split(path: &[u8]) -> Option<(&[u8], &[u8])> {
    if path.len() <= NAME_LEN || !path.is_ascii() {
        return None;
    }
    let mut len = path.len();
    if len > PREFIX_LEN + 1 {
        len = PREFIX_LEN + 1;
    } else if path[len - 1] == b'/' {
        len -= 1;
    }
    let i = path[..len].iter().rposition(|b| *b == b'/')?;
    let (p, n) = (&path[..i], &path[i + 1..]);
    (i > 0 && !n.is_empty() && n.len() <= NAME_LEN && p.len() <= PREFIX_LEN).then_some((p, n))
}

fn copy_field(field: &mut [u8], value: &[u8]) {
    let n = value.len().min(field.len());
    field[..n].copy_from_slice(&value[..n]);
    for b in &mut field[n..] {
        *b = 0;
    }
}

/// A reader that yields exactly `remaining` bytes of `inner`, remembering why it failed.
struct Exact<R> {
    inner: R,
    remaining: u64,
    short: bool,
    read_failed: bool,
}

impl<R: Read> Read for Exact<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 {
            return Ok(0);
        }
        let max = buf
            .len()
            .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        match self.inner.read(&mut buf[..max]) {
            Ok(0) => {
                self.short = true;
                Err(io::Error::new(io::ErrorKind::UnexpectedEof, "file shrank"))
            }
            Ok(n) => {
                self.remaining -= n as u64;
                Ok(n)
            }
            Err(e) => {
                if e.kind() != io::ErrorKind::Interrupted {
                    self.read_failed = true;
                }
                Err(e)
            }
        }
    }
}

impl<W: Write> TarSink<W> {
    /// Writes `h` for `path` (with `link` as link target), its PAX records and `data`.
    fn write(
        &mut self,
        mut h: Header,
        path: &[u8],
        link: Option<&[u8]>,
        xattrs: &[(std::ffi::OsString, Vec<u8>)],
        data: Option<(std::fs::File, u64, &Path)>,
    ) -> Result<()> {
        self.stats.entries += 1;
        let Some(b) = self.builder.as_mut() else {
            return Ok(());
        };
        let shown = || String::from_utf8_lossy(path).into_owned();
        let werr = |source| DiffError::Write {
            entry: shown(),
            source,
        };
        let mut pax = Vec::new();
        let mut gnu: Vec<(EntryType, &[u8])> = Vec::new();
        for (k, v) in xattrs {
            let mut key = b"SCHILY.xattr.".to_vec();
            key.extend_from_slice(std::os::unix::ffi::OsStrExt::as_bytes(k.as_os_str()));
            pax_record(&mut pax, &key, v);
        }
        let link_long = link.is_some_and(|l| l.len() > NAME_LEN || !l.is_ascii());
        let split = if pax.is_empty() && !link_long {
            ustar_split(path)
        } else {
            None
        };
        let path_long = (path.len() > NAME_LEN || !path.is_ascii()) && split.is_none();
        {
            let u = h
                .as_ustar_mut()
                .ok_or_else(|| werr(io::Error::other("not a ustar header")))?;
            match split {
                Some((p, n)) => {
                    copy_field(&mut u.prefix, p);
                    copy_field(&mut u.name, n);
                }
                None => {
                    let ascii: Vec<u8> = path.iter().copied().filter(u8::is_ascii).collect();
                    copy_field(&mut u.name, &ascii[..ascii.len().min(NAME_LEN)]);
                }
            }
            if let Some(l) = link {
                let ascii: Vec<u8> = l.iter().copied().filter(u8::is_ascii).collect();
                copy_field(&mut u.linkname, &ascii[..ascii.len().min(NAME_LEN)]);
            }
        }
        // Records in key order, as Go writes them ("SCHILY…" < "linkpath" < "path").
        if let Some(l) = link.filter(|_| link_long) {
            if l.contains(&b'\n') {
                gnu.push((EntryType::GNULongLink, l));
            } else {
                pax_record(&mut pax, b"linkpath", l);
            }
        }
        if path_long {
            if path.contains(&b'\n') {
                gnu.push((EntryType::GNULongName, path));
            } else {
                pax_record(&mut pax, b"path", path);
            }
        }
        for (kind, value) in gnu {
            let mut g = Header::new_gnu();
            g.set_entry_type(kind);
            copy_field(&mut g.as_old_mut().name, b"././@LongLink");
            g.set_mode(0o644);
            g.set_size(value.len() as u64 + 1);
            g.set_cksum();
            let mut d = value.to_vec();
            d.push(0);
            b.append(&g, &d[..]).map_err(werr)?;
        }
        if !pax.is_empty() {
            let mut x = Header::new_ustar();
            x.set_entry_type(EntryType::XHeader);
            if let Some(u) = x.as_ustar_mut() {
                copy_field(&mut u.name, &pax_entry_name(path));
            }
            x.set_mode(0);
            x.set_uid(0);
            x.set_gid(0);
            x.set_mtime(0);
            x.set_size(pax.len() as u64);
            set_go_cksum(&mut x);
            b.append(&x, &pax[..]).map_err(werr)?;
        }
        set_go_cksum(&mut h);
        match data {
            None => b.append(&h, io::empty()).map_err(werr),
            Some((f, size, file_shown)) => {
                let mut r = Exact {
                    inner: f,
                    remaining: size,
                    short: false,
                    read_failed: false,
                };
                match b.append(&h, &mut r) {
                    Ok(()) => Ok(()),
                    Err(_) if r.short => Err(DiffError::Changed {
                        path: file_shown.to_path_buf(),
                        expected: size,
                    }),
                    Err(source) if r.read_failed => Err(DiffError::Read {
                        path: file_shown.to_path_buf(),
                        source,
                    }),
                    Err(e) => Err(werr(e)),
                }
            }
        }
    }

    fn measuring(&self) -> bool {
        self.builder.is_none()
    }
}

fn tar_path(rel: &[u8], dir: bool) -> Vec<u8> {
    if rel.is_empty() {
        return b"./".to_vec();
    }
    let mut p = rel.to_vec();
    if dir {
        p.push(b'/');
    }
    p
}

fn whiteout_path(rel: &[u8], marker: &[u8], base: &[u8]) -> Vec<u8> {
    let mut p = rel.to_vec();
    if !p.is_empty() {
        p.push(b'/');
    }
    p.extend_from_slice(marker);
    p.extend_from_slice(base);
    p
}

fn whiteout_header(dir_st: &Stat) -> Header {
    let mut h = Header::new_ustar();
    h.set_entry_type(EntryType::Regular);
    h.set_mode(0);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(u64::try_from(dir_st.st_mtime).unwrap_or(0));
    h.set_size(0);
    let _ = h.set_device_major(0);
    let _ = h.set_device_minor(0);
    h
}

impl<W: Write> Sink for TarSink<W> {
    fn entry(&mut self, ev: &Event<'_>) -> Result<()> {
        if ev.kind == Kind::Parent && ev.exported {
            return Ok(());
        }
        let st = ev.st;
        let ft = FileType::from_raw_mode(st.st_mode);
        if ft == FileType::Socket {
            return Ok(());
        }
        self.count_change(ev.kind, st);
        let path = tar_path(ev.rel, ft == FileType::Directory);
        if ft == FileType::RegularFile && st.st_nlink > 1 {
            let key = (st.st_dev, st.st_ino);
            if let Some(first) = self.links.get(&key).cloned() {
                if self.measuring() {
                    self.stats.entries += 1;
                    return Ok(());
                }
                let xattrs = xattrs_of(ev.obj, ev.shown, is_exported_xattr)?;
                let h = self.header(EntryType::Link, st, ev.shown)?;
                return self.write(h, &path, Some(&first), &xattrs, None);
            }
            self.links.insert(key, path.clone());
        }
        if ft == FileType::RegularFile {
            self.stats.size += st.st_size as u64;
        }
        if self.measuring() {
            self.stats.entries += 1;
            return Ok(());
        }
        let xattrs = xattrs_of(ev.obj, ev.shown, is_exported_xattr)?;
        match (ft, ev.obj) {
            (FileType::Directory, _) => {
                let h = self.header(EntryType::Directory, st, ev.shown)?;
                self.write(h, &path, None, &xattrs, None)?;
                if ev.opaque {
                    let m = whiteout_path(ev.rel, OPAQUE_MARKER, b"");
                    self.write(whiteout_header(st), &m, None, &[], None)?;
                }
                Ok(())
            }
            (FileType::RegularFile, Obj::At(dir, name)) => {
                // Only the inode that was listed, and only if it is still a regular file: a
                // process in the running container may have swapped it for a FIFO or a node
                // of a host disk meanwhile.
                let file = ovlink_fs::at::open_listed_file(
                    dir,
                    name,
                    ev.shown,
                    ovlink_fs::at::Listed::of(st),
                )?;
                let mut h = self.header(EntryType::Regular, st, ev.shown)?;
                let size = st.st_size as u64;
                h.set_size(size);
                self.write(h, &path, None, &xattrs, Some((file, size, ev.shown)))
            }
            (FileType::Symlink, Obj::At(dir, name)) => {
                let target = rustix::fs::readlinkat(dir, name, Vec::new())
                    .map_err(|e| FsError::io("read link", ev.shown, e))?;
                let h = self.header(EntryType::Symlink, st, ev.shown)?;
                self.write(h, &path, Some(target.as_bytes()), &xattrs, None)
            }
            (FileType::CharacterDevice | FileType::BlockDevice | FileType::Fifo, _) => {
                let kind = match ft {
                    FileType::CharacterDevice => EntryType::Char,
                    FileType::BlockDevice => EntryType::Block,
                    _ => EntryType::Fifo,
                };
                let mut h = self.header(kind, st, ev.shown)?;
                if kind != EntryType::Fifo {
                    let _ = h.set_device_major(rustix::fs::major(st.st_rdev));
                    let _ = h.set_device_minor(rustix::fs::minor(st.st_rdev));
                }
                self.write(h, &path, None, &xattrs, None)
            }
            _ => Ok(()),
        }
    }

    fn delete(&mut self, rel: &[u8], dir_st: &Stat, covered: bool) -> Result<()> {
        if covered {
            return Ok(());
        }
        let (dir, base) = match rel.iter().rposition(|b| *b == b'/') {
            Some(i) => (&rel[..i], &rel[i + 1..]),
            None => (&b""[..], rel),
        };
        let p = whiteout_path(dir, WHITEOUT_PREFIX, base);
        self.write(whiteout_header(dir_st), &p, None, &[], None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_record_lengths_count_themselves() {
        for (k, v, want) in [
            (&b"path"[..], &b"a"[..], &b"9 path=a\n"[..]),
            (b"path", &[b'x'; 93][..], &[][..]),
        ] {
            let mut buf = Vec::new();
            pax_record(&mut buf, k, v);
            let sp = buf.iter().position(|b| *b == b' ').unwrap_or(0);
            let n: usize = std::str::from_utf8(&buf[..sp])
                .unwrap_or("0")
                .parse()
                .unwrap_or(0);
            assert_eq!(n, buf.len());
            if !want.is_empty() {
                assert_eq!(buf, want);
            }
        }
    }

    #[test]
    fn ustar_split_finds_a_slash() {
        let long = [b"d".repeat(120), b"/".to_vec(), b"f".repeat(90)].concat();
        let (p, n) = ustar_split(&long).unwrap_or_default();
        assert_eq!((p.len(), n.len()), (120, 90));
        assert!(ustar_split(&b"x".repeat(150)).is_none());
    }
}
