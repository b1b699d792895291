//! The layer hardlink copy against `cp -al`, on a tree shaped like a Debian root (about
//! 10,600 entries: 1,255 directories, 688 symlinks, the rest files), side by side:
//!
//! ```sh
//! cargo bench -p ovlink-fs --bench copy          # OVLINK_BENCH_DIR: where the trees go (not tmpfs)
//! ```
//!
//! Each sample copies into a fresh destination; removing it is not timed.
#![allow(missing_docs, clippy::unwrap_used)]

use criterion::{criterion_group, criterion_main, Criterion};
use ovlink_fs::{copy_tree, CopyOptions};
use rustix::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Builds `dirs` directories (a two-level fan-out), with `files` files and `links` symlinks
/// spread over them.
fn make_tree(root: &Path, dirs: usize, files: usize, links: usize) -> usize {
    std::fs::create_dir_all(root).unwrap();
    let top = 24;
    let mut all = Vec::new();
    for i in 0..dirs {
        let p = if i < top {
            root.join(format!("d{i}"))
        } else {
            root.join(format!("d{}", i % top)).join(format!("s{i}"))
        };
        std::fs::create_dir_all(&p).unwrap();
        all.push(p);
    }
    for i in 0..files {
        std::fs::write(all[i % all.len()].join(format!("f{i}")), [b'x'; 64]).unwrap();
    }
    for i in 0..links {
        std::os::unix::fs::symlink("../f0", all[i % all.len()].join(format!("l{i}"))).unwrap();
    }
    dirs + files + links
}

fn time_copies(iters: u64, scratch: &Path, mut one: impl FnMut(&Path)) -> Duration {
    let mut total = Duration::ZERO;
    for i in 0..iters {
        let dst = scratch.join(format!("dst-{i}"));
        let t = Instant::now();
        one(&dst);
        total += t.elapsed();
        std::fs::remove_dir_all(&dst).unwrap();
    }
    total
}

fn ovlink_copy(src: &Path, dst: &Path, parallel: bool) {
    std::fs::create_dir(dst).unwrap();
    let s = ovlink_fs::at::open_dir(src).unwrap();
    let d = ovlink_fs::at::open_dir(dst).unwrap();
    let mut opts = CopyOptions::hardlink();
    if !parallel {
        opts.parallel_depth = 0;
    }
    copy_tree(s.as_fd(), d.as_fd(), src, dst, opts).unwrap();
}

fn bench(c: &mut Criterion) {
    let base = std::env::var_os("OVLINK_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let tmp = tempfile::tempdir_in(base).unwrap();
    let src = tmp.path().join("src");
    let n = make_tree(&src, 1255, 8657, 688);
    let scratch = tmp.path().join("scratch");
    std::fs::create_dir(&scratch).unwrap();

    let mut g = c.benchmark_group(format!("hardlink copy, {n} entries"));
    g.sample_size(20);
    g.bench_function("ovlink copy_tree (parallel)", |b| {
        b.iter_custom(|iters| time_copies(iters, &scratch, |d| ovlink_copy(&src, d, true)))
    });
    g.bench_function("ovlink copy_tree (serial)", |b| {
        b.iter_custom(|iters| time_copies(iters, &scratch, |d| ovlink_copy(&src, d, false)))
    });
    if Path::new("/bin/cp").exists() {
        g.bench_function("cp -al (process)", |b| {
            b.iter_custom(|iters| {
                time_copies(iters, &scratch, |d| {
                    let ok = std::process::Command::new("/bin/cp")
                        .arg("-al")
                        .arg(&src)
                        .arg(d)
                        .status()
                        .unwrap()
                        .success();
                    assert!(ok);
                })
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
