//! Semantic rules over a typed [`Config`] (Ignition's, plus keel's own).
//!
//! Ignition's: absolute, clean paths; no path used twice across files, directories
//! and links; nothing below a configured link; mode ≤ 0o7777; overwrite needs a
//! source; non-empty link targets, absolute targets for hard links; data:, http: and
//! https: sources only, data: URLs well-formed (and gzip data really gzip); valid,
//! unique user and group names.
//! keel's: every path strictly below one of [`WRITABLE_TREES`] (never /usr outside
//! /usr/local); warnings for setuid/setgid files and world-writable files (or
//! directories without the sticky bit).

use super::data_url::decode_data_url;
use super::report::{JsonPath, Problem, Severity};
use super::types::{Compression, Config, ConfigRef, IdOrName, Owner, ProxySettings, Resource};
use super::walk::Origins;
use std::collections::HashMap;

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

/// Checks a resource URL: data: (decoded here), http: or https:.
pub fn check_source(source: &str) -> Result<(), String> {
    let Some((scheme, rest)) = source.split_once(':') else {
        return Err(format!("source {source:?} is not a URL; use a data:, http: or https: URL"));
    };
    match scheme.to_ascii_lowercase().as_str() {
        "data" => decode_data_url(source).map(|_| ()).map_err(|e| format!("malformed data URL: {e}")),
        "http" | "https" => {
            let host = rest.strip_prefix("//").map(|r| r.split(['/', '?', '#']).next().unwrap_or(""));
            match host {
                Some(h) if !h.is_empty() && !source.contains(char::is_whitespace) => Ok(()),
                _ => Err(format!("source {source:?} is not a valid {scheme} URL (want {scheme}://HOST/PATH)")),
            }
        }
        s @ ("s3" | "gs" | "tftp" | "arn") => {
            Err(format!("URL scheme {s:?} is not supported by keel; serve the data over https or inline it as a data: URL"))
        }
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
        if f.overwrite && f.contents.as_ref().and_then(|r| r.source.as_ref()).is_none() {
            c.error(&p.key("overwrite"), "overwrite is true but contents.source is not set; give the file a source".into());
        }
        check_mode_at(c, f.mode, false, &p);
    }
    for (i, d) in config.directories.iter().enumerate() {
        let p = c.entry(&["storage", "directories"], i);
        check_mode_at(c, d.mode, true, &p);
    }
    check_links(c, config);
    for (i, r) in config.merge.iter().enumerate() {
        check_reference(c, r, &c.entry(&["ignition", "config", "merge"], i));
    }
    if let Some(r) = &config.replace {
        check_reference(c, r, &JsonPath::of(&["ignition", "config", "replace"]));
    }
    for (i, r) in config.certificate_authorities.iter().enumerate() {
        let p = c.entry(&["ignition", "security", "tls", "certificateAuthorities"], i);
        check_reference(c, r, &p);
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

fn check_proxy(c: &mut Checker<'_>, proxy: &ProxySettings) {
    for (key, url) in [("httpProxy", &proxy.http_proxy), ("httpsProxy", &proxy.https_proxy)] {
        let Some(url) = url else { continue };
        let result = match key {
            "httpProxy" => keel_netconf::http::Proxy::new(Some(url), None, Vec::new()),
            _ => keel_netconf::http::Proxy::new(None, Some(url), Vec::new()),
        };
        if let Err(e) = result {
            c.error(&JsonPath::of(&["ignition", "proxy", key]), e.to_string());
        }
    }
}

/// Ignition's header rules: a name, no name twice, only for http(s) sources; keel also
/// refuses line breaks, which would split the request.
fn check_headers(c: &mut Checker<'_>, r: &Resource, path: &JsonPath) {
    if r.http_headers.is_empty() {
        return;
    }
    let p = path.key("httpHeaders");
    let source = r.source.as_deref().unwrap_or("");
    if !(source.starts_with("http://") || source.starts_with("https://")) {
        c.error(&p, "httpHeaders are only sent with http:// and https:// sources".into());
    }
    let mut seen = std::collections::HashSet::new();
    for (i, h) in r.http_headers.iter().enumerate() {
        let hp = p.index(i);
        if h.name.is_empty() || !h.name.bytes().all(|b| b.is_ascii_graphic() && b != b':') {
            c.error(&hp.key("name"), format!("header name {:?} is empty or not a valid HTTP token", h.name));
        } else if !seen.insert(h.name.to_ascii_lowercase()) {
            c.error(&hp.key("name"), format!("header {:?} is given twice", h.name));
        }
        if h.value.contains(['\r', '\n']) {
            c.error(&hp.key("value"), "header value contains a line break".into());
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
            if !l.target.starts_with('/') {
                c.error(&p, format!("hard link target {:?} must be an absolute path", l.target));
            } else if let Err(e) = check_clean_path(&l.target).and_then(|()| check_writable(&l.target)) {
                c.error(&p, format!("hard link target: {e}"));
            }
        }
    }
}
