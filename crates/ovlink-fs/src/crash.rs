//! Reproducible crash points for the kill-loop tests.
//!
//! The code calls [`point`] at the steps where a crash is interesting (before and after a
//! rename, between removals, every tar entry, ...). Normally that is one relaxed atomic load.
//! When the environment variable `OVLINK_CRASH_AT` is set, the process kills itself with
//! `SIGKILL` (no destructor, no unwinding, no flush: what a power cut or the OOM killer does
//! to the process) at the chosen hit:
//!
//! - `NAME:N`: at the N-th hit (1-based) of the point called `NAME`;
//! - `*:N`: at the N-th hit of any point (a test can walk N = 1, 2, ... to crash at every
//!   step of an operation in turn);
//! - `NAME:random:SEED[:MAX]` / `*:random:SEED[:MAX]`: at hit N, N drawn uniformly from
//!   `1..=MAX` (default 1000) by `rand_chacha`'s ChaCha8 seeded with `SEED` (the same seed
//!   crashes at the same step of the same work; a process that hits the point fewer times
//!   survives).
//!
//! Just before the kill it writes `ovlink: crash point NAME (hit N): SIGKILL` to stderr.
//! This module owns only its counters; it must never do anything but count and kill, and it
//! never runs unless the variable is set.
//!
//! All of it exists only with the cargo feature `crash-points` (the fault tests' builds:
//! `cargo test` turns it on through the root package's dev-dependency; `cargo build
//! --features crash-points` for a binary a script kills). Without it [`point`] is an empty
//! inline function, [`armed`] is `false` and the variable is ignored: a release build has no
//! way to kill itself.

#[cfg(feature = "crash-points")]
use std::sync::atomic::{AtomicU64, Ordering};
#[cfg(feature = "crash-points")]
use std::sync::OnceLock;

/// The environment variable that arms the crash points.
pub const ENV: &str = "OVLINK_CRASH_AT";

#[cfg(feature = "crash-points")]
/// Default upper bound of `random` hit numbers.
const RANDOM_MAX: u64 = 1000;

#[cfg(feature = "crash-points")]
#[derive(Debug)]
struct Plan {
    /// The point's name; `None` matches every point (`*`).
    name: Option<String>,
    /// The hit (1-based) that kills.
    nth: u64,
    hits: AtomicU64,
}

#[cfg(feature = "crash-points")]
fn plan() -> Option<&'static Plan> {
    static PLAN: OnceLock<Option<Plan>> = OnceLock::new();
    PLAN.get_or_init(|| std::env::var(ENV).ok().and_then(|v| parse(&v)))
        .as_ref()
}

#[cfg(feature = "crash-points")]
/// Parses an `OVLINK_CRASH_AT` value; `None` (crash points off) when it is malformed.
fn parse(v: &str) -> Option<Plan> {
    let mut parts = v.split(':');
    let name = parts.next().filter(|n| !n.is_empty())?;
    let name = (name != "*").then(|| name.to_string());
    let nth = match (parts.next()?, parts.next(), parts.next(), parts.next()) {
        ("random", Some(seed), max, None) => {
            let max = match max {
                Some(m) => m.parse().ok().filter(|&m| m > 0)?,
                None => RANDOM_MAX,
            };
            draw(seed.parse().ok()?, max)
        }
        (n, None, None, None) => n.parse().ok().filter(|&n| n > 0)?,
        _ => return None,
    };
    Some(Plan {
        name,
        nth,
        hits: AtomicU64::new(0),
    })
}

#[cfg(feature = "crash-points")]
/// The hit of `*:random:SEED:MAX`: the first draw of ChaCha8 seeded with `seed`, in
/// `1..=max` (`max` > 0).
fn draw(seed: u64, max: u64) -> u64 {
    use rand_chacha::rand_core::{RngCore, SeedableRng};
    1 + rand_chacha::ChaCha8Rng::seed_from_u64(seed).next_u64() % max
}

/// True when `OVLINK_CRASH_AT` armed the crash points (for callers that want to skip work
/// done only to reach a point).
#[cfg(feature = "crash-points")]
pub fn armed() -> bool {
    plan().is_some()
}

/// A crash point called `name`: kills this process with `SIGKILL` when `OVLINK_CRASH_AT`
/// selects this hit (see the module docs); otherwise does nothing.
#[cfg(feature = "crash-points")]
pub fn point(name: &str) {
    let Some(p) = plan() else { return };
    if p.name.as_deref().is_some_and(|n| n != name) {
        return;
    }
    let hit = p.hits.fetch_add(1, Ordering::SeqCst) + 1;
    if hit == p.nth {
        eprintln!("ovlink: crash point {name} (hit {hit}): SIGKILL");
        let _ =
            rustix::process::kill_process(rustix::process::getpid(), rustix::process::Signal::KILL);
        // SIGKILL cannot be caught; if the kill itself failed, still never return.
        std::process::abort();
    }
}

/// Without the `crash-points` feature: never armed.
#[cfg(not(feature = "crash-points"))]
#[inline(always)]
pub fn armed() -> bool {
    false
}

/// Without the `crash-points` feature: does nothing.
#[cfg(not(feature = "crash-points"))]
#[inline(always)]
pub fn point(_name: &str) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(feature = "crash-points")]
    #[test]
    fn parses() {
        let p = parse("apply.before-rename:3").expect("parse");
        assert_eq!(p.name.as_deref(), Some("apply.before-rename"));
        assert_eq!(p.nth, 3);
        let p = parse("*:random:42").expect("parse");
        assert!(p.name.is_none());
        assert!((1..=RANDOM_MAX).contains(&p.nth));
        let q = parse("*:random:42").expect("parse");
        assert_eq!(q.nth, p.nth, "same seed, same hit");
        let p = parse("x:random:42:5").expect("parse");
        assert!((1..=5).contains(&p.nth));
        for bad in [
            "",
            "x",
            "x:0",
            "x:y",
            ":1",
            "x:random",
            "x:random:y",
            "x:1:2",
            "x:random:1:0",
        ] {
            assert!(parse(bad).is_none(), "{bad:?} should not parse");
        }
    }

    #[cfg(feature = "crash-points")]
    #[test]
    fn random_hits_cover_the_range() {
        let xs: Vec<u64> = (0..64).map(|seed| draw(seed, 8)).collect();
        for hit in 1..=8 {
            assert!(
                xs.contains(&hit),
                "hit {hit} never drawn in 64 seeds: {xs:?}"
            );
        }
        assert!(xs.iter().all(|h| (1..=8).contains(h)));
        assert_eq!(draw(5, 1), 1);
    }

    #[test]
    fn unarmed_point_is_a_no_op() {
        // The test process does not set OVLINK_CRASH_AT.
        if std::env::var_os(ENV).is_none() {
            point("anything");
            assert!(!armed());
        }
    }
}
