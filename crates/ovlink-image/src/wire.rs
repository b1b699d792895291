//! The JSON documents of image archives, typed once and used both ways: the reader
//! (`archive`) parses them, the writers (`save`, `generate`)
//! serialize them. Field names are the exact wire names (`Config`, `RepoTags`, `Layers`;
//! OCI `schemaVersion`, `mediaType`, ...), in the order Docker and the OCI spec write them.
//!
//! The image config itself is not typed here beyond [`RootFs`]: it stays a
//! `serde_json::Value` (or raw bytes) so that fields this crate does not know round-trip
//! unchanged. This module only describes documents (and [`split_tag`], the `repo:tag` split
//! they share); it never reads or writes anything.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `mediaType` of an OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// `mediaType` of an OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// `mediaType` of a Docker manifest list (an index, as registries serve Docker images).
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// `mediaType` of an OCI image config.
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
/// `mediaType` of an uncompressed OCI layer.
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
/// `mediaType` of a gzip-compressed OCI layer.
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// `mediaType` of a zstd-compressed OCI layer.
pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
/// The annotation containerd (and `docker save` since 25) names an image with.
pub const ANNOTATION_IMAGE_NAME: &str = "io.containerd.image.name";
/// The OCI annotation naming a manifest's reference (often a bare tag).
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";

/// One entry of a docker-save `manifest.json` (the file is a JSON array of them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DockerManifestEntry {
    /// The config member (`<hex>.json` or `blobs/sha256/<hex>`).
    #[serde(rename = "Config")]
    pub config: String,
    /// The image's names (`repo:tag`); `null` or absent for an untagged image.
    #[serde(rename = "RepoTags", default)]
    pub repo_tags: Option<Vec<String>>,
    /// The layer members, bottom first.
    #[serde(rename = "Layers")]
    pub layers: Vec<String>,
}

/// A docker-save `repositories` file: repository → tag → top layer's v1 id (hex).
pub type Repositories = BTreeMap<String, BTreeMap<String, String>>;

/// The legacy (v1) `<id>/json` of a docker-save layer directory. `docker load` reads only
/// `manifest.json`; these are kept for older tools.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct V1LayerJson {
    /// The v1 id (hex), the directory's name.
    pub id: String,
    /// The v1 id of the layer below.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// When the layer was made (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// What made it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_config: Option<V1ContainerConfig>,
    /// The operating system.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub os: Option<String>,
}

/// `container_config` of a [`V1LayerJson`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct V1ContainerConfig {
    /// The command that made the layer.
    #[serde(rename = "Cmd")]
    pub cmd: Vec<String>,
}

/// `rootfs` of an image config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootFs {
    /// Always `layers`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The uncompressed layer digests, bottom first.
    #[serde(default)]
    pub diff_ids: Vec<String>,
}

impl RootFs {
    /// `{"type": "layers", "diff_ids": diff_ids}`.
    pub fn layers(diff_ids: Vec<String>) -> RootFs {
        RootFs {
            kind: "layers".to_string(),
            diff_ids,
        }
    }
}

/// The part of an image config the reader needs (everything else is kept as raw bytes).
#[derive(Debug, Clone, Deserialize)]
pub struct ImageConfigRootFs {
    /// The config's `rootfs`.
    pub rootfs: RootFs,
}

/// An OCI `platform` object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    /// GOARCH name (`amd64`, `arm64`, ...).
    #[serde(default)]
    pub architecture: String,
    /// GOOS name (`linux`; `unknown` for attestation manifests).
    #[serde(default)]
    pub os: String,
}

/// An OCI content descriptor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Descriptor {
    /// The media type of the content.
    #[serde(rename = "mediaType", default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// `sha256:<hex>` of the content.
    pub digest: String,
    /// Size of the content in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// Annotations (image names in an index).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// The platform of a manifest in an index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
}

impl Descriptor {
    /// A descriptor of `size` bytes of `media_type` content with digest `digest`.
    pub fn new(media_type: &str, digest: String, size: u64) -> Descriptor {
        Descriptor {
            media_type: Some(media_type.to_string()),
            digest,
            size: Some(size),
            annotations: BTreeMap::new(),
            platform: None,
        }
    }
}

