//! Walks `storage` (files, directories, links, and the refused disk features) and
//! the resources they share with `ignition.config`.

use super::json::{Kind, Member, Node};
use super::report::JsonPath;
use super::types::{
    Compression, Config, ConfigRef, DirEntry, FileEntry, Hash, HashAlgorithm, HttpHeader, IdOrName, LinkEntry, Owner, Resource,
};
use super::walk::{is_empty, key, key_since, KeyRule, Origins, Walker};

const STORAGE_KEYS: &[KeyRule] =
    &[key("files"), key("directories"), key("links"), key("disks"), key("raid"), key("filesystems"), key_since("luks", 2)];
const NODE_KEYS: [KeyRule; 4] = [key("path"), key("overwrite"), key("user"), key("group")];
const FILE_KEYS: &[KeyRule] = &[NODE_KEYS[0], NODE_KEYS[1], NODE_KEYS[2], NODE_KEYS[3], key("contents"), key("append"), key("mode")];
const DIR_KEYS: &[KeyRule] = &[NODE_KEYS[0], NODE_KEYS[1], NODE_KEYS[2], NODE_KEYS[3], key("mode")];
const LINK_KEYS: &[KeyRule] = &[NODE_KEYS[0], NODE_KEYS[1], NODE_KEYS[2], NODE_KEYS[3], key("target"), key("hard")];
const RESOURCE_KEYS: &[KeyRule] = &[key("source"), key("compression"), key("verification"), key_since("httpHeaders", 1)];
/// Spec 3.0.0's config and CA references know only a source and a hash; 3.1.0 made
/// them full resources (a 3.0.0 `compression` there is an unknown key, not applied).
const REFERENCE_KEYS: &[KeyRule] = &[key("source"), key_since("compression", 1), key("verification"), key_since("httpHeaders", 1)];

/// Walks `storage`.
pub fn walk_storage(w: &mut Walker<'_>, node: &Node, path: &JsonPath, config: &mut Config, origins: &mut Origins) {
    let Some(members) = w.object(node, path) else {
        return;
    };
    for m in w.known(members, path, STORAGE_KEYS) {
        let p = path.key(&m.key);
        match m.key.as_str() {
            "files" => each(w, &m.value, &p, walk_file, &mut config.files, &mut origins.files),
            "directories" => each(w, &m.value, &p, walk_dir, &mut config.directories, &mut origins.directories),
            "links" => each(w, &m.value, &p, walk_link, &mut config.links, &mut origins.links),
            "disks" => w.unsupported(m, path, "keel does not partition disks; keel-build makes the data disk (label keel-var) that keel mounts at /var"),
            "raid" => w.unsupported(m, path, "keel does not assemble RAID arrays; give the VM one data disk (label keel-var) for /var"),
            "filesystems" => w.unsupported(m, path, "keel's /var is its data disk (ext4, label keel-var, made by keel-build); write files under /var instead of mounting filesystems"),
            _ => w.unsupported(m, path, "keel does not set up LUKS volumes; encrypt the VM's disk at the platform level"),
        }
    }
}

