//! Semantic rules over a typed [`Config`]: Ignition's and keel's own, as the module
//! doc of [`super`] lists them (which is which, and why keel adds each of its own).
//!
//! Ignition's, here: clean absolute paths, no path twice, nothing below a link, no
//! hard link to a directory of the config; modes; URL syntax and schemes, data: URLs;
//! header rules; proxy URLs; duplicate merge/CA sources and `noProxy` entries.
//! keel's, here: the writable trees ([`WRITABLE_TREES`]); data:, http and https
//! sources only, fetchable by keel; absolute hard-link targets; owner name syntax;
//! PEM CAs and gzip data; header tokens and line breaks; warnings for risky modes.

use super::data_url::decode_data_url;
use super::report::{JsonPath, Problem, Severity};
use super::types::{Compression, Config, ConfigRef, IdOrName, Owner, ProxySettings, Resource};
use super::url_syntax;
use super::walk::Origins;
use std::collections::{HashMap, HashSet};

/// The trees first boot may write below; everything else is the read-only image.
pub const WRITABLE_TREES: &[&str] = &["/etc", "/var", "/home", "/root", "/opt", "/srv", "/usr/local"];

/// Finds the line and column of a JSON path (0, 0 when unknown).
pub type Locate<'a> = &'a dyn Fn(&JsonPath) -> (usize, usize);

/// Collects problems with their positions.
pub struct Checker<'a> {
    origins: &'a Origins,
    locate: Locate<'a>,
    /// Problems found so far.
    pub problems: Vec<Problem>,
}

impl<'a> Checker<'a> {
    /// A checker mapping config indices through `origins` and positions through `locate`.
    pub fn new(origins: &'a Origins, locate: Locate<'a>) -> Self {
        Checker { origins, locate, problems: Vec::new() }
    }

    /// Records a problem at `path`.
    pub fn report(&mut self, severity: Severity, path: &JsonPath, message: String) {
        let (line, column) = (self.locate)(path);
        self.problems.push(Problem { path: path.to_string(), line, column, message, severity });
    }

    /// Records an error at `path`.
    pub fn error(&mut self, path: &JsonPath, message: String) {
        self.report(Severity::Error, path, message);
    }

    /// The JSON path of entry `i` of a config list (`list` is e.g. `["storage", "files"]`).
    pub fn entry(&self, list: &[&str], i: usize) -> JsonPath {
        let origins = match list.last() {
            Some(&"files") => &self.origins.files,
            Some(&"directories") => &self.origins.directories,
            Some(&"links") => &self.origins.links,
            Some(&"users") => &self.origins.users,
            Some(&"groups") => &self.origins.groups,
            Some(&"certificateAuthorities") => &self.origins.certificate_authorities,
            _ => &self.origins.merge,
        };
        JsonPath::of(list).index(origins.get(i).copied().unwrap_or(i))
    }
}

/// Checks a path is absolute and clean: no empty, `.` or `..` components, no
/// trailing `/` (except the root itself), no NUL.
pub fn check_clean_path(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err("path is empty".into());
    }
    if !path.starts_with('/') {
        return Err(format!("path {path:?} is not absolute"));
    }
    if path.contains('\0') {
        return Err(format!("path {path:?} contains a NUL character"));
    }
    if path == "/" {
        return Ok(());
    }
    if path.ends_with('/') {
        return Err(format!("path {path:?} ends with '/'"));
    }
    for comp in path[1..].split('/') {
        match comp {
            "" => return Err(format!("path {path:?} contains '//'")),
            "." | ".." => return Err(format!("path {path:?} contains a {comp:?} component; write the path without it")),
            _ => {}
        }
    }
    Ok(())
}

/// Checks a clean path lies strictly below one of [`WRITABLE_TREES`].
pub fn check_writable(path: &str) -> Result<(), String> {
    let below = |tree: &str| path.len() > tree.len() && path.starts_with(tree) && path.as_bytes()[tree.len()] == b'/';
    if WRITABLE_TREES.iter().any(|t| below(t)) {
        return Ok(());
    }
    if WRITABLE_TREES.contains(&path) {
        return Err(format!("path {path:?} is the top of a writable tree; configure paths below it"));
    }
    if path == "/usr" || path.starts_with("/usr/") {
        return Err(format!("path {path:?} is in /usr, the read-only image; only /usr/local is writable"));
    }
    Err(format!("path {path:?} is outside keel's writable trees ({})", WRITABLE_TREES.join(", ")))
}

