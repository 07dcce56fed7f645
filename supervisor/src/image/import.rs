//! Getting an image from a file source into the [`Store`]: an OCI layout directory, an
//! OCI archive or a docker archive. Every blob goes through [`Store::put_blob`], so it is
//! verified against the digest that names it; layers are then checked against their
//! diff_ids while being unpacked (docker archives: see [`super::docker`]). A registry
//! client does the same with the blobs it fetches.

use super::digest::Digest;
use super::error::ImageError;
use super::limits::{read_capped, LimitExceeded, Resource, Scope};
use super::oci::{is_index, pick_manifest, Descriptor, Index, Manifest, REF_NAME};
use super::reference::{ImageSource, RegistryRef};
use super::store::{Resolved, Store};
use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

/// What an import found: the manifest and the names it carries (tags from the source).
#[derive(Debug, Clone)]
pub struct Fetched {
    /// The manifest to use (linux/amd64).
    pub manifest: Digest,
    /// Tags the source gives it (OCI `ref.name` annotations, docker `RepoTags`).
    pub tags: Vec<String>,
}

/// Import `source` into `store`, name it with the reference text (and its tags), and
/// unpack its layers. A failed import leaves nothing in the store (see [`Store::atomically`]).
pub fn import(store: &Store, source: &ImageSource) -> Result<Resolved, ImageError> {
    store.atomically(|| {
        let fetched = fetch(store, source)?;
        let mut names = vec![source.to_string()];
        names.extend(fetched.tags.iter().cloned());
        store.import_manifest(&fetched.manifest, &names, stamp(source))
    })
}

/// Copy and verify the blobs of `source` into `store` (no unpacking, no names).
pub fn fetch(store: &Store, source: &ImageSource) -> Result<Fetched, ImageError> {
    match source {
        ImageSource::OciLayout { path, tag } => fetch_layout(store, path, tag.as_deref()),
        ImageSource::OciArchive(file) => fetch_oci_archive(store, file),
        ImageSource::DockerArchive(file) => super::docker::fetch(store, file),
        ImageSource::Registry(r) => fetch_registry(store, r),
    }
}

/// Size and mtime of a file source, so a changed archive is imported again.
pub fn stamp(source: &ImageSource) -> Option<String> {
    let path = match source {
        ImageSource::OciArchive(p) | ImageSource::DockerArchive(p) => p.clone(),
        ImageSource::OciLayout { path, .. } => path.join("index.json"),
        ImageSource::Registry(_) => return None,
    };
    let meta = fs::metadata(path).ok()?;
    use std::os::unix::fs::MetadataExt;
    Some(format!("{}:{}.{}", meta.len(), meta.mtime(), meta.mtime_nsec()))
}

/// The image named by `source`, from the store when it is there and current, else imported.
pub fn ensure(store: &Store, source: &ImageSource) -> Result<Resolved, ImageError> {
    let name = source.to_string();
    if let Some(entry) = store.lookup(&name)? {
        let current = matches!(source, ImageSource::Registry(_)) || entry.stamp == stamp(source);
        if current {
            return store.atomically(|| store.unpack(&entry.manifest));
        }
    }
    import(store, source)
}

/// The image named by `source` when it is in the store, current and unpacked (what a
/// container start needs, on PID 1's thread); else an error saying it is not in the store.
pub fn ready(store: &Store, source: &ImageSource) -> Result<Resolved, ImageError> {
    let name = source.to_string();
    let entry = store.lookup(&name)?.ok_or_else(|| ImageError::invalid(&name, "not in the store (a pull or import job brings it)"))?;
    if !matches!(source, ImageSource::Registry(_)) && entry.stamp != stamp(source) {
        return Err(ImageError::invalid(&name, "changed since it was imported (an import job brings it)"));
    }
    if !store.unpacked(&entry.manifest)? {
        return Err(ImageError::invalid(&name, "layers not unpacked (an import job unpacks them)"));
    }
    store.unpack(&entry.manifest)
}

/// The host that serves a registry's API (Docker Hub's differs from its name).
fn api_host(registry: &str) -> &str {
    if registry == "docker.io" {
        "registry-1.docker.io"
    } else {
        registry
    }
}

/// The registry's API root (`https://HOST/v2/`, or http for an insecure registry):
/// what PID 1 probes while waiting for the network before a pull.
pub fn registry_api_url(r: &RegistryRef) -> String {
    use crate::registry::settings;
    let insecure = settings::RegistrySettings::load(Path::new(settings::REGISTRIES_PATH)).is_ok_and(|s| s.is_insecure(&r.registry));
    format!("{}://{}/v2/", if insecure { "http" } else { "https" }, api_host(&r.registry))
}

