//! `ovlink container …`: Docker's pair of layers on an image's top layer ([`ovlink_container`]
//! makes and removes them; [`ovlink_image::commit`] commits one); this module prints.

use super::Ctx;
use crate::cli::ContainerCmd;
use crate::output;

pub fn run(ctx: &Ctx, cmd: ContainerCmd) -> anyhow::Result<()> {
    let (root, kind) = (ctx.root.as_path(), ctx.kind);
    let store = match cmd {
        // A read command: works on a read-only root and creates nothing.
        ContainerCmd::Ls(_) => ovlink_image::Store::open_read_only(root),
        _ => ovlink_image::Store::open(root)?,
    };
    match cmd {
        ContainerCmd::Create { name, image } => {
            let img = store.image_in(&image, kind.name())?;
            let d = ctx.open()?;
            let c = ovlink_container::create(d.as_ref(), &store, &img, &name)?;
            println!("{}", c.layer_id);
            Ok(())
        }
        ContainerCmd::Ls(j) => {
            let cs = store.containers()?;
            if j.json {
                return output::json(&cs);
            }
            let rows = cs
                .iter()
                .map(|c| vec![c.name.clone(), c.image.clone(), c.layer_id.clone()])
                .collect::<Vec<_>>();
            output::table(&["NAME", "IMAGE", "LAYER ID"], &rows)
        }
        ContainerCmd::Commit { name, image } => {
            let d = ctx.open()?;
            let r = ovlink_image::commit(d.as_ref(), &store, &name, &image)?;
            println!("{}", r.image_id);
            eprintln!(
                "committed {name} as {} (new layer {}, {} bytes of files)",
                r.name, r.layer_id, r.size
            );
            Ok(())
        }
        ContainerCmd::Rm { name } => {
            let d = ctx.open()?;
            ovlink_container::remove(d.as_ref(), &store, &name)?;
            Ok(())
        }
    }
}
