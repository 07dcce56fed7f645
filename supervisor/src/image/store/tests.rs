//! The store with hand-made OCI layouts: verification, sharing, naming, pruning.

use super::*;
use crate::image::import;
use crate::image::layer::tests::{tar_of, E};
use crate::image::limits::{LimitExceeded, Resource, Scope};
use crate::image::reference::ImageSource;

/// Write an OCI layout with one manifest of `layers` (plain tars) into `dir`.
pub fn write_layout(dir: &Path, layers: &[Vec<u8>], gzip: bool, tag: &str) -> Digest {
    let blobs: Vec<(Vec<u8>, Digest)> = layers
        .iter()
        .map(|layer| {
            use std::io::Write as _;
            let bytes = if gzip {
                let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
                gz.write_all(layer).unwrap();
                gz.finish().unwrap()
            } else {
                layer.clone()
            };
            (bytes, Digest::of(layer))
        })
        .collect();
    write_layout_blobs(dir, &blobs, tag)
}

/// Write an OCI layout whose layers are these blobs with these diff_ids.
pub fn write_layout_blobs(dir: &Path, layers: &[(Vec<u8>, Digest)], tag: &str) -> Digest {
    let blobs = dir.join("blobs/sha256");
    fs::create_dir_all(&blobs).unwrap();
    let put = |bytes: &[u8]| {
        let d = Digest::of(bytes);
        fs::write(blobs.join(d.hex()), bytes).unwrap();
        d
    };
    let mut descs = Vec::new();
    for (bytes, _) in layers {
        descs.push(serde_json::json!({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": put(bytes).to_string(), "size": bytes.len()}));
    }
    let diff_ids: Vec<String> = layers.iter().map(|(_, d)| d.to_string()).collect();
    let config = serde_json::to_vec(&serde_json::json!({"architecture": "amd64", "os": "linux", "config": {"Entrypoint": ["/bin/true"]}, "rootfs": {"type": "layers", "diff_ids": diff_ids}})).unwrap();
    let config_d = put(&config);
    let manifest = serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_d.to_string(), "size": config.len()}, "layers": descs})).unwrap();
    let manifest_d = put(&manifest);
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": manifest_d.to_string(), "size": manifest.len(), "annotations": {"org.opencontainers.image.ref.name": tag}}]});
    fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    manifest_d
}

fn base() -> Vec<u8> {
    tar_of(&[E::Dir("bin/"), E::File("bin/true", "#!"), E::Dir("etc/"), E::File("etc/motd", "hi")])
}

#[test]
fn import_verifies_unpacks_once_and_shares_layers() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path().join("store")).unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    write_layout(&a, &[base(), tar_of(&[E::File("etc/a", "A")])], true, "a");
    write_layout(&b, &[base(), tar_of(&[E::File("etc/b", "B")])], true, "b");
    let ra = import::import(&store, &ImageSource::OciLayout { path: a.clone(), tag: None }).unwrap();
    let rb = import::import(&store, &ImageSource::OciLayout { path: b.clone(), tag: Some("b".into()) }).unwrap();
    assert_eq!(ra.lowers.len(), 2);
    assert_eq!(ra.lowers[1], rb.lowers[1], "the shared base layer is one directory");
    assert_eq!(fs::read_dir(store.root().join("layers")).unwrap().count(), 3);
    assert_eq!(fs::read_to_string(ra.lowers[0].join("etc/a")).unwrap(), "A");
    assert_eq!(ra.config.config.unwrap().entrypoint.unwrap(), ["/bin/true"]);
    let refs = store.refs().unwrap();
    assert_eq!(refs[&format!("oci:{}", a.display())].manifest, ra.manifest);
    assert_eq!(refs["b"].manifest, rb.manifest);
}

