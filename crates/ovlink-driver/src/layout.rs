//! The two layer layouts by name, and what each one can do ([`Capabilities`]).
//!
//! [`Layout`] is the one name of a layout everywhere: the `--driver` value, the home's
//! directory name under the root, the driver's `docker info` name, the host checks' needs
//! and the report's. This module only names and describes; it never touches the filesystem.

use std::fmt;

/// The two layer layouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Layout {
    /// Docker's legacy `overlay`: `<id>/root` hardlink trees, one lowerdir per mount.
    Overlay,
    /// Docker's `overlay2`: `<id>/diff`, `l/` short links, up to 128 lowerdirs per mount.
    Overlay2,
}

impl Layout {
    /// Both layouts, legacy first.
    pub const ALL: [Layout; 2] = [Layout::Overlay, Layout::Overlay2];

    /// Its name: the `--driver` value and the driver's `docker info` name.
    pub fn name(self) -> &'static str {
        match self {
            Layout::Overlay => "overlay",
            Layout::Overlay2 => "overlay2",
        }
    }

    /// The name of its home directory under an ovlink root (`<root>/overlay`,
    /// `<root>/overlay2`, as Docker's `/var/lib/docker/<driver>`).
    pub fn home_name(self) -> &'static str {
        self.name()
    }

    /// The layout named `name` (`overlay`, `overlay2`).
    pub fn from_name(name: &str) -> Option<Layout> {
        Layout::ALL.into_iter().find(|l| l.name() == name)
    }

    /// How many lowerdirs its test mount stacks (Docker's check: 1 for overlay, 2 for overlay2).
    pub fn test_lowers(self) -> usize {
        match self {
            Layout::Overlay => 1,
            Layout::Overlay2 => 2,
        }
    }

    /// The fix an `ENOSPC` for inodes suggests on this layout.
    pub fn inode_hint(self) -> &'static str {
        match self {
            Layout::Overlay => {
                "; every image layer re-creates its parent's directories: remove unused layers \
                 ('ovlink layer rm'), reformat with more inodes (mkfs.ext4 -i), or use the overlay2 layout"
            }
            Layout::Overlay2 => {
                "; remove unused layers ('ovlink layer rm') or reformat with more inodes \
                 (mkfs.ext4 -N or -i)"
            }
        }
    }
}

impl fmt::Display for Layout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Layout {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Layout::from_name(s).ok_or_else(|| format!("unknown layout {s:?} (overlay or overlay2)"))
    }
}

/// What a layout can do, where the two really differ. Every [`crate::Driver`] method works on
/// both layouts; these say how.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Capabilities {
    /// The layout.
    pub layout: Layout,
    /// The most lowerdirs one mount stacks (legacy: 1, overlay2: 128).
    pub max_lowers: usize,
    /// An image layer holds its whole tree (legacy `root/`: hardlinks into the parent's), so it
    /// is mounted with a bind; `false`: only its own changes (overlay2 `diff/`).
    pub full_image_trees: bool,
    /// `diff`/`changes`/`diff_size` read the layer's own directory when it is a plain diff
    /// (`false`: always the naive diff, mount and compare by metadata).
    pub native_diff: bool,
}
