//! Layer id validation: an id becomes a directory name under the home, so it is checked
//! before any path is built from it.

use crate::error::DriverError;

/// Longest accepted id (Docker ids are 64 hex digits, plus `-init`).
pub const MAX_ID_LEN: usize = 128;

/// Checks that `id` is usable as a single directory name inside the home: not empty, not
/// `.`/`..`, no `/` or NUL, not starting with `.` (reserved for ovlink's own entries), at
/// most [`MAX_ID_LEN`] bytes, printable.
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
    if id.contains('/') {
        return bad("it contains '/'");
    }
    if id.starts_with('.') {
        return bad("names starting with '.' are reserved for ovlink's own files");
    }
    if id.chars().any(|c| c.is_control() || c == '\0') {
        return bad("it contains control characters");
    }
    if id.contains(':') || id.contains(',') {
        return bad("it contains ':' or ',' (they break overlay mount options)");
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
            (&long, false),
            (&ok_max, true),
            ("abc123", true),
            (
                "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef-init",
                true,
            ),
        ];
        for (id, ok) in cases {
            assert_eq!(validate_id(id).is_ok(), *ok, "id {id:?}");
        }
    }
}
