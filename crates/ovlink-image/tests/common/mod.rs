//! Test helpers: a `Driver` that only drains layer streams, and tar builders.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ovlink_driver::{
    diffplan::DiffPlan, Capabilities, CreateOpts, Driver, DriverError, LayerInfo, LayerKind,
    Layout, Mount, Result, Usage,
};

/// A driver that keeps layer kinds in a map; `apply_diff` reads the stream to EOF into a
/// sink (so digest checks fire) and returns the byte count.
#[derive(Default)]
pub struct DrainDriver {
    home: PathBuf,
    pub layers: Mutex<BTreeMap<String, LayerKind>>,
    /// Ids in the order apply_diff was called.
    pub applied: Mutex<Vec<String>>,
    /// Ids removed, in order.
    pub removed: Mutex<Vec<String>>,
    /// How many layers each publish of a staging published, in order.
    pub publishes: Mutex<Vec<usize>>,
}

/// The default staging (each layer created at once), with its publishes counted.
pub struct CountingStaging<'d> {
    d: &'d DrainDriver,
    inner: Box<dyn ovlink_driver::staging::Staging + 'd>,
    staged: usize,
}

impl ovlink_driver::staging::Staging for CountingStaging<'_> {
    fn apply(&mut self, id: &str, parent: Option<&str>, diff: &mut dyn Read) -> Result<u64> {
        let n = self.inner.apply(id, parent, diff)?;
        self.staged += 1;
        Ok(n)
    }

    fn publish(self: Box<Self>) -> Result<()> {
        self.d.publishes.lock().unwrap().push(self.staged);
        self.inner.publish()
    }
}

impl DrainDriver {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn ids(&self) -> Vec<String> {
        self.layers.lock().unwrap().keys().cloned().collect()
    }

    pub fn insert(&self, id: &str, kind: LayerKind) {
        self.layers.lock().unwrap().insert(id.to_string(), kind);
    }

    pub fn applied(&self) -> Vec<String> {
        self.applied.lock().unwrap().clone()
    }
}

