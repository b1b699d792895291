//! `ovlink lab copy-up`: the first write to a lower file, even a chmod, copies the whole file
//! into the upper dir (sizes and blocks compared, timed); the second write copies nothing; with
//! `metacopy=on` (where the kernel has it) a chmod copies only the metadata.

use crate::error::{io, Result};
use crate::scratch::{must_see, Ovl, Scratch, Seen};
use crate::{LabConfig, Narrator, Say};
use serde::Serialize;
use std::io::{Seek, Write};
use std::time::Instant;

/// What `lab copy-up` is asked to do.
#[derive(Debug, Clone)]
pub struct CopyUpConfig {
    /// Size of the big lower files, in MiB.
    pub size_mib: u64,
}

impl Default for CopyUpConfig {
    fn default() -> Self {
        CopyUpConfig { size_mib: 64 }
    }
}

/// What `lab copy-up` observed.
#[derive(Debug, Clone, Serialize)]
pub struct CopyUpResult {
    /// The lower file `chmod` was run on.
    pub lower: Seen,
    /// Its copy in upper after `chmod 600 merged/big-chmod.bin`.
    pub upper_after_chmod: Seen,
    /// Milliseconds of that chmod (the copy-up).
    pub chmod_ms: f64,
    /// Milliseconds of the first 1-byte write to the other big file (copy-up + write).
    pub first_write_ms: f64,
    /// Milliseconds of a second 1-byte write to it (no copy).
    pub second_write_ms: f64,
    /// Its copy in upper after the write: the whole file.
    pub upper_after_write: Seen,
    /// Reading the whole file through merged/ left upper empty.
    pub read_copies_nothing: bool,
    /// With `metacopy=on`: the upper entry after chmod (`None`: the kernel refused the option).
    pub metacopy_upper: Option<Seen>,
    /// With `metacopy=on`: the upper entry carries `trusted.overlay.metacopy`.
    pub metacopy_xattr: bool,
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1000.0
}

