//! `ovlink check`: prints the host report of [`ovlink_driver::hostcheck`] for the layout
//! `--driver` names (its driver init is the one of every command), and exits non-zero when a
//! feature that layout needs is missing.

use crate::output;
use ovlink_driver::hostcheck::Status;

pub fn run(ctx: &super::Ctx, json: bool) -> anyhow::Result<()> {
    let layout = ctx.kind;
    let home = ctx.root.join(layout.home_name());
    let r = ovlink_driver::hostcheck::run(&home, layout, || {
        ctx.open().map(drop).map_err(|e| format!("{e:#}"))
    });
    let failed = r.failed();
    if json {
        output::json(&r.lines)?;
    } else {
        println!(
            "checking the {} layout in {}",
            layout.name(),
            home.display()
        );
        // The first column as wide as the longest check name (`container operations`).
        let w = r.lines.iter().map(|l| l.check.len()).max().unwrap_or(0);
        for l in &r.lines {
            let st = match l.status {
                Status::Ok => "ok",
                Status::Fail => "FAIL",
                Status::No => "no",
                Status::Warn => "warn",
            };
            let needs = if l.needed_by.is_empty() {
                "-".to_string()
            } else {
                l.needed_by.join(",")
            };
            println!("{st:<4} {:<w$} {needs:<17} {}", l.check, l.detail);
            if let Some(fix) = &l.fix {
                println!("     {:<w$} {:<17} fix: {fix}", "", "");
            }
        }
        println!("(third column: the layouts that need the feature; -: neither)");
    }
    if failed {
        anyhow::bail!(
            "the {} layout cannot run on this host: see the FAIL lines and their fixes",
            layout.name()
        );
    }
    Ok(())
}
