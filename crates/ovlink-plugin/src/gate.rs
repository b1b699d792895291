//! Per-layer async queues: calls on the same layer wait for each other here, as futures,
//! before they take a thread of the blocking pool. A stalled ApplyDiff (its client stopped
//! sending) holds its layer's gate and one blocking thread; the hundreds of Gets queued behind
//! it hold neither, so the pool stays free for everything else.
//!
//! A gate exists while someone holds or waits for it; the map never grows with the number of
//! layers ever seen. This module only orders calls; it knows nothing about the driver.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

/// The gates of all layers.
#[derive(Debug, Default)]
pub struct Gates {
    map: Mutex<HashMap<String, Arc<AsyncMutex<()>>>>,
}

/// Layer `id`'s gate, held; released (and forgotten when nobody else waits) on drop.
#[derive(Debug)]
pub struct GateGuard {
    gates: Arc<Gates>,
    id: String,
    guard: Option<OwnedMutexGuard<()>>,
}

impl Gates {
    /// No gates yet.
    pub fn new() -> Arc<Self> {
        Arc::new(Gates::default())
    }

    /// Waits (asynchronously, in arrival order) for layer `id`'s gate.
    pub async fn enter(self: &Arc<Self>, id: &str) -> GateGuard {
        let m = {
            let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
            map.entry(id.to_string()).or_default().clone()
        };
        let guard = m.lock_owned().await;
        GateGuard {
            gates: self.clone(),
            id: id.to_string(),
            guard: Some(guard),
        }
    }

    /// How many layers have a gate now (held or waited for).
    pub fn len(&self) -> usize {
        self.map.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// True when no layer has a gate.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for GateGuard {
    fn drop(&mut self) {
        self.guard.take();
        let mut map = self.gates.map.lock().unwrap_or_else(|p| p.into_inner());
        // Only the map holds it: nobody holds or waits (a waiter holds an Arc clone).
        if map.get(&self.id).is_some_and(|m| Arc::strong_count(m) == 1) {
            map.remove(&self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn one_layer_waits_other_layers_do_not_and_the_map_empties() {
        let g = Gates::new();
        let a = g.enter("a").await;
        let g2 = g.clone();
        let waiter = tokio::spawn(async move {
            let _a = g2.enter("a").await;
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiter.is_finished(), "a second call on a waits");
        let _b = g.enter("b").await; // another layer does not wait
        drop(a);
        waiter.await.ok();
        drop(_b);
        assert!(g.is_empty(), "gates are forgotten when unused");
    }
}
