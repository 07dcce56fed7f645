//! Checked values of host.toml: the host name, paths inside the image, file modes,
//! symlink targets, the extra kernel command line and module names.
//!
//! Each type is validated while deserializing, so a `HostSpec` can only hold good
//! values, and a bad one is reported by toml with its line, column and key.

use std::cmp::Ordering;
use std::fmt;

use keel_init::kmod::ModuleName;
use serde::{Deserialize, Deserializer};

/// Why a value in host.toml was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The host name breaks the rules of [`Hostname`].
    #[error("invalid hostname {value:?}: {reason}")]
    Hostname {
        /// The rejected value.
        value: String,
        /// Which rule it breaks.
        reason: &'static str,
    },
    /// A path in the image breaks the rules of [`ImagePath`].
    #[error("invalid image path {value:?}: {reason}")]
    ImagePath {
        /// The rejected value.
        value: String,
        /// Which rule it breaks.
        reason: &'static str,
    },
    /// A file mode has bits beyond the permission, setuid/setgid and sticky bits.
    #[error("invalid mode {value:#o}: only permission bits (at most 0o7777) are allowed")]
    Mode {
        /// The rejected value.
        value: u32,
    },
    /// A symlink target is empty or contains a NUL byte.
    #[error("invalid symlink target {value:?}: {reason}")]
    LinkTarget {
        /// The rejected value.
        value: String,
        /// Which rule it breaks.
        reason: &'static str,
    },
    /// The extra kernel command line contains a character that cannot be on one line.
    #[error("invalid cmdline {value:?}: it must be one line without NUL bytes")]
    Cmdline {
        /// The rejected value.
        value: String,
    },
    /// A module name has characters no kernel module name has.
    #[error("invalid module name {value:?}: only letters, digits, '_' and '-' are allowed")]
    Module {
        /// The rejected value.
        value: String,
    },
}

/// A host name: 1 to 64 characters of `[a-z0-9-.]`, not starting with `-`.
///
/// 64 is the kernel's limit for `sethostname` (`__NEW_UTS_LEN`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct Hostname(String);

impl Hostname {
    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Hostname {
    type Error = NameError;

    fn try_from(value: String) -> Result<Self, NameError> {
        let reason = if value.is_empty() {
            Some("it is empty")
        } else if value.len() > 64 {
            Some("it is longer than 64 characters")
        } else if value.starts_with('-') {
            Some("it starts with '-'")
        } else if !value.bytes().all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.')) {
            Some("only a-z, 0-9, '-' and '.' are allowed")
        } else {
            None
        };
        match reason {
            Some(reason) => Err(NameError::Hostname { value, reason }),
            None => Ok(Hostname(value)),
        }
    }
}

impl fmt::Display for Hostname {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An absolute, normalised path inside the image, never the root itself.
///
/// It starts with `/`, has no empty, `.` or `..` components, no trailing `/`, no NUL
/// byte, and is at most 4095 bytes long (`PATH_MAX` less the terminating NUL).
/// Paths order component by component, so a directory sorts right before its children.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize)]
#[serde(try_from = "String")]
pub struct ImagePath(String);

impl ImagePath {
    /// The path as written, with its leading `/`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The path without its leading `/`, as cpio archives name their members.
    pub fn relative(&self) -> &str {
        &self.0[1..]
    }

    /// The components of the path, first to last.
    pub fn components(&self) -> impl Iterator<Item = &str> {
        self.relative().split('/')
    }

    /// The parent directory, or `None` for a top-level path such as `/etc`.
    pub fn parent(&self) -> Option<ImagePath> {
        match self.0.rfind('/') {
            Some(0) | None => None,
            Some(index) => Some(ImagePath(self.0[..index].to_string())),
        }
    }

    /// This path with `relative` appended (`relative` may have several components).
    pub fn join(&self, relative: &str) -> Result<ImagePath, NameError> {
        ImagePath::try_from(format!("{}/{}", self.0, relative))
    }
}

impl TryFrom<String> for ImagePath {
    type Error = NameError;

    fn try_from(value: String) -> Result<Self, NameError> {
        match image_path_problem(&value) {
            Some(reason) => Err(NameError::ImagePath { value, reason }),
            None => Ok(ImagePath(value)),
        }
    }
}

impl TryFrom<&str> for ImagePath {
    type Error = NameError;

    fn try_from(value: &str) -> Result<Self, NameError> {
        ImagePath::try_from(value.to_string())
    }
}

fn image_path_problem(value: &str) -> Option<&'static str> {
    if !value.starts_with('/') {
        return Some("it must be absolute (start with '/')");
    }
    if value == "/" {
        return Some("the root directory itself cannot be an entry");
    }
    if value.len() > 4095 {
        return Some("it is longer than 4095 bytes");
    }
    if value.contains('\0') {
        return Some("it contains a NUL byte");
    }
    for component in value[1..].split('/') {
        match component {
            "" => return Some("it has an empty component ('//' or a trailing '/')"),
            "." | ".." => return Some("it has a '.' or '..' component"),
            _ => {}
        }
    }
    None
}

impl Ord for ImagePath {
    fn cmp(&self, other: &Self) -> Ordering {
        self.components().cmp(other.components())
    }
}

impl PartialOrd for ImagePath {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for ImagePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Permission bits of a file: at most `0o7777` (rwx for all, setuid, setgid, sticky).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "u32")]
pub struct FileMode(u32);