/// Named like the legacy driver: what it imports is recorded where the legacy layout's images are.
impl Driver for DrainDriver {
    fn name(&self) -> &'static str {
        "overlay"
    }

    fn staging(&self) -> Result<Box<dyn ovlink_driver::staging::Staging + '_>> {
        Ok(Box::new(CountingStaging {
            d: self,
            inner: Box::new(ovlink_driver::staging::Immediate::new(self)),
            staged: 0,
        }))
    }

    fn home(&self) -> &Path {
        &self.home
    }

    fn init_warnings(&self) -> &[String] {
        &[]
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            layout: Layout::Overlay,
            max_lowers: 1,
            full_image_trees: true,
            native_diff: false,
        }
    }

    fn mount_spec(&self, _id: &str, _mount_label: Option<&str>) -> Result<Mount> {
        Err(DriverError::Unsupported { what: "mount_spec" })
    }

    fn parent(&self, _id: &str) -> Result<Option<String>> {
        Err(DriverError::Unsupported { what: "parent" })
    }

    fn usage(&self, _id: &str) -> Result<Usage> {
        Err(DriverError::Unsupported { what: "usage" })
    }

    fn diff_plan(&self, _id: &str, _parent: Option<&str>) -> Result<DiffPlan<'_>> {
        Err(DriverError::Unsupported { what: "diff" })
    }

    fn create(&self, id: &str, parent: Option<&str>, _opts: &CreateOpts) -> Result<()> {
        let mut map = self.layers.lock().unwrap();
        if map.contains_key(id) {
            return Err(DriverError::LayerExists { id: id.to_string() });
        }
        if let Some(p) = parent {
            if !map.contains_key(p) {
                return Err(DriverError::ParentNotFound {
                    id: id.to_string(),
                    parent: p.to_string(),
                });
            }
        }
        map.insert(id.to_string(), LayerKind::Image);
        Ok(())
    }

    fn create_read_write(&self, id: &str, parent: Option<&str>, _opts: &CreateOpts) -> Result<()> {
        let mut map = self.layers.lock().unwrap();
        if map.contains_key(id) {
            return Err(DriverError::LayerExists { id: id.to_string() });
        }
        map.insert(
            id.to_string(),
            LayerKind::Container {
                lower_id: parent.unwrap_or_default().to_string(),
            },
        );
        Ok(())
    }

    fn remove(&self, id: &str) -> Result<()> {
        self.removed.lock().unwrap().push(id.to_string());
        match self.layers.lock().unwrap().remove(id) {
            Some(_) => Ok(()),
            None => Err(DriverError::LayerNotFound { id: id.to_string() }),
        }
    }

    fn get(&self, _id: &str, _mount_label: Option<&str>) -> Result<PathBuf> {
        Err(DriverError::Unsupported { what: "get" })
    }

    fn put(&self, _id: &str) -> Result<()> {
        Err(DriverError::Unsupported { what: "put" })
    }

    fn exists(&self, id: &str) -> bool {
        self.layers.lock().unwrap().contains_key(id)
    }

    fn apply_diff(&self, id: &str, _parent: Option<&str>, diff: &mut dyn Read) -> Result<u64> {
        if !self.exists(id) {
            return Err(DriverError::LayerNotFound { id: id.to_string() });
        }
        let n = io::copy(diff, &mut io::sink()).map_err(|e| DriverError::Apply {
            id: id.to_string(),
            source: ovlink_tar::TarError::Fs(ovlink_fs::FsError::io("read layer tar for", id, e)),
        })?;
        self.applied.lock().unwrap().push(id.to_string());
        Ok(n)
    }

    fn status(&self) -> Vec<(String, String)> {
        Vec::new()
    }

    fn metadata(&self, _id: &str) -> Result<BTreeMap<String, String>> {
        Err(DriverError::Unsupported { what: "metadata" })
    }

    fn cleanup(&self) -> Result<()> {
        Ok(())
    }

    fn layers(&self) -> Result<Vec<LayerInfo>> {
        Ok(self
            .layers
            .lock()
            .unwrap()
            .iter()
            .map(|(id, kind)| LayerInfo {
                id: id.clone(),
                kind: kind.clone(),
                mounted: false,
            })
            .collect())
    }

    fn layer_kind(&self, id: &str) -> Result<LayerKind> {
        self.layers
            .lock()
            .unwrap()
            .get(id)
            .cloned()
            .ok_or_else(|| DriverError::LayerNotFound { id: id.to_string() })
    }
}

pub fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/fx-layers.tar")
}

/// Builds a tar of regular files (and directories for names ending in `/`), in order.
pub fn build_tar(members: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in members {
        let mut h = tar::Header::new_gnu();
        if name.ends_with('/') {
            h.set_entry_type(tar::EntryType::Directory);
            h.set_mode(0o755);
            h.set_size(0);
        } else {
            h.set_entry_type(tar::EntryType::Regular);
            h.set_mode(0o644);
            h.set_size(data.len() as u64);
        }
        b.append_data(&mut h, name, *data).unwrap();
    }
    b.into_inner().unwrap()
}

/// name → (data offset, size) of the regular members of a tar file.
pub fn member_offsets(path: &Path) -> BTreeMap<String, (u64, u64)> {
    let f = std::fs::File::open(path).unwrap();
    let mut ar = tar::Archive::new(f);
    let mut out = BTreeMap::new();
    for e in ar.entries().unwrap() {
        let e = e.unwrap();
        if e.header().entry_type() == tar::EntryType::Regular {
            out.insert(
                e.path().unwrap().to_string_lossy().into_owned(),
                (e.raw_file_position(), e.size()),
            );
        }
    }
    out
}

/// Reads one member of a tar file.
pub fn read_member(path: &Path, name: &str) -> Vec<u8> {
    let f = std::fs::File::open(path).unwrap();
    let mut ar = tar::Archive::new(f);
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        if e.path().unwrap().to_string_lossy() == name {
            let mut v = Vec::new();
            e.read_to_end(&mut v).unwrap();
            return v;
        }
    }
    panic!("no member {name}");
}

pub fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(data))
}

/// Chain ids computed independently of the crate.
pub fn expected_chain_ids(diff_ids: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for d in diff_ids {
        let next = match out.last() {
            None => d.trim_start_matches("sha256:").to_string(),
            Some(p) => sha256_hex(format!("sha256:{p} {d}").as_bytes()),
        };
        out.push(next);
    }
    out
}
