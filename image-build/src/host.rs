//! host.toml: what one keel host image contains.
//!
//! Parsing is strict: every table denies unknown keys, every value is a checked type
//! (see [`crate::names`]), and every error names the file, and through toml's message
//! the line, column and key. Relative source paths are resolved against the directory
//! of the toml file, so a spec means the same thing from any working directory.

use std::path::{Path, PathBuf};

use keel_init::kmod::ModuleName;
use serde::Deserialize;

use crate::names::{Cmdline, FileMode, Hostname, ImagePath, LinkTarget};

/// Default for `[control].shutdown_grace_secs`.
pub const DEFAULT_SHUTDOWN_GRACE_SECS: u32 = 5;

/// Why a host.toml could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// The file could not be read.
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        /// The host.toml path.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a valid host spec; toml's message names the line, column and key.
    #[error("{}: {}", path.display(), source.to_string().trim_end())]
    Parse {
        /// The host.toml path.
        path: PathBuf,
        /// The parse or validation error.
        #[source]
        source: toml::de::Error,
    },
    /// A value that parses but makes no sense.
    #[error("{}: {key}: {message}", path.display())]
    Invalid {
        /// The host.toml path.
        path: PathBuf,
        /// The key, dotted.
        key: String,
        /// What is wrong.
        message: String,
    },
}

/// A parsed and validated host.toml.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostSpec {
    /// The host name, written to /etc/hostname.
    pub hostname: Hostname,
    /// Extra kernel command line, appended after keel's defaults.
    #[serde(default)]
    pub cmdline: Option<Cmdline>,
    /// A static busybox to install at /bin/busybox, with one symlink per applet.
    #[serde(default)]
    pub busybox: Option<PathBuf>,
    /// Which kernel and which of its modules to ship.
    #[serde(default)]
    pub kernel: KernelSpec,
    /// How the host is controlled.
    #[serde(default)]
    pub control: ControlSpec,
    /// Extra files copied from the build host into the image.
    #[serde(default)]
    pub files: Vec<FileSpec>,
    /// Extra symlinks in the image.
    #[serde(default)]
    pub symlinks: Vec<SymlinkSpec>,
    /// Container root filesystems, under /usr/share/keel/images/NAME.
    #[serde(default)]
    pub images: Vec<ImageSpec>,
    /// `[reserved]`: memory and tasks the host keeps from the containers (written to
    /// /etc/keel/keel.toml's `[reserved]`; see keel_supervisor::cgroup::reserve).
    #[serde(default)]
    pub reserved: Option<keel_supervisor::cgroup::reserve::HostReserve>,
}

/// One `[[images]]` entry, either `busybox = PATH`: a minimal container root filesystem
/// built from a static busybox (the binary, one symlink per applet, /etc/passwd and
/// /etc/group, the mount points a container needs; `[[files]]` can add more under its
/// directory), or `oci-archive = FILE`: an OCI image archive, verified at build (every
/// blob digest and layer diff_id) and installed as /usr/share/keel/images/NAME.tar, for
/// declarations saying `image = "oci-archive:/usr/share/keel/images/NAME.tar"`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageSpec {
    /// Directory (or NAME.tar) under /usr/share/keel/images.
    pub name: crate::names::ImageName,
    /// The static busybox the root filesystem is made of.
    #[serde(default)]
    pub busybox: Option<PathBuf>,
    /// An OCI archive to ship instead.
    #[serde(default, rename = "oci-archive")]
    pub oci_archive: Option<PathBuf>,
    /// `admin = true` (with `busybox`): the admin image, with OpenSSH's sshd, sudo and
    /// nsenter from the build machine (see [`crate::admin`]).
    #[serde(default)]
    pub admin: bool,
}

/// The `[kernel]` table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KernelSpec {
    /// The kernel image; default: the newest /boot/vmlinuz-*.
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// The kernel's module tree; default: /lib/modules/<version of the kernel file name>.
    #[serde(default)]
    pub modules_dir: Option<PathBuf>,
    /// Modules to ship and load at boot, in load order, canonical names.
    #[serde(default, deserialize_with = "crate::names::module_names")]
    pub modules: Vec<ModuleName>,
}

/// The `[control]` table.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ControlSpec {
    /// Also serve the control protocol on the virtio-serial port "org.keel.control".
    #[serde(default)]
    pub virtio_serial: bool,
    /// Seconds containers get between SIGTERM and SIGKILL at shutdown.
    #[serde(default = "default_grace")]
    pub shutdown_grace_secs: u32,
    /// Seconds of the hardware watchdog keel arms and pets (written to keel.toml as
    /// `watchdog_secs`; 0 leaves it off; keel's default of 30 s when not given).
    #[serde(default)]
    pub watchdog_secs: Option<u32>,
}