#[test]
fn a_tampered_blob_is_refused_naming_its_digest_and_nothing_is_kept() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path().join("store")).unwrap();
    let layout = tmp.path().join("img");
    write_layout(&layout, &[base()], false, "t");
    let index: serde_json::Value = serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
    let manifest: serde_json::Value = serde_json::from_slice(
        &fs::read(layout.join("blobs/sha256").join(&index["manifests"][0]["digest"].as_str().unwrap()[7..])).unwrap(),
    )
    .unwrap();
    let layer = manifest["layers"][0]["digest"].as_str().unwrap().to_string();
    let path = layout.join("blobs/sha256").join(&layer[7..]);
    let mut bytes = fs::read(&path).unwrap();
    bytes[600] ^= 1;
    fs::write(&path, bytes).unwrap();
    let err = import::import(&store, &ImageSource::OciLayout { path: layout, tag: None }).unwrap_err();
    match &err {
        ImageError::DigestMismatch { expected, .. } => assert_eq!(expected.as_str(), layer),
        other => panic!("expected a digest mismatch, got {other}"),
    }
    assert!(err.to_string().contains(&layer) && err.to_string().contains("tampered"), "{err}");
    assert!(!store.blob_path(&Digest::parse(&layer).unwrap()).exists());
    assert_eq!(fs::read_dir(store.root().join("tmp")).unwrap().count(), 0);
    assert!(store.refs().unwrap().is_empty());
}

#[test]
fn a_layer_that_is_not_its_diff_id_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path().join("store")).unwrap();
    let layout = tmp.path().join("img");
    let manifest = write_layout(&layout, &[base()], true, "t");
    // Put a valid blob whose config names another diff_id: rewrite the config.
    let m: Manifest = serde_json::from_slice(&fs::read(layout.join("blobs/sha256").join(manifest.hex())).unwrap()).unwrap();
    let digests: Vec<Digest> = std::iter::once(&m.config).chain(&m.layers).map(|d| d.digest.clone()).chain([manifest.clone()]).collect();
    for d in &digests {
        let bytes = fs::read(layout.join("blobs/sha256").join(d.hex())).unwrap();
        store.put_blob(d, None, &bytes[..], "test").unwrap();
    }
    let mut config: serde_json::Value = serde_json::from_slice(&fs::read(store.blob_path(&m.config.digest)).unwrap()).unwrap();
    config["rootfs"]["diff_ids"][0] = Digest::of(b"other").to_string().into();
    let config_bytes = serde_json::to_vec(&config).unwrap();
    let config_d = store.put_bytes(&config_bytes).unwrap();
    let mut m2 = m.clone();
    m2.config.digest = config_d;
    m2.config.size = config_bytes.len() as u64;
    let m2_d = store.put_bytes(&serde_json::to_vec(&m2).unwrap()).unwrap();
    let err = store.import_manifest(&m2_d, &["x".into()], None).unwrap_err();
    assert!(matches!(err, ImageError::DiffIdMismatch { .. }), "{err}");
    assert_eq!(fs::read_dir(store.root().join("layers")).unwrap().count(), 0);
}

#[test]
fn remove_and_prune_drop_what_no_name_uses() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path().join("store")).unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    write_layout(&a, &[base(), tar_of(&[E::File("etc/a", "A")])], true, "a");
    write_layout(&b, &[base()], true, "b");
    import::import(&store, &ImageSource::OciLayout { path: a.clone(), tag: None }).unwrap();
    import::import(&store, &ImageSource::OciLayout { path: b, tag: None }).unwrap();
    assert_eq!(store.prune(&[]).unwrap().0, 0);
    let removed = store.remove("a").unwrap();
    assert_eq!(removed, ["a"]);
    // Still named by its reference text.
    assert_eq!(store.prune(&[]).unwrap().1, 0);
    store.remove(&format!("oci:{}", a.display())).unwrap();
    let (blobs, layers, _) = store.prune(&[]).unwrap();
    assert_eq!((blobs, layers), (3, 1), "manifest, config and top layer of a; the base layer stays for b");
}

#[test]
fn a_tampered_copy_of_a_blob_the_store_already_has_is_still_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path().join("store")).unwrap();
    let layout = tmp.path().join("img");
    write_layout(&layout, &[base()], false, "t");
    import::import(&store, &ImageSource::OciLayout { path: layout.clone(), tag: None }).unwrap();
    let biggest = fs::read_dir(layout.join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .max_by_key(|p| fs::metadata(p).unwrap().len())
        .unwrap();
    let mut bytes = fs::read(&biggest).unwrap();
    bytes[600] ^= 1;
    fs::write(&biggest, bytes).unwrap();
    let err = import::import(&store, &ImageSource::OciLayout { path: layout, tag: None }).unwrap_err();
    assert!(matches!(err, ImageError::DigestMismatch { .. }), "{err}");
    // The good copy in the store is untouched.
    let hex = biggest.file_name().unwrap().to_str().unwrap();
    assert_eq!(Digest::of(&fs::read(store.blob_path(&Digest::from_hex(hex).unwrap())).unwrap()).hex(), hex);
}

