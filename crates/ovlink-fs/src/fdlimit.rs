//! The process's file-descriptor budget for a server (the plugin's and the snapshotter's):
//! how many connections fit in the open-file limit beside the layer work, and a counter that
//! turns a flood of "out of descriptors" accept errors into a log line a minute.
//!
//! It only raises the soft limit to the hard one and computes; it never refuses or closes
//! anything itself (the servers hold the permits).

use rustix::process::{getrlimit, setrlimit, Resource};
use std::time::{Duration, Instant};

/// The open-file limit allows fewer connections than were asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capped {
    /// Connections that will be served at once.
    pub served: usize,
    /// The open-file limit.
    pub fd_limit: u64,
    /// Connections asked for.
    pub wanted: usize,
}

impl std::fmt::Display for Capped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "serving at most {} connections (open-file limit {}; --max-connections {} needs \
             LimitNOFILE={})",
            self.served,
            self.fd_limit,
            self.wanted,
            self.wanted.saturating_mul(2).saturating_add(64)
        )
    }
}

/// Raises the open-file soft limit to the hard one and caps `wanted` so that every
/// connection and the server's own work fit in it (half the fds for connections, 64 spare).
pub fn connection_limit(wanted: usize) -> (usize, Option<Capped>) {
    let mut lim = getrlimit(Resource::Nofile);
    if lim.current < lim.maximum {
        lim.current = lim.maximum;
        // Not fatal: the limit below is computed from what is in force.
        let _ = setrlimit(Resource::Nofile, lim);
        lim = getrlimit(Resource::Nofile);
    }
    let fds = lim.current.unwrap_or(u64::MAX);
    let room = usize::try_from(fds.saturating_sub(64) / 2).unwrap_or(usize::MAX);
    let served = wanted.clamp(1, room.max(8));
    let capped = (served < wanted).then_some(Capped {
        served,
        fd_limit: fds,
        wanted,
    });
    (served, capped)
}

/// Counts events and says when one is worth a log line: the first, then at most one a
/// minute, with the count since the last line.
#[derive(Debug, Default)]
pub struct RateLimited {
    last: Option<Instant>,
    count: u64,
}

impl RateLimited {
    /// Counts one; returns the count to report when a line is due.
    pub fn tick(&mut self) -> Option<u64> {
        self.count += 1;
        let due = self
            .last
            .is_none_or(|t| t.elapsed() >= Duration::from_secs(60));
        if due {
            self.last = Some(Instant::now());
            let n = self.count;
            self.count = 0;
            Some(n)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_is_one_line_a_minute_with_its_count() {
        let mut r = RateLimited::default();
        assert_eq!(r.tick(), Some(1));
        for _ in 0..5 {
            assert_eq!(r.tick(), None);
        }
        r.last = Some(Instant::now() - Duration::from_secs(61));
        assert_eq!(r.tick(), Some(6));
    }

    #[test]
    fn connections_fit_in_half_the_descriptors() {
        let (served, capped) = connection_limit(usize::MAX);
        assert!(served >= 8);
        assert!(capped.is_some());
        let (served, capped) = connection_limit(3);
        assert_eq!((served, capped), (3, None));
    }
}