/// An OCI image index (`index.json`, or a nested index blob).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OciIndex {
    /// Always 2.
    #[serde(rename = "schemaVersion", default = "schema_version")]
    pub schema_version: u32,
    /// [`OCI_INDEX`] when given.
    #[serde(rename = "mediaType", default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// The manifests (or nested indexes).
    #[serde(default)]
    pub manifests: Vec<Descriptor>,
}

/// An OCI image manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OciManifest {
    /// Always 2.
    #[serde(rename = "schemaVersion", default = "schema_version")]
    pub schema_version: u32,
    /// [`OCI_MANIFEST`] when given.
    #[serde(rename = "mediaType", default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    /// The image config.
    pub config: Descriptor,
    /// The layers, bottom first.
    #[serde(default)]
    pub layers: Vec<Descriptor>,
}

/// The `oci-layout` file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OciLayout {
    /// `1.0.0`.
    #[serde(rename = "imageLayoutVersion")]
    pub image_layout_version: String,
}

impl Default for OciLayout {
    fn default() -> Self {
        OciLayout {
            image_layout_version: "1.0.0".to_string(),
        }
    }
}

/// `repo` and `tag` of an image name, as `RepoTags` and `repositories` hold them (`a/b:c`
/// → `a/b`, `c`; no tag → `latest`; a registry port is not a tag).
pub fn split_tag(name: &str) -> (&str, &str) {
    match name.rfind(':') {
        Some(i) if !name[i..].contains('/') => (&name[..i], &name[i + 1..]),
        _ => (name, "latest"),
    }
}

fn schema_version() -> u32 {
    2
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn split_tag_handles_registries() {
        assert_eq!(split_tag("a/b:c"), ("a/b", "c"));
        assert_eq!(
            split_tag("localhost:5000/x"),
            ("localhost:5000/x", "latest")
        );
        assert_eq!(split_tag("x"), ("x", "latest"));
    }

    /// The wire names, both ways.
    #[test]
    fn docker_manifest_wire_names() {
        let e = DockerManifestEntry {
            config: "c.json".into(),
            repo_tags: Some(vec!["a:b".into()]),
            layers: vec!["l/layer.tar".into()],
        };
        let s = serde_json::to_string(&[&e]).unwrap();
        assert_eq!(
            s,
            r#"[{"Config":"c.json","RepoTags":["a:b"],"Layers":["l/layer.tar"]}]"#
        );
        let back: Vec<DockerManifestEntry> = serde_json::from_str(&s).unwrap();
        assert_eq!(back, vec![e]);
        let untagged: DockerManifestEntry =
            serde_json::from_str(r#"{"Config":"c","RepoTags":null,"Layers":[]}"#).unwrap();
        assert_eq!(untagged.repo_tags, None);
    }

    #[test]
    fn oci_wire_names() {
        let m = OciManifest {
            schema_version: 2,
            media_type: Some(OCI_MANIFEST.into()),
            config: Descriptor::new(OCI_CONFIG, "sha256:c".into(), 3),
            layers: vec![Descriptor::new(OCI_LAYER_GZIP, "sha256:l".into(), 9)],
        };
        let v: serde_json::Value = serde_json::to_value(&m).unwrap();
        assert_eq!(v["schemaVersion"], 2);
        assert_eq!(v["mediaType"], OCI_MANIFEST);
        assert_eq!(v["config"]["mediaType"], OCI_CONFIG);
        assert_eq!(v["layers"][0]["size"], 9);
        assert!(v["config"].get("annotations").is_none());
        assert_eq!(serde_json::from_value::<OciManifest>(v).unwrap(), m);
        let bare: OciIndex = serde_json::from_str(r#"{"manifests":[]}"#).unwrap();
        assert_eq!(bare.schema_version, 2);
        assert_eq!(
            serde_json::to_string(&OciLayout::default()).unwrap(),
            r#"{"imageLayoutVersion":"1.0.0"}"#
        );
        let v1 = V1LayerJson {
            id: "a".into(),
            parent: Some("b".into()),
            ..V1LayerJson::default()
        };
        assert_eq!(
            serde_json::to_string(&v1).unwrap(),
            r#"{"id":"a","parent":"b"}"#
        );
    }
}
