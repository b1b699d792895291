//! The metadata of a tar entry (owner, mode with the setuid/setgid/sticky bits, access and
//! modification times, `SCHILY.xattr.*` PAX records) read and checked from its header and PAX
//! records, and the directory times that are set only at the end of an apply.
//!
//! This module only parses and remembers; it never touches the filesystem.

use std::ffi::OsString;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rustix::fs::{Timespec, Timestamps};

use crate::trie::PathTrie;
use crate::TarError;

const XATTR_PREFIX: &[u8] = b"SCHILY.xattr.";

/// Owner, mode, times and xattrs of an entry.
#[derive(Debug, Clone)]
pub(crate) struct Meta {
    /// Owner uid.
    pub uid: u32,
    /// Owner gid.
    pub gid: u32,
    /// Permission bits with setuid/setgid/sticky (`& 0o7777`).
    pub mode: u32,
    /// Access time (PAX `atime`, else the modification time).
    pub atime: Timespec,
    /// Modification time (PAX `mtime`, else the header's).
    pub mtime: Timespec,
    /// Extended attributes from `SCHILY.xattr.*` records.
    pub xattrs: Vec<(OsString, Vec<u8>)>,
}

impl Meta {
    /// The times in the form `utimensat`/`futimens` take.
    pub(crate) fn timestamps(&self) -> Timestamps {
        Timestamps {
            last_access: self.atime,
            last_modification: self.mtime,
        }
    }
}

fn invalid(entry: &Path, reason: impl Into<String>) -> TarError {
    TarError::Invalid {
        entry: entry.to_path_buf(),
        reason: reason.into(),
    }
}

/// Reads and checks the metadata of `entry` (`name` is its raw name, for errors).
pub(crate) fn read<R: Read>(entry: &mut tar::Entry<'_, R>, name: &Path) -> Result<Meta, TarError> {
    let h = entry.header();
    let old = h.as_old();
    // An empty numeric field (all NULs or spaces) reads as 0, as in Go's archive/tar.
    let num = |v: std::io::Result<u64>, field: &[u8], what: &str| -> Result<u64, TarError> {
        match v {
            Ok(v) => Ok(v),
            Err(_) if field.iter().all(|b| *b == 0 || *b == b' ') => Ok(0),
            Err(e) => Err(invalid(name, format!("{what}: {e}"))),
        }
    };
    let uid = num(h.uid(), &old.uid, "uid")?;
    let gid = num(h.gid(), &old.gid, "gid")?;
    let mode = num(h.mode().map(u64::from), &old.mode, "mode")? as u32;
    let mtime = num(h.mtime(), &old.mtime, "mtime")?;
    // u32::MAX means "leave unchanged" to chown: refuse it like any out-of-range id.
    let id = |v: u64, what: &str| -> Result<u32, TarError> {
        u32::try_from(v)
            .ok()
            .filter(|v| *v != u32::MAX)
            .ok_or_else(|| invalid(name, format!("{what} {v} is out of range")))
    };
    let uid = id(uid, "uid")?;
    let gid = id(gid, "gid")?;
    let mtime = i64::try_from(mtime)
        .map(|s| Timespec {
            tv_sec: s,
            tv_nsec: 0,
        })
        .map_err(|_| invalid(name, format!("mtime {mtime} is out of range")))?;
    let mut meta = Meta {
        uid,
        gid,
        mode: mode & 0o7777,
        atime: mtime,
        mtime,
        xattrs: Vec::new(),
    };
    let mut pax_atime = None;
    if let Some(exts) = entry
        .pax_extensions()
        .map_err(|e| invalid(name, format!("PAX records: {e}")))?
    {
        for ext in exts {
            // The parser splits records at newlines: a value holding a newline comes out
            // malformed. Refuse rather than silently drop (or misread) the record.
            let ext = ext.map_err(|e| {
                invalid(
                    name,
                    format!("{e} (PAX values containing a newline are not supported)"),
                )
            })?;
            let key = ext.key_bytes();
            let value = ext.value_bytes();
            if let Some(xname) = key.strip_prefix(XATTR_PREFIX) {
                if xname.is_empty() || xname.contains(&0) {
                    return Err(invalid(name, "a PAX xattr record with an invalid name"));
                }
                meta.xattrs.push((
                    std::ffi::OsStr::from_bytes(xname).to_os_string(),
                    value.to_vec(),
                ));
            } else if key == b"mtime" {
                meta.mtime =
                    parse_pax_time(value).ok_or_else(|| invalid(name, "malformed PAX mtime"))?;
            } else if key == b"atime" {
                pax_atime = Some(
                    parse_pax_time(value).ok_or_else(|| invalid(name, "malformed PAX atime"))?,
                );
            }
        }
    }
    meta.atime = pax_atime.unwrap_or(meta.mtime);
    Ok(meta)
}

