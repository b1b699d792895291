//! The gRPC glue: containerd's `Snapshots` service on a [`Snapshotter`]. Each call runs on a
//! blocking thread (layer work is filesystem work); values are converted between prost's types
//! and ours here and nowhere else. This module holds no state and makes no decision of its own.

use crate::conn::Busy;
use crate::proto::snapshots as pb;
use crate::proto::types;
use crate::snapshotter::{Info, Snapshotter};
use crate::store::Kind;
use crate::SnapError;
use std::collections::BTreeMap;
use std::sync::Arc;
use tonic::{Request, Response, Status};

/// Snapshots per List message (containerd's own service sends 100).
const LIST_BATCH: usize = 100;
/// List messages a walk may be ahead of its client.
const LIST_AHEAD: usize = 2;

/// The service, to add to a tonic server.
#[derive(Debug, Clone)]
pub struct Service {
    snap: Arc<Snapshotter>,
}

impl Service {
    /// A service on `snap`.
    pub fn new(snap: Arc<Snapshotter>) -> Service {
        Service { snap }
    }

    /// The tonic server for it.
    pub fn server(self) -> pb::snapshots_server::SnapshotsServer<Service> {
        pb::snapshots_server::SnapshotsServer::new(self)
    }

    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Snapshotter) -> crate::Result<T> + Send + 'static,
    ) -> Result<T, Status> {
        let s = self.snap.clone();
        match tokio::task::spawn_blocking(move || f(&s)).await {
            Ok(r) => r.map_err(Status::from),
            Err(e) => Err(Status::internal(format!("snapshot call failed: {e}"))),
        }
    }
}

fn labels(m: std::collections::HashMap<String, String>) -> BTreeMap<String, String> {
    m.into_iter().collect()
}

fn mounts(v: Vec<ovlink_driver::Mount>) -> Vec<types::Mount> {
    v.into_iter()
        .map(|m| types::Mount {
            r#type: m.kind,
            source: m.source.to_string_lossy().into_owned(),
            target: String::new(),
            options: m.options,
        })
        .collect()
}

fn timestamp(nanos: i128) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: nanos.div_euclid(1_000_000_000) as i64,
        nanos: nanos.rem_euclid(1_000_000_000) as i32,
    }
}

fn info(i: Info) -> pb::Info {
    let r = i.record;
    pb::Info {
        name: i.name,
        parent: r.parent,
        kind: match r.kind {
            Kind::View => pb::Kind::View,
            Kind::Active => pb::Kind::Active,
            Kind::Committed => pb::Kind::Committed,
        } as i32,
        created_at: Some(timestamp(r.created)),
        updated_at: Some(timestamp(r.updated)),
        labels: r.labels.into_iter().collect(),
    }
}

#[tonic::async_trait]
impl pb::snapshots_server::Snapshots for Service {
    async fn prepare(
        &self,
        req: Request<pb::PrepareSnapshotRequest>,
    ) -> Result<Response<pb::PrepareSnapshotResponse>, Status> {
        let _busy = Busy::of(&req);
        let r = req.into_inner();
        let m = self
            .run(move |s| s.prepare(&r.key, &r.parent, labels(r.labels)))
            .await?;
        Ok(Response::new(pb::PrepareSnapshotResponse {
            mounts: mounts(m),
        }))
    }

    async fn view(
        &self,
        req: Request<pb::ViewSnapshotRequest>,
    ) -> Result<Response<pb::ViewSnapshotResponse>, Status> {
        let _busy = Busy::of(&req);
        let r = req.into_inner();
        let m = self
            .run(move |s| s.view(&r.key, &r.parent, labels(r.labels)))
            .await?;
        Ok(Response::new(pb::ViewSnapshotResponse {
            mounts: mounts(m),
        }))
    }

    async fn mounts(
        &self,
        req: Request<pb::MountsRequest>,
    ) -> Result<Response<pb::MountsResponse>, Status> {
        let _busy = Busy::of(&req);
        let r = req.into_inner();
        let m = self.run(move |s| s.mounts(&r.key)).await?;
        Ok(Response::new(pb::MountsResponse { mounts: mounts(m) }))
    }

