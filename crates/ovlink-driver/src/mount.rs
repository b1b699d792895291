//! Mounting and unmounting overlayfs, building the option string, and reading the mount
//! table. The option string holds exactly one `lowerdir` (the legacy layout), plus only the
//! options the running kernel knows ([`crate::features::OverlayFeatures`]). This module never
//! decides what a layout mounts, only how.

use crate::error::{DriverError, Result};
use crate::features::OverlayFeatures;
use rustix::io::Errno;
use rustix::mount::{MountFlags, UnmountFlags};
use std::path::{Path, PathBuf};

/// The magic number of overlayfs (`statfs.f_type`), used to tell whether `merged/` is mounted.
pub const OVERLAYFS_MAGIC: u64 = 0x794C_7630;

/// The kernel rejects mount data longer than one page.
pub const MAX_OPTIONS_LEN: usize = 4096 - 1;

/// Characters of a path that the overlay option parser reads as syntax: `,` ends an option,
/// `:` separates lowerdirs, `\` is an escape (overlayfs unescapes it, so `\.\.` is `..`),
/// `=` separates key and value, `"` quotes (the LSM parser); whitespace and control characters
/// have no business in a layer path. Paths holding one are refused, never escaped.
fn unsafe_option_char(c: char) -> bool {
    matches!(c, ',' | ':' | '\\' | '=' | '"') || c.is_whitespace() || c.is_control()
}

/// Checks that `path` can be given as `what=` (`lowerdir`, `upperdir`, `workdir`) in overlay
/// mount options as it is, and returns it as a string. The one check every layout's option
/// string goes through.
pub fn option_path<'a>(what: &'static str, path: &'a Path) -> Result<&'a str> {
    let refuse = |reason| DriverError::UnsafeMountOption {
        what,
        value: path.to_string_lossy().into_owned(),
        reason,
    };
    let s = path
        .to_str()
        .ok_or_else(|| refuse("is not UTF-8 (mount options are text)"))?;
    if s.is_empty() {
        return Err(refuse("is empty"));
    }
    if s.chars().any(unsafe_option_char) {
        return Err(refuse(
            "holds one of , : \\ = \" or whitespace, which overlay mount options read as syntax \
             (move the root to a path without them)",
        ));
    }
    Ok(s)
}

/// Checks an SELinux mount label (`user:role:type[:range]`, range as in
/// `s0`, `s0:c1,c2`, `s0-s15:c0.c1023`) and returns the option for it,
/// `context="<label>"`: quoted, because the categories hold `,` and the kernel's LSM option
/// parser keeps a quoted `,` inside the value. Anything else is refused: a label is never
/// a way to add options.
pub fn label_option(label: &str) -> Result<String> {
    let refuse = |reason| DriverError::UnsafeMountOption {
        what: "mount label",
        value: label.to_string(),
        reason,
    };
    if label.len() > 255 {
        return Err(refuse("is longer than 255 bytes"));
    }
    let mut parts = label.splitn(4, ':');
    let ident = |s: Option<&str>| {
        s.is_some_and(|s| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
        })
    };
    if !(ident(parts.next()) && ident(parts.next()) && ident(parts.next())) {
        return Err(refuse(
            "is not an SELinux context user:role:type[:level] (letters, digits, '_', '.', '-')",
        ));
    }
    if let Some(range) = parts.next() {
        if !is_mls_range(range) {
            return Err(refuse(
                "has a level that is not an MLS range (s0, s0:c1,c2, s0-s15:c0.c1023)",
            ));
        }
    }
    Ok(format!("context=\"{label}\""))
}

/// `sN[:cats][-sN[:cats]]`, cats = `cN[.cN]` joined by `,`.
fn is_mls_range(range: &str) -> bool {
    let num = |s: &str, prefix: char| {
        s.strip_prefix(prefix)
            .is_some_and(|d| !d.is_empty() && d.len() <= 5 && d.bytes().all(|b| b.is_ascii_digit()))
    };
    let level = |l: &str| {
        let (sens, cats) = match l.split_once(':') {
            Some((s, c)) => (s, Some(c)),
            None => (l, None),
        };
        num(sens, 's')
            && cats.is_none_or(|c| {
                c.split(',').all(|cat| match cat.split_once('.') {
                    Some((a, b)) => num(a, 'c') && num(b, 'c'),
                    None => num(cat, 'c'),
                })
            })
    };
    match range.split_once('-') {
        Some((lo, hi)) => level(lo) && level(hi),
        None => level(range),
    }
}

/// Builds `lowerdir=…,upperdir=…,workdir=…` plus the feature-off options and an SELinux
/// `context=` for a mount label; every path and the label are checked ([`option_path`],
/// [`label_option`]).
pub fn overlay_options(
    lower: &Path,
    upper: &Path,
    work: &Path,
    features: &OverlayFeatures,
    mount_label: Option<&str>,
) -> Result<String> {
    let mut s = format!(
        "lowerdir={},upperdir={},workdir={}",
        option_path("lowerdir", lower)?,
        option_path("upperdir", upper)?,
        option_path("workdir", work)?
    );
    push_tail(&mut s, features, mount_label)?;
    Ok(s)
}

