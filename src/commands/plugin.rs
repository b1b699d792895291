//! (being written) `ovlink plugin …`.
/// `ovlink plugin …`
#[derive(Debug, clap::Subcommand)]
pub enum PluginCmd {
    /// Serve the graphdriver plugin protocol on a unix socket.
    Serve,
}
pub fn run(_c: PluginCmd) -> anyhow::Result<()> {
    anyhow::bail!("not yet")
}
