//! Ignition config parsing and validation for first boot (pure: no I/O).
//!
//! keel is provisioned from an Ignition spec 3.x JSON config (`ignition.version`
//! "3.0.0" to "3.6.0"). [`parse`] reads it with a small positioned JSON parser
//! ([`json`]) so every problem carries a JSON path *and* a line and column, walks the
//! tree into keel's own typed [`Config`], then validates the whole config, collecting
//! every problem instead of stopping at the first.
//!
//! # Ignition's rules
//!
//! keel refuses every config Ignition refuses and gives what Ignition accepts
//! Ignition's meaning. This is checked against Ignition itself by
//! `init/tests/ignition_differential.rs` (`ignition-validate` for specs 3.0–3.3; the
//! rule of Ignition's `config/v3_*/types` named for each 3.4–3.6 verdict):
//! - JSON: syntax and value types (a byte order mark is not JSON); `ignition.version`
//!   a known spec;
//! - paths ([`mod@validate`]): non-empty, absolute, clean; no path twice across files,
//!   directories and links; nothing below a link of the config; no hard link to a
//!   directory of the config; link targets required from 3.3.0 (null or absent path
//!   or target is an error, never a dropped entry);
//! - modes 0–0o7777 (`-0` is 0); `overwrite` needs `contents.source` (`""` is one);
//! - owners: not both an `id` and a non-empty `name` (`"name": ""` is no name);
//! - resources: `compression` `gzip` or empty; `verification.hash` `sha512-HEX` (or
//!   `sha256-HEX` from 3.1.0) of the right length, and only with a source; sources
//!   parse as URLs ([`url_syntax`], Go's `net/url` rules) with a scheme Ignition knows,
//!   `data:` URLs per RFC 2397 as Ignition reads them ([`data_url`]); `"source": ""`
//!   is no source; `httpHeaders` only with an http(s) source (the scheme read
//!   case-insensitively; keel stores it lowercased), each with a non-empty name and
//!   value; merge and CA references need a source (from 3.1.0);
//! - proxies: when set (`""` included) an http or https URL;
//! - duplicates: merge sources, CA sources, users, groups, a user's groups, SSH keys,
//!   `noProxy` entries, header names (`append` may repeat, as in Ignition).
//!
//! # keel's own rules
//!
//! Each refuses configs Ignition accepts, for the reason given (with the differential
//! test's class):
//! - features keel does not have are errors that say what to do instead, unless their
//!   value is empty: `systemd.units`, `storage.disks`, `raid`, `filesystems`, `luks`,
//!   `kernelArguments`, s3/gs/tftp/arn sources, most user options (class `by-design:*`);
//! - every path strictly below one of [`WRITABLE_TREES`]: the rest is the read-only
//!   image (class `writable-trees`); no NUL in paths (class `path-nul`);
//! - unknown keys, keys newer than the declared spec, duplicate JSON keys, invalid
//!   UTF-8, lone surrogates and experimental specs are errors: Ignition ignores or
//!   rewrites them, so a typo or a newer feature would silently vanish (a 3.0.0
//!   merge's `compression` is such a key) (classes `unknown-keys`,
//!   `duplicate-json-keys`, `json-strict`, `experimental-spec`);
//! - user and group names valid for useradd (`[a-z_][a-z0-9_-]*`, 32 at most, also for
//!   owners) and required: Ignition fails at first boot on the rest (class `names`); ids and
//!   timeouts non-negative 32-bit, ids not 2³²−1 (-1) (class `integer-range`);
//! - passwd fields without `:` or line breaks, absolute shell and home, non-empty SSH
//!   keys: they would corrupt /etc/passwd, /etc/shadow or authorized_keys
//!   (class `passwd-fields`);
//! - http(s) sources keel's fetcher can fetch (a host, no user information, a port
//!   1–65535, no spaces) (class `fetchable-url`); proxies `http://HOST:PORT`, which is what
//!   keel's fetcher speaks to a proxy (class `proxy-http-only`);
//! - header names are HTTP tokens, unique case-insensitively (class `header-names`); values
//!   present and without line breaks (Ignition's fetcher refuses a header without a
//!   value; a line break would split the request) (class `header-value`);
//! - hashes are hex, data: CAs are PEM certificates, gzip data: URLs hold gzip:
//!   otherwise they can never be used and Ignition fails at first boot (classes
//!   `hash-hex`, `ca-pem`, `gzip-data`);
//! - hard-link targets absolute (class `hard-link-absolute`); link targets required before
//!   3.3.0 too (class `link-target`); 3.0.0 merge references need a source too
//!   (class `source-required`): nothing could be linked or fetched otherwise.
//!
//! Warnings (the config is still applied): setuid/setgid files, world-writable files
//! and directories without the sticky bit.
//!
//! Limitations: `ignition.config.merge`/`replace` are parsed, not fetched (see the
//! fetcher); hashes are checked for format here, against the data by the applier;
//! whether a path escapes through an existing symlink can only be checked when
//! applying. Version gating is documented in [`walk`].

