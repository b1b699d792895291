//! (being written)
pub fn run(
    _root: &std::path::Path,
    _k: crate::cli::DriverKind,
    _c: crate::cli::ImageCmd,
) -> anyhow::Result<()> {
    anyhow::bail!("not yet")
}
