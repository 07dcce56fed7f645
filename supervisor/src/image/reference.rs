//! Image references as written in a container declaration or on a command line:
//! `oci:PATH[:TAG]`, `oci-archive:FILE`, `docker-archive:FILE`, and registry references
//! `[REGISTRY/]REPO[:TAG][@sha256:…]` (pulled by the registry client, not here).

use super::digest::Digest;
use std::fmt;
use std::path::{Component, Path, PathBuf};

/// Where an image comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageSource {
    /// An OCI image layout directory, optionally the manifest tagged TAG
    /// (`org.opencontainers.image.ref.name` in its index.json).
    OciLayout { path: PathBuf, tag: Option<String> },
    /// A tar archive of an OCI image layout (what `skopeo copy … oci-archive:` writes).
    OciArchive(PathBuf),
    /// A `docker save` archive (manifest.json, a config and layer tars).
    DockerArchive(PathBuf),
    /// A registry image.
    Registry(RegistryRef),
}

/// `REGISTRY/REPO:TAG` or `REGISTRY/REPO@sha256:…` (both may be given; the digest wins).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryRef {
    /// Host[:port]; `docker.io` when the reference names none.
    pub registry: String,
    /// Repository path (`library/busybox`).
    pub repository: String,
    /// Tag; `latest` when neither a tag nor a digest is given.
    pub tag: Option<String>,
    /// Manifest digest.
    pub digest: Option<Digest>,
}

impl fmt::Display for ImageSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImageSource::OciLayout { path, tag: None } => write!(f, "oci:{}", path.display()),
            ImageSource::OciLayout { path, tag: Some(tag) } => write!(f, "oci:{}:{tag}", path.display()),
            ImageSource::OciArchive(path) => write!(f, "oci-archive:{}", path.display()),
            ImageSource::DockerArchive(path) => write!(f, "docker-archive:{}", path.display()),
            ImageSource::Registry(r) => write!(f, "{r}"),
        }
    }
}

impl fmt::Display for RegistryRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

/// Is `text` an image reference rather than a root filesystem directory?
/// Directories are absolute paths; every reference form starts otherwise.
pub fn is_reference(text: &str) -> bool {
    !text.starts_with('/')
}

/// Parse a reference. Paths in the `oci*:` forms must be absolute and free of `..`.
pub fn parse(text: &str) -> Result<ImageSource, String> {
    if let Some(rest) = text.strip_prefix("oci:") {
        let (path, tag) = split_layout_tag(rest);
        return Ok(ImageSource::OciLayout { path: clean_path(text, path)?, tag: tag.map(str::to_string) });
    }
    if let Some(rest) = text.strip_prefix("oci-archive:") {
        return Ok(ImageSource::OciArchive(clean_path(text, rest)?));
    }
    if let Some(rest) = text.strip_prefix("docker-archive:") {
        return Ok(ImageSource::DockerArchive(clean_path(text, rest)?));
    }
    parse_registry(text).map(ImageSource::Registry)
}

/// `PATH[:TAG]`: a tag is what follows the last ':' when it has no '/'.
fn split_layout_tag(rest: &str) -> (&str, Option<&str>) {
    match rest.rsplit_once(':') {
        Some((path, tag)) if !tag.contains('/') && !tag.is_empty() => (path, Some(tag)),
        _ => (rest, None),
    }
}

fn clean_path(reference: &str, path: &str) -> Result<PathBuf, String> {
    let p = Path::new(path);
    if !p.is_absolute() {
        return Err(format!("{reference:?}: the path must be absolute"));
    }
    if p.components().any(|c| c == Component::ParentDir) {
        return Err(format!("{reference:?}: the path must not contain '..'"));
    }
    Ok(p.to_path_buf())
}

/// Docker's reference grammar, simplified: the first component is a registry when it
/// has a '.' or ':' or is `localhost`.
fn parse_registry(text: &str) -> Result<RegistryRef, String> {
    let bad = |why: &str| {
        format!("{text:?}: {why} (expected oci:PATH[:TAG], oci-archive:FILE, docker-archive:FILE, REGISTRY/REPO:TAG or REPO@sha256:…, or an absolute directory)")
    };
    let (name_tag, digest) = match text.split_once('@') {
        Some((n, d)) => (n, Some(Digest::parse(d).map_err(|e| bad(&e))?)),
        None => (text, None),
    };
    let (name, tag) = match name_tag.rsplit_once(':') {
        Some((n, t)) if !t.contains('/') => (n, Some(t.to_string())),
        _ => (name_tag, None),
    };
    if let Some(tag) = &tag {
        let ok = !tag.is_empty() && tag.len() <= 128 && tag.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
        if !ok {
            return Err(bad("invalid tag"));
        }
    }
    let (registry, repository) = match name.split_once('/') {
        Some((first, rest)) if first.contains('.') || first.contains(':') || first == "localhost" => (first.to_string(), rest.to_string()),
        _ => ("docker.io".to_string(), name.to_string()),
    };
    let repository = if registry == "docker.io" && !repository.contains('/') { format!("library/{repository}") } else { repository };
    let repo_ok = !repository.is_empty()
        && repository
            .split('/')
            .all(|part| !part.is_empty() && part.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c)));
    if !repo_ok {
        return Err(bad("invalid repository name"));
    }
    let tag = if tag.is_none() && digest.is_none() { Some("latest".to_string()) } else { tag };
    Ok(RegistryRef { registry, repository, tag, digest })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_archive_and_docker_forms() {
        assert_eq!(parse("oci:/srv/img").unwrap(), ImageSource::OciLayout { path: "/srv/img".into(), tag: None });
        assert_eq!(parse("oci:/srv/img:v1.2").unwrap(), ImageSource::OciLayout { path: "/srv/img".into(), tag: Some("v1.2".into()) });
        assert_eq!(parse("oci-archive:/a/b.tar").unwrap(), ImageSource::OciArchive("/a/b.tar".into()));
        assert_eq!(parse("docker-archive:/a/d.tar").unwrap(), ImageSource::DockerArchive("/a/d.tar".into()));
        assert!(parse("oci:relative/x").unwrap_err().contains("absolute"));
        assert!(parse("oci-archive:/a/../etc/x.tar").unwrap_err().contains(".."));
    }

    #[test]
    fn registry_forms() {
        let r = |t: &str| match parse(t).unwrap() {
            ImageSource::Registry(r) => r,
            other => panic!("{other:?}"),
        };
        let busybox = r("busybox");
        assert_eq!(
            (busybox.registry.as_str(), busybox.repository.as_str(), busybox.tag.as_deref()),
            ("docker.io", "library/busybox", Some("latest"))
        );
        let q = r("quay.io/org/app:1.0");
        assert_eq!((q.registry.as_str(), q.repository.as_str(), q.tag.as_deref()), ("quay.io", "org/app", Some("1.0")));
        let local = r("localhost:5000/app");
        assert_eq!((local.registry.as_str(), local.repository.as_str()), ("localhost:5000", "app"));
        let hex = "b".repeat(64);
        let pinned = r(&format!("ghcr.io/o/app@sha256:{hex}"));
        assert_eq!(pinned.tag, None);
        assert_eq!(pinned.digest.unwrap().hex(), hex);
        assert_eq!(parse(&format!("ghcr.io/o/app:v2@sha256:{hex}")).unwrap().to_string(), format!("ghcr.io/o/app:v2@sha256:{hex}"));
        assert!(parse("Busybox").unwrap_err().contains("invalid repository"));
        assert!(parse("app@sha256:short").is_err());
        assert!(parse("app:bad tag").unwrap_err().contains("invalid tag"));
    }
}