/// Runs `lab copy-up`.
pub fn run(cfg: &LabConfig, c: &CopyUpConfig, n: &dyn Narrator) -> Result<CopyUpResult> {
    crate::scratch::require_root("lab copy-up")?;
    let say = Say(n);
    let s = Scratch::new(cfg, "lab-copy-up")?;
    let d = s.path().to_path_buf();
    say.title("ovlink lab copy-up: the first write copies the WHOLE file up, once");
    say.step("a lower dir with two big files, an empty upper, a work dir");
    say.cmd(format!("cd {}", d.display()));
    say.cmd("mkdir lower upper work merged");
    s.mkdirs(&["lower", "upper", "work", "merged"])?;
    say.cmd(format!(
        "head -c {}M /dev/urandom > lower/big-chmod.bin; cp lower/big-chmod.bin lower/big-write.bin",
        c.size_mib
    ));
    crate::scratch::write_big(&d.join("lower/big-chmod.bin"), c.size_mib)?;
    crate::scratch::write_big(&d.join("lower/big-write.bin"), c.size_mib)?;
    let ovl = Ovl::simple(&d);
    say.cmd(ovl.shell());
    ovl.mount()?;

    say.step("reading copies nothing");
    say.cmd("cat merged/big-chmod.bin > /dev/null; ls upper");
    let p = ovl.merged().join("big-chmod.bin");
    let t = Instant::now();
    let mut f = std::fs::File::open(&p).map_err(io("open", &p))?;
    std::io::copy(&mut f, &mut std::io::sink()).map_err(io("read", &p))?;
    drop(f);
    let read_ms = ms(t);
    let read_copies_nothing = crate::scratch::names(&d.join("upper")).is_empty();
    say.saw(format!(
        "read {} MiB through merged/ in {read_ms:.1} ms; upper/ holds {} entries",
        c.size_mib,
        crate::scratch::names(&d.join("upper")).len()
    ));

    say.step("chmod is a write: the whole file is copied up");
    say.cmd("time chmod 600 merged/big-chmod.bin; ls -ls lower/big-chmod.bin upper/big-chmod.bin");
    let t = Instant::now();
    rustix::fs::chmod(&p, rustix::fs::Mode::from_raw_mode(0o600)).map_err(io("chmod", &p))?;
    let chmod_ms = ms(t);
    let lower = must_see(&d.join("lower/big-chmod.bin"))?;
    let upper_after_chmod = must_see(&d.join("upper/big-chmod.bin"))?;
    say.out(crate::scratch::ls_line(&d, "lower/big-chmod.bin")?);
    say.out(crate::scratch::ls_line(&d, "upper/big-chmod.bin")?);
    say.saw(format!(
        "chmod took {chmod_ms:.1} ms: upper/big-chmod.bin is {} bytes in {} blocks, the lower file {} bytes in {} blocks: {}",
        upper_after_chmod.size,
        upper_after_chmod.blocks,
        lower.size,
        lower.blocks,
        if upper_after_chmod.size == lower.size && upper_after_chmod.blocks >= lower.blocks {
            "a full copy, for a change of 2 permission bits"
        } else {
            "NOT a full copy"
        }
    ));

    say.step("a 1-byte write: copy-up the first time, nothing the second");
    say.cmd("time printf x | dd of=merged/big-write.bin bs=1 seek=0 conv=notrunc");
    let w = ovl.merged().join("big-write.bin");
    let write1 = |at: u64| -> Result<f64> {
        let t = Instant::now();
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(&w)
            .map_err(io("open for writing", &w))?;
        f.seek(std::io::SeekFrom::Start(at))
            .map_err(io("seek", &w))?;
        f.write_all(b"x").map_err(io("write", &w))?;
        Ok(ms(t))
    };
    let first_write_ms = write1(0)?;
    say.cmd("time printf y | dd of=merged/big-write.bin bs=1 seek=1 conv=notrunc");
    let second_write_ms = write1(1)?;
    let upper_after_write = must_see(&d.join("upper/big-write.bin"))?;
    say.saw(format!(
        "first write {first_write_ms:.1} ms (it copied {} bytes up), second write {second_write_ms:.3} ms \
         (the copy in upper is written in place)",
        upper_after_write.size
    ));
    say.text(
        "The copy-up is as slow as copying the file (a database or a log file of gigabytes \
         stalls the first write); afterwards the container writes its own copy. Writes that \
         must not pay this belong in a volume.",
    );
    ovl.umount_told(&say)?;

    say.step("metacopy=on: a chmod copies only the metadata");
    let ovl2 = Ovl {
        upper: Some("upper2".into()),
        work: Some("work2".into()),
        ..Ovl::simple(&d)
    }
    .with("metacopy=on");
    s.mkdirs(&["upper2", "work2"])?;
    say.cmd("mkdir upper2 work2");
    say.cmd(ovl2.shell());
    let (metacopy_upper, metacopy_xattr) = match ovl2.try_mount() {
        Ok(()) => {
            say.cmd("chmod 600 merged/big-chmod.bin; ls -ls upper2/big-chmod.bin; getfattr -m trusted -d upper2/big-chmod.bin");
            rustix::fs::chmod(&p, rustix::fs::Mode::from_raw_mode(0o600))
                .map_err(io("chmod", &p))?;
            let up = must_see(&d.join("upper2/big-chmod.bin"))?;
            let xs = crate::scratch::overlay_xattrs(&d.join("upper2/big-chmod.bin"))?;
            let has = xs.iter().any(|x| x == "trusted.overlay.metacopy");
            say.out(crate::scratch::ls_line(&d, "upper2/big-chmod.bin")?);
            say.saw(format!(
                "upper2/big-chmod.bin: {} bytes but {} blocks; xattrs {}: the data stays in the lower \
                 file until the first real write",
                up.size,
                up.blocks,
                xs.join(", ")
            ));
            ovl2.umount_told(&say)?;
            (Some(up), has)
        }
        Err(e) => {
            say.saw(format!(
                "this kernel refused metacopy=on: {} (metacopy came with Linux 4.19)",
                crate::scratch::errno_text(&e.into())
            ));
            (None, false)
        }
    };
    say.article(
        "copy_up copies the whole file into the container layer even for a tiny change",
        "still true for data writes; since Linux 4.19 a mount with metacopy=on copies only \
         metadata for chmod/chown (Docker does not turn it on; the module default here is off)",
    );
    say.ask("Why does chmod, which changes no data, need a copy of the file at all?");
    say.ask("What would you put in a volume instead of the image, and why?");
    say.ask("The second write was fast: where did it go?");
    s.finish(cfg, &say);
    Ok(CopyUpResult {
        lower,
        upper_after_chmod,
        chmod_ms,
        first_write_ms,
        second_write_ms,
        upper_after_write,
        read_copies_nothing,
        metacopy_upper,
        metacopy_xattr,
    })
}
