//! `Native Overlay Diff`, computed as Docker's overlay2 does (moby
//! `daemon/graphdriver/overlay2/check.go`, `doesSupportNativeDiff`): a real mount in the home
//! tells whether a layer's `diff/` can be exported as it stands. Two kernel behaviours break
//! that: an opaque directory whose opaque flag is copied up with it (kernels before 4.8), and
//! `redirect_dir` (a renamed lower directory recorded as a `trusted.overlay.redirect` xattr,
//! which a layer tar cannot carry). Docker then falls back to the naive diff.
//!
//! The check mounts with the kernel's default options, as Docker does (`extra` exists so a
//! test can force `redirect_dir=on`/`off`), in a locked `.tmp-check-` directory of the home,
//! which is unmounted and removed whatever happens. It never touches a layer.

use ovlink_driver::error::Result;
use ovlink_driver::lock::TempDir;
use ovlink_driver::mount as dmount;
use rustix::fd::OwnedFd;
use rustix::io::Errno;
use std::ffi::OsStr;
use std::path::Path;

/// What the check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NativeDiff {
    /// The upper dir can be exported as it is (`Native Overlay Diff: true`).
    Native,
    /// Docker would use the naive diff; why (Docker's warning text).
    Naive(String),
}

impl NativeDiff {
    /// `true` for [`NativeDiff::Native`].
    pub fn is_native(&self) -> bool {
        matches!(self, NativeDiff::Native)
    }
}

/// True inside a user namespace (moby's `RunningInUserNS`: `/proc/self/uid_map` is not the
/// full identity map).
pub fn running_in_user_ns() -> bool {
    match std::fs::read_to_string("/proc/self/uid_map") {
        Ok(m) => {
            let f: Vec<&str> = m.split_whitespace().collect();
            f != ["0", "0", "4294967295"]
        }
        Err(_) => false,
    }
}

/// Runs Docker's check in `home` (open as `home_fd`); `extra` options are appended to the
/// mount (none for what `status` reports).
pub fn check(home_fd: &OwnedFd, home: &Path, extra: &[&str]) -> Result<NativeDiff> {
    if running_in_user_ns() {
        return Ok(NativeDiff::Naive("running in a user namespace".into()));
    }
    let tmp = TempDir::new(home_fd, home, ".tmp-check-", 0o700)?;
    let td = tmp.path();
    for d in ["l1", "l1/d", "l1/d1", "l2", "l2/d", "l3", "work", "merged"] {
        ovlink_fs::at::mkdir_at(tmp.fd(), d, 0o755, &td.join(d))?;
    }
    ovlink_fs::xattr::set(&td.join("l2/d"), OsStr::new("trusted.overlay.opaque"), b"y")?;
    // The same check as every other option string (a home path with `,` or a backslash refused).
    let path = |what, n: &str| dmount::option_path(what, &td.join(n)).map(str::to_string);
    let mut opts = format!(
        "lowerdir={}:{},upperdir={},workdir={}",
        path("lowerdir", "l2")?,
        path("lowerdir", "l1")?,
        path("upperdir", "l3")?,
        path("workdir", "work")?
    );
    for e in extra {
        opts.push(',');
        opts.push_str(e);
    }
    let merged = td.join("merged");
    if let Err(e) = dmount::mount_overlay(&merged, &opts) {
        return Ok(NativeDiff::Naive(format!(
            "failed to mount overlay: {}",
            ovlink_driver::error_chain(&e)
        )));
    }
    let result = probe(&td);
    let unmounted = dmount::unmount(&merged);
    let r = result?;
    unmounted?;
    Ok(r)
}

fn probe(td: &Path) -> Result<NativeDiff> {
    // Touch a file in d to force the copy-up of the opaque directory d from l2 to l3.
    let f = td.join("merged/d/f");
    if let Err(e) = std::fs::write(&f, b"") {
        return Ok(NativeDiff::Naive(format!(
            "failed to write to merged directory: {e}"
        )));
    }
    match ovlink_fs::xattr::get(&td.join("l3/d"), OsStr::new("trusted.overlay.opaque"))? {
        Some(v) if v == b"y" => {
            return Ok(NativeDiff::Naive(
                "opaque flag erroneously copied up, consider update to kernel 4.8 or later to fix"
                    .into(),
            ))
        }
        _ => {}
    }
    match std::fs::rename(td.join("merged/d1"), td.join("merged/d2")) {
        Err(e) if e.raw_os_error() == Some(Errno::XDEV.raw_os_error()) => {
            // No redirect_dir: the diff dir never holds a redirect.
            return Ok(NativeDiff::Native);
        }
        Err(e) => {
            return Ok(NativeDiff::Naive(format!(
                "failed to rename dir in merged directory: {e}"
            )))
        }
        Ok(()) => {}
    }
    let red = ovlink_fs::xattr::get(&td.join("l3/d2"), OsStr::new("trusted.overlay.redirect"))?;
    if red.as_deref() == Some(b"d1") {
        return Ok(NativeDiff::Naive(
            "kernel has CONFIG_OVERLAY_FS_REDIRECT_DIR enabled".into(),
        ));
    }
    Ok(NativeDiff::Native)
}