#[test]
fn a_nested_multi_platform_index_gives_the_linux_amd64_manifest() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path().join("store")).unwrap();
    let layout = tmp.path().join("img");
    let amd64 = write_layout(&layout, &[base()], true, "t");
    let size = fs::metadata(layout.join("blobs/sha256").join(amd64.hex())).unwrap().len();
    let nested = serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": Digest::of(b"arm").to_string(), "size": 3, "platform": {"os": "linux", "architecture": "arm64"}},
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": amd64.to_string(), "size": size, "platform": {"os": "linux", "architecture": "amd64"}},
    ]})).unwrap();
    let nested_d = Digest::of(&nested);
    fs::write(layout.join("blobs/sha256").join(nested_d.hex()), &nested).unwrap();
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.index.v1+json", "digest": nested_d.to_string(), "size": nested.len()}]});
    fs::write(layout.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    let resolved = import::import(&store, &ImageSource::OciLayout { path: layout, tag: None }).unwrap();
    assert_eq!(resolved.manifest, amd64);
    assert!(!store.has_blob(&Digest::of(b"arm")));
}

/// A gzip layer (concatenated gzip members, as `gzip -d` and the store read them) of a
/// tar holding one file `bomb` of `size` zero bytes, built from one compressed MiB
/// repeated: about 1 KB per MiB. With `finish` the tar ends properly and the diff_id
/// is its real one; without, the stream is cut after the data (a bomb never finishes).
pub fn zero_bomb(size: u64, finish: bool) -> (Vec<u8>, Digest) {
    use sha2::Digest as _;
    use std::io::Write as _;
    let gz = |bytes: &[u8]| {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    };
    const MIB: u64 = 1 << 20;
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_path("bomb").unwrap();
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_size(size);
    h.set_cksum();
    let mut out = gz(h.as_bytes());
    let mut hasher = sha2::Sha256::new();
    hasher.update(h.as_bytes());
    let mib = gz(&vec![0; MIB as usize]);
    let zeros = vec![0u8; MIB as usize];
    for _ in 0..size / MIB {
        out.extend_from_slice(&mib);
        if finish {
            hasher.update(&zeros);
        }
    }
    let rest = (size % MIB) as usize;
    if finish {
        let tail = rest + (512 - size as usize % 512) % 512 + 1024;
        out.extend_from_slice(&gz(&vec![0; tail]));
        hasher.update(vec![0; tail]);
    }
    let hex: String = hasher.finalize().iter().map(|b| format!("{b:02x}")).collect();
    (out, Digest::from_hex(&hex).unwrap())
}

/// Nothing of a refused import is left: no blob, layer, temporary file or name.
fn assert_store_empty(store: &Store) {
    for dir in ["blobs/sha256", "layers", "tmp"] {
        let left: Vec<_> = fs::read_dir(store.root().join(dir)).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert!(left.is_empty(), "{dir} keeps {left:?}");
    }
    assert!(store.refs().unwrap().is_empty());
}

fn limits_with(edit: impl FnOnce(&mut ImageLimits)) -> ImageLimits {
    let mut limits = ImageLimits::default();
    edit(&mut limits);
    limits
}

