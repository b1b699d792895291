//! overlay2 keeps deletions inside a layer's `diff/` as overlayfs understands them, not as the
//! AUFS names layer tars carry. This module rewrites a layer tar stream on the fly, as Docker's
//! `OverlayWhiteoutFormat` does on extraction:
//!
//! - `DIR/.wh.NAME` becomes a character device `DIR/NAME` with device number 0/0 and mode 0,
//!   owned as the whiteout entry was;
//! - `DIR/.wh..wh..opq` is dropped and `DIR` is recorded: the caller sets the
//!   `trusted.overlay.opaque=y` xattr on it after the apply ([`mark_opaque`]);
//! - other `.wh..wh.*` names (AUFS metadata) are dropped;
//! - every other entry is copied unchanged (header fields, PAX records, data).
//!
//! The input may be plain, gzip or zstd (by magic bytes); the output is a plain tar. The input
//! is always read to its end before the output is finished, so a reader that checks a digest at
//! EOF gets to check it, and an error there leaves the output unfinished. This module writes
//! nothing to the filesystem except the opaque xattr in [`mark_opaque`], below the fd it is
//! handed.

use ovlink_fs::error::Context;
use ovlink_tar::decompress;
use ovlink_tar::TarError;
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use std::ffi::OsStr;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

/// What the rewrite did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Rewritten {
    /// Directories (relative to the layer root) that must become opaque.
    pub opaque_dirs: Vec<PathBuf>,
    /// `.wh.NAME` entries turned into 0/0 character devices.
    pub whiteouts: u64,
    /// Entries copied unchanged.
    pub entries: u64,
}

fn read_err(entry: Option<&Path>, source: io::Error) -> TarError {
    TarError::Read {
        entry: entry.map(Path::to_path_buf),
        source,
    }
}

/// Rewrites the layer tar `input` into the plain tar `out` (see the module docs).
pub fn rewrite(input: &mut dyn Read, out: &mut dyn Write) -> Result<Rewritten, TarError> {
    // Detection, decoding and draining are the tar applier's own (ovlink_tar::decompress).
    let (kind, mut raw) = decompress::sniff(input).map_err(|e| read_err(None, e))?;
    let r = {
        let mut dec = decompress::decoder(kind, &mut raw).map_err(|e| read_err(None, e))?;
        let r = rewrite_plain(&mut dec, out)?;
        drain(&mut dec)?;
        r
    };
    // The raw input to its end, so a wrapping reader always sees EOF.
    drain(&mut raw)?;
    Ok(r)
}

fn drain(r: &mut dyn Read) -> Result<(), TarError> {
    io::copy(r, &mut io::sink())
        .map(|_| ())
        .map_err(|e| read_err(None, e))
}

/// Splits `path` into (parent, base name) after dropping `.` components and a leading `/`.
fn split(path: &Path) -> (PathBuf, Option<&OsStr>) {
    let comps: Vec<&OsStr> = path
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n),
            Component::ParentDir => Some(OsStr::new("..")),
            _ => None,
        })
        .collect();
    match comps.split_last() {
        Some((base, dir)) => (dir.iter().collect(), Some(*base)),
        None => (PathBuf::new(), None),
    }
}

