//! The layer byte stream: detecting its compression by magic bytes (gzip `1f 8b`, zstd
//! `28 b5 2f fd`, anything else is a plain tar), building the decoder, and draining what is
//! left so the input reader always reaches its end. The one sniffer of the workspace: the
//! applier and the image archive reader (`ovlink-image`) both decode through it.
//!
//! This module only reads `input`; it never touches the filesystem and never interprets the
//! tar format.

use std::io::{self, BufReader, Read};

/// The compression of a layer stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// A plain tar.
    None,
    /// gzip (`1f 8b`; one or more members).
    Gzip,
    /// zstd (`28 b5 2f fd`; one or more frames).
    Zstd,
}

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

impl Compression {
    /// The compression announced by the first bytes of a stream (up to 4 bytes are looked
    /// at).
    pub fn detect(prefix: &[u8]) -> Compression {
        if prefix.starts_with(&GZIP_MAGIC) {
            Compression::Gzip
        } else if prefix.starts_with(&ZSTD_MAGIC) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }
}

/// The input with its first bytes (read for detection) put back in front.
pub struct Prefixed<R> {
    head: [u8; 4],
    pos: usize,
    len: usize,
    inner: R,
}

impl<R> Prefixed<R> {
    /// The compression the first bytes announce.
    pub fn compression(&self) -> Compression {
        Compression::detect(&self.head[..self.len])
    }

    /// The input after the sniffed bytes (reading it directly skips any of them not yet
    /// handed out).
    pub fn get_mut(&mut self) -> &mut R {
        &mut self.inner
    }
}

impl<R: Read> Read for Prefixed<R> {
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
pub fn sniff<R: Read>(mut input: R) -> io::Result<Prefixed<R>> {
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
    Ok(Prefixed {
        head,
        pos: 0,
        len,
        inner: input,
    })
}

/// The decoded (tar) stream over a sniffed input, the decoder chosen by its magic bytes.
pub enum Decoder<R: Read> {
    /// A plain tar, read as it is.
    Plain(Prefixed<R>),
    /// gzip, every member.
    Gzip(Box<flate2::read::MultiGzDecoder<Prefixed<R>>>),
    /// zstd, every frame.
    Zstd(Box<zstd::stream::read::Decoder<'static, BufReader<Prefixed<R>>>>),
}

impl<R: Read> Decoder<R> {
    /// The decoder for `raw`'s compression (starting a zstd decoder can fail).
    pub fn new(raw: Prefixed<R>) -> io::Result<Self> {
        Ok(match raw.compression() {
            Compression::None => Decoder::Plain(raw),
            Compression::Gzip => Decoder::Gzip(Box::new(flate2::read::MultiGzDecoder::new(raw))),
            Compression::Zstd => Decoder::Zstd(Box::new(zstd::stream::read::Decoder::new(raw)?)),
        })
    }

    /// The raw (still compressed) input under the decoder: draining it after the decoded
    /// stream ended reads whatever followed the compressed stream.
    pub fn raw_mut(&mut self) -> &mut R {
        match self {
            Decoder::Plain(p) => p.get_mut(),
            Decoder::Gzip(d) => d.get_mut().get_mut(),
            Decoder::Zstd(d) => d.get_mut().get_mut().get_mut(),
        }
    }
}

impl<R: Read> Read for Decoder<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Decoder::Plain(r) => r.read(buf),
            Decoder::Gzip(r) => r.read(buf),
            Decoder::Zstd(r) => r.read(buf),
        }
    }
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
        let detect = Compression::detect;
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
        let mut p = sniff(&mut src).expect("sniff");
        assert_eq!(p.compression(), Compression::Zstd);
        let mut all = Vec::new();
        p.read_to_end(&mut all).expect("read");
        assert_eq!(all, vec![0x28, 0xb5, 0x2f, 0xfd, 9, 8]);
    }

    /// A gzip stream decodes, and the raw input under the decoder is what follows it.
    #[test]
    fn gzip_decodes_and_raw_is_reachable() {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(b"hello").expect("write");
        let gz = e.finish().expect("finish");
        let mut dec = Decoder::new(sniff(&gz[..]).expect("sniff")).expect("decoder");
        assert!(matches!(dec, Decoder::Gzip(_)));
        let mut out = Vec::new();
        dec.read_to_end(&mut out).expect("read");
        assert_eq!(out, b"hello");
        assert_eq!(drain(dec.raw_mut()).expect("drain"), 0);
    }
}
