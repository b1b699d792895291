//! The `docker save` layout of an archive: `manifest.json` (entries of config + layers +
//! names), `<hex>.json` configs and `<id>/layer.tar` (or, since Docker 25,
//! `blobs/sha256/<hex>`) layers, read into [`ArchiveImage`]s with the digests their member
//! names imply.
//!
//! Member lookup, verification and limits are [`super`]'s; this module only interprets
//! docker-save manifests. It never writes anything (the writer is `save`).

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{
    check_counts, clean_manifest_path, invalid, parse_json, Archive, ArchiveImage, ArchiveLayer,
    ReadConfig,
};
use crate::digest::{parse_sha256, SHA256_PREFIX};
use crate::error::Result;
use crate::wire::DockerManifestEntry;

/// The digest a docker-save member name implies: `<hex>.json` or `blobs/sha256/<hex>`.
fn digest_from_name(path: &str) -> Option<String> {
    let last = path.rsplit('/').next()?;
    if let Some(stem) = last.strip_suffix(".json") {
        return parse_sha256(&format!("{SHA256_PREFIX}{stem}"))
            .map(|h| format!("{SHA256_PREFIX}{h}"));
    }
    let mut it = path.rsplit('/');
    let (hex, alg, blobs) = (it.next()?, it.next()?, it.next()?);
    if blobs == "blobs" && alg == "sha256" {
        return parse_sha256(&format!("{SHA256_PREFIX}{hex}"))
            .map(|h| format!("{SHA256_PREFIX}{h}"));
    }
    None
}

impl Archive {
    /// The images of `manifest.json`, their configs read and verified once each.
    pub(super) fn read_docker_save(&self) -> Result<Vec<ArchiveImage>> {
        let (bytes, _, _) = self.read_json_member("manifest.json", None, "manifest")?;
        let entries: Vec<DockerManifestEntry> = parse_json(&bytes, "manifest.json")?;
        drop(bytes);
        check_counts(
            "manifest.json",
            entries.len(),
            entries
                .iter()
                .map(|e| e.repo_tags.as_ref().map_or(0, Vec::len))
                .sum(),
            entries.iter().map(|e| e.layers.len()).max().unwrap_or(0),
        )?;
        let mut images = Vec::with_capacity(entries.len());
        // Each config member is read, verified and parsed once, however many entries name it.
        let mut configs: BTreeMap<String, ReadConfig> = BTreeMap::new();
        for entry in entries {
            let member = clean_manifest_path(&entry.config)?;
            let (config, config_digest, diff_ids) = match configs.get(&member) {
                Some(c) => c.clone(),
                None => {
                    let expected = digest_from_name(&member);
                    let (config, _, digest) =
                        self.read_json_member(&entry.config, expected.as_deref(), "config")?;
                    let diff_ids = self.parse_config(&config, &entry.config)?;
                    let c = (Arc::new(config), digest, diff_ids);
                    configs.insert(member, c.clone());
                    c
                }
            };
            if diff_ids.len() != entry.layers.len() {
                return Err(invalid(
                    "manifest.json",
                    format!(
                        "{} lists {} layers but its config has {} diff ids",
                        entry.config,
                        entry.layers.len(),
                        diff_ids.len()
                    ),
                ));
            }
            let mut layers = Vec::with_capacity(entry.layers.len());
            for (path, diff_id) in entry.layers.iter().zip(&diff_ids) {
                let (resolved, size) = self.resolve(path)?;
                layers.push(ArchiveLayer {
                    path: path.clone(),
                    blob_digest: digest_from_name(&clean_manifest_path(path)?),
                    resolved,
                    size,
                    diff_id: diff_id.clone(),
                    media_type: None,
                });
            }
            images.push(ArchiveImage {
                repo_tags: entry.repo_tags.unwrap_or_default(),
                config,
                config_digest,
                diff_ids,
                layers,
            });
        }
        Ok(images)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_from_names() {
        let h = "ab".repeat(32);
        assert_eq!(
            digest_from_name(&format!("{h}.json")),
            Some(format!("sha256:{h}"))
        );
        assert_eq!(
            digest_from_name(&format!("blobs/sha256/{h}")),
            Some(format!("sha256:{h}"))
        );
        assert_eq!(digest_from_name(&format!("{h}/layer.tar")), None);
        assert_eq!(digest_from_name("config.json"), None);
    }
}
