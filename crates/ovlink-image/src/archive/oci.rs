//! The OCI image layout of an archive: `oci-layout`, `index.json` (possibly nested indexes,
//! one platform chosen: this host's `linux/<arch>`) and `blobs/sha256/<hex>` manifests,
//! configs and layers, each checked against its descriptor's digest and size.
//!
//! Member lookup, verification and limits are [`super`]'s; this module only interprets OCI
//! documents ([`crate::wire`]). It never writes anything (the writer is
//! `generate`).

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{check_counts, invalid, parse_json, Archive, ArchiveImage, ArchiveLayer, MAX_LAYERS};
use crate::digest::parse_sha256;
use crate::error::Result;
use crate::wire::{self, Descriptor, OciIndex, OciManifest};

/// The docker `GOARCH` name of this host.
fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

impl Archive {
    /// `blobs/sha256/<hex>` of a descriptor, refusing other algorithms and malformed digests.
    fn blob_path(desc: &Descriptor, shown_in: &str) -> Result<String> {
        match parse_sha256(&desc.digest) {
            Some(hex) => Ok(format!("blobs/sha256/{hex}")),
            None => Err(invalid(
                shown_in,
                format!("descriptor digest {:?} is not sha256:<64 hex>", desc.digest),
            )),
        }
    }

    fn read_blob(&self, desc: &Descriptor, shown_in: &str, what: &str) -> Result<Vec<u8>> {
        let path = Self::blob_path(desc, shown_in)?;
        let (bytes, _, _) = self.read_json_member(&path, Some(&desc.digest), what)?;
        if let Some(size) = desc.size {
            if size != bytes.len() as u64 {
                return Err(invalid(
                    &path,
                    format!(
                        "{what} is {} bytes, its descriptor says {size}",
                        bytes.len()
                    ),
                ));
            }
        }
        Ok(bytes)
    }

    /// The images of `index.json`, one per manifest descriptor.
    pub(super) fn read_oci(&self) -> Result<Vec<ArchiveImage>> {
        let (bytes, _, _) = self.read_json_member("index.json", None, "index")?;
        let index: OciIndex = parse_json(&bytes, "index.json")?;
        check_counts(
            "index.json",
            index.manifests.len(),
            index.manifests.len(),
            0,
        )?;
        let mut images = Vec::new();
        let mut configs = BTreeMap::new();
        for desc in &index.manifests {
            let mut tags = Vec::new();
            if let Some(n) = desc.annotations.get(wire::ANNOTATION_IMAGE_NAME) {
                tags.push(n.clone());
            } else if let Some(n) = desc.annotations.get(wire::ANNOTATION_REF_NAME) {
                // A bare tag ("latest") is not a name; a full reference is.
                if n.contains(':') || n.contains('/') {
                    tags.push(n.clone());
                }
            }
            let manifest = self.oci_manifest(desc, "index.json", 0)?;
            images.push(self.oci_image(manifest, tags, &mut configs)?);
        }
        Ok(images)
    }

    /// Follows nested indexes down to one image manifest (this host's platform).
    fn oci_manifest(
        &self,
        desc: &Descriptor,
        shown_in: &str,
        depth: usize,
    ) -> Result<(OciManifest, String)> {
        if depth > 4 {
            return Err(invalid(shown_in, "indexes nested too deep"));
        }
        let path = Self::blob_path(desc, shown_in)?;
        let bytes = self.read_blob(desc, shown_in, "manifest")?;
        let value: serde_json::Value = parse_json(&bytes, &path)?;
        let is_index = value.get("manifests").is_some()
            || matches!(
                desc.media_type.as_deref(),
                Some(wire::OCI_INDEX | wire::DOCKER_MANIFEST_LIST)
            );
        if !is_index {
            let m: OciManifest = parse_json(&bytes, &path)?;
            return Ok((m, path));
        }
        let index: OciIndex = parse_json(&bytes, &path)?;
        let arch = host_arch();
        let candidates: Vec<&Descriptor> = index
            .manifests
            .iter()
            .filter(|d| !matches!(&d.platform, Some(p) if p.os == "unknown"))
            .collect();
        let chosen = candidates
            .iter()
            .find(|d| {
                d.platform
                    .as_ref()
                    .is_some_and(|p| p.os == "linux" && p.architecture == arch)
            })
            .or_else(|| {
                if candidates.len() == 1 {
                    candidates.first()
                } else {
                    None
                }
            })
            .ok_or_else(|| invalid(&path, format!("no manifest for linux/{arch} in this index")))?;
        self.oci_manifest(chosen, &path, depth + 1)
    }

    fn oci_image(
        &self,
        (manifest, path): (OciManifest, String),
        repo_tags: Vec<String>,
        configs: &mut BTreeMap<String, (Arc<Vec<u8>>, Vec<String>)>,
    ) -> Result<ArchiveImage> {
        // Each config blob is read, verified and parsed once, however many manifests name it.
        let (config, diff_ids) = match configs.get(&manifest.config.digest) {
            Some(c) => c.clone(),
            None => {
                let config = self.read_blob(&manifest.config, &path, "config")?;
                let config_path = Self::blob_path(&manifest.config, &path)?;
                let diff_ids = self.parse_config(&config, &config_path)?;
                let c = (Arc::new(config), diff_ids);
                configs.insert(manifest.config.digest.clone(), c.clone());
                c
            }
        };
        if diff_ids.len() > MAX_LAYERS {
            return Err(invalid(
                &path,
                format!(
                    "its config lists {} layers, more than the {MAX_LAYERS} accepted",
                    diff_ids.len()
                ),
            ));
        }
        if diff_ids.len() != manifest.layers.len() {
            return Err(invalid(
                &path,
                format!(
                    "manifest lists {} layers but its config has {} diff ids",
                    manifest.layers.len(),
                    diff_ids.len()
                ),
            ));
        }
        let mut layers = Vec::with_capacity(diff_ids.len());
        for (desc, diff_id) in manifest.layers.iter().zip(&diff_ids) {
            let blob = Self::blob_path(desc, &path)?;
            let (resolved, size) = self.resolve(&blob)?;
            if let Some(expected) = desc.size {
                if expected != size {
                    return Err(invalid(
                        &blob,
                        format!("layer blob is {size} bytes, its descriptor says {expected}"),
                    ));
                }
            }
            layers.push(ArchiveLayer {
                path: blob,
                resolved,
                size,
                blob_digest: Some(desc.digest.clone()),
                diff_id: diff_id.clone(),
                media_type: desc.media_type.clone(),
            });
        }
        Ok(ArchiveImage {
            repo_tags,
            config_digest: manifest.config.digest.clone(),
            config,
            diff_ids,
            layers,
        })
    }
}
