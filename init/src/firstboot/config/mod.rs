//! Ignition config parsing and validation for first boot (pure: no I/O).
//!
//! keel is provisioned from an Ignition spec 3.x JSON config (`ignition.version`
//! "3.0.0" to "3.6.0"). [`parse`] reads it with a small positioned JSON parser
//! ([`json`]) so every problem carries a JSON path *and* a line and column, walks the
//! tree into keel's own typed [`Config`], then validates the whole config, collecting
//! every problem instead of stopping at the first.
//!
//! Strictness, unlike Ignition: unknown keys are errors (with a "did you mean"
//! suggestion); features keel does not implement (`systemd.units`, `storage.disks`,
//! `raid`, `filesystems`, `luks`, `kernelArguments`, most user options) are errors that
//! say what to do instead, unless their value is empty; duplicate JSON keys are errors.
//! TLS CAs, proxies and HTTP headers are parsed and checked here and used by the fetcher.
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
