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

/// Normalizes a raw tar name into components below the root, or says why it is refused.
pub(crate) fn normalize(raw: &[u8]) -> Result<Comps, String> {
    if raw.contains(&0) {
        return Err("the name contains a NUL byte".into());
    }
    let mut s = raw;
    if let Some(rest) = s.strip_prefix(b"/") {
        s = rest;
    }
    while let Some(rest) = s.strip_prefix(b"./") {
        s = rest;
    }
    if s.starts_with(b"/") {
        return Err("absolute path (after stripping a leading \"/\" or \"./\")".into());
    }
    let mut comps = Vec::new();
    for c in s.split(|b| *b == b'/') {
        match c {
            b"" | b"." => {}
            b".." => return Err("the path has a \"..\" component".into()),
            _ => comps.push(std::ffi::OsStr::from_bytes(c).to_os_string()),
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
    }
}
