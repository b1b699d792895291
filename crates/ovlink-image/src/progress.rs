//! Progress reporting for imports: the [`Progress`] trait (all methods default to no-ops) and
//! [`NoProgress`]. This module only defines the callbacks; it must never print or depend on
//! a terminal library (the CLI adapts it to indicatif).

/// Callbacks an import makes while it works. Calls come from the importing thread, in order:
/// `layer_started`, any number of `bytes`, `layer_done`, for each layer bottom-first.
pub trait Progress {
    /// Layer `index` (0-based, of `total`) with layer id `id` starts; `compressed_size` is the
    /// size of its archive member (what the `bytes` calls add up to).
    fn layer_started(&self, index: usize, total: usize, id: &str, compressed_size: u64) {
        let _ = (index, total, id, compressed_size);
    }

    /// `n` more bytes of the current layer's archive member were read.
    fn bytes(&self, n: u64) {
        let _ = n;
    }

    /// Layer `index` is done; `reused` when it existed already and was not read.
    fn layer_done(&self, index: usize, reused: bool) {
        let _ = (index, reused);
    }
}

/// A [`Progress`] that reports nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl Progress for NoProgress {}
