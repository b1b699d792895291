//! Writing images back out: `docker save` tarballs ([`save`]) and new image layers from a
//! container's changes ([`commit`]).
//!
//! Layer tars are regenerated from the driver (`Driver::diff` of each layer against its
//! parent), so a saved image carries exactly what is on disk. Each tar is streamed through a
//! SHA-256 hasher into a temporary file next to the output (memory stays flat), because the
//! config's `rootfs.diff_ids` and the manifest must name the digests before the archive is
//! assembled. The config recorded at import is kept, history and all; only its `diff_ids`
//! are replaced when the regenerated tars differ from the imported ones (and then its digest,
//! the image id, changes too). This module never writes into a layer.

use crate::digest::{chain_ids, sha256_hex};
use crate::error::{ImageError, Result};
use crate::store::{unix_now, ImageRecord, LayerRecord, Store};
use crate::tarball::TarballWriter;
use crate::wire::{split_tag, DockerManifestEntry, Repositories, RootFs, V1LayerJson};
use ovlink_driver::{Driver, DriverError, LayerKind};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::io::{self, Seek, Write};
use std::path::Path;

/// A `Write` that hashes what passes through it and counts bytes.
struct HashingWriter<W> {
    inner: W,
    hash: Sha256,
    bytes: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// A layer tar written to a temporary file, with its digest.
struct LayerTar {
    file: std::fs::File,
    diff_id: String,
    bytes: u64,
}

fn driver_err<'a>(layer: &'a str, op: &'static str) -> impl FnOnce(DriverError) -> ImageError + 'a {
    move |e| ImageError::Driver {
        layer: layer.to_string(),
        op,
        source: Box::new(e),
    }
}

/// Streams `driver.diff(id, parent)` into an unnamed temporary file in `dir`, hashing it.
fn diff_to_temp(
    driver: &dyn Driver,
    id: &str,
    parent: Option<&str>,
    dir: &Path,
) -> Result<LayerTar> {
    let file = tempfile::tempfile_in(dir)
        .map_err(|e| ImageError::io("create a temporary file in", dir, e))?;
    let mut w = HashingWriter {
        inner: io::BufWriter::with_capacity(1 << 20, file),
        hash: Sha256::new(),
        bytes: 0,
    };
    driver
        .diff(id, parent, &mut w)
        .map_err(driver_err(id, "diff"))?;
    w.flush().map_err(|e| ImageError::io("write", dir, e))?;
    let diff_id = format!("sha256:{}", hex::encode(w.hash.finalize()));
    let mut file = w
        .inner
        .into_inner()
        .map_err(|e| ImageError::io("write", dir, e.into_error()))?;
    file.rewind()
        .map_err(|e| ImageError::io("rewind", dir, e))?;
    Ok(LayerTar {
        file,
        diff_id,
        bytes: w.bytes,
    })
}

/// Replaces `rootfs.diff_ids` in a config (keeping its bytes when nothing changes).
fn config_with_diff_ids(config: &str, old: &[String], new: &[String]) -> Result<String> {
    if old == new {
        return Ok(config.to_string());
    }
    let mut v: Value = serde_json::from_str(config).map_err(|e| ImageError::InvalidImage {
        path: "config".to_string(),
        reason: format!("the recorded config is not JSON: {e}"),
    })?;
    v["rootfs"] = rootfs_value(new.to_vec())?;
    Ok(v.to_string())
}

/// `rootfs` of a config with `diff_ids`, as a JSON value.
fn rootfs_value(diff_ids: Vec<String>) -> Result<Value> {
    serde_json::to_value(RootFs::layers(diff_ids)).map_err(|e| ImageError::InvalidImage {
        path: "config".to_string(),
        reason: format!("cannot serialize rootfs: {e}"),
    })
}

/// RFC 3339 UTC time, to the second, for `secs` since the epoch (what Docker writes in
/// configs), formatted by `humantime`; times past the last second of year 9999 (which RFC
/// 3339 cannot write) are written as that second.
pub fn rfc3339(secs: u64) -> String {
    const LAST: u64 = 253_402_300_799;
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs.min(LAST));
    humantime::format_rfc3339_seconds(t).to_string()
}

/// What [`save`] wrote.
#[derive(Debug, Clone)]
pub struct SaveReport {
    /// Per image: name, image id, diff ids (bottom first).
    pub images: Vec<(String, String, Vec<String>)>,
    /// Bytes of layer tars written.
    pub layer_bytes: u64,
}

