//! Building the images tests boot.

use keel_build::{build, BuildError, BuildOptions, HostError, HostSpec};
use std::path::{Path, PathBuf};

/// A built image: kernel, initramfs and the command line it boots with.
#[derive(Debug, Clone)]
pub struct TestImage {
    /// Directory holding the image and, later, the consoles of its boots.
    pub dir: PathBuf,
    /// The kernel.
    pub vmlinuz: PathBuf,
    /// The initramfs.
    pub initramfs: PathBuf,
    /// The image's kernel command line.
    pub cmdline: String,
}

/// The cargo target directory (`…/target`), found from the running test executable.
pub fn target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(dir);
    }
    let exe = std::env::current_exe().expect("current_exe");
    exe.ancestors().find(|p| p.file_name().is_some_and(|n| n == "target")).map(Path::to_path_buf).unwrap_or_else(std::env::temp_dir)
}

/// The `keel` binary the images carry (`KEEL_BINARY`, else the one built beside the tests).
pub fn keel_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("KEEL_BINARY") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("current_exe");
    let candidates: Vec<PathBuf> = exe.ancestors().skip(1).take(2).map(|dir| dir.join("keel")).collect();
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .unwrap_or_else(|| panic!("keel binary not found at {candidates:?}: build the workspace binaries first (make test does)"))
}

/// Write `host_toml` as NAME/host.toml under target/qemu-tests and build it there.
/// `@PROBE@` in the text is replaced by the path of the keel-probe binary.
pub fn build_image(name: &str, host_toml: &str, probe: &Path) -> TestImage {
    let dir = target_dir().join("qemu-tests").join(name);
    std::fs::create_dir_all(&dir).expect("create image dir");
    let toml_path = dir.join("host.toml");
    let text = host_toml.replace("@PROBE@", &probe.display().to_string());
    std::fs::write(&toml_path, text).expect("write host.toml");
    let spec = HostSpec::load(&toml_path).unwrap_or_else(|e| panic!("{e}"));
    build_spec(&spec, dir).unwrap_or_else(|e| panic!("build {name}: {e}"))
}

/// Why [`build_image_from_file`] could not build an image.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    /// The host.toml could not be read or is invalid.
    #[error(transparent)]
    Host(#[from] HostError),
    /// The image builder failed.
    #[error(transparent)]
    Build(#[from] BuildError),
    /// The output directory could not be made.
    #[error("{}: cannot create: {source}", path.display())]
    Dir {
        /// The directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// Build the host.toml at `host` where it lies, so its relative paths (`[[files]] source`
/// and the like) resolve against its own directory as `keel-build` resolves them, into
/// NAME under target/qemu-tests. Benchmarks use it for hosts such as examples/demo, whose
/// files a copy of the host.toml would leave behind.
pub fn build_image_from_file(name: &str, host: &Path) -> Result<TestImage, ImageError> {
    let dir = target_dir().join("qemu-tests").join(name);
    std::fs::create_dir_all(&dir).map_err(|source| ImageError::Dir { path: dir.clone(), source })?;
    let spec = HostSpec::load(host)?;
    Ok(build_spec(&spec, dir)?)
}

/// Build `spec` into `dir` with the keel binary beside the running executable.
fn build_spec(spec: &HostSpec, dir: PathBuf) -> Result<TestImage, BuildError> {
    let options = BuildOptions { keel_binary: keel_binary(), source_date_epoch: 0, ca_bundle: keel_build::build::default_ca_bundle() };
    let out = build(spec, &options, &dir)?;
    Ok(TestImage { dir, vmlinuz: out.vmlinuz, initramfs: out.initramfs, cmdline: out.cmdline })
}
