//! Entry names and hardlink targets as they appear in a tar, turned into a list of plain
//! components below the layer root.
//!
//! A leading `/` or `./` is stripped (layer tars commonly name `./etc/passwd` or
//! `/etc/passwd`; both mean `etc/passwd` under the root), empty and `.` components are
//! dropped, and anything else that could leave the root is refused: `..` anywhere, a path
//! still absolute after the strip, NUL bytes. This module never touches the filesystem; it
//! cannot see symlinks (those are refused by the walk in `tree`).

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;

/// The components of a name relative to the layer root; empty for the root itself.
pub(crate) type Comps = Vec<OsString>;

/// The longest name below the root (`PATH_MAX` less its NUL): what the kernel takes in one
/// path, and what bounds the depth of an entry (2,048 one-byte components) and so what one
/// entry can cost the applier.
pub(crate) const PATH_MAX: usize = 4095;
/// The longest component (`NAME_MAX`).
pub(crate) const NAME_MAX: usize = 255;

/// Why a name is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refused {
    /// It would leave the root (`..`, absolute after the strip, a NUL byte).
    Escape(String),
    /// It is longer than the kernel takes (`PATH_MAX`, `NAME_MAX`).
    TooLong(String),
}

impl Refused {
    /// The error for tar entry `entry`, its reason prefixed with `what` (e.g. `"hardlink
    /// target: "`).
    pub(crate) fn into_error(self, entry: &std::path::Path, what: &str) -> crate::TarError {
        match self {
            Refused::Escape(r) => crate::TarError::EscapeAttempt {
                entry: entry.to_path_buf(),
                reason: format!("{what}{r}"),
            },
            Refused::TooLong(r) => crate::TarError::Invalid {
                entry: entry.to_path_buf(),
                reason: format!("{what}{r}"),
            },
        }
    }
}

/// Normalizes a raw tar name into components below the root, or says why it is refused.
pub(crate) fn normalize(raw: &[u8]) -> Result<Comps, Refused> {
    let escape = |r: &str| Err(Refused::Escape(r.to_string()));
    if raw.contains(&0) {
        return escape("the name contains a NUL byte");
    }
    // Checked before anything is allocated per component; the normalized name is never
    // longer than the raw one, so a raw name above the limit can only pass with redundant
    // `./` and `/` (which the check below sees).
    if raw.len() > 2 * PATH_MAX + 2 {
        return Err(Refused::TooLong(format!(
            "the name is {} bytes long, more than PATH_MAX ({PATH_MAX} bytes)",
            raw.len()
        )));
    }
    let mut s = raw;
    if let Some(rest) = s.strip_prefix(b"/") {
        s = rest;
    }
    while let Some(rest) = s.strip_prefix(b"./") {
        s = rest;
    }
    if s.starts_with(b"/") {
        return escape("absolute path (after stripping a leading \"/\" or \"./\")");
    }
    let mut comps = Vec::new();
    let mut len = 0usize;
    for c in s.split(|b| *b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => return escape("the path has a \"..\" component"),
            _ if c.len() > NAME_MAX => {
                return Err(Refused::TooLong(format!(
                    "a component is {} bytes long, more than NAME_MAX ({NAME_MAX} bytes)",
                    c.len()
                )))
            }
            _ => {
                len += c.len() + usize::from(len > 0);
                if len > PATH_MAX {
                    return Err(Refused::TooLong(format!(
                        "the name is longer than PATH_MAX ({PATH_MAX} bytes, {} components so far)",
                        comps.len() + 1
                    )));
                }
                comps.push(std::ffi::OsStr::from_bytes(c).to_os_string())
            }
        }
    }
    Ok(comps)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(raw: &str) -> Vec<String> {
        normalize(raw.as_bytes())
            .expect("accepted")
            .into_iter()
            .map(|c| c.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn accepted_names() {
        assert_eq!(ok("etc/passwd"), ["etc", "passwd"]);
        assert_eq!(ok("./etc/passwd"), ["etc", "passwd"]);
        assert_eq!(ok("/etc/passwd"), ["etc", "passwd"]);
        assert_eq!(ok("././etc//x/./y/"), ["etc", "x", "y"]);
        assert_eq!(ok("a/b c\nd"), ["a", "b c\nd"]);
        assert_eq!(ok("..a/b.."), ["..a", "b.."]);
        assert!(ok(".").is_empty());
        assert!(ok("./").is_empty());
        assert!(ok("/").is_empty());
        assert!(ok("").is_empty());
        assert_eq!(ok(&"a/".repeat(2048)[..4095]).len(), 2048);
        assert_eq!(ok(&"n".repeat(255)).len(), 1);
        assert_eq!(ok(&format!("{}x", "./".repeat(3000))).len(), 1);
    }

    #[test]
    fn refused_names() {
        for bad in [
            "../x",
            "/../x",
            "a/../../x",
            "a/..",
            "..",
            "./../x",
            "//x",
            ".//x",
            "a\0b",
        ] {
            assert!(
                normalize(bad.as_bytes()).is_err(),
                "{bad:?} must be refused"
            );
        }
        let long = "a/".repeat(2049);
        let name = "n".repeat(256);
        for bad in [&long[..], &name[..], &format!("./{}", "x/".repeat(3000))] {
            assert!(
                matches!(normalize(bad.as_bytes()), Err(Refused::TooLong(_))),
                "{bad:?} must be refused as too long"
            );
        }
        for bad in ["../x", "a\0b"] {
            assert!(
                matches!(normalize(bad.as_bytes()), Err(Refused::Escape(_))),
                "{bad:?} must be refused as an escape"
            );
        }
    }
}
