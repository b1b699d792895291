//! The metadata store: one redb database (`<state>/metadata.redb`) holding a record per
//! snapshot, keyed by the key containerd sends (`default/12/extract-... sha256:...`, used as
//! is: the namespace is part of it). A record names the snapshot's kind, its parent's key, its
//! labels, its timestamps and the ovlink layer that holds its files.
//!
//! ```text
//! table "snapshots":  containerd key  ->  JSON Record { layer, kind, parent, labels,
//!                                                      created, updated }
//! ```
//!
//! Every change is one redb write transaction (durable on commit), so after a crash a record
//! is either there in full or not at all. This module never touches a layer: the snapshotter
//! orders its layer work around these transactions (see `snapshotter.rs`).

use crate::error::{Result, SnapError};
use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const SNAPSHOTS: TableDefinition<&str, &[u8]> = TableDefinition::new("snapshots");

/// containerd's snapshot kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// A read-only view of a committed snapshot.
    View,
    /// A writable snapshot, not yet committed.
    Active,
    /// A committed snapshot: an image layer, parent of others.
    Committed,
}

impl Kind {
    /// The name containerd's filters use (`kind==committed`).
    pub fn name(self) -> &'static str {
        match self {
            Kind::View => "view",
            Kind::Active => "active",
            Kind::Committed => "committed",
        }
    }
}

/// One snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The ovlink layer that holds its files; `None` for a view of a parent (it mounts the
    /// parent's layer read-only and owns nothing).
    pub layer: Option<String>,
    /// Its kind.
    pub kind: Kind,
    /// The parent's key, empty for none.
    pub parent: String,
    /// containerd labels.
    pub labels: BTreeMap<String, String>,
    /// Creation time, nanoseconds since the epoch.
    pub created: i128,
    /// Last update, nanoseconds since the epoch.
    pub updated: i128,
    /// Set while an active snapshot is being committed: the name and labels it will have. A
    /// restart finds it and finishes the commit (see `snapshotter.rs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub committing: Option<Committing>,
}

/// A commit in progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Committing {
    /// The committed snapshot's key.
    pub name: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
}

/// The open store.
#[derive(Debug)]
pub struct Store {
    db: redb::Database,
    path: PathBuf,
}

impl Store {
    /// Opens (or creates) the database at `path`. redb locks the file, so a second server on
    /// the same root fails here.
    pub fn open(path: &Path) -> Result<Store> {
        let err = |op, e: redb::Error| SnapError::Store {
            path: path.to_path_buf(),
            op,
            source: Box::new(e),
        };
        let db = redb::Database::create(path).map_err(|e| err("open", e.into()))?;
        let s = Store {
            db,
            path: path.to_path_buf(),
        };
        s.write(|t| {
            let _ = t;
            Ok(())
        })?;
        Ok(s)
    }

    fn err(&self, op: &'static str) -> impl Fn(redb::Error) -> SnapError + '_ {
        move |e| SnapError::Store {
            path: self.path.clone(),
            op,
            source: Box::new(e),
        }
    }

    fn decode(&self, key: &str, v: &[u8]) -> Result<Record> {
        serde_json::from_slice(v).map_err(|e| SnapError::Corrupt {
            path: self.path.clone(),
            key: key.to_string(),
            source: e,
        })
    }

    /// The record of `key`.
    pub fn get(&self, key: &str) -> Result<Option<Record>> {
        let e = self.err("read");
        let tx = self.db.begin_read().map_err(|x| e(x.into()))?;
        let t = tx.open_table(SNAPSHOTS).map_err(|x| e(x.into()))?;
        match t.get(key).map_err(|x| e(x.into()))? {
            Some(v) => Ok(Some(self.decode(key, v.value())?)),
            None => Ok(None),
        }
    }

    /// Every record, sorted by key.
    pub fn all(&self) -> Result<Vec<(String, Record)>> {
        let e = self.err("read");
        let tx = self.db.begin_read().map_err(|x| e(x.into()))?;
        let t = tx.open_table(SNAPSHOTS).map_err(|x| e(x.into()))?;
        let mut out = Vec::new();
        for item in t.iter().map_err(|x| e(x.into()))? {
            let (k, v) = item.map_err(|x| e(x.into()))?;
            let key = k.value().to_string();
            let rec = self.decode(&key, v.value())?;
            out.push((key, rec));
        }
        Ok(out)
    }

    /// Runs `f` in one write transaction and commits it (nothing is written if `f` fails).
    pub fn write<T>(&self, f: impl FnOnce(&mut Txn<'_>) -> Result<T>) -> Result<T> {
        let e = self.err("write");
        let tx = self.db.begin_write().map_err(|x| e(x.into()))?;
        let out = {
            let table = tx.open_table(SNAPSHOTS).map_err(|x| e(x.into()))?;
            let mut txn = Txn { table, store: self };
            f(&mut txn)?
        };
        tx.commit().map_err(|x| e(x.into()))?;
        Ok(out)
    }
}

/// One write transaction's view of the table.
pub struct Txn<'a> {
    table: redb::Table<'a, &'static str, &'static [u8]>,
    store: &'a Store,
}

impl Txn<'_> {
    /// The record of `key`.
    pub fn get(&self, key: &str) -> Result<Option<Record>> {
        let e = self.store.err("read");
        match self.table.get(key).map_err(|x| e(x.into()))? {
            Some(v) => Ok(Some(self.store.decode(key, v.value())?)),
            None => Ok(None),
        }
    }

    /// True when some record names `key` as its parent.
    pub fn has_children(&self, key: &str) -> Result<bool> {
        let e = self.store.err("read");
        for item in self.table.iter().map_err(|x| e(x.into()))? {
            let (k, v) = item.map_err(|x| e(x.into()))?;
            if self.store.decode(k.value(), v.value())?.parent == key {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Stores `rec` under `key` (replacing what was there).
    pub fn put(&mut self, key: &str, rec: &Record) -> Result<()> {
        let e = self.store.err("write");
        let v = serde_json::to_vec(rec).map_err(|x| SnapError::Corrupt {
            path: self.store.path.clone(),
            key: key.to_string(),
            source: x,
        })?;
        self.table
            .insert(key, v.as_slice())
            .map_err(|x| e(x.into()))?;
        Ok(())
    }

    /// Deletes `key`'s record.
    pub fn delete(&mut self, key: &str) -> Result<()> {
        let e = self.store.err("write");
        self.table.remove(key).map_err(|x| e(x.into()))?;
        Ok(())
    }
}
