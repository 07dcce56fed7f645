//! Fuzz targets for the parsers of this crate that read outside input: container
//! declarations (TOML), image references, OCI and Docker JSON documents (indexes,
//! manifests, configs, `manifest.json`), a registry's authentication answers, and
//! layer tars. See `keel_netconf::fuzzing` for how targets are driven; compiled for
//! tests and with the `fuzzing` feature only.

use crate::image::layer::{self, Options, Target as LayerTarget};
use crate::image::limits::{ImageLimits, Meter};
use crate::image::{entry, oci, reference, Digest};
use crate::registry::{auth, pull};
use crate::spec::{self, capability, units};
use keel_netconf::fuzzing::Target;
use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// The targets of this crate.
pub const TARGETS: &[Target] = &[
    Target { name: "container_toml", run: container_toml },
    Target { name: "image_reference", run: image_reference },
    Target { name: "oci_json", run: oci_json },
    Target { name: "registry_auth", run: registry_auth },
    Target { name: "layer_tar", run: layer_tar },
];

/// A container declaration, and the value parsers it uses on each line of the input
/// (durations, sizes, signals, users, capabilities, names). Durations never exceed
/// [`units::MAX_DURATION`]; an accepted declaration names itself.
pub fn container_toml(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(spec) = spec::parse("fuzz", &text, "fuzz.toml") {
        assert_eq!(spec.name.as_str(), "fuzz");
        assert!(spec.stop_timeout <= units::MAX_DURATION, "stop_timeout {:?}", spec.stop_timeout);
    }
    for line in text.lines().take(64) {
        if let Ok(duration) = units::parse_duration(line) {
            assert!(duration <= units::MAX_DURATION, "{line:?} gave {duration:?}");
        }
        let _ = units::parse_bytes(line);
        if let Ok(signal) = units::parse_signal(line) {
            assert!((1..=64).contains(&signal), "{line:?} gave signal {signal}");
        }
        let _ = spec::validate_user(line);
        let _ = capability::CapabilityChoice::parse(line);
        if let Ok(name) = spec::ContainerName::new(line) {
            assert_eq!(name.as_str(), line);
        }
    }
}

/// An image reference, and a digest: what parses prints back to text that parses to
/// the same value.
pub fn image_reference(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(source) = reference::parse(&text) {
        assert_eq!(reference::parse(&source.to_string()).as_ref(), Ok(&source), "{text:?} printed as {source}");
    }
    if let Ok(digest) = Digest::parse(&text) {
        assert_eq!(Digest::parse(digest.as_str()).as_ref(), Ok(&digest));
    }
}

/// An image index, manifest or config, a Docker archive's `manifest.json`, or a
/// registry's manifest read loosely as the puller does. What keel reads, it writes back
/// to JSON that reads the same (the store rewrites Docker manifests this way).
pub fn oci_json(data: &[u8]) {
    let index = serde_json::from_slice::<oci::Index>(data).ok();
    if let Some(index) = &index {
        assert_eq!(reparse(index).as_ref(), Some(index), "index does not round-trip");
        let tag = index.manifests.iter().find_map(|d| d.annotations.get(oci::REF_NAME));
        for tag in [None, tag.map(String::as_str)] {
            if let Ok(chosen) = oci::pick_manifest(index, tag) {
                assert!(index.manifests.contains(chosen));
            }
        }
    }
    let manifest = serde_json::from_slice::<oci::Manifest>(data).ok();
    if let Some(manifest) = &manifest {
        assert_eq!(reparse(manifest).as_ref(), Some(manifest), "manifest does not round-trip");
    }
    if let Ok(config) = serde_json::from_slice::<oci::ImageConfig>(data) {
        assert_eq!(reparse(&config).as_ref(), Some(&config), "config does not round-trip");
        if let Some(manifest) = &manifest {
            let _ = oci::check_config(&config, manifest);
        }
        if let Some(user) = config.config.as_ref().and_then(|c| c.user.as_deref()) {
            let _ = spec::validate_user(user);
        }
    }
    let _ = serde_json::from_slice::<Vec<crate::image::docker::DockerEntry>>(data);
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) {
        let _ = pull::pick_platform(&value);
        if let Ok(blobs) = pull::manifest_blobs(&value) {
            assert!(blobs.iter().all(|(digest, _)| Digest::parse(digest).is_ok()));
        }
    }
}