/// Walks each item of an array with `f`, keeping the JSON index of every item read.
/// A `null` item is walked as `{}`, as Ignition reads it (so its required keys are
/// reported missing; it is never dropped silently).
pub fn each<T>(
    w: &mut Walker<'_>,
    node: &Node,
    path: &JsonPath,
    f: fn(&mut Walker<'_>, &Node, &JsonPath) -> Option<T>,
    out: &mut Vec<T>,
    origins: &mut Vec<usize>,
) {
    for (i, item) in w.array(node, path).iter().enumerate() {
        let p = path.index(i);
        let empty;
        let item = if matches!(item.kind, Kind::Null) {
            empty = Node { offset: item.offset, kind: Kind::Object(Vec::new()) };
            &empty
        } else {
            item
        };
        let Some(_) = w.object(item, &p) else {
            continue;
        };
        if let Some(value) = f(w, item, &p) {
            out.push(value);
            origins.push(i);
        }
    }
}

/// Walks `ignition.config` (merge and replace).
pub fn walk_config_refs(w: &mut Walker<'_>, node: &Node, path: &JsonPath, config: &mut Config, origins: &mut Origins) {
    let Some(members) = w.object(node, path) else {
        return;
    };
    for m in w.known(members, path, &[key("merge"), key("replace")]) {
        let p = path.key(&m.key);
        if m.key == "merge" {
            each(w, &m.value, &p, config_ref, &mut config.merge, &mut origins.merge);
        } else if !is_empty(&m.value) {
            // Without a source (absent, null or "") a replace is none, as in Ignition;
            // its other keys are still checked.
            let Some((r, _)) = resource_keys(w, &m.value, &p, REFERENCE_KEYS) else { continue };
            match r.source {
                Some(source) => {
                    config.replace =
                        Some(ConfigRef { source, compression: r.compression, verification: r.verification, http_headers: r.http_headers })
                }
                None if !r.http_headers.is_empty() => {
                    w.error(&p.key("httpHeaders"), &m.value, "httpHeaders need an http:// or https:// source")
                }
                None => {}
            }
        }
    }
}

/// Walks a resource whose source is required (a config reference, a CA).
pub fn config_ref(w: &mut Walker<'_>, node: &Node, path: &JsonPath) -> Option<ConfigRef> {
    let (r, _) = resource_keys(w, node, path, REFERENCE_KEYS)?;
    let Some(source) = r.source else {
        match super::walk::member(node, "source") {
            None => w.missing(path, node, "source"),
            Some(m) => w.error(&path.key("source"), &m.value, "a source is required here (null and \"\" are not sources)"),
        }
        return None;
    };
    Some(ConfigRef { source, compression: r.compression, verification: r.verification, http_headers: r.http_headers })
}

/// Walks a resource object (`contents`, `append[]`).
pub fn resource(w: &mut Walker<'_>, node: &Node, path: &JsonPath) -> Option<Resource> {
    resource_keys(w, node, path, RESOURCE_KEYS).map(|(r, _)| r)
}

/// Walks a resource with the keys `keys`; also returns whether `source` was given as
/// a string (`""` included). A `""` source is no source, as in Ignition: the typed
/// resource holds `None`. An `http`/`https` scheme is lowercased (schemes are
/// case-insensitive; the fetcher reads the lowercase form).
fn resource_keys(w: &mut Walker<'_>, node: &Node, path: &JsonPath, keys: &[KeyRule]) -> Option<(Resource, bool)> {
    let members = w.object(node, path)?;
    let mut r = Resource::default();
    let (mut source_set, mut hash_at) = (false, None);
    for m in w.known(members, path, keys) {
        let p = path.key(&m.key);
        match m.key.as_str() {
            "source" => {
                let source = w.string(&m.value, &p);
                source_set = source.is_some();
                r.source = source.filter(|s| !s.is_empty()).map(lowercase_http_scheme);
            }
            "compression" => r.compression = compression(w, &m.value, &p),
            "verification" => {
                hash_at = super::walk::member(&m.value, "hash").filter(|h| !matches!(h.value.kind, Kind::Null)).map(|h| &h.value);
                r.verification = verification(w, &m.value, &p);
            }
            _ => r.http_headers = http_headers(w, &m.value, &p),
        }
    }
    if let (Some(at), false) = (hash_at, source_set) {
        w.error(&path.key("verification").key("hash"), at, "verification.hash needs a source to check");
    }
    Some((r, source_set))
}

/// `HTTP://h/p` → `http://h/p` (other URLs unchanged): schemes are case-insensitive,
/// keel's fetcher reads the lowercase form.
pub fn lowercase_http_scheme(source: String) -> String {
    match source.split_once(':') {
        Some((scheme, rest))
            if ["http", "https"].iter().any(|s| scheme.eq_ignore_ascii_case(s)) && scheme.bytes().any(|b| b.is_ascii_uppercase()) =>
        {
            format!("{}:{rest}", scheme.to_ascii_lowercase())
        }
        _ => source,
    }
}

/// Walks `httpHeaders`: `[{"name": …, "value": …}]`.
fn http_headers(w: &mut Walker<'_>, node: &Node, path: &JsonPath) -> Vec<HttpHeader> {
    let mut headers = Vec::new();
    for (i, item) in w.array(node, path).iter().enumerate() {
        let p = path.index(i);
        if matches!(item.kind, Kind::Null) {
            w.error(&p.key("name"), item, "a null header has no name");
            continue;
        }
        let Some(members) = w.object(item, &p) else { continue };
        let (mut name, mut value) = (None, None);
        for m in w.known(members, &p, &[key("name"), key("value")]) {
            let text = w.string(&m.value, &p.key(&m.key));
            if m.key == "name" {
                name = text
            } else {
                value = text
            }
        }
        match (name, value) {
            (Some(name), Some(value)) => headers.push(HttpHeader { name, value }),
            // keel's rule: Ignition accepts a header without a value here but refuses it
            // when fetching, at first boot.
            (Some(_), None) => w.error(&p.key("value"), item, "header value is missing (Ignition refuses it when fetching)"),
            (None, _) => w.missing(&p, item, "name"),
        }
    }
    headers
}

fn compression(w: &mut Walker<'_>, node: &Node, path: &JsonPath) -> Option<Compression> {
    match w.string(node, path)?.as_str() {
        "" => None,
        "gzip" => Some(Compression::Gzip),
        other => {
            w.error(path, node, format!("compression {other:?} is not supported; use \"gzip\" or none"));
            None
        }
    }
}

fn verification(w: &mut Walker<'_>, node: &Node, path: &JsonPath) -> Option<Hash> {
    let members = w.object(node, path)?;
    let mut hash = None;
    for m in w.known(members, path, &[key("hash")]) {
        let p = path.key("hash");
        let text = w.string(&m.value, &p)?;
        match parse_hash(&text, w.minor) {
            Ok(h) => hash = Some(h),
            Err(e) => w.error(&p, &m.value, e),
        }
    }
    hash
}

/// Parses `sha256-<64 hex>` (spec 3.1.0 and later) or `sha512-<128 hex>` (hex
/// digits of either case) in a config of spec 3.`minor`.0.
pub fn parse_hash(text: &str, minor: u32) -> Result<Hash, String> {
    let Some((name, hex)) = text.split_once('-') else {
        return Err(format!("hash {text:?} is not ALGORITHM-HEX, e.g. sha512-<128 hex digits>"));
    };
    let (algorithm, len) = match name {
        "sha256" if minor == 0 => return Err("sha256 needs spec 3.1.0 or later; spec 3.0.0 knows only sha512".into()),
        "sha256" => (HashAlgorithm::Sha256, 64),
        "sha512" => (HashAlgorithm::Sha512, 128),
        other => return Err(format!("hash algorithm {other:?} is not supported; use sha256 or sha512")),
    };
    if hex.len() != len {
        return Err(format!("{name} hash must be {len} hex digits, found {:?}", hex));
    }
    if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        // keel's rule: a digest that is not hex can never match (Ignition fails at first boot).
        return Err(format!("{name} hash {hex:?} is not hex, so no data can match it"));
    }
    Ok(Hash { algorithm, hex: hex.to_ascii_lowercase() })
}