/// Checks a mode: an error above 0o7777, warnings for risky bits.
pub fn check_mode(mode: u32, is_dir: bool) -> (Option<String>, Vec<String>) {
    if mode > 0o7777 {
        return (Some(format!("mode {mode:#o} is above 0o7777 (JSON modes are decimal: 0o644 is 420)")), Vec::new());
    }
    let mut warnings = Vec::new();
    if !is_dir && mode & 0o6000 != 0 {
        warnings.push(format!("mode {mode:#o} sets setuid/setgid"));
    }
    if mode & 0o002 != 0 && (!is_dir || mode & 0o1000 == 0) {
        let what = if is_dir { "directory without the sticky bit" } else { "file" };
        warnings.push(format!("mode {mode:#o} makes a world-writable {what}"));
    }
    (None, warnings)
}

/// Checks a resource URL. Ignition's rules: it parses as a URL and its scheme is one
/// Ignition knows, a data: URL well-formed. keel's: only data:, http: and https:
/// (by design), and an http(s) URL keel's fetcher can fetch (a host, no user
/// information, a port 1–65535, no spaces).
pub fn check_source(source: &str) -> Result<(), String> {
    let parts = url_syntax::parse(source).map_err(|e| format!("source {source:?} is not a valid URL: {e}"))?;
    match parts.scheme.as_str() {
        "data" => decode_data_url(source).map(|_| ()).map_err(|e| format!("malformed data URL: {e}")),
        "http" | "https" => keel_netconf::http::parse_url(source)
            .map(|_| ())
            .map_err(|e| format!("keel cannot fetch {source:?} (keel's rule: want {}://HOST[:PORT]/PATH): {e}", parts.scheme)),
        s @ ("s3" | "gs" | "tftp" | "arn") => {
            Err(format!("URL scheme {s:?} is not supported by keel; serve the data over https or inline it as a data: URL"))
        }
        "" => Err(format!("source {source:?} is not a URL; use a data:, http: or https: URL")),
        s => Err(format!("URL scheme {s:?} is not supported; use data:, http: or https:")),
    }
}

/// Checks that gzip-compressed inline data starts with the gzip magic bytes.
fn check_gzip_data(source: &str) -> Result<(), String> {
    match decode_data_url(source) {
        Ok(bytes) if !bytes.starts_with(&[0x1f, 0x8b]) => Err("compression is \"gzip\" but the data: URL does not hold gzip data".into()),
        _ => Ok(()),
    }
}

/// Runs every rule over `config`.
pub fn check_config(c: &mut Checker<'_>, config: &Config) {
    check_nodes(c, config);
    for (i, f) in config.files.iter().enumerate() {
        let p = c.entry(&["storage", "files"], i);
        if let Some(r) = &f.contents {
            check_resource(c, r, &p.key("contents"));
        }
        for (j, r) in f.append.iter().enumerate() {
            check_resource(c, r, &p.key("append").index(j));
        }
        check_mode_at(c, f.mode, false, &p);
    }
    for (i, d) in config.directories.iter().enumerate() {
        let p = c.entry(&["storage", "directories"], i);
        check_mode_at(c, d.mode, true, &p);
    }
    check_links(c, config);
    let mut sources = HashSet::new();
    for (i, r) in config.merge.iter().enumerate() {
        let p = c.entry(&["ignition", "config", "merge"], i);
        check_reference(c, r, &p);
        if !sources.insert(&r.source) {
            c.error(&p, format!("merge source {:?} is listed twice", r.source));
        }
    }
    if let Some(r) = &config.replace {
        check_reference(c, r, &JsonPath::of(&["ignition", "config", "replace"]));
    }
    let mut sources = HashSet::new();
    for (i, r) in config.certificate_authorities.iter().enumerate() {
        let p = c.entry(&["ignition", "security", "tls", "certificateAuthorities"], i);
        check_reference(c, r, &p);
        if !sources.insert(&r.source) {
            c.error(&p, format!("CA source {:?} is listed twice", r.source));
        }
        if r.source.get(..5).is_some_and(|s| s.eq_ignore_ascii_case("data:")) && r.compression.is_none() {
            if let Err(e) =
                decode_data_url(&r.source).and_then(|pem| keel_netconf::http::tls::parse_pem_certificates(&pem).map_err(|e| e.to_string()))
            {
                c.error(&p.key("source"), format!("not a usable CA certificate: {e}"));
            }
        }
    }
    check_proxy(c, &config.proxy);
    super::validate_passwd::check_passwd(c, config);
}

