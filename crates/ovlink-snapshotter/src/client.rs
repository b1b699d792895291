//! A blocking client of a running snapshotter's socket (`ovlink snapshotter call`): what `ctr
//! snapshots` asks of containerd, asked of the snapshotter directly, for diagnostics, for
//! scripts and for the power-loss test's guest, where there is no containerd.
//!
//! It only sends calls and returns their answers; it never opens the store or a layer.

use crate::proto::snapshots as pb;
use crate::proto::types;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Why a call could not be made or was refused.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No connection to the socket.
    #[error("cannot connect to the snapshotter on {}", socket.display())]
    Connect {
        /// The socket.
        socket: PathBuf,
        /// The cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The server answered with an error status.
    #[error("{call}: {:?}: {}", status.code(), status.message())]
    Status {
        /// The call.
        call: &'static str,
        /// The answer.
        status: tonic::Status,
    },
}

/// One mount of a snapshot, as containerd would mount it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MountSpec {
    /// `bind` or `overlay`.
    pub kind: String,
    /// The source.
    pub source: String,
    /// The options.
    pub options: Vec<String>,
}

/// One snapshot as List and Stat describe it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SnapshotInfo {
    /// Its key.
    pub name: String,
    /// Its parent's key (empty: none).
    pub parent: String,
    /// `view`, `active` or `committed`.
    pub kind: &'static str,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
}

/// A connection to one snapshotter socket.
pub struct Client {
    rt: tokio::runtime::Runtime,
    c: pb::snapshots_client::SnapshotsClient<tonic::transport::Channel>,
}

fn mounts(v: Vec<types::Mount>) -> Vec<MountSpec> {
    v.into_iter()
        .map(|m| MountSpec {
            kind: m.r#type,
            source: m.source,
            options: m.options,
        })
        .collect()
}

fn info(i: pb::Info) -> SnapshotInfo {
    SnapshotInfo {
        kind: match pb::Kind::try_from(i.kind) {
            Ok(pb::Kind::View) => "view",
            Ok(pb::Kind::Active) => "active",
            Ok(pb::Kind::Committed) => "committed",
            _ => "unknown",
        },
        name: i.name,
        parent: i.parent,
        labels: i.labels.into_iter().collect(),
    }
}

const NAME: &str = "ovlink";

