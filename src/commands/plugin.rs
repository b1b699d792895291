//! `ovlink plugin …`: the graphdriver plugin a real dockerd (20.10, `--experimental`) uses as
//! its storage driver. This module only parses flags and picks the driver; the protocol, the
//! socket, its setup and the lifecycle are in the `ovlink-plugin` crate. It never touches a home itself:
//! dockerd names the home in `/GraphDriver.Init`.

use crate::cli::PluginCmd;
use anyhow::Context as _;
use ovlink_driver::InitConfig;
use ovlink_plugin::setup::ServeRequest;
use ovlink_plugin::{DriverFactory, Server};
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Runs `ovlink plugin …` with the layout chosen by the global `--driver`.
pub fn run(ctx: &super::Ctx, c: PluginCmd) -> anyhow::Result<()> {
    let kind = ctx.kind;
    match c {
        PluginCmd::Serve {
            name,
            socket,
            shutdown_timeout,
            header_timeout,
            body_idle_timeout,
            max_connections,
        } => {
            let setup = ovlink_plugin::setup::prepare(&ServeRequest {
                name: name.clone(),
                socket,
                shutdown_timeout: Duration::from_secs(shutdown_timeout),
                header_timeout: Duration::from_secs(header_timeout),
                body_idle_timeout: Duration::from_secs(body_idle_timeout),
                max_connections,
            })?;
            // dockerd sends the home, options and id maps; the sync, reclaim and diff modes
            // are this process's flags.
            let settings = InitConfig {
                owner: Some(ovlink_driver::HomeOwner::Plugin),
                ..ctx.init_config(PathBuf::new())
            };
            let factory: DriverFactory = Arc::new(move |cfg: &InitConfig| {
                ovlink_layouts::open(kind, &cfg.with_settings_of(&settings))
            });
            let socket = setup.socket;
            eprintln!(
                "ovlink plugin: serving the {kind} layout on {} (dockerd: --experimental --storage-driver {name})",
                socket.display()
            );
            if let Some(c) = setup.capped {
                eprintln!("ovlink plugin: {c}");
            }
            Server::with_options(factory, setup.options)
                .run(&socket)
                .with_context(|| format!("plugin server on {}", socket.display()))
        }
        PluginCmd::Call {
            name,
            socket,
            method,
            body,
            body_file,
        } => {
            let socket = socket.unwrap_or_else(|| ovlink_plugin::default_socket(&name));
            let client = ovlink_plugin::client::Client::new(&socket)?;
            let answer = match body_file {
                None => client.call(&method, body.as_bytes()),
                Some(p) if p.as_os_str() == "-" => client.send_reader(&method, std::io::stdin()),
                Some(p) => {
                    let f = std::fs::File::open(&p)
                        .with_context(|| format!("cannot open {}", p.display()))?;
                    client.send_reader(&method, f)
                }
            };
            let (status, out) =
                answer.with_context(|| format!("calling {method} on {}", socket.display()))?;
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(&out).context("writing the answer")?;
            if out.first() == Some(&b'{') {
                stdout.write_all(b"\n").context("writing the answer")?;
            }
            if status != 200 {
                anyhow::bail!("{method} answered HTTP {status}");
            }
            Ok(())
        }
    }
}
