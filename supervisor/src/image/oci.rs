//! The OCI image JSON documents keel reads (image-spec v1.1): descriptors, the image
//! index, the image manifest and the image config. Unknown fields are ignored, as the
//! spec requires of readers; only what keel uses is kept.

use super::digest::Digest;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Media types keel knows.
pub mod media {
    /// An image index (may list manifests for several platforms).
    pub const INDEX: &str = "application/vnd.oci.image.index.v1+json";
    /// An image manifest.
    pub const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
    /// Docker's manifest list (same shape as an index).
    pub const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
    /// Docker's manifest (same shape as an OCI manifest).
    pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
}

/// The annotation naming a manifest in an OCI layout's index.json (its tag).
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// Points at a blob by digest and size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// What the blob is.
    pub media_type: String,
    /// Its sha256.
    pub digest: Digest,
    /// Its length in bytes.
    pub size: u64,
    /// For index entries: which platform the manifest is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    /// Annotations (the tag lives here in an OCI layout's index.json).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// The platform of a manifest in an index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    /// `amd64`, `arm64`, …
    pub architecture: String,
    /// `linux`, …
    pub os: String,
    /// `v8`, …
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

/// An image index (also an OCI layout's index.json).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    /// 2.
    pub schema_version: u32,
    /// The manifests (or nested indexes).
    pub manifests: Vec<Descriptor>,
}

/// An image manifest: one config and the layers, bottom first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// 2.
    pub schema_version: u32,
    /// The image config blob.
    pub config: Descriptor,
    /// Layer blobs, bottom first.
    pub layers: Vec<Descriptor>,
}

/// The image config blob: what runs, and the uncompressed layer digests.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageConfig {
    /// Must be `amd64` for keel's hosts.
    #[serde(default)]
    pub architecture: String,
    /// Must be `linux`.
    #[serde(default)]
    pub os: String,
    /// The process defaults.
    #[serde(default)]
    pub config: Option<ProcessConfig>,
    /// diff_ids: the sha256 of each layer's uncompressed tar.
    pub rootfs: RootFs,
}

/// `rootfs` of the image config.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootFs {
    /// `layers`.
    #[serde(rename = "type", default)]
    pub kind: String,
    /// One per layer, bottom first.
    pub diff_ids: Vec<Digest>,
}

/// `config` of the image config: the defaults a container declaration overrides.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ProcessConfig {
    /// The program (and leading arguments).
    #[serde(default)]
    pub entrypoint: Option<Vec<String>>,
    /// Arguments after the entrypoint (or the whole command without one).
    #[serde(default)]
    pub cmd: Option<Vec<String>>,
    /// `KEY=VALUE` strings.
    #[serde(default)]
    pub env: Option<Vec<String>>,
    /// Working directory.
    #[serde(default)]
    pub working_dir: Option<String>,
    /// `uid[:gid]` or a name.
    #[serde(default)]
    pub user: Option<String>,
    /// `"80/tcp": {}`.
    #[serde(default)]
    pub exposed_ports: Option<BTreeMap<String, serde_json::Value>>,
}

/// Is this descriptor a nested index (or a Docker manifest list)?
pub fn is_index(media_type: &str) -> bool {
    media_type == media::INDEX || media_type == media::DOCKER_LIST
}

/// From an index, the manifest to use: the one tagged `tag` when asked, then the
/// linux/amd64 one; an untagged single-manifest index gives that manifest.
pub fn pick_manifest<'a>(index: &'a Index, tag: Option<&str>) -> Result<&'a Descriptor, String> {
    let candidates: Vec<&Descriptor> = match tag {
        Some(tag) => index.manifests.iter().filter(|d| d.annotations.get(REF_NAME).map(String::as_str) == Some(tag)).collect(),
        None => index.manifests.iter().collect(),
    };
    if candidates.is_empty() {
        let tags: Vec<&str> = index.manifests.iter().filter_map(|d| d.annotations.get(REF_NAME).map(String::as_str)).collect();
        return Err(format!("no manifest tagged {:?} (tags: {})", tag.unwrap_or(""), tags.join(", ")));
    }
    if candidates.len() == 1 {
        return Ok(candidates[0]);
    }
    let amd64: Vec<&Descriptor> =
        candidates.iter().copied().filter(|d| d.platform.as_ref().is_some_and(|p| p.os == "linux" && p.architecture == "amd64")).collect();
    match amd64.as_slice() {
        [one] => Ok(one),
        [] => Err(format!("{} manifests and none for linux/amd64", candidates.len())),
        _ => Err(format!("{} manifests for linux/amd64; name one with a tag", amd64.len())),
    }
}

/// The config must be for linux/amd64 and name one diff_id per layer.
pub fn check_config(config: &ImageConfig, manifest: &Manifest) -> Result<(), String> {
    if (!config.os.is_empty() && config.os != "linux") || (!config.architecture.is_empty() && config.architecture != "amd64") {
        return Err(format!("image is for {}/{}, this host runs linux/amd64", config.os, config.architecture));
    }
    if config.rootfs.diff_ids.len() != manifest.layers.len() {
        return Err(format!("config lists {} diff_ids for {} layers", config.rootfs.diff_ids.len(), manifest.layers.len()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desc(n: u8, platform: Option<(&str, &str)>, tag: Option<&str>) -> Descriptor {
        Descriptor {
            media_type: media::MANIFEST.into(),
            digest: Digest::of(&[n]),
            size: 1,
            platform: platform.map(|(os, arch)| Platform { os: os.into(), architecture: arch.into(), variant: None }),
            annotations: tag.map(|t| [(REF_NAME.to_string(), t.to_string())].into()).unwrap_or_default(),
        }
    }

    #[test]
    fn picks_linux_amd64_from_a_multi_platform_index() {
        let index =
            Index { schema_version: 2, manifests: vec![desc(1, Some(("linux", "arm64")), None), desc(2, Some(("linux", "amd64")), None)] };
        assert_eq!(pick_manifest(&index, None).unwrap().digest, Digest::of(&[2]));
        let none = Index {
            schema_version: 2,
            manifests: vec![desc(1, Some(("linux", "arm64")), None), desc(3, Some(("windows", "amd64")), None)],
        };
        assert!(pick_manifest(&none, None).unwrap_err().contains("none for linux/amd64"));
    }

    #[test]
    fn picks_by_tag() {
        let index = Index { schema_version: 2, manifests: vec![desc(1, None, Some("a")), desc(2, None, Some("b"))] };
        assert_eq!(pick_manifest(&index, Some("b")).unwrap().digest, Digest::of(&[2]));
        assert!(pick_manifest(&index, Some("c")).unwrap_err().contains("tags: a, b"));
    }

    #[test]
    fn reads_a_config_with_unknown_fields() {
        let text = r#"{"architecture":"amd64","os":"linux","created":"x","config":{"Entrypoint":["/bin/sh"],"Env":["A=1"],"ExposedPorts":{"80/tcp":{}}},"rootfs":{"type":"layers","diff_ids":[]}}"#;
        let config: ImageConfig = serde_json::from_str(text).unwrap();
        assert_eq!(config.config.unwrap().entrypoint.unwrap(), ["/bin/sh"]);
    }
}