/// Writes the images `names` as a `docker save` tarball to `out`: a regular file is written
/// to a temporary name next to it and renamed into place when complete; a device or fifo
/// (`/dev/null`, a pipe) is written in place (see [`ovlink_fs::output`]).
pub fn save(driver: &dyn Driver, store: &Store, names: &[&str], out: &Path) -> Result<SaveReport> {
    let tmp = ovlink_fs::output::OutputFile::create(out, ".ovlink-save-")?;
    // Layer tars are staged beside a regular output (same filesystem, the space it will need
    // anyway); for a device or fifo, in the system's temporary directory, never in `/dev`.
    let tmpdir = std::env::temp_dir();
    let dir = if tmp.is_direct() {
        tmpdir.as_path()
    } else {
        tmp.path()
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."))
    };
    let werr = |e| ImageError::io("write", out, e);
    let mut tarball = TarballWriter::new(io::BufWriter::with_capacity(1 << 20, tmp.file()), 0);
    let mut manifest = Vec::new();
    let mut repositories = Repositories::new();
    let mut written = std::collections::BTreeSet::new();
    let mut report = SaveReport {
        images: Vec::new(),
        layer_bytes: 0,
    };
    for name in names {
        let img = store.image_in(name, driver.name())?;
        let mut diff_ids = Vec::new();
        let mut v1_ids: Vec<String> = Vec::new();
        let mut parent: Option<&str> = None;
        for (i, layer) in img.layers.iter().enumerate() {
            let mut t = diff_to_temp(driver, layer, parent, dir)?;
            ovlink_fs::crash::point("save.layer");
            let hexid = t.diff_id.trim_start_matches("sha256:").to_string();
            if written.insert(hexid.clone()) {
                let v1 = V1LayerJson {
                    id: hexid.clone(),
                    parent: v1_ids.last().cloned(),
                    ..V1LayerJson::default()
                };
                tarball.dir(&format!("{hexid}/")).map_err(werr)?;
                tarball
                    .file(&format!("{hexid}/VERSION"), b"1.0")
                    .map_err(werr)?;
                tarball
                    .file(
                        &format!("{hexid}/json"),
                        &to_json(&v1, out, &format!("{hexid}/json"))?,
                    )
                    .map_err(werr)?;
                tarball
                    .stream(&format!("{hexid}/layer.tar"), &mut t.file, t.bytes)
                    .map_err(werr)?;
                report.layer_bytes += t.bytes;
            }
            v1_ids.push(hexid);
            diff_ids.push(t.diff_id);
            parent = Some(img.layers[i].as_str());
        }
        let config = config_with_diff_ids(&img.config, &img.diff_ids, &diff_ids)?;
        let config_hex = sha256_hex(config.as_bytes());
        tarball
            .file(&format!("{config_hex}.json"), config.as_bytes())
            .map_err(werr)?;
        let (repo, tag) = split_tag(&img.name);
        if let Some(top) = v1_ids.last() {
            repositories
                .entry(repo.to_string())
                .or_default()
                .insert(tag.to_string(), top.clone());
        }
        manifest.push(DockerManifestEntry {
            config: format!("{config_hex}.json"),
            repo_tags: Some(vec![format!("{repo}:{tag}")]),
            layers: v1_ids.iter().map(|id| format!("{id}/layer.tar")).collect(),
        });
        report
            .images
            .push((img.name.clone(), format!("sha256:{config_hex}"), diff_ids));
    }
    tarball
        .file("manifest.json", &to_json(&manifest, out, "manifest.json")?)
        .map_err(werr)?;
    tarball
        .file(
            "repositories",
            &to_json(&repositories, out, "repositories")?,
        )
        .map_err(werr)?;
    drop(tarball.finish().map_err(werr)?);
    tmp.commit(true)?;
    Ok(report)
}

/// The JSON bytes of a wire document for member `member` of `out` (serializing these types
/// cannot fail; the error is still typed rather than unwrapped).
fn to_json<T: serde::Serialize>(doc: &T, out: &Path, member: &str) -> Result<Vec<u8>> {
    serde_json::to_vec(doc).map_err(|e| {
        let shown = format!("{}!{member}", out.display());
        ImageError::io("serialize", shown, e.into())
    })
}

/// What [`commit`] made.
#[derive(Debug, Clone)]
pub struct CommitReport {
    /// The new image's name.
    pub name: String,
    /// Its id (`sha256:` of the new config).
    pub image_id: String,
    /// The new top layer's chain id (its layer id).
    pub layer_id: String,
    /// The diff id of the committed changes.
    pub diff_id: String,
    /// Bytes of the files in the committed layer.
    pub size: u64,
}

