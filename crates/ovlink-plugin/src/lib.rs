//! Docker's graphdriver plugin protocol (v1 plugins, as dockerd 20.10 speaks it), served over a
//! unix socket for any ovlink [`ovlink_driver::Driver`].
//!
//! - [`protocol`]: the JSON shapes on the wire (every field optional, Go's `omitempty` both ways).
//! - [`server`]: binding the socket (0600), the HTTP/1.1 server (hyper on tokio), one handler per
//!   method, blocking driver work on tokio's blocking pool, timeouts and a connection limit,
//!   SIGTERM/SIGINT graceful shutdown that leaves mounts in place.
//! - [`stream`]: the bridges that let layer tars stream both ways without being held in memory
//!   (an async request body read as a blocking `Read`; a blocking `Write` feeding a response body).
//! - [`gate`]: per-layer async queues, so calls waiting for a busy layer hold no thread.
//! - [`journal`]: the ApplyDiff journal that finds layers of interrupted applies at start.
//! - [`setup`]: the plugin name, its socket and Init record, the connection limit the open-file
//!   limit allows (what `plugin serve` settles before serving).
//! - [`client`]: a small blocking client over the same socket (for tests and diagnostics).
//!
//! This crate owns the protocol and the process lifecycle; it never touches layer directories
//! itself — every filesystem change goes through the driver (its only files in the home are
//! the ApplyDiff journal's `.ovlink-apply.*`).
#![forbid(unsafe_code)]

pub mod client;
pub mod error;
pub mod gate;
pub mod journal;
pub mod protocol;
pub mod server;
pub mod setup;
pub mod stream;

pub use error::PluginError;
pub use server::{
    bind_socket, default_init_record, default_socket, DriverFactory, Server, ServerOptions,
};
