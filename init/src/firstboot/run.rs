//! The first-boot step as PID 1 runs it: decide whether this is a first boot, fetch
//! the config (QEMU fw_cfg, then `keel.config.url=`, then a config drive, then the
//! cloud metadata service of `keel.platform=`), validate all of it, fetch and
//! check every resource, and only then apply the plan (which writes the marker last).
//! Every outcome is reported on the console, in /run/keel/firstboot.json and over
//! `keelctl firstboot`.

use super::apply::{self, HashAlg, PlannedDir, PlannedFile, PlannedLink, ResourceError, WritePlan};
use super::config::{self, Compression, Config, HashAlgorithm, HttpHeader, Problem, Report, Resource, Severity};
use crate::cmdline::Platform;
use keel_netconf::http::{self, Client, Fetched, HttpError, TlsError};
use serde::{Deserialize, Serialize};
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

/// Written last by a successful first boot, on the persistent /var.
pub const MARKER: &str = "/var/lib/keel/firstboot.done";
/// The outcome, for people and tools.
pub const REPORT_PATH: &str = "/run/keel/firstboot.json";

/// One problem, as reported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReportedProblem {
    /// `error` or `warning`.
    pub severity: String,
    /// JSON path, e.g. `storage.files[2].mode`.
    pub path: String,
    /// 1-based line and column in the config (0 when not from the text).
    pub line: usize,
    /// Column.
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

/// Where first boot ended; serialized as the words `keelctl firstboot` and
/// /run/keel/firstboot.json have always shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FirstbootState {
    /// `skipped`: not a first boot (the marker exists).
    Skipped,
    /// `no-config`: no config anywhere, which is an empty config (the marker is written).
    NoConfig,
    /// `deferred`: the config fetches over http(s) and the network is not up yet.
    Deferred,
    /// `applied`: written, marker last.
    Applied,
    /// `failed`: nothing written, no container starts.
    Failed,
}

impl FirstbootState {
    /// The word shown for it.
    pub fn name(self) -> &'static str {
        match self {
            FirstbootState::Skipped => "skipped",
            FirstbootState::NoConfig => "no-config",
            FirstbootState::Deferred => "deferred",
            FirstbootState::Applied => "applied",
            FirstbootState::Failed => "failed",
        }
    }
}

impl std::fmt::Display for FirstbootState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a config or resource could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// A `data:` URL that does not decode.
    #[error("{reason}")]
    DataUrl {
        /// The decoder's message.
        reason: String,
    },
    /// An http(s) request failed.
    #[error(transparent)]
    Http(#[from] HttpError),
    /// The source answered 404 where a file was expected.
    #[error("{url}: HTTP 404 Not Found")]
    NotFound {
        /// The URL (abbreviated).
        url: String,
    },
    /// Neither `data:`, `http://` nor `https://`.
    #[error("{url}: unsupported URL scheme")]
    UnsupportedScheme {
        /// The URL (abbreviated).
        url: String,
    },
    /// The bytes fail their decompression or hash check.
    #[error(transparent)]
    Resource(#[from] ResourceError),
    /// User data that looked gzipped did not decompress.
    #[error("gzip-compressed config: {0}")]
    GzipConfig(#[source] ResourceError),
    /// A CA that is not usable.
    #[error(transparent)]
    Ca(#[from] TlsError),
    /// The AWS metadata token is not text.
    #[error("{url}: the token is not text")]
    TokenNotText {
        /// The token URL.
        url: String,
    },
    /// The AWS metadata service has no IMDSv2 token service.
    #[error("{url}: HTTP 404 Not Found (no IMDSv2 token service)")]
    NoTokenService {
        /// The token URL.
        url: String,
    },
    /// Reading QEMU fw_cfg failed.
    #[error(transparent)]
    FwCfg(#[from] crate::fwcfg::FwCfgError),
    /// Reading a config drive failed.
    #[error(transparent)]
    ConfigDrive(#[from] super::configdrive::ConfigDriveError),
}

/// What the first-boot step did: `keelctl firstboot` and /run/keel/firstboot.json.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FirstbootStatus {
    /// Where first boot ended.
    pub state: FirstbootState,
    /// Where the config came from.
    pub source: Option<String>,
    /// Every problem found (errors and warnings).
    pub problems: Vec<ReportedProblem>,
    /// Files, directories, links and users written.
    pub written: Option<[usize; 4]>,
}

impl FirstbootStatus {
    fn new(state: FirstbootState, source: Option<String>) -> Self {
        FirstbootStatus { state, source, problems: Vec::new(), written: None }
    }

    /// Whether containers may start: not when the config failed.
    pub fn failed(&self) -> bool {
        self.state == FirstbootState::Failed
    }

    /// A first boot that produced no report of its own (its worker could not start, died
    /// or was stopped): failed, with `message` (which names the job and the cause).
    pub fn job_failed(message: impl Into<String>) -> Self {
        FirstbootStatus::new(FirstbootState::Failed, None).fail("", message)
    }

    fn fail(mut self, path: &str, message: impl Into<String>) -> Self {
        self.state = FirstbootState::Failed;
        self.problems.push(ReportedProblem { severity: "error".into(), path: path.into(), line: 0, column: 0, message: message.into() });
        self
    }

    fn add_report(&mut self, report: &Report) {
        self.problems.extend(report.problems.iter().map(reported));
    }
}

fn reported(problem: &Problem) -> ReportedProblem {
    ReportedProblem {
        severity: match problem.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        }
        .into(),
        path: problem.path.clone(),
        line: problem.line,
        column: problem.column,
        message: problem.message.clone(),
    }
}

/// Whether the first-boot config must run: no marker on /var, or `keel.firstboot`.
pub fn is_first_boot(marker: &Path, forced: bool) -> bool {
    forced || !marker.exists()
}

/// Where first boot looks for its config, besides QEMU fw_cfg (from the command line).
#[derive(Debug, Clone, Copy, Default)]
pub struct Sources<'a> {
    /// `keel.config.url=`: a `data:` or `http://` URL.
    pub url: Option<&'a str>,
    /// `keel.platform=`: the cloud whose metadata service holds the user data.
    pub platform: Option<Platform>,
    /// `keel.metadata.url=`: the metadata service's base address, for tests and operations.
    pub metadata_url: Option<&'a str>,
    /// Whether to look for a config drive (label `config-2` or `CIDATA`, see
    /// [`super::configdrive`]) among the machine's block devices: PID 1 does; unit
    /// tests leave it off so they do not depend on the disks of the machine they run on.
    pub config_drive: bool,
    /// Whether the uplink is being brought up. When not, a config that fetches over
    /// http(s) is not applied but reported `deferred`: PID 1 runs first boot again
    /// after the network step.
    pub network: bool,
}

/// Where a [`Fetcher`] sends its milestones.
type Notes<'a> = Box<dyn FnMut(&str) + 'a>;

/// Fetches source URLs: `data:` at once, `http://` and `https://` retried for up to
/// `timeout` while the network comes up, calling `wait` between attempts (the first-boot
/// worker, tests and tools sleep; PID 1's loop drives DHCP meanwhile). Its [`Client`] trusts
/// the image's CA bundle plus the config's `ignition.security.tls` CAs, and goes
/// through the config's `ignition.proxy`.
pub struct Fetcher<'a> {
    timeout: Duration,
    wait: Box<dyn FnMut(Duration) + 'a>,
    client: Client,
    /// The CA sources already trusted (a merged config repeats its parent's).
    trusted: Vec<String>,
    /// Where milestones go besides the log (a worker's log is off: it reports them to PID 1).
    notes: Option<Notes<'a>>,
}

impl Default for Fetcher<'_> {
    fn default() -> Self {
        Fetcher::new(Duration::from_secs(crate::cmdline::DEFAULT_CONFIG_TIMEOUT_SECS), std::thread::sleep)
    }
}

