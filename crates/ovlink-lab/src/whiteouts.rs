//! `ovlink lab whiteouts`: how deletes are recorded. A file in both layers (the upper hides
//! the lower), a deleted file's whiteout (a 0/0 character device), copying a whiteout (ENXIO,
//! "No such device or address"), `rm -rf` of a lower directory (a whiteout on today's
//! kernels), the re-created directory (opaque, `trusted.overlay.opaque=y`), whiteouts sharing
//! one inode where the kernel does that (the shared one lives in `work/work/`), and the xattrs
//! a fresh upper gets at mount time (`trusted.overlay.uuid` where the kernel writes it).
//! Where the kernel's overlayfs cannot remove a lower directory at all (upstream 3.18-3.19
//! with the upper on xfs: EINVAL), the lab shows that error and says why, instead of failing.

use crate::error::{io, LabError, Result};
use crate::scratch::{ls_line, must_see, names, overlay_xattrs, xattr, Ovl, Scratch, Seen};
use crate::{LabConfig, Narrator, Say};
use serde::Serialize;
use std::path::Path;

/// What `lab whiteouts` observed.
#[derive(Debug, Clone, Serialize)]
pub struct WhiteoutsResult {
    /// merged/in_both.txt read the upper's content.
    pub upper_hides_lower: bool,
    /// upper/in_lower.txt after `rm merged/in_lower.txt`.
    pub file_whiteout: Seen,
    /// The lower file is still there.
    pub lower_file_kept: bool,
    /// What opening the whiteout for reading (what cp does) returned.
    pub copy_error: String,
    /// The errno of that (ENXIO is 6).
    pub copy_errno: Option<i32>,
    /// What `cp` printed, when cp is installed.
    pub cp_message: Option<String>,
    /// What `rm -rf merged/dir` returned: `None` when it worked; the error where the kernel's
    /// overlayfs cannot remove a lower directory on this filesystem (upstream 3.18-3.19 on
    /// xfs: EINVAL), and then the fields below about the directory are empty.
    pub dir_rm_error: Option<String>,
    /// upper/dir after `rm -rf merged/dir`.
    pub dir_after_rm: Option<Seen>,
    /// upper/dir after `mkdir merged/dir` again.
    pub dir_recreated: Option<Seen>,
    /// Its trusted.overlay.opaque.
    pub opaque: Option<String>,
    /// Entries of merged/dir after it was re-created.
    pub recreated_entries: usize,
    /// The file whiteout and the dir whiteout are one inode.
    pub whiteouts_share_inode: bool,
    /// Entries of work/work while mounted (`#…` is the shared whiteout).
    pub work_work: Vec<String>,
    /// trusted.overlay.* xattrs on upper/ after the first mount.
    pub upper_root_xattrs: Vec<String>,
    /// The mount line.
    pub mount_line: String,
}

