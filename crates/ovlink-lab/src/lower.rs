//! `ovlink lab lower`: the lower layer is never changed by the container. Deleting a lower
//! file in the container frees nothing (the whiteout hides it; `df` says the same); a
//! copied-up file costs its size again until it is deleted. And what happens when someone
//! edits the lower dir under a mount (the kernel documents it as undefined; this shows what
//! this kernel did). Runs on a small loop-mounted ext4 so `df` shows only the lab.

use crate::error::{io, Result};
use crate::scratch::{names, Ovl, Scratch};
use crate::{LabConfig, Narrator, Say};
use ovlink_report::FsStats;
use serde::Serialize;
use std::io::Write;

/// What `lab lower` observed (bytes used on the lab's filesystem, `df`).
#[derive(Debug, Clone, Serialize)]
pub struct LowerResult {
    /// Size of the big lower file.
    pub file_bytes: u64,
    /// Used bytes before anything was deleted.
    pub used_before: u64,
    /// After `rm merged/big.bin`.
    pub used_after_rm: u64,
    /// After a copy-up of another big file (chmod).
    pub used_after_copy_up: u64,
    /// After deleting that copied-up file in the container.
    pub used_after_rm_copy: u64,
    /// The lower file is intact after all of it.
    pub lower_intact: bool,
    /// A change written into lower/note.txt under the mount shows in merged/note.txt.
    pub lower_edit_visible: bool,
    /// A file created in lower/ under the mount is found by name in merged/.
    pub new_lower_file_found: bool,
    /// ... and listed by `ls merged` (the merged dir had been listed before).
    pub new_lower_file_listed: bool,
}

fn used(p: &std::path::Path) -> Result<u64> {
    rustix::fs::sync();
    Ok(FsStats::of(p)?.bytes_used)
}

fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64)
}

/// Runs `lab lower`.
pub fn run(cfg: &LabConfig, n: &dyn Narrator) -> Result<LowerResult> {
    crate::scratch::require_root("lab lower")?;
    let say = Say(n);
    let s = Scratch::new(cfg, "lab-lower")?;
    say.title("ovlink lab lower: the image layer is read-only, even when it looks deleted");
    say.cmd(format!("cd {}", s.path().display()));
    say.cmd("truncate -s 64M fs.img && mkfs.ext4 -q fs.img && mkdir fs && mount -o loop fs.img fs && cd fs");
    let fs = s.loop_fs("fs", 64, "mkfs.ext4", &["-q", "-F", "-E", "nodiscard"])?;
    for dd in ["lower", "upper", "work", "merged"] {
        std::fs::create_dir(fs.join(dd)).map_err(io("create", &fs.join(dd)))?;
    }
    let size = 8u64;
    say.cmd("mkdir lower upper work merged; head -c 8M /dev/urandom > lower/big.bin; cp lower/big.bin lower/other.bin; echo first > lower/note.txt");
    crate::scratch::write_big(&fs.join("lower/big.bin"), size)?;
    crate::scratch::write_big(&fs.join("lower/other.bin"), size)?;
    std::fs::write(fs.join("lower/note.txt"), b"first\n")
        .map_err(io("write", &fs.join("lower/note.txt")))?;
    let ovl = Ovl::simple(&fs);
    say.cmd(ovl.shell());
    ovl.mount()?;
    let m = ovl.merged();

    say.step("delete a lower file in the container");
    say.cmd("df -B1 --output=used .; rm merged/big.bin; df -B1 --output=used .");
    let used_before = used(&fs)?;
    std::fs::remove_file(m.join("big.bin")).map_err(io("remove", &m.join("big.bin")))?;
    let used_after_rm = used(&fs)?;
    say.out(format!(
        "{} used before, {} after",
        mib(used_before),
        mib(used_after_rm)
    ));
    say.saw(format!(
        "deleting the {size} MiB file in the container freed {}: the lower file is still there, hidden by a whiteout",
        mib(used_before.saturating_sub(used_after_rm))
    ));

    say.step("copy a lower file up, then delete it");
    say.cmd("chmod 600 merged/other.bin; df -B1 --output=used .; rm merged/other.bin; df -B1 --output=used .");
    let o = m.join("other.bin");
    rustix::fs::chmod(&o, rustix::fs::Mode::from_raw_mode(0o600)).map_err(io("chmod", &o))?;
    let used_after_copy_up = used(&fs)?;
    std::fs::remove_file(&o).map_err(io("remove", &o))?;
    let used_after_rm_copy = used(&fs)?;
    say.out(format!(
        "{} after the chmod, {} after the rm",
        mib(used_after_copy_up),
        mib(used_after_rm_copy)
    ));
    say.saw(format!(
        "the copy-up cost {} more; deleting it gave back only the copy ({}), never the lower file",
        mib(used_after_copy_up.saturating_sub(used_after_rm)),
        mib(used_after_copy_up.saturating_sub(used_after_rm_copy))
    ));
    let lower_intact = std::fs::metadata(fs.join("lower/big.bin"))
        .map(|x| x.len() == size << 20)
        .unwrap_or(false)
        && std::fs::metadata(fs.join("lower/other.bin"))
            .map(|x| x.len() == size << 20)
            .unwrap_or(false);
    say.text(
        "This is why deleting image files inside a container never frees disk space, and why a \
         Dockerfile `RUN rm` of a file added by an earlier layer does not shrink the image.",
    );

    say.step("edit the lower dir while it is mounted");
    say.cmd("ls merged; echo second >> lower/note.txt; cat merged/note.txt; touch lower/new.txt; ls merged; ls -l merged/new.txt");
    let _ = names(&m);
    let _ = std::fs::read(m.join("note.txt"));
    {
        let p = fs.join("lower/note.txt");
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&p)
            .map_err(io("open", &p))?;
        f.write_all(b"second\n").map_err(io("write", &p))?;
    }
    std::fs::write(fs.join("lower/new.txt"), b"new\n")
        .map_err(io("write", &fs.join("lower/new.txt")))?;
    let note = std::fs::read_to_string(m.join("note.txt")).unwrap_or_default();
    let lower_edit_visible = note.contains("second");
    let new_lower_file_listed = names(&m).iter().any(|x| x == "new.txt");
    let new_lower_file_found = m.join("new.txt").exists();
    say.out(format!("merged/note.txt: {:?}", note));
    say.saw(format!(
        "the edit of a file not yet copied up shows through: {lower_edit_visible} (merged/ reads the lower inode); \
         the new lower file is found by name: {new_lower_file_found}, listed by ls: {new_lower_file_listed}"
    ));
    say.text(
        "The kernel documentation: changes to the underlying filesystems while part of a \
         mounted overlay are not allowed; the behaviour is undefined (no crash, but caches may \
         show old or new state). A layer in use must never be edited: ovlink and Docker only \
         write image layers that no container uses.",
    );
    ovl.umount_told(&say)?;
    say.cmd("cd ..; umount fs");
    say.ask("A container deletes a 1 GB log file that came with the image. How much space is freed, and where?");
    say.ask("Why is editing a lower dir under a mount undefined rather than forbidden?");
    s.finish(cfg, &say);
    Ok(LowerResult {
        file_bytes: size << 20,
        used_before,
        used_after_rm,
        used_after_copy_up,
        used_after_rm_copy,
        lower_intact,
        lower_edit_visible,
        new_lower_file_found,
        new_lower_file_listed,
    })
}
