//! `ovlink lab rename`: rename(2) of a directory that comes from the lower layer. With
//! `redirect_dir=off` (the legacy driver's and Docker's setting) the kernel answers EXDEV;
//! `mv` then copies the tree and deletes the original, so the user sees a success. With
//! `redirect_dir=on` (where the kernel has it) the rename succeeds and the upper dir records a
//! `trusted.overlay.redirect`. A kernel before 4.10 has no redirect_dir at all (the option is
//! refused): its mounts behave as `redirect_dir=off` and are made without the option.

use crate::error::{io, Result};
use crate::scratch::{ls_line, names, xattr, Ovl, Scratch};
use crate::{LabConfig, Narrator, Say};
use serde::Serialize;

/// What `lab rename` observed.
#[derive(Debug, Clone, Serialize)]
pub struct RenameResult {
    /// The kernel has the redirect_dir feature (4.10+); without it the first mount passes no
    /// `redirect_dir=off` (the option would be refused) and behaves the same.
    pub has_redirect_dir: bool,
    /// rename(2) of lower dir `dir` with redirect_dir=off: errno (18 is EXDEV), `None` if it
    /// succeeded.
    pub off_errno: Option<i32>,
    /// Its text.
    pub off_error: String,
    /// rename(2) of a lower file succeeded (files are copied up first).
    pub file_rename_ok: bool,
    /// rename(2) of a directory made in the container succeeded.
    pub upper_dir_rename_ok: bool,
    /// `mv merged/dir merged/moved` exited 0.
    pub mv_ok: bool,
    /// After mv: upper/moved holds full copies of the files (entries).
    pub mv_copied: Vec<String>,
    /// After mv: upper/dir is a whiteout.
    pub mv_left_whiteout: bool,
    /// rename(2) with redirect_dir=on: `Some(errno or 0)`; `None` when the kernel refused the
    /// mount option.
    pub on_errno: Option<i32>,
    /// The redirect xattr the rename left on the upper dir.
    pub on_redirect: Option<String>,
}

