//! The layer-tar applier on a 10,000-entry layer (plain and gzip), with and without the
//! `fdatasync` pool (`ApplyOptions::sync_data`), into a fresh empty directory each sample:
//!
//! ```sh
//! cargo bench -p ovlink-tar --bench apply        # OVLINK_BENCH_DIR: where to apply (not tmpfs)
//! ```
#![allow(missing_docs, clippy::unwrap_used)]

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ovlink_tar::{apply_layer, ApplyOptions};
use rustix::fd::AsFd;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A layer tar: `dirs` directories with `files` files of `size` bytes spread over them.
fn layer(dirs: usize, files: usize, size: usize) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    for i in 0..dirs {
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o755);
        h.set_size(0);
        h.set_mtime(1_600_000_000);
        b.append_data(&mut h.clone(), format!("d{i}/"), &[][..])
            .unwrap();
    }
    let body = vec![b'y'; size];
    for i in 0..files {
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o644);
        h.set_size(size as u64);
        b.append_data(&mut h.clone(), format!("d{}/f{i}", i % dirs), &body[..])
            .unwrap();
    }
    b.into_inner().unwrap()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn time_applies(iters: u64, scratch: &Path, tar: &[u8], opts: &ApplyOptions) -> Duration {
    let mut total = Duration::ZERO;
    for i in 0..iters {
        let dst = scratch.join(format!("dst-{i}"));
        std::fs::create_dir(&dst).unwrap();
        let fd = ovlink_fs::at::open_dir(&dst).unwrap();
        let t = Instant::now();
        apply_layer(fd.as_fd(), &dst, &mut &tar[..], opts).unwrap();
        total += t.elapsed();
        drop(fd);
        std::fs::remove_dir_all(&dst).unwrap();
    }
    total
}

fn bench(c: &mut Criterion) {
    let base = std::env::var_os("OVLINK_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let tmp = tempfile::tempdir_in(base).unwrap();
    let plain = layer(1000, 9000, 1024);
    let gz = gzip(&plain);
    let mut g = c.benchmark_group("apply 10,000-entry layer");
    g.sample_size(10);
    g.throughput(Throughput::Elements(10_000));
    let nosync = ApplyOptions::default();
    let sync = ApplyOptions {
        sync_data: true,
        ..Default::default()
    };
    g.bench_function("plain tar", |b| {
        b.iter_custom(|n| time_applies(n, tmp.path(), &plain, &nosync))
    });
    g.bench_function("gzip tar", |b| {
        b.iter_custom(|n| time_applies(n, tmp.path(), &gz, &nosync))
    });
    g.bench_function("plain tar, sync_data", |b| {
        b.iter_custom(|n| time_applies(n, tmp.path(), &plain, &sync))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