fn check_mode_at(c: &mut Checker<'_>, mode: Option<u32>, is_dir: bool, entry: &JsonPath) {
    let Some(mode) = mode else { return };
    let (error, warnings) = check_mode(mode, is_dir);
    let p = entry.key("mode");
    if let Some(e) = error {
        c.error(&p, e);
    }
    for w in warnings {
        c.report(Severity::Warning, &p, w);
    }
}

fn check_reference(c: &mut Checker<'_>, r: &ConfigRef, path: &JsonPath) {
    let res =
        Resource { source: Some(r.source.clone()), compression: r.compression, verification: None, http_headers: r.http_headers.clone() };
    check_resource(c, &res, path);
}

/// Ignition's proxy rules: a set proxy (`""` included) parses as a URL with scheme
/// http or https; no `noProxy` entry twice. keel's: the proxy is `http://HOST[:PORT]`
/// (keel's fetcher speaks plain http to proxies).
fn check_proxy(c: &mut Checker<'_>, proxy: &ProxySettings) {
    for (key, url) in [("httpProxy", &proxy.http_proxy), ("httpsProxy", &proxy.https_proxy)] {
        let Some(url) = url else { continue };
        let p = JsonPath::of(&["ignition", "proxy", key]);
        match url_syntax::parse(url) {
            Err(e) => c.error(&p, format!("proxy {url:?} is not a valid URL: {e}")),
            Ok(parts) if parts.scheme != "http" && parts.scheme != "https" => {
                c.error(&p, format!("proxy {url:?} is not an http:// or https:// URL"))
            }
            Ok(_) => {
                let result = match key {
                    "httpProxy" => keel_netconf::http::Proxy::new(Some(url), None, Vec::new()),
                    _ => keel_netconf::http::Proxy::new(None, Some(url), Vec::new()),
                };
                if let Err(e) = result {
                    c.error(&p, format!("{e} (keel's rule)"));
                }
            }
        }
    }
    let mut seen = HashSet::new();
    for (i, entry) in proxy.no_proxy.iter().enumerate() {
        if !seen.insert(entry) {
            c.error(&JsonPath::of(&["ignition", "proxy", "noProxy"]).index(i), format!("noProxy entry {entry:?} is listed twice"));
        }
    }
}

/// Ignition's header rules: only with an http(s) source (the scheme read
/// case-insensitively), a non-empty name, a non-empty value, no name twice. keel's:
/// names are HTTP tokens, unique case-insensitively (HTTP names are), and values hold
/// no line break (it would split the request).
fn check_headers(c: &mut Checker<'_>, r: &Resource, path: &JsonPath) {
    if r.http_headers.is_empty() {
        return;
    }
    let p = path.key("httpHeaders");
    let scheme = r.source.as_deref().and_then(|s| url_syntax::parse(s).ok()).map(|u| u.scheme);
    if !matches!(scheme.as_deref(), Some("http" | "https")) {
        c.error(&p, "httpHeaders are only sent with http:// and https:// sources".into());
    }
    let (mut exact, mut folded) = (HashSet::new(), HashSet::new());
    for (i, h) in r.http_headers.iter().enumerate() {
        let hp = p.index(i);
        if h.name.is_empty() {
            c.error(&hp.key("name"), "header name is empty".into());
        } else if !exact.insert(h.name.as_str()) {
            c.error(&hp.key("name"), format!("header {:?} is given twice", h.name));
        } else if !h.name.bytes().all(|b| b.is_ascii_graphic() && b != b':') {
            c.error(&hp.key("name"), format!("header name {:?} is not a valid HTTP token (keel's rule)", h.name));
        } else if !folded.insert(h.name.to_ascii_lowercase()) {
            c.error(
                &hp.key("name"),
                format!("header {:?} is given twice, in another case (keel's rule: HTTP names are case-insensitive)", h.name),
            );
        }
        if h.value.is_empty() {
            c.error(&hp.key("value"), "header value is empty".into());
        } else if h.value.contains(['\r', '\n']) {
            c.error(&hp.key("value"), "header value contains a line break (keel's rule)".into());
        }
    }
}

