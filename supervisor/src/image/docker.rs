//! `docker save` archives: files named by path, not by digest. keel stores each file by
//! its computed digest, checks the config against the digest its file name carries and
//! each uncompressed layer against the config's diff_ids, and writes an OCI manifest
//! for them, so the rest of the store sees an ordinary OCI image.

use super::digest::{Digest, HashingReader};
use super::error::ImageError;
use super::import::{parse_json, read_document, walk_tar, Fetched};
use super::oci::{media, Descriptor, ImageConfig, Manifest};
use super::store::Store;
use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::Path;

/// One entry of the archive's manifest.json (crate-visible for the fuzz targets).
#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct DockerEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

/// The archive's small JSON files by name, and every other file stored as a blob.
struct Contents {
    json: BTreeMap<String, Vec<u8>>,
    blobs: BTreeMap<String, (Digest, u64)>,
}

/// Import the docker archive `file`'s blobs into `store` and write its OCI manifest.
pub fn fetch(store: &Store, file: &Path) -> Result<Fetched, ImageError> {
    let origin = file.display().to_string();
    let contents = read(store, file)?;
    let manifest_bytes =
        contents.json.get("manifest.json").ok_or_else(|| ImageError::invalid(&origin, "no manifest.json: not a docker archive"))?;
    let entries: Vec<DockerEntry> = parse_json(manifest_bytes, "docker manifest", file)?;
    let [entry] = entries.as_slice() else {
        return Err(ImageError::invalid(&origin, format!("{} images in the archive; keel loads one", entries.len())));
    };
    let (config, image_config) = config(store, &contents, entry, file)?;
    let mut layers = Vec::new();
    for (i, path) in entry.layers.iter().enumerate() {
        let (digest, size) =
            contents.blobs.get(path).cloned().ok_or_else(|| ImageError::invalid(&origin, format!("layer {path} is not in the archive")))?;
        check_uncompressed(store, &digest, image_config.rootfs.diff_ids.get(i), &format!("{origin} ({path})"))?;
        layers.push(Descriptor {
            media_type: "application/vnd.oci.image.layer.v1.tar".into(),
            digest,
            size,
            platform: None,
            annotations: Default::default(),
        });
    }
    let manifest = Manifest { schema_version: 2, config, layers };
    let mut doc = serde_json::to_value(&manifest).unwrap_or_default();
    doc["mediaType"] = media::MANIFEST.into();
    let digest = store.put_bytes(&serde_json::to_vec(&doc).unwrap_or_default())?;
    Ok(Fetched { manifest: digest, tags: entry.repo_tags.clone().unwrap_or_default() })
}

fn read(store: &Store, file: &Path) -> Result<Contents, ImageError> {
    let mut contents = Contents { json: BTreeMap::new(), blobs: BTreeMap::new() };
    let tmp = store.root().join("tmp").join(format!("docker-{}", std::process::id()));
    let walked = walk_tar(file, |name, entry| {
        if name.ends_with(".json") && entry.header().entry_type().is_file() {
            let bytes = read_document(entry, store, "JSON document", &file.join(name))?;
            contents.json.insert(name.to_string(), bytes);
        } else if entry.header().entry_type().is_file() {
            contents.blobs.insert(name.to_string(), store_unnamed(store, &tmp, entry)?);
        }
        Ok(())
    });
    if walked.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    walked?;
    Ok(contents)
}

/// The config, checked against the digest in its file name, stored as a blob.
fn config(store: &Store, contents: &Contents, entry: &DockerEntry, file: &Path) -> Result<(Descriptor, ImageConfig), ImageError> {
    let origin = file.display().to_string();
    let bytes = match (contents.json.get(&entry.config), contents.blobs.get(&entry.config)) {
        (Some(bytes), _) => bytes.clone(),
        (None, Some((digest, _))) => {
            let path = store.blob_path(digest);
            read_document(fs::File::open(&path).map_err(ImageError::io("open", &path))?, store, "image config", &file.join(&entry.config))?
        }
        (None, None) => return Err(ImageError::invalid(&origin, format!("config {} is not in the archive", entry.config))),
    };
    let digest = Digest::of(&bytes);
    if let Some(named) = name_digest(&entry.config).filter(|n| n != &digest) {
        return Err(ImageError::DigestMismatch { expected: named, actual: digest, origin: format!("{origin} ({})", entry.config) });
    }
    let image_config: ImageConfig = parse_json(&bytes, "image config", file)?;
    store.put_bytes(&bytes)?;
    let descriptor = Descriptor {
        media_type: "application/vnd.oci.image.config.v1+json".into(),
        digest,
        size: bytes.len() as u64,
        platform: None,
        annotations: Default::default(),
    };
    Ok((descriptor, image_config))
}

/// An uncompressed layer's digest is its diff_id: check it now, so a corrupt layer is
/// reported even when that diff_id is already unpacked in the store.
fn check_uncompressed(store: &Store, digest: &Digest, diff_id: Option<&Digest>, origin: &str) -> Result<(), ImageError> {
    let gzip = fs::File::open(store.blob_path(digest)).and_then(|mut f| {
        let mut magic = [0u8; 2];
        f.read_exact(&mut magic).map(|_| magic == [0x1f, 0x8b])
    });
    match (diff_id, gzip) {
        (Some(diff_id), Ok(false)) if diff_id != digest => {
            Err(ImageError::DigestMismatch { expected: diff_id.clone(), actual: digest.clone(), origin: origin.into() })
        }
        _ => Ok(()),
    }
}

/// `HEX.json` or `blobs/sha256/HEX`: the digest a config file is named by.
fn name_digest(name: &str) -> Option<Digest> {
    let base = name.rsplit('/').next()?;
    Digest::from_hex(base.strip_suffix(".json").unwrap_or(base)).ok()
}

/// Store a blob whose digest is not known in advance (a layer tar).
fn store_unnamed(store: &Store, tmp: &Path, reader: impl Read) -> Result<(Digest, u64), ImageError> {
    let mut hashing = HashingReader::new(reader);
    let mut out = fs::File::create(tmp).map_err(ImageError::io("create", tmp))?;
    std::io::copy(&mut hashing, &mut out).map_err(ImageError::io("write", tmp))?;
    let (digest, size) = hashing.finish().map_err(ImageError::io("read", tmp))?;
    let path = store.blob_path(&digest);
    fs::rename(tmp, &path).map_err(ImageError::io("rename into", path))?;
    Ok((digest, size))
}