impl<'a> Fetcher<'a> {
    /// A fetcher retrying each http(s) source for up to `timeout`, calling `wait` between tries.
    pub fn new(timeout: Duration, wait: impl FnMut(Duration) + 'a) -> Self {
        Fetcher { timeout, wait: Box::new(wait), client: Client::new(), trusted: Vec::new(), notes: None }
    }

    /// Also send milestones ("applying N file(s)…") to `notes`.
    pub fn with_notes(mut self, notes: impl FnMut(&str) + 'a) -> Self {
        self.notes = Some(Box::new(notes));
        self
    }

    /// A milestone: logged, and sent to the notes when there are.
    fn note(&mut self, line: &str) {
        log::info!("{line}");
        if let Some(notes) = self.notes.as_mut() {
            notes(line);
        }
    }

    /// A fetcher with its own https client (e.g. one trusting a test CA).
    pub fn with_client(timeout: Duration, wait: impl FnMut(Duration) + 'a, client: Client) -> Self {
        Fetcher { timeout, wait: Box::new(wait), client, trusted: Vec::new(), notes: None }
    }

    /// The bytes behind a source URL: `data:`, `http://` or `https://` (a 404 is an
    /// error here), fetched with `headers`.
    pub fn fetch_url(&mut self, url: &str, headers: &[HttpHeader]) -> Result<Vec<u8>, FetchError> {
        if url.starts_with("data:") {
            config::decode_data_url(url).map_err(|reason| FetchError::DataUrl { reason })
        } else if url.starts_with("http://") || url.starts_with("https://") {
            let headers: Vec<(&str, &str)> = headers.iter().map(|h| (h.name.as_str(), h.value.as_str())).collect();
            match self.http("GET", url, &headers, None)? {
                Fetched::Found(response) => Ok(response.body),
                Fetched::NotFound => Err(FetchError::NotFound { url: abbreviate(url) }),
            }
        } else {
            Err(FetchError::UnsupportedScheme { url: abbreviate(url) })
        }
    }

    /// One http(s) request with retries; `fallback` is used when the host name does not resolve.
    fn http(&mut self, method: &str, url: &str, headers: &[(&str, &str)], fallback: Option<IpAddr>) -> Result<Fetched, HttpError> {
        let mut parsed = http::parse_url(url)?;
        parsed.fallback = fallback;
        self.client.fetch(method, &parsed, &abbreviate(url), headers, self.timeout, &mut *self.wait)
    }