impl Default for ControlSpec {
    fn default() -> Self {
        ControlSpec { virtio_serial: false, shutdown_grace_secs: DEFAULT_SHUTDOWN_GRACE_SECS, watchdog_secs: None }
    }
}

fn default_grace() -> u32 {
    DEFAULT_SHUTDOWN_GRACE_SECS
}

/// One `[[files]]` entry: a build-host file copied into the image.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSpec {
    /// The file on the build host (absolute after loading).
    pub source: PathBuf,
    /// Where it goes in the image.
    pub path: ImagePath,
    /// Permission bits; default: those of the source file.
    #[serde(default)]
    pub mode: Option<FileMode>,
}

/// One `[[symlinks]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SymlinkSpec {
    /// Where the link is in the image.
    pub path: ImagePath,
    /// What it points to, verbatim.
    pub target: LinkTarget,
}

impl HostSpec {
    /// Read and parse a host.toml, resolving relative source paths against its directory.
    pub fn load(path: &Path) -> Result<HostSpec, HostError> {
        let text = std::fs::read_to_string(path).map_err(|source| HostError::Read { path: path.to_path_buf(), source })?;
        HostSpec::parse(&text, path)
    }

    /// Parse host.toml text that was read from `file` (used for errors and relative paths).
    pub fn parse(text: &str, file: &Path) -> Result<HostSpec, HostError> {
        let mut spec: HostSpec = toml::from_str(text).map_err(|source| HostError::Parse { path: file.to_path_buf(), source })?;
        for (i, image) in spec.images.iter().enumerate() {
            if image.busybox.is_some() == image.oci_archive.is_some() {
                return Err(HostError::Invalid {
                    path: file.to_path_buf(),
                    key: format!("images[{i}]"),
                    message: format!("image {:?}: give exactly one of busybox or oci-archive", image.name.as_str()),
                });
            }
            if image.admin && image.busybox.is_none() {
                return Err(HostError::Invalid {
                    path: file.to_path_buf(),
                    key: format!("images[{i}].admin"),
                    message: format!("image {:?}: admin = true is built on a busybox (busybox = PATH)", image.name.as_str()),
                });
            }
        }
        let base = file.parent().unwrap_or(Path::new(""));
        spec.resolve_sources(base);
        Ok(spec)
    }

