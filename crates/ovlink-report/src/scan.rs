//! Finding the layers of a home, their parents and order, and attributing every inode to the
//! first layer (bottom-up) that holds it.
//!
//! Parents come, in this order, from what the caller knows (the image store's layer records),
//! from the home itself (a legacy container's `lower-id`, an overlay2 layer's `lower` through
//! `l/`), or, for a legacy image layer nobody recorded, from its files: the parent is the
//! earlier layer (by the birth time of its tree) that shares the most file inodes with it.
//! Layers are attributed in order of depth, so a parent is always counted before its
//! children; siblings share inodes only through their ancestors, so their order does not
//! matter. An overlay2 layer's short link in `l/` counts as part of the layer. Everything
//! else in the home that is not a layer (the home itself, `l/`, dangling links, temporary
//! directories) is counted as overhead, so the layers' inodes plus the overhead are exactly
//! the inodes of the home.
//!
//! This module only reads. Its one call newer than Linux 3.10, `statx` (4.11, for birth
//! times), falls back to `fstatat` on `ENOSYS`.

use crate::project::{link_max, project, FsStats, Projection};
use crate::walk::{walk, Bucket, EntryCounts, Walk};
use crate::{ReportError, Result};
use ovlink_fs::at::{is_dir_at, open_dir, open_dir_at};
use ovlink_fs::error::Context;
use rustix::fd::{AsFd, OwnedFd};
use rustix::fs::{AtFlags, Dir};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

/// The on-disk layout of a home (one type for the driver's checks and the report).
pub use ovlink_driver::Layout;

/// The layer with the most links in a layer's tree, and what that means for descendants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MaxLinks {
    /// Its path, relative to the home.
    pub path: String,
    /// Its link count.
    pub nlink: u64,
    /// Links it can still take before `EMLINK`.
    pub headroom: u64,
    /// Descendant image layers it can still take: every legacy image layer adds one link to
    /// each file it inherits; `None` for overlay2, where descendants add no links.
    pub descendant_layers_left: Option<u64>,
}

/// One layer of the report.
#[derive(Debug, Clone, Serialize)]
pub struct LayerReport {
    /// The layer id.
    pub id: String,
    /// `image`, `container` or `incomplete`.
    pub kind: &'static str,
    /// Its parent, if known.
    pub parent: Option<String>,
    /// Where the parent came from: `recorded`, `layout` (the layer's own parent record),
    /// `lower-id`, `lower`, `inferred` or `none`.
    pub parent_source: &'static str,
    /// Layers below it plus one.
    pub depth: usize,
    /// Entries of its tree (`root/`, `upper/` or `diff/`) by type.
    pub entries: EntryCounts,
    /// Distinct inodes under its layer directory.
    pub inodes: u64,
    /// Of those, the ones no layer below it holds: what it added to the filesystem.
    pub inodes_added: u64,
    /// Of those, the ones its parent also holds.
    pub inodes_shared_with_parent: u64,
    /// Bytes on disk of the inodes it added.
    pub bytes_added: u64,
    /// Inodes added by it and every layer below it.
    pub cumulative_inodes: u64,
    /// Container layers: distinct inodes in `upper/` (overlay2: `diff/`).
    pub upper_inodes: Option<u64>,
    /// Container layers: distinct inodes in `work/`.
    pub work_inodes: Option<u64>,
    /// Non-directory entries by link count.
    pub link_histogram: Vec<Bucket>,
    /// The entry with the most links.
    pub max_links: Option<MaxLinks>,
}

