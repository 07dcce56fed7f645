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
//!
//! Every layer is unpacked within the store's [`ImageLimits`]; an import that fails
//! (a limit, a tampered blob, a full disk) leaves nothing behind: its layers and blobs
//! that no named image uses are removed ([`Store::atomically`]). The store's
//! directories are private (see [`crate::privdir`]): 0700, refs.json 0600.

use super::digest::{Digest, HashingReader};
use super::error::ImageError;
use super::layer::{self, ExtractError, Options, Target};
use super::limits::{read_capped, ImageLimits, Meter, MeteredReader, SharedMeter};
use super::oci::{check_config, ImageConfig, Manifest};
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{BufReader, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;

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
    limits: ImageLimits,
}

/// The blob and layer names in the store at one time (see [`Store::atomically`]).
#[derive(Debug, Clone, Default)]
pub struct Contents {
    blobs: BTreeSet<String>,
    layers: BTreeSet<String>,
}

impl Store {
    /// Open (creating its directories) the store at `root`, with the default limits.
    pub fn open(root: impl Into<PathBuf>) -> Result<Store, ImageError> {
        Store::open_with(root, ImageLimits::default())
    }

    /// Open the store at `root` with these limits on what an image may contain. Its
    /// directories are made private (0700; 0711 is kept where user-namespaced
    /// containers need to traverse, see [`crate::privdir`]), also when an earlier
    /// version created them wider.
    pub fn open_with(root: impl Into<PathBuf>, limits: ImageLimits) -> Result<Store, ImageError> {
        let root = root.into();
        for dir in [Path::new(""), Path::new("blobs"), Path::new("blobs/sha256"), Path::new("layers"), Path::new("tmp")] {
            let path = root.join(dir);
            crate::privdir::ensure(&path).map_err(ImageError::io("make private", path))?;
        }
        let refs = root.join("refs.json");
        crate::privdir::restrict_file(&refs).map_err(ImageError::io("make private", refs))?;
        Ok(Store { root, limits })
    }

    /// Let user-namespaced containers' roots walk to the layers (the store root and
    /// `layers/` become 0711; see [`crate::privdir`]).
    pub fn allow_traversal(&self) -> Result<(), ImageError> {
        for dir in [self.root.clone(), self.root.join("layers")] {
            crate::privdir::allow_traversal(&dir).map_err(ImageError::io("allow traversal of", dir))?;
        }
        Ok(())
    }

    /// The limits layers are unpacked within.
    pub fn limits(&self) -> &ImageLimits {
        &self.limits
    }

    /// The blobs and layers the store holds now.
    pub fn contents(&self) -> Result<Contents, ImageError> {
        Ok(Contents {
            blobs: read_dir(&self.root.join("blobs/sha256"))?.into_iter().collect(),
            layers: read_dir(&self.root.join("layers"))?.into_iter().collect(),
        })
    }

    /// Run `work` (an import); when it fails, remove the blobs and layers that appeared
    /// meanwhile and that no named image uses, so a refused or broken image leaves
    /// nothing half-imported. The original error is returned; cleanup failures are logged.
    pub fn atomically<T>(&self, work: impl FnOnce() -> Result<T, ImageError>) -> Result<T, ImageError> {
        let before = self.contents()?;
        let result = work();
        if result.is_err() {
            if let Err(e) = self.discard_since(&before) {
                log::warn!("image store {}: cleaning up a failed import: {e}", self.root.display());
            }
        }
        result
    }

