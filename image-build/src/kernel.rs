//! Finding the kernel to ship: its image, its release string and its module tree.
//!
//! Version comparison and file-name parsing are pure; [`locate`] does the file system
//! look-ups. The release string is taken from the kernel file name (`vmlinuz-RELEASE`),
//! or else from the name of the modules directory; the kernel image header is not read.

use std::cmp::Ordering;
use std::path::{Path, PathBuf};

use keel_init::kmod::{ModulesDep, ResolveError};

use crate::host::KernelSpec;

/// Where kernels are looked for when host.toml names none.
pub const BOOT_DIR: &str = "/boot";
/// Parent of the per-release module trees.
pub const MODULES_ROOT: &str = "/lib/modules";

/// Why the kernel or its modules could not be found.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    /// The boot directory has no vmlinuz-* file.
    #[error("no vmlinuz-* kernel in {}; set [kernel].path in host.toml", dir.display())]
    NoKernel {
        /// The directory searched.
        dir: PathBuf,
    },
    /// The boot directory could not be listed.
    #[error("cannot list {}: {source}", dir.display())]
    ReadDir {
        /// The directory.
        dir: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The kernel image is missing or not a regular file.
    #[error("kernel {}: {source}", path.display())]
    Kernel {
        /// The kernel image path.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Neither the kernel file name nor the modules directory tells the release.
    #[error(
        "cannot tell the kernel release from {} (expected a name vmlinuz-RELEASE); set [kernel].modules_dir",
        path.display()
    )]
    NoRelease {
        /// The kernel image path.
        path: PathBuf,
    },
    /// modules.dep could not be read.
    #[error("{}: cannot read: {source}", path.display())]
    ReadModulesDep {
        /// The modules.dep path.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// modules.dep could not be parsed.
    #[error("{}: {source}", path.display())]
    ParseModulesDep {
        /// The modules.dep path.
        path: PathBuf,
        /// The parse error.
        #[source]
        source: ResolveError,
    },
}

/// The kernel an image is built for.
#[derive(Debug, Clone)]
pub struct KernelInfo {
    /// The kernel image on the build host.
    pub vmlinuz: PathBuf,
    /// The release string (`uname -r`), naming /lib/modules/<release> in the image.
    pub release: String,
    /// The module tree on the build host.
    pub modules_dir: PathBuf,
    /// Its parsed modules.dep (empty when no modules are requested).
    pub modules_dep: ModulesDep,
}

/// Compare two version strings by their runs of digits, numerically, then as text.
///
/// `6.10.0` is newer than `6.9.12`, and `6.1.0-57` newer than `6.1.0-9`.
pub fn compare_versions(a: &str, b: &str) -> Ordering {
    let numbers = |s: &'_ str| -> Vec<String> {
        s.split(|c: char| !c.is_ascii_digit()).filter(|run| !run.is_empty()).map(|run| run.trim_start_matches('0').to_string()).collect()
    };
    let (na, nb) = (numbers(a), numbers(b));
    let by_number = na.iter().zip(&nb).find_map(|(x, y)| {
        let order = x.len().cmp(&y.len()).then_with(|| x.cmp(y));
        (order != Ordering::Equal).then_some(order)
    });
    by_number.unwrap_or_else(|| na.len().cmp(&nb.len())).then_with(|| a.cmp(b))
}

/// The release part of a kernel file name `vmlinuz-RELEASE`, if it has that form.
pub fn release_from_file_name(name: &str) -> Option<&str> {
    name.strip_prefix("vmlinuz-").filter(|release| !release.is_empty())
}

/// The file name with the newest release among `names`, ignoring non-kernel names.
pub fn newest_kernel<'a>(names: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    names
        .into_iter()
        .filter_map(|name| release_from_file_name(name).map(|release| (name, release)))
        .max_by(|(_, a), (_, b)| compare_versions(a, b))
        .map(|(name, _)| name)
}

/// Find the kernel, release and modules for `spec`, looking in `boot_dir` for the default.
pub fn locate(spec: &KernelSpec, boot_dir: &Path) -> Result<KernelInfo, KernelError> {
    let vmlinuz = match &spec.path {
        Some(path) => path.clone(),
        None => find_newest(boot_dir)?,
    };
    let meta = std::fs::metadata(&vmlinuz).map_err(|source| KernelError::Kernel { path: vmlinuz.clone(), source })?;
    if !meta.is_file() {
        let source = std::io::Error::other("not a regular file");
        return Err(KernelError::Kernel { path: vmlinuz, source });
    }
    let release = release_of(&vmlinuz, spec.modules_dir.as_deref())?;
    let modules_dir = spec.modules_dir.clone().unwrap_or_else(|| Path::new(MODULES_ROOT).join(&release));
    let modules_dep = if spec.modules.is_empty() { ModulesDep::default() } else { read_modules_dep(&modules_dir.join("modules.dep"))? };
    Ok(KernelInfo { vmlinuz, release, modules_dir, modules_dep })
}