/// Totals of the home.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Totals {
    /// Layers found.
    pub layers: usize,
    /// Image layers.
    pub image_layers: usize,
    /// Container layers (including `-init` layers).
    pub container_layers: usize,
    /// Distinct inodes in the home: what `find HOME -xdev | sort -u` counts.
    pub distinct_inodes: u64,
    /// Inodes that belong to no layer (the home, `l/` itself, temporary dirs).
    pub overhead_inodes: u64,
    /// Of those, inodes of removed layers still to be reclaimed (`.tmp-remove-*`, deleted in
    /// the background) that no layer shares: what finishing the reclaim frees.
    pub pending_reclaim_inodes: u64,
    /// Removed layers still being reclaimed (`.tmp-remove-*` directories).
    pub pending_reclaim_layers: usize,
    /// Bytes on disk of all distinct inodes.
    pub bytes_on_disk: u64,
    /// Entries of all layer trees by type.
    pub entries: EntryCounts,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct HomeReport {
    /// The home.
    pub home: PathBuf,
    /// Its layout.
    pub layout: Layout,
    /// The backing filesystem's name.
    pub backing_fs: String,
    /// Its hardlink limit.
    pub link_max: u64,
    /// Legacy layout: `link` (symlinks and special files shared between layers) or `copy`
    /// (re-created in every layer, as Docker), from the home's `.symlinks` record; `None` for
    /// overlay2.
    pub symlinks: Option<&'static str>,
    /// The layers, bottom-up (parents before children).
    pub layers: Vec<LayerReport>,
    /// Totals.
    pub totals: Totals,
    /// The backing filesystem now.
    pub fs: FsStats,
    /// What else fits.
    pub projections: Vec<Projection>,
    /// Mounted directories that were not walked into.
    pub skipped_mounts: Vec<PathBuf>,
}

impl HomeReport {
    /// The layer with id `id`.
    pub fn layer(&self, id: &str) -> Option<&LayerReport> {
        self.layers.iter().find(|l| l.id == id)
    }

    /// The chain ending at `top`, bottom first.
    pub fn chain(&self, top: &str) -> Vec<&LayerReport> {
        let mut v = Vec::new();
        let mut cur = self.layer(top);
        while let Some(l) = cur {
            if v.iter().any(|x: &&LayerReport| x.id == l.id) {
                break;
            }
            v.push(l);
            cur = l.parent.as_deref().and_then(|p| self.layer(p));
        }
        v.reverse();
        v
    }

    /// The deepest image layer (ties: the first by id): the top of the longest image chain.
    pub fn deepest_image(&self) -> Option<&LayerReport> {
        self.layers
            .iter()
            .filter(|l| l.kind == "image")
            .max_by(|a, b| a.depth.cmp(&b.depth).then_with(|| b.id.cmp(&a.id)))
    }
}

struct Found {
    id: String,
    kind: &'static str,
    parent: Option<String>,
    parent_source: &'static str,
    birth: (i64, u32),
    walk: Walk,
    /// Files (non-directories) of the content tree, for parent inference.
    content_files: HashSet<u64>,
    upper: Option<u64>,
    work: Option<u64>,
}

/// Names of removed layers waiting for their background reclaim.
const TRASH_PREFIX: &[u8] = b".tmp-remove-";

/// Scans the home `home` of `layout`. `known_parents` maps layer ids to their parents as
/// recorded elsewhere (the image store); layers it does not name get their parent from the
/// home (see the module docs).
pub fn scan(
    home: &Path,
    layout: Layout,
    known_parents: &BTreeMap<String, Option<String>>,
) -> Result<HomeReport> {
    // One walk thread for every layer's walk (ovlink_fs::walk::on_walk_stack nests inline).
    ovlink_fs::walk::on_walk_stack(|| scan_home(home, layout, known_parents))
}