/// Runs `lab rename`.
pub fn run(cfg: &LabConfig, n: &dyn Narrator) -> Result<RenameResult> {
    crate::scratch::require_root("lab rename")?;
    let say = Say(n);
    let s = Scratch::new(cfg, "lab-rename")?;
    let d = s.path().to_path_buf();
    say.title("ovlink lab rename: moving a directory of the image");
    say.cmd(format!("cd {}", d.display()));
    say.cmd(
        "mkdir -p lower/dir upper work merged; echo a > lower/dir/a; echo b > lower/dir/b; echo f > lower/file",
    );
    s.mkdirs(&["lower/dir", "upper", "work", "merged"])?;
    s.write("lower/dir/a", b"a\n")?;
    s.write("lower/dir/b", b"b\n")?;
    s.write("lower/file", b"f\n")?;

    // A kernel before 4.10 has no redirect_dir and refuses the option (EINVAL): it always
    // behaves as redirect_dir=off, so the mount goes without it there.
    let has_redirect = ovlink_driver::checks::OverlayFeatures::read()
        .redirect_dir
        .known;
    let off = if has_redirect {
        say.step("redirect_dir=off (how Docker and the legacy driver mount)");
        Ovl::simple(&d).with("redirect_dir=off")
    } else {
        say.step(
            "no redirect_dir in this kernel (it came in 4.10): every mount behaves as \
             redirect_dir=off, how Docker and the legacy driver mount",
        );
        Ovl::simple(&d)
    };
    say.cmd(off.shell());
    off.mount()?;
    let m = off.merged();
    say.cmd("python3 -c 'import os; os.rename(\"merged/dir\", \"merged/dir2\")'");
    let r = std::fs::rename(m.join("dir"), m.join("dir2"));
    let (off_errno, off_error) = match &r {
        Ok(()) => (None, "ok".to_string()),
        Err(e) => (e.raw_os_error(), crate::scratch::errno_text(e)),
    };
    say.out(format!("rename(2): {off_error}"));
    say.saw(format!(
        "rename(2) of a lower directory returned {off_error}: the kernel will not move a directory \
         whose contents live in a read-only layer"
    ));
    let file_rename_ok = std::fs::rename(m.join("file"), m.join("file2")).is_ok();
    say.cmd("mv merged/file merged/file2");
    say.saw(format!(
        "renaming a lower FILE works: {file_rename_ok} (the file is copied up, then renamed in upper)"
    ));
    let mk = m.join("newdir");
    std::fs::create_dir(&mk).map_err(io("create", &mk))?;
    let upper_dir_rename_ok = std::fs::rename(&mk, m.join("newdir2")).is_ok();
    say.cmd("mkdir merged/newdir; mv merged/newdir merged/newdir2");
    say.saw(format!(
        "renaming a directory made in the container works: {upper_dir_rename_ok} (it is only in upper)"
    ));

    say.step("what mv does with EXDEV: copy and delete");
    say.cmd("mv merged/dir merged/moved; echo $?; ls -l upper upper/moved");
    let (mv_ok, mv_out) = crate::scratch::try_tool(
        std::process::Command::new("mv")
            .arg(m.join("dir"))
            .arg(m.join("moved")),
        "mv (from coreutils)",
    )?;
    if !mv_out.is_empty() {
        say.out(mv_out);
    }
    say.out(format!("exit status {}", if mv_ok { 0 } else { 1 }));
    let mv_copied = names(&d.join("upper/moved"));
    let mv_left_whiteout = crate::scratch::seen(&d.join("upper/dir"))?
        .is_some_and(|w| w.kind == "char" && w.rdev == Some((0, 0)));
    say.out(ls_line(&d, "upper/dir")?);
    say.out(ls_line(&d, "upper/moved")?);
    say.saw(format!(
        "mv succeeded: {mv_ok}; upper/moved holds full copies ({}), upper/dir is a whiteout: {mv_left_whiteout}",
        mv_copied.join(", ")
    ));
    say.article(
        "rename(2) of a directory returns EXDEV, so applications must copy and unlink (ovlink's \
         demo used to print \"mv ... Invalid cross-device link\")",
        "rename(2) does return EXDEV with redirect_dir=off, but mv(1) already handles it: it \
         copies and deletes and exits 0. Only programs calling rename(2) themselves see the error.",
    );
    off.umount_told(&say)?;

    say.step("redirect_dir=on (Linux 4.10+)");
    s.mkdirs(&["upper-on", "work-on"])?;
    say.cmd("mkdir upper-on work-on");
    let on = Ovl {
        upper: Some("upper-on".into()),
        work: Some("work-on".into()),
        ..Ovl::simple(&d)
    }
    .with("redirect_dir=on");
    say.cmd(on.shell());
    let (on_errno, on_redirect) = match on.try_mount() {
        Err(e) => {
            say.saw(format!(
                "this kernel refused redirect_dir=on: {}",
                crate::scratch::errno_text(&e.into())
            ));
            (None, None)
        }
        Ok(()) => {
            let m = on.merged();
            let r = std::fs::rename(m.join("dir"), m.join("dir2"));
            say.cmd("python3 -c 'import os; os.rename(\"merged/dir\", \"merged/dir2\")'");
            let errno = match &r {
                Ok(()) => 0,
                Err(e) => e.raw_os_error().unwrap_or(-1),
            };
            say.out(format!(
                "rename(2): {}",
                match &r {
                    Ok(()) => "ok".to_string(),
                    Err(e) => crate::scratch::errno_text(e),
                }
            ));
            say.cmd("getfattr -n trusted.overlay.redirect upper-on/dir2; ls -l upper-on");
            let red = xattr(&d.join("upper-on/dir2"), "trusted.overlay.redirect")?;
            say.out(format!(
                "trusted.overlay.redirect=\"{}\"",
                red.clone().unwrap_or_default()
            ));
            say.out(ls_line(&d, "upper-on/dir")?);
            say.saw(format!(
                "with redirect_dir=on the rename succeeded: upper-on/dir2 is a new directory whose \
                 trusted.overlay.redirect={:?} points back at the lower dir; nothing was copied ({} entries in upper-on/dir2)",
                red,
                names(&d.join("upper-on/dir2")).len()
            ));
            say.article(
                "renaming a lower directory always fails with EXDEV",
                "not with redirect_dir=on (kernel 4.10+): the rename is recorded as a redirect. \
                 Docker does not ask for it, and where a kernel turns it on by default Docker's \
                 overlay2 falls back to its slow naive diff (`Native Overlay Diff: false`), because \
                 a layer tar cannot carry a redirect.",
            );
            on.umount_told(&say)?;
            (Some(errno), red)
        }
    };
    say.ask("Why can overlayfs rename a file from the lower layer but not a directory?");
    say.ask("mv worked. What did it cost, and what would a program calling rename(2) see?");
    say.ask("Why does Docker not simply turn redirect_dir on?");
    s.finish(cfg, &say);
    Ok(RenameResult {
        has_redirect_dir: has_redirect,
        off_errno,
        off_error,
        file_rename_ok,
        upper_dir_rename_ok,
        mv_ok,
        mv_copied,
        mv_left_whiteout,
        on_errno,
        on_redirect,
    })
}
