//! `ovlink lab page-cache`: two containers on one lower dir read the same file; its pages are
//! cached once, on the lower file's inode (`fincore` counts them; `/proc/meminfo` Cached is
//! shown but too noisy on a shared machine to prove anything). A copy-up in one container
//! makes a second file, whose pages are cached separately.
//!
//! The lab drops only its own file's pages (`posix_fadvise(DONTNEED)`), never the machine's
//! caches. `fincore` is util-linux's; without it the lab fails and says so.

use crate::error::{io, LabError, Result};
use crate::scratch::{Ovl, Scratch};
use crate::{LabConfig, Narrator, Say};
use serde::Serialize;
use std::path::Path;

/// What `lab page-cache` is asked to do.
#[derive(Debug, Clone)]
pub struct PageCacheConfig {
    /// Size of the shared lower file, in MiB.
    pub size_mib: u64,
}

impl Default for PageCacheConfig {
    fn default() -> Self {
        PageCacheConfig { size_mib: 32 }
    }
}

/// What `lab page-cache` observed (pages as `fincore` counts them).
#[derive(Debug, Clone, Serialize)]
pub struct PageCacheResult {
    /// Pages of the file (its size / page size).
    pub file_pages: u64,
    /// Cached pages of the lower file before any read.
    pub before: u64,
    /// After container 1 read it through its merged/.
    pub after_first: u64,
    /// After container 2 read it too.
    pub after_second: u64,
    /// What fincore reports for the file seen through container 2's merged/.
    pub through_merged: u64,
    /// After a copy-up in container 2 and a read of its copy: the lower file's pages.
    pub lower_after_copy_up: u64,
    /// ... and the upper copy's pages.
    pub upper_copy_pages: u64,
    /// /proc/meminfo Cached (kB) before and after both reads (noisy; shown, not proof).
    pub meminfo_cached_kb: (u64, u64),
}

/// Cached pages of `p`, from `fincore --raw --noheadings --output PAGES`.
pub fn fincore_pages(p: &Path) -> Result<u64> {
    let out = crate::scratch::run_tool(
        std::process::Command::new("fincore")
            .args(["--raw", "--noheadings", "--output", "PAGES"])
            .arg(p),
        "fincore (from util-linux)",
    )?;
    let s = String::from_utf8_lossy(&out.stdout);
    s.trim().parse().map_err(|_| LabError::Tool {
        tool: "fincore".into(),
        detail: format!("unexpected output {:?} for {}", s.trim(), p.display()),
    })
}

/// /proc/meminfo `Cached`, kB (0 when unreadable).
pub fn meminfo_cached() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("Cached:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn read_all(p: &Path) -> Result<()> {
    let mut f = std::fs::File::open(p).map_err(io("open", p))?;
    std::io::copy(&mut f, &mut std::io::sink()).map_err(io("read", p))?;
    Ok(())
}

fn drop_pages(p: &Path) -> Result<()> {
    let f = std::fs::File::open(p).map_err(io("open", p))?;
    rustix::fs::fadvise(&f, 0, None, rustix::fs::Advice::DontNeed)
        .map_err(io("posix_fadvise(DONTNEED)", p))?;
    Ok(())
}