fn scan_home(
    home: &Path,
    layout: Layout,
    known_parents: &BTreeMap<String, Option<String>>,
) -> Result<HomeReport> {
    let home_fd = open_dir(home)?;
    let home_st = rustix::fs::fstat(&home_fd).ctx("stat", home)?;
    let dev = home_st.st_dev;
    let (magic, backing_fs) =
        ovlink_driver::checks::backing_fs(home).map_err(|e| ReportError::NotAHome {
            path: home.to_path_buf(),
            layout: layout.name(),
            reason: e.to_string(),
        })?;
    let (lmax, _) = link_max(magic);
    if layout == Layout::Overlay2 && !is_dir_at(&home_fd, ovlink_overlay2::driver::LINK_DIR) {
        return Err(ReportError::NotAHome {
            path: home.to_path_buf(),
            layout: layout.name(),
            reason: "there is no l/ directory".into(),
        });
    }

    let mut top_names: Vec<Vec<u8>> = Vec::new();
    for ent in Dir::read_from(&home_fd).ctx("read directory", home)? {
        let ent = ent.ctx("read directory", home)?;
        let n = ent.file_name().to_bytes();
        if n != b"." && n != b".." {
            top_names.push(n.to_vec());
        }
    }
    top_names.sort();

    let mut found: Vec<Found> = Vec::new();
    let mut overhead = Walk::default();
    let mut trash: HashSet<u64> = HashSet::new();
    let mut trash_dirs = 0;
    overhead
        .inodes
        .insert(home_st.st_ino, block_bytes(&home_st));
    for raw in &top_names {
        let name = OsStr::from_bytes(raw);
        let path = home.join(name);
        let id = std::str::from_utf8(raw).ok().filter(|s| {
            !s.starts_with('.')
                && ovlink_driver::validate_id(s).is_ok()
                && !(layout == Layout::Overlay2 && *s == ovlink_overlay2::driver::LINK_DIR)
        });
        let layer_fd = match id {
            Some(_) => open_dir_at(&home_fd, name, &path).ok(),
            None => None,
        };
        match (id, layer_fd) {
            (Some(id), Some(fd)) => {
                found.push(scan_layer(&home_fd, &fd, home, id, layout, dev)?);
            }
            _ => {
                let w = walk(home_fd.as_fd(), name, &path, dev, false)?;
                if raw.starts_with(TRASH_PREFIX) {
                    trash_dirs += 1;
                    trash.extend(w.inodes.keys().copied());
                }
                overhead.merge(w)
            }
        }
    }

    // Parents: recorded, from the home, or inferred.
    for f in &mut found {
        if let Some(p) = known_parents.get(&f.id) {
            f.parent = p.clone();
            f.parent_source = if p.is_some() { "recorded" } else { "none" };
        }
    }
    infer_parents(&mut found);
    let ids: HashMap<String, usize> = found
        .iter()
        .enumerate()
        .map(|(i, f)| (f.id.clone(), i))
        .collect();
    let depth_of = |start: usize| -> usize {
        let mut d = 1;
        let mut cur = start;
        let mut seen = HashSet::new();
        while let Some(p) = found[cur].parent.as_ref().and_then(|p| ids.get(p)) {
            if !seen.insert(*p) {
                break;
            }
            d += 1;
            cur = *p;
        }
        d
    };
    let depths: Vec<usize> = (0..found.len()).map(depth_of).collect();
    let mut order: Vec<usize> = (0..found.len()).collect();
    order.sort_by(|&a, &b| {
        (depths[a], found[a].birth, &found[a].id).cmp(&(depths[b], found[b].birth, &found[b].id))
    });

    // Attribution, bottom-up.
    let mut seen: HashSet<u64> = HashSet::new();
    let mut cumulative: HashMap<usize, u64> = HashMap::new();
    let mut layers = Vec::new();
    let mut totals = Totals::default();
    let mut skipped = overhead.skipped_mounts.clone();
    for &i in &order {
        let f = &found[i];
        let mut added = 0;
        let mut bytes = 0;
        for (ino, b) in &f.walk.inodes {
            if seen.insert(*ino) {
                added += 1;
                bytes += b;
            }
        }
        let parent_idx = f.parent.as_ref().and_then(|p| ids.get(p)).copied();
        let shared = match parent_idx {
            Some(p) => f
                .walk
                .inodes
                .keys()
                .filter(|k| found[p].walk.inodes.contains_key(k))
                .count() as u64,
            None => 0,
        };
        let cum = parent_idx
            .and_then(|p| cumulative.get(&p).copied())
            .unwrap_or(0)
            + added;
        cumulative.insert(i, cum);
        let max_links = f.walk.max_links.as_ref().map(|(p, n)| {
            let headroom = lmax.saturating_sub(*n);
            MaxLinks {
                path: p
                    .strip_prefix(home)
                    .unwrap_or(p)
                    .to_string_lossy()
                    .into_owned(),
                nlink: *n,
                headroom,
                descendant_layers_left: (layout == Layout::Overlay).then_some(headroom),
            }
        });
        totals.entries.add(&f.walk.entries);
        totals.bytes_on_disk += bytes;
        match f.kind {
            "image" => totals.image_layers += 1,
            "container" => totals.container_layers += 1,
            _ => {}
        }
        skipped.extend(f.walk.skipped_mounts.iter().cloned());
        layers.push(LayerReport {
            id: f.id.clone(),
            kind: f.kind,
            parent: f.parent.clone(),
            parent_source: f.parent_source,
            depth: depths[i],
            entries: f.walk.entries,
            inodes: f.walk.inodes.len() as u64,
            inodes_added: added,
            inodes_shared_with_parent: shared,
            bytes_added: bytes,
            cumulative_inodes: cum,
            upper_inodes: f.upper,
            work_inodes: f.work,
            link_histogram: f.walk.histogram(),
            max_links,
        });
    }
    let layer_inodes = seen.clone();
    let mut overhead_added = 0;
    for (ino, b) in &overhead.inodes {
        if seen.insert(*ino) {
            overhead_added += 1;
            totals.bytes_on_disk += b;
        }
    }
    totals.layers = layers.len();
    totals.overhead_inodes = overhead_added;
    totals.pending_reclaim_layers = trash_dirs;
    totals.pending_reclaim_inodes =
        trash.iter().filter(|i| !layer_inodes.contains(i)).count() as u64;
    totals.distinct_inodes = seen.len() as u64;
    let fs = FsStats::of(home)?;
    let projections = projections(&layers, &fs);
    let symlinks = (layout == Layout::Overlay).then(|| {
        match std::fs::read_to_string(home.join(ovlink_overlay::SYMLINKS_RECORD)) {
            Ok(t) => ovlink_fs::Specials::parse(t.trim()).map_or("unknown", |m| m.name()),
            Err(_) => ovlink_fs::Specials::Link.name(),
        }
    });
    Ok(HomeReport {
        home: home.to_path_buf(),
        symlinks,
        layout,
        backing_fs,
        link_max: lmax,
        layers,
        totals,
        fs,
        projections,
        skipped_mounts: skipped,
    })
}

