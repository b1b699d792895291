//! (being written) `ovlink report`.
/// Arguments of `ovlink report`.
#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}
pub fn run(
    _root: &std::path::Path,
    _k: crate::cli::DriverKind,
    _a: ReportArgs,
) -> anyhow::Result<()> {
    anyhow::bail!("not yet")
}