    /// Remove what appeared since `before` and no named image uses; keeps going past
    /// a failed removal and reports the first.
    fn discard_since(&self, before: &Contents) -> Result<(), ImageError> {
        let now = self.contents()?;
        let (used_blobs, used_layers) = self.in_use(&[])?;
        let mut first = None;
        for hex in now.blobs.difference(&before.blobs).filter(|h| !used_blobs.contains(*h)) {
            let path = self.root.join("blobs/sha256").join(hex);
            if let Err(e) = fs::remove_file(&path) {
                first.get_or_insert(ImageError::Io { what: "remove", path, source: e });
            }
        }
        for hex in now.layers.difference(&before.layers).filter(|h| !used_layers.contains(*h)) {
            let path = self.root.join("layers").join(hex);
            if let Err(e) = fs::remove_dir_all(&path) {
                first.get_or_insert(ImageError::Io { what: "remove", path, source: e });
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// Hold the store for writing until the returned lock drops: an exclusive flock on
    /// `<root>/lock`. Imports in workers take turns with it (a failed import's cleanup
    /// removes blobs no name uses, which would include another import's in flight).
    /// With `wait` false, a store held by another process is [`ImageError::Busy`].
    pub fn lock(&self, wait: bool) -> Result<nix::fcntl::Flock<fs::File>, ImageError> {
        use nix::fcntl::{Flock, FlockArg};
        let path = self.root.join("lock");
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(ImageError::io("open", &path))?;
        let arg = if wait { FlockArg::LockExclusive } else { FlockArg::LockExclusiveNonblock };
        Flock::lock(file, arg).map_err(|(_, errno)| match errno {
            nix::Error::EWOULDBLOCK => ImageError::Busy { path: path.clone() },
            errno => ImageError::Io { what: "lock", path: path.clone(), source: errno.into() },
        })
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
        let (actual, count) = HashingReader::new(reader).finish().map_err(|source| ImageError::Io {
            what: "read blob",
            path: PathBuf::from(origin),
            source,
        })?;
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

    /// Read and parse a JSON blob (a manifest, index or config), at most the document limit.
    pub fn read_json<T: serde::de::DeserializeOwned>(&self, digest: &Digest, what: &'static str) -> Result<T, ImageError> {
        let path = self.blob_path(digest);
        let file =
            fs::File::open(&path).map_err(|_| ImageError::MissingBlob { digest: digest.clone(), origin: "the image store".into() })?;
        let bytes = read_capped(file, self.limits.document)
            .map_err(ImageError::io("read", &path))?
            .map_err(|limit| ImageError::DocumentTooLarge { what, origin: digest.to_string(), limit })?;
        serde_json::from_slice(&bytes).map_err(|e| ImageError::Json { what, origin: digest.to_string(), message: e.to_string() })
    }

    /// Check a manifest whose blobs are all in the store, unpack its layers, and give
    /// it the `names` (with the source `stamp`). Returns what a container start needs.
    pub fn import_manifest(&self, manifest: &Digest, names: &[String], stamp: Option<String>) -> Result<Resolved, ImageError> {
        let resolved = self.atomically(|| self.unpack(manifest))?;
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

    /// Whether every layer of `manifest` is unpacked (so [`unpack`](Self::unpack) has nothing to do).
    pub fn unpacked(&self, manifest: &Digest) -> Result<bool, ImageError> {
        let (_, config) = self.manifest_and_config(manifest)?;
        Ok(config.rootfs.diff_ids.iter().all(|d| self.layer_path(d).is_dir()))
    }

    /// Unpack every layer of `manifest` not unpacked yet, within the store's limits
    /// (the per-image ones count the layers unpacked here); layers top first.
    pub fn unpack(&self, manifest: &Digest) -> Result<Resolved, ImageError> {
        let (m, config) = self.manifest_and_config(manifest)?;
        let meter = Rc::new(RefCell::new(Meter::new(self.limits)));
        let mut below: Vec<PathBuf> = Vec::new();
        for (desc, diff_id) in m.layers.iter().zip(&config.rootfs.diff_ids) {
            let dir = self.layer_path(diff_id);
            if !dir.is_dir() {
                let item = super::observe::item_of(desc.digest.as_str());
                super::observe::progress(&item, "unpack", 0, Some(desc.size));
                self.unpack_layer(&desc.digest, diff_id, &below, &meter)?;
                super::observe::progress(&item, "unpack", desc.size, Some(desc.size));
            }
            below.insert(0, dir);
        }
        Ok(Resolved { manifest: manifest.clone(), lowers: below, config })
    }

    fn unpack_layer(&self, blob: &Digest, diff_id: &Digest, lowers: &[PathBuf], meter: &SharedMeter) -> Result<(), ImageError> {
        let tmp = self.root.join("tmp").join(format!("layer-{}-{}", diff_id.hex(), std::process::id()));
        let _ = fs::remove_dir_all(&tmp);
        fs::create_dir(&tmp).map_err(ImageError::io("create", &tmp))?;
        let options = Options { allow_devices: false, same_owner: nix::unistd::geteuid().is_root() };
        let result = apply_blob(self, blob, diff_id, &tmp, Target::Overlay { lowers }, options, meter);
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

    /// Write the image's root filesystem into `dir` (flattened: whiteouts applied),
    /// within the store's limits (all layers count towards the per-image ones).
    pub fn unpack_flat(&self, manifest: &Digest, dir: &Path) -> Result<(), ImageError> {
        let (m, config) = self.manifest_and_config(manifest)?;
        fs::create_dir_all(dir).map_err(ImageError::io("create", dir))?;
        let options = Options { allow_devices: false, same_owner: nix::unistd::geteuid().is_root() };
        let meter = Rc::new(RefCell::new(Meter::new(self.limits)));
        for (desc, diff_id) in m.layers.iter().zip(&config.rootfs.diff_ids) {
            apply_blob(self, &desc.digest, diff_id, dir, Target::Flat, options, &meter)?;
        }
        Ok(())
    }

    /// Check every layer of `manifest` against its diff_id without unpacking it (what
    /// keel-build does with an archive it puts into a host image), within the
    /// decompressed-size limits.
    pub fn verify_layers(&self, manifest: &Digest) -> Result<(), ImageError> {
        let (m, config) = self.manifest_and_config(manifest)?;
        let meter = Rc::new(RefCell::new(Meter::new(self.limits)));
        for (desc, diff_id) in m.layers.iter().zip(&config.rootfs.diff_ids) {
            meter.borrow_mut().next_layer();
            let hashing = HashingReader::new(MeteredReader::new(open_layer(self, &desc.digest)?, meter.clone()));
            let finished = hashing.finish();
            if let Some(limit) = meter.borrow().exceeded() {
                return Err(ImageError::LayerLimit { blob: desc.digest.clone(), entry: "(tar)".into(), limit });
            }
            let (actual, _) = finished.map_err(ImageError::io("read layer", self.blob_path(&desc.digest)))?;
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
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| ImageError::Json {
                what: "refs",
                origin: path.display().to_string(),
                message: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
            Err(e) => Err(ImageError::Io { what: "read", path, source: e }),
        }
    }

    fn write_refs(&self, refs: &BTreeMap<String, RefEntry>) -> Result<(), ImageError> {
        let path = self.root.join("refs.json");
        let tmp = self.root.join("tmp/refs.json");
        let bytes = serde_json::to_vec_pretty(refs).unwrap_or_default();
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(ImageError::io("create", &tmp))?;
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
        let removed: Vec<String> = refs
            .iter()
            .filter(|(n, e)| if by_digest { e.manifest == entry.manifest } else { n.as_str() == name })
            .map(|(n, _)| n.clone())
            .collect();
        refs.retain(|n, _| !removed.contains(n));
        self.write_refs(&refs)?;
        Ok(removed)
    }

    /// The blob and layer names (hex) the named images and `keep` use.
    fn in_use(&self, keep: &[Digest]) -> Result<(BTreeSet<String>, BTreeSet<String>), ImageError> {
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
        Ok((blobs, layers))
    }

    /// Delete blobs and unpacked layers no named image (nor `keep`) uses.
    /// Returns how many blobs and layers went, and the bytes of blobs freed.
    pub fn prune(&self, keep: &[Digest]) -> Result<(usize, usize, u64), ImageError> {
        let (blobs, layers) = self.in_use(keep)?;
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

/// Unpack one layer blob into `dir` and check its uncompressed digest is `diff_id`,
/// counting it as a new layer on `meter`: the decompressed stream is counted as it is
/// read (also the bytes after the tar's end, which the digest covers).
fn apply_blob(
    store: &Store,
    blob: &Digest,
    diff_id: &Digest,
    dir: &Path,
    target: Target,
    options: Options,
    meter: &SharedMeter,
) -> Result<(), ImageError> {
    meter.borrow_mut().next_layer();
    let mut hashing = HashingReader::new(MeteredReader::new(open_layer(store, blob)?, meter.clone()));
    layer::extract(&mut hashing, dir, target, options, meter).map_err(|e| match e {
        ExtractError::Entry(source) => ImageError::Layer { blob: blob.clone(), source },
        ExtractError::Limit { entry, limit } => ImageError::LayerLimit { blob: blob.clone(), entry, limit },
    })?;
    let finished = hashing.finish();
    if let Some(limit) = meter.borrow().exceeded() {
        return Err(ImageError::LayerLimit { blob: blob.clone(), entry: "(after the tar's end)".into(), limit });
    }
    let (actual, _) = finished.map_err(ImageError::io("read layer", store.blob_path(blob)))?;
    if &actual != diff_id {
        return Err(ImageError::DiffIdMismatch { blob: blob.clone(), expected: diff_id.clone(), actual });
    }
    Ok(())
}

#[cfg(test)]
mod tests;
