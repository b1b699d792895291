//! `ovlink lab xfs`: the articles' advice "check `xfs_info | grep ftype`, reformat with
//! `-n ftype=1`" on today's kernels. An xfs V4 filesystem with `ftype=0` (no d_type) is what
//! the advice is about; current kernels are built without V4 support and refuse to mount it
//! at all, and today's `mkfs.xfs` makes V5 filesystems, where ftype=1 is implied. The lab
//! makes both in loop files (xfsprogs must be installed: it fails loudly otherwise) and runs
//! ovlink's d_type check and an overlay mount on the V5 one.

use crate::error::{io, Result};
use crate::scratch::{Ovl, Scratch};
use crate::{LabConfig, Narrator, Say};
use serde::Serialize;
use std::process::Command;

/// What `lab xfs` observed.
#[derive(Debug, Clone, Serialize)]
pub struct XfsResult {
    /// `mkfs.xfs -m crc=0 -n ftype=0` worked (xfsprogs can still make V4).
    pub v4_made: bool,
    /// What mkfs said when it could not.
    pub v4_mkfs_message: Option<String>,
    /// Mounting the V4 filesystem: `None` when it mounted, else mount's message.
    pub v4_mount_error: Option<String>,
    /// The kernel log line about it, when readable.
    pub v4_kernel_log: Option<String>,
    /// `mkfs.xfs -n ftype=0` with V5 (crc=1): refused by mkfs.
    pub v5_ftype0_refused: bool,
    /// xfs_info's ftype on the default (V5) filesystem.
    pub v5_ftype: Option<String>,
    /// ovlink's d_type check on it.
    pub v5_dtype: bool,
    /// An overlay mount with upper and work on it worked.
    pub overlay_on_v5: bool,
}

fn kernel_log_xfs() -> Option<String> {
    let out = Command::new("dmesg").output().ok()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .rfind(|l| l.contains("XFS") && (l.contains("V4") || l.contains("deprecated")))
        .map(|l| l.trim().to_string())
}

