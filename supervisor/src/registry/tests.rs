//! Pulls from a fake registry served in-process: token challenge, an index with two
//! platforms, a blob cut off mid-way and resumed, a tampered blob.

use super::pull::{pick_platform, pull_to_layout, PullSpec};
use crate::image::Digest;

fn sha256_digest(bytes: &[u8]) -> String {
    Digest::of(bytes).to_string()
}
use keel_netconf::http::testing::{answer, SeenRequest, TestServer};
use keel_netconf::http::Client;
use serde_json::json;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

struct FakeImage {
    config: Vec<u8>,
    layer: Vec<u8>,
    manifest: Vec<u8>,
    index: Vec<u8>,
}

fn fake_image() -> FakeImage {
    let config = br#"{"architecture":"amd64","os":"linux","config":{"Cmd":["/bin/sh"]}}"#.to_vec();
    let layer: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": { "mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256_digest(&config), "size": config.len() },
        "layers": [{ "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": sha256_digest(&layer), "size": layer.len() }]
    })
    .to_string()
    .into_bytes();
    let index = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            { "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha256:".to_string() + &"a".repeat(64), "size": 1, "platform": { "os": "linux", "architecture": "arm64" } },
            { "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": sha256_digest(&manifest), "size": manifest.len(), "platform": { "os": "linux", "architecture": "amd64" } }
        ]
    })
    .to_string()
    .into_bytes();
    FakeImage { config, layer, manifest, index }
}