fn find_newest(boot_dir: &Path) -> Result<PathBuf, KernelError> {
    let read_dir = |source| KernelError::ReadDir { dir: boot_dir.to_path_buf(), source };
    let mut names = Vec::new();
    for entry in std::fs::read_dir(boot_dir).map_err(read_dir)? {
        let entry = entry.map_err(read_dir)?;
        if let Some(name) = entry.file_name().to_str() {
            names.push(name.to_string());
        }
    }
    let newest = newest_kernel(names.iter().map(String::as_str)).ok_or_else(|| KernelError::NoKernel { dir: boot_dir.to_path_buf() })?;
    Ok(boot_dir.join(newest))
}

fn release_of(vmlinuz: &Path, modules_dir: Option<&Path>) -> Result<String, KernelError> {
    let from_kernel = vmlinuz.file_name().and_then(|n| n.to_str()).and_then(release_from_file_name);
    let from_modules = modules_dir.and_then(Path::file_name).and_then(|n| n.to_str());
    from_kernel.or(from_modules).map(str::to_string).ok_or_else(|| KernelError::NoRelease { path: vmlinuz.to_path_buf() })
}

fn read_modules_dep(path: &Path) -> Result<ModulesDep, KernelError> {
    let text = std::fs::read_to_string(path).map_err(|source| KernelError::ReadModulesDep { path: path.to_path_buf(), source })?;
    ModulesDep::parse(&text).map_err(|source| KernelError::ParseModulesDep { path: path.to_path_buf(), source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_numerically() {
        assert_eq!(compare_versions("6.10.0", "6.9.12"), Ordering::Greater);
        assert_eq!(compare_versions("6.1.0-57-amd64", "6.1.0-9-amd64"), Ordering::Greater);
        assert_eq!(compare_versions("6.1.0", "6.1.0-1"), Ordering::Less);
        assert_eq!(compare_versions("6.01", "6.1"), Ordering::Less, "ties break on text");
        assert_eq!(compare_versions("6.1", "6.1"), Ordering::Equal);
    }

    #[test]
    fn newest_kernel_ignores_other_files() {
        let names = ["config-6.9", "vmlinuz-6.1.0-57-amd64", "vmlinuz-6.10.1", "vmlinuz-", "initrd.img-7.0"];
        assert_eq!(newest_kernel(names), Some("vmlinuz-6.10.1"));
        assert_eq!(newest_kernel(["System.map-6.1"]), None);
    }

    #[test]
    fn release_comes_from_the_name_or_the_modules_dir() {
        let release = release_of(Path::new("/b/vmlinuz-6.1.0"), None).unwrap();
        assert_eq!(release, "6.1.0");
        let release = release_of(Path::new("/b/bzImage"), Some(Path::new("/m/6.2.0"))).unwrap();
        assert_eq!(release, "6.2.0");
        let err = release_of(Path::new("/b/bzImage"), None).unwrap_err();
        assert!(err.to_string().contains("/b/bzImage"));
    }

    #[test]
    fn locate_finds_the_newest_and_reads_modules_dep() {
        let dir = tempfile::tempdir().unwrap();
        let boot = dir.path().join("boot");
        let mods = dir.path().join("mods");
        std::fs::create_dir_all(&boot).unwrap();
        std::fs::create_dir_all(&mods).unwrap();
        for name in ["vmlinuz-6.1.0", "vmlinuz-6.2.0", "config-6.3.0"] {
            std::fs::write(boot.join(name), b"k").unwrap();
        }
        std::fs::write(mods.join("modules.dep"), "kernel/a.ko:\n").unwrap();
        let spec = KernelSpec { path: None, modules_dir: Some(mods.clone()), modules: vec![keel_init::kmod::ModuleName::new("a")] };
        let info = locate(&spec, &boot).unwrap();
        assert_eq!(info.vmlinuz, boot.join("vmlinuz-6.2.0"));
        assert_eq!(info.release, "6.2.0");
        assert!(info.modules_dep.get(&keel_init::kmod::ModuleName::new("a")).is_some());
        let err = locate(&KernelSpec::default(), &mods).unwrap_err();
        assert!(matches!(err, KernelError::NoKernel { .. }), "{err}");
    }
}
