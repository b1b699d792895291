//! Layer ids: the one rule every caller uses (both layouts, the CLI, the plugin, the image
//! store, the report). An id becomes a directory name under the home and a component of
//! overlay mount options (`lowerdir=<home>/<id>/root`), so it is checked before any path is
//! built from it, with the alphabet Docker itself uses for names
//! (`[a-zA-Z0-9][a-zA-Z0-9_.-]*`, moby's `RestrictedNamePattern`): chain ids (64 hex digits),
//! container ids and Docker's `<hex>-init` layers all match it; `.`, `..`, `.tmp-*`, `/`,
//! `\`, `,`, `:`, `=`, whitespace and control characters cannot.
//!
//! This module never touches the filesystem; it only says yes or no (with the reason).

use crate::error::DriverError;
use std::fmt;

/// Longest accepted id (Docker ids are 64 hex digits, plus `-init`).
pub const MAX_ID_LEN: usize = 128;

/// A layer id that passed [`validate_id`]: parse it once at the edge (`LayerId::parse`, or
/// `str::parse`) and pass it on; `as_str` gives the checked name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LayerId(String);

impl LayerId {
    /// Checks `id` with the layer-id rule ([`validate_id`]).
    pub fn parse(id: &str) -> Result<LayerId, DriverError> {
        validate_id(id)?;
        Ok(LayerId(id.to_string()))
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for LayerId {
    type Err = DriverError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        LayerId::parse(s)
    }
}

impl fmt::Display for LayerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for LayerId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl From<LayerId> for String {
    fn from(id: LayerId) -> String {
        id.0
    }
}

/// The layer-id rule: 1 to [`MAX_ID_LEN`] bytes of ASCII letters, digits, `_`, `.` and `-`,
/// starting with a letter or digit (so never `.`, `..`, a hidden/reserved `.tmp-*` name or
/// something that reads as a command-line flag).
pub fn validate_id(id: &str) -> Result<(), DriverError> {
    let bad = |reason: &'static str| {
        Err(DriverError::InvalidLayerId {
            id: id.to_string(),
            reason,
        })
    };
    if id.is_empty() {
        return bad("it is empty");
    }
    if id.len() > MAX_ID_LEN {
        return bad("it is longer than 128 bytes");
    }
    if id == "." || id == ".." {
        return bad("it is a path component ('.' or '..')");
    }
    if id.starts_with('.') {
        return bad("names starting with '.' are reserved for ovlink's own files");
    }
    if !id.as_bytes()[0].is_ascii_alphanumeric() {
        return bad("it must start with a letter or a digit");
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
    {
        return bad(
            "a layer id is letters, digits, '_', '.' and '-' only (no '/', '\\', ',', ':', \
             '=', whitespace or control characters: they are paths or mount-option syntax)",
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        let long = "a".repeat(129);
        let ok_max = "a".repeat(128);
        let hex = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        let init = format!("{hex}-init");
        let cases: &[(&str, bool)] = &[
            ("", false),
            (".", false),
            ("..", false),
            ("a/b", false),
            ("/etc", false),
            ("../x", false),
            (".tmp-x", false),
            ("a\nb", false),
            ("a:b", false),
            ("a,b", false),
            ("a=b", false),
            ("a b", false),
            ("a\tb", false),
            ("\\..", false),
            ("\\.\\.", false),
            ("a\\b", false),
            ("-rf", false),
            ("_x", false),
            ("é", false),
            ("a\0b", false),
            (&long, false),
            (&ok_max, true),
            ("abc123", true),
            ("c1", true),
            ("c-init", true),
            ("My_Layer.v2", true),
            ("a..b", true),
            (hex, true),
            (&init, true),
        ];
        for (id, ok) in cases {
            assert_eq!(validate_id(id).is_ok(), *ok, "id {id:?}");
            assert_eq!(id.parse::<LayerId>().is_ok(), *ok, "LayerId {id:?}");
        }
        assert_eq!(LayerId::parse("c1").unwrap().as_str(), "c1");
    }
}