fn block_bytes(st: &rustix::fs::Stat) -> u64 {
    (st.st_blocks as u64).saturating_mul(512)
}

/// Set once `statx` answered `ENOSYS` (kernels before 4.11) or `EPERM` (old seccomp profiles
/// that do not know it): the process then asks `fstatat` only.
static NO_STATX: AtomicBool = AtomicBool::new(false);

/// When `name` was made: its birth time where `statx` reports one, else its ctime (before
/// 4.11, through `fstatat`: the order of layers' trees is what matters, and a tree's ctime
/// only moves forward); `(0, 0)` when it cannot be stat'ed.
fn birth_time(dir: &OwnedFd, name: &str) -> (i64, u32) {
    use rustix::fs::{statx, StatxFlags};
    if !NO_STATX.load(Ordering::Relaxed) {
        match statx(
            dir,
            name,
            AtFlags::SYMLINK_NOFOLLOW,
            StatxFlags::BTIME | StatxFlags::CTIME,
        ) {
            Ok(sx) if sx.stx_mask & StatxFlags::BTIME.bits() != 0 => {
                return (sx.stx_btime.tv_sec, sx.stx_btime.tv_nsec)
            }
            Ok(sx) => return (sx.stx_ctime.tv_sec, sx.stx_ctime.tv_nsec),
            Err(rustix::io::Errno::NOSYS) | Err(rustix::io::Errno::PERM) => {
                NO_STATX.store(true, Ordering::Relaxed)
            }
            Err(_) => return (0, 0),
        }
    }
    match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => (st.st_ctime, st.st_ctime_nsec as u32),
        Err(_) => (0, 0),
    }
}

