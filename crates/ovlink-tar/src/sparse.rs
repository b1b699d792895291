//! PAX sparse files (GNU tar `--sparse --format=posix`, formats 0.0, 0.1 and 1.0), which the
//! tar parser does not decode: the entry is a regular file whose stored data are only the
//! data segments (1.0: preceded by the map), its real name and size are PAX records. Go's
//! reader, and so Docker's applier, decodes them; so does this module, for the applier to
//! write the segments at their offsets and keep the holes.
//!
//! This module only parses; the applier writes.

use std::io::Read;
use std::path::Path;

use crate::TarError;

/// Most segments one sparse map may list (16 bytes of memory each).
const MAX_SEGMENTS: usize = 1 << 20;

/// A PAX sparse entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PaxSparse {
    /// `GNU.sparse.name`: the real name (the header's is `GNUSparseFile.<pid>/<name>`).
    pub name: Option<Vec<u8>>,
    /// The real size of the file.
    pub real_size: u64,
    /// The data segments `(offset, length)`; `None` for format 1.0, whose map is at the start
    /// of the entry's data ([`read_map`]).
    pub map: Option<Vec<(u64, u64)>>,
}

fn invalid(entry: &Path, reason: impl Into<String>) -> TarError {
    TarError::Invalid {
        entry: entry.to_path_buf(),
        reason: format!("PAX sparse file: {}", reason.into()),
    }
}

fn num(v: &[u8]) -> Option<u64> {
    std::str::from_utf8(v).ok()?.trim().parse().ok()
}

/// The PAX sparse description of `entry`, if it is one.
pub(crate) fn pax_info<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    shown: &Path,
) -> Result<Option<PaxSparse>, TarError> {
    let Some(exts) = entry
        .pax_extensions()
        .map_err(|e| invalid(shown, format!("PAX records: {e}")))?
    else {
        return Ok(None);
    };
    let (mut major, mut minor) = (None, None);
    let (mut name, mut real, mut map_text) = (None, None, None);
    let mut offsets: Vec<u64> = Vec::new();
    let mut lengths: Vec<u64> = Vec::new();
    let mut any = false;
    for ext in exts {
        let Ok(ext) = ext else { continue }; // reported by the metadata parser
        let (k, v) = (ext.key_bytes(), ext.value_bytes());
        let Some(k) = k.strip_prefix(b"GNU.sparse.") else {
            continue;
        };
        any = true;
        let bad = || {
            invalid(
                shown,
                format!("malformed GNU.sparse.{}", String::from_utf8_lossy(k)),
            )
        };
        match k {
            b"major" => major = Some(num(v).ok_or_else(bad)?),
            b"minor" => minor = Some(num(v).ok_or_else(bad)?),
            b"name" => name = Some(v.to_vec()),
            b"realsize" | b"size" => real = Some(num(v).ok_or_else(bad)?),
            b"map" => map_text = Some(v.to_vec()),
            b"offset" => offsets.push(num(v).ok_or_else(bad)?),
            b"numbytes" => lengths.push(num(v).ok_or_else(bad)?),
            _ => {}
        }
        if offsets.len() > MAX_SEGMENTS {
            return Err(invalid(shown, format!("more than {MAX_SEGMENTS} segments")));
        }
    }
    if !any {
        return Ok(None);
    }
    let real_size = real.ok_or_else(|| invalid(shown, "no GNU.sparse.realsize or size"))?;
    let map = match (major, minor) {
        (Some(1), Some(0)) => None,
        _ if map_text.is_some() => {
            let text = map_text.unwrap_or_default();
            let nums: Vec<u64> = text
                .split(|b| *b == b',')
                .filter(|s| !s.is_empty())
                .map(|s| num(s).ok_or_else(|| invalid(shown, "malformed GNU.sparse.map")))
                .collect::<Result<_, _>>()?;
            if !nums.len().is_multiple_of(2) || nums.len() / 2 > MAX_SEGMENTS {
                return Err(invalid(shown, "malformed GNU.sparse.map"));
            }
            Some(nums.chunks(2).map(|c| (c[0], c[1])).collect())
        }
        _ => {
            if offsets.len() != lengths.len() {
                return Err(invalid(
                    shown,
                    "GNU.sparse.offset and numbytes do not pair up",
                ));
            }
            Some(offsets.into_iter().zip(lengths).collect())
        }
    };
    Ok(Some(PaxSparse {
        name,
        real_size,
        map,
    }))
}

/// Reads the format 1.0 map from the start of the entry's data: decimal numbers, one per
/// line (the count, then offset and length of each segment), padded to 512 bytes. Returns
/// the map and the bytes it took.
pub(crate) fn read_map<R: Read>(
    entry: &mut R,
    shown: &Path,
) -> Result<(Vec<(u64, u64)>, u64), TarError> {
    let mut block = [0u8; 512];
    let mut consumed = 0u64;
    let mut nums: Vec<u64> = Vec::new();
    let mut cur: Vec<u8> = Vec::new();
    let mut want: Option<usize> = None;
    loop {
        entry.read_exact(&mut block).map_err(|e| TarError::Read {
            entry: Some(shown.to_path_buf()),
            source: e,
        })?;
        consumed += 512;
        for b in block {
            if want.is_some_and(|w| nums.len() >= w) {
                break;
            }
            if b == b'\n' {
                let n = num(&cur).ok_or_else(|| invalid(shown, "malformed sparse map"))?;
                cur.clear();
                if want.is_none() {
                    let count = usize::try_from(n).unwrap_or(usize::MAX);
                    if count > MAX_SEGMENTS {
                        return Err(invalid(shown, format!("more than {MAX_SEGMENTS} segments")));
                    }
                    want = Some(2 * count);
                } else {
                    nums.push(n);
                }
            } else if b.is_ascii_digit() && cur.len() < 20 {
                cur.push(b);
            } else {
                return Err(invalid(shown, "malformed sparse map"));
            }
        }
        if want.is_some_and(|w| nums.len() >= w) {
            return Ok((nums.chunks(2).map(|c| (c[0], c[1])).collect(), consumed));
        }
    }
}