fn rewrite_plain(input: &mut dyn Read, out: &mut dyn Write) -> Result<Rewritten, TarError> {
    let mut ar = tar::Archive::new(input);
    let mut b = tar::Builder::new(out);
    let mut done = Rewritten::default();
    let entries = ar.entries().map_err(|e| read_err(None, e))?;
    let mut last: Option<PathBuf> = None;
    for entry in entries {
        let mut entry = entry.map_err(|e| read_err(last.as_deref(), e))?;
        let path = entry
            .path()
            .map_err(|e| read_err(last.as_deref(), e))?
            .into_owned();
        last = Some(path.clone());
        let kind = entry.header().entry_type();
        if kind.is_pax_global_extensions() {
            continue;
        }
        let werr = |e: io::Error| read_err(Some(&path), e);
        let escapes = |p: &Path| {
            p.components()
                .any(|c| matches!(c, Component::ParentDir | Component::RootDir))
        };
        if escapes(&path) {
            return Err(TarError::EscapeAttempt {
                entry: path,
                reason: "an absolute path or a '..' component".into(),
            });
        }
        let (dir, base) = split(&path);
        let wh = base.map(|b| b.as_bytes()).unwrap_or_default();
        if wh == b".wh..wh..opq" {
            done.opaque_dirs.push(dir);
            continue;
        }
        if wh.starts_with(b".wh..wh.") {
            continue;
        }
        if let Some(target) = wh.strip_prefix(b".wh.") {
            if !target.is_empty() && target != b"." && target != b".." {
                let src = entry.header();
                let mut h = tar::Header::new_gnu();
                h.set_entry_type(tar::EntryType::Char);
                h.set_mode(0);
                h.set_uid(src.uid().map_err(werr)?);
                h.set_gid(src.gid().map_err(werr)?);
                h.set_mtime(src.mtime().map_err(werr)?);
                h.set_size(0);
                h.set_device_major(0).map_err(werr)?;
                h.set_device_minor(0).map_err(werr)?;
                b.append_data(&mut h, dir.join(OsStr::from_bytes(target)), io::empty())
                    .map_err(werr)?;
                done.whiteouts += 1;
                continue;
            }
        }
        // Copy the entry: a fresh GNU header (long names go into GNU records), every PAX
        // record except the path ones (re-derived), then the data.
        let pax: Vec<(String, Vec<u8>)> = match entry.pax_extensions().map_err(werr)? {
            Some(exts) => {
                let mut v = Vec::new();
                for ext in exts {
                    let ext = ext.map_err(werr)?;
                    let key = ext.key().map_err(|_| {
                        werr(io::Error::new(
                            io::ErrorKind::InvalidData,
                            "a PAX record key is not UTF-8",
                        ))
                    })?;
                    if key != "path" && key != "linkpath" {
                        v.push((key.to_string(), ext.value_bytes().to_vec()));
                    }
                }
                v
            }
            None => Vec::new(),
        };
        if !pax.is_empty() {
            b.append_pax_extensions(pax.iter().map(|(k, v)| (k.as_str(), v.as_slice())))
                .map_err(werr)?;
        }
        let src = entry.header();
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(src.mode().map_err(werr)?);
        h.set_uid(src.uid().map_err(werr)?);
        h.set_gid(src.gid().map_err(werr)?);
        h.set_mtime(src.mtime().map_err(werr)?);
        if let Some(u) = src.username_bytes() {
            let _ = h.set_username(&String::from_utf8_lossy(u));
        }
        if let Some(g) = src.groupname_bytes() {
            let _ = h.set_groupname(&String::from_utf8_lossy(g));
        }
        if matches!(kind, tar::EntryType::Char | tar::EntryType::Block) {
            if let Some(m) = src.device_major().map_err(werr)? {
                h.set_device_major(m).map_err(werr)?;
            }
            if let Some(m) = src.device_minor().map_err(werr)? {
                h.set_device_minor(m).map_err(werr)?;
            }
        }
        let link = entry.link_name().map_err(werr)?.map(|l| l.into_owned());
        if kind == tar::EntryType::Link && link.as_deref().is_some_and(escapes) {
            return Err(TarError::EscapeAttempt {
                entry: path,
                reason: "a hardlink to an absolute path or through '..'".into(),
            });
        }
        match (kind, link) {
            (tar::EntryType::Link | tar::EntryType::Symlink, Some(target)) => {
                h.set_size(0);
                b.append_link(&mut h, &path, &target).map_err(werr)?;
            }
            _ => {
                h.set_size(entry.size());
                b.append_data(&mut h, &path, &mut entry).map_err(werr)?;
            }
        }
        done.entries += 1;
    }
    b.finish().map_err(|e| read_err(last.as_deref(), e))?;
    Ok(done)
}

/// Sets `trusted.overlay.opaque=y` on `rel` below the open layer root `root`, creating missing
/// directories (0755) on the way. Never follows a symlink and never leaves `root`.
pub fn mark_opaque(root: BorrowedFd<'_>, root_shown: &Path, rel: &Path) -> Result<(), TarError> {
    let mut cur: OwnedFd = rustix::io::dup(root).ctx("dup", root_shown)?;
    let mut shown = root_shown.to_path_buf();
    for comp in rel.components() {
        let Component::Normal(name) = comp else {
            return Err(TarError::EscapeAttempt {
                entry: rel.join(".wh..wh..opq"),
                reason: "the opaque marker's directory is not below the layer".into(),
            });
        };
        shown.push(name);
        ovlink_fs::at::mkdir_at(&cur, name, 0o755, &shown)?;
        cur = ovlink_fs::at::open_dir_at(&cur, name, &shown)?;
    }
    ovlink_fs::xattr::set_fd(
        cur.as_fd(),
        OsStr::new(ovlink_fs::xattr::OVERLAY_OPAQUE),
        b"y",
        &shown,
    )?;
    Ok(())
}