/// Reads path, overwrite, user and group; returns (path, overwrite, owner), the
/// path `None` when missing or unreadable (already reported).
fn node_common(w: &mut Walker<'_>, node: &Node, path: &JsonPath, known: &[&Member]) -> (Option<String>, bool, Owner) {
    let (mut p_out, mut overwrite, mut owner) = (None, false, Owner::default());
    for m in known {
        let p = path.key(&m.key);
        match m.key.as_str() {
            "path" => {
                p_out = w.string(&m.value, &p);
                if matches!(m.value.kind, Kind::Null) {
                    w.error(&p, &m.value, "path is required (null is not a path)");
                }
            }
            "overwrite" => overwrite = w.boolean(&m.value, &p).unwrap_or(false),
            "user" => owner.user = id_or_name(w, &m.value, &p),
            "group" => owner.group = id_or_name(w, &m.value, &p),
            _ => {}
        }
    }
    if p_out.is_none() && !known.iter().any(|m| m.key == "path") {
        w.missing(path, node, "path");
    }
    (p_out, overwrite, owner)
}

fn id_or_name(w: &mut Walker<'_>, node: &Node, path: &JsonPath) -> Option<IdOrName> {
    let members = w.object(node, path)?;
    let (mut id, mut name) = (None, None);
    for m in w.known(members, path, &[key("id"), key("name")]) {
        let p = path.key(&m.key);
        if m.key == "id" {
            id = w.uint(&m.value, &p);
        } else {
            name = w.string(&m.value, &p);
        }
    }
    // An empty name is no name, as in Ignition (`{"id": 0, "name": ""}` is uid 0).
    let name = name.filter(|n| !n.is_empty());
    match (id, name) {
        (Some(_), Some(_)) => {
            w.error(path, node, "set either id or name, not both");
            None
        }
        (Some(id), None) => Some(IdOrName::Id(id)),
        (None, Some(name)) => Some(IdOrName::Name(name)),
        (None, None) => None,
    }
}