/// Runs `lab whiteouts`.
pub fn run(cfg: &LabConfig, n: &dyn Narrator) -> Result<WhiteoutsResult> {
    crate::scratch::require_root("lab whiteouts")?;
    let say = Say(n);
    let s = Scratch::new(cfg, "lab-whiteouts")?;
    let d = s.path().to_path_buf();
    say.title("ovlink lab whiteouts: what a delete leaves in the upper dir");
    say.step("a lower and an upper that both hold in_both.txt");
    say.cmd(format!("cd {}", d.display()));
    say.cmd("mkdir -p lower/dir lower/dir2 upper work merged");
    s.mkdirs(&["lower/dir", "lower/dir2", "upper", "work", "merged"])?;
    say.cmd("echo lower > lower/in_both.txt; echo upper > upper/in_both.txt; echo lower > lower/in_lower.txt");
    s.write("lower/in_both.txt", b"lower\n")?;
    s.write("upper/in_both.txt", b"upper\n")?;
    s.write("lower/in_lower.txt", b"lower\n")?;
    say.cmd("touch lower/dir/a lower/dir/b lower/dir2/c");
    for f in ["lower/dir/a", "lower/dir/b", "lower/dir2/c"] {
        s.write(f, b"")?;
    }
    let ovl = Ovl::simple(&d);
    say.cmd(ovl.shell());
    ovl.mount()?;
    let line = ovl.mount_line().unwrap_or_default();
    say.cmd("grep merged /proc/mounts");
    say.out(line.clone());
    let m = ovl.merged();
    let both = std::fs::read_to_string(m.join("in_both.txt"))
        .map_err(io("read", &m.join("in_both.txt")))?;
    say.cmd("cat merged/in_both.txt");
    say.out(both.trim_end());
    let upper_hides_lower = both == "upper\n";
    say.saw(
        "a file in both layers: merged/ shows the upper one; the lower one is hidden, not changed",
    );

    say.step("the xattrs a fresh upper gets at mount time");
    say.cmd("getfattr -d -m trusted upper");
    let upper_root_xattrs = overlay_xattrs(&d.join("upper"))?;
    for x in &upper_root_xattrs {
        let v =
            ovlink_fs::xattr::get(&d.join("upper"), std::ffi::OsStr::new(x))?.unwrap_or_default();
        say.out(format!("{x}={}", printable(&v)));
    }
    if upper_root_xattrs
        .iter()
        .any(|x| x == "trusted.overlay.uuid")
    {
        say.saw("the kernel stamped a uuid on the fresh upper: uuid=auto (the default since Linux 6.6) turns a new upper into uuid=on, as the mount line shows");
    } else {
        say.saw(format!(
            "no trusted.overlay.uuid on upper/ (xattrs: {}); kernels before 6.6 write none",
            if upper_root_xattrs.is_empty() {
                "none".to_string()
            } else {
                upper_root_xattrs.join(", ")
            }
        ));
    }

    say.step("delete a lower file: a whiteout");
    say.cmd(
        "rm merged/in_lower.txt; ls -l merged/in_lower.txt lower/in_lower.txt upper/in_lower.txt",
    );
    let p = m.join("in_lower.txt");
    std::fs::remove_file(&p).map_err(io("remove", &p))?;
    say.out(ls_line(&d, "merged/in_lower.txt")?);
    say.out(ls_line(&d, "lower/in_lower.txt")?);
    say.out(ls_line(&d, "upper/in_lower.txt")?);
    let file_whiteout = must_see(&d.join("upper/in_lower.txt"))?;
    let lower_file_kept = d.join("lower/in_lower.txt").exists();
    say.saw(format!(
        "upper/in_lower.txt is a {} device {}, mode {:o}: a whiteout; the lower file is still there: {lower_file_kept}",
        file_whiteout.kind,
        file_whiteout
            .rdev
            .map(|(a, b)| format!("{a}/{b}"))
            .unwrap_or_default(),
        file_whiteout.mode
    ));

    say.step("copy the whiteout");
    say.cmd("cp upper/in_lower.txt upper/copy.txt");
    let wp = d.join("upper/in_lower.txt");
    let (copy_error, copy_errno) = match std::fs::File::open(&wp) {
        Ok(_) => ("opened (unexpected)".to_string(), None),
        Err(e) => (crate::scratch::errno_text(&e), e.raw_os_error()),
    };
    let cp_message = match crate::scratch::try_tool(
        std::process::Command::new("cp")
            .arg(&wp)
            .arg(d.join("upper/copy.txt")),
        "cp",
    ) {
        Ok((_, msg)) => Some(msg.replace(&format!("{}/", d.display()), "")),
        Err(_) => None,
    };
    if let Some(m) = &cp_message {
        say.out(m.clone());
    }
    say.saw(format!(
        "opening the whiteout fails with {copy_error}: a device node 0/0 has no driver behind it"
    ));

    say.step("rm -rf a lower directory, then make it again");
    say.cmd("rm -rf merged/dir; ls -l upper/dir");
    let md = m.join("dir");
    let mut rm_error = String::new();
    let dir = match std::fs::remove_dir_all(&md) {
        Ok(()) => {
            let r = removed_dir(&d, &md, &file_whiteout, &say);
            ovl.umount_told(&say)?;
            Some(r?)
        }
        Err(e) => {
            let text = crate::scratch::errno_text(&e);
            rm_error = text.clone();
            say.out(format!("rm: cannot remove 'merged/dir': {text}"));
            say.saw(format!(
                "this kernel's overlayfs could not remove a directory of the lower layer: {text}. \
                 It removes one by renaming a whiteout over it (RENAME_WHITEOUT) or exchanging it \
                 (RENAME_EXCHANGE) in the upper filesystem, which {} lacks here (upstream xfs \
                 has both from Linux 4.0): `ovlink check` refuses such a home for containers",
                ovlink_driver::checks::backing_fs(&d)
                    .map_or_else(|_| "its filesystem".to_string(), |(_, n)| n)
            ));
            ovl.umount_told(&say)?;
            None
        }
    };
    let dir_rm_error = match &dir {
        Some(_) => None,
        None => Some(rm_error),
    };
    say.saw(format!(
        "as in the article (\"cp: cannot open 'upper/in_both.txt' for reading: No such device or address\"): {copy_error}"
    ));
    say.ask("Why is a whiteout a character device and not simply a missing file?");
    say.ask("What would happen to merged/dir if upper/dir were a plain (not opaque) directory?");
    say.ask("Why can the kernel use one inode for all whiteouts?");
    s.finish(cfg, &say);
    Ok(WhiteoutsResult {
        upper_hides_lower,
        file_whiteout,
        lower_file_kept,
        copy_error,
        copy_errno,
        cp_message,
        dir_rm_error,
        dir_after_rm: dir.as_ref().map(|r| r.after_rm.clone()),
        dir_recreated: dir.as_ref().map(|r| r.recreated.clone()),
        opaque: dir.as_ref().and_then(|r| r.opaque.clone()),
        recreated_entries: dir.as_ref().map_or(0, |r| r.recreated_entries),
        whiteouts_share_inode: dir.as_ref().is_some_and(|r| r.share_inode),
        work_work: dir.map(|r| r.work_work).unwrap_or_default(),
        upper_root_xattrs,
        mount_line: line,
    })
}

