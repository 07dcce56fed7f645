//! The content-addressed image store, `/var/lib/keel/images`:
//!
//! ```text
//! blobs/sha256/HEX    every blob (manifests, configs, compressed layers), verified on entry
//! layers/HEX          each layer unpacked once, by diff_id, as an overlayfs lower directory
//! refs.json           reference name → manifest digest
//! tmp/                blobs and layers being written (renamed into place when verified)
//! ```
//!
//! Anything that has bytes of a blob (an archive reader, an OCI layout, a registry
//! client) hands them to [`Store::put_blob`], which refuses content whose sha256 is not
//! the expected digest; [`Store::import_manifest`] then checks the manifest and config,
//! unpacks the layers not yet unpacked (checking each against its diff_id) and names it.

use super::digest::{Digest, HashingReader};
use super::error::ImageError;
use super::layer::{self, Options, Target};
use super::oci::{check_config, ImageConfig, Manifest};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};

/// Where PID 1 keeps images.
pub const DEFAULT_ROOT: &str = "/var/lib/keel/images";

/// One name in refs.json.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefEntry {
    /// The image's manifest.
    pub manifest: Digest,
    /// For file sources: size and mtime of the file when imported (re-import on change).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stamp: Option<String>,
}

/// An image ready to run: its layers top first and its config.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The manifest digest (the image's identity).
    pub manifest: Digest,
    /// Unpacked layer directories, top first (overlayfs lowerdir order).
    pub lowers: Vec<PathBuf>,
    /// The image config.
    pub config: ImageConfig,
}

/// A store rooted at a directory.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

impl Store {
    /// Open (creating its directories) the store at `root`.
    pub fn open(root: impl Into<PathBuf>) -> Result<Store, ImageError> {
        let root = root.into();
        for dir in ["blobs/sha256", "layers", "tmp"] {
            let path = root.join(dir);
            fs::create_dir_all(&path).map_err(ImageError::io("create", path))?;
        }
        Ok(Store { root })
    }