    /// Use `config`'s proxy, read timeout and CAs from now on (each CA fetched, checked
    /// and added to the trusted ones). Problems are named by their JSON path.
    fn configure(&mut self, config: &Config) -> Vec<ReportedProblem> {
        let mut problems = Vec::new();
        let proxy = &config.proxy;
        match http::Proxy::new(proxy.http_proxy.as_deref(), proxy.https_proxy.as_deref(), proxy.no_proxy.clone()) {
            Ok(p) => self.client.set_proxy(p),
            Err(e) => problems.push(problem("ignition.proxy", e.to_string())),
        }
        if let Some(secs) = config.timeouts.http_response_headers.filter(|s| *s > 0) {
            self.client.set_read_timeout(Duration::from_secs(u64::from(secs)));
        }
        for (i, ca) in config.certificate_authorities.iter().enumerate() {
            if self.trusted.contains(&ca.source) {
                continue;
            }
            self.trusted.push(ca.source.clone());
            let path = format!("ignition.security.tls.certificateAuthorities[{i}]");
            let pem = self.fetch_reference(ca);
            if let Err(e) = pem.and_then(|pem| Ok(self.client.add_ca_pem(&pem)?)) {
                problems.push(problem(&path, e.to_string()));
            }
        }
        problems
    }

    /// The bytes of a reference (config or CA): fetched, decompressed, hash-checked.
    fn fetch_reference(&mut self, reference: &config::ConfigRef) -> Result<Vec<u8>, FetchError> {
        let bytes = self.fetch_url(&reference.source, &reference.http_headers)?;
        let hash = reference.verification.as_ref().map(|h| (hash_alg(h.algorithm), h.hex.clone()));
        Ok(apply::resolve_resource(bytes, reference.compression == Some(Compression::Gzip), hash)?)
    }

    /// The user data of `platform`'s metadata service under `base` (None: its default
    /// address). `Ok(None)`: the service has no user data (404), which is no config.
    pub fn metadata(&mut self, platform: Platform, base: Option<&str>) -> Result<Option<(Vec<u8>, String)>, FetchError> {
        const LINK_LOCAL: &str = "http://169.254.169.254";
        let found = |fetched: Fetched, url: String| match fetched {
            Fetched::Found(response) => Some((response.body, url)),
            Fetched::NotFound => None,
        };
        match platform {
            Platform::Aws => {
                let base = base.unwrap_or(LINK_LOCAL);
                let token_url = format!("{base}/latest/api/token");
                let token = match self.http("PUT", &token_url, &[("X-aws-ec2-metadata-token-ttl-seconds", "21600")], None)? {
                    Fetched::Found(response) => {
                        String::from_utf8(response.body).map_err(|_| FetchError::TokenNotText { url: token_url.clone() })?
                    }
                    Fetched::NotFound => return Err(FetchError::NoTokenService { url: token_url }),
                };
                let url = format!("{base}/latest/user-data");
                let fetched = self.http("GET", &url, &[("X-aws-ec2-metadata-token", token.trim())], None)?;
                Ok(found(fetched, url))
            }
            Platform::Gcp => {
                let fallback = base.is_none().then_some(IpAddr::from([169, 254, 169, 254]));
                let url = format!("{}/computeMetadata/v1/instance/attributes/user-data", base.unwrap_or("http://metadata.google.internal"));
                let fetched = self.http("GET", &url, &[("Metadata-Flavor", "Google")], fallback)?;
                Ok(found(fetched, url))
            }
            Platform::Openstack => {
                let url = format!("{}/openstack/latest/user_data", base.unwrap_or(LINK_LOCAL));
                let fetched = self.http("GET", &url, &[], None)?;
                Ok(found(fetched, url))
            }
        }
    }
}

/// Where the config is, in the order keel looks: fw_cfg, then `keel.config.url=`, then a
/// config drive (when `sources.config_drive`), then the metadata service of
/// `keel.platform=`. `Ok(None)`: no config anywhere (including a config drive or a
/// metadata service without user data), which is an empty config.
pub fn fetch_config(sources: &Sources, fetcher: &mut Fetcher) -> Result<Option<(Vec<u8>, String)>, FetchError> {
    if let Some(bytes) = crate::fwcfg::read_config()? {
        return Ok(Some((bytes, "QEMU fw_cfg opt/com.coreos/config".into())));
    }
    if let Some(url) = sources.url {
        return fetcher.fetch_url(url, &[]).map(|bytes| Some((bytes, format!("keel.config.url={}", abbreviate(url)))));
    }
    if sources.config_drive {
        if let Some(found) = super::configdrive::read_config()? {
            return Ok(Some(found));
        }
    }
    match sources.platform {
        Some(platform) => {
            let found = fetcher.metadata(platform, sources.metadata_url)?;
            Ok(found.map(|(bytes, url)| (bytes, format!("{} metadata {}", platform_name(platform), abbreviate(&url)))))
        }
        None => Ok(None),
    }
}

fn platform_name(platform: Platform) -> &'static str {
    match platform {
        Platform::Aws => "aws",
        Platform::Gcp => "gcp",
        Platform::Openstack => "openstack",
    }
}

