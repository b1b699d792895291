//! The host report of `ovlink check`: what this kernel and filesystem can do, one line per
//! feature, which layout needs it, and the fix for every requirement of the selected layout
//! that fails. Support is decided by features (a real test mount, what a container does in
//! one, d_type, the backing filesystem), never by the kernel's release number, which is parsed
//! and reported, and only warned about.
//!
//! This module only reads and probes, through [`crate::checks`] and the caller's driver init;
//! it must never create anything itself but the probes those make (and remove), and never
//! print.

use crate::checks::{self, KernelRelease, Layout, OverlayFeatures};
use crate::rename::{FlagSupport, Renamer};
use crate::DriverError;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// An error and its sources, `: `-joined.
fn chain(e: &DriverError) -> String {
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

const BOTH: &[Layout] = &[Layout::Overlay, Layout::Overlay2];
const NONE: &[Layout] = &[];

/// A line's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    /// Present (or fine).
    Ok,
    /// Missing, and the selected layout needs it: the command fails.
    Fail,
    /// Missing, but the selected layout does not need it.
    No,
    /// Worth knowing; nothing fails (the kernel release).
    Warn,
}

/// One feature line.
#[derive(Debug, Clone, Serialize)]
pub struct Line {
    /// The feature.
    pub check: &'static str,
    /// `status != fail` (kept for scripts written against the first `--json` format).
    pub ok: bool,
    /// The verdict.
    pub status: Status,
    /// The layouts that need this feature (empty: neither needs it).
    pub needed_by: Vec<&'static str>,
    /// What was found.
    pub detail: String,
    /// What to do, for a failure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

/// What `ovlink check` reports for one layout.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The layout checked.
    #[serde(serialize_with = "layout_name")]
    pub layout: Layout,
    /// Its home (created by the init check).
    pub home: PathBuf,
    /// One line per feature, in order.
    pub lines: Vec<Line>,
}

fn layout_name<S: serde::Serializer>(l: &Layout, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(l.name())
}

impl Report {
    /// Whether a feature the layout needs is missing.
    pub fn failed(&self) -> bool {
        self.lines.iter().any(|l| l.status == Status::Fail)
    }
}

impl Report {
    /// Adds a feature line: `Ok(detail)` present; `Err((detail, fix))` missing, a failure
    /// only when the selected layout is in `needed_by`.
    fn feature(
        &mut self,
        check: &'static str,
        needed_by: &[Layout],
        r: Result<String, (String, String)>,
    ) {
        let (status, detail, fix) = match r {
            Ok(d) => (Status::Ok, d, None),
            Err((d, fix)) if needed_by.contains(&self.layout) => (Status::Fail, d, Some(fix)),
            Err((d, _)) => (Status::No, d, None),
        };
        self.lines.push(Line {
            check,
            ok: status != Status::Fail,
            status,
            needed_by: needed_by.iter().map(|l| l.name()).collect(),
            detail,
            fix,
        });
    }

    fn warn(&mut self, check: &'static str, detail: String) {
        self.lines.push(Line {
            check,
            ok: true,
            status: Status::Warn,
            needed_by: Vec::new(),
            detail,
            fix: None,
        });
    }
}

/// A driver error as (what was found, the fix): host-check errors carry their fix after `; `.
fn split_fix(e: &DriverError) -> (String, String) {
    split_fix_text(&chain(e), "see the error above")
}

/// An error's text as (what was found, the fix after its last `; `), or `otherwise` as the fix
/// when it carries none.
fn split_fix_text(msg: &str, otherwise: &str) -> (String, String) {
    match msg.rsplit_once("; ") {
        Some((what, fix)) => (what.to_string(), fix.to_string()),
        None => (msg.to_string(), otherwise.to_string()),
    }
}

