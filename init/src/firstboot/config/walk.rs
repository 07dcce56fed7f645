//! Walks the positioned JSON tree into a typed [`Config`], collecting every shape
//! problem: unknown keys (with a suggestion), keys too new for the declared spec
//! version, wrong types, missing required keys and unsupported features.
//!
//! Version gating (keys refused in configs that declare an older spec):
//! `ignition.proxy` and `…httpHeaders` need 3.1.0, `storage.luks` and
//! `passwd.users[]/groups[].shouldExist` need 3.2.0, `kernelArguments` needs 3.3.0.
//! Keys added by 3.4.0–3.6.0 all live under features keel refuses anyway.

use super::json::{Kind, LineIndex, Member, Node};
use super::report::{JsonPath, Problem, Severity};
use super::suggest::suggest;
use super::types::{Config, ProxySettings, Timeouts};

/// Lowest and highest accepted minor version of spec 3.
pub const MIN_MINOR: u32 = 0;
/// Highest accepted minor version: spec 3.6.0.
pub const MAX_MINOR: u32 = 6;

/// A key allowed in some object, and the spec 3 minor version that introduced it.
#[derive(Debug, Clone, Copy)]
pub struct KeyRule {
    /// The key.
    pub name: &'static str,
    /// First spec 3 minor version with this key.
    pub since: u32,
}

/// A key present since spec 3.0.0.
pub const fn key(name: &'static str) -> KeyRule {
    KeyRule { name, since: 0 }
}

/// A key added in spec 3.`since`.0.
pub const fn key_since(name: &'static str, since: u32) -> KeyRule {
    KeyRule { name, since }
}

/// Maps array indices of the typed config back to the JSON arrays (entries that
/// could not be read at all are left out of the config).
#[derive(Debug, Clone, Default)]
pub struct Origins {
    /// JSON index of each `Config::files` entry.
    pub files: Vec<usize>,
    /// JSON index of each `Config::directories` entry.
    pub directories: Vec<usize>,
    /// JSON index of each `Config::links` entry.
    pub links: Vec<usize>,
    /// JSON index of each `Config::users` entry.
    pub users: Vec<usize>,
    /// JSON index of each `Config::groups` entry.
    pub groups: Vec<usize>,
    /// JSON index of each `Config::merge` entry.
    pub merge: Vec<usize>,
    /// JSON index of each `Config::certificate_authorities` entry.
    pub certificate_authorities: Vec<usize>,
}

/// Walk state: the declared version and the problems found so far.
pub struct Walker<'t> {
    /// Declared spec 3 minor version (the newest when the version is unusable).
    pub minor: u32,
    /// Problems found so far.
    pub problems: Vec<Problem>,
    lines: &'t LineIndex<'t>,
}

const ROOT_KEYS: &[KeyRule] = &[key("ignition"), key("passwd"), key("storage"), key("systemd"), key_since("kernelArguments", 3)];
const IGNITION_KEYS: &[KeyRule] = &[key("version"), key("config"), key("timeouts"), key("security"), key_since("proxy", 1)];

impl<'t> Walker<'t> {
    /// A walker for a document indexed by `lines`.
    pub fn new(lines: &'t LineIndex<'t>) -> Self {
        Walker { minor: MAX_MINOR, problems: Vec::new(), lines }
    }

    /// Records a problem at a byte offset.
    pub fn problem(&mut self, severity: Severity, path: &JsonPath, offset: usize, message: String) {
        let (line, column) = self.lines.position(offset);
        self.problems.push(Problem { path: path.to_string(), line, column, message, severity });
    }

    /// Records an error about `node`.
    pub fn error(&mut self, path: &JsonPath, node: &Node, message: impl Into<String>) {
        self.problem(Severity::Error, path, node.offset, message.into());
    }

