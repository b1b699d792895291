//! (being written) The legacy overlay layout.
use crate::*;
/// The legacy overlay driver.
pub struct OverlayDriver {
    home: PathBuf,
}
impl OverlayDriver {
    /// Initializes the driver on `cfg.home`.
    pub fn init(cfg: &InitConfig) -> Result<Self> {
        Ok(OverlayDriver { home: cfg.home.clone() })
    }
}
