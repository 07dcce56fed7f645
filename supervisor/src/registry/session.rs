//! One repository on one registry, spoken to over the distribution API v2: manifests by
//! tag or digest, blobs streamed to disk with resume, anonymous bearer tokens fetched
//! when the registry asks (see [`super::auth`]).

use super::auth;
use crate::image::digest::{Digest, HashingReader};
use keel_netconf::http::{self, Client, Response, Url};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The manifest media types keel asks for, most specific first.
pub const MANIFEST_TYPES: &[&str] = &[
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
];
/// The largest manifest (or index) accepted: the image store's document limit.
const MAX_MANIFEST: u64 = crate::image::limits::DOCUMENT_MAX;
/// How many times a blob download is resumed after a transport error.
const BLOB_ATTEMPTS: u32 = 6;
/// One request waits at most this long to connect.
const TIMEOUT: Duration = Duration::from_secs(30);

/// A manifest as the registry served it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedManifest {
    /// The raw bytes (their sha256 is the digest).
    pub bytes: Vec<u8>,
    /// The `Content-Type` it was served with.
    pub media_type: String,
    /// `sha256:<hex>` of the bytes.
    pub digest: String,
}

/// A session with one repository.
pub struct Session<'c> {
    client: &'c mut Client,
    base: Url,
    repository: String,
    token: Option<String>,
}

/// The digest of the file at `path`, read once.
fn file_digest(path: &Path) -> Result<Digest, String> {
    let file = File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    HashingReader::new(file).finish().map(|(digest, _)| digest).map_err(|e| format!("{}: {e}", path.display()))
}

impl<'c> Session<'c> {
    /// A session with `repository` on `registry` (`host[:port]`), over https, or plain
    /// http when `insecure`.
    pub fn new(client: &'c mut Client, registry: &str, repository: &str, insecure: bool) -> Result<Self, String> {
        let scheme = if insecure { "http" } else { "https" };
        let base = http::parse_url(&format!("{scheme}://{registry}/v2/")).map_err(|e| format!("registry {registry}: {e}"))?;
        Ok(Session { client, base, repository: repository.to_string(), token: None })
    }

    fn url(&self, path: &str) -> Url {
        Url { path: format!("/v2/{}/{path}", self.repository), ..self.base.clone() }
    }

    /// One GET, with a bearer token fetched and the request repeated on a 401.
    fn get(
        &mut self,
        url: &Url,
        extra: &[(&str, &str)],
        sink: &mut dyn Write,
        limit: u64,
        before_body: http::BeforeBody<'_>,
    ) -> Result<Response, String> {
        for _ in 0..2 {
            let authorization = self.token.as_ref().map(|t| format!("Bearer {t}"));
            let mut headers = extra.to_vec();
            if let Some(a) = &authorization {
                headers.push(("Authorization", a));
            }
            let response = self.client.request_streaming("GET", url, &headers, TIMEOUT, sink, limit, &mut *before_body)?;
            if response.status != 401 || self.token.is_some() {
                return Ok(response);
            }
            let challenge =
                response.header("www-authenticate").ok_or_else(|| format!("{url}: HTTP 401 without a WWW-Authenticate challenge"))?;
            let challenge = auth::parse_challenge(challenge)?;
            let token_url = http::parse_url(&auth::token_url(&challenge, &self.repository)?)?;
            let answer = self.client.request("GET", &token_url, &[], TIMEOUT)?;
            if !answer.is_success() {
                return Err(format!("token service {token_url}: HTTP {} {}", answer.status, answer.reason));
            }
            self.token = Some(auth::parse_token(&answer.body)?);
        }
        Err(format!("{url}: HTTP 401 Unauthorized even with a token (is the repository private?)"))
    }

    /// The manifest (or index) for `reference`, a tag or a digest; one pinned by digest
    /// is checked against it.
    pub fn manifest(&mut self, reference: &str) -> Result<FetchedManifest, String> {
        let url = self.url(&format!("manifests/{reference}"));
        let accept = MANIFEST_TYPES.join(", ");
        let mut bytes = Vec::new();
        let response = self.get(&url, &[("Accept", &accept)], &mut bytes, MAX_MANIFEST, &mut |_| Ok(()))?;
        if !response.is_success() {
            return Err(format!("{url}: HTTP {} {}{}", response.status, response.reason, error_detail(&response.body)));
        }
        let digest = Digest::of(&bytes).to_string();
        if reference.starts_with("sha256:") && reference != digest {
            return Err(format!("{url}: the manifest's digest is {digest}, not {reference}"));
        }
        let media_type = response.header("content-type").unwrap_or("").split(';').next().unwrap_or("").trim().to_string();
        Ok(FetchedManifest { bytes, media_type, digest })
    }