    /// The members of an object, or an error and `None`. `null` counts as absent.
    pub fn object<'n>(&mut self, node: &'n Node, path: &JsonPath) -> Option<&'n [Member]> {
        match &node.kind {
            Kind::Object(m) => Some(m),
            Kind::Null => None,
            other => {
                self.error(path, node, format!("expected an object, found {}", other.describe()));
                None
            }
        }
    }

    /// The items of an array (empty for `null`), or an error.
    pub fn array<'n>(&mut self, node: &'n Node, path: &JsonPath) -> &'n [Node] {
        match &node.kind {
            Kind::Array(items) => items,
            Kind::Null => &[],
            other => {
                self.error(path, node, format!("expected an array, found {}", other.describe()));
                &[]
            }
        }
    }

    /// A string (`None` for null or a wrong type, which is reported).
    pub fn string(&mut self, node: &Node, path: &JsonPath) -> Option<String> {
        match &node.kind {
            Kind::String(s) => Some(s.clone()),
            Kind::Null => None,
            other => {
                self.error(path, node, format!("expected a string, found {}", other.describe()));
                None
            }
        }
    }

    /// A boolean (`None` for null or a wrong type, which is reported).
    pub fn boolean(&mut self, node: &Node, path: &JsonPath) -> Option<bool> {
        match &node.kind {
            Kind::Bool(b) => Some(*b),
            Kind::Null => None,
            other => {
                self.error(path, node, format!("expected a boolean, found {}", other.describe()));
                None
            }
        }
    }

    /// A non-negative integer that fits in 32 bits.
    pub fn uint(&mut self, node: &Node, path: &JsonPath) -> Option<u32> {
        let text = match &node.kind {
            Kind::Number(t) => t,
            Kind::Null => return None,
            other => {
                self.error(path, node, format!("expected an integer, found {}", other.describe()));
                return None;
            }
        };
        if text.contains(['.', 'e', 'E']) {
            self.error(path, node, format!("expected an integer, found the number {text}"));
            return None;
        }
        // `-0` is zero (Ignition reads it so).
        match text.strip_prefix('-').filter(|t| t.bytes().all(|b| b == b'0')).map_or(text.as_str(), |_| "0").parse::<u32>() {
            Ok(n) => Some(n),
            Err(_) if text.starts_with('-') => {
                self.error(path, node, format!("expected a non-negative integer, found {text}"));
                None
            }
            Err(_) => {
                self.error(path, node, format!("{text} is too large (the limit is {})", u32::MAX));
                None
            }
        }
    }

    /// A list of strings (each wrong item reported; `null` is `""`, as Ignition reads it).
    pub fn strings(&mut self, node: &Node, path: &JsonPath) -> Vec<String> {
        let items = self.array(node, path);
        items
            .iter()
            .enumerate()
            .filter_map(|(i, n)| if matches!(n.kind, Kind::Null) { Some(String::new()) } else { self.string(n, &path.index(i)) })
            .collect()
    }

    /// The members whose keys are allowed here in this spec version; every other key
    /// is reported (with a suggestion for typos).
    pub fn known<'n>(&mut self, members: &'n [Member], path: &JsonPath, rules: &[KeyRule]) -> Vec<&'n Member> {
        let mut out = Vec::new();
        for m in members {
            let key_path = path.key(&m.key);
            match rules.iter().find(|r| r.name == m.key) {
                Some(r) if r.since <= self.minor => out.push(m),
                Some(r) => {
                    let msg = format!("key {:?} needs spec 3.{}.0 or later; this config declares 3.{}.0", m.key, r.since, self.minor);
                    self.problem(Severity::Error, &key_path, m.key_offset, msg);
                }
                None => {
                    let names: Vec<&str> = rules.iter().map(|r| r.name).collect();
                    let mut msg = format!("unknown key {:?}", m.key);
                    if let Some(s) = suggest(&m.key, &names) {
                        msg.push_str(&format!(" (did you mean {s:?}?)"));
                    }
                    self.problem(Severity::Error, &key_path, m.key_offset, msg);
                }
            }
        }
        out
    }

    /// Reports a missing required key of the object at `path`.
    pub fn missing(&mut self, path: &JsonPath, object: &Node, key: &str) {
        self.error(&path.key(key), object, format!("missing required key {key:?}"));
    }

    /// Refuses an unsupported feature unless its value is empty (null, false, "", [] or {}).
    pub fn unsupported(&mut self, m: &Member, path: &JsonPath, advice: &str) {
        if !is_empty(&m.value) {
            self.error(&path.key(&m.key), &m.value, format!("{:?} is not supported by keel: {advice}", m.key));
        }
    }
}

/// True for null, false, "", [] and objects whose members are all empty.
pub fn is_empty(node: &Node) -> bool {
    match &node.kind {
        Kind::Null | Kind::Bool(false) => true,
        Kind::String(s) => s.is_empty(),
        Kind::Array(items) => items.is_empty(),
        Kind::Object(members) => members.iter().all(|m| is_empty(&m.value)),
        Kind::Bool(true) | Kind::Number(_) => false,
    }
}

/// The member `key` of an object node, if present.
pub fn member<'n>(node: &'n Node, key: &str) -> Option<&'n Member> {
    match &node.kind {
        Kind::Object(members) => members.iter().find(|m| m.key == key),
        _ => None,
    }
}

/// Reads `ignition.version`: the spec 3 minor version, or the problem's message.
fn read_version(root: &Node) -> Result<u32, (Option<&Node>, String)> {
    let Some(version) = member(root, "ignition").and_then(|i| member(&i.value, "version")) else {
        return Err((None, "missing required key \"version\"; keel reads Ignition spec 3.0.0 to 3.6.0".into()));
    };
    let Kind::String(text) = &version.value.kind else {
        return Err((Some(&version.value), format!("expected a string, found {}", version.value.kind.describe())));
    };
    let bad = |why: &str| Err((Some(&version.value), format!("version {text:?} {why}")));
    if text.starts_with("2.") || text.starts_with("1.") {
        return bad("is not supported; translate the config to spec 3 (e.g. with ign-converter or Butane)");
    }
    if text.ends_with("-experimental") {
        return bad("is experimental and not supported; use a stable spec 3.0.0 to 3.6.0");
    }
    match text.strip_prefix("3.").and_then(|r| r.strip_suffix(".0")).map(|m| m.parse::<u32>()) {
        Some(Ok(minor)) if (MIN_MINOR..=MAX_MINOR).contains(&minor) && !text.contains('+') => Ok(minor),
        _ => bad("is not supported; keel reads Ignition spec 3.0.0 to 3.6.0"),
    }
}