fn printable(v: &[u8]) -> String {
    match std::str::from_utf8(v) {
        Ok(t) if t.chars().all(|c| !c.is_control()) => format!("\"{t}\""),
        _ => format!(
            "0x{}",
            v.iter().map(|b| format!("{b:02x}")).collect::<String>()
        ),
    }
}

/// What `rm -rf merged/dir` (done) and `mkdir merged/dir` left in upper/.
struct RemovedDir {
    after_rm: Seen,
    recreated: Seen,
    opaque: Option<String>,
    recreated_entries: usize,
    share_inode: bool,
    work_work: Vec<String>,
}

fn removed_dir(d: &Path, md: &Path, file_whiteout: &Seen, say: &Say) -> Result<RemovedDir> {
    let dir_after_rm = must_see(&d.join("upper/dir"))?;
    say.out(ls_line(d, "upper/dir")?);
    say.article(
        "deleting a directory in the container creates an opaque directory in the upper dir",
        format!(
            "rm -rf left upper/dir as a {} {}, a whiteout like a file's",
            dir_after_rm.kind,
            dir_after_rm
                .rdev
                .map(|(a, b)| format!("{a}/{b}"))
                .unwrap_or_default()
        ),
    );
    say.cmd("ls -la work/work");
    let work_work = names(&d.join("work/work"));
    say.out(work_work.join("  "));
    let whiteouts_share_inode = file_whiteout.ino == dir_after_rm.ino;
    say.saw(if whiteouts_share_inode {
        format!(
            "upper/in_lower.txt and upper/dir are the same inode ({}, {} links): the kernel makes one \
             whiteout in work/work/ and hardlinks it (Linux 5.8+), so whiteouts cost no inodes",
            dir_after_rm.ino, dir_after_rm.nlink
        )
    } else {
        format!(
            "the two whiteouts are different inodes ({} and {}): this kernel makes one per delete",
            file_whiteout.ino, dir_after_rm.ino
        )
    });
    say.cmd("mkdir merged/dir; ls -la merged/dir; getfattr -n trusted.overlay.opaque upper/dir");
    std::fs::create_dir(md).map_err(io("create", md))?;
    let dir_recreated = must_see(&d.join("upper/dir"))?;
    let opaque = xattr(&d.join("upper/dir"), "trusted.overlay.opaque")?;
    let recreated_entries = names(md).len();
    say.out(format!(
        "trusted.overlay.opaque=\"{}\"",
        opaque.clone().unwrap_or_default()
    ));
    say.saw(format!(
        "the re-created upper/dir is a {} with trusted.overlay.opaque={:?}: merged/dir shows {} entries, \
         the lower dir/a and dir/b stay hidden",
        dir_recreated.kind, opaque, recreated_entries
    ));
    if dir_recreated.kind != "dir" {
        return Err(LabError::Unexpected(format!(
            "the re-created directory is a {} in upper",
            dir_recreated.kind
        )));
    }
    Ok(RemovedDir {
        after_rm: dir_after_rm,
        recreated: dir_recreated,
        opaque,
        recreated_entries,
        share_inode: whiteouts_share_inode,
        work_work,
    })
}