/// Turns container `container`'s changes (against its init layer) into a new image layer on
/// top of its image — applied through the normal apply path, so it is a hardlinked `root/` —
/// and records the image as `new_name`.
pub fn commit(
    driver: &dyn Driver,
    store: &Store,
    container: &str,
    new_name: &str,
) -> Result<CommitReport> {
    crate::store::validate_image_name(new_name)?;
    let c = store.container(container)?;
    let img = store.image_in(&c.image, driver.name())?;
    let top = img
        .top_layer()
        .map(str::to_string)
        .ok_or_else(|| ImageError::InvalidImage {
            path: c.image.clone(),
            reason: "the image has no layers".into(),
        })?;
    let dir = store.root().to_path_buf();
    let mut t = diff_to_temp(driver, &c.layer_id, Some(&c.init_layer_id), &dir)?;
    let mut diff_ids = img.diff_ids.clone();
    diff_ids.push(t.diff_id.clone());
    let layer_id = chain_ids(&diff_ids).pop().unwrap_or_default();
    ovlink_fs::crash::point("commit.after-diff");
    // A commit that died before its apply finished left a layer that is not an image layer
    // (and that no record knows): redo it.
    if driver.exists(&layer_id)
        && !matches!(driver.layer_kind(&layer_id), Ok(LayerKind::Image))
        && store.layer(&layer_id)?.is_none()
        && !store.layers_in_use()?.contains(&layer_id)
    {
        driver
            .remove(&layer_id)
            .map_err(driver_err(&layer_id, "remove"))?;
    }
    let size = if driver.exists(&layer_id) {
        driver.diff_size(&layer_id, Some(&top)).unwrap_or(0)
    } else {
        // Built aside and published complete: a failure leaves nothing to remove, and a
        // concurrent commit of the same content (same chain id) that got there first keeps
        // its layer, which is this one's too.
        match driver.create_and_apply(&layer_id, Some(&top), &mut t.file) {
            Ok(size) => size,
            Err(DriverError::LayerExists { .. }) => {
                driver.diff_size(&layer_id, Some(&top)).unwrap_or(0)
            }
            Err(e) => return Err(driver_err(&layer_id, "apply_diff")(e)),
        }
    };
    let mut config: Value =
        serde_json::from_str(&img.config).map_err(|e| ImageError::InvalidImage {
            path: c.image.clone(),
            reason: format!("the recorded config is not JSON: {e}"),
        })?;
    let now = rfc3339(unix_now());
    config["rootfs"] = rootfs_value(diff_ids.clone())?;
    config["created"] = json!(now);
    let entry = json!({ "created": now, "created_by": format!("ovlink container commit {container}"), "comment": "ovlink" });
    match config.get_mut("history").and_then(Value::as_array_mut) {
        Some(h) => h.push(entry),
        None => config["history"] = json!([entry]),
    }
    let config = config.to_string();
    let image_id = format!("sha256:{}", sha256_hex(config.as_bytes()));
    let mut layers = img.layers.clone();
    layers.push(layer_id.clone());
    ovlink_fs::crash::point("commit.before-record");
    store.put_layer(&LayerRecord {
        chain_id: layer_id.clone(),
        diff_id: t.diff_id.clone(),
        parent: Some(top),
        size,
        created: unix_now(),
    })?;
    store.put_image(&ImageRecord {
        name: new_name.to_string(),
        id: image_id.clone(),
        config,
        diff_ids,
        layers,
        created: unix_now(),
        layout: driver.name().to_string(),
    })?;
    Ok(CommitReport {
        name: new_name.to_string(),
        image_id,
        layer_id,
        diff_id: t.diff_id,
        size,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_795_435_200), "2026-11-23T12:00:00Z");
        assert_eq!(rfc3339(u64::MAX), "9999-12-31T23:59:59Z");
    }

    #[test]
    fn config_kept_byte_exact_when_diff_ids_match() {
        let cfg = r#"{"b":1,  "rootfs":{"type":"layers","diff_ids":["sha256:a"]}}"#;
        let ids = vec!["sha256:a".to_string()];
        assert_eq!(config_with_diff_ids(cfg, &ids, &ids).unwrap(), cfg);
        let new = vec!["sha256:b".to_string()];
        let v: Value =
            serde_json::from_str(&config_with_diff_ids(cfg, &ids, &new).unwrap()).unwrap();
        assert_eq!(v["rootfs"]["diff_ids"][0], "sha256:b");
        assert_eq!(v["b"], 1);
    }
}
