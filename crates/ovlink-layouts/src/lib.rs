//! The one place that opens a layout by name: every command, the plugin, the snapshotter, the
//! benchmarks and the labs call [`open`] with the [`Layout`] they were given, so adding a layout
//! means adding one arm here.
//!
//! This crate holds no storage logic of its own; it never reads the environment or a
//! command line (the caller passes a typed [`InitConfig`]).
#![forbid(unsafe_code)]

pub use ovlink_driver::{Driver, DriverError, InitConfig, Layout, Result};
pub use ovlink_overlay::OverlayDriver;
pub use ovlink_overlay2::Overlay2Driver;

/// Initializes the layout `layout` on `cfg.home` (see each layout's `init`: checks first,
/// nothing created when one refuses, then crash recovery).
pub fn open(layout: Layout, cfg: &InitConfig) -> Result<Box<dyn Driver>> {
    Ok(match layout {
        Layout::Overlay => Box::new(OverlayDriver::init(cfg)?),
        Layout::Overlay2 => Box::new(Overlay2Driver::init(cfg)?),
    })
}

/// [`open`] on `<root>/<layout's home name>` (`overlay`, `overlay2`), the rest of `cfg` as
/// given: where a root holds each layout's home.
pub fn open_in(root: &std::path::Path, layout: Layout, cfg: InitConfig) -> Result<Box<dyn Driver>> {
    open(
        layout,
        &InitConfig {
            home: root.join(layout.home_name()),
            ..cfg
        },
    )
}