/// The writing end of an in-process pipe: bytes go in 64 KiB chunks to a bounded channel.
/// Only [`StreamWriter::finish`] sends the last chunk; dropping it unfinished makes the reader
/// see a truncated stream.
#[derive(Debug)]
pub(crate) struct StreamWriter {
    tx: SyncSender<Vec<u8>>,
    buf: Vec<u8>,
}

/// The reading end of [`stream`].
#[derive(Debug)]
pub(crate) struct StreamReader {
    rx: Receiver<Vec<u8>>,
    cur: Vec<u8>,
    pos: usize,
}

const CHUNK: usize = 64 * 1024;

/// A bounded in-process byte pipe (the tar rewrite writes it, the applier reads it).
pub(crate) fn stream() -> (StreamWriter, StreamReader) {
    let (tx, rx) = sync_channel(16);
    (
        StreamWriter {
            tx,
            buf: Vec::with_capacity(CHUNK),
        },
        StreamReader {
            rx,
            cur: Vec::new(),
            pos: 0,
        },
    )
}

impl StreamWriter {
    fn send(&mut self) -> io::Result<()> {
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        self.tx.send(chunk).map_err(|_| {
            io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the layer applier stopped reading",
            )
        })
    }

    /// Sends what is buffered and closes the stream (the reader then sees EOF).
    pub(crate) fn finish(mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            self.send()?;
        }
        Ok(())
    }
}

impl Write for StreamWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == CHUNK {
            self.send()?;
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Read for StreamReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.cur.len() {
            match self.rx.recv() {
                Ok(chunk) => {
                    self.cur = chunk;
                    self.pos = 0;
                }
                Err(_) => return Ok(0),
            }
        }
        let n = (self.cur.len() - self.pos).min(buf.len());
        buf[..n].copy_from_slice(&self.cur[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn file(b: &mut tar::Builder<Vec<u8>>, path: &str, data: &[u8]) {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o644);
        h.set_uid(7);
        h.set_gid(0);
        h.set_mtime(1_600_000_000);
        h.set_size(data.len() as u64);
        b.append_data(&mut h, path, data).unwrap();
    }

    #[test]
    fn whiteouts_and_opaque_markers_are_rewritten() {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o750);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_600_000_000);
        h.set_size(0);
        b.append_data(&mut h, "etc/", io::empty()).unwrap();
        file(&mut b, "etc/.wh..wh..opq", b"");
        file(&mut b, "etc/.wh.gone", b"");
        file(&mut b, "./.wh.top", b"");
        file(&mut b, ".wh..wh.plnk", b"");
        let long = format!("deep/{}/f", "x".repeat(150));
        file(&mut b, &long, b"data");
        let tar_bytes = b.into_inner().unwrap();
        let mut out = Vec::new();
        let r = rewrite(&mut &tar_bytes[..], &mut out).unwrap();
        assert_eq!(r.opaque_dirs, vec![PathBuf::from("etc")]);
        assert_eq!(r.whiteouts, 2);
        let mut ar = tar::Archive::new(&out[..]);
        let seen: Vec<(String, tar::EntryType, u32, u64)> = ar
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.path().unwrap().to_string_lossy().into_owned(),
                    e.header().entry_type(),
                    e.header().mode().unwrap(),
                    e.header().uid().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            seen,
            vec![
                ("etc/".to_string(), tar::EntryType::Directory, 0o750, 0),
                ("etc/gone".to_string(), tar::EntryType::Char, 0, 7),
                ("top".to_string(), tar::EntryType::Char, 0, 7),
                (long, tar::EntryType::Regular, 0o644, 7),
            ]
        );
    }

    #[test]
    fn gzip_input_is_read_to_its_end() {
        let mut b = tar::Builder::new(Vec::new());
        file(&mut b, "a", b"x");
        let plain = b.into_inner().unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&plain).unwrap();
        let bytes = gz.finish().unwrap();
        let mut input = &bytes[..];
        let mut out = Vec::new();
        let r = rewrite(&mut input, &mut out).unwrap();
        assert_eq!(r.entries, 1);
        assert!(input.is_empty());
    }

    #[test]
    fn stream_passes_bytes_and_truncates_when_unfinished() {
        let (mut w, mut r) = stream();
        let data: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
        let h = std::thread::spawn(move || {
            let mut v = Vec::new();
            r.read_to_end(&mut v).unwrap();
            v
        });
        w.write_all(&data).unwrap();
        w.finish().unwrap();
        assert_eq!(h.join().unwrap(), data);
        let (mut w, mut r) = stream();
        w.write_all(b"short").unwrap();
        drop(w);
        let mut v = Vec::new();
        r.read_to_end(&mut v).unwrap();
        assert!(v.is_empty());
    }
}
