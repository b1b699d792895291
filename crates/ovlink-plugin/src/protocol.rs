//! The JSON shapes of the graphdriver plugin protocol. Requests default every field (dockerd
//! omits empty ones, sends `null` for empty lists, and `{}` or nothing at all for no
//! arguments); responses omit empty fields the way Go's `omitempty` does.
//!
//! This module only converts shapes; it never calls the driver.

use ovlink_driver::{Change, IdMap};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The content type of JSON answers.
pub const JSON_CONTENT_TYPE: &str = "application/vnd.docker.plugins.v1+json";

/// The `Accept` header dockerd sends.
pub const ACCEPT: &str = "application/vnd.docker.plugins.v1.2+json";

/// `/Plugin.Activate`'s answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Activate {
    /// The subsystems implemented: `["GraphDriver"]`.
    #[serde(rename = "Implements")]
    pub implements: Vec<String>,
}

/// `/GraphDriver.Init`'s request.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct InitRequest {
    /// The driver home, `<data-root>/<plugin name>`.
    #[serde(rename = "Home", default)]
    pub home: Option<String>,
    /// Driver options (`--storage-opt` of the daemon).
    #[serde(rename = "Opts", default)]
    pub opts: Option<Vec<String>>,
    /// UID maps of `--userns-remap`.
    #[serde(rename = "UIDMaps", default)]
    pub uid_maps: Option<Vec<IdMap>>,
    /// GID maps of `--userns-remap`.
    #[serde(rename = "GIDMaps", default)]
    pub gid_maps: Option<Vec<IdMap>>,
}

/// The request of every other JSON call (all fields optional).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
pub struct LayerRequest {
    /// The layer id.
    #[serde(rename = "ID", default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The parent layer id.
    #[serde(rename = "Parent", default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// SELinux mount label.
    #[serde(
        rename = "MountLabel",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub mount_label: Option<String>,
    /// `--storage-opt` of `docker run`/`create`.
    #[serde(
        rename = "StorageOpt",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub storage_opt: Option<BTreeMap<String, String>>,
}

impl LayerRequest {
    /// The id, empty when omitted.
    pub fn id(&self) -> &str {
        self.id.as_deref().unwrap_or("")
    }

    /// The parent, `None` when omitted or empty.
    pub fn parent(&self) -> Option<&str> {
        non_empty(self.parent.as_deref())
    }

    /// The mount label, `None` when omitted or empty.
    pub fn mount_label(&self) -> Option<&str> {
        non_empty(self.mount_label.as_deref())
    }
}

/// `None` for a missing or empty string.
pub fn non_empty(s: Option<&str>) -> Option<&str> {
    s.filter(|s| !s.is_empty())
}

/// Parses a JSON request body; an empty body is `{}`.
pub fn parse<T: for<'de> Deserialize<'de> + Default>(body: &[u8]) -> Result<T, String> {
    if body.iter().all(|b| b.is_ascii_whitespace()) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| format!("invalid JSON request: {e}"))
}

/// One entry of `Changes` on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireChange {
    /// Absolute path.
    #[serde(rename = "Path")]
    pub path: String,
    /// 0 modified, 1 added, 2 deleted.
    #[serde(rename = "Kind")]
    pub kind: u8,
}

impl From<&Change> for WireChange {
    fn from(c: &Change) -> Self {
        WireChange {
            path: c.path.clone(),
            kind: c.kind.wire(),
        }
    }
}

/// `Capabilities` as dockerd reads it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capabilities {
    /// Whether `Diff` reproduces the exact tar that was applied (ovlink: no).
    #[serde(rename = "ReproducesExactDiffs")]
    pub reproduces_exact_diffs: bool,
}

/// Every answer of the JSON calls; empty fields are omitted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    /// The error, non-empty on failure.
    #[serde(rename = "Err", default, skip_serializing_if = "String::is_empty")]
    pub err: String,
    /// `Get`: the directory to use.
    #[serde(rename = "Dir", default, skip_serializing_if = "Option::is_none")]
    pub dir: Option<String>,
    /// `Exists`.
    #[serde(rename = "Exists", default, skip_serializing_if = "is_false")]
    pub exists: bool,
    /// `Status`: key/value pairs.
    #[serde(rename = "Status", default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Vec<[String; 2]>>,
    /// `Changes`.
    #[serde(rename = "Changes", default, skip_serializing_if = "Option::is_none")]
    pub changes: Option<Vec<WireChange>>,
    /// `ApplyDiff` / `DiffSize`.
    #[serde(rename = "Size", default, skip_serializing_if = "is_zero")]
    pub size: u64,
    /// `GetMetadata`.
    #[serde(rename = "Metadata", default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<BTreeMap<String, String>>,
    /// `Capabilities`.
    #[serde(
        rename = "Capabilities",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub capabilities: Option<Capabilities>,
}

impl Response {
    /// An error answer.
    pub fn error(msg: impl Into<String>) -> Self {
        Response {
            err: msg.into(),
            ..Default::default()
        }
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn empty_and_null_requests_default() {
        let r: LayerRequest = parse(b"").unwrap();
        assert_eq!(r.id(), "");
        let r: LayerRequest = parse(b"{}").unwrap();
        assert!(r.parent().is_none());
        let r: LayerRequest = parse(br#"{"ID":"a","Parent":"","StorageOpt":null}"#).unwrap();
        assert_eq!(r.id(), "a");
        assert!(r.parent().is_none());
        let i: InitRequest =
            parse(br#"{"Home":"/h","Opts":null,"UIDMaps":[{"container_id":0,"host_id":100000,"size":65536}],"GIDMaps":null}"#)
                .unwrap();
        assert_eq!(i.uid_maps.unwrap()[0].host_id, 100000);
        assert!(i.opts.is_none());
    }

    #[test]
    fn responses_omit_empty_fields() {
        assert_eq!(serde_json::to_string(&Response::default()).unwrap(), "{}");
        let r = Response {
            exists: true,
            ..Default::default()
        };
        assert_eq!(serde_json::to_string(&r).unwrap(), r#"{"Exists":true}"#);
        let r = Response {
            capabilities: Some(Capabilities::default()),
            ..Default::default()
        };
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"Capabilities":{"ReproducesExactDiffs":false}}"#
        );
    }
}
