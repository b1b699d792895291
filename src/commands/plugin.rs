//! `ovlink plugin …`: the graphdriver plugin a real dockerd (20.10, `--experimental`) uses as
//! its storage driver. This module only parses flags and picks the driver; the protocol, the
//! socket and the lifecycle are in the `ovlink-plugin` crate. It never touches a home itself:
//! dockerd names the home in `/GraphDriver.Init`.

use crate::cli::DriverKind;
use anyhow::Context as _;
use ovlink_driver::{Driver, InitConfig, OverlayDriver};
use ovlink_plugin::{DriverFactory, Server, ServerOptions};
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// `ovlink plugin …`
#[derive(Debug, clap::Subcommand)]
pub enum PluginCmd {
    /// Serve Docker's graphdriver plugin protocol on a unix socket (as root, on the host).
    /// The layout is the global --driver (overlay or overlay2). Start dockerd with
    /// `--experimental --storage-driver NAME`; its driver home will be `<data-root>/NAME`.
    Serve {
        /// Plugin name: dockerd finds it as /run/docker/plugins/NAME.sock.
        #[arg(long, default_value = "ovlink")]
        name: String,
        /// Socket path (default /run/docker/plugins/NAME.sock); created 0600. dockerd's Init is
        /// recorded beside it (NAME.init.json) so that a restarted plugin serves at once.
        #[arg(long)]
        socket: Option<PathBuf>,
        /// Seconds to wait for in-flight requests after SIGTERM before unmounting anyway.
        #[arg(long, default_value_t = 60)]
        shutdown_timeout: u64,
    },
    /// Send one protocol call to a running plugin and print the answer (for diagnostics),
    /// e.g. `ovlink plugin call GraphDriver.Status`.
    Call {
        /// Plugin name (socket /run/docker/plugins/NAME.sock).
        #[arg(long, default_value = "ovlink")]
        name: String,
        /// Socket path, instead of the one derived from --name.
        #[arg(long)]
        socket: Option<PathBuf>,
        /// Method, e.g. `Plugin.Activate` or `GraphDriver.Get`.
        method: String,
        /// JSON request body.
        #[arg(default_value = "{}")]
        body: String,
    },
}

/// Runs `ovlink plugin …` with the layout chosen by the global `--driver`.
pub fn run(kind: DriverKind, c: PluginCmd) -> anyhow::Result<()> {
    match c {
        PluginCmd::Serve {
            name,
            socket,
            shutdown_timeout,
        } => {
            check_name(&name)?;
            let socket = socket.unwrap_or_else(|| ovlink_plugin::default_socket(&name));
            let factory: DriverFactory = match kind {
                DriverKind::Overlay => Arc::new(|cfg: &InitConfig| {
                    Ok(Box::new(OverlayDriver::init(cfg)?) as Box<dyn Driver>)
                }),
                DriverKind::Overlay2 => Arc::new(|cfg: &InitConfig| {
                    Ok(Box::new(ovlink_overlay2::Overlay2Driver::init(cfg)?) as Box<dyn Driver>)
                }),
            };
            eprintln!(
                "ovlink plugin: serving the {} layout on {} (dockerd: --experimental --storage-driver {name})",
                match kind {
                    DriverKind::Overlay => "overlay",
                    DriverKind::Overlay2 => "overlay2",
                },
                socket.display()
            );
            let opts = ServerOptions {
                shutdown_timeout: Duration::from_secs(shutdown_timeout),
                init_record: Some(ovlink_plugin::default_init_record(&socket)),
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
