//! The Docker layer tar writer: the walk's results as tar entries, streamed to a writer.
//!
//! Entries carry mode, owner, mtime (seconds), device numbers, symlink targets and xattrs
//! (PAX `SCHILY.xattr.*`, the ones [`crate::is_exported_xattr`] keeps). Names longer than the
//! ustar fields go in the ustar prefix when they split there, else in a PAX `path` record
//! (a GNU long-name entry when the name holds a newline, which PAX readers that split records
//! at newlines cannot take). A regular file linked more than once in the diff is written once;
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
use rustix::fs::{FileType, Mode, OFlags, Stat};
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
}

/// Writes (or, without a builder, only measures) the layer tar.
pub(crate) struct TarSink<W: Write> {
    builder: Option<tar::Builder<W>>,
    /// (dev, ino) of a multiply-linked regular file already in the tar -> its tar name.
    links: HashMap<(u64, u64), Vec<u8>>,
    pub(crate) stats: ExportStats,
}

impl<W: Write> TarSink<W> {
    pub(crate) fn new(out: Option<W>) -> Self {
        TarSink {
            builder: out.map(tar::Builder::new),
            links: HashMap::new(),
            stats: ExportStats::default(),
        }
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

fn base_header(kind: EntryType, st: &Stat) -> Header {
    let mut h = Header::new_ustar();
    h.set_entry_type(kind);
    h.set_mode(st.st_mode & 0o7777);
    h.set_uid(u64::from(st.st_uid));
    h.set_gid(u64::from(st.st_gid));
    h.set_mtime(u64::try_from(st.st_mtime).unwrap_or(0));
    h.set_size(0);
    h
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

/// Splits `path` into a ustar prefix and name, if it fits that way.
fn ustar_split(path: &[u8]) -> Option<(&[u8], &[u8])> {
    path.iter()
        .enumerate()
        .filter(|(_, b)| **b == b'/')
        .map(|(i, _)| (&path[..i], &path[i + 1..]))
        .find(|(p, n)| {
            !p.is_empty() && !n.is_empty() && p.len() <= PREFIX_LEN && n.len() <= NAME_LEN
        })
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
        {
            let u = h
                .as_ustar_mut()
                .ok_or_else(|| werr(io::Error::other("not a ustar header")))?;
            if path.len() <= NAME_LEN {
                copy_field(&mut u.name, path);
            } else if let Some((p, n)) = ustar_split(path) {
                copy_field(&mut u.prefix, p);
                copy_field(&mut u.name, n);
            } else {
                copy_field(&mut u.name, &path[..NAME_LEN]);
                if path.contains(&b'\n') {
                    gnu.push((EntryType::GNULongName, path));
                } else {
                    pax_record(&mut pax, b"path", path);
                }
            }
            if let Some(l) = link {
                copy_field(&mut u.linkname, l);
                if l.len() > NAME_LEN {
                    if l.contains(&b'\n') {
                        gnu.push((EntryType::GNULongLink, l));
                    } else {
                        pax_record(&mut pax, b"linkpath", l);
                    }
                }
            }
        }
        for (k, v) in xattrs {
            let mut key = b"SCHILY.xattr.".to_vec();
            key.extend_from_slice(std::os::unix::ffi::OsStrExt::as_bytes(k.as_os_str()));
            pax_record(&mut pax, &key, v);
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
                copy_field(&mut u.name, b"PaxHeaders/entry");
            }
            x.set_mode(0o644);
            x.set_mtime(h.mtime().unwrap_or(0));
            x.set_size(pax.len() as u64);
            x.set_cksum();
            b.append(&x, &pax[..]).map_err(werr)?;
        }
        h.set_cksum();
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
        let path = tar_path(ev.rel, ft == FileType::Directory);
        if ft == FileType::RegularFile && st.st_nlink > 1 {
            let key = (st.st_dev, st.st_ino);
            if let Some(first) = self.links.get(&key).cloned() {
                if self.measuring() {
                    self.stats.entries += 1;
                    return Ok(());
                }
                let xattrs = xattrs_of(ev.obj, ev.shown, is_exported_xattr)?;
                let h = base_header(EntryType::Link, st);
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
                self.write(
                    base_header(EntryType::Directory, st),
                    &path,
                    None,
                    &xattrs,
                    None,
                )?;
                if ev.opaque {
                    let m = whiteout_path(ev.rel, OPAQUE_MARKER, b"");
                    self.write(whiteout_header(st), &m, None, &[], None)?;
                }
                Ok(())
            }
            (FileType::RegularFile, Obj::At(dir, name)) => {
                let fd = rustix::fs::openat(
                    dir,
                    name,
                    OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NOCTTY,
                    Mode::empty(),
                )
                .map_err(|e| FsError::io("open", ev.shown, e))?;
                let mut h = base_header(EntryType::Regular, st);
                let size = st.st_size as u64;
                h.set_size(size);
                self.write(
                    h,
                    &path,
                    None,
                    &xattrs,
                    Some((std::fs::File::from(fd), size, ev.shown)),
                )
            }
            (FileType::Symlink, Obj::At(dir, name)) => {
                let target = rustix::fs::readlinkat(dir, name, Vec::new())
                    .map_err(|e| FsError::io("read link", ev.shown, e))?;
                let h = base_header(EntryType::Symlink, st);
                self.write(h, &path, Some(target.as_bytes()), &xattrs, None)
            }
            (FileType::CharacterDevice | FileType::BlockDevice | FileType::Fifo, _) => {
                let kind = match ft {
                    FileType::CharacterDevice => EntryType::Char,
                    FileType::BlockDevice => EntryType::Block,
                    _ => EntryType::Fifo,
                };
                let mut h = base_header(kind, st);
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