fn read_small(fd: &OwnedFd, name: &str) -> Option<String> {
    let f = rustix::fs::openat(
        fd,
        name,
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .ok()?;
    let mut s = String::new();
    use std::io::Read;
    std::fs::File::from(f)
        .take(64 * 1024)
        .read_to_string(&mut s)
        .ok()?;
    Some(s.trim_end_matches('\n').to_string())
}

fn scan_layer(
    home_fd: &OwnedFd,
    fd: &OwnedFd,
    home: &Path,
    id: &str,
    layout: Layout,
    dev: u64,
) -> Result<Found> {
    let path = home.join(id);
    let content = match layout {
        Layout::Overlay if is_dir_at(fd, "root") => Some("root"),
        Layout::Overlay if is_dir_at(fd, "upper") => Some("upper"),
        Layout::Overlay2 if is_dir_at(fd, "diff") => Some("diff"),
        _ => None,
    };
    let (kind, parent, source) = match layout {
        Layout::Overlay => {
            if content == Some("root") {
                let recorded =
                    ovlink_fs::xattr::get_fd(fd, OsStr::new(ovlink_overlay::PARENT_XATTR), &path)?
                        .and_then(|v| String::from_utf8(v).ok())
                        .filter(|p| ovlink_driver::validate_id(p).is_ok());
                match recorded {
                    Some(p) => ("image", Some(p), "layout"),
                    None => ("image", None, "none"),
                }
            } else if let Some(l) = read_small(fd, "lower-id") {
                ("container", Some(l), "lower-id")
            } else {
                ("incomplete", None, "none")
            }
        }
        Layout::Overlay2 => {
            let parent = read_small(fd, "lower")
                .and_then(|s| s.split(':').next().map(str::to_string))
                .and_then(|l| {
                    let name = l.strip_prefix("l/")?.to_string();
                    let t = rustix::fs::readlinkat(
                        home_fd,
                        format!("{}/{name}", ovlink_overlay2::driver::LINK_DIR).as_str(),
                        Vec::new(),
                    )
                    .ok()?;
                    let t = t.to_str().ok()?;
                    Some(t.strip_prefix("../")?.strip_suffix("/diff")?.to_string())
                });
            let rw =
                ovlink_fs::xattr::get_fd(fd, OsStr::new(ovlink_overlay2::driver::RW_XATTR), &path)?
                    .is_some();
            let kind = match (content, rw) {
                (None, _) => "incomplete",
                (Some(_), true) => "container",
                (Some(_), false) => "image",
            };
            let source = if parent.is_some() { "lower" } else { "none" };
            (kind, parent, source)
        }
    };
    // The layer directory itself, then each entry; the content tree is counted.
    let mut w = Walk::default();
    let st = rustix::fs::fstat(fd).ctx("stat", &path)?;
    w.inodes.insert(st.st_ino, block_bytes(&st));
    let mut names: Vec<Vec<u8>> = Vec::new();
    for ent in Dir::read_from(fd).ctx("read directory", &path)? {
        let ent = ent.ctx("read directory", &path)?;
        let n = ent.file_name().to_bytes();
        if n != b"." && n != b".." {
            names.push(n.to_vec());
        }
    }
    let mut upper = None;
    let mut work = None;
    let mut content_files = HashSet::new();
    for raw in names {
        let n = OsStr::from_bytes(&raw);
        let counted = content.is_some_and(|c| c.as_bytes() == raw.as_slice());
        let sub = walk(fd.as_fd(), n, &path.join(n), dev, counted)?;
        if counted && kind == "image" && layout == Layout::Overlay {
            content_files = files_of(fd, n, &path.join(n), dev)?;
        }
        if kind == "container" {
            if counted {
                upper = Some(sub.inodes.len() as u64);
            } else if raw == b"work" {
                work = Some(sub.inodes.len() as u64);
            }
        }
        w.merge(sub);
    }
    // overlay2: the layer's short link in l/ is part of what the layer costs.
    if layout == Layout::Overlay2 {
        if let Some(lid) = read_small(fd, "link").filter(|l| !l.contains('/') && !l.is_empty()) {
            let lname = format!("{}/{lid}", ovlink_overlay2::driver::LINK_DIR);
            if let Ok(st) = rustix::fs::statat(home_fd, lname.as_str(), AtFlags::SYMLINK_NOFOLLOW) {
                if st.st_dev == dev {
                    w.inodes.insert(st.st_ino, block_bytes(&st));
                }
            }
        }
    }
    let birth = birth_time(home_fd, id);
    let birth = match content {
        Some(c) if layout == Layout::Overlay => birth_time(fd, c).max(birth),
        _ => birth,
    };
    Ok(Found {
        id: id.to_string(),
        kind,
        parent,
        parent_source: source,
        birth,
        walk: w,
        content_files,
        upper,
        work,
    })
}

/// Inode numbers of the non-directories below `name` (for parent inference).
fn files_of(dir: &OwnedFd, name: &OsStr, shown: &Path, dev: u64) -> Result<HashSet<u64>> {
    let mut out = HashSet::new();
    fn rec(
        dir: &OwnedFd,
        name: &OsStr,
        shown: &Path,
        dev: u64,
        out: &mut HashSet<u64>,
    ) -> Result<()> {
        let Ok(st) = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) else {
            return Ok(());
        };
        if st.st_dev != dev {
            return Ok(());
        }
        if rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::Directory {
            out.insert(st.st_ino);
            return Ok(());
        }
        let fd = open_dir_at(dir, name, shown)?;
        let mut names = Vec::new();
        for ent in Dir::read_from(&fd).ctx("read directory", shown)? {
            let ent = ent.ctx("read directory", shown)?;
            let n = ent.file_name().to_bytes();
            if n != b"." && n != b".." {
                names.push(n.to_vec());
            }
        }
        for n in names {
            let n = OsStr::from_bytes(&n);
            rec(&fd, n, &shown.join(n), dev, out)?;
        }
        Ok(())
    }
    rec(dir, name, shown, dev, &mut out)?;
    Ok(out)
}