/// Pull a registry image (the digest when pinned, else the tag) into a layout directory
/// under the store, with the registry's CAs and insecure setting (see
/// [`crate::registry::settings`]), then import that layout like any other. A failed
/// pull leaves its partial blobs there, so the next attempt resumes.
fn fetch_registry(store: &Store, r: &RegistryRef) -> Result<Fetched, ImageError> {
    use crate::registry::{pull_to_layout, settings, PullSpec};
    let host = api_host(&r.registry);
    let settings = settings::RegistrySettings::load(Path::new(settings::REGISTRIES_PATH)).map_err(|e| ImageError::invalid(r, e))?;
    let mut client = settings::client_for(host, Path::new(settings::CERTS_DIR)).map_err(|e| ImageError::invalid(r, e))?;
    let reference = r.digest.as_ref().map(|d| d.to_string()).or_else(|| r.tag.clone()).unwrap_or_else(|| "latest".into());
    let spec =
        PullSpec { registry: host.to_string(), repository: r.repository.clone(), reference, insecure: settings.is_insecure(&r.registry) };
    let safe: String = r.to_string().chars().map(|c| if c.is_ascii_alphanumeric() || c == '.' || c == '-' { c } else { '_' }).collect();
    let pulls = store.root().join("pulls");
    crate::privdir::ensure(&pulls).map_err(ImageError::io("make private", &pulls))?;
    let dir = pulls.join(safe);
    super::observe::log(&format!("image {r}: pulling from {}", spec.registry));
    // A full /var: drop the partial download too (it holds the space; resuming it later
    // would fail the same way). Any other failure keeps it, so the next pull resumes.
    let drop_partial = |text: &str| {
        if super::error::is_no_space(text) {
            let _ = fs::remove_dir_all(&dir);
        }
    };
    let pulled = pull_to_layout(&mut client, &spec, &dir, &mut |line| super::observe::log(&format!("pull {line}")))
        .inspect_err(|e| drop_partial(e))
        .map_err(|e| ImageError::invalid(r, e))?;
    let fetched = fetch_layout(store, &dir, None).inspect_err(|e| drop_partial(&e.to_string()))?;
    let _ = fs::remove_dir_all(&dir);
    super::observe::log(&format!("image {r}: pulled {} ({} bytes downloaded)", pulled.manifest_digest, pulled.downloaded));
    Ok(Fetched { manifest: fetched.manifest, tags: Vec::new() })
}

/// Read a JSON document (an index, manifest or config) of at most the store's document limit.
pub(super) fn read_document(reader: impl Read, store: &Store, what: &'static str, origin: &Path) -> Result<Vec<u8>, ImageError> {
    read_capped(reader, store.limits().document).map_err(ImageError::io("read", origin))?.map_err(|limit| ImageError::DocumentTooLarge {
        what,
        origin: origin.display().to_string(),
        limit,
    })
}

/// Refuse a document whose descriptor already says it is over the limit, before its
/// bytes are copied into the store.
fn check_document_size(store: &Store, desc: &Descriptor, what: &'static str, origin: &str) -> Result<(), ImageError> {
    let limit = store.limits().document;
    if desc.size > limit {
        let hit = LimitExceeded { scope: Scope::Image, resource: Resource::Document, limit, value: desc.size };
        return Err(ImageError::DocumentTooLarge { what, origin: format!("{} in {origin}", desc.digest), limit: hit });
    }
    Ok(())
}

pub(super) fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8], what: &'static str, origin: &Path) -> Result<T, ImageError> {
    serde_json::from_slice(bytes).map_err(|e| ImageError::Json { what, origin: origin.display().to_string(), message: e.to_string() })
}

fn fetch_layout(store: &Store, dir: &Path, tag: Option<&str>) -> Result<Fetched, ImageError> {
    let index_path = dir.join("index.json");
    let file = fs::File::open(&index_path).map_err(ImageError::io("open", &index_path))?;
    let bytes = read_document(file, store, "image index", &index_path)?;
    let index: Index = parse_json(&bytes, "image index", &index_path)?;
    let put = |desc: &Descriptor| -> Result<(), ImageError> {
        let path = dir.join("blobs/sha256").join(desc.digest.hex());
        let file = fs::File::open(&path)
            .map_err(|_| ImageError::MissingBlob { digest: desc.digest.clone(), origin: dir.display().to_string() })?;
        store.put_or_verify(&desc.digest, Some(desc.size), file, &path.display().to_string())?;
        super::observe::progress(&super::observe::item_of(desc.digest.as_str()), "copy", desc.size, Some(desc.size));
        Ok(())
    };
    let chosen = pick_manifest(&index, tag).map_err(|e| ImageError::invalid(dir.display(), e))?;
    let tags = chosen.annotations.get(REF_NAME).cloned().into_iter().collect();
    let manifest = resolve_nested(store, chosen, &put, &dir.display().to_string())?;
    fetch_manifest_blobs(store, &manifest, &put)?;
    Ok(Fetched { manifest, tags })
}

/// Follow nested indexes down to a manifest, storing each document.
fn resolve_nested(
    store: &Store,
    desc: &Descriptor,
    put: &dyn Fn(&Descriptor) -> Result<(), ImageError>,
    origin: &str,
) -> Result<Digest, ImageError> {
    let mut desc = desc.clone();
    for _ in 0..4 {
        check_document_size(store, &desc, if is_index(&desc.media_type) { "image index" } else { "manifest" }, origin)?;
        put(&desc)?;
        if !is_index(&desc.media_type) {
            return Ok(desc.digest);
        }
        let nested: Index = store.read_json(&desc.digest, "image index")?;
        desc = pick_manifest(&nested, None).map_err(|e| ImageError::invalid(origin, e))?.clone();
    }
    Err(ImageError::invalid(origin, "image indexes nested too deep"))
}

