//! `ovlink plugin …`: the graphdriver plugin a real dockerd (20.10, `--experimental`) uses as
//! its storage driver. This module only parses flags and picks the driver; the protocol, the
//! socket and the lifecycle are in the `ovlink-plugin` crate. It never touches a home itself:
//! dockerd names the home in `/GraphDriver.Init`.

use crate::cli::{DriverKind, PluginCmd};
use anyhow::Context as _;
use ovlink_driver::InitConfig;
use ovlink_plugin::{DriverFactory, Server, ServerOptions};
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
            check_name(&name)?;
            let socket = socket.unwrap_or_else(|| ovlink_plugin::default_socket(&name));
            // dockerd sends the home, options and id maps; the sync, reclaim and diff modes
            // are this process's flags.
            let settings = ctx.init_config(PathBuf::new());
            let with_settings = move |cfg: &InitConfig| InitConfig {
                home: cfg.home.clone(),
                options: cfg.options.clone(),
                uid_maps: cfg.uid_maps.clone(),
                gid_maps: cfg.gid_maps.clone(),
                symlinks: cfg.symlinks,
                ..settings.clone()
            };
            let layout = ctx.layout();
            let factory: DriverFactory =
                Arc::new(move |cfg: &InitConfig| ovlink_layouts::open(layout, &with_settings(cfg)));
            eprintln!(
                "ovlink plugin: serving the {} layout on {} (dockerd: --experimental --storage-driver {name})",
                match kind {
                    DriverKind::Overlay => "overlay",
                    DriverKind::Overlay2 => "overlay2",
                },
                socket.display()
            );
            let max_connections = connection_limit(max_connections);
            let opts = ServerOptions {
                shutdown_timeout: Duration::from_secs(shutdown_timeout),
                init_record: Some(ovlink_plugin::default_init_record(&socket)),
                header_timeout: Duration::from_secs(header_timeout.max(1)),
                body_idle_timeout: Duration::from_secs(body_idle_timeout.max(1)),
                max_connections,
            };
            Server::with_options(factory, opts)
                .run(&socket)
                .with_context(|| format!("plugin server on {}", socket.display()))
        }
        PluginCmd::Call {
            name,
            socket,
            method,
            body,
        } => {
            let socket = socket.unwrap_or_else(|| ovlink_plugin::default_socket(&name));
            let client = ovlink_plugin::client::Client::new(&socket)?;
            let (status, out) = client
                .call(&method, body.as_bytes())
                .with_context(|| format!("calling {method} on {}", socket.display()))?;
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

/// Raises the open-file soft limit to the hard one and returns `wanted` capped so that every
/// connection and the driver's own work fit in it (half the fds for connections, 64 spare).
fn connection_limit(wanted: usize) -> usize {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut lim = getrlimit(Resource::Nofile);
    if lim.current < lim.maximum {
        lim.current = lim.maximum;
        let _ = setrlimit(Resource::Nofile, lim);
        lim = getrlimit(Resource::Nofile);
    }
    let fds = lim.current.unwrap_or(u64::MAX);
    let room = usize::try_from(fds.saturating_sub(64) / 2).unwrap_or(usize::MAX);
    let n = wanted.clamp(1, room.max(8));
    if n < wanted {
        eprintln!(
            "ovlink plugin: serving at most {n} connections (open-file limit {fds}; \
             --max-connections {wanted} needs LimitNOFILE={})",
            wanted * 2 + 64
        );
    }
    n
}

/// A plugin name is one path component (it becomes a socket name and dockerd's home dir).
fn check_name(name: &str) -> anyhow::Result<()> {
    let ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && !name.starts_with('.');
    anyhow::ensure!(
        ok,
        "invalid plugin name {name:?}: use letters, digits, '-', '_' and '.'"
    );
    Ok(())
}
