//! Digests: `sha256:` parsing, chain ids (OCI image spec), and [`VerifyingReader`], the `Read`
//! wrapper that hashes a stream as it passes and checks the digest **at EOF**, failing the
//! read with `io::ErrorKind::InvalidData` (and recording a typed [`Mismatch`] in a shared
//! [`MismatchCell`]) when it differs. This module never touches files, the driver or the
//! store; it must never report success for a stream it has not seen to the end.

use std::io::{self, Read};
use std::sync::{Arc, Mutex, PoisonError};

use sha2::{Digest as _, Sha256};

use crate::error::ImageError;

/// The prefix of every digest this crate accepts.
pub const SHA256_PREFIX: &str = "sha256:";

/// Lowercase hex sha256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// True when `s` is 64 lowercase hex digits.
pub fn is_hex64(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The hex part of `sha256:<64 lowercase hex>`, or `None` for anything else.
pub fn parse_sha256(digest: &str) -> Option<&str> {
    digest.strip_prefix(SHA256_PREFIX).filter(|h| is_hex64(h))
}

/// Chain ids (hex, no `sha256:`) of a stack of diff ids (`sha256:<hex>`, bottom first):
/// `ChainID(L0) = DiffID(L0)`, `ChainID(Ln) = sha256(ChainID(Ln-1) + " " + DiffID(Ln))`,
/// where both operands are written with their `sha256:` prefix (OCI image spec, Docker's
/// `CreateChainID`).
pub fn chain_ids(diff_ids: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(diff_ids.len());
    for diff_id in diff_ids {
        let next = match out.last() {
            None => diff_id
                .strip_prefix(SHA256_PREFIX)
                .unwrap_or(diff_id)
                .to_string(),
            Some(parent) => sha256_hex(format!("{SHA256_PREFIX}{parent} {diff_id}").as_bytes()),
        };
        out.push(next);
    }
    out
}

/// A digest mismatch found by a [`VerifyingReader`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    /// What was hashed (names the layer and member).
    pub what: String,
    /// The promised digest, `sha256:<hex>`.
    pub expected: String,
    /// The digest of what was read, `sha256:<hex>`.
    pub actual: String,
}

impl Mismatch {
    /// The typed error for this mismatch.
    pub fn into_error(self) -> ImageError {
        ImageError::DigestMismatch {
            what: self.what,
            expected: self.expected,
            actual: self.actual,
        }
    }
}

/// Where verifying readers record the first mismatch they find, so that the caller can
/// return a typed [`ImageError::DigestMismatch`] instead of the consumer's generic error.
#[derive(Debug, Clone, Default)]
pub struct MismatchCell(Arc<Mutex<Option<Mismatch>>>);

impl MismatchCell {
    /// An empty cell.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records `m` unless a mismatch is already recorded (the first one wins).
    pub fn record(&self, m: Mismatch) {
        let mut slot = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if slot.is_none() {
            *slot = Some(m);
        }
    }

    /// The recorded mismatch, if any (left in place).
    pub fn get(&self) -> Option<Mismatch> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

enum State {
    Reading,
    Verified,
    Failed(String),
}

/// A `Read` wrapper that hashes everything read through it with sha256 and, on reaching EOF
/// of `inner`, compares with the expected digest. A mismatch makes that read (and every
/// later one) fail with `InvalidData` naming `what`, the expected and the actual digest, and
/// is recorded in the [`MismatchCell`]. With no expected digest it only passes data through.
pub struct VerifyingReader<R> {
    inner: R,
    hasher: Sha256,
    expected: Option<String>,
    what: String,
    cell: MismatchCell,
    state: State,
    bytes: u64,
}

impl<R: Read> VerifyingReader<R> {
    /// Wraps `inner`; `expected` is `sha256:<hex>` (or `None` to verify nothing).
    pub fn new(
        inner: R,
        expected: Option<String>,
        what: impl Into<String>,
        cell: MismatchCell,
    ) -> Self {
        VerifyingReader {
            inner,
            hasher: Sha256::new(),
            expected,
            what: what.into(),
            cell,
            state: State::Reading,
            bytes: 0,
        }
    }

