//! A reader between the decoder and the tar parser that follows the tar's block structure
//! and refuses an extension header (GNU long name `L`, long link `K`, PAX `x` and `g`) whose
//! body is larger than [`MAX_EXTENSION`]: the parser reads such a body whole into memory, so
//! without this a 1 GB long name (1 MB of gzip) would cost 1 GB or more.
//!
//! It only looks at the bytes passing through (headers, sizes, the PAX `size` record that
//! overrides the next entry's size, GNU sparse extension blocks); it never changes them and
//! never touches the filesystem.

use std::io::{self, Read};

/// The largest extension header body accepted: a PAX record set or a long name. A name is
/// at most `PATH_MAX` anyway; PAX records hold xattrs, which the kernel limits to 64 KiB
/// each.
pub(crate) const MAX_EXTENSION: u64 = 1 << 20;

const BLOCK: usize = 512;

/// See the module docs.
pub(crate) struct Guard<R> {
    inner: R,
    hdr: [u8; BLOCK],
    fill: usize,
    /// Bytes of the current entry's data (padded to a block) still to pass.
    skip: u64,
    /// GNU sparse extension blocks follow (each a header-sized block).
    sparse_ext: bool,
    /// The body of a PAX `x` header being passed, kept for its `size` record.
    pax: Option<(Vec<u8>, usize)>,
    /// The `size` the last PAX `x` header gives the next entry.
    next_size: Option<u64>,
}

impl<R: Read> Guard<R> {
    pub(crate) fn new(inner: R) -> Self {
        Guard {
            inner,
            hdr: [0; BLOCK],
            fill: 0,
            skip: 0,
            sparse_ext: false,
            pax: None,
            next_size: None,
        }
    }

    /// The reader inside (for draining what follows the archive).
    pub(crate) fn into_inner(self) -> R {
        self.inner
    }

    fn header(&mut self) -> io::Result<()> {
        let h = &self.hdr;
        if h.iter().all(|b| *b == 0) {
            return Ok(()); // end-of-archive block
        }
        if self.sparse_ext {
            self.sparse_ext = h[504] != 0;
            return Ok(());
        }
        let kind = h[156];
        let size = parse_size(&h[124..136]).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                "malformed size field in a tar header",
            )
        })?;
        let ext = matches!(kind, b'L' | b'K' | b'x' | b'g');
        if ext && size > MAX_EXTENSION {
            let what = match kind {
                b'L' => "GNU long-name",
                b'K' => "GNU long-link",
                _ => "PAX",
            };
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "a {what} extension header of {size} bytes (more than the {MAX_EXTENSION} \
                     accepted)"
                ),
            ));
        }
        let size = if ext {
            size
        } else {
            // The size of an entry: a PAX `size` record before it wins over the header.
            self.next_size.take().unwrap_or(size)
        };
        if kind == b'x' {
            self.pax = Some((Vec::with_capacity(size as usize), size as usize));
        }
        if kind == b'S' {
            self.sparse_ext = h[482] != 0;
        }
        self.skip = size.div_ceil(BLOCK as u64) * BLOCK as u64;
        Ok(())
    }

    fn pax_done(&mut self) {
        if let Some((body, _)) = self.pax.take() {
            self.next_size = pax_size(&body);
        }
    }
}

impl<R: Read> Read for Guard<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let mut i = 0;
        while i < n {
            if self.skip > 0 {
                let k = (n - i).min(usize::try_from(self.skip).unwrap_or(usize::MAX));
                if let Some((body, want)) = &mut self.pax {
                    let take = k.min(*want - body.len());
                    body.extend_from_slice(&buf[i..i + take]);
                    if body.len() == *want {
                        self.pax_done();
                    }
                }
                self.skip -= k as u64;
                i += k;
            } else {
                if self.pax.is_some() {
                    self.pax_done(); // an empty body
                }
                let k = (n - i).min(BLOCK - self.fill);
                self.hdr[self.fill..self.fill + k].copy_from_slice(&buf[i..i + k]);
                self.fill += k;
                i += k;
                if self.fill == BLOCK {
                    self.fill = 0;
                    self.header()?;
                }
            }
        }
        Ok(n)
    }
}

