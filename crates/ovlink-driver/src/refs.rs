//! Reference counts of container-layer mounts, shared by both layouts.
//!
//! Counts live in the process; across processes the mount table is the truth, as in Docker:
//! the first time a process touches a layer, a mount it finds already at `merged/` counts as
//! one user. This module only counts; it never mounts or unmounts anything itself.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

#[derive(Debug, Default)]
struct RefCount {
    count: u64,
    checked: bool,
}

/// Per-layer mount reference counts.
#[derive(Debug, Default)]
pub struct MountRefs {
    counts: Mutex<HashMap<String, RefCount>>,
}

impl MountRefs {
    /// No counts yet.
    pub fn new() -> Self {
        Self::default()
    }

    fn with<T>(&self, f: impl FnOnce(&mut HashMap<String, RefCount>) -> T) -> T {
        f(&mut self.counts.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// One more user of layer `id`, mounted (or to be mounted) at `merged`. Returns true for
    /// the first user: the caller mounts, and calls [`MountRefs::forget`] if that fails.
    pub fn acquire(&self, id: &str, merged: &Path) -> bool {
        self.with(|m| {
            let r = m.entry(id.to_string()).or_default();
            seed(r, merged);
            r.count += 1;
            r.count == 1
        })
    }

    /// One user fewer. Returns true when that was the last one: the caller unmounts.
    pub fn release(&self, id: &str, merged: &Path) -> bool {
        self.with(|m| {
            let r = m.entry(id.to_string()).or_default();
            seed(r, merged);
            r.count = r.count.saturating_sub(1);
            if r.count == 0 {
                m.remove(id);
                true
            } else {
                false
            }
        })
    }

    /// Drops what is known of `id` (a failed mount, a removed layer).
    pub fn forget(&self, id: &str) {
        self.with(|m| m.remove(id));
    }

    /// Drops every count (after unmounting everything).
    pub fn clear(&self) {
        self.with(|m| m.clear());
    }
}

/// The first time a layer is seen, a mount already in place counts as one user.
fn seed(r: &mut RefCount, merged: &Path) {
    if !r.checked {
        r.checked = true;
        if crate::mount::is_overlay_mounted(merged) {
            r.count += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_without_a_mount() {
        let refs = MountRefs::new();
        let m = Path::new("/nonexistent/merged");
        assert!(refs.acquire("a", m), "first user mounts");
        assert!(!refs.acquire("a", m));
        assert!(!refs.release("a", m));
        assert!(refs.release("a", m), "last user unmounts");
        assert!(refs.acquire("a", m), "counting starts again");
        refs.forget("a");
        assert!(refs.acquire("a", m));
        refs.clear();
        assert!(
            refs.release("a", m),
            "a release of an unknown, unmounted layer unmounts (harmless)"
        );
    }
}
