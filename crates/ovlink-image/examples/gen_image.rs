//! `cargo run --release -p ovlink-image --example gen_image -- OUT [ENTRIES] [LAYERS]`: writes
//! the generator's docker-save tarball (the one `ovlink bench` uses) for benchmark scripts.
use std::io::Write;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let out = args
        .next()
        .ok_or("usage: gen_image OUT [ENTRIES] [LAYERS]")?;
    let mut spec = ovlink_image::GenSpec::bench();
    if let Some(n) = args.next() {
        spec.entries = n.parse()?;
    }
    if let Some(n) = args.next() {
        spec.layers = n.parse()?;
    }
    let mut f = std::io::BufWriter::new(std::fs::File::create(&out)?);
    let sum = ovlink_image::generate(&spec, &mut f)?;
    f.flush()?;
    eprintln!(
        "{out}: {} entries, {} layers, {} bytes",
        spec.entries, spec.layers, sum.archive_size
    );
    Ok(())
}
