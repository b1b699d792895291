//! `ovlink lab workdir`: what the workdir is for and why it must be on the upper's
//! filesystem. The kernel prepares every copy-up and every whiteout in `work/work/` and then
//! renames it into the upper dir; a rename cannot cross filesystems, so a workdir on another
//! filesystem (here a tmpfs) is refused at mount time, as is a workdir inside the upper dir.

use crate::error::Result;
use crate::scratch::{names, Ovl, Scratch};
use crate::{LabConfig, Narrator, Say};
use serde::Serialize;

/// What `lab workdir` observed.
#[derive(Debug, Clone, Serialize)]
pub struct WorkdirResult {
    /// Entries of work/ while mounted (the kernel's `work`, `index` on some kernels).
    pub work_entries: Vec<String>,
    /// Entries of work/work after a copy-up and a delete (empty once they are done).
    pub work_work_after: Vec<String>,
    /// mount(2) with the workdir on another filesystem: the errno (`None`: it mounted).
    pub other_fs_errno: Option<i32>,
    /// Its text.
    pub other_fs_error: String,
    /// The kernel log line explaining it, when readable.
    pub kernel_log: Option<String>,
    /// mount(2) with the workdir inside the upper dir: the errno.
    pub nested_errno: Option<i32>,
    /// Its text.
    pub nested_error: String,
}

fn kernel_log_line() -> Option<String> {
    let out = std::process::Command::new("dmesg").output().ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .rfind(|l| l.contains("overlayfs") && l.contains("workdir"))
        .map(|l| l.trim().to_string())
}

/// Runs `lab workdir`.
pub fn run(cfg: &LabConfig, n: &dyn Narrator) -> Result<WorkdirResult> {
    crate::scratch::require_root("lab workdir")?;
    let say = Say(n);
    let s = Scratch::new(cfg, "lab-workdir")?;
    let d = s.path().to_path_buf();
    say.title("ovlink lab workdir: the kernel's scratch space, on the upper's filesystem");
    say.cmd(format!("cd {}", d.display()));
    say.cmd("mkdir lower upper work merged; echo data > lower/f; echo data > lower/g");
    s.mkdirs(&["lower", "upper", "work", "merged"])?;
    s.write("lower/f", b"data\n")?;
    s.write("lower/g", b"data\n")?;
    let ovl = Ovl::simple(&d);
    say.cmd(ovl.shell());
    ovl.mount()?;
    say.cmd("ls -la work");
    let work_entries = names(&d.join("work"));
    say.out(work_entries.join("  "));
    say.saw(format!(
        "the kernel made {} in work/ at mount time",
        work_entries.join(", ")
    ));
    say.cmd("echo more >> merged/f; rm merged/g; ls -la work/work");
    {
        use std::io::Write;
        let p = ovl.merged().join("f");
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&p)
            .map_err(crate::error::io("open", &p))?;
        f.write_all(b"more\n")
            .map_err(crate::error::io("write", &p))?;
        let g = ovl.merged().join("g");
        std::fs::remove_file(&g).map_err(crate::error::io("remove", &g))?;
    }
    let work_work_after = names(&d.join("work/work"));
    say.out(work_work_after.join("  "));
    say.text(
        "A copy-up is built in work/work/ (a temporary file with the data, owner, mode and \
         xattrs) and then renamed into upper/ in one step, so a crash never leaves half a file \
         in the upper dir; a whiteout is made there too and renamed over the name \
         (RENAME_WHITEOUT). Both are rename(2) calls from work/ to upper/, which is why the \
         kernel insists on one filesystem.",
    );
    ovl.umount_told(&say)?;

    say.step("the workdir on another filesystem");
    say.cmd("mkdir otherfs; mount -t tmpfs tmpfs otherfs; mkdir otherfs/work");
    let other = s.tmpfs("otherfs")?;
    std::fs::create_dir(other.join("work")).map_err(crate::error::io("create", &other))?;
    let bad = Ovl {
        work: Some("otherfs/work".into()),
        ..Ovl::simple(&d)
    };
    say.cmd(bad.shell());
    let (other_fs_errno, other_fs_error) = bad.refused()?;
    say.out(format!("mount: {other_fs_error}"));
    let kernel_log = kernel_log_line();
    say.cmd("dmesg | grep overlayfs | tail -1");
    if let Some(l) = &kernel_log {
        say.out(l.clone());
    }
    say.saw(format!(
        "the kernel refused the mount with {other_fs_error}{}",
        kernel_log
            .as_deref()
            .map(|l| format!("; its log says why: {l}"))
            .unwrap_or_default()
    ));

    say.step("the workdir inside the upper dir");
    s.mkdirs(&["upper/work"])?;
    say.cmd("mkdir upper/work");
    let nested = Ovl {
        work: Some("upper/work".into()),
        ..Ovl::simple(&d)
    };
    say.cmd(nested.shell());
    let (nested_errno, nested_error) = nested.refused()?;
    say.out(format!("mount: {nested_error}"));
    say.saw(format!(
        "refused too ({nested_error}): the workdir must be an empty directory on the same filesystem as the \
         upper dir, but not inside it"
    ));
    say.cmd("umount otherfs");
    say.article(
        "workdir: a working directory the kernel uses (it must be on the same filesystem as upper)",
        "true, and enforced: the mount fails with EINVAL; the reason is only in the kernel log",
    );
    say.ask("Which operations need the workdir, and why must they be atomic?");
    say.ask("Why does a rename between two filesystems not work, even as root?");
    say.ask("Where are Docker's workdirs, and why is that always the same filesystem?");
    s.finish(cfg, &say);
    Ok(WorkdirResult {
        work_entries,
        work_work_after,
        other_fs_errno,
        other_fs_error,
        kernel_log,
        nested_errno,
        nested_error,
    })
}
