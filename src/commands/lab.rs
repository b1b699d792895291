//! (being written) `ovlink lab`.
/// `ovlink lab …`
#[derive(Debug, clap::Subcommand)]
pub enum LabCmd {
    /// Run a filesystem out of inodes with image layers.
    Inodes,
}
pub fn run(_c: LabCmd) -> anyhow::Result<()> {
    anyhow::bail!("not yet")
}