/// Legacy image layers without a recorded parent: the earlier layer sharing the most file
/// inodes (ties: the latest of them).
fn infer_parents(found: &mut [Found]) {
    let candidates: Vec<usize> = (0..found.len())
        .filter(|&i| found[i].kind == "image" && !found[i].content_files.is_empty())
        .collect();
    let mut decided: Vec<(usize, String)> = Vec::new();
    for &x in &candidates {
        if found[x].parent.is_some() || found[x].parent_source != "none" {
            continue;
        }
        let mut best: Option<(usize, (i64, u32), usize)> = None;
        for &y in &candidates {
            if y == x || found[y].birth >= found[x].birth {
                continue;
            }
            let shared = found[x]
                .content_files
                .intersection(&found[y].content_files)
                .count();
            if shared == 0 {
                continue;
            }
            let better = match best {
                None => true,
                Some((s, b, _)) => shared > s || (shared == s && found[y].birth > b),
            };
            if better {
                best = Some((shared, found[y].birth, y));
            }
        }
        if let Some((_, _, y)) = best {
            decided.push((x, found[y].id.clone()));
        }
    }
    for (x, p) in decided {
        found[x].parent = Some(p);
        found[x].parent_source = "inferred";
    }
}

/// What else fits: image layers like each chain's top layer, and containers like the
/// existing ones (a container and its `-init` layer together).
fn projections(layers: &[LayerReport], fs: &FsStats) -> Vec<Projection> {
    let mut out = Vec::new();
    let has_image_child: HashSet<&str> = layers
        .iter()
        .filter(|l| l.kind == "image")
        .filter_map(|l| l.parent.as_deref())
        .collect();
    for l in layers
        .iter()
        .filter(|l| l.kind == "image" && !has_image_child.contains(l.id.as_str()))
    {
        out.push(project(
            format!(
                "more image layers like {} (layer {} of its chain)",
                short(&l.id),
                l.depth
            ),
            l.inodes_added,
            l.bytes_added,
            fs,
        ));
    }
    let containers: Vec<&LayerReport> = layers.iter().filter(|l| l.kind == "container").collect();
    let n = containers
        .iter()
        .filter(|l| !l.id.ends_with("-init"))
        .count() as u64;
    if n > 0 {
        let inodes: u64 = containers.iter().map(|l| l.inodes_added).sum();
        let bytes: u64 = containers.iter().map(|l| l.bytes_added).sum();
        out.push(project(
            format!("more containers like the {n} here (with their -init layers)"),
            inodes.div_ceil(n),
            bytes.div_ceil(n),
            fs,
        ));
    }
    out
}

/// An id as people read it: the first 12 characters, keeping a `-init` suffix.
pub fn short(id: &str) -> String {
    let head = match id.char_indices().nth(12) {
        Some((i, _)) => &id[..i],
        None => return id.to_string(),
    };
    match id.strip_suffix("-init") {
        Some(_) => format!("{head}…-init"),
        None => head.to_string(),
    }
}
