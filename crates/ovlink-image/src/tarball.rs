//! The outer tar of an image archive as `save` and `generate` write it:
//! directories and regular files only, root-owned, one fixed mtime, GNU headers (long names
//! through the GNU extension). Member order is the caller's.
//!
//! This module only writes to the `Write` it is given; it never reads archives (that is
//! `archive`) and never writes layer tars (their entries belong to the layer).

use std::io::{self, Read, Write};

/// An archive tar being written.
pub(crate) struct TarballWriter<W: Write> {
    builder: tar::Builder<W>,
    mtime: u64,
}

impl<W: Write> TarballWriter<W> {
    /// A writer whose every member has mtime `mtime`.
    pub(crate) fn new(out: W, mtime: u64) -> Self {
        TarballWriter {
            builder: tar::Builder::new(out),
            mtime,
        }
    }

    fn header(&self, kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h.set_mtime(self.mtime);
        h.set_uid(0);
        h.set_gid(0);
        h
    }

    /// A directory member (`path` ends with `/`), mode 0755.
    pub(crate) fn dir(&mut self, path: &str) -> io::Result<()> {
        let mut h = self.header(tar::EntryType::Directory, 0o755, 0);
        self.builder.append_data(&mut h, path, io::empty())
    }

    /// A regular member holding `data`, mode 0644.
    pub(crate) fn file(&mut self, path: &str, data: &[u8]) -> io::Result<()> {
        self.stream(path, &mut &data[..], data.len() as u64)
    }

    /// A regular member of `size` bytes read from `data`, mode 0644.
    pub(crate) fn stream(&mut self, path: &str, data: &mut dyn Read, size: u64) -> io::Result<()> {
        let mut h = self.header(tar::EntryType::Regular, 0o644, size);
        self.builder.append_data(&mut h, path, data)
    }

    /// Writes the end-of-archive blocks, flushes, and gives the output back.
    pub(crate) fn finish(self) -> io::Result<W> {
        let mut out = self.builder.into_inner()?;
        out.flush()?;
        Ok(out)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn members_as_written() {
        let mut w = TarballWriter::new(Vec::new(), 7);
        w.dir("d/").unwrap();
        w.file("d/f", b"abc").unwrap();
        let long = format!("{}/x", "n".repeat(150));
        w.stream(&long, &mut &b"zz"[..], 2).unwrap();
        let bytes = w.finish().unwrap();
        let mut ar = tar::Archive::new(&bytes[..]);
        let got: Vec<(String, u32, u64, u64)> = ar
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let h = e.header();
                (
                    e.path().unwrap().to_string_lossy().into_owned(),
                    h.mode().unwrap(),
                    h.mtime().unwrap(),
                    h.size().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                ("d/".to_string(), 0o755, 7, 0),
                ("d/f".to_string(), 0o644, 7, 3),
                (long, 0o644, 7, 2),
            ]
        );
    }
}