impl Client {
    /// Connects to the server on `socket`.
    pub fn connect(socket: &Path) -> Result<Client, ClientError> {
        let err = |e: Box<dyn std::error::Error + Send + Sync>| ClientError::Connect {
            socket: socket.to_path_buf(),
            source: e,
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| err(e.into()))?;
        let path = socket.to_path_buf();
        let ch = rt
            .block_on(
                tonic::transport::Endpoint::from_static("http://ovlink.invalid")
                    .connect_with_connector(tower::service_fn(move |_| {
                        let path = path.clone();
                        async move {
                            Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                                tokio::net::UnixStream::connect(path).await?,
                            ))
                        }
                    })),
            )
            .map_err(|e| err(e.into()))?;
        Ok(Client {
            rt,
            c: pb::snapshots_client::SnapshotsClient::new(ch),
        })
    }

    fn call<T>(
        &mut self,
        call: &'static str,
        f: impl FnOnce(
            &mut pb::snapshots_client::SnapshotsClient<tonic::transport::Channel>,
        ) -> std::pin::Pin<
            Box<dyn std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>> + '_>,
        >,
    ) -> Result<T, ClientError> {
        let Client { rt, c } = self;
        rt.block_on(f(c))
            .map(tonic::Response::into_inner)
            .map_err(|status| ClientError::Status { call, status })
    }

    /// Prepare: a new active snapshot `key` on committed `parent` (empty: none).
    pub fn prepare(&mut self, key: &str, parent: &str) -> Result<Vec<MountSpec>, ClientError> {
        let r = pb::PrepareSnapshotRequest {
            snapshotter: NAME.into(),
            key: key.into(),
            parent: parent.into(),
            labels: Default::default(),
        };
        self.call("Prepare", |c| Box::pin(c.prepare(r)))
            .map(|a| mounts(a.mounts))
    }

    /// View: a read-only snapshot `key` of committed `parent`.
    pub fn view(&mut self, key: &str, parent: &str) -> Result<Vec<MountSpec>, ClientError> {
        let r = pb::ViewSnapshotRequest {
            snapshotter: NAME.into(),
            key: key.into(),
            parent: parent.into(),
            labels: Default::default(),
        };
        self.call("View", |c| Box::pin(c.view(r)))
            .map(|a| mounts(a.mounts))
    }

    /// Mounts of active or view snapshot `key`.
    pub fn mounts(&mut self, key: &str) -> Result<Vec<MountSpec>, ClientError> {
        let r = pb::MountsRequest {
            snapshotter: NAME.into(),
            key: key.into(),
        };
        self.call("Mounts", |c| Box::pin(c.mounts(r)))
            .map(|a| mounts(a.mounts))
    }

    /// Commit: active `key` becomes committed `name`.
    pub fn commit(&mut self, name: &str, key: &str) -> Result<(), ClientError> {
        let r = pb::CommitSnapshotRequest {
            snapshotter: NAME.into(),
            name: name.into(),
            key: key.into(),
            ..Default::default()
        };
        self.call("Commit", |c| Box::pin(c.commit(r)))
    }

    /// Remove snapshot `key`.
    pub fn remove(&mut self, key: &str) -> Result<(), ClientError> {
        let r = pb::RemoveSnapshotRequest {
            snapshotter: NAME.into(),
            key: key.into(),
        };
        self.call("Remove", |c| Box::pin(c.remove(r)))
    }

    /// Stat of snapshot `key`.
    pub fn stat(&mut self, key: &str) -> Result<SnapshotInfo, ClientError> {
        let r = pb::StatSnapshotRequest {
            snapshotter: NAME.into(),
            key: key.into(),
        };
        let a = self.call("Stat", |c| Box::pin(c.stat(r)))?;
        Ok(a.info.map(info).unwrap_or(SnapshotInfo {
            name: key.into(),
            parent: String::new(),
            kind: "unknown",
            labels: BTreeMap::new(),
        }))
    }

    /// Usage of snapshot `key`: (inodes, bytes).
    pub fn usage(&mut self, key: &str) -> Result<(i64, i64), ClientError> {
        let r = pb::UsageRequest {
            snapshotter: NAME.into(),
            key: key.into(),
        };
        self.call("Usage", |c| Box::pin(c.usage(r)))
            .map(|a| (a.inodes, a.size))
    }

    /// Every snapshot (List with no filter), in the server's order.
    pub fn list(&mut self) -> Result<Vec<SnapshotInfo>, ClientError> {
        let r = pb::ListSnapshotsRequest {
            snapshotter: NAME.into(),
            filters: Vec::new(),
        };
        let Client { rt, c } = self;
        rt.block_on(async {
            let mut stream = c.list(r).await?.into_inner();
            let mut out = Vec::new();
            while let Some(batch) = stream.message().await? {
                out.extend(batch.info.into_iter().map(info));
            }
            Ok(out)
        })
        .map_err(|status| ClientError::Status {
            call: "List",
            status,
        })
    }
}

/// Mounts as `ovlink snapshotter call` prints them: one per line, `TYPE SOURCE OPTIONS`
/// (ready for `mount -t TYPE -o OPTIONS SOURCE TARGET`), or JSON.
pub fn render_mounts(m: &[MountSpec], json: bool) -> serde_json::Result<String> {
    if json {
        return serde_json::to_string_pretty(m).map(|s| s + "\n");
    }
    Ok(m.iter()
        .map(|m| format!("{} {} {}\n", m.kind, m.source, m.options.join(",")))
        .collect())
}

/// Snapshots as `call list` prints them: `KIND KEY PARENT` (`-` for none), or JSON.
pub fn render_list(all: &[SnapshotInfo], json: bool) -> serde_json::Result<String> {
    if json {
        return serde_json::to_string_pretty(all).map(|s| s + "\n");
    }
    Ok(all
        .iter()
        .map(|i| format!("{} {} {}\n", i.kind, i.name, dash(&i.parent)))
        .collect())
}

/// A usage as `call usage` prints it.
pub fn render_usage((inodes, bytes): (i64, i64), json: bool) -> String {
    if json {
        format!(
            "{}\n",
            serde_json::json!({"inodes": inodes, "bytes": bytes})
        )
    } else {
        format!("{inodes} inodes, {bytes} bytes\n")
    }
}

/// `-` for an empty field of a text line.
pub(crate) fn dash(s: &str) -> &str {
    if s.is_empty() {
        "-"
    } else {
        s
    }
}
