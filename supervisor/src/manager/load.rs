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
            Ok(text) => parse_contained(stem, &text, &file),
            Err(e) => Err(format!("{file}: {e}")),
        };
        declarations.push(Declaration { name, file, spec });
    }
    (declarations, problems)
}

/// Parse one declaration so that nothing in it can take the others down: a panic in the
/// parser (a bug; the parsers use checked arithmetic and return errors) marks only this
/// file invalid instead of unwinding through the containers boot step.
fn parse_contained(stem: &str, text: &str, file: &str) -> Result<ContainerSpec, String> {
    std::panic::catch_unwind(|| spec::parse(stem, text, file))
        .unwrap_or_else(|panic| {
            let why =
                panic.downcast_ref::<&str>().map(|s| s.to_string()).or_else(|| panic.downcast_ref::<String>().cloned()).unwrap_or_default();
            Err(spec::SpecErrors(vec![spec::SpecError {
                file: file.into(),
                key: String::new(),
                line: None,
                message: format!("the declaration could not be read (parser failure: {why})"),
            }]))
        })
        .map_err(|errors| errors.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 12: the declaration that used to panic the containers boot step is one
    /// invalid declaration among good ones.
    #[test]
    fn an_overflowing_declaration_marks_only_itself_invalid() {
        let dir = tempfile::tempdir().unwrap();
        let good = "image = \"/img\"\ncommand = \"/a\"\n";
        std::fs::write(dir.path().join("a.toml"), good).unwrap();
        std::fs::write(dir.path().join("b.toml"), format!("{good}stop_timeout = \"18446744073709551615s1s\"\n")).unwrap();
        std::fs::write(dir.path().join("c.toml"), good).unwrap();
        let (declarations, problems) = load_dir(dir.path());
        assert!(problems.is_empty(), "{problems:?}");
        let states: Vec<(&str, bool)> = declarations.iter().map(|d| (d.name.as_str(), d.spec.is_ok())).collect();
        assert_eq!(states, [("a", true), ("b", false), ("c", true)]);
        let error = declarations[1].spec.as_ref().unwrap_err();
        let file = dir.path().join("b.toml");
        assert_eq!(
            error,
            &format!("{}:3: stop_timeout: \"18446744073709551615s1s\": duration too large (at most 8760h, one year)", file.display())
        );
    }
}