    fn resolve_sources(&mut self, base: &Path) {
        let resolve = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        if let Some(busybox) = self.busybox.as_mut() {
            resolve(busybox);
        }
        if let Some(kernel) = self.kernel.path.as_mut() {
            resolve(kernel);
        }
        if let Some(dir) = self.kernel.modules_dir.as_mut() {
            resolve(dir);
        }
        for file in &mut self.files {
            resolve(&mut file.source);
        }
        for image in &mut self.images {
            if let Some(path) = image.busybox.as_mut() {
                resolve(path);
            }
            if let Some(path) = image.oci_archive.as_mut() {
                resolve(path);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str = r#"
hostname = "demo"
cmdline = "keel.foo=1"
busybox = "/bin/busybox"
[kernel]
path = "/boot/vmlinuz-6.1.0"
modules_dir = "mods"
modules = ["virtio-pci", "button"]
[control]
virtio_serial = true
shutdown_grace_secs = 9
watchdog_secs = 12
[[files]]
source = "probe"
path = "/usr/bin/keel-probe"
mode = 0o755
[[symlinks]]
path = "/etc/foo"
target = "bar"
"#;

    fn parse(text: &str) -> Result<HostSpec, HostError> {
        HostSpec::parse(text, Path::new("/cfg/host.toml"))
    }

    #[test]
    fn full_spec_parses_and_resolves_relative_sources() {
        let spec = parse(FULL).unwrap();
        assert_eq!(spec.hostname.as_str(), "demo");
        assert_eq!(spec.cmdline.as_ref().map(Cmdline::as_str), Some("keel.foo=1"));
        assert_eq!(spec.kernel.modules_dir.as_deref(), Some(Path::new("/cfg/mods")));
        assert_eq!(spec.kernel.path.as_deref(), Some(Path::new("/boot/vmlinuz-6.1.0")));
        let names: Vec<&str> = spec.kernel.modules.iter().map(ModuleName::as_str).collect();
        assert_eq!(names, ["virtio_pci", "button"]);
        assert!(spec.control.virtio_serial);
        assert_eq!(spec.control.shutdown_grace_secs, 9);
        assert_eq!(spec.control.watchdog_secs, Some(12));
        assert_eq!(spec.files[0].source, Path::new("/cfg/probe"));
        assert_eq!(spec.files[0].mode.map(FileMode::bits), Some(0o755));
        assert_eq!(spec.symlinks[0].target.as_str(), "bar");
    }

    #[test]
    fn minimal_spec_gets_defaults() {
        let spec = parse("hostname = \"h\"\n").unwrap();
        assert_eq!(spec.kernel, KernelSpec::default());
        assert_eq!(spec.control, ControlSpec { virtio_serial: false, shutdown_grace_secs: 5, watchdog_secs: None });
        assert!(spec.files.is_empty() && spec.symlinks.is_empty() && spec.busybox.is_none());
    }

    fn error_of(text: &str) -> String {
        let err = parse(text).unwrap_err();
        assert!(matches!(err, HostError::Parse { .. }), "{err:?}");
        err.to_string()
    }

    #[test]
    fn unknown_keys_are_named_with_the_file() {
        let msg = error_of("hostname = \"h\"\n[control]\nvirtio_serail = true\n");
        assert!(msg.starts_with("/cfg/host.toml: "), "{msg}");
        assert!(msg.contains("virtio_serail") && msg.contains("line 3"), "{msg}");
        let msg = error_of("hostname = \"h\"\n[[files]]\nsource = \"a\"\npath = \"/a\"\nmod = 1\n");
        assert!(msg.contains("`mod`"), "{msg}");
    }

    #[test]
    fn bad_values_are_named() {
        let msg = error_of("hostname = \"Bad_Name\"\n");
        assert!(msg.contains("hostname") && msg.contains("Bad_Name"), "{msg}");
        let msg = error_of("hostname = \"h\"\n[[files]]\nsource = \"a\"\npath = \"rel\"\n");
        assert!(msg.contains("must be absolute") && msg.contains("path"), "{msg}");
        let msg = error_of("hostname = \"h\"\n[[files]]\nsource = \"a\"\npath = \"/a\"\nmode = 0o17777\n");
        assert!(msg.contains("invalid mode"), "{msg}");
        let msg = error_of("hostname = \"h\"\n[kernel]\nmodules = [\"ok\", \"b/ad\"]\n");
        assert!(msg.contains("b/ad") && msg.contains("modules"), "{msg}");
        let msg = error_of("cmdline = \"x\"\n");
        assert!(msg.contains("missing field `hostname`"), "{msg}");
    }

    #[test]
    fn missing_file_is_named() {
        let err = HostSpec::load(Path::new("/nonexistent/host.toml")).unwrap_err();
        assert!(matches!(err, HostError::Read { .. }));
        assert!(err.to_string().starts_with("/nonexistent/host.toml: cannot read"));
    }

    #[test]
    fn an_image_is_either_busybox_or_an_oci_archive() {
        let base = "hostname = \"h\"\n[[images]]\nname = \"app\"\n";
        let archive = HostSpec::parse(&format!("{base}oci-archive = \"app.tar\"\n"), Path::new("/cfg/host.toml")).unwrap();
        assert_eq!(archive.images[0].oci_archive.as_deref(), Some(Path::new("/cfg/app.tar")));
        for extra in ["", "busybox = \"/bin/busybox\"\noci-archive = \"app.tar\"\n"] {
            match HostSpec::parse(&format!("{base}{extra}"), Path::new("/cfg/host.toml")) {
                Err(HostError::Invalid { key, message, .. }) => {
                    assert_eq!(key, "images[0]");
                    assert!(message.contains("exactly one of busybox or oci-archive"), "{message}");
                }
                other => panic!("expected an Invalid error, got {other:?}"),
            }
        }
    }

    #[test]
    fn an_admin_image_is_built_on_a_busybox() {
        let base = "hostname = \"h\"\n[[images]]\nname = \"admin\"\nadmin = true\n";
        let ok = HostSpec::parse(&format!("{base}busybox = \"/bin/busybox\"\n"), Path::new("/cfg/host.toml")).unwrap();
        assert!(ok.images[0].admin);
        match HostSpec::parse(&format!("{base}oci-archive = \"app.tar\"\n"), Path::new("/cfg/host.toml")) {
            Err(HostError::Invalid { key, message, .. }) => {
                assert_eq!(key, "images[0].admin");
                assert!(message.contains("busybox"), "{message}");
            }
            other => panic!("expected an Invalid error, got {other:?}"),
        }
    }
}