    /// Download blob `digest` to `dest`: into `dest.partial`, resumed with a `Range`
    /// request after a transport error (and across calls), checked against the digest,
    /// then renamed. `progress(done, total)` is called after each attempt.
    pub fn blob(&mut self, digest: &str, size: Option<u64>, dest: &Path, progress: &mut dyn FnMut(u64, Option<u64>)) -> Result<(), String> {
        Digest::parse(digest)?;
        let partial = partial_path(dest);
        let url = self.url(&format!("blobs/{digest}"));
        let mut last = String::new();
        let on_disk = |partial: &Path| std::fs::metadata(partial).map(|m| m.len()).unwrap_or(0);
        for attempt in 0..BLOB_ATTEMPTS {
            let have = on_disk(&partial);
            if size.is_some_and(|s| have >= s) {
                break;
            }
            let mut file =
                OpenOptions::new().create(true).append(true).open(&partial).map_err(|e| format!("{}: {e}", partial.display()))?;
            let range = format!("bytes={have}-");
            let headers: Vec<(&str, &str)> = if have > 0 { vec![("Range", &range)] } else { Vec::new() };
            let limit = size.unwrap_or(u64::MAX);
            // A server that ignores the range answers 200 with the whole blob: start over
            // (the file is opened for appending, so writes follow the new length).
            let restart = file.try_clone().map_err(|e| e.to_string())?;
            let mut before_body = |head: &Response| -> Result<(), String> {
                if have > 0 && head.status != 206 {
                    restart.set_len(0).map_err(|e| format!("{}: {e}", partial.display()))?;
                }
                Ok(())
            };
            let item = crate::image::observe::item_of(digest);
            let mut counting = Counting { inner: &mut file, done: have, item: &item, total: size };
            let result = self.get(&url, &headers, &mut counting, limit, &mut before_body);
            match result {
                Ok(r) if r.is_success() => {
                    progress(on_disk(&partial), size);
                    last.clear();
                    break;
                }
                Ok(r) if r.status == 416 => {
                    // Range not satisfiable: what we have is all there is (or garbage).
                    last.clear();
                    break;
                }
                Ok(r) => return Err(format!("{url}: HTTP {} {}{}", r.status, r.reason, error_detail(&r.body))),
                Err(e) => {
                    progress(on_disk(&partial), size);
                    last = e;
                    std::thread::sleep(http::backoff(attempt));
                }
            }
        }
        if !last.is_empty() {
            return Err(format!("blob {digest}: gave up after {BLOB_ATTEMPTS} attempts: {last}"));
        }
        let got = file_digest(&partial)?;
        if got.as_str() != digest {
            let _ = std::fs::remove_file(&partial);
            return Err(format!("blob {digest}: digest mismatch, the registry sent data with digest {got}; refused"));
        }
        std::fs::rename(&partial, dest).map_err(|e| format!("{}: {e}", dest.display()))
    }
}

/// A sink that reports each write's running total as download progress (rate-limited
/// further down, in the worker's reporter).
struct Counting<'a, W: Write> {
    inner: &'a mut W,
    done: u64,
    item: &'a str,
    total: Option<u64>,
}

impl<W: Write> Write for Counting<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.done += n as u64;
        crate::image::observe::progress(self.item, "download", self.done, self.total);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Where a blob being downloaded to `dest` is kept until it is whole.
pub fn partial_path(dest: &Path) -> PathBuf {
    let mut name = dest.as_os_str().to_owned();
    name.push(".partial");
    PathBuf::from(name)
}

/// The registry's error text (`{"errors":[{"code":…,"message":…}]}`), if any.
fn error_detail(body: &[u8]) -> String {
    let value: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let errors = value.get("errors").and_then(|e| e.as_array()).cloned().unwrap_or_default();
    let texts: Vec<String> = errors
        .iter()
        .map(|e| {
            format!("{} {}", e.get("code").and_then(|c| c.as_str()).unwrap_or(""), e.get("message").and_then(|m| m.as_str()).unwrap_or(""))
        })
        .collect();
    if texts.is_empty() {
        String::new()
    } else {
        format!(": {}", texts.join("; "))
    }
}