fn check_resource(c: &mut Checker<'_>, r: &Resource, path: &JsonPath) {
    check_headers(c, r, path);
    let Some(source) = &r.source else { return };
    let p = path.key("source");
    if let Err(e) = check_source(source) {
        c.error(&p, e);
    } else if r.compression == Some(Compression::Gzip) && source.get(..5).is_some_and(|s| s.eq_ignore_ascii_case("data:")) {
        if let Err(e) = check_gzip_data(source) {
            c.error(&path.key("compression"), e);
        }
    }
}

/// Paths, writable trees, duplicates, entries below links, owners.
fn check_nodes(c: &mut Checker<'_>, config: &Config) {
    let mut entries: Vec<(JsonPath, &str, &Owner)> = Vec::new();
    for (i, f) in config.files.iter().enumerate() {
        entries.push((c.entry(&["storage", "files"], i), &f.path, &f.owner));
    }
    for (i, d) in config.directories.iter().enumerate() {
        entries.push((c.entry(&["storage", "directories"], i), &d.path, &d.owner));
    }
    for (i, l) in config.links.iter().enumerate() {
        entries.push((c.entry(&["storage", "links"], i), &l.path, &l.owner));
    }
    let links: HashMap<&str, JsonPath> =
        config.links.iter().enumerate().map(|(i, l)| (l.path.as_str(), c.entry(&["storage", "links"], i))).collect();
    let mut seen: HashMap<&str, &JsonPath> = HashMap::new();
    for (entry, path, owner) in &entries {
        let p = entry.key("path");
        if let Err(e) = check_clean_path(path).and_then(|()| check_writable(path)) {
            c.error(&p, e);
        } else if let Some(first) = seen.get(path) {
            c.error(&p, format!("duplicate path {path:?}: {first} already configures it"));
        } else if let Some((link, at)) = ancestors(path).find_map(|a| links.get(a).map(|at| (a, at))) {
            c.error(&p, format!("path {path:?} is below {link:?}, which {at} makes a link"));
        }
        seen.entry(path).or_insert(entry);
        check_owner(c, owner, entry);
    }
}

/// The proper ancestors of a clean absolute path, nearest first.
fn ancestors(path: &str) -> impl Iterator<Item = &str> {
    let mut cur = path;
    std::iter::from_fn(move || {
        let cut = cur.rfind('/')?;
        cur = &cur[..cut];
        (!cur.is_empty()).then_some(cur)
    })
}

fn check_owner(c: &mut Checker<'_>, owner: &Owner, entry: &JsonPath) {
    for (key, who) in [("user", &owner.user), ("group", &owner.group)] {
        if let Some(IdOrName::Name(name)) = who {
            if let Err(e) = super::validate_passwd::check_name(name) {
                c.error(&entry.key(key).key("name"), e);
            }
        }
    }
}

fn check_links(c: &mut Checker<'_>, config: &Config) {
    for (i, l) in config.links.iter().enumerate() {
        let p = c.entry(&["storage", "links"], i).key("target");
        if l.target.is_empty() {
            c.error(&p, "link target is empty".into());
        } else if l.target.contains('\0') {
            c.error(&p, "link target contains a NUL character".into());
        } else if l.hard {
            if let Some(d) = config.directories.iter().position(|d| d.path == l.target) {
                let at = c.entry(&["storage", "directories"], d);
                c.error(&p, format!("hard link target {:?} is a directory ({at}); directories cannot be hard-linked", l.target));
            } else if !l.target.starts_with('/') {
                c.error(&p, format!("hard link target {:?} must be an absolute path", l.target));
            } else if let Err(e) = check_clean_path(&l.target).and_then(|()| check_writable(&l.target)) {
                c.error(&p, format!("hard link target: {e}"));
            }
        }
    }
}
