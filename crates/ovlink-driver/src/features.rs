//! Overlay features that newer kernels may turn on by default and that make `upper/`
//! something other than a plain diff, read from the overlay module's parameters, and the
//! mount options that turn them off.
//!
//! This module only reads `/sys/module/overlay/parameters` (or a test's directory); it never
//! mounts or writes anything.

use std::path::Path;

/// Overlay features that newer kernels may turn on by default and that make `upper/`
/// something other than a plain diff. `known` = the kernel has the option (its module
/// parameter exists); `on` = it is on by default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Feature {
    /// The kernel knows the option.
    pub known: bool,
    /// It is enabled by default.
    pub on: bool,
}

/// The overlay module's defaults, read from `/sys/module/overlay/parameters/`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OverlayFeatures {
    /// `redirect_dir`: renamed lower dirs recorded as redirects in upper.
    pub redirect_dir: Feature,
    /// `index`: inode index (hardlink copy-up tracking) in the workdir.
    pub index: Feature,
    /// `metacopy`: copy-up of metadata only.
    pub metacopy: Feature,
}

impl OverlayFeatures {
    /// Reads the module parameters (absent ones: unknown to this kernel).
    pub fn read() -> Self {
        Self::read_from(Path::new("/sys/module/overlay/parameters"))
    }

    /// Reads module parameters from `dir` (tests use a fake dir).
    pub fn read_from(dir: &Path) -> Self {
        let get = |name: &str| match std::fs::read_to_string(dir.join(name)) {
            Ok(v) => {
                let v = v.trim();
                Feature {
                    known: true,
                    on: matches!(v, "Y" | "y" | "1" | "on"),
                }
            }
            Err(_) => Feature::default(),
        };
        OverlayFeatures {
            redirect_dir: get("redirect_dir"),
            index: get("index"),
            metacopy: get("metacopy"),
        }
    }

    /// The mount options that turn off what is on by default, e.g. `["redirect_dir=off"]`.
    pub fn off_options(&self) -> Vec<&'static str> {
        let mut v = Vec::new();
        if self.redirect_dir.known && self.redirect_dir.on {
            v.push("redirect_dir=off");
        }
        if self.index.known && self.index.on {
            v.push("index=off");
        }
        if self.metacopy.known && self.metacopy.on {
            v.push("metacopy=off");
        }
        v
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn features_from_fake_sysfs() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("redirect_dir"), "Y\n").unwrap();
        std::fs::write(d.path().join("index"), "N\n").unwrap();
        let f = OverlayFeatures::read_from(d.path());
        assert_eq!(
            f.redirect_dir,
            Feature {
                known: true,
                on: true
            }
        );
        assert_eq!(
            f.index,
            Feature {
                known: true,
                on: false
            }
        );
        assert_eq!(f.metacopy, Feature::default());
        assert_eq!(f.off_options(), vec!["redirect_dir=off"]);
        // A 3.18-era kernel has none of these parameters: no extra options at all.
        let empty = tempfile::tempdir().unwrap();
        assert!(OverlayFeatures::read_from(empty.path())
            .off_options()
            .is_empty());
    }
}