pub mod data_url;
pub mod json;
pub mod merge;
pub mod report;
pub mod suggest;
pub mod types;
pub mod url_syntax;
pub mod validate;
pub mod validate_passwd;
pub mod walk;
pub mod walk_passwd;
pub mod walk_storage;

#[cfg(test)]
mod tests;

pub use data_url::decode_data_url;
pub use merge::merge;
pub use report::{report_json, JsonPath, Problem, Report, Severity};
pub use types::{
    Compression, Config, ConfigRef, DirEntry, FileEntry, Group, Hash, HashAlgorithm, HttpHeader, IdOrName, LinkEntry, Owner, ProxySettings,
    Resource, Timeouts, User,
};
pub use validate::WRITABLE_TREES;

use json::{Kind, LineIndex, Node};
use report::Seg;
use walk::{Origins, Walker};

/// Parses and validates a config. `Ok` holds the config and its warnings; `Err`
/// holds every problem (errors and warnings) when there is at least one error.
pub fn parse(text: &[u8]) -> Result<(Config, Report), Report> {
    let text = match std::str::from_utf8(text) {
        Ok(t) => t,
        Err(e) => return Err(utf8_error(text, e.valid_up_to())),
    };
    let lines = LineIndex::new(text);
    let root = match json::parse(text) {
        Ok(root) => root,
        Err(e) => {
            let (line, column) = lines.position(e.offset);
            let problem = Problem { path: e.path.to_string(), line, column, message: e.message, severity: Severity::Error };
            return Err(Report { problems: vec![problem] });
        }
    };
    let mut walker = Walker::new(&lines);
    let (config, origins) = walk::walk(&mut walker, &root);
    let locate = |path: &JsonPath| lines.position(locate(&root, path));
    let mut checker = validate::Checker::new(&origins, &locate);
    validate::check_config(&mut checker, &config);
    let mut problems = walker.problems;
    problems.extend(checker.problems);
    let report = Report { problems };
    if report.is_valid() {
        Ok((config, report))
    } else {
        Err(report)
    }
}

/// Validates a config that has no source text (e.g. the result of [`merge`]);
/// problems carry paths but line and column 0.
pub fn validate(config: &Config) -> Report {
    let origins = Origins::default();
    let locate = |_: &JsonPath| (0, 0);
    let mut checker = validate::Checker::new(&origins, &locate);
    validate::check_config(&mut checker, config);
    Report { problems: checker.problems }
}

/// Byte offset of the deepest node along `path` (the parent when a key is missing).
fn locate(root: &Node, path: &JsonPath) -> usize {
    let mut node = root;
    for seg in &path.0 {
        let next = match (&node.kind, seg) {
            (Kind::Object(members), Seg::Key(k)) => members.iter().find(|m| &m.key == k).map(|m| &m.value),
            (Kind::Array(items), Seg::Index(i)) => items.get(*i),
            _ => None,
        };
        match next {
            Some(n) => node = n,
            None => break,
        }
    }
    node.offset
}

fn utf8_error(text: &[u8], valid_up_to: usize) -> Report {
    let valid = std::str::from_utf8(&text[..valid_up_to]).unwrap_or("");
    let (line, column) = LineIndex::new(valid).position(valid_up_to);
    let message = format!("config is not valid UTF-8 (byte {valid_up_to})");
    Report { problems: vec![Problem { path: String::new(), line, column, message, severity: Severity::Error }] }
}