fn walk_file(w: &mut Walker<'_>, node: &Node, path: &JsonPath) -> Option<FileEntry> {
    let members = w.object(node, path)?;
    let known = w.known(members, path, FILE_KEYS);
    let (file_path, overwrite, owner) = node_common(w, node, path, &known);
    let mut f = FileEntry { overwrite, owner, ..FileEntry::default() };
    let mut contents_source_set = false;
    for m in known {
        let p = path.key(&m.key);
        match m.key.as_str() {
            "contents" => {
                if let Some((r, set)) = resource_keys(w, &m.value, &p, RESOURCE_KEYS) {
                    f.contents = Some(r);
                    contents_source_set = set;
                }
            }
            "append" => {
                for (i, item) in w.array(&m.value, &p).iter().enumerate() {
                    f.append.extend(resource(w, item, &p.index(i)));
                }
            }
            "mode" => f.mode = w.uint(&m.value, &p),
            _ => {}
        }
    }
    if overwrite && !contents_source_set {
        let at = super::walk::member(node, "overwrite").map_or(node, |m| &m.value);
        w.error(&path.key("overwrite"), at, "overwrite is true but contents.source is not set; give the file a source");
    }
    f.path = file_path?;
    Some(f)
}

fn walk_dir(w: &mut Walker<'_>, node: &Node, path: &JsonPath) -> Option<DirEntry> {
    let members = w.object(node, path)?;
    let known = w.known(members, path, DIR_KEYS);
    let (dir_path, overwrite, owner) = node_common(w, node, path, &known);
    let mode = known.iter().find(|m| m.key == "mode").and_then(|m| w.uint(&m.value, &path.key("mode")));
    Some(DirEntry { path: dir_path?, overwrite, owner, mode })
}

fn walk_link(w: &mut Walker<'_>, node: &Node, path: &JsonPath) -> Option<LinkEntry> {
    let members = w.object(node, path)?;
    let known = w.known(members, path, LINK_KEYS);
    let (link_path, overwrite, owner) = node_common(w, node, path, &known);
    let (mut target, mut hard, mut has_target) = (None, false, false);
    for m in known {
        let p = path.key(&m.key);
        match m.key.as_str() {
            "target" => {
                has_target = true;
                target = w.string(&m.value, &p);
                if matches!(m.value.kind, Kind::Null) {
                    w.error(&p, &m.value, "link target is required (null is not a target)");
                }
            }
            "hard" => hard = w.boolean(&m.value, &p).unwrap_or(false),
            _ => {}
        }
    }
    if !has_target {
        w.missing(path, node, "target");
    }
    Some(LinkEntry { path: link_path?, target: target?, hard, owner, overwrite })
}