    /// The store's directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where a blob lives.
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(digest.hex())
    }

    /// Where a layer is unpacked.
    pub fn layer_path(&self, diff_id: &Digest) -> PathBuf {
        self.root.join("layers").join(diff_id.hex())
    }

    /// Is this blob in the store?
    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    /// Store the blob `expected` from `reader`, verifying its sha256 (and its size when
    /// given) before it is renamed into place. `origin` names where it came from in errors.
    pub fn put_blob(&self, expected: &Digest, size: Option<u64>, reader: impl Read, origin: &str) -> Result<u64, ImageError> {
        let tmp = self.root.join("tmp").join(format!("blob-{}-{}", expected.hex(), std::process::id()));
        let result = self.write_blob(&tmp, expected, size, reader, origin);
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    fn write_blob(&self, tmp: &Path, expected: &Digest, size: Option<u64>, reader: impl Read, origin: &str) -> Result<u64, ImageError> {
        let mut file = fs::File::create(tmp).map_err(ImageError::io("create", tmp))?;
        let mut hashing = HashingReader::new(reader);
        std::io::copy(&mut hashing, &mut file).map_err(ImageError::io("write", tmp))?;
        let (actual, count) = hashing.finish().map_err(ImageError::io("read blob for", tmp))?;
        if &actual != expected {
            return Err(ImageError::DigestMismatch { expected: expected.clone(), actual, origin: origin.into() });
        }
        if let Some(size) = size.filter(|s| *s != count) {
            return Err(ImageError::SizeMismatch { digest: expected.clone(), expected: size, actual: count, origin: origin.into() });
        }
        file.sync_all().map_err(ImageError::io("sync", tmp))?;
        let path = self.blob_path(expected);
        fs::rename(tmp, &path).map_err(ImageError::io("rename into", path))?;
        Ok(count)
    }

    /// Like [`Store::put_blob`], but a blob already in the store is only checked (its
    /// bytes are hashed, not written): a corrupt source is reported even when the store
    /// already holds a good copy.
    pub fn put_or_verify(&self, expected: &Digest, size: Option<u64>, reader: impl Read, origin: &str) -> Result<u64, ImageError> {
        if !self.has_blob(expected) {
            return self.put_blob(expected, size, reader, origin);
        }
        let (actual, count) = HashingReader::new(reader).finish().map_err(|source| ImageError::Io { what: "read blob", path: PathBuf::from(origin), source })?;
        if &actual != expected {
            return Err(ImageError::DigestMismatch { expected: expected.clone(), actual, origin: origin.into() });
        }
        if let Some(size) = size.filter(|s| *s != count) {
            return Err(ImageError::SizeMismatch { digest: expected.clone(), expected: size, actual: count, origin: origin.into() });
        }
        Ok(count)
    }

    /// Store bytes whose digest is computed here (documents keel writes itself, such as
    /// the manifest it builds for a docker archive).
    pub fn put_bytes(&self, bytes: &[u8]) -> Result<Digest, ImageError> {
        let digest = Digest::of(bytes);
        if !self.has_blob(&digest) {
            self.put_blob(&digest, Some(bytes.len() as u64), bytes, "keel")?;
        }
        Ok(digest)
    }

    /// Read and parse a JSON blob.
    pub fn read_json<T: serde::de::DeserializeOwned>(&self, digest: &Digest, what: &'static str) -> Result<T, ImageError> {
        let path = self.blob_path(digest);
        let bytes = fs::read(&path).map_err(|_| ImageError::MissingBlob { digest: digest.clone(), origin: "the image store".into() })?;
        serde_json::from_slice(&bytes).map_err(|e| ImageError::Json { what, origin: digest.to_string(), message: e.to_string() })
    }

    /// Check a manifest whose blobs are all in the store, unpack its layers, and give
    /// it the `names` (with the source `stamp`). Returns what a container start needs.
    pub fn import_manifest(&self, manifest: &Digest, names: &[String], stamp: Option<String>) -> Result<Resolved, ImageError> {
        let resolved = self.unpack(manifest)?;
        let mut refs = self.refs()?;
        for name in names {
            refs.insert(name.clone(), RefEntry { manifest: manifest.clone(), stamp: stamp.clone() });
        }
        self.write_refs(&refs)?;
        Ok(resolved)
    }

    /// The manifest and config of an image in the store, checked.
    pub fn manifest_and_config(&self, manifest: &Digest) -> Result<(Manifest, ImageConfig), ImageError> {
        let m: Manifest = self.read_json(manifest, "manifest")?;
        for desc in std::iter::once(&m.config).chain(&m.layers) {
            if !self.has_blob(&desc.digest) {
                return Err(ImageError::MissingBlob { digest: desc.digest.clone(), origin: format!("image {manifest}") });
            }
        }
        let config: ImageConfig = self.read_json(&m.config.digest, "image config")?;
        check_config(&config, &m).map_err(|e| ImageError::invalid(manifest, e))?;
        Ok((m, config))
    }

    /// Unpack every layer of `manifest` not unpacked yet; layers top first.
    pub fn unpack(&self, manifest: &Digest) -> Result<Resolved, ImageError> {
        let (m, config) = self.manifest_and_config(manifest)?;
        let mut below: Vec<PathBuf> = Vec::new();
        for (desc, diff_id) in m.layers.iter().zip(&config.rootfs.diff_ids) {
            let dir = self.layer_path(diff_id);
            if !dir.is_dir() {
                self.unpack_layer(&desc.digest, diff_id, &below)?;
            }
            below.insert(0, dir);
        }
        Ok(Resolved { manifest: manifest.clone(), lowers: below, config })
    }

    fn unpack_layer(&self, blob: &Digest, diff_id: &Digest, lowers: &[PathBuf]) -> Result<(), ImageError> {
        let tmp = self.root.join("tmp").join(format!("layer-{}-{}", diff_id.hex(), std::process::id()));
        let _ = fs::remove_dir_all(&tmp);
        fs::create_dir(&tmp).map_err(ImageError::io("create", &tmp))?;
        let options = Options { allow_devices: false, same_owner: nix::unistd::geteuid().is_root() };
        let result = apply_blob(self, blob, diff_id, &tmp, Target::Overlay { lowers }, options);
        if let Err(e) = result {
            let _ = fs::remove_dir_all(&tmp);
            return Err(e);
        }
        let dir = self.layer_path(diff_id);
        match fs::rename(&tmp, &dir) {
            // Another process (a concurrent `keel run`) unpacked the same layer first.
            Err(_) if dir.is_dir() => {
                let _ = fs::remove_dir_all(&tmp);
                Ok(())
            }
            result => result.map_err(ImageError::io("rename into", dir)),
        }
    }

    /// Write the image's root filesystem into `dir` (flattened: whiteouts applied).
    pub fn unpack_flat(&self, manifest: &Digest, dir: &Path) -> Result<(), ImageError> {
        let (m, config) = self.manifest_and_config(manifest)?;
        fs::create_dir_all(dir).map_err(ImageError::io("create", dir))?;
        let options = Options { allow_devices: false, same_owner: nix::unistd::geteuid().is_root() };
        for (desc, diff_id) in m.layers.iter().zip(&config.rootfs.diff_ids) {
            apply_blob(self, &desc.digest, diff_id, dir, Target::Flat, options)?;
        }
        Ok(())
    }

    /// Check every layer of `manifest` against its diff_id without unpacking it (what
    /// keel-build does with an archive it puts into a host image).
    pub fn verify_layers(&self, manifest: &Digest) -> Result<(), ImageError> {
        let (m, config) = self.manifest_and_config(manifest)?;
        for (desc, diff_id) in m.layers.iter().zip(&config.rootfs.diff_ids) {
            let hashing = HashingReader::new(open_layer(self, &desc.digest)?);
            let (actual, _) = hashing.finish().map_err(ImageError::io("read layer", self.blob_path(&desc.digest)))?;
            if &actual != diff_id {
                return Err(ImageError::DiffIdMismatch { blob: desc.digest.clone(), expected: diff_id.clone(), actual });
            }
        }
        Ok(())
    }

    /// refs.json.
    pub fn refs(&self) -> Result<BTreeMap<String, RefEntry>, ImageError> {
        let path = self.root.join("refs.json");
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| ImageError::Json { what: "refs", origin: path.display().to_string(), message: e.to_string() }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
            Err(e) => Err(ImageError::Io { what: "read", path, source: e }),
        }
    }

    fn write_refs(&self, refs: &BTreeMap<String, RefEntry>) -> Result<(), ImageError> {
        let path = self.root.join("refs.json");
        let tmp = self.root.join("tmp/refs.json");
        let bytes = serde_json::to_vec_pretty(refs).unwrap_or_default();
        let mut file = fs::File::create(&tmp).map_err(ImageError::io("create", &tmp))?;
        file.write_all(&bytes).and_then(|_| file.sync_all()).map_err(ImageError::io("write", &tmp))?;
        fs::rename(&tmp, &path).map_err(ImageError::io("rename into", path))
    }

    /// The manifest a name (or a manifest digest, full or its first 12 hex digits) means.
    pub fn lookup(&self, name: &str) -> Result<Option<RefEntry>, ImageError> {
        let refs = self.refs()?;
        if let Some(entry) = refs.get(name) {
            return Ok(Some(entry.clone()));
        }
        let hex = name.strip_prefix("sha256:").unwrap_or(name);
        Ok(refs.values().find(|e| hex.len() >= 12 && e.manifest.hex().starts_with(hex)).cloned())
    }

    /// Remove a name (or every name of a manifest digest); returns the names removed.
    pub fn remove(&self, name: &str) -> Result<Vec<String>, ImageError> {
        let mut refs = self.refs()?;
        let Some(entry) = self.lookup(name)? else { return Ok(Vec::new()) };
        let by_digest = !refs.contains_key(name);
        let removed: Vec<String> = refs.iter().filter(|(n, e)| if by_digest { e.manifest == entry.manifest } else { n.as_str() == name }).map(|(n, _)| n.clone()).collect();
        refs.retain(|n, _| !removed.contains(n));
        self.write_refs(&refs)?;
        Ok(removed)
    }

    /// Delete blobs and unpacked layers no named image (nor `keep`) uses.
    /// Returns how many blobs and layers went, and the bytes of blobs freed.
    pub fn prune(&self, keep: &[Digest]) -> Result<(usize, usize, u64), ImageError> {
        let mut blobs = BTreeSet::new();
        let mut layers = BTreeSet::new();
        let manifests: BTreeSet<Digest> = self.refs()?.into_values().map(|e| e.manifest).chain(keep.iter().cloned()).collect();
        for manifest in manifests {
            blobs.insert(manifest.hex().to_string());
            let Ok((m, config)) = self.manifest_and_config(&manifest) else { continue };
            blobs.insert(m.config.digest.hex().to_string());
            blobs.extend(m.layers.iter().map(|d| d.digest.hex().to_string()));
            layers.extend(config.rootfs.diff_ids.iter().map(|d| d.hex().to_string()));
        }
        let (mut gone_blobs, mut gone_layers, mut freed) = (0, 0, 0);
        for entry in read_dir(&self.root.join("blobs/sha256"))? {
            if !blobs.contains(&entry) {
                let path = self.root.join("blobs/sha256").join(&entry);
                freed += fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
                fs::remove_file(&path).map_err(ImageError::io("remove", &path))?;
                gone_blobs += 1;
            }
        }
        for entry in read_dir(&self.root.join("layers"))? {
            if !layers.contains(&entry) {
                let path = self.root.join("layers").join(&entry);
                fs::remove_dir_all(&path).map_err(ImageError::io("remove", &path))?;
                gone_layers += 1;
            }
        }
        Ok((gone_blobs, gone_layers, freed))
    }
}

