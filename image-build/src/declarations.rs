//! The container declarations a host.toml puts in the image (`[[files]]` under
//! /etc/keel/containers), checked at build time with the parser PID 1 uses at boot, so
//! that a bad value (a port out of range, a duration that overflows) fails `keel-build`
//! instead of showing up only as an invalid container on the booted host.

use crate::host::HostSpec;
use keel_supervisor::manager::CONTAINERS_DIR;
use keel_supervisor::spec::{self, SpecErrors};
use std::path::{Path, PathBuf};

/// Why one declaration of the image was refused.
#[derive(Debug, thiserror::Error)]
pub enum DeclarationError {
    /// The build-host file could not be read.
    #[error("{}: {source}", path.display())]
    Read {
        /// The file on the build host.
        path: PathBuf,
        /// The read error.
        #[source]
        source: std::io::Error,
    },
    /// The declaration does not validate; every problem, with its key and line, as
    /// `keelctl ps` would show it on the booted host.
    #[error(transparent)]
    Invalid(#[from] SpecErrors),
}

/// Every refused declaration of a host.toml.
#[derive(Debug, thiserror::Error)]
#[error("invalid container declaration(s): {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
pub struct DeclarationErrors(pub Vec<DeclarationError>);

/// Validate each `[[files]]` entry that lands as `/etc/keel/containers/NAME.toml`.
/// Returns how many declarations were checked.
pub fn check(spec: &HostSpec) -> Result<usize, DeclarationErrors> {
    let mut errors = Vec::new();
    let mut checked = 0;
    for file in &spec.files {
        let Some(name) = declaration_name(Path::new(file.path.as_str())) else { continue };
        checked += 1;
        let result = std::fs::read_to_string(&file.source)
            .map_err(|source| DeclarationError::Read { path: file.source.clone(), source })
            .and_then(|text| spec::parse(name, &text, file.path.as_str()).map(drop).map_err(DeclarationError::Invalid));
        if let Err(e) = result {
            errors.push(e);
        }
    }
    if errors.is_empty() {
        Ok(checked)
    } else {
        Err(DeclarationErrors(errors))
    }
}

/// The container name of an image path that PID 1 reads as a declaration.
fn declaration_name(path: &Path) -> Option<&str> {
    if path.parent() != Some(Path::new(CONTAINERS_DIR)) || path.extension().and_then(|e| e.to_str()) != Some("toml") {
        return None;
    }
    path.file_stem()?.to_str()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host_with(dir: &Path, declarations: &[(&str, &str)]) -> HostSpec {
        let mut text = String::from("hostname = \"h\"\n");
        for (name, body) in declarations {
            let source = dir.join(format!("{name}.toml"));
            std::fs::write(&source, body).unwrap();
            text.push_str(&format!("[[files]]\nsource = \"{}\"\npath = \"{CONTAINERS_DIR}/{name}.toml\"\n", source.display()));
        }
        // A toml elsewhere is not a declaration and is not checked.
        let other = dir.join("other.toml");
        std::fs::write(&other, "not = [valid").unwrap();
        text.push_str(&format!("[[files]]\nsource = \"{}\"\npath = \"/etc/other.toml\"\n", other.display()));
        HostSpec::parse(&text, &dir.join("host.toml")).unwrap()
    }

    #[test]
    fn good_declarations_pass() {
        let dir = tempfile::tempdir().unwrap();
        let spec =
            host_with(dir.path(), &[("web", "image = \"/img\"\ncommand = \"/a\"\nports = [\"8080:80\"]\nstop_timeout = \"1m30s\"\n")]);
        assert_eq!(check(&spec).unwrap(), 1);
    }

    /// Issue 12: a bad port and an overflowing duration fail the build, each naming its
    /// file, line and key.
    #[test]
    fn a_bad_port_or_an_overflowing_duration_fails_the_build() {
        let dir = tempfile::tempdir().unwrap();
        let spec = host_with(
            dir.path(),
            &[
                ("ok", "image = \"/img\"\ncommand = \"/a\"\n"),
                ("port", "image = \"/img\"\ncommand = \"/a\"\nports = [\"70000:80\"]\n"),
                ("time", "image = \"/img\"\ncommand = \"/a\"\nstop_timeout = \"18446744073709551615s1s\"\n"),
            ],
        );
        let errors = check(&spec).unwrap_err();
        let lines: Vec<String> = errors.0.iter().map(ToString::to_string).collect();
        assert_eq!(
            lines,
            [
                "/etc/keel/containers/port.toml:3: ports: \"70000:80\": port \"70000\" must be a number from 1 to 65535",
                "/etc/keel/containers/time.toml:3: stop_timeout: \"18446744073709551615s1s\": duration too large (at most 8760h, one year)",
            ]
        );
    }

    /// The demo image's declarations pass the check `keel-build` now makes.
    #[test]
    fn the_demo_declarations_validate() {
        let host = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/demo/host.toml");
        let spec = HostSpec::load(&host).unwrap();
        assert_eq!(check(&spec).unwrap(), 3, "web, hello and admin");
    }
}
