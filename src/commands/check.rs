//! `ovlink check`: every host check the driver makes, one line each, with the fix.

use crate::output;
use ovlink_driver::checks;
use serde::Serialize;
use std::path::Path;

#[derive(Serialize)]
struct Line {
    check: &'static str,
    ok: bool,
    detail: String,
}

pub fn run(root: &Path, json: bool) -> anyhow::Result<()> {
    let mut lines = Vec::new();
    let mut push = |check, r: Result<String, ovlink_driver::DriverError>| {
        let (ok, detail) = match r {
            Ok(d) => (true, d),
            Err(e) => (false, ovlink_driver::overlay::error_chain(&e)),
        };
        lines.push(Line { check, ok, detail });
    };
    let v = checks::kernel_version();
    push(
        "kernel version",
        checks::check_kernel().map(|_| format!("{}.{}.{} (3.18 or later needed)", v.0, v.1, v.2)),
    );
    push(
        "overlay support",
        checks::check_overlay_available()
            .map(|_| "'overlay' listed in /proc/filesystems".to_string()),
    );
    // The rest needs the home: initialize the driver (which creates it and test-mounts).
    let driver = super::open_driver(root);
    match &driver {
        Ok(d) => {
            use ovlink_driver::Driver;
            let st: std::collections::BTreeMap<_, _> = d.status().into_iter().collect();
            push(
                "backing filesystem",
                Ok(format!(
                    "{} is on {}",
                    d.home().display(),
                    st.get("Backing Filesystem").cloned().unwrap_or_default()
                )),
            );
            push(
                "d_type",
                Ok(format!(
                    "supported: {}",
                    st.get("Supports d_type").cloned().unwrap_or_default()
                )),
            );
            push(
                "test mount",
                d.check_mount()
                    .map(|_| "mounted and unmounted an overlay inside the home".to_string()),
            );
            let off = d.features().off_options();
            push(
                "overlay features",
                Ok(if off.is_empty() {
                    "no redirect_dir/index/metacopy on by default: upper/ is a plain diff"
                        .to_string()
                } else {
                    format!(
                        "on by default here, turned off at mount: {}",
                        off.join(", ")
                    )
                }),
            );
        }
        Err(e) => lines.push(Line {
            check: "driver init",
            ok: false,
            detail: format!("{e:#}"),
        }),
    }
    let all_ok = lines.iter().all(|l| l.ok);
    if json {
        output::json(&lines)?;
    } else {
        for l in &lines {
            println!(
                "{:<4} {:<20} {}",
                if l.ok { "ok" } else { "FAIL" },
                l.check,
                l.detail
            );
        }
    }
    if !all_ok {
        anyhow::bail!("some checks failed");
    }
    Ok(())
}