fn read_dir(dir: &Path) -> Result<Vec<String>, ImageError> {
    let entries = fs::read_dir(dir).map_err(ImageError::io("list", dir))?;
    Ok(entries.filter_map(Result::ok).filter_map(|e| e.file_name().into_string().ok()).collect())
}

/// Open a layer blob, decompressed by its magic (gzip or plain tar; zstd is refused).
pub fn open_layer(store: &Store, blob: &Digest) -> Result<Box<dyn Read>, ImageError> {
    let path = store.blob_path(blob);
    let file = fs::File::open(&path).map_err(|_| ImageError::MissingBlob { digest: blob.clone(), origin: "the image store".into() })?;
    let mut reader = BufReader::with_capacity(256 * 1024, file);
    let head = std::io::BufRead::fill_buf(&mut reader).map_err(ImageError::io("read", &path))?;
    if head.starts_with(&[0x1f, 0x8b]) {
        Ok(Box::new(flate2::read::MultiGzDecoder::new(reader)))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Err(ImageError::invalid(blob, "zstd-compressed layers are not supported"))
    } else {
        Ok(Box::new(reader))
    }
}

/// Unpack one layer blob into `dir` and check its uncompressed digest is `diff_id`.
fn apply_blob(store: &Store, blob: &Digest, diff_id: &Digest, dir: &Path, target: Target, options: Options) -> Result<(), ImageError> {
    let mut hashing = HashingReader::new(open_layer(store, blob)?);
    let layer_err = |source| ImageError::Layer { blob: blob.clone(), source };
    layer::extract(&mut hashing, dir, target, options).map_err(layer_err)?;
    let (actual, _) = hashing.finish().map_err(ImageError::io("read layer", store.blob_path(blob)))?;
    if &actual != diff_id {
        return Err(ImageError::DiffIdMismatch { blob: blob.clone(), expected: diff_id.clone(), actual });
    }
    Ok(())
}

#[cfg(test)]
mod tests;