/// Walks a whole document into a config; the problems are left in the walker.
pub fn walk(w: &mut Walker<'_>, root: &Node) -> (Config, Origins) {
    let mut config = Config::default();
    let mut origins = Origins::default();
    let top = JsonPath::default();
    match read_version(root) {
        Ok(minor) => w.minor = minor,
        Err((node, message)) => {
            let offset = node.map_or(member(root, "ignition").map_or(root.offset, |m| m.value.offset), |n| n.offset);
            w.problem(Severity::Error, &JsonPath::of(&["ignition", "version"]), offset, message);
        }
    }
    let Some(members) = w.object(root, &top) else {
        if matches!(root.kind, Kind::Null) {
            w.error(&top, root, "expected an object, found null");
        }
        return (config, origins);
    };
    for m in w.known(members, &top, ROOT_KEYS) {
        let path = top.key(&m.key);
        match m.key.as_str() {
            "ignition" => walk_ignition(w, &m.value, &path, &mut config, &mut origins),
            "storage" => super::walk_storage::walk_storage(w, &m.value, &path, &mut config, &mut origins),
            "passwd" => super::walk_passwd::walk_passwd(w, &m.value, &path, &mut config, &mut origins),
            "systemd" => walk_systemd(w, &m.value, &path),
            "kernelArguments" => walk_kernel_arguments(w, &m.value, &path),
            _ => {}
        }
    }
    (config, origins)
}

fn walk_ignition(w: &mut Walker<'_>, node: &Node, path: &JsonPath, config: &mut Config, origins: &mut Origins) {
    let Some(members) = w.object(node, path) else {
        return;
    };
    for m in w.known(members, path, IGNITION_KEYS) {
        let p = path.key(&m.key);
        match m.key.as_str() {
            "config" => super::walk_storage::walk_config_refs(w, &m.value, &p, config, origins),
            "timeouts" => config.timeouts = walk_timeouts(w, &m.value, &p),
            "security" => walk_security(w, &m.value, &p, config, origins),
            "proxy" => config.proxy = walk_proxy(w, &m.value, &p),
            _ => {} // "version" was read first
        }
    }
}

fn walk_timeouts(w: &mut Walker<'_>, node: &Node, path: &JsonPath) -> Timeouts {
    let mut t = Timeouts::default();
    let Some(members) = w.object(node, path) else {
        return t;
    };
    for m in w.known(members, path, &[key("httpResponseHeaders"), key("httpTotal")]) {
        let value = w.uint(&m.value, &path.key(&m.key));
        match m.key.as_str() {
            "httpResponseHeaders" => t.http_response_headers = value,
            _ => t.http_total = value,
        }
    }
    t
}

fn walk_security(w: &mut Walker<'_>, node: &Node, path: &JsonPath, config: &mut Config, origins: &mut Origins) {
    let Some(members) = w.object(node, path) else {
        return;
    };
    for m in w.known(members, path, &[key("tls")]) {
        let p = path.key("tls");
        let Some(tls) = w.object(&m.value, &p) else {
            continue;
        };
        for t in w.known(tls, &p, &[key("certificateAuthorities")]) {
            let p = p.key(&t.key);
            let (cas, origins) = (&mut config.certificate_authorities, &mut origins.certificate_authorities);
            super::walk_storage::each(w, &t.value, &p, super::walk_storage::config_ref, cas, origins);
        }
    }
}

fn walk_proxy(w: &mut Walker<'_>, node: &Node, path: &JsonPath) -> ProxySettings {
    let mut proxy = ProxySettings::default();
    let Some(members) = w.object(node, path) else {
        return proxy;
    };
    for m in w.known(members, path, &[key("httpProxy"), key("httpsProxy"), key("noProxy")]) {
        let p = path.key(&m.key);
        match m.key.as_str() {
            // `""` is a (bad) proxy URL, not "no proxy": only absent or null is unset.
            "httpProxy" => proxy.http_proxy = w.string(&m.value, &p).map(super::walk_storage::lowercase_http_scheme),
            "httpsProxy" => proxy.https_proxy = w.string(&m.value, &p).map(super::walk_storage::lowercase_http_scheme),
            _ => proxy.no_proxy = w.strings(&m.value, &p),
        }
    }
    proxy
}

fn walk_systemd(w: &mut Walker<'_>, node: &Node, path: &JsonPath) {
    let Some(members) = w.object(node, path) else {
        return;
    };
    for m in w.known(members, path, &[key("units")]) {
        w.unsupported(m, path, "keel has no systemd: declare a container in /etc/keel/containers/NAME.toml via storage.files");
    }
}

fn walk_kernel_arguments(w: &mut Walker<'_>, node: &Node, path: &JsonPath) {
    let Some(members) = w.object(node, path) else {
        return;
    };
    for m in w.known(members, path, &[key("shouldExist"), key("shouldNotExist")]) {
        w.unsupported(m, path, "set the kernel command line in the image's host.toml");
    }
}