#[test]
fn a_gzip_bomb_is_stopped_while_streaming_and_leaves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    // 4 GiB of zeros in about 4 MB of gzip, never finished.
    let (bomb, diff_id) = zero_bomb(4 << 30, false);
    assert!(bomb.len() < 5 << 20, "{} bytes", bomb.len());
    let layout = tmp.path().join("bomb");
    write_layout_blobs(&layout, &[(bomb.clone(), diff_id)], "bomb");
    let layer = Digest::of(&bomb);
    let store = Store::open_with(tmp.path().join("store"), limits_with(|l| l.layer.decompressed = 8 << 20)).unwrap();
    let started = std::time::Instant::now();
    let err = import::import(&store, &ImageSource::OciLayout { path: layout.clone(), tag: None }).unwrap_err();
    let elapsed = started.elapsed();
    match &err {
        ImageError::LayerLimit { blob, limit, .. } => {
            assert_eq!(blob, &layer);
            assert_eq!((limit.scope, limit.resource, limit.limit), (Scope::Layer, Resource::Decompressed, 8 << 20));
            // Stopped within one read of the limit, not after inflating the rest.
            assert!(limit.value <= (8 << 20) + (256 << 10), "{}", limit.value);
        }
        other => panic!("expected a layer limit, got {other}"),
    }
    let text = err.to_string();
    assert!(text.contains(layer.as_str()) && text.contains("8388608") && text.contains("decompressed"), "{text}");
    assert!(elapsed < std::time::Duration::from_secs(10), "took {elapsed:?}");
    assert_store_empty(&store);

    // Control: a moderately large layer made the same way (32 MiB, finished) is refused
    // by the same limit, and taken under the default limits.
    let (layer32, diff32) = zero_bomb(32 << 20, true);
    let ok_layout = tmp.path().join("ok");
    write_layout_blobs(&ok_layout, &[(layer32, diff32)], "ok");
    let source = ImageSource::OciLayout { path: ok_layout, tag: None };
    let err = import::import(&store, &source).unwrap_err();
    assert!(matches!(err, ImageError::LayerLimit { limit: LimitExceeded { resource: Resource::Decompressed, .. }, .. }), "{err}");
    assert_store_empty(&store);
    let roomy = Store::open(tmp.path().join("store")).unwrap();
    let resolved = import::import(&roomy, &source).unwrap();
    assert_eq!(fs::metadata(resolved.lowers[0].join("bomb")).unwrap().len(), 32 << 20);
}

#[test]
fn per_image_limits_count_all_layers_of_the_import_and_the_first_layer_goes_too() {
    let tmp = tempfile::tempdir().unwrap();
    let layers = [
        tar_of(&[E::Dir("a/"), E::File("a/1", "1"), E::File("a/2", "2")]),
        tar_of(&[E::Dir("b/"), E::File("b/1", "1"), E::File("b/2", "2")]),
    ];
    let layout = tmp.path().join("img");
    write_layout(&layout, &layers, true, "two");
    let source = ImageSource::OciLayout { path: layout.clone(), tag: None };
    let store = Store::open_with(tmp.path().join("store"), limits_with(|l| l.image.entries = 5)).unwrap();
    let err = import::import(&store, &source).unwrap_err();
    let manifest: Manifest =
        serde_json::from_slice(&fs::read(layout.join("blobs/sha256").join(store_manifest(&layout).hex())).unwrap()).unwrap();
    match &err {
        ImageError::LayerLimit { blob, entry, limit } => {
            assert_eq!(blob, &manifest.layers[1].digest, "the second layer goes over");
            assert_eq!(entry, "b/2");
            assert_eq!((limit.scope, limit.resource, limit.limit, limit.value), (Scope::Image, Resource::Entries, 5, 6));
        }
        other => panic!("expected an image limit, got {other}"),
    }
    assert!(err.to_string().contains("per-image limit exceeded: more than 5 tar entries (6 reached)"), "{err}");
    // The first layer was unpacked and renamed into layers/; it is gone again.
    assert_store_empty(&store);
    // Negative control: unpacking without the cleanup around it keeps that first layer.
    let half = Store::open_with(tmp.path().join("half"), limits_with(|l| l.image.entries = 5)).unwrap();
    let fetched = import::fetch(&half, &source).unwrap();
    half.unpack(&fetched.manifest).unwrap_err();
    assert_eq!(fs::read_dir(half.root().join("layers")).unwrap().count(), 1, "the first layer was unpacked");
    // Control: one more entry allowed and the image is taken.
    let store = Store::open_with(tmp.path().join("store"), limits_with(|l| l.image.entries = 6)).unwrap();
    assert_eq!(import::import(&store, &source).unwrap().lowers.len(), 2);
}

/// The manifest digest an OCI layout's index.json names.
fn store_manifest(layout: &Path) -> Digest {
    let index: serde_json::Value = serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
    Digest::parse(index["manifests"][0]["digest"].as_str().unwrap()).unwrap()
}

