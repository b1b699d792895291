//! Making the file contents an apply wrote durable, overlapped with the apply itself.
//!
//! Each regular file the applier writes is handed over (its fd, still open) to a small pool of
//! threads that `fdatasync` it while the applier goes on with the next entries. Several
//! `fdatasync`s in flight at once share the backing filesystem's journal commits (ext4's and
//! xfs's logs commit every pending transaction together), so the cost per file is mostly the
//! data write itself. The queue is bounded, so at most [`QUEUE`] + the number of threads fds
//! are open at any time, whatever the layer size.
//!
//! Only the *data* (and what is needed to read it back: size, block map) is made durable here;
//! the rest of the metadata (names, modes, owners, directories) is the caller's to make durable,
//! which the driver does with one `fsync` of the layer directory after its rename (see
//! `docs/design.md`, "Durability"). This module never writes anything.

use std::path::PathBuf;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use ovlink_fs::FsError;
use rustix::fd::OwnedFd;
use rustix::io::Errno;

/// Files waiting for their `fdatasync` (beyond the ones being synced).
pub(crate) const QUEUE: usize = 128;

/// Threads calling `fdatasync`.
const THREADS: usize = 8;

type Job = (OwnedFd, PathBuf);
type FirstError = Arc<Mutex<Option<(PathBuf, Errno)>>>;

/// The pool; [`DataSync::finish`] waits for every file handed to it.
pub(crate) struct DataSync {
    tx: Option<SyncSender<Job>>,
    workers: Vec<JoinHandle<()>>,
    error: FirstError,
}

impl DataSync {
    /// Starts the threads.
    pub(crate) fn start() -> DataSync {
        let (tx, rx) = sync_channel::<Job>(QUEUE);
        let rx = Arc::new(Mutex::new(rx));
        let error: FirstError = Arc::default();
        let workers = (0..THREADS)
            .filter_map(|i| {
                let rx = Arc::clone(&rx);
                let error = Arc::clone(&error);
                std::thread::Builder::new()
                    .name(format!("ovlink-datasync-{i}"))
                    .spawn(move || worker(&rx, &error))
                    .ok()
            })
            .collect::<Vec<_>>();
        DataSync {
            tx: Some(tx),
            workers,
            error,
        }
    }

    /// Hands a just-written file over. Syncs it right here when no thread could be started.
    /// Fails early with the first error a thread met.
    pub(crate) fn push(&self, fd: OwnedFd, shown: PathBuf) -> Result<(), FsError> {
        self.check()?;
        match &self.tx {
            Some(tx) if !self.workers.is_empty() => match tx.send((fd, shown)) {
                Ok(()) => Ok(()),
                Err(std::sync::mpsc::SendError((fd, shown))) => sync_one(&fd, &shown),
            },
            _ => sync_one(&fd, &shown),
        }
    }

    /// Waits until every file handed over is synced; the first error, if any.
    pub(crate) fn finish(mut self) -> Result<(), FsError> {
        self.tx = None;
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
        self.check()
    }

    fn check(&self) -> Result<(), FsError> {
        let e = self.error.lock().unwrap_or_else(|p| p.into_inner());
        match &*e {
            Some((path, errno)) => Err(FsError::io("fsync", path, *errno)),
            None => Ok(()),
        }
    }
}

impl Drop for DataSync {
    fn drop(&mut self) {
        // On an error path: stop feeding the threads and let them drain what they have.
        self.tx = None;
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

fn sync_one(fd: &OwnedFd, shown: &std::path::Path) -> Result<(), FsError> {
    rustix::fs::fdatasync(fd).map_err(|e| FsError::io("fsync", shown, e))
}

fn worker(rx: &Mutex<Receiver<Job>>, error: &Mutex<Option<(PathBuf, Errno)>>) {
    loop {
        let job = {
            let rx = rx.lock().unwrap_or_else(|p| p.into_inner());
            rx.recv()
        };
        let Ok((fd, shown)) = job else { return };
        if let Err(e) = rustix::fs::fdatasync(&fd) {
            let mut first = error.lock().unwrap_or_else(|p| p.into_inner());
            if first.is_none() {
                *first = Some((shown, e));
            }
        }
    }
}