fn fetch_manifest_blobs(store: &Store, manifest: &Digest, put: &dyn Fn(&Descriptor) -> Result<(), ImageError>) -> Result<(), ImageError> {
    let m: Manifest = store.read_json(manifest, "manifest")?;
    check_document_size(store, &m.config, "image config", manifest.as_str())?;
    put(&m.config)?;
    for layer in &m.layers {
        put(layer)?;
    }
    Ok(())
}

/// Stream an OCI archive once: blobs go straight into the store (verified by the
/// digest in their name), index.json is kept; then the manifest is checked complete.
fn fetch_oci_archive(store: &Store, file: &Path) -> Result<Fetched, ImageError> {
    let origin = file.display().to_string();
    let mut index_bytes = None;
    let mut sizes: BTreeMap<Digest, u64> = BTreeMap::new();
    walk_tar(file, |name, entry| {
        if name == "index.json" {
            index_bytes = Some(read_document(entry, store, "image index", file)?);
        } else if let Some(hex) = name.strip_prefix("blobs/sha256/").filter(|_| entry.header().entry_type().is_file()) {
            let digest = Digest::from_hex(hex).map_err(|e| ImageError::invalid(&origin, format!("{name}: {e}")))?;
            sizes.insert(digest.clone(), entry.header().size().unwrap_or(0));
            store.put_or_verify(&digest, None, entry, &format!("{origin} ({name})"))?;
            let size = sizes.get(&digest).copied().unwrap_or(0);
            super::observe::progress(&super::observe::item_of(digest.as_str()), "copy", size, Some(size));
        }
        Ok(())
    })?;
    let bytes = index_bytes.ok_or_else(|| ImageError::invalid(&origin, "no index.json: not an OCI archive"))?;
    let index: Index = parse_json(&bytes, "image index", file)?;
    let check = |desc: &Descriptor| -> Result<(), ImageError> {
        match sizes.get(&desc.digest) {
            None if !store.has_blob(&desc.digest) => Err(ImageError::MissingBlob { digest: desc.digest.clone(), origin: origin.clone() }),
            Some(&actual) if actual != desc.size => {
                Err(ImageError::SizeMismatch { digest: desc.digest.clone(), expected: desc.size, actual, origin: origin.clone() })
            }
            _ => Ok(()),
        }
    };
    let chosen = pick_manifest(&index, None).map_err(|e| ImageError::invalid(&origin, e))?;
    let tags = chosen.annotations.get(REF_NAME).cloned().into_iter().collect();
    let manifest = resolve_nested(store, chosen, &check, &origin)?;
    fetch_manifest_blobs(store, &manifest, &check)?;
    Ok(Fetched { manifest, tags })
}

/// Call `each` with every entry of the tar `file` and its normalised name.
pub(super) fn walk_tar(
    file: &Path,
    mut each: impl FnMut(&str, &mut tar::Entry<'_, fs::File>) -> Result<(), ImageError>,
) -> Result<(), ImageError> {
    let reader = fs::File::open(file).map_err(ImageError::io("open", file))?;
    let mut archive = tar::Archive::new(reader);
    let tar_err = |e| ImageError::Io { what: "read the archive", path: PathBuf::from(file), source: e };
    for entry in archive.entries().map_err(tar_err)? {
        let mut entry = entry.map_err(tar_err)?;
        let name = entry.path().map_err(tar_err)?.to_string_lossy().trim_start_matches("./").to_string();
        each(&name, &mut entry)?;
    }
    Ok(())
}

/// The kind of an archive given without a prefix (`keelctl image load FILE`): an OCI
/// archive has index.json, a docker archive manifest.json.
pub fn detect_archive(file: &Path) -> Result<ImageSource, ImageError> {
    let reader = fs::File::open(file).map_err(ImageError::io("open", file))?;
    let mut archive = tar::Archive::new(reader);
    let tar_err = |e| ImageError::Io { what: "read the archive", path: PathBuf::from(file), source: e };
    let mut docker = false;
    for entry in archive.entries_with_seek().map_err(tar_err)? {
        let entry = entry.map_err(tar_err)?;
        let path = entry.path().map_err(tar_err)?;
        let name = path.to_string_lossy();
        match name.trim_start_matches("./") {
            "index.json" | "oci-layout" => return Ok(ImageSource::OciArchive(file.to_path_buf())),
            "manifest.json" => docker = true,
            _ => {}
        }
    }
    if docker {
        Ok(ImageSource::DockerArchive(file.to_path_buf()))
    } else {
        Err(ImageError::invalid(file.display(), "neither an OCI archive (index.json) nor a docker archive (manifest.json)"))
    }
}
