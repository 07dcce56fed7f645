//! The store with hand-made OCI layouts: verification, sharing, naming, pruning.

use super::*;
use crate::image::import;
use crate::image::layer::tests::{tar_of, E};
use crate::image::reference::ImageSource;

/// Write an OCI layout with one manifest of `layers` (plain tars) into `dir`.
pub fn write_layout(dir: &Path, layers: &[Vec<u8>], gzip: bool, tag: &str) -> Digest {
    let blobs = dir.join("blobs/sha256");
    fs::create_dir_all(&blobs).unwrap();
    let put = |bytes: &[u8]| {
        let d = Digest::of(bytes);
        fs::write(blobs.join(d.hex()), bytes).unwrap();
        d
    };
    let mut descs = Vec::new();
    for layer in layers {
        use std::io::Write as _;
        let bytes = if gzip {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(layer).unwrap();
            gz.finish().unwrap()
        } else {
            layer.clone()
        };
        descs.push(serde_json::json!({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": put(&bytes).to_string(), "size": bytes.len()}));
    }
    let diff_ids: Vec<String> = layers.iter().map(|l| Digest::of(l).to_string()).collect();
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
    let manifest: serde_json::Value = serde_json::from_slice(&fs::read(layout.join("blobs/sha256").join(&index["manifests"][0]["digest"].as_str().unwrap()[7..])).unwrap()).unwrap();
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
    let biggest = fs::read_dir(layout.join("blobs/sha256")).unwrap().map(|e| e.unwrap().path()).max_by_key(|p| fs::metadata(p).unwrap().len()).unwrap();
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