/// Checks what the host can do for `layout` with its home at `home`. `init` initializes the
/// layout's driver there (creating the home, test-mounting a fresh one, recovering it); it
/// runs only when overlayfs is there, and its error (as text) becomes the `driver init` line.
pub fn run(
    home: &Path,
    layout: Layout,
    init: impl FnOnce() -> std::result::Result<(), String>,
) -> Report {
    let mut r = Report {
        layout,
        home: home.to_path_buf(),
        lines: Vec::new(),
    };
    match KernelRelease::current() {
        Ok(rel) => {
            let w = rel.warnings(layout);
            if w.is_empty() {
                r.feature(
                    "kernel release",
                    NONE,
                    Ok(format!(
                        "{}; only the features below decide",
                        rel.describe()
                    )),
                );
            } else {
                r.warn(
                    "kernel release",
                    format!(
                        "{}: {} (the features below decide)",
                        rel.describe(),
                        w.join("; ")
                    ),
                );
            }
        }
        Err(e) => r.warn("kernel release", format!("{e}; the features below decide")),
    }
    let overlay = checks::check_overlay_available();
    r.feature(
        "overlay support",
        BOTH,
        overlay
            .as_ref()
            .map(|_| "'overlay' listed in /proc/filesystems".to_string())
            .map_err(split_fix),
    );
    // Probe where the home is, or will be (as init does): its nearest existing ancestor.
    let probe = home
        .ancestors()
        .find(|p| p.is_dir())
        .unwrap_or(Path::new("/"))
        .to_path_buf();
    let backing = checks::check_backing_fs(&probe);
    r.feature(
        "backing filesystem",
        BOTH,
        backing
            .as_ref()
            .map(|fs| format!("{} is on {fs}", home.display()))
            .map_err(split_fix),
    );
    let fs_name = match &backing {
        Ok(n) => n.clone(),
        Err(_) => checks::backing_fs(&probe)
            .map(|(_, n)| n)
            .unwrap_or_default(),
    };
    let d_type = checks::supports_dtype(&probe);
    r.feature(
        "d_type",
        BOTH,
        match &d_type {
            Ok(true) => Ok(format!("{fs_name} reports file types in readdir")),
            Ok(false) => Err((
                format!(
                    "{} is on {fs_name} without d_type (overlayfs then misbehaves on whiteouts \
                     and copy-up)",
                    home.display()
                ),
                "reformat the backing filesystem with d_type support (xfs: mkfs.xfs -n ftype=1, \
                 check with xfs_info MOUNT; ext4: mkfs.ext4 -O filetype) or move the root there \
                 with --root"
                    .to_string(),
            )),
            Err(e) => Err(split_fix(e)),
        },
    );
    let features = OverlayFeatures::read();
    if overlay.is_ok() {
        // Driver init creates the home (test-mounting a fresh one) and recovers it.
        match init() {
            Ok(()) => probe_home(&mut r, home, &fs_name, &features),
            // A check of init's own (the container-operations probe of a fresh home) carries
            // its fix after `; `: shown as the fix, not as part of the finding.
            Err(e) => r.feature(
                "driver init",
                &[layout],
                Err(split_fix_text(&e, "fix the failed checks above")),
            ),
        }
    }
    for (name, f, since) in [
        ("redirect_dir", features.redirect_dir, "4.10"),
        ("index", features.index, "4.13"),
        ("metacopy", features.metacopy, "4.19"),
    ] {
        let detail = match (f.known, f.on) {
            (true, true) => format!(
                "present, on by default: ovlink mounts with {name}=off so upper/ stays a plain diff"
            ),
            (true, false) => "present, off by default (ovlink never turns it on)".to_string(),
            (false, _) => format!("not in this kernel (upstream {since}+): nothing to turn off"),
        };
        r.feature(name, NONE, Ok(detail));
    }
    r
}

/// The checks that need the home: both test mounts, the container-operations probe (with the
/// layout's number of lowerdirs) and the rename flags of its filesystem.
fn probe_home(r: &mut Report, home: &Path, fs_name: &str, features: &OverlayFeatures) {
    let home_fd = match ovlink_fs::at::open_dir(home) {
        Ok(fd) => fd,
        Err(e) => {
            let e = DriverError::from(e);
            let layout = r.layout;
            r.feature("driver home", &[layout], Err(split_fix(&e)));
            return;
        }
    };
    for (check, lowers, needed) in [
        ("single lowerdir", 1, &[Layout::Overlay][..]),
        ("multi-lowerdir", 2, &[Layout::Overlay2][..]),
    ] {
        let res = checks::test_mount(&home_fd, home, lowers, features, fs_name)
            .map(|_| {
                format!(
                    "a test mount with {lowers} lowerdir{} in {} worked",
                    if lowers > 1 { "s" } else { "" },
                    home.display()
                )
            })
            .map_err(|e| split_fix(&e));
        r.feature(check, needed, res);
    }
    let lowers = r.layout.test_lowers();
    let res = checks::container_ops_probe(&home_fd, home, lowers, features, fs_name)
        .map(|found| found.describe(home))
        .map_err(|e| split_fix(&e));
    r.feature("container operations", BOTH, res);
    let renamer = Renamer::new();
    let res = match renamer.probe(&home_fd, home) {
        Ok((noreplace, exchange)) => {
            let line = format!(
                "RENAME_NOREPLACE: {}; RENAME_EXCHANGE: {} (on {fs_name})",
                noreplace.describe(),
                exchange.describe()
            );
            if (noreplace, exchange) == (FlagSupport::Native, FlagSupport::Native) {
                Ok(line)
            } else {
                Err((line, String::new()))
            }
        }
        Err(e) => Err(split_fix(&e)),
    };
    // Neither layout needs the flags: docs/old-systems.md describes the fallbacks.
    r.feature("renameat2 flags", NONE, res);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A failed init's text (the binary's error chain) keeps its fix out of the finding: the
    /// container-operations probe of a fresh home refuses inside init.
    #[test]
    fn a_failed_init_shows_its_own_fix() {
        let table = [
            (
                "cannot open the overlay driver in /h: container operations: step 'delete a \
                 lower directory' failed ...: Invalid argument (os error 22); the kernel's \
                 overlayfs cannot do this on xfs: it needs RENAME_EXCHANGE (upstream xfs has \
                 them from Linux 4.0); put the root on ext4 with --root, or upgrade the kernel",
                "put the root on ext4 with --root, or upgrade the kernel",
            ),
            (
                "cannot open the overlay driver in /h: cannot create directory /h",
                "fix the failed checks above",
            ),
        ];
        for (text, fix) in table {
            let (what, got) = split_fix_text(text, "fix the failed checks above");
            assert_eq!(got, fix);
            assert!(text.starts_with(&what) && !what.contains(fix), "{what}");
        }
    }
}