fn abbreviate(url: &str) -> String {
    if url.len() > 60 {
        format!("{}…", &url[..url.char_indices().nth(60).map_or(url.len(), |(i, _)| i)])
    } else {
        url.to_string()
    }
}

/// The bytes behind a source URL (`data:`, `http://` or `https://`, with the default timeout).
pub fn fetch_url(url: &str) -> Result<Vec<u8>, FetchError> {
    Fetcher::default().fetch_url(url, &[])
}

/// User data is often gzipped by cloud tooling: detected by its magic bytes.
fn gunzip_if_compressed(bytes: Vec<u8>) -> Result<Vec<u8>, FetchError> {
    if bytes.starts_with(&[0x1f, 0x8b]) {
        apply::resolve_resource(bytes, true, None).map_err(FetchError::GzipConfig)
    } else {
        Ok(bytes)
    }
}

/// The plan for `config`: every resource fetched, decompressed and hash-checked first.
/// Problems are collected for all resources, not just the first.
pub fn plan(config: &Config, fetcher: &mut Fetcher) -> Result<WritePlan, Vec<(String, String)>> {
    let mut problems = Vec::new();
    let mut resolve = |path: String, resource: &Resource| -> Option<Vec<u8>> {
        let source = resource.source.as_deref()?;
        let result = fetcher.fetch_url(source, &resource.http_headers).and_then(|bytes| {
            let hash = resource.verification.as_ref().map(|h| (hash_alg(h.algorithm), h.hex.clone()));
            Ok(apply::resolve_resource(bytes, resource.compression == Some(Compression::Gzip), hash)?)
        });
        result.map_err(|e| problems.push((path, e.to_string()))).ok()
    };
    let mut files = Vec::new();
    for (i, file) in config.files.iter().enumerate() {
        let contents = file.contents.as_ref().and_then(|r| resolve(format!("storage.files[{i}].contents"), r));
        let contents = match (&file.contents, contents) {
            (Some(r), None) if r.source.is_some() => continue,
            (Some(r), None) if r.source.is_none() => Some(Vec::new()),
            (_, c) => c,
        };
        let append = file.append.iter().enumerate().filter_map(|(j, r)| resolve(format!("storage.files[{i}].append[{j}]"), r)).collect();
        files.push(PlannedFile {
            path: file.path.clone(),
            contents,
            append,
            mode: file.mode,
            uid: file.owner.user.clone(),
            gid: file.owner.group.clone(),
            overwrite: file.overwrite,
        });
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(WritePlan {
        files,
        directories: config
            .directories
            .iter()
            .map(|d| PlannedDir {
                path: d.path.clone(),
                mode: d.mode,
                uid: d.owner.user.clone(),
                gid: d.owner.group.clone(),
                overwrite: d.overwrite,
            })
            .collect(),
        links: config
            .links
            .iter()
            .map(|l| PlannedLink {
                path: l.path.clone(),
                target: l.target.clone(),
                hard: l.hard,
                uid: l.owner.user.clone(),
                gid: l.owner.group.clone(),
                overwrite: l.overwrite,
            })
            .collect(),
        users: config.users.clone(),
        groups: config.groups.clone(),
    })
}

/// The applier's name for a config's hash algorithm.
fn hash_alg(algorithm: HashAlgorithm) -> HashAlg {
    match algorithm {
        HashAlgorithm::Sha256 => HashAlg::Sha256,
        HashAlgorithm::Sha512 => HashAlg::Sha512,
    }
}

/// `ignition.config.replace` and `.merge`: the referenced configs (data:, http:// or
/// https:// URLs), merged in order, the child winning (Ignition's semantics). They are
/// fetched with the CAs and proxy of the config that references them.
fn resolve_references(config: Config, status: &mut FirstbootStatus, fetcher: &mut Fetcher) -> Option<Config> {
    let mut load = |reference: &config::ConfigRef, path: &str, status: &mut FirstbootStatus| -> Option<Config> {
        let bytes = fetcher.fetch_reference(reference).map_err(|e| status.problems.push(problem(path, e.to_string()))).ok()?;
        match config::parse(&bytes) {
            Ok((child, warnings)) => {
                status.add_report(&warnings);
                Some(child)
            }
            Err(report) => {
                status.problems.extend(report.problems.iter().map(|p| {
                    let mut p = reported(p);
                    p.path = format!("{path} → {}", p.path);
                    p
                }));
                None
            }
        }
    };
    let mut base = match &config.replace {
        Some(reference) => load(reference, "ignition.config.replace", status)?,
        None => config.clone(),
    };
    for (i, reference) in config.merge.iter().enumerate() {
        let child = load(reference, &format!("ignition.config.merge[{i}]"), status)?;
        base = config::merge(base, child);
    }
    Some(base)
}

/// A merge or replace can join configs that are each valid into one that is not (a file
/// below the other config's link, one path twice), so the result is checked whole again.
/// Only its errors are added (each config's warnings were reported when it was parsed);
/// their paths index the merged config's lists.
fn revalidate_merged(merged: &Config, status: &mut FirstbootStatus) {
    let report = config::validate(merged);
    status.problems.extend(report.errors().map(|p| {
        let mut p = reported(p);
        p.path = format!("merged config → {}", p.path);
        p
    }));
}

fn problem(path: &str, message: String) -> ReportedProblem {
    ReportedProblem { severity: "error".into(), path: path.into(), line: 0, column: 0, message }
}

/// The whole first-boot step under `root` (PID 1: "/"), with the marker at `marker`,
/// the config from fw_cfg or `sources`, fetched with `fetcher`.
pub fn run(root: &Path, marker: &Path, forced: bool, sources: &Sources, fetcher: &mut Fetcher) -> FirstbootStatus {
    if !is_first_boot(marker, forced) {
        // A power cut right after the marker can leave the commit journal behind; with
        // the marker written it is never read again, so it goes.
        let mut journal = marker.as_os_str().to_owned();
        journal.push(".journal");
        let _ = std::fs::remove_file(journal);
        return FirstbootStatus::new(FirstbootState::Skipped, None);
    }
    let (bytes, source) = match fetch_config(sources, fetcher) {
        Ok(Some(found)) => found,
        Ok(None) => {
            let status = FirstbootStatus::new(FirstbootState::NoConfig, None);
            return match apply::apply(root, &WritePlan::default(), marker) {
                Ok(_) => status,
                Err(e) => status.fail("", e.to_string()),
            };
        }
        Err(e) => return FirstbootStatus::new(FirstbootState::Failed, None).fail("source", e.to_string()),
    };
    let mut status = FirstbootStatus::new(FirstbootState::Failed, Some(source));
    let bytes = match gunzip_if_compressed(bytes) {
        Ok(bytes) => bytes,
        Err(e) => return status.fail("", e.to_string()),
    };
    let config = match config::parse(&bytes) {
        Ok((config, warnings)) => {
            status.add_report(&warnings);
            config
        }
        Err(report) => {
            status.add_report(&report);
            return status;
        }
    };
    if !sources.network && config.needs_network() {
        status.state = FirstbootState::Deferred;
        return status;
    }
    // `ignition.timeouts.httpTotal` bounds each fetch the config asks for (0: no limit).
    if let Some(total) = config.timeouts.http_total {
        fetcher.timeout = Duration::from_secs(if total == 0 { 24 * 3600 } else { u64::from(total) });
    }
    let failed = |status: &FirstbootStatus| status.problems.iter().any(|p| p.severity == "error");
    status.problems.extend(fetcher.configure(&config));
    if failed(&status) {
        return status;
    }
    let referenced = config.replace.is_some() || !config.merge.is_empty();
    let config = match resolve_references(config, &mut status, fetcher) {
        Some(config) if !failed(&status) => config,
        _ => return status,
    };
    if referenced {
        revalidate_merged(&config, &mut status);
        if failed(&status) {
            return status;
        }
    }
    // The merged config's own CAs and proxy are used for the files it names.
    status.problems.extend(fetcher.configure(&config));
    if failed(&status) {
        return status;
    }
    let plan = match plan(&config, fetcher) {
        Ok(plan) => plan,
        Err(problems) => {
            status.problems.extend(problems.into_iter().map(|(path, message)| problem(&path, message)));
            return status;
        }
    };
    fetcher.note(&format!("firstboot: applying {} file(s)…", plan.files.len()));
    match apply::apply(root, &plan, marker) {
        Ok(report) => {
            status.state = FirstbootState::Applied;
            status.written = Some([report.files, report.directories, report.links, report.users]);
            status
        }
        Err(e) => status.fail("", e.to_string()),
    }
}

/// The console text of a failed first boot: a box listing every problem.
pub fn failure_box(status: &FirstbootStatus) -> Vec<String> {
    let mut lines = vec![
        "keel: ╔══ first-boot config FAILED: nothing was written, no container starts ══".to_string(),
        format!("keel: ║ source: {}", status.source.as_deref().unwrap_or("(none)")),
    ];
    for p in &status.problems {
        let place = if p.line > 0 { format!(" (line {}, column {})", p.line, p.column) } else { String::new() };
        lines.push(format!("keel: ║ {} {}{place}: {}", p.severity.to_uppercase(), p.path, p.message));
    }
    lines.push("keel: ╚══ fix the config and boot again; `keelctl firstboot` shows this report".into());
    lines
}

/// Write the report JSON for tools.
pub fn write_report(status: &FirstbootStatus) {
    let _ = std::fs::create_dir_all("/run/keel");
    if let Ok(text) = serde_json::to_string_pretty(status) {
        let _ = std::fs::write(REPORT_PATH, text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data_url(text: &str) -> String {
        let encoded: String =
            text.bytes().map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") }).collect();
        format!("data:,{encoded}")
    }

    struct Root(std::path::PathBuf);

    impl Root {
        fn new(name: &str) -> Self {
            let dir = std::env::temp_dir().join(format!("keel-firstboot-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(dir.join("etc")).unwrap();
            std::fs::write(dir.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
            std::fs::write(dir.join("etc/group"), "root:x:0:\n").unwrap();
            Root(dir)
        }
        fn marker(&self) -> std::path::PathBuf {
            self.0.join("firstboot.done")
        }
    }

    impl Drop for Root {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn run_url(root: &Root, forced: bool, url: Option<&str>) -> FirstbootStatus {
        run(&root.0, &root.marker(), forced, &Sources { url, network: true, ..Default::default() }, &mut Fetcher::default())
    }

    const GOOD: &str =
        r#"{"ignition":{"version":"3.4.0"},"storage":{"files":[{"path":"/etc/motd","mode":420,"contents":{"source":"data:,hello%0A"}}]}}"#;

    #[test]
    fn a_valid_config_is_applied_once_then_skipped() {
        let root = Root::new("good");
        let status = run_url(&root, false, Some(&data_url(GOOD)));
        assert_eq!(status.state, FirstbootState::Applied, "{status:?}");
        assert_eq!(std::fs::read_to_string(root.0.join("etc/motd")).unwrap(), "hello\n");
        assert!(root.marker().exists());
        let again = run_url(&root, false, Some(&data_url(GOOD)));
        assert_eq!(again.state, FirstbootState::Skipped);
        let forced = run_url(&root, true, Some(&data_url(GOOD)));
        assert_eq!(forced.state, FirstbootState::Applied, "keel.firstboot runs it again: {forced:?}");
    }

    #[test]
    fn an_invalid_config_writes_nothing_and_names_every_problem() {
        let root = Root::new("bad");
        let bad = r#"{"ignition":{"version":"3.4.0"},"storage":{"files":[{"path":"/etc/a","moed":420},{"path":"/usr/bin/x"}]},"systemd":{"units":[{"name":"x.service"}]}}"#;
        let status = run_url(&root, false, Some(&data_url(bad)));
        assert!(status.failed());
        let paths: Vec<&str> = status.problems.iter().map(|p| p.path.as_str()).collect();
        assert!(paths.contains(&"storage.files[0].moed"), "{paths:?}");
        assert!(paths.iter().any(|p| p.starts_with("storage.files[1]")), "{paths:?}");
        assert!(paths.iter().any(|p| p.starts_with("systemd")), "{paths:?}");
        assert!(!root.marker().exists() && !root.0.join("etc/a").exists());
        assert!(failure_box(&status).len() >= 5);
    }

    #[test]
    fn a_wrong_hash_is_refused_before_anything_is_written() {
        let root = Root::new("hash");
        let config = r#"{"ignition":{"version":"3.4.0"},"storage":{"files":[{"path":"/etc/ok","contents":{"source":"data:,fine"}},{"path":"/etc/x","contents":{"source":"data:,hello","verification":{"hash":"sha256-0000000000000000000000000000000000000000000000000000000000000000"}}}]}}"#;
        let status = run_url(&root, false, Some(&data_url(config)));
        assert!(status.failed(), "{status:?}");
        assert!(status.problems[0].message.contains("sha256 mismatch"), "{status:?}");
        assert!(!root.0.join("etc/ok").exists(), "a file was written although another one failed");
    }

    #[test]
    fn merged_configs_are_hash_checked_and_merged() {
        let child =
            r#"{"ignition":{"version":"3.4.0"},"storage":{"files":[{"path":"/etc/child","contents":{"source":"data:,from-child"}}]}}"#;
        let sha512 = {
            use sha2::Digest;
            sha2::Sha512::digest(child.as_bytes()).iter().map(|b| format!("{b:02x}")).collect::<String>()
        };
        let parent = |hash: &str| {
            format!(
                r#"{{"ignition":{{"version":"3.4.0","config":{{"merge":[{{"source":"{}","verification":{{"hash":"sha512-{hash}"}}}}]}}}},"storage":{{"files":[{{"path":"/etc/parent","contents":{{"source":"data:,p"}}}}]}}}}"#,
                data_url(child)
            )
        };
        let root = Root::new("merge-ok");
        let status = run_url(&root, false, Some(&data_url(&parent(&sha512))));
        assert_eq!(status.state, FirstbootState::Applied, "{status:?}");
        assert_eq!(std::fs::read_to_string(root.0.join("etc/child")).unwrap(), "from-child");
        assert!(root.0.join("etc/parent").exists());

        let root = Root::new("merge-bad");
        let status = run_url(&root, false, Some(&data_url(&parent(&"0".repeat(128)))));
        assert!(status.failed(), "{status:?}");
        assert!(
            status.problems.iter().any(|p| p.path == "ignition.config.merge[0]" && p.message.contains("sha512 mismatch")),
            "{status:?}"
        );
        assert!(!root.0.join("etc/parent").exists() && !root.marker().exists());
    }

    /// Each config is valid alone, the merge is not (a file below the parent's link): the
    /// merged config is checked whole again and refused before anything is written.
    #[test]
    fn a_merge_that_makes_the_config_invalid_is_refused() {
        let child = r#"{"ignition":{"version":"3.4.0"},"storage":{"files":[{"path":"/etc/app/conf","contents":{"source":"data:,c"}}]}}"#;
        let parent = format!(
            r#"{{"ignition":{{"version":"3.4.0","config":{{"merge":[{{"source":"{}"}}]}}}},"storage":{{"links":[{{"path":"/etc/app","target":"/var/lib/app"}}],"files":[{{"path":"/etc/other","contents":{{"source":"data:,o"}}}}]}}}}"#,
            data_url(child)
        );
        assert!(config::parse(child.as_bytes()).is_ok() && config::parse(parent.as_bytes()).is_ok(), "each config alone is valid");
        let root = Root::new("merge-invalid");
        let status = run_url(&root, false, Some(&data_url(&parent)));
        assert!(status.failed(), "{status:?}");
        let p = status.problems.iter().find(|p| p.severity == "error").expect("an error");
        assert_eq!(p.path, "merged config → storage.files[1].path", "{status:?}");
        assert!(p.message.contains("is below \"/etc/app\""), "{p:?}");
        assert!(!root.0.join("etc/other").exists() && !root.0.join("etc/app").exists() && !root.marker().exists());
    }

    #[test]
    fn a_config_that_fetches_waits_for_the_network() {
        let root = Root::new("deferred");
        let remote = r#"{"ignition":{"version":"3.4.0"},"storage":{"files":[{"path":"/etc/a","contents":{"source":"data:,a"}},{"path":"/etc/b","append":[{"source":"https://h/b"}]}]}}"#;
        let sources = Sources { url: Some(&data_url(remote)), ..Default::default() };
        let status = run(&root.0, &root.marker(), false, &sources, &mut Fetcher::default());
        assert_eq!(status.state, FirstbootState::Deferred, "{status:?}");
        assert!(!root.0.join("etc/a").exists() && !root.marker().exists());
        let sources = Sources { url: Some(&data_url(GOOD)), ..Default::default() };
        assert_eq!(run(&root.0, &root.marker(), false, &sources, &mut Fetcher::default()).state, FirstbootState::Applied);
    }

    #[test]
    fn the_state_is_serialized_as_the_words_keelctl_always_showed() {
        for (state, word) in [
            (FirstbootState::Skipped, "skipped"),
            (FirstbootState::NoConfig, "no-config"),
            (FirstbootState::Deferred, "deferred"),
            (FirstbootState::Applied, "applied"),
            (FirstbootState::Failed, "failed"),
        ] {
            let status = FirstbootStatus::new(state, None);
            let json = serde_json::to_value(&status).unwrap();
            assert_eq!(json["state"], word, "{json}");
            assert_eq!((state.to_string(), state.name()), (word.to_string(), word));
            let back: FirstbootStatus = serde_json::from_value(json).unwrap();
            assert_eq!(back.state, state);
        }
        // A report written by an earlier version reads back.
        let old = r#"{"state":"applied","source":"x","problems":[],"written":[1,0,0,0]}"#;
        assert_eq!(serde_json::from_str::<FirstbootStatus>(old).unwrap().state, FirstbootState::Applied);
        assert!(serde_json::from_str::<FirstbootStatus>(&old.replace("applied", "done")).is_err());
    }

    #[test]
    fn fetch_errors_are_typed() {
        let mut fetcher = Fetcher::new(Duration::from_millis(100), |_| {});
        assert!(matches!(fetcher.fetch_url("ftp://h/x", &[]), Err(FetchError::UnsupportedScheme { .. })));
        assert!(matches!(fetcher.fetch_url("data:nocomma", &[]), Err(FetchError::DataUrl { .. })));
        assert!(matches!(fetcher.fetch_url("http://h:0/x", &[]), Err(FetchError::Http(HttpError::BadUrl { .. }))));
        let gz = gunzip_if_compressed(vec![0x1f, 0x8b, 0, 0]).unwrap_err();
        assert!(matches!(gz, FetchError::GzipConfig(ResourceError::Gzip(_))), "{gz:?}");
        assert!(gz.to_string().starts_with("gzip-compressed config: gzip: "), "{gz}");
    }

    #[test]
    fn no_config_is_an_empty_config() {
        let root = Root::new("none");
        let status = run_url(&root, false, None);
        assert_eq!(status.state, FirstbootState::NoConfig);
        assert!(root.marker().exists());
    }

    use keel_netconf::http::testing::{answer, SeenRequest, TestCa, TestServer};

    /// A server answering each path from `routes` (404 otherwise).
    fn serve(tls: Option<&TestCa>, routes: Vec<(&'static str, Vec<u8>)>) -> TestServer {
        let tls = tls.map(|ca| ca.server_config(&["127.0.0.1"]));
        TestServer::start(
            "127.0.0.1:0",
            tls,
            Box::new(move |r: &SeenRequest| {
                let found = routes.iter().find(|(path, _)| *path == r.path());
                found.map_or_else(|| answer("404 Not Found", b""), |(_, body)| answer("200 OK", body))
            }),
        )
    }

    fn data_pem(ca: &TestCa) -> String {
        data_url(&ca.pem)
    }

    #[test]
    fn an_http_config_and_its_http_files_are_applied() {
        let root = Root::new("http");
        let blobs = serve(None, vec![("/blob", b"blob\n".to_vec())]);
        let config = format!(
            r#"{{"ignition":{{"version":"3.4.0"}},"storage":{{"files":[{{"path":"/etc/blob","contents":{{"source":"http://127.0.0.1:{}/blob"}}}}]}}}}"#,
            blobs.port
        );
        let configs = serve(None, vec![("/config.ign", config.into_bytes())]);
        let status = run_url(&root, false, Some(&format!("http://127.0.0.1:{}/config.ign", configs.port)));
        assert_eq!(status.state, FirstbootState::Applied, "{status:?}");
        assert_eq!(std::fs::read_to_string(root.0.join("etc/blob")).unwrap(), "blob\n");
        assert_eq!(configs.requests()[0].header("connection"), Some("close"));
    }

    #[test]
    fn https_sources_use_the_configs_cas_and_headers() {
        let ca = TestCa::new("keel first-boot test CA");
        let server = serve(Some(&ca), vec![("/child.ign", br#"{"ignition":{"version":"3.4.0"},"storage":{"files":[{"path":"/etc/from-child","contents":{"source":"data:,child"}}]}}"#.to_vec()), ("/secret", b"s3cret".to_vec())]);
        let base = format!("https://127.0.0.1:{}", server.port);
        let config = format!(
            r#"{{"ignition":{{"version":"3.4.0","security":{{"tls":{{"certificateAuthorities":[{{"source":"{ca}"}}]}}}},"config":{{"merge":[{{"source":"{base}/child.ign"}}]}}}},"storage":{{"files":[{{"path":"/etc/secret","contents":{{"source":"{base}/secret","httpHeaders":[{{"name":"Authorization","value":"Bearer abc"}}]}}}}]}}}}"#,
            ca = data_pem(&ca)
        );
        let root = Root::new("https");
        let status = run_url(&root, false, Some(&data_url(&config)));
        assert_eq!(status.state, FirstbootState::Applied, "{status:?}");
        assert_eq!(std::fs::read_to_string(root.0.join("etc/secret")).unwrap(), "s3cret");
        assert_eq!(std::fs::read_to_string(root.0.join("etc/from-child")).unwrap(), "child");
        let seen = server.requests();
        let secret = seen.iter().find(|r| r.path() == "/secret").unwrap();
        assert_eq!(secret.header("authorization"), Some("Bearer abc"));
    }

    #[test]
    fn https_without_the_ca_fails_naming_the_source_and_writes_nothing() {
        let ca = TestCa::new("untrusted CA");
        let server = serve(Some(&ca), vec![("/secret", b"x".to_vec())]);
        let config = format!(
            r#"{{"ignition":{{"version":"3.4.0"}},"storage":{{"files":[{{"path":"/etc/secret","contents":{{"source":"https://127.0.0.1:{}/secret"}}}},{{"path":"/etc/other","contents":{{"source":"data:,y"}}}}]}}}}"#,
            server.port
        );
        let root = Root::new("https-untrusted");
        let status = run_url(&root, false, Some(&data_url(&config)));
        assert!(status.failed(), "{status:?}");
        let p = status.problems.iter().find(|p| p.path == "storage.files[0].contents").expect("a problem at the file");
        assert!(p.message.contains("not signed by a trusted CA"), "{p:?}");
        assert!(!root.0.join("etc/other").exists() && !root.marker().exists());
    }

    #[test]
    fn a_ca_that_fails_its_hash_stops_first_boot() {
        let ca = TestCa::new("keel test CA");
        let config = format!(
            r#"{{"ignition":{{"version":"3.4.0","security":{{"tls":{{"certificateAuthorities":[{{"source":"{}","verification":{{"hash":"sha256-{}"}}}}]}}}}}}}}"#,
            data_pem(&ca),
            "0".repeat(64)
        );
        let root = Root::new("ca-hash");
        let status = run_url(&root, false, Some(&data_url(&config)));
        assert!(status.failed(), "{status:?}");
        assert!(
            status.problems.iter().any(|p| p.path == "ignition.security.tls.certificateAuthorities[0]" && p.message.contains("mismatch")),
            "{status:?}"
        );
        assert!(!root.marker().exists());
    }

    #[test]
    fn aws_metadata_uses_a_token_and_404_is_no_config() {
        let config = r#"{"ignition":{"version":"3.4.0"}}"#;
        let server = TestServer::start(
            "127.0.0.1:0",
            None,
            Box::new(move |r: &SeenRequest| match (r.line.as_str(), r.header("x-aws-ec2-metadata-token")) {
                ("PUT /latest/api/token HTTP/1.1", _) if r.header("x-aws-ec2-metadata-token-ttl-seconds") == Some("21600") => {
                    answer("200 OK", b"TOKEN")
                }
                ("GET /latest/user-data HTTP/1.1", Some("TOKEN")) => answer("200 OK", config.as_bytes()),
                _ => answer("404 Not Found", b""),
            }),
        );
        let base = format!("http://127.0.0.1:{}", server.port);
        let mut fetcher = Fetcher::default();
        let (bytes, url) = fetcher.metadata(Platform::Aws, Some(&base)).unwrap().unwrap();
        assert_eq!((bytes.as_slice(), url), (config.as_bytes(), format!("{base}/latest/user-data")));
        assert_eq!(fetcher.metadata(Platform::Openstack, Some(&base)).unwrap(), None);
    }
}