    async fn commit(
        &self,
        req: Request<pb::CommitSnapshotRequest>,
    ) -> Result<Response<()>, Status> {
        let _busy = Busy::of(&req);
        let r = req.into_inner();
        self.run(move |s| s.commit(&r.name, &r.key, labels(r.labels)))
            .await?;
        Ok(Response::new(()))
    }

    async fn remove(
        &self,
        req: Request<pb::RemoveSnapshotRequest>,
    ) -> Result<Response<()>, Status> {
        let _busy = Busy::of(&req);
        let r = req.into_inner();
        self.run(move |s| s.remove(&r.key)).await?;
        Ok(Response::new(()))
    }

    async fn stat(
        &self,
        req: Request<pb::StatSnapshotRequest>,
    ) -> Result<Response<pb::StatSnapshotResponse>, Status> {
        let _busy = Busy::of(&req);
        let r = req.into_inner();
        let i = self.run(move |s| s.stat(&r.key)).await?;
        Ok(Response::new(pb::StatSnapshotResponse {
            info: Some(info(i)),
        }))
    }

    async fn update(
        &self,
        req: Request<pb::UpdateSnapshotRequest>,
    ) -> Result<Response<pb::UpdateSnapshotResponse>, Status> {
        let _busy = Busy::of(&req);
        let r = req.into_inner();
        let Some(i) = r.info else {
            return Err(SnapError::InvalidArgument("Update without info".into()).into());
        };
        let paths = r.update_mask.map(|m| m.paths).unwrap_or_default();
        let i = self
            .run(move |s| s.update(&i.name, labels(i.labels), &paths))
            .await?;
        Ok(Response::new(pb::UpdateSnapshotResponse {
            info: Some(info(i)),
        }))
    }

    type ListStream =
        tokio_stream::wrappers::ReceiverStream<Result<pb::ListSnapshotsResponse, Status>>;

    async fn list(
        &self,
        req: Request<pb::ListSnapshotsRequest>,
    ) -> Result<Response<Self::ListStream>, Status> {
        let busy = Busy::of(&req);
        let r = req.into_inner();
        // Filters that do not parse are refused before anything is sent.
        crate::filter::Filters::parse(&r.filters).map_err(Status::from)?;
        // Streamed from one read transaction in batches of 100 (as containerd's own service
        // sends them), at most LIST_AHEAD batches ahead of the client: the store is never
        // loaded whole, whatever its size, and a slow reader holds a few batches, not all.
        let (tx, rx) = tokio::sync::mpsc::channel(LIST_AHEAD);
        let s = self.snap.clone();
        tokio::task::spawn_blocking(move || {
            let _busy = busy;
            let mut batch = Vec::with_capacity(LIST_BATCH);
            let walked = s.list_each(&r.filters, |i| {
                batch.push(info(i));
                if batch.len() < LIST_BATCH {
                    return true;
                }
                let full = std::mem::replace(&mut batch, Vec::with_capacity(LIST_BATCH));
                tx.blocking_send(Ok(pb::ListSnapshotsResponse { info: full }))
                    .is_ok()
            });
            let last = match walked {
                Ok(()) if batch.is_empty() => return,
                Ok(()) => Ok(pb::ListSnapshotsResponse { info: batch }),
                Err(e) => Err(Status::from(e)),
            };
            let _ = tx.blocking_send(last);
        });
        Ok(Response::new(tokio_stream::wrappers::ReceiverStream::new(
            rx,
        )))
    }

    async fn usage(
        &self,
        req: Request<pb::UsageRequest>,
    ) -> Result<Response<pb::UsageResponse>, Status> {
        let _busy = Busy::of(&req);
        let r = req.into_inner();
        let u = self.run(move |s| s.usage(&r.key)).await?;
        Ok(Response::new(pb::UsageResponse {
            size: i64::try_from(u.bytes).unwrap_or(i64::MAX),
            inodes: i64::try_from(u.inodes).unwrap_or(i64::MAX),
        }))
    }

    async fn cleanup(&self, req: Request<pb::CleanupRequest>) -> Result<Response<()>, Status> {
        let _busy = Busy::of(&req);
        self.run(|s| s.cleanup()).await?;
        Ok(Response::new(()))
    }
}