/// Appends the feature-off options and the label's `context=` to an option string.
pub fn push_tail(
    s: &mut String,
    features: &OverlayFeatures,
    mount_label: Option<&str>,
) -> Result<()> {
    for o in features.off_options() {
        s.push(',');
        s.push_str(o);
    }
    if let Some(label) = mount_label.filter(|l| !l.is_empty()) {
        s.push(',');
        s.push_str(&label_option(label)?);
    }
    Ok(())
}

/// Splits a mount option string into its options at the `,` that separate them, keeping a
/// quoted `context="..."` (whose MLS range may hold commas) whole.
pub fn split_options(data: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    for c in data.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                cur.push(c);
            }
            ',' if !quoted => out.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// The error for a failed overlay mount: EPERM is its own variant (the caller lacks
/// CAP_SYS_ADMIN), anything else [`DriverError::Mount`] with the option string.
pub fn mount_error(target: &Path, options: &str, source: std::io::Error) -> DriverError {
    if source.raw_os_error() == Some(Errno::PERM.raw_os_error()) {
        return DriverError::MountNotPermitted {
            target: target.to_path_buf(),
            source,
        };
    }
    DriverError::Mount {
        target: target.to_path_buf(),
        options: options.to_string(),
        source,
    }
}

/// Mounts overlay at `target` with `options`.
pub fn mount_overlay(target: &Path, options: &str) -> Result<()> {
    if options.len() > MAX_OPTIONS_LEN {
        return Err(DriverError::Mount {
            target: target.to_path_buf(),
            options: options.to_string(),
            source: std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!(
                    "mount options are {} bytes, more than one page",
                    options.len()
                ),
            ),
        });
    }
    let data = std::ffi::CString::new(options).map_err(|_| DriverError::Mount {
        target: target.to_path_buf(),
        options: options.to_string(),
        source: std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "mount options contain a NUL byte",
        ),
    })?;
    rustix::mount::mount(
        "overlay",
        target,
        "overlay",
        MountFlags::empty(),
        Some(data.as_c_str()),
    )
    .map_err(|e| mount_error(target, options, e.into()))
}

/// Unmounts `target` lazily (MNT_DETACH), retrying a few times on EBUSY.
/// Not mounted (EINVAL) or missing (ENOENT) is fine.
pub fn unmount(target: &Path) -> Result<()> {
    let mut tries = 0;
    loop {
        match rustix::mount::unmount(target, UnmountFlags::DETACH) {
            Ok(()) | Err(Errno::INVAL) | Err(Errno::NOENT) => return Ok(()),
            Err(Errno::BUSY) if tries < 10 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(20 * tries));
            }
            Err(e) => {
                return Err(DriverError::Unmount {
                    target: target.to_path_buf(),
                    source: e.into(),
                })
            }
        }
    }
}

/// True when `path` is the root of an overlay mount (statfs magic, as Docker checks).
pub fn is_overlay_mounted(path: &Path) -> bool {
    match rustix::fs::statfs(path) {
        Ok(st) => st.f_type as u64 == OVERLAYFS_MAGIC && is_mount_point(path),
        Err(_) => false,
    }
}

/// True when `path` is listed as a mount point in `/proc/self/mountinfo`.
pub fn is_mount_point(path: &Path) -> bool {
    mount_points().iter().any(|m| m == path)
}

/// All mount points, from `/proc/self/mountinfo` (octal escapes decoded).
pub fn mount_points() -> Vec<PathBuf> {
    let Ok(text) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(unescape(p)))
        .collect()
}

/// Unmounts everything at or below `dir`, deepest first, and removes the `merged/` mount
/// points it empties (a driver's `cleanup`).
pub fn unmount_all_under(dir: &Path) -> Result<()> {
    for m in mounts_under(dir) {
        unmount(&m)?;
        if m.file_name().is_some_and(|n| n == "merged") {
            let _ = std::fs::remove_dir(&m);
        }
    }
    Ok(())
}

/// The mount points at or below `dir`, deepest first.
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = mount_points()
        .into_iter()
        .filter(|m| m.starts_with(dir))
        .collect();
    v.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    v.dedup();
    v
}

fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::features::Feature;
    use std::os::unix::ffi::OsStrExt;

    #[test]
    fn options_string() {
        let none = OverlayFeatures::default();
        assert_eq!(
            overlay_options(
                Path::new("/h/a/root"),
                Path::new("/h/b/upper"),
                Path::new("/h/b/work"),
                &none,
                None
            )
            .unwrap(),
            "lowerdir=/h/a/root,upperdir=/h/b/upper,workdir=/h/b/work"
        );
        let on = Feature {
            known: true,
            on: true,
        };
        let all = OverlayFeatures {
            redirect_dir: on,
            index: on,
            metacopy: on,
        };
        assert_eq!(
            overlay_options(Path::new("/l"), Path::new("/u"), Path::new("/w"), &all, Some("system_u:object_r:container_file_t:s0")).unwrap(),
            "lowerdir=/l,upperdir=/u,workdir=/w,redirect_dir=off,index=off,metacopy=off,context=\"system_u:object_r:container_file_t:s0\""
        );
        assert_eq!(
            overlay_options(Path::new("/l"), Path::new("/u"), Path::new("/w"), &none, Some("system_u:object_r:container_file_t:s0:c1,c2")).unwrap(),
            "lowerdir=/l,upperdir=/u,workdir=/w,context=\"system_u:object_r:container_file_t:s0:c1,c2\""
        );
    }

    /// Every path that goes into `lowerdir=`/`upperdir=`/`workdir=` passes one check.
    #[test]
    fn option_paths_table() {
        let cases: &[(&str, bool)] = &[
            ("/var/lib/ovlink/overlay/abc/root", true),
            ("/h/0123abcd-init/upper", true),
            ("l/ABCDEF", true),
            ("/h/a.b_c-d/work", true),
            ("", false),
            ("/h/a,b", false),
            ("/h/a:b", false),
            ("/h/\\.\\./root", false),
            ("/h/\\../upper", false),
            ("/h/a=b", false),
            ("/h/a b", false),
            ("/h/a\tb", false),
            ("/h/a\nb", false),
            ("/h/a\"b", false),
        ];
        for (p, ok) in cases {
            assert_eq!(
                option_path("upperdir", Path::new(p)).is_ok(),
                *ok,
                "path {p:?}"
            );
            let opts = overlay_options(
                Path::new("/l"),
                Path::new(p),
                Path::new("/w"),
                &OverlayFeatures::default(),
                None,
            );
            assert_eq!(opts.is_ok(), *ok, "options with upperdir {p:?}");
        }
        let bad = std::ffi::OsStr::from_bytes(b"/h/\xff");
        assert!(option_path("lowerdir", Path::new(bad)).is_err());
    }

    /// A label is an SELinux context or it is refused: it can never add options.
    #[test]
    fn labels_table() {
        let cases: &[(&str, bool)] = &[
            ("system_u:object_r:container_file_t:s0", true),
            ("system_u:object_r:container_file_t:s0:c1,c2", true),
            ("system_u:object_r:container_file_t:s0:c0.c1023", true),
            (
                "system_u:object_r:svirt_sandbox_file_t:s0-s15:c0.c1023",
                true,
            ),
            ("user_u:object_r:container_file_t", true),
            ("\",upperdir=/etc,\"", false),
            ("a:b:c:s0\",upperdir=/etc,\"", false),
            ("a:b:c:s0,upperdir=/etc", false),
            ("a:b:c:s0:c1,volatile", false),
            ("a:b:c:s0:c1,c2,index", false),
            ("a:b:c:s0 ", false),
            ("a:b:c=d:s0", false),
            ("a:b", false),
            ("a::c:s0", false),
            ("a:b:c:", false),
            ("a:b:c:s0:", false),
            ("a:b:c:s0:c1,", false),
            ("a:b:c:x0", false),
            ("a\\:b:c:s0", false),
        ];
        for (l, ok) in cases {
            assert_eq!(label_option(l).is_ok(), *ok, "label {l:?}");
        }
        let long = format!("a:b:c:s0:{}", vec!["c1"; 200].join(","));
        assert!(label_option(&long).is_err());
        let err = overlay_options(
            Path::new("/l"),
            Path::new("/u"),
            Path::new("/w"),
            &OverlayFeatures::default(),
            Some("\",upperdir=/tmp/x,\""),
        )
        .unwrap_err();
        assert!(matches!(
            err,
            DriverError::UnsafeMountOption {
                what: "mount label",
                ..
            }
        ));
    }

    #[test]
    fn split_options_keeps_a_quoted_label_whole() {
        let table: &[(&str, &[&str])] = &[
            ("lowerdir=/a,upperdir=/b", &["lowerdir=/a", "upperdir=/b"]),
            (
                "lowerdir=/a,context=\"u:r:t:s0:c1,c2\",index=off",
                &["lowerdir=/a", "context=\"u:r:t:s0:c1,c2\"", "index=off"],
            ),
            ("", &[]),
        ];
        for (data, want) in table {
            assert_eq!(split_options(data), *want, "{data}");
            assert_eq!(split_options(data).join(","), *data);
        }
    }

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape("/a\\040b"), "/a b");
        assert_eq!(unescape("/plain"), "/plain");
    }

    #[test]
    fn too_long_options_refused_before_the_kernel() {
        let long = "x".repeat(5000);
        let err = mount_overlay(Path::new("/nonexistent"), &long).unwrap_err();
        assert!(err.to_string().contains("/nonexistent"));
    }
}
