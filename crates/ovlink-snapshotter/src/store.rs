//! The metadata store: one redb database (`<state>/metadata.redb`) holding a record per
//! snapshot, keyed by the key containerd sends (`default/12/extract-... sha256:...`, used as
//! is: the namespace is part of it). A record names the snapshot's kind, its parent's key, its
//! labels, its timestamps and the ovlink layer that holds its files.
//!
//! ```text
//! table "snapshots":  containerd key  ->  JSON Record { layer, kind, parent, labels,
//!                                                      created, updated }
//! table "children":   u64 BE length of parent ++ parent ++ child  ->  (empty)
//! table "meta":       "children-index"  ->  "1" once "children" holds every record's entry
//! ```
//!
//! "children" is an index kept in the same transactions as "snapshots", so that finding
//! whether a snapshot has children (every Remove asks) is a range lookup, not a decoding of
//! every record under the global lock (67 ms a Remove at 50,000 records). The parent's length
//! comes first so that no key, whatever bytes it holds (NUL included), can pass for another's
//! prefix. A database written before the index existed gets it at its first open.
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
const CHILDREN: TableDefinition<&[u8], &[u8]> = TableDefinition::new("children");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const CHILDREN_INDEX: &str = "children-index";
/// redb's page cache: bounded, so that reading a large store (a List walks it whole) costs
/// the server this much memory at most, not the store's size (redb's default is 1 GiB).
const CACHE_BYTES: usize = 16 << 20;

/// The prefix of every "children" entry of `parent`.
fn children_prefix(parent: &str) -> Vec<u8> {
    let mut k = (parent.len() as u64).to_be_bytes().to_vec();
    k.extend_from_slice(parent.as_bytes());
    k
}