    /// True once EOF was reached and the digest matched (or there was none to check).
    pub fn is_verified(&self) -> bool {
        matches!(self.state, State::Verified)
    }

    /// Bytes read through this reader so far.
    pub fn bytes_read(&self) -> u64 {
        self.bytes
    }

    /// The wrapped reader.
    pub fn get_mut(&mut self) -> &mut R {
        &mut self.inner
    }

    fn at_eof(&mut self) -> io::Result<usize> {
        let actual = format!(
            "{SHA256_PREFIX}{}",
            hex::encode(self.hasher.finalize_reset())
        );
        match &self.expected {
            Some(expected) if *expected != actual => {
                let m = Mismatch {
                    what: self.what.clone(),
                    expected: expected.clone(),
                    actual,
                };
                let msg = format!(
                    "digest mismatch for {}: expected {}, got {}",
                    m.what, m.expected, m.actual
                );
                self.cell.record(m);
                self.state = State::Failed(msg.clone());
                Err(io::Error::new(io::ErrorKind::InvalidData, msg))
            }
            _ => {
                self.state = State::Verified;
                Ok(0)
            }
        }
    }
}

impl<R: Read> Read for VerifyingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &self.state {
            State::Verified => return Ok(0),
            State::Failed(msg) => {
                return Err(io::Error::new(io::ErrorKind::InvalidData, msg.clone()))
            }
            State::Reading => {}
        }
        if buf.is_empty() {
            return Ok(0);
        }
        let n = self.inner.read(buf)?;
        if n == 0 {
            return self.at_eof();
        }
        if self.expected.is_some() {
            self.hasher.update(&buf[..n]);
        }
        self.bytes += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_ids_follow_the_spec() {
        let a = format!("sha256:{}", "a".repeat(64));
        let b = format!("sha256:{}", "b".repeat(64));
        let ids = chain_ids(&[a.clone(), b.clone()]);
        assert_eq!(ids[0], "a".repeat(64));
        assert_eq!(ids[1], sha256_hex(format!("{a} {b}").as_bytes()));
        assert!(chain_ids(&[]).is_empty());
    }

    #[test]
    fn parse_sha256_is_strict() {
        let h = "0123456789abcdef".repeat(4);
        assert_eq!(parse_sha256(&format!("sha256:{h}")), Some(h.as_str()));
        assert_eq!(parse_sha256(&format!("sha256:{}", h.to_uppercase())), None);
        assert_eq!(parse_sha256(&format!("sha512:{h}")), None);
        assert_eq!(parse_sha256(&format!("sha256:{h}0")), None);
        assert_eq!(parse_sha256("sha256:../../etc"), None);
    }

    #[test]
    fn verifying_reader_checks_at_eof() {
        let data = b"hello world".to_vec();
        let good = format!("sha256:{}", sha256_hex(&data));
        let cell = MismatchCell::new();
        let mut r = VerifyingReader::new(&data[..], Some(good), "good", cell.clone());
        let mut out = Vec::new();
        r.read_to_end(&mut out).expect("good digest");
        assert!(r.is_verified());
        assert_eq!(out, data);
        assert!(cell.get().is_none());

        let bad = format!("sha256:{}", "0".repeat(64));
        let mut r = VerifyingReader::new(&data[..], Some(bad.clone()), "layer x", cell.clone());
        let err = r.read_to_end(&mut Vec::new()).expect_err("bad digest");
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(err.to_string().contains("layer x"));
        assert!(err.to_string().contains(&bad));
        // Sticky.
        assert!(r.read(&mut [0u8; 4]).is_err());
        let m = cell.get().expect("recorded");
        assert_eq!(m.what, "layer x");
        assert_eq!(m.actual, format!("sha256:{}", sha256_hex(&data)));
    }
}