/// Runs `lab xfs`.
pub fn run(cfg: &LabConfig, n: &dyn Narrator) -> Result<XfsResult> {
    crate::scratch::require_root("lab xfs")?;
    let say = Say(n);
    let s = Scratch::new(cfg, "lab-xfs")?;
    let d = s.path().to_path_buf();
    say.title("ovlink lab xfs: d_type (ftype) on xfs, as today's kernels and mkfs see it");
    say.cmd(format!("cd {}", d.display()));

    say.step("an old-style xfs: V4 (crc=0) with ftype=0");
    say.cmd("truncate -s 512M v4.img; mkfs.xfs -q -m crc=0 -n ftype=0 v4.img; mkdir v4; mount -o loop v4.img v4");
    let img = d.join("v4.img");
    let f = std::fs::File::create(&img).map_err(io("create", &img))?;
    f.set_len(512 << 20).map_err(io("size", &img))?;
    drop(f);
    std::fs::create_dir(d.join("v4")).map_err(io("create", &d.join("v4")))?;
    let (v4_made, msg) = crate::scratch::try_tool(
        Command::new("mkfs.xfs")
            .args(["-q", "-f", "-m", "crc=0", "-n", "ftype=0"])
            .arg(&img),
        "mkfs.xfs (from xfsprogs)",
    )?;
    let v4_mkfs_message = (!v4_made).then(|| msg.clone());
    if !msg.is_empty() {
        say.out(msg);
    }
    let (mut v4_mount_error, mut v4_kernel_log) = (None, None);
    if v4_made {
        let (ok, out) = crate::scratch::try_tool(
            Command::new("mount")
                .args(["-o", "loop"])
                .arg(&img)
                .arg(d.join("v4")),
            "mount",
        )?;
        if ok {
            say.saw(
                "this kernel mounted the V4 filesystem (it was built with CONFIG_XFS_SUPPORT_V4)",
            );
        } else {
            say.out(out.clone());
            v4_mount_error = Some(out);
            v4_kernel_log = kernel_log_xfs();
            if let Some(l) = &v4_kernel_log {
                say.cmd("dmesg | grep XFS | tail -1");
                say.out(l.clone());
            }
            say.saw("the kernel refuses to mount a V4 xfs at all: there is no ftype=0 filesystem left to run overlay on");
        }
    }
    say.article(
        "xfs made with ftype=0 runs Docker's overlay drivers badly; check xfs_info and reformat with -n ftype=1",
        if v4_mount_error.is_some() {
            "such a filesystem is V4 (crc=0), and this kernel, built without CONFIG_XFS_SUPPORT_V4 \
             (V4 is deprecated upstream), does not mount it at all; today's mkfs.xfs makes V5, \
             where ftype=1 is always on. The check still matters on old hosts (early CentOS 7 \
             installs made ftype=0)"
        } else {
            "this kernel still mounts V4 xfs; ovlink's init refuses it for overlay (no d_type)"
        },
    );

    say.step("today's default: V5, where ftype=1 is implied");
    say.cmd("mkfs.xfs -q -f -n ftype=0 v5.img   # V5 with ftype=0?");
    let img5 = d.join("v5.img");
    let f = std::fs::File::create(&img5).map_err(io("create", &img5))?;
    f.set_len(512 << 20).map_err(io("size", &img5))?;
    drop(f);
    let (ok0, msg0) = crate::scratch::try_tool(
        Command::new("mkfs.xfs")
            .args(["-q", "-f", "-n", "ftype=0"])
            .arg(&img5),
        "mkfs.xfs (from xfsprogs)",
    )?;
    let v5_ftype0_refused = !ok0;
    if !msg0.is_empty() {
        say.out(msg0.lines().next().unwrap_or_default().to_string());
    }
    say.saw(format!(
        "mkfs.xfs {} a V5 filesystem without ftype",
        if v5_ftype0_refused {
            "refuses to make"
        } else {
            "made"
        }
    ));
    std::fs::remove_file(&img5).map_err(io("remove", &img5))?;
    say.cmd("mkfs.xfs -q v5.img; mkdir v5; mount -o loop v5.img v5; xfs_info v5 | grep ftype");
    let v5 = s.loop_fs("v5", 512, "mkfs.xfs", &["-q", "-f"])?;
    let info = crate::scratch::run_tool(Command::new("xfs_info").arg(&v5), "xfs_info")?;
    let info = String::from_utf8_lossy(&info.stdout).into_owned();
    let v5_ftype = info
        .split_whitespace()
        .find(|w| w.starts_with("ftype="))
        .map(str::to_string);
    if let Some(l) = info.lines().find(|l| l.contains("ftype")) {
        say.out(l.trim().to_string());
    }
    let v5_dtype = ovlink_driver::checks::supports_dtype(&v5)?;
    say.saw(format!(
        "xfs_info says {}; ovlink's d_type check on it: {v5_dtype}",
        v5_ftype.clone().unwrap_or_else(|| "no ftype".into())
    ));
    for dd in ["lower", "upper", "work", "merged"] {
        std::fs::create_dir(v5.join(dd)).map_err(io("create", &v5.join(dd)))?;
    }
    let ovl = Ovl::simple(&v5);
    say.cmd(format!("cd v5; {}", ovl.shell()));
    let overlay_on_v5 = ovl.try_mount().is_ok();
    if overlay_on_v5 {
        ovl.umount_told(&say)?;
    }
    say.saw(format!("an overlay on the V5 xfs mounts: {overlay_on_v5}"));
    say.cmd("cd ..; umount v5");
    say.ask("What is d_type, and why does overlayfs need it to find whiteouts quickly?");
    say.ask("Why is the ftype check in the articles mostly history on a current distribution?");
    s.finish(cfg, &say);
    Ok(XfsResult {
        v4_made,
        v4_mkfs_message,
        v4_mount_error,
        v4_kernel_log,
        v5_ftype0_refused,
        v5_ftype,
        v5_dtype,
        overlay_on_v5,
    })
}