/// Runs `lab page-cache`.
pub fn run(cfg: &LabConfig, c: &PageCacheConfig, n: &dyn Narrator) -> Result<PageCacheResult> {
    crate::scratch::require_root("lab page-cache")?;
    let say = Say(n);
    let s = Scratch::new(cfg, "lab-page-cache")?;
    let d = s.path().to_path_buf();
    say.title("ovlink lab page-cache: two containers, one copy of the image's pages in memory");
    say.cmd(format!("cd {}", d.display()));
    say.cmd("mkdir -p lower c1/upper c1/work c1/merged c2/upper c2/work c2/merged");
    s.mkdirs(&[
        "lower",
        "c1/upper",
        "c1/work",
        "c1/merged",
        "c2/upper",
        "c2/work",
        "c2/merged",
    ])?;
    let lower = d.join("lower/lib.so");
    say.cmd(format!(
        "head -c {}M /dev/urandom > lower/lib.so; sync",
        c.size_mib
    ));
    crate::scratch::write_big(&lower, c.size_mib)?;
    let page = rustix::param::page_size() as u64;
    let file_pages = (c.size_mib << 20).div_ceil(page);
    say.cmd("dd if=lower/lib.so iflag=nocache count=0  # drop this file's cached pages only");
    drop_pages(&lower)?;
    let mk = |name: &str| Ovl {
        upper: Some(format!("{name}/upper")),
        work: Some(format!("{name}/work")),
        merged: format!("{name}/merged"),
        ..Ovl::simple(&d)
    };
    let (c1, c2) = (mk("c1"), mk("c2"));
    for o in [&c1, &c2] {
        say.cmd(o.shell());
        o.mount()?;
    }
    say.cmd("fincore lower/lib.so");
    let before = fincore_pages(&lower)?;
    say.out(format!("{before} pages cached of {file_pages}"));
    let cached0 = meminfo_cached();

    say.step("container 1 reads the file");
    say.cmd("cat c1/merged/lib.so > /dev/null; fincore lower/lib.so");
    read_all(&c1.merged().join("lib.so"))?;
    let after_first = fincore_pages(&lower)?;
    say.out(format!("{after_first} pages"));
    say.saw(format!(
        "{after_first} of {file_pages} pages of lower/lib.so are in memory: container 1's read went to the lower file's own inode"
    ));

    say.step("container 2 reads the same file");
    say.cmd("cat c2/merged/lib.so > /dev/null; fincore lower/lib.so c2/merged/lib.so");
    read_all(&c2.merged().join("lib.so"))?;
    let after_second = fincore_pages(&lower)?;
    let through_merged = fincore_pages(&c2.merged().join("lib.so"))?;
    let cached1 = meminfo_cached();
    say.out(format!(
        "lower/lib.so: {after_second} pages; c2/merged/lib.so: {through_merged} pages"
    ));
    say.saw(format!(
        "after the second container's read: still {after_second} pages (not {}): one copy in memory for both containers. \
         /proc/meminfo Cached went from {} to {} kB (the whole machine, so other work shows too)",
        after_first * 2,
        cached0,
        cached1
    ));

    say.step("a copy-up ends the sharing");
    say.cmd("chmod 600 c2/merged/lib.so; dd if=c2/upper/lib.so iflag=nocache count=0; cat c2/merged/lib.so > /dev/null; fincore lower/lib.so c2/upper/lib.so");
    let p2 = c2.merged().join("lib.so");
    rustix::fs::chmod(&p2, rustix::fs::Mode::from_raw_mode(0o600)).map_err(io("chmod", &p2))?;
    let upper_copy = d.join("c2/upper/lib.so");
    drop_pages(&upper_copy)?;
    read_all(&p2)?;
    let lower_after_copy_up = fincore_pages(&lower)?;
    let upper_copy_pages = fincore_pages(&upper_copy)?;
    say.out(format!(
        "lower/lib.so: {lower_after_copy_up} pages; c2/upper/lib.so: {upper_copy_pages} pages"
    ));
    say.saw(format!(
        "after the copy-up container 2 reads its own copy: {upper_copy_pages} more pages in memory for the same bytes"
    ));
    say.text(
        "Page-cache sharing is why many containers of one image are cheap in memory: the \
         kernel caches pages per inode, and every container's merged/ reaches the same lower \
         inode. (Before Linux 4.19 a file opened read-only before another process copied it up \
         kept reading the old lower copy.)",
    );
    for o in [&c1, &c2] {
        o.umount_told(&say)?;
    }
    say.ask(
        "Which inode do the pages belong to, and how can fincore on c2/merged/lib.so see them?",
    );
    say.ask("Why do the pages double after the copy-up?");
    say.ask("What would happen with a storage driver that copies the image per container (vfs)?");
    s.finish(cfg, &say);
    Ok(PageCacheResult {
        file_pages,
        before,
        after_first,
        after_second,
        through_merged,
        lower_after_copy_up,
        upper_copy_pages,
        meminfo_cached_kb: (cached0, cached1),
    })
}