#[test]
fn documents_over_the_limit_are_refused_before_parsing() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("img");
    let manifest = write_layout(&layout, &[base()], true, "t");
    let index_len = fs::metadata(layout.join("index.json")).unwrap().len();
    let manifest_len = fs::metadata(layout.join("blobs/sha256").join(manifest.hex())).unwrap().len();
    assert!(manifest_len > index_len, "the test needs a manifest larger than the index");
    let source = ImageSource::OciLayout { path: layout.clone(), tag: None };
    for (limit, what) in [(index_len - 1, "image index"), (manifest_len - 1, "manifest")] {
        let store = Store::open_with(tmp.path().join(format!("store-{limit}")), limits_with(|l| l.document = limit)).unwrap();
        match import::import(&store, &source).unwrap_err() {
            ImageError::DocumentTooLarge { what: w, limit: hit, .. } => {
                assert_eq!(w, what);
                assert_eq!((hit.resource, hit.limit, hit.value), (Resource::Document, limit, limit + 1));
            }
            other => panic!("{what}: expected a document limit, got {other}"),
        }
        assert_store_empty(&store);
    }
    // Control: at exactly the manifest's size every document passes.
    let store = Store::open_with(tmp.path().join("store-ok"), limits_with(|l| l.document = manifest_len)).unwrap();
    import::import(&store, &source).unwrap();
    // A document already in the store (no descriptor to check first) is read with the cap.
    let strict = Store::open_with(store.root(), limits_with(|l| l.document = manifest_len - 1)).unwrap();
    match strict.read_json::<Manifest>(&manifest, "manifest").unwrap_err() {
        ImageError::DocumentTooLarge { what, limit, .. } => assert_eq!((what, limit.value), ("manifest", manifest_len)),
        other => panic!("expected a document limit, got {other}"),
    }
    store.read_json::<Manifest>(&manifest, "manifest").unwrap();
}

#[test]
fn the_store_is_private_and_an_old_wide_one_is_narrowed() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("images");
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    // As an earlier version left it: 0755 directories and a 0644 refs.json.
    for dir in ["blobs/sha256", "layers", "tmp"] {
        fs::create_dir_all(root.join(dir)).unwrap();
    }
    for dir in ["", "blobs", "blobs/sha256", "layers", "tmp"] {
        fs::set_permissions(root.join(dir), fs::Permissions::from_mode(0o755)).unwrap();
    }
    fs::write(root.join("refs.json"), "{}").unwrap();
    fs::set_permissions(root.join("refs.json"), fs::Permissions::from_mode(0o644)).unwrap();
    let store = Store::open(&root).unwrap();
    for dir in ["", "blobs", "blobs/sha256", "layers", "tmp"] {
        assert_eq!(mode(&root.join(dir)), 0o700, "{dir}");
    }
    assert_eq!(mode(&root.join("refs.json")), 0o600);
    // A fresh store is made 0700, and refs.json written 0600.
    let fresh = Store::open(tmp.path().join("fresh")).unwrap();
    let layout = tmp.path().join("img");
    write_layout(&layout, &[base()], true, "t");
    import::import(&fresh, &ImageSource::OciLayout { path: layout, tag: None }).unwrap();
    assert_eq!((mode(fresh.root()), mode(&fresh.root().join("refs.json"))), (0o700, 0o600));
    // For user-namespaced containers: the path to the layers is searchable, no more.
    store.allow_traversal().unwrap();
    assert_eq!((mode(&root), mode(&root.join("layers")), mode(&root.join("blobs"))), (0o711, 0o711, 0o700));
    Store::open(&root).unwrap();
    assert_eq!(mode(&root), 0o711, "kept: a container may be mounting through it");
}

#[test]
fn inspect_reads_layers_within_the_limits() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("img");
    write_layout(&layout, &[base()], true, "t");
    let store = Store::open(tmp.path().join("store")).unwrap();
    import::import(&store, &ImageSource::OciLayout { path: layout, tag: None }).unwrap();
    // Control: under the default limits the layer's four entries are listed.
    let detail = crate::image::inspect::inspect(&store, "t").unwrap();
    assert_eq!(detail.layers[0].added.len(), 4);
    // A store opened with smaller limits (as if the image came from an older keel).
    let strict = Store::open_with(store.root(), limits_with(|l| l.layer.entries = 3)).unwrap();
    match crate::image::inspect::inspect(&strict, "t").unwrap_err() {
        ImageError::LayerLimit { limit, .. } => assert_eq!((limit.resource, limit.limit, limit.value), (Resource::Entries, 3, 4)),
        other => panic!("expected a layer limit, got {other}"),
    }
}