impl FileMode {
    /// The bits.
    pub fn bits(self) -> u32 {
        self.0
    }
}

impl TryFrom<u32> for FileMode {
    type Error = NameError;

    fn try_from(value: u32) -> Result<Self, NameError> {
        if value > 0o7777 {
            return Err(NameError::Mode { value });
        }
        Ok(FileMode(value))
    }
}

/// The target of a symlink: any non-empty string without NUL bytes.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct LinkTarget(String);

impl LinkTarget {
    /// The target as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for LinkTarget {
    type Error = NameError;

    fn try_from(value: String) -> Result<Self, NameError> {
        let reason = if value.is_empty() {
            "it is empty"
        } else if value.contains('\0') {
            "it contains a NUL byte"
        } else if value.len() > 4095 {
            "it is longer than 4095 bytes"
        } else {
            return Ok(LinkTarget(value));
        };
        Err(NameError::LinkTarget { value, reason })
    }
}

/// Extra kernel command line: one line, no NUL bytes, surrounding blanks trimmed.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(try_from = "String")]
pub struct Cmdline(String);

impl Cmdline {
    /// The text, trimmed.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Cmdline {
    type Error = NameError;

    fn try_from(value: String) -> Result<Self, NameError> {
        if value.contains(['\n', '\r', '\0']) {
            return Err(NameError::Cmdline { value });
        }
        Ok(Cmdline(value.trim().to_string()))
    }
}

/// Deserialize a list of module names into canonical [`ModuleName`]s, keeping their order.
pub(crate) fn module_names<'de, D>(deserializer: D) -> Result<Vec<ModuleName>, D::Error>
where
    D: Deserializer<'de>,
{
    let raw = Vec::<String>::deserialize(deserializer)?;
    raw.into_iter().map(|value| module_name(value).map_err(serde::de::Error::custom)).collect()
}

fn module_name(value: String) -> Result<ModuleName, NameError> {
    let ok = !value.is_empty() && value.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(ModuleName::new(&value))
    } else {
        Err(NameError::Module { value })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(s: &str) -> ImagePath {
        ImagePath::try_from(s).expect("valid test path")
    }

    #[test]
    fn hostname_rules() {
        assert!(Hostname::try_from("demo-1.example".to_string()).is_ok());
        assert!(Hostname::try_from("a".repeat(64)).is_ok());
        for (bad, reason) in [
            ("", "it is empty"),
            ("-x", "it starts with '-'"),
            ("Demo", "only a-z, 0-9, '-' and '.' are allowed"),
            ("a_b", "only a-z, 0-9, '-' and '.' are allowed"),
        ] {
            let err = Hostname::try_from(bad.to_string()).unwrap_err();
            assert_eq!(err, NameError::Hostname { value: bad.to_string(), reason });
        }
        let err = Hostname::try_from("a".repeat(65)).unwrap_err();
        assert!(err.to_string().contains("longer than 64"));
    }

    #[test]
    fn image_path_rules() {
        assert_eq!(path("/usr/bin/keel").relative(), "usr/bin/keel");
        for bad in ["usr/bin", "/", "/a//b", "/a/", "/a/../b", "/./a", "/a\0b"] {
            assert!(matches!(ImagePath::try_from(bad), Err(NameError::ImagePath { .. })), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn image_path_parent_and_join() {
        assert_eq!(path("/usr/bin/keel").parent(), Some(path("/usr/bin")));
        assert_eq!(path("/usr").parent(), None);
        assert_eq!(path("/lib/modules").join("6.1/kernel/a.ko").unwrap(), path("/lib/modules/6.1/kernel/a.ko"));
        assert!(path("/lib").join("../etc").is_err());
    }

    #[test]
    fn image_paths_sort_by_component() {
        let mut paths = [path("/usr-x"), path("/usr/bin"), path("/usr"), path("/a-b"), path("/a/c")];
        paths.sort();
        let sorted: Vec<&str> = paths.iter().map(ImagePath::as_str).collect();
        assert_eq!(sorted, ["/a/c", "/a-b", "/usr", "/usr/bin", "/usr-x"]);
    }

    #[test]
    fn mode_target_cmdline_module() {
        assert_eq!(FileMode::try_from(0o1777).unwrap().bits(), 0o1777);
        assert_eq!(FileMode::try_from(0o10000).unwrap_err(), NameError::Mode { value: 0o10000 });
        assert!(LinkTarget::try_from(String::new()).is_err());
        assert_eq!(Cmdline::try_from(" a=1 ".to_string()).unwrap().as_str(), "a=1");
        assert!(Cmdline::try_from("a\nb".to_string()).is_err());
        assert_eq!(module_name("virtio-pci".into()).unwrap().as_str(), "virtio_pci");
        assert_eq!(module_name("a b".into()).unwrap_err(), NameError::Module { value: "a b".into() });
    }
}

/// The name of a container image directory: `[a-z0-9][a-z0-9_.-]*`, at most 63 bytes
/// (the container-name rule), so it is one path component under /usr/share/keel/images.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Deserialize)]
#[serde(try_from = "String")]
pub struct ImageName(String);

impl ImageName {
    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for ImageName {
    type Error = String;

    fn try_from(name: String) -> Result<Self, String> {
        // The same rule as container names: one safe path component.
        keel_supervisor::spec::ContainerName::new(&name).map(|_| ImageName(name)).map_err(|e| e.replacen("container name", "image name", 1))
    }
}

impl std::fmt::Display for ImageName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
