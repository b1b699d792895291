//! The layer byte stream: detecting its compression by magic bytes (gzip `1f 8b`, zstd
//! `28 b5 2f fd`, anything else is a plain tar), building the decoder, and draining what is
//! left so the input reader always reaches its end.
//!
//! This module only reads `input`; it never touches the filesystem and never interprets the
//! tar format.

use std::io::{self, Read};

/// The compression of a layer stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// A plain tar.
    None,
    /// gzip (one or more members).
    Gzip,
    /// zstd (one or more frames).
    Zstd,
}

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// The compression announced by the first bytes of a stream (up to 4 bytes are looked at).
pub fn detect(prefix: &[u8]) -> Compression {
    if prefix.starts_with(&GZIP_MAGIC) {
        Compression::Gzip
    } else if prefix.starts_with(&ZSTD_MAGIC) {
        Compression::Zstd
    } else {
        Compression::None
    }
}

/// The input with its first bytes (read for detection) put back in front.
pub struct Prefixed<'a> {
    head: [u8; 4],
    pos: usize,
    len: usize,
    inner: &'a mut dyn Read,
}

impl Read for Prefixed<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos < self.len {
            let n = (self.len - self.pos).min(buf.len());
            buf[..n].copy_from_slice(&self.head[self.pos..self.pos + n]);
            self.pos += n;
            return Ok(n);
        }
        self.inner.read(buf)
    }
}

/// Reads the first bytes of `input` (up to 4, fewer only at EOF) and detects the compression.
pub fn sniff(input: &mut dyn Read) -> io::Result<(Compression, Prefixed<'_>)> {
    let mut head = [0u8; 4];
    let mut len = 0;
    while len < head.len() {
        match input.read(&mut head[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let kind = detect(&head[..len]);
    Ok((
        kind,
        Prefixed {
            head,
            pos: 0,
            len,
            inner: input,
        },
    ))
}

/// The decoded (tar) stream over `raw`.
pub fn decoder<'b>(kind: Compression, raw: &'b mut Prefixed<'_>) -> io::Result<Box<dyn Read + 'b>> {
    Ok(match kind {
        Compression::None => Box::new(raw),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(raw)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::new(raw)?),
    })
}

/// Reads `r` to its end, discarding the bytes; returns how many there were.
pub fn drain(r: &mut dyn Read) -> io::Result<u64> {
    io::copy(r, &mut io::sink())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magic_bytes() {
        assert_eq!(detect(&[0x1f, 0x8b, 8, 0]), Compression::Gzip);
        assert_eq!(detect(&[0x28, 0xb5, 0x2f, 0xfd]), Compression::Zstd);
        assert_eq!(detect(&[0x28, 0xb5, 0x2f]), Compression::None);
        assert_eq!(detect(b"etc/"), Compression::None);
        assert_eq!(detect(&[]), Compression::None);
    }

    /// A reader that returns one byte per call: sniffing must still see 4 bytes and give
    /// them all back.
    #[test]
    fn sniff_short_reads_and_put_back() {
        struct OneByte(Vec<u8>, usize);
        impl Read for OneByte {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                if self.1 >= self.0.len() || buf.is_empty() {
                    return Ok(0);
                }
                buf[0] = self.0[self.1];
                self.1 += 1;
                Ok(1)
            }
        }
        let mut src = OneByte(vec![0x28, 0xb5, 0x2f, 0xfd, 9, 8], 0);
        let (kind, mut p) = sniff(&mut src).expect("sniff");
        assert_eq!(kind, Compression::Zstd);
        let mut all = Vec::new();
        p.read_to_end(&mut all).expect("read");
        assert_eq!(all, vec![0x28, 0xb5, 0x2f, 0xfd, 9, 8]);
    }
}
