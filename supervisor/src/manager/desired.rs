//! The declarations a host should run, checked as a whole before anything is written or
//! touched: each file parsed with its spanned errors (file:line: key), then the set for
//! what no single file can show — a name declared twice, a `depends_on` that names no
//! container or closes a cycle, two containers publishing the same host port, a network
//! that is not declared. `keelctl apply | diff | rm | reload` go through here.
//!
//! Pure: texts in, validated declarations or every problem out.

use super::deps;
use crate::spec::{self, locate::line_of, ContainerName, ContainerSpec, NetworkMode, SpecErrors};
use keel_netconf::config::NetworkConfig;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// Largest declaration file accepted from a client (the whole request also fits one
/// control line, [`crate::control::MAX_LINE`]).
pub const MAX_FILE_BYTES: usize = 32 * 1024;

/// One declaration file as a client sends it: the path it was read from (named in
/// messages; its stem is the container's name) and its text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeclarationFile {
    /// The path on the client, e.g. `./web.toml`.
    pub path: String,
    /// The TOML text.
    pub text: String,
}

impl DeclarationFile {
    /// The container name its file name gives (`web` for `conf/web.toml`), or why not.
    pub fn container_name(&self) -> Result<ContainerName, SetError> {
        let base = self.path.rsplit('/').next().unwrap_or_default();
        let Some(stem) = base.strip_suffix(".toml") else {
            return Err(SetError::NotToml { file: self.path.clone() });
        };
        ContainerName::new(stem).map_err(|message| SetError::BadName { file: self.path.clone(), message })
    }
}

/// One validated declaration of the set, with the text its line numbers come from.
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    /// The file named in messages.
    pub file: String,
    /// Its text.
    pub text: String,
    /// The validated declaration.
    pub spec: ContainerSpec,
}

/// One problem of a file or of the set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SetError {
    /// The file itself does not parse or validate.
    #[error("{0}")]
    Spec(SpecErrors),
    /// Not `NAME.toml`.
    #[error("{file}: not a container declaration (expected NAME.toml)")]
    NotToml {
        /// The file.
        file: String,
    },
    /// The stem is not a container name.
    #[error("{file}: {message}")]
    BadName {
        /// The file.
        file: String,
        /// Why.
        message: String,
    },
    /// Over [`MAX_FILE_BYTES`].
    #[error("{file}: {size} bytes; a declaration may have at most {max}")]
    TooLarge {
        /// The file.
        file: String,
        /// Its size.
        size: usize,
        /// The bound.
        max: usize,
    },
    /// Two files of one request declare the same container.
    #[error("{file}: container {name} is also declared by {other}")]
    Duplicate {
        /// The later file.
        file: String,
        /// The container.
        name: String,
        /// The earlier file.
        other: String,
    },
    /// A problem of the set found in one file: its dependencies, ports or network.
    #[error("{}: {key}: {message}", place(file, *line))]
    Set {
        /// The file.
        file: String,
        /// The 1-based line of the key, when found.
        line: Option<usize>,
        /// The key, dotted.
        key: String,
        /// What is wrong.
        message: String,
    },
}

fn place(file: &str, line: Option<usize>) -> String {
    match line {
        Some(line) => format!("{file}:{line}"),
        None => file.to_string(),
    }
}

/// Every problem, one a line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetErrors(pub Vec<SetError>);

impl fmt::Display for SetErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lines: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        f.write_str(&lines.join("\n"))
    }
}

impl std::error::Error for SetErrors {}