fn reparse<T: serde::Serialize + serde::de::DeserializeOwned>(value: &T) -> Option<T> {
    serde_json::to_vec(value).ok().and_then(|bytes| serde_json::from_slice(&bytes).ok())
}

/// A registry's `WWW-Authenticate` challenge (first line) and a token service's JSON
/// answer (the whole input).
pub fn registry_auth(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(challenge) = auth::parse_challenge(text.lines().next().unwrap_or("")) {
        assert_eq!(challenge.scheme, challenge.scheme.to_ascii_lowercase());
        if let Ok(url) = auth::token_url(&challenge, "library/busybox") {
            assert!(url.starts_with(challenge.param("realm").unwrap_or_default()));
        }
    }
    if let Ok(token) = auth::parse_token(data) {
        assert!(!token.is_empty());
    }
}

/// Numbers the scratch directories of [`layer_tar`] within one process.
static SCRATCH: AtomicU64 = AtomicU64::new(0);

/// A layer tar, unpacked for real into a scratch directory both ways (flat and as an
/// overlay lower layer), plus the pure parts on each entry name. Property: nothing is
/// created, changed or removed outside the layer root, whatever the tar says.
pub fn layer_tar(data: &[u8]) {
    let scratch = scratch_base().join(format!("keel-fuzz-layer-{}-{}", std::process::id(), SCRATCH.fetch_add(1, Ordering::Relaxed)));
    let _ = std::fs::remove_dir_all(&scratch);
    let guard = ScratchDir(scratch.clone());
    for dir in ["flat", "overlay", "outside"] {
        std::fs::create_dir_all(scratch.join(dir)).expect("scratch directory");
    }
    std::fs::write(scratch.join("outside/keep"), b"keep").expect("scratch file");
    let options = Options { allow_devices: false, same_owner: false };
    for (dir, target) in [("flat", LayerTarget::Flat), ("overlay", LayerTarget::Overlay { lowers: &[] })] {
        let meter = RefCell::new(Meter::new(ImageLimits::default()));
        let _ = layer::extract(data, &scratch.join(dir), target, options, &meter);
    }
    check_confined(&scratch);
    if let Ok(mut archive) = tar::Archive::new(data).entries() {
        for entry in archive.by_ref().take(64).flatten() {
            if let Ok(path) = entry.path() {
                check_entry_name(&path);
            }
        }
    }
    drop(guard);
}

/// Where [`layer_tar`] unpacks: /dev/shm (tmpfs, so thousands of layers a second cost
/// no disk) when there is one, else the temporary directory.
fn scratch_base() -> PathBuf {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}

/// Panics unless `scratch` still holds exactly the two layer roots and `outside/keep`
/// as [`layer_tar`] made them.
fn check_confined(scratch: &Path) {
    let outside = scratch.join("outside");
    assert_eq!(listing(scratch), ["flat", "outside", "overlay"], "the layer wrote beside its root");
    assert_eq!(listing(&outside), ["keep"], "the layer wrote outside its root");
    assert_eq!(std::fs::read(outside.join("keep")).ok().as_deref(), Some(&b"keep"[..]), "the layer changed a file outside its root");
}

/// A relative entry name never climbs out of the root.
fn check_entry_name(path: &Path) {
    if let Ok(relative) = entry::relative(path) {
        assert!(relative.components().all(|c| matches!(c, std::path::Component::Normal(_))), "{path:?} made relative as {relative:?}");
    }
    let _ = entry::classify(path);
}

/// The sorted names in `dir` (symlinks included, not followed).
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    names.sort();
    names
}

/// Removes a scratch directory when dropped, also when the target panics.
struct ScratchDir(PathBuf);

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
#[path = "fuzzing_tests.rs"]
mod tests;