/// Parses a PAX time (`[-]SECONDS[.FRACTION]`).
pub(crate) fn parse_pax_time(v: &[u8]) -> Option<Timespec> {
    let (neg, v) = match v.strip_prefix(b"-") {
        Some(rest) => (true, rest),
        None => (false, v),
    };
    let (int, frac) = match v.iter().position(|b| *b == b'.') {
        Some(i) => (&v[..i], &v[i + 1..]),
        None => (v, &[][..]),
    };
    if int.is_empty() || !int.iter().chain(frac).all(u8::is_ascii_digit) {
        return None;
    }
    let secs: i64 = std::str::from_utf8(int).ok()?.parse().ok()?;
    let mut nsec: i64 = 0;
    for i in 0..9 {
        nsec = nsec * 10 + frac.get(i).map_or(0, |d| i64::from(d - b'0'));
    }
    let (secs, nsec) = match (neg, nsec) {
        (false, _) => (secs, nsec),
        (true, 0) => (secs.checked_neg()?, 0),
        (true, n) => (secs.checked_neg()?.checked_sub(1)?, 1_000_000_000 - n),
    };
    Some(Timespec {
        tv_sec: secs,
        tv_nsec: nsec as _,
    })
}

/// Directory times to set at the end of an apply, children before their parents, so
/// creating children does not change them afterwards.
#[derive(Debug, Default)]
pub(crate) struct DirTimes {
    map: PathTrie<(Timespec, Timespec)>,
}

impl DirTimes {
    /// Remembers the times of the directory at `comps` (a later entry for it wins).
    pub(crate) fn insert(&mut self, comps: &[OsString], meta: &Meta) {
        self.map.insert(comps, (meta.atime, meta.mtime));
    }

    /// Forgets the directories at and below `comps` (they were removed).
    pub(crate) fn forget_under(&mut self, comps: &[OsString]) {
        self.map.remove_under(comps);
    }

    /// Takes every remembered directory out, children before parents, calling `f`.
    pub(crate) fn drain<E>(
        &mut self,
        mut f: impl FnMut(&[OsString], Timestamps) -> Result<(), E>,
    ) -> Result<(), E> {
        self.map.drain_children_first(|comps, (a, m)| {
            f(
                comps,
                Timestamps {
                    last_access: a,
                    last_modification: m,
                },
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::path::Comps;

    fn t(s: &str) -> Option<(i64, i64)> {
        parse_pax_time(s.as_bytes()).map(|t| (t.tv_sec, t.tv_nsec))
    }

    #[test]
    fn pax_times() {
        assert_eq!(t("1700000000"), Some((1_700_000_000, 0)));
        assert_eq!(t("1700000000.5"), Some((1_700_000_000, 500_000_000)));
        assert_eq!(t("1.123456789123"), Some((1, 123_456_789)));
        assert_eq!(t("-1.25"), Some((-2, 750_000_000)));
        assert_eq!(t("-3"), Some((-3, 0)));
        assert_eq!(t(""), None);
        assert_eq!(t(".5"), None);
        assert_eq!(t("1.2x"), None);
        assert_eq!(t("99999999999999999999"), None);
    }

    #[test]
    fn dir_times_order_and_forget() {
        let p = |s: &str| -> Comps {
            s.split('/')
                .filter(|c| !c.is_empty())
                .map(OsString::from)
                .collect()
        };
        let meta = Meta {
            uid: 0,
            gid: 0,
            mode: 0o755,
            atime: Timespec::default(),
            mtime: Timespec::default(),
            xattrs: Vec::new(),
        };
        let mut d = DirTimes::default();
        for s in ["", "a", "a/b/c", "a/b", "x/y"] {
            d.insert(&p(s), &meta);
        }
        d.forget_under(&p("x"));
        let mut order: Vec<Comps> = Vec::new();
        d.drain::<()>(|k, _| {
            order.push(k.to_vec());
            Ok(())
        })
        .unwrap();
        assert_eq!(order, vec![p("a/b/c"), p("a/b"), p("a"), p("")]);
    }
}