/// Parse and validate each file on its own; two files for one name are an error.
pub fn parse_files(files: &[DeclarationFile]) -> Result<BTreeMap<ContainerName, Member>, SetErrors> {
    let mut members: BTreeMap<ContainerName, Member> = BTreeMap::new();
    let mut errors = Vec::new();
    for file in files {
        if file.text.len() > MAX_FILE_BYTES {
            errors.push(SetError::TooLarge { file: file.path.clone(), size: file.text.len(), max: MAX_FILE_BYTES });
            continue;
        }
        let name = match file.container_name() {
            Ok(name) => name,
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        if let Some(other) = members.get(&name) {
            errors.push(SetError::Duplicate { file: file.path.clone(), name: name.to_string(), other: other.file.clone() });
            continue;
        }
        let parsed = std::panic::catch_unwind(|| spec::parse(name.as_str(), &file.text, &file.path)).unwrap_or_else(|_| {
            Err(SpecErrors(vec![spec::SpecError {
                file: file.path.clone(),
                key: String::new(),
                line: None,
                message: "the declaration could not be read (parser failure)".into(),
            }]))
        });
        match parsed {
            Ok(spec) => {
                members.insert(name, Member { file: file.path.clone(), text: file.text.clone(), spec });
            }
            Err(e) => errors.push(SetError::Spec(e)),
        }
    }
    if errors.is_empty() {
        Ok(members)
    } else {
        Err(SetErrors(errors))
    }
}

/// The problems of the set as a whole: dependencies (unknown, cycles, `healthy` without a
/// healthcheck), networks not declared in `network` and host ports published twice (both
/// only when the network configuration is known).
pub fn check_set(set: &BTreeMap<ContainerName, Member>, network: Option<&NetworkConfig>) -> Vec<SetError> {
    let mut errors = Vec::new();
    let at = |member: &Member, key: &str| {
        let path: Vec<&str> = key.split('.').collect();
        line_of(&member.text, &path).or_else(|| line_of(&member.text, &path[..1]))
    };
    let nodes: BTreeMap<ContainerName, deps::Node> = set
        .iter()
        .map(|(n, m)| (n.clone(), deps::Node { depends_on: m.spec.depends_on.clone(), has_healthcheck: m.spec.healthcheck.is_some() }))
        .collect();
    for (name, problem) in deps::problems(&nodes, &BTreeSet::new()) {
        let member = &set[&name];
        let (key, message) =
            problem.split_once(": ").map_or(("depends_on".to_string(), problem.clone()), |(k, m)| (k.to_string(), m.to_string()));
        errors.push(SetError::Set { file: member.file.clone(), line: at(member, &key), key, message });
    }
    let Some(network) = network else { return errors };
    for member in set.values() {
        if let NetworkMode::Named(net) = &member.spec.network {
            if network.network(net).is_none() {
                let declared: Vec<&str> = network.networks.iter().map(|n| n.name.as_str()).collect();
                let message = format!("network {net:?} is not declared in network.toml (declared: {})", declared.join(", "));
                errors.push(SetError::Set { file: member.file.clone(), line: at(member, "network"), key: "network".into(), message });
            }
        }
    }
    let published: Vec<(&ContainerName, &Member, &spec::PortMapping)> =
        set.iter().flat_map(|(n, m)| m.spec.ports.iter().map(move |p| (n, m, p))).collect();
    for (i, (first, _, a)) in published.iter().enumerate() {
        for (second, member, b) in &published[i + 1..] {
            if a.conflicts_with(b) {
                let message = if first == second {
                    format!("host port {}/{} is published twice ({a} and {b})", b.host_port, b.proto)
                } else {
                    format!("host port {}/{} is already published by container {first} ({a})", b.host_port, b.proto)
                };
                errors.push(SetError::Set { file: member.file.clone(), line: at(member, "ports"), key: "ports".into(), message });
            }
        }
    }
    errors
}

/// The problems of `new` that `old` did not have already: a change is refused for what
/// it breaks, not for an older problem it leaves as it was (that one is shown by `ps`).
pub fn new_problems(
    new: &BTreeMap<ContainerName, Member>,
    old: &BTreeMap<ContainerName, Member>,
    network: Option<&NetworkConfig>,
) -> Vec<SetError> {
    let before: BTreeSet<String> = check_set(old, network).iter().map(without_place).collect();
    check_set(new, network).into_iter().filter(|e| !before.contains(&without_place(e))).collect()
}

/// A problem without its line, to recognise it in a file whose lines moved.
fn without_place(error: &SetError) -> String {
    match error {
        SetError::Set { file, key, message, .. } => format!("{file} {key} {message}"),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, text: &str) -> DeclarationFile {
        DeclarationFile { path: path.into(), text: text.into() }
    }

    const DB: &str = "image = \"/img\"\ncommand = [\"/db\"]\n";

    #[test]
    fn a_bad_file_is_named_with_its_line_and_key() {
        let errors =
            parse_files(&[file("./db.toml", DB), file("conf/web.toml", "image = \"/img\"\ncommand = [\"/w\"]\nrestart = \"sometimes\"\n")])
                .unwrap_err();
        assert_eq!(errors.0.len(), 1);
        assert!(errors.to_string().starts_with("conf/web.toml:3: restart: "), "{errors}");
        let errors = parse_files(&[file("x/Web.toml", DB), file("notes.txt", DB)]).unwrap_err();
        assert!(matches!(&errors.0[0], SetError::BadName { file, .. } if file == "x/Web.toml"), "{errors:?}");
        assert_eq!(errors.0[1], SetError::NotToml { file: "notes.txt".into() });
        // Negative control: the same files, valid, pass.
        assert_eq!(parse_files(&[file("./db.toml", DB), file("x/web.toml", DB)]).unwrap().len(), 2);
    }

    #[test]
    fn duplicates_and_oversized_files_are_refused() {
        let errors = parse_files(&[file("a/db.toml", DB), file("b/db.toml", DB)]).unwrap_err();
        assert_eq!(errors.0, [SetError::Duplicate { file: "b/db.toml".into(), name: "db".into(), other: "a/db.toml".into() }]);
        let big = format!("{DB}# {}\n", "x".repeat(MAX_FILE_BYTES));
        assert!(matches!(parse_files(&[file("db.toml", &big)]).unwrap_err().0[0], SetError::TooLarge { .. }));
    }

    #[test]
    fn dependency_problems_name_the_file_line_and_key() {
        let web = "image = \"/img\"\ncommand = [\"/w\"]\n\ndepends_on = [\"ghost\"]\n";
        let set = parse_files(&[file("web.toml", web), file("db.toml", DB)]).unwrap();
        let errors = check_set(&set, None);
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].to_string(), "web.toml:4: depends_on.ghost: no container ghost is declared");
        let fixed = parse_files(&[file("web.toml", &web.replace("ghost", "db")), file("db.toml", DB)]).unwrap();
        assert!(check_set(&fixed, None).is_empty());
    }

    #[test]
    fn port_conflicts_and_undeclared_networks_are_found_with_the_network_config() {
        let config = keel_netconf::config::default_config();
        let net = &config.networks[0].name;
        let a = format!("image = \"/img\"\ncommand = [\"/a\"]\nnetwork = \"{net}\"\nports = [\"8080:80\"]\n");
        let b = format!("image = \"/img\"\ncommand = [\"/b\"]\nnetwork = \"{net}\"\nports = [\"127.0.0.1:8080:81\"]\n");
        let set = parse_files(&[file("a.toml", &a), file("b.toml", &b)]).unwrap();
        let errors = check_set(&set, Some(&config));
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].to_string().starts_with("b.toml:4: ports: host port 8080/tcp is already published by container a"),
            "{}",
            errors[0]
        );
        assert!(check_set(&set, None).is_empty(), "without the network config ports are not checked");
        let other = parse_files(&[file("a.toml", &a), file("b.toml", &b.replace("8080:81", "8081:81"))]).unwrap();
        assert!(check_set(&other, Some(&config)).is_empty());
        let lost = parse_files(&[file("c.toml", "image = \"/img\"\ncommand = [\"/c\"]\nnetwork = \"nowhere\"\n")]).unwrap();
        assert!(check_set(&lost, Some(&config))[0].to_string().starts_with("c.toml:3: network: network \"nowhere\" is not declared"));
    }

    #[test]
    fn only_new_problems_refuse_a_change() {
        let broken = "image = \"/img\"\ncommand = [\"/w\"]\ndepends_on = [\"ghost\"]\n";
        let old = parse_files(&[file("web.toml", broken)]).unwrap();
        let new = parse_files(&[file("web.toml", broken), file("db.toml", DB)]).unwrap();
        assert!(new_problems(&new, &old, None).is_empty());
        let worse = parse_files(&[file("web.toml", broken), file("db.toml", &format!("{DB}depends_on = [\"nobody\"]\n"))]).unwrap();
        assert_eq!(new_problems(&worse, &old, None).len(), 1);
    }
}
