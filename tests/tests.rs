//! ovlink's integration tests: one test binary (ripgrep's shape), one module per area.
//! They run as root on real files and real overlay mounts; every test works in its own
//! temporary root, and [`util::TestRoot`] unmounts anything left under it on drop.
#![allow(missing_docs)] // test helpers, not an API

mod util;

mod conformance;
mod container;