/// The "children" entry of `child` under `parent`.
fn child_entry(parent: &str, child: &str) -> Vec<u8> {
    let mut k = children_prefix(parent);
    k.extend_from_slice(child.as_bytes());
    k
}

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
        if !path.exists() {
            Self::create(path)?;
        }
        let db = redb::Builder::new()
            .set_cache_size(CACHE_BYTES)
            .create(path)
            .map_err(|e| err("open", e.into()))?;
        let s = Store {
            db,
            path: path.to_path_buf(),
        };
        s.write(|t| t.index_children())?;
        Ok(s)
    }

    /// Makes a new, empty store at `path` in one rename: built and synced under a temporary
    /// name first, so that a power cut leaves no store or a complete one, never a file redb
    /// cannot open (found by the power-loss replay: a cut during the first start left a
    /// store whose header was not on disk, and every later start failed). Temporaries of
    /// earlier attempts are removed.
    fn create(path: &Path) -> Result<()> {
        let dir = path.parent().unwrap_or(Path::new("."));
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let prefix = format!(".{name}.tmp-");
        if let Ok(rd) = std::fs::read_dir(dir) {
            for e in rd.flatten() {
                if e.file_name().to_string_lossy().starts_with(&prefix) {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        let tmp = dir.join(format!("{prefix}{}", std::process::id()));
        let io = |op: &'static str, p: &Path| {
            let p = p.to_path_buf();
            move |source| SnapError::Io {
                op,
                path: p,
                source,
            }
        };
        let built = (|| {
            let db = redb::Database::create(&tmp).map_err(|e| SnapError::Store {
                path: tmp.clone(),
                op: "create",
                source: Box::new(e.into()),
            })?;
            let s = Store {
                db,
                path: tmp.clone(),
            };
            s.write(|t| t.index_children())?;
            drop(s);
            std::fs::File::open(&tmp)
                .and_then(|f| f.sync_all())
                .map_err(io("sync", &tmp))?;
            std::fs::rename(&tmp, path).map_err(io("rename into place", path))?;
            std::fs::File::open(dir)
                .and_then(|f| f.sync_all())
                .map_err(io("sync", dir))
        })();
        if built.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        built
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
        let mut out = Vec::new();
        self.each(|k, r| {
            out.push((k, r));
            true
        })?;
        Ok(out)
    }

    /// Hands every record to `f`, sorted by key, one at a time from one read transaction (a
    /// snapshot of the store: writers go on meanwhile); stops when `f` returns false. Only
    /// the record in hand is decoded, whatever the store holds.
    pub fn each(&self, mut f: impl FnMut(String, Record) -> bool) -> Result<()> {
        let e = self.err("read");
        let tx = self.db.begin_read().map_err(|x| e(x.into()))?;
        let t = tx.open_table(SNAPSHOTS).map_err(|x| e(x.into()))?;
        for item in t.iter().map_err(|x| e(x.into()))? {
            let (k, v) = item.map_err(|x| e(x.into()))?;
            let key = k.value().to_string();
            let rec = self.decode(&key, v.value())?;
            if !f(key, rec) {
                break;
            }
        }
        Ok(())
    }

    /// Runs `f` in one write transaction and commits it (nothing is written if `f` fails).
    pub fn write<T>(&self, f: impl FnOnce(&mut Txn<'_>) -> Result<T>) -> Result<T> {
        let e = self.err("write");
        let tx = self.db.begin_write().map_err(|x| e(x.into()))?;
        let out = {
            let table = tx.open_table(SNAPSHOTS).map_err(|x| e(x.into()))?;
            let children = tx.open_table(CHILDREN).map_err(|x| e(x.into()))?;
            let meta = tx.open_table(META).map_err(|x| e(x.into()))?;
            let mut txn = Txn {
                table,
                children,
                meta,
                store: self,
            };
            f(&mut txn)?
        };
        tx.commit().map_err(|x| e(x.into()))?;
        Ok(out)
    }
}

/// One write transaction's view of the tables.
pub struct Txn<'a> {
    table: redb::Table<'a, &'static str, &'static [u8]>,
    children: redb::Table<'a, &'static [u8], &'static [u8]>,
    meta: redb::Table<'a, &'static str, &'static [u8]>,
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

    /// True when some record names `key` as its parent: one range lookup in the index.
    pub fn has_children(&self, key: &str) -> Result<bool> {
        let e = self.store.err("read");
        let prefix = children_prefix(key);
        let mut range = self
            .children
            .range(prefix.as_slice()..)
            .map_err(|x| e(x.into()))?;
        match range.next() {
            Some(item) => {
                let (k, _) = item.map_err(|x| e(x.into()))?;
                Ok(k.value().starts_with(&prefix))
            }
            None => Ok(false),
        }
    }

    /// Stores `rec` under `key` (replacing what was there), its parent's index entry with it.
    pub fn put(&mut self, key: &str, rec: &Record) -> Result<()> {
        let e = self.store.err("write");
        let v = serde_json::to_vec(rec).map_err(|x| SnapError::Corrupt {
            path: self.store.path.clone(),
            key: key.to_string(),
            source: x,
        })?;
        let old = self
            .table
            .insert(key, v.as_slice())
            .map_err(|x| e(x.into()))?
            .map(|o| o.value().to_vec());
        if let Some(old) = old {
            // The old record's parent, without decoding more than this one record.
            if let Ok(o) = serde_json::from_slice::<Record>(&old) {
                if o.parent != rec.parent && !o.parent.is_empty() {
                    self.children
                        .remove(child_entry(&o.parent, key).as_slice())
                        .map_err(|x| e(x.into()))?;
                }
            }
        }
        if !rec.parent.is_empty() {
            self.children
                .insert(child_entry(&rec.parent, key).as_slice(), &[][..])
                .map_err(|x| e(x.into()))?;
        }
        Ok(())
    }

    /// Deletes `key`'s record and its parent's index entry.
    pub fn delete(&mut self, key: &str) -> Result<()> {
        let e = self.store.err("write");
        let old = self
            .table
            .remove(key)
            .map_err(|x| e(x.into()))?
            .map(|o| o.value().to_vec());
        if let Some(Ok(o)) = old.map(|o| serde_json::from_slice::<Record>(&o)) {
            if !o.parent.is_empty() {
                self.children
                    .remove(child_entry(&o.parent, key).as_slice())
                    .map_err(|x| e(x.into()))?;
            }
        }
        Ok(())
    }

    /// Builds the children index from every record, once (a database from before it).
    fn index_children(&mut self) -> Result<()> {
        let e = self.store.err("index");
        if self
            .meta
            .get(CHILDREN_INDEX)
            .map_err(|x| e(x.into()))?
            .is_some()
        {
            return Ok(());
        }
        let mut entries = Vec::new();
        for item in self.table.iter().map_err(|x| e(x.into()))? {
            let (k, v) = item.map_err(|x| e(x.into()))?;
            let rec = self.store.decode(k.value(), v.value())?;
            if !rec.parent.is_empty() {
                entries.push(child_entry(&rec.parent, k.value()));
            }
        }
        for k in entries {
            self.children
                .insert(k.as_slice(), &[][..])
                .map_err(|x| e(x.into()))?;
        }
        self.meta
            .insert(CHILDREN_INDEX, &b"1"[..])
            .map_err(|x| e(x.into()))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(parent: &str) -> Record {
        Record {
            layer: None,
            kind: Kind::Committed,
            parent: parent.to_string(),
            labels: BTreeMap::new(),
            created: 0,
            updated: 0,
            committing: None,
        }
    }

    /// Writes `value` raw under `key` in the snapshots table (what an older ovlink or a
    /// damaged record leaves), past the index.
    fn raw_put(path: &Path, key: &str, value: &[u8]) {
        let db = redb::Database::create(path).unwrap();
        let tx = db.begin_write().unwrap();
        tx.open_table(SNAPSHOTS)
            .unwrap()
            .insert(key, value)
            .unwrap();
        tx.commit().unwrap();
    }

    /// Whether a snapshot has children is answered from the index alone: a record that does
    /// not decode elsewhere in the store does not fail the Remove of another (every record
    /// used to be decoded), and keys holding NUL are no one's prefix.
    #[test]
    fn children_are_found_without_decoding_other_records() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metadata.redb");
        {
            let s = Store::open(&path).unwrap();
            s.write(|t| {
                t.put("a", &rec(""))?;
                t.put("a\0b", &rec(""))?;
                t.put("child-of-a-nul-b", &rec("a\0b"))?;
                t.put("b", &rec("a"))
            })
            .unwrap();
        }
        raw_put(&path, "damaged", b"not json");
        let s = Store::open(&path).unwrap();
        s.write(|t| {
            assert!(t.has_children("a")?);
            assert!(t.has_children("a\0b")?);
            assert!(!t.has_children("b")?);
            assert!(!t.has_children("damaged")?);
            t.delete("b")?;
            assert!(!t.has_children("a")?, "the deleted child is still indexed");
            // Re-parenting a record moves its entry.
            t.put("c", &rec("a"))?;
            t.put("c", &rec("a\0b"))?;
            assert!(!t.has_children("a")?);
            Ok(())
        })
        .unwrap();
    }

    /// A new store appears in one rename, built aside: the temporaries of an earlier attempt
    /// that died (a power cut during the first start) are removed, and none is left.
    #[test]
    fn a_new_store_is_made_aside_and_renamed_into_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metadata.redb");
        std::fs::write(dir.path().join(".metadata.redb.tmp-1"), b"half a header").unwrap();
        let s = Store::open(&path).unwrap();
        s.write(|t| t.put("a", &rec(""))).unwrap();
        drop(s);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["metadata.redb"]);
        assert!(Store::open(&path).unwrap().get("a").unwrap().is_some());
    }

    /// A store written before the index existed gets it at its first open.
    #[test]
    fn an_old_store_is_indexed_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metadata.redb");
        raw_put(&path, "p", &serde_json::to_vec(&rec("")).unwrap());
        raw_put(&path, "q", &serde_json::to_vec(&rec("p")).unwrap());
        let s = Store::open(&path).unwrap();
        s.write(|t| {
            assert!(t.has_children("p")?);
            assert!(!t.has_children("q")?);
            Ok(())
        })
        .unwrap();
    }
}
