//! `ovlink image generate -o FILE`: a generated image ([`crate::generate`]) written to a file
//! the user names, under a temporary name beside it and renamed into place when complete (a
//! device or fifo is written in place; see [`ovlink_fs::output`]).
//!
//! This module owns only the file; what goes into the image is [`crate::generate`]'s. It
//! never writes anywhere but the named output and its temporary file.

use crate::error::{ImageError, Result};
use crate::generate::{generate_with, GenFormat, GenSpec, GenSummary};
use std::io::{self, Write};
use std::path::Path;

/// Writes the image of `spec` in `format` to `out` (fsync'd before it appears under its
/// name), returning what was written.
pub fn generate_file(spec: &GenSpec, format: GenFormat, out: &Path) -> Result<GenSummary> {
    let tmp = ovlink_fs::output::OutputFile::create(out, ".ovlink-generate-")?;
    let summary = {
        let mut w = io::BufWriter::with_capacity(1 << 20, tmp.file());
        let s = generate_with(spec, format, &mut w).map_err(|e| ImageError::io("write", out, e))?;
        w.flush().map_err(|e| ImageError::io("write", out, e))?;
        s
    };
    tmp.commit(true)?;
    Ok(summary)
}
