//! Reading the declarations: every `*.toml` in /etc/keel/containers, each parsed on its
//! own so that one bad file never keeps the others from starting.

use crate::spec::{self, ContainerName, ContainerSpec};
use std::path::Path;

/// Where the image and the first-boot config put container declarations.
pub const CONTAINERS_DIR: &str = "/etc/keel/containers";

/// One declaration file, parsed or not.
#[derive(Debug, Clone)]
pub struct Declaration {
    /// The file stem.
    pub name: ContainerName,
    /// The file, for messages.
    pub file: String,
    /// The validated spec, or every problem of the file as one text.
    pub spec: Result<ContainerSpec, String>,
}

/// Every declaration in `dir`, by name. A missing directory means no containers.
/// Files that are not `*.toml`, or whose stem is not a valid name, are reported as
/// errors (returned second) rather than silently ignored.
pub fn load_dir(dir: &Path) -> (Vec<Declaration>, Vec<String>) {
    let mut declarations = Vec::new();
    let mut problems = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return (declarations, problems),
        Err(e) => return (declarations, vec![format!("{}: {e}", dir.display())]),
    };
    let mut paths: Vec<_> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for path in paths {
        let file = path.display().to_string();
        if path.extension().and_then(|e| e.to_str()) != Some("toml") {
            problems.push(format!("{file}: not a container declaration (expected NAME.toml); ignored"));
            continue;
        }
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
        let name = match ContainerName::new(stem) {
            Ok(name) => name,
            Err(message) => {
                problems.push(format!("{file}: {message}"));
                continue;
            }
        };
        let spec = match std::fs::read_to_string(&path) {
            Ok(text) => spec::parse(stem, &text, &file).map_err(|errors| errors.to_string()),
            Err(e) => Err(format!("{file}: {e}")),
        };
        declarations.push(Declaration { name, file, spec });
    }
    (declarations, problems)
}
