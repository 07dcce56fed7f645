//! A pull: the manifest for a tag or digest (the linux/amd64 entry when it is an index
//! or a Docker manifest list), then its config and layers, each verified against its
//! digest, written as an OCI image layout directory that the image store imports like
//! any other `oci:` layout. Blobs already in the directory are not fetched again, and
//! a half-downloaded one is resumed.

use super::session::{FetchedManifest, Session};
use crate::image::Digest;
use keel_netconf::http::Client;
use serde_json::{json, Value};
use std::path::Path;

/// What to pull: `registry/repository` and a tag or a `sha256:` digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullSpec {
    /// `host[:port]` of the registry.
    pub registry: String,
    /// The repository, e.g. `library/busybox`.
    pub repository: String,
    /// A tag or a `sha256:…` digest.
    pub reference: String,
    /// Plain http instead of https.
    pub insecure: bool,
}

/// What a pull wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pulled {
    /// The digest of the image manifest (the platform's, not the index's).
    pub manifest_digest: String,
    /// Bytes downloaded in this pull (blobs already present are not counted).
    pub downloaded: u64,
}

const INDEX_TYPES: &[&str] = &["application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json"];

fn parse_json(bytes: &[u8], what: &str) -> Result<Value, String> {
    serde_json::from_slice(bytes).map_err(|e| format!("{what} is not valid JSON: {e}"))
}

/// The media type of a manifest: its `mediaType` field, else the served Content-Type.
fn media_type(manifest: &FetchedManifest, value: &Value) -> String {
    value.get("mediaType").and_then(Value::as_str).map_or_else(|| manifest.media_type.clone(), str::to_string)
}

/// The digest of the linux/amd64 manifest in an index.
pub fn pick_platform(index: &Value) -> Result<String, String> {
    let manifests = index.get("manifests").and_then(Value::as_array).ok_or("the index has no manifests")?;
    let found = manifests.iter().find(|m| {
        let platform = m.get("platform");
        let field = |k: &str| platform.and_then(|p| p.get(k)).and_then(Value::as_str);
        field("os") == Some("linux") && field("architecture") == Some("amd64")
    });
    let offered: Vec<String> = manifests
        .iter()
        .filter_map(|m| {
            let p = m.get("platform")?;
            Some(format!("{}/{}", p.get("os")?.as_str()?, p.get("architecture")?.as_str()?))
        })
        .collect();
    let found = found.ok_or_else(|| {
        format!("the image has no linux/amd64 manifest (it offers {})", if offered.is_empty() { "none".into() } else { offered.join(", ") })
    })?;
    found.get("digest").and_then(Value::as_str).map(str::to_string).ok_or_else(|| "an index entry has no digest".into())
}

/// The blobs a manifest names: its config, then its layers, as (digest, size).
pub fn manifest_blobs(manifest: &Value) -> Result<Vec<(String, Option<u64>)>, String> {
    let config = manifest.get("config").ok_or("the manifest has no config")?;
    let layers = manifest.get("layers").and_then(Value::as_array).ok_or("the manifest has no layers")?;
    std::iter::once(config)
        .chain(layers)
        .map(|d| {
            let digest = d.get("digest").and_then(Value::as_str).ok_or("a descriptor has no digest")?;
            Digest::parse(digest)?;
            Ok((digest.to_string(), d.get("size").and_then(Value::as_u64)))
        })
        .collect()
}

/// A config is read into memory whole: refuse one whose descriptor gives no size or a
/// size over the document limit before downloading it (the download stops at that size).
pub fn check_config_size(digest: &str, size: Option<u64>) -> Result<(), String> {
    let max = crate::image::limits::DOCUMENT_MAX;
    match size {
        Some(size) if size <= max => Ok(()),
        Some(size) => Err(format!("config {digest}: {size} bytes, over the {max}-byte limit for JSON documents; refused")),
        None => Err(format!("config {digest}: the manifest gives no size; refused")),
    }
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), String> {
    std::fs::write(path, bytes).map_err(|e| format!("{}: {e}", path.display()))
}

/// Pull `spec` into the OCI layout directory `dir` (created when missing), logging
/// progress with `log`.
pub fn pull_to_layout(client: &mut Client, spec: &PullSpec, dir: &Path, log: &mut dyn FnMut(String)) -> Result<Pulled, String> {
    let name = format!("{}/{}", spec.registry, spec.repository);
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).map_err(|e| format!("{}: {e}", blobs.display()))?;
    let mut session = Session::new(client, &spec.registry, &spec.repository, spec.insecure)?;
    let mut manifest = session.manifest(&spec.reference)?;
    let mut value = parse_json(&manifest.bytes, "the manifest")?;
    if INDEX_TYPES.contains(&media_type(&manifest, &value).as_str()) || value.get("manifests").is_some() {
        let digest = pick_platform(&value)?;
        log(format!("{name}: {} is an index; pulling linux/amd64 {digest}", spec.reference));
        manifest = session.manifest(&digest)?;
        value = parse_json(&manifest.bytes, "the platform manifest")?;
    }
    let manifest_type = media_type(&manifest, &value);
    let wanted = manifest_blobs(&value)?;
    let total: u64 = wanted.iter().filter_map(|(_, s)| *s).sum();
    log(format!("{name}: manifest {}, {} layer(s), {} bytes", manifest.digest, wanted.len() - 1, total));
    let mut downloaded = 0;
    for (i, (digest, size)) in wanted.iter().enumerate() {
        let dest = blobs.join(Digest::parse(digest)?.hex());
        if dest.exists() {
            continue;
        }
        let what = if i == 0 { "config".to_string() } else { format!("layer {i}/{}", wanted.len() - 1) };
        if i == 0 {
            check_config_size(digest, *size)?;
        }
        let mut last_logged = 0;
        session.blob(digest, *size, &dest, &mut |done, total| {
            if done > last_logged {
                log(format!("{name}: {what} {digest}: {done}/{} bytes", total.map_or("?".into(), |t| t.to_string())));
                last_logged = done;
            }
        })?;
        downloaded += std::fs::metadata(&dest).map(|m| m.len()).unwrap_or(0);
    }
    write_file(&blobs.join(Digest::parse(&manifest.digest)?.hex()), &manifest.bytes)?;
    let mut descriptor = json!({ "mediaType": manifest_type, "digest": manifest.digest, "size": manifest.bytes.len() });
    if !spec.reference.starts_with("sha256:") {
        descriptor["annotations"] = json!({ "org.opencontainers.image.ref.name": spec.reference });
    }
    let index = json!({ "schemaVersion": 2, "manifests": [descriptor] });
    write_file(&dir.join("index.json"), index.to_string().as_bytes())?;
    write_file(&dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    Ok(Pulled { manifest_digest: manifest.digest, downloaded })
}
