//! `cargo run --release -p ovlink-fs --example hardlink_copy -- SRC DST [--serial]`: the layer
//! hardlink copy on its own, for benchmarks against `cp -al`. DST must not exist.
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args_os().skip(1);
    let src = PathBuf::from(
        args.next()
            .ok_or("usage: hardlink_copy SRC DST [--serial]")?,
    );
    let dst = PathBuf::from(
        args.next()
            .ok_or("usage: hardlink_copy SRC DST [--serial]")?,
    );
    let serial = args.next().is_some_and(|a| a == "--serial");
    std::fs::create_dir(&dst)?;
    let s = ovlink_fs::at::open_dir(&src)?;
    let d = ovlink_fs::at::open_dir(&dst)?;
    let mut opts = ovlink_fs::CopyOptions::hardlink();
    if serial {
        opts.parallel_depth = 0;
    }
    let t = std::time::Instant::now();
    let stats = ovlink_fs::copy_tree(
        rustix::fd::AsFd::as_fd(&s),
        rustix::fd::AsFd::as_fd(&d),
        &src,
        &dst,
        opts,
    )?;
    eprintln!("{stats:?} in {:?}", t.elapsed());
    Ok(())
}