/// A `docker save` archive of one image with the layer `layer` (a plain tar).
fn docker_archive(path: &Path, layer: &[u8]) {
    let config = serde_json::to_vec(&serde_json::json!({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": [Digest::of(layer).to_string()]}})).unwrap();
    let config_name = format!("{}.json", Digest::of(&config).hex());
    let manifest =
        serde_json::to_vec(&serde_json::json!([{"Config": config_name, "RepoTags": ["d:1"], "Layers": ["l1/layer.tar"]}])).unwrap();
    let mut b = tar::Builder::new(Vec::new());
    // The layer first, as `docker save` writes it: it is stored before a document is read.
    for (name, data) in [("l1/layer.tar", layer), (config_name.as_str(), &config[..]), ("manifest.json", &manifest[..])] {
        let mut h = tar::Header::new_gnu();
        h.set_path(name).unwrap();
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        h.set_cksum();
        b.append(&h, data).unwrap();
    }
    fs::write(path, b.into_inner().unwrap()).unwrap();
}

#[test]
fn a_docker_archive_with_a_document_over_the_limit_is_refused_and_leaves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let archive = tmp.path().join("d.tar");
    docker_archive(&archive, &base());
    let source = ImageSource::DockerArchive(archive);
    let store = Store::open_with(tmp.path().join("store"), limits_with(|l| l.document = 64)).unwrap();
    // Negative control: fetching alone (no cleanup around it) leaves the layer's blob,
    // stored before the config was read.
    let half = Store::open_with(tmp.path().join("half"), limits_with(|l| l.document = 64)).unwrap();
    import::fetch(&half, &source).unwrap_err();
    assert!(half.has_blob(&Digest::of(&base())), "the layer was stored before the refusal");
    match import::import(&store, &source).unwrap_err() {
        ImageError::DocumentTooLarge { what, origin, limit } => {
            assert_eq!(what, "JSON document");
            assert!(origin.ends_with(".json"), "{origin}");
            assert_eq!((limit.resource, limit.limit), (Resource::Document, 64));
        }
        other => panic!("expected a document limit, got {other}"),
    }
    assert_store_empty(&store);
    // Control: under the default limits the same archive is imported.
    let store = Store::open(tmp.path().join("store")).unwrap();
    assert_eq!(import::import(&store, &source).unwrap().lowers.len(), 1);
}

#[test]
fn a_start_finds_the_image_or_says_which_job_brings_it() {
    use crate::image::run::need;
    use crate::worker::JobKind;
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("store");
    let layout = tmp.path().join("layout");
    write_layout(&layout, &[base()], true, "v1");
    let text = format!("image = \"oci:{}\"\ncommand = [\"/bin/true\"]\n", layout.display());
    let spec = crate::spec::parse("app", &text, "app.toml").unwrap();
    let source = ImageSource::OciLayout { path: layout.clone(), tag: None };
    let store = Store::open(&root).unwrap();

    // Not imported: a start does not import, it names the job that does.
    assert_eq!(need(&root, &spec).map(|n| n.kind), Some(JobKind::Import));
    let err = import::ready(&store, &source).unwrap_err().to_string();
    assert!(err.contains("not in the store"), "{err}");

    // Imported (as a job would): nothing needed, and the start finds its layers.
    import::ensure(&store, &source).unwrap();
    assert_eq!(need(&root, &spec), None);
    assert_eq!(import::ready(&store, &source).unwrap().lowers.len(), 1);

    // Layers gone (pruned by hand): an import job unpacks them again.
    for entry in fs::read_dir(root.join("layers")).unwrap() {
        fs::remove_dir_all(entry.unwrap().path()).unwrap();
    }
    assert_eq!(need(&root, &spec).map(|n| n.kind), Some(JobKind::Import));
    assert!(import::ready(&store, &source).unwrap_err().to_string().contains("not unpacked"));

    // A registry image not in the store needs a pull.
    let pulled = crate::spec::parse("web", "image = \"registry.test/app:1\"\n", "web.toml").unwrap();
    assert_eq!(need(&root, &pulled).map(|n| n.kind), Some(JobKind::Pull));
}