/// A tar numeric field: octal (NUL/space padded), or GNU base-256 (high bit set).
fn parse_size(f: &[u8]) -> Option<u64> {
    if f[0] & 0x80 != 0 {
        let mut v: u64 = u64::from(f[0] & 0x7f);
        for b in &f[1..] {
            v = v.checked_mul(256)?.checked_add(u64::from(*b))?;
        }
        return Some(v);
    }
    let s: Vec<u8> = f
        .iter()
        .copied()
        .skip_while(|b| *b == b' ' || *b == 0)
        .take_while(|b| *b != b' ' && *b != 0)
        .collect();
    if s.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(std::str::from_utf8(&s).ok()?, 8).ok()
}

/// The `size` record of a PAX body (`"<len> size=<n>\n"` records), if any.
fn pax_size(body: &[u8]) -> Option<u64> {
    let mut rest = body;
    let mut found = None;
    while !rest.is_empty() {
        let sp = rest.iter().position(|b| *b == b' ')?;
        let len: usize = std::str::from_utf8(&rest[..sp]).ok()?.parse().ok()?;
        if len <= sp || len > rest.len() {
            return found;
        }
        let rec = &rest[sp + 1..len];
        if let Some(v) = rec.strip_prefix(b"size=") {
            let v = v.strip_suffix(b"\n").unwrap_or(v);
            found = std::str::from_utf8(v).ok().and_then(|s| s.parse().ok());
        }
        rest = &rest[len..];
    }
    found
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_pax_records() {
        assert_eq!(parse_size(b"00000001000\0"), Some(512));
        assert_eq!(parse_size(b"      1000 \0"), Some(512));
        assert_eq!(parse_size(&[0u8; 12]), Some(0));
        let mut b = [0u8; 12];
        b[0] = 0x80;
        b[11] = 2;
        b[10] = 1;
        assert_eq!(parse_size(&b), Some(258));
        assert_eq!(pax_size(b"12 size=100\n20 path=aaaaaaaaaaa\n"), Some(100));
        assert_eq!(pax_size(b"20 path=aaaaaaaaaaa\n"), None);
    }

    fn read_all(data: &[u8], chunk: usize) -> io::Result<Vec<u8>> {
        struct Chunks<'a>(&'a [u8], usize);
        impl Read for Chunks<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                let n = self.0.len().min(self.1).min(buf.len());
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let mut out = Vec::new();
        Guard::new(Chunks(data, chunk)).read_to_end(&mut out)?;
        Ok(out)
    }

    #[test]
    fn passes_archives_and_refuses_big_extensions() {
        let mut b = tar::Builder::new(Vec::new());
        let long = "d/".repeat(300) + "f";
        let mut h = tar::Header::new_gnu();
        h.set_size(1000);
        h.set_mode(0o644);
        b.append_data(&mut h, &long, &[7u8; 1000][..]).unwrap();
        b.append_pax_extensions([("size", &b"3"[..])]).unwrap();
        let mut h = tar::Header::new_ustar();
        h.set_size(0); // the PAX size record says 3
        h.set_mode(0o644);
        h.set_path("p").unwrap();
        h.set_cksum();
        b.append(&h, &b"abc"[..]).unwrap();
        let tar = b.into_inner().unwrap();
        for chunk in [1, 7, 512, 4096, 1 << 20] {
            assert_eq!(read_all(&tar, chunk).unwrap(), tar, "chunk {chunk}");
        }
        // A long name of 2 MiB: refused as soon as its header passes.
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::GNULongName);
        h.set_size(2 << 20);
        h.set_cksum();
        let mut bomb = h.as_bytes().to_vec();
        bomb.extend(std::iter::repeat_n(b'a', 4096));
        let e = read_all(&bomb, 4096).unwrap_err();
        assert!(e.to_string().contains("long-name"), "{e}");
    }
}
