//! ovlink's integration tests: one test binary (ripgrep's shape), one module per area.
//! They run as root on real files and real overlay mounts; every test works in its own
//! temporary root, and [`util::TestRoot`] unmounts anything left under it on drop.
#![allow(missing_docs, clippy::unwrap_used, clippy::new_without_default)] // test code

mod util;

mod bench;
mod cli;
mod conformance;
mod container;
mod demo;
mod diff;
mod faults;
mod hardening;
mod hardening2;
mod ids_mounts;
mod init;
mod lab;
mod layouts;
mod oldkernel;
mod overlay2;
mod plugin;
mod report;
mod roundtrip;
mod scenario;
mod stress;
