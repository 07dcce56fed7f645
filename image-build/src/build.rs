//! `build`: from a host spec to a kernel, an initramfs and a kernel command line.
//!
//! Facts about the build host (kernel, modules.dep, busybox applets) are gathered
//! first, then the image is planned by the pure [`crate::image::plan`], then written.
//! Every output is written atomically, so a failed build leaves the previous outputs.

use std::ffi::OsString;
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::atomic::{write_atomic, AtomicFile};
use crate::busybox::{self, BusyboxError};
use crate::host::HostSpec;
use crate::image::{self, PlanError};
use crate::initramfs::{self, WriteError};
use crate::kernel::{self, KernelError, BOOT_DIR};

/// The command line every image boots with, before the spec's `cmdline`.
pub const DEFAULT_CMDLINE: &str = "console=ttyS0 quiet panic=-1";
/// File names of the outputs in the output directory.
pub const VMLINUZ: &str = "vmlinuz";
/// File name of the compressed initramfs.
pub const INITRAMFS: &str = "initramfs.img";
/// File name of the kernel command line.
pub const CMDLINE: &str = "cmdline";

/// Why an image could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// An `[[images]]` archive is not a valid, intact OCI image.
    #[error("image {name}: {message}")]
    Image {
        /// The `[[images]]` name.
        name: String,
        /// What is wrong (names the blob and the file).
        message: String,
    },
    /// No keel binary was found where one was looked for.
    #[error(
        "no keel binary found (looked at {}); build it with `cargo build -p keel-init` or set KEEL_BINARY",
        searched.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
    )]
    KeelNotFound {
        /// The paths tried.
        searched: Vec<PathBuf>,
    },
    /// An environment variable has an unusable value.
    #[error("environment variable {name}={value:?}: {reason}")]
    Env {
        /// The variable.
        name: &'static str,
        /// Its value.
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The kernel or its modules could not be found.
    #[error(transparent)]
    Kernel(#[from] KernelError),
    /// busybox could not list its applets.
    #[error(transparent)]
    Busybox(#[from] BusyboxError),
    /// The image contents are inconsistent.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// The admin image's programs or libraries could not be found.
    #[error(transparent)]
    Admin(#[from] crate::admin::AdminError),
    /// The initramfs could not be written.
    #[error("{}: {source}", path.display())]
    Initramfs {
        /// The output file.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: WriteError,
    },
    /// An output file or directory could not be written.
    #[error("{}: {source}", path.display())]
    Write {
        /// The output path.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// An input file could not be read.
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        /// The input path.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
}

/// Inputs of a build that do not come from host.toml.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildOptions {
    /// The static keel binary installed as /usr/bin/keel.
    pub keel_binary: PathBuf,
    /// Modification time of every archive member (`SOURCE_DATE_EPOCH`).
    pub source_date_epoch: u64,
    /// The PEM CA bundle installed as /etc/ssl/certs/ca-certificates.crt, which keel
    /// trusts for https (first-boot sources, registries); `None`: no bundle.
    pub ca_bundle: Option<PathBuf>,
}

/// The build host's CA bundle (Debian's ca-certificates), when it has one.
pub const HOST_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// `KEEL_CA_BUNDLE` when set (empty: none), else the build host's bundle if present.
pub fn default_ca_bundle() -> Option<PathBuf> {
    match std::env::var_os("KEEL_CA_BUNDLE") {
        Some(path) if path.is_empty() => None,
        Some(path) => Some(PathBuf::from(path)),
        None => Some(PathBuf::from(HOST_CA_BUNDLE)).filter(|p| p.is_file()),
    }
}

impl BuildOptions {
    /// Options from the environment: `KEEL_BINARY`, else a `keel` next to this executable
    /// or in its parent directory; `SOURCE_DATE_EPOCH`, else 0; the CA bundle of
    /// [`default_ca_bundle`].
    pub fn from_env() -> Result<BuildOptions, BuildError> {
        let keel_binary = match std::env::var_os("KEEL_BINARY").filter(|v| !v.is_empty()) {
            Some(path) => PathBuf::from(path),
            None => find_keel_binary()?,
        };
        let source_date_epoch = parse_epoch(std::env::var_os("SOURCE_DATE_EPOCH"))?;
        Ok(BuildOptions { keel_binary, source_date_epoch, ca_bundle: default_ca_bundle() })
    }
}

/// Where a default keel binary is looked for, given the running executable.
pub fn keel_binary_candidates(exe: &Path) -> Vec<PathBuf> {
    let dirs = exe.parent().into_iter().chain(exe.parent().and_then(Path::parent));
    dirs.map(|dir| dir.join("keel")).collect()
}

fn find_keel_binary() -> Result<PathBuf, BuildError> {
    let searched = std::env::current_exe().map(|exe| keel_binary_candidates(&exe)).unwrap_or_default();
    match searched.iter().find(|p| p.is_file()) {
        Some(found) => Ok(found.clone()),
        None => Err(BuildError::KeelNotFound { searched }),
    }
}

/// Parse `SOURCE_DATE_EPOCH`: unset or empty is 0; it must fit the 32-bit cpio mtime.
pub fn parse_epoch(value: Option<OsString>) -> Result<u64, BuildError> {
    let Some(value) = value.filter(|v| !v.is_empty()) else {
        return Ok(0);
    };
    let text = value.to_string_lossy().into_owned();
    let epoch: u64 = text.trim().parse().map_err(|_| BuildError::Env {
        name: "SOURCE_DATE_EPOCH",
        value: text.clone(),
        reason: "not a number of seconds",
    })?;
    if epoch > u64::from(u32::MAX) {
        let reason = "after 2106, beyond the 32-bit cpio mtime";
        return Err(BuildError::Env { name: "SOURCE_DATE_EPOCH", value: text, reason });
    }
    Ok(epoch)
}

/// What a build produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildOutput {
    /// Copy of the kernel image.
    pub vmlinuz: PathBuf,
    /// The gzip-compressed cpio initramfs.
    pub initramfs: PathBuf,
    /// The kernel command line (also in the file `cmdline`, with a newline).
    pub cmdline: String,
}

/// The full kernel command line for `spec`.
pub fn kernel_cmdline(spec: &HostSpec) -> String {
    match spec.cmdline.as_ref().map(|c| c.as_str()).filter(|c| !c.is_empty()) {
        Some(extra) => format!("{DEFAULT_CMDLINE} {extra}"),
        None => DEFAULT_CMDLINE.to_string(),
    }
}

/// Build the image for `spec` into the directory `out` (created if missing).
pub fn build(spec: &HostSpec, options: &BuildOptions, out: &Path) -> Result<BuildOutput, BuildError> {
    let mtime = u32::try_from(options.source_date_epoch).map_err(|_| BuildError::Env {
        name: "SOURCE_DATE_EPOCH",
        value: options.source_date_epoch.to_string(),
        reason: "after 2106, beyond the 32-bit cpio mtime",
    })?;
    let (kernel, entries) = plan_image(spec, options)?;
    std::fs::create_dir_all(out).map_err(|source| BuildError::Write { path: out.to_path_buf(), source })?;

    let initramfs = out.join(INITRAMFS);
    write_initramfs(&entries, mtime, &initramfs)?;
    let vmlinuz = out.join(VMLINUZ);
    copy_atomic(&kernel.vmlinuz, &vmlinuz)?;
    let cmdline = kernel_cmdline(spec);
    let cmdline_path = out.join(CMDLINE);
    write_atomic(&cmdline_path, format!("{cmdline}\n").as_bytes()).map_err(|source| BuildError::Write { path: cmdline_path, source })?;
    Ok(BuildOutput { vmlinuz, initramfs, cmdline })
}

/// Gather the facts of the build host (kernel, busybox applets) and plan the image's
/// whole tree: what `build` packs into the initramfs and `disk` into the erofs root.
pub fn plan_image(spec: &HostSpec, options: &BuildOptions) -> Result<(kernel::KernelInfo, Vec<crate::tree::Entry>), BuildError> {
    let kernel = kernel::locate(&spec.kernel, Path::new(BOOT_DIR))?;
    let applets = match &spec.busybox {
        Some(path) => busybox::list_applets(path)?,
        None => Vec::new(),
    };
    let image_applets = spec
        .images
        .iter()
        .map(|image| image.busybox.as_deref().map(busybox::list_applets).unwrap_or(Ok(Vec::new())))
        .collect::<Result<Vec<_>, _>>()?;
    for image in &spec.images {
        if let Some(archive) = &image.oci_archive {
            verify_archive(archive).map_err(|message| BuildError::Image { name: image.name.to_string(), message })?;
        }
    }
    let admin = if spec.images.iter().any(|image| image.admin) { crate::admin::gather()? } else { Default::default() };
    let entries = image::plan(spec, &kernel, &applets, &image_applets, &admin, options)?;
    Ok((kernel, entries))
}

/// Write `entries` as a gzip'd cpio archive at `path`, atomically.
pub(crate) fn write_initramfs(entries: &[crate::tree::Entry], mtime: u32, path: &Path) -> Result<(), BuildError> {
    let write_err = |source| BuildError::Write { path: path.to_path_buf(), source };
    let file = AtomicFile::create(path).map_err(write_err)?;
    let buffered = initramfs::write_cpio_gz(entries, mtime, BufWriter::new(file))
        .map_err(|source| BuildError::Initramfs { path: path.to_path_buf(), source })?;
    let file = buffered.into_inner().map_err(|err| write_err(err.into_error()))?;
    file.commit().map_err(write_err)
}

fn copy_atomic(from: &Path, to: &Path) -> Result<(), BuildError> {
    let mut input = File::open(from).map_err(|source| BuildError::Read { path: from.to_path_buf(), source })?;
    let write_err = |source| BuildError::Write { path: to.to_path_buf(), source };
    let mut output = AtomicFile::create(to).map_err(write_err)?;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = input.read(&mut buf).map_err(|source| BuildError::Read { path: from.to_path_buf(), source })?;
        if n == 0 {
            break;
        }
        output.write_all(&buf[..n]).map_err(write_err)?;
    }
    output.commit().map_err(write_err)
}

/// The SHA-256 of a file, as lowercase hex.
pub fn sha256_file(path: &Path) -> Result<String, BuildError> {
    let read_err = |source| BuildError::Read { path: path.to_path_buf(), source };
    let mut file = File::open(path).map_err(read_err)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf).map_err(read_err)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// Check an OCI archive the way a keel host will import it: every blob against its digest,
/// the manifest and config, every layer against its diff_id (in a scratch store).
fn verify_archive(archive: &Path) -> Result<(), String> {
    use keel_supervisor::image::{import, ImageSource, Store};
    let scratch = std::env::temp_dir().join(format!("keel-build-verify-{}", std::process::id()));
    let result = Store::open(&scratch).and_then(|store| {
        let fetched = import::fetch(&store, &ImageSource::OciArchive(archive.to_path_buf()))?;
        store.verify_layers(&fetched.manifest)
    });
    let _ = std::fs::remove_dir_all(&scratch);
    result.map_err(|e| format!("{}: {e}", archive.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keel_is_looked_for_next_to_the_executable_and_above() {
        let found = keel_binary_candidates(Path::new("/t/debug/deps/reproducible-abc"));
        assert_eq!(found, [PathBuf::from("/t/debug/deps/keel"), PathBuf::from("/t/debug/keel")]);
    }

    #[test]
    fn epoch_parsing() {
        assert_eq!(parse_epoch(None).unwrap(), 0);
        assert_eq!(parse_epoch(Some("".into())).unwrap(), 0);
        assert_eq!(parse_epoch(Some("1700000000".into())).unwrap(), 1_700_000_000);
        let err = parse_epoch(Some("yesterday".into())).unwrap_err();
        assert!(err.to_string().contains("SOURCE_DATE_EPOCH=\"yesterday\""), "{err}");
        assert!(parse_epoch(Some("4294967296".into())).is_err());
    }

    #[test]
    fn cmdline_appends_the_spec_part() {
        let spec = HostSpec::parse("hostname = \"h\"\ncmdline = \"keel.foo=1\"\n", Path::new("h.toml")).unwrap();
        assert_eq!(kernel_cmdline(&spec), "console=ttyS0 quiet panic=-1 keel.foo=1");
        let spec = HostSpec::parse("hostname = \"h\"\n", Path::new("h.toml")).unwrap();
        assert_eq!(kernel_cmdline(&spec), "console=ttyS0 quiet panic=-1");
    }

    #[test]
    fn sha256_of_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"abc").unwrap();
        assert_eq!(sha256_file(&path).unwrap(), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }
}