/// A registry for `lib/img` that wants a token, cuts the layer's first download at
/// half, and serves `layer_override` instead of the layer when given.
fn registry(image: Arc<FakeImage>, layer_override: Option<Vec<u8>>) -> TestServer {
    let layer_gets = AtomicUsize::new(0);
    TestServer::start(
        "127.0.0.1:0",
        None,
        Box::new(move |r: &SeenRequest| {
            let host = r.header("host").unwrap_or("").to_string();
            if r.path().starts_with("/token?") {
                return answer("200 OK", br#"{"token":"T0K3N"}"#);
            }
            if r.header("authorization") != Some("Bearer T0K3N") {
                let challenge = format!("Bearer realm=\"http://{host}/token\",service=\"fake\"");
                return format!("HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: {challenge}\r\nContent-Length: 0\r\n\r\n").into_bytes();
            }
            let typed = |media: &str, body: &[u8]| {
                let mut out = format!("HTTP/1.1 200 OK\r\nContent-Type: {media}\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
                out.extend_from_slice(body);
                out
            };
            let manifest_digest = sha256_digest(&image.manifest);
            let layer_path = format!("/v2/lib/img/blobs/{}", sha256_digest(&image.layer));
            match r.path() {
                "/v2/lib/img/manifests/latest" => typed("application/vnd.oci.image.index.v1+json", &image.index),
                p if p == format!("/v2/lib/img/manifests/{manifest_digest}") => {
                    typed("application/vnd.oci.image.manifest.v1+json", &image.manifest)
                }
                p if p == format!("/v2/lib/img/blobs/{}", sha256_digest(&image.config)) => answer("200 OK", &image.config),
                p if p == layer_path => {
                    let layer = layer_override.as_ref().unwrap_or(&image.layer);
                    match (layer_gets.fetch_add(1, Ordering::Relaxed), r.header("range")) {
                        (0, _) => {
                            // Announce the whole layer, send half, hang up.
                            let mut out = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", layer.len()).into_bytes();
                            out.extend_from_slice(&layer[..layer.len() / 2]);
                            out
                        }
                        (_, Some(range)) => {
                            let from: usize = range.trim_start_matches("bytes=").trim_end_matches('-').parse().unwrap();
                            let rest = &layer[from..];
                            let mut out = format!("HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\n\r\n", rest.len()).into_bytes();
                            out.extend_from_slice(rest);
                            out
                        }
                        (_, None) => answer("200 OK", layer),
                    }
                }
                _ => answer("404 Not Found", br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#),
            }
        }),
    )
}

fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("keel-pull-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn spec(port: u16, reference: &str) -> PullSpec {
    PullSpec { registry: format!("127.0.0.1:{port}"), repository: "lib/img".into(), reference: reference.into(), insecure: true }
}

#[test]
fn a_pull_follows_the_token_challenge_picks_amd64_and_resumes_a_cut_blob() {
    let image = Arc::new(fake_image());
    let server = registry(image.clone(), None);
    let dir = scratch("ok");
    let mut logs = Vec::new();
    let pulled = pull_to_layout(&mut Client::new(), &spec(server.port, "latest"), &dir, &mut |l| logs.push(l)).unwrap();
    assert_eq!(pulled.manifest_digest, sha256_digest(&image.manifest));
    let blob = |bytes: &[u8]| std::fs::read(dir.join("blobs/sha256").join(&sha256_digest(bytes)[7..])).unwrap();
    assert_eq!(
        (blob(&image.layer), blob(&image.config), blob(&image.manifest)),
        (image.layer.clone(), image.config.clone(), image.manifest.clone())
    );
    let index: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    assert_eq!(index["manifests"][0]["digest"], sha256_digest(&image.manifest));
    assert_eq!(index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"], "latest");
    assert!(dir.join("oci-layout").exists());
    let seen = server.requests();
    assert_eq!(seen.iter().filter(|r| r.path().starts_with("/token")).count(), 1, "one token for the session");
    assert!(
        seen.iter().any(|r| r.header("range") == Some(&format!("bytes={}-", image.layer.len() / 2))),
        "the layer was resumed: {seen:?}"
    );
    assert!(logs.iter().any(|l| l.contains("linux/amd64")) && logs.iter().any(|l| l.contains("layer 1/1")), "{logs:?}");
    // A second pull finds every blob and downloads nothing.
    let again = pull_to_layout(&mut Client::new(), &spec(server.port, "latest"), &dir, &mut |_| {}).unwrap();
    assert_eq!(again.downloaded, 0);
}

#[test]
fn a_tampered_blob_is_refused_and_not_kept() {
    let image = Arc::new(fake_image());
    let mut tampered = image.layer.clone();
    tampered[10] ^= 0xff;
    let server = registry(image.clone(), Some(tampered));
    let dir = scratch("tampered");
    let err = pull_to_layout(&mut Client::new(), &spec(server.port, "latest"), &dir, &mut |_| {}).unwrap_err();
    assert!(err.contains("digest mismatch") && err.contains(&sha256_digest(&image.layer)), "{err}");
    let layer_file = dir.join("blobs/sha256").join(&sha256_digest(&image.layer)[7..]);
    assert!(!layer_file.exists() && !super::session::partial_path(&layer_file).exists());
    assert!(!dir.join("index.json").exists());
}

#[test]
fn unknown_tags_and_wrong_pins_are_clear_errors() {
    let image = Arc::new(fake_image());
    let server = registry(image, None);
    let err = pull_to_layout(&mut Client::new(), &spec(server.port, "nope"), &scratch("unknown"), &mut |_| {}).unwrap_err();
    assert!(err.contains("404") && err.contains("manifest unknown"), "{err}");
    let pin = format!("sha256:{}", "b".repeat(64));
    let err = pull_to_layout(&mut Client::new(), &spec(server.port, &pin), &scratch("pin"), &mut |_| {}).unwrap_err();
    assert!(err.contains("404"), "{err}");
}

#[test]
fn indexes_without_amd64_say_what_they_offer() {
    let index = json!({ "manifests": [{ "digest": "sha256:x", "platform": { "os": "linux", "architecture": "arm64" } }] });
    let err = pick_platform(&index).unwrap_err();
    assert!(err.contains("linux/arm64") && err.contains("no linux/amd64"), "{err}");
}

#[test]
fn a_config_over_the_document_limit_is_refused_before_download() {
    use super::pull::check_config_size;
    let max = crate::image::limits::DOCUMENT_MAX;
    let err = check_config_size("sha256:c", Some(max + 1)).unwrap_err();
    assert!(err.contains(&format!("{} bytes, over the {max}-byte limit", max + 1)), "{err}");
    assert!(check_config_size("sha256:c", None).unwrap_err().contains("no size"));
    // Control: at the limit it is fetched.
    check_config_size("sha256:c", Some(max)).unwrap();
}
