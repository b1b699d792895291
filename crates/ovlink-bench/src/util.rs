//! Helpers of the scenarios: the work directory (unmounted and removed on drop), medians,
//! timers, a data generator, and cache control of this benchmark's own files.

use crate::error::{io, Result};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The private work directory: a fresh loop-mounted filesystem whose image is in a
/// temporary directory of `base` ([`crate::FreshFs`]), or that temporary directory itself.
/// Every mount below it is undone and the tree (the image with it) removed on drop.
pub(crate) struct Work {
    fs: Option<ovlink_fs::loopfs::LoopFs>,
    dir: tempfile::TempDir,
}

impl Work {
    pub(crate) fn new(base: &Path, fresh: Option<crate::FreshFs>) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("ovlink-bench-")
            .tempdir_in(base)
            .map_err(io("create a work directory in", base))?;
        let fs = match fresh {
            None => None,
            Some(f) => Some(ovlink_fs::loopfs::LoopFs::create(
                dir.path(),
                "fs",
                f.size_mib,
                f.kind,
                f.mkfs_args(),
            )?),
        };
        Ok(Work { fs, dir })
    }
    pub(crate) fn path(&self) -> &Path {
        match &self.fs {
            Some(fs) => fs.path(),
            None => self.dir.path(),
        }
    }
}

impl Drop for Work {
    fn drop(&mut self) {
        // The loop mount too (deepest first), so its guard has nothing left to do.
        unmount_under(self.dir.path());
        if let Some(fs) = self.fs.take() {
            fs.leave_mounted();
        }
    }
}

/// Unmounts everything below `dir` (best effort: used on the way out).
pub(crate) fn unmount_under(dir: &Path) {
    for m in ovlink_driver::mount::mounts_under(dir) {
        let _ = ovlink_driver::mount::unmount(&m);
    }
}

/// Removes a scenario's directory after unmounting what is below it.
pub(crate) fn remove_tree(dir: &Path) -> Result<()> {
    for m in ovlink_driver::mount::mounts_under(dir) {
        ovlink_driver::mount::unmount(&m)?;
    }
    std::fs::remove_dir_all(dir).map_err(io("remove", dir))
}

/// The median (0 for none).
pub(crate) fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Seconds `f` took, with its result.
pub(crate) fn timed<T>(f: impl FnOnce() -> Result<T>) -> Result<(f64, T)> {
    let t = Instant::now();
    let r = f()?;
    Ok((t.elapsed().as_secs_f64(), r))
}

/// `syncfs` of the filesystem holding `dir`: what is dirty now is written before a timing
/// starts, so the overlay unmount (whose kernel side syncs the upper filesystem) measures
/// what its own container wrote, not what an earlier phase (or another user) left dirty.
pub(crate) fn settle(dir: &Path) -> Result<()> {
    let fd = ovlink_fs::at::open_dir(dir)?;
    rustix::fs::syncfs(&fd).map_err(|e| io("syncfs", dir)(e.into()))
}

/// Drops the page cache of this benchmark's own file `p` (written back first):
/// `posix_fadvise(DONTNEED)`, never the machine's caches.
pub(crate) fn drop_cache(p: &Path) -> Result<()> {
    let f = std::fs::File::open(p).map_err(io("open", p))?;
    f.sync_data().map_err(io("fdatasync", p))?;
    rustix::fs::fadvise(&f, 0, None, rustix::fs::Advice::DontNeed)
        .map_err(|e| io("posix_fadvise(DONTNEED)", p)(e.into()))
}

/// Pages of `p` in the page cache (`fincore`).
pub(crate) fn cached_pages(p: &Path) -> Result<u64> {
    Ok(ovlink_lab::page_cache::fincore_pages(p)?)
}

/// /proc/meminfo `Cached`, kB (0 when unreadable).
pub(crate) fn meminfo_cached_kb() -> u64 {
    ovlink_lab::page_cache::meminfo_cached()
}

/// The 1-minute load average (0 when unreadable).
pub(crate) fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0.0)
}

/// Incompressible bytes (`rand_chacha`'s ChaCha8, seeded), `len` of them.
pub(crate) struct Noise {
    rng: rand_chacha::ChaCha8Rng,
    left: u64,
}

impl Noise {
    pub(crate) fn new(seed: u64, len: u64) -> Self {
        Noise {
            rng: rand_chacha::rand_core::SeedableRng::seed_from_u64(seed),
            left: len,
        }
    }
}

impl Read for Noise {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = (buf.len() as u64).min(self.left) as usize;
        rand_chacha::rand_core::RngCore::fill_bytes(&mut self.rng, &mut buf[..n]);
        self.left -= n as u64;
        Ok(n)
    }
}

/// One file of a generated layer tar.
pub(crate) enum Entry {
    /// A regular file of `size` incompressible bytes.
    File(String, u64, u32),
    /// A file copied from the host (e.g. a binary to exec).
    Host(String, PathBuf),
}

/// Writes a layer tar of `entries` (and the directories they need) to `out`.
pub(crate) fn layer_tar(out: &Path, entries: &[Entry]) -> Result<()> {
    let f = std::fs::File::create(out).map_err(io("create", out))?;
    let mut b = tar::Builder::new(std::io::BufWriter::new(f));
    let mut dirs = std::collections::BTreeSet::new();
    let mut seed = 1u64;
    for e in entries {
        let name = match e {
            Entry::File(n, ..) | Entry::Host(n, _) => n,
        };
        let mut p = Path::new(name).parent();
        let mut need = Vec::new();
        while let Some(d) = p.filter(|d| !d.as_os_str().is_empty()) {
            need.push(d.to_path_buf());
            p = d.parent();
        }
        for d in need.into_iter().rev() {
            if dirs.insert(d.clone()) {
                let mut h = tar::Header::new_gnu();
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                h.set_size(0);
                h.set_mtime(1_700_000_000);
                h.set_uid(0);
                h.set_gid(0);
                b.append_data(&mut h, &d, std::io::empty())
                    .map_err(io("write", out))?;
            }
        }
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mtime(1_700_000_000);
        h.set_uid(0);
        h.set_gid(0);
        match e {
            Entry::File(n, size, mode) => {
                seed += 1;
                h.set_size(*size);
                h.set_mode(*mode);
                b.append_data(&mut h, n, Noise::new(seed, *size))
                    .map_err(io("write", out))?;
            }
            Entry::Host(n, src) => {
                let f = std::fs::File::open(src).map_err(io("open", src.clone()))?;
                let len = f.metadata().map_err(io("stat", src.clone()))?.len();
                h.set_size(len);
                h.set_mode(0o755);
                b.append_data(&mut h, n, f).map_err(io("write", out))?;
            }
        }
    }
    b.into_inner()
        .and_then(|w| w.into_inner().map_err(|e| e.into_error()))
        .and_then(|f| f.sync_all())
        .map_err(io("write", out))
}

/// Applies the tar at `tar` as layer `id` on `parent`.
pub(crate) fn apply(
    d: &dyn ovlink_driver::Driver,
    id: &str,
    parent: Option<&str>,
    tar: &Path,
) -> Result<u64> {
    let mut f = std::fs::File::open(tar).map_err(io("open", tar))?;
    Ok(d.create_and_apply(id, parent, &mut f)?)
}

/// The lower directory that holds layer `id`'s own files (`root/` or `diff/`).
pub(crate) fn layer_dir(layout: crate::Layout, home: &Path, id: &str) -> PathBuf {
    home.join(id).join(match layout {
        crate::Layout::Overlay => "root",
        crate::Layout::Overlay2 => "diff",
    })
}
