//! A containerd proxy snapshotter on ovlink's layouts: containerd's
//! `containerd.services.snapshots.v1.Snapshots` gRPC service (tonic + prost, containerd's own
//! `.proto` files compiled at build time with protox: no system `protoc`) on a unix socket.
//!
//! ```text
//! containerd ──gRPC/unix──▶ service (tonic) ──▶ Snapshotter ──▶ Store (redb: kinds, parents,
//!   [proxy_plugins.ovlink]                         │               labels, names, times,
//!                                                  │               key -> ovlink layer id)
//!                                                  └──────────▶ the layout (legacy overlay:
//!                                                               hardlink image layers, one
//!                                                               lowerdir; or overlay2)
//! ```
//!
//! Modules: [`snapshotter`] (the calls, crash recovery), [`store`] (the metadata), [`filter`]
//! (containerd's filter syntax for List), [`service`] (the gRPC glue), [`server`] (socket,
//! signals, draining), [`conn`] (bounded connections, idle ones closed), [`client`] (a blocking
//! client of a running server, `ovlink snapshotter call`), [`error`] (the error type and its
//! gRPC codes), [`proto`] (generated).
//! This crate never mounts what it describes: containerd mounts the returned mounts itself.
#![forbid(unsafe_code)]

pub mod client;
pub mod conn;
pub mod error;
pub mod filter;
pub mod server;
pub mod service;
pub mod snapshotter;
pub mod store;

/// containerd's API types, generated from `proto/` by `build.rs` (nested as the packages are,
/// so the generated `super::` paths resolve).
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod proto {
    /// `containerd.*`
    pub mod containerd {
        /// `containerd.types` (Mount).
        pub mod types {
            tonic::include_proto!("containerd.types");
        }
        /// `containerd.services.*`
        pub mod services {
            /// `containerd.services.snapshots.*`
            pub mod snapshots {
                /// `containerd.services.snapshots.v1`.
                pub mod v1 {
                    tonic::include_proto!("containerd.services.snapshots.v1");
                }
            }
        }
    }
    pub use containerd::services::snapshots::v1 as snapshots;
    pub use containerd::types;
}

pub use error::{Result, SnapError};
pub use server::{serve, ServeOptions};
pub use snapshotter::{Config, Snapshotter};
