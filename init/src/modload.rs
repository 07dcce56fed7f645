//! Loading kernel modules with finit_module, dependencies first (no modprobe).

use crate::kmod::{ModuleName, ModulesDep, ResolveError};
use nix::kmod::{finit_module, ModuleInitFlags};
use std::collections::BTreeSet;
use std::ffi::CString;
use std::path::{Path, PathBuf};

/// Where the image lists the modules to load, one name per line.
pub const MODULE_LIST_PATH: &str = "/etc/keel/modules";

/// A module that could not be loaded, and why.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The kernel's modules directory or its modules.dep is missing or unreadable.
    #[error("cannot read {path}: {source}")]
    ModulesDep {
        /// The modules.dep path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// modules.dep does not know the module, or is malformed.
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    /// The module file could not be opened.
    #[error("module {module}: cannot open {path}: {source}")]
    Open {
        /// The module requested.
        module: ModuleName,
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The kernel refused the module.
    #[error("module {module}: finit_module({path}) failed: {source}")]
    Kernel {
        /// The module requested.
        module: ModuleName,
        /// The file that failed (the module itself or one of its dependencies).
        path: PathBuf,
        /// The errno (e.g. ENOEXEC for a module built for another kernel).
        source: nix::Error,
    },
}

/// The names listed in a module list file: one per line, `#` comments allowed.
pub fn parse_module_list(text: &str) -> Vec<ModuleName> {
    text.lines().map(|l| l.split('#').next().unwrap_or("").trim()).filter(|l| !l.is_empty()).map(ModuleName::new).collect()
}

/// The modules directory of the running kernel.
pub fn modules_dir() -> PathBuf {
    let release = nix::sys::utsname::uname().map(|u| u.release().to_string_lossy().into_owned()).unwrap_or_default();
    Path::new("/lib/modules").join(release)
}

/// Loads modules, remembering which files are already in, so shared dependencies load once.
pub struct ModuleLoader {
    dir: PathBuf,
    dep: ModulesDep,
    loaded: BTreeSet<String>,
}

impl ModuleLoader {
    /// Read `modules.dep` from `dir`.
    pub fn open(dir: &Path) -> Result<Self, LoadError> {
        let path = dir.join("modules.dep");
        let text = std::fs::read_to_string(&path).map_err(|source| LoadError::ModulesDep { path, source })?;
        Ok(ModuleLoader { dir: dir.to_path_buf(), dep: ModulesDep::parse(&text)?, loaded: BTreeSet::new() })
    }

    /// Load `name` and its dependencies. A module already in the kernel counts as loaded.
    pub fn load(&mut self, name: &ModuleName) -> Result<(), LoadError> {
        for relative in self.dep.load_order(name)? {
            if self.loaded.contains(&relative) {
                continue;
            }
            let path = self.dir.join(&relative);
            let file = std::fs::File::open(&path).map_err(|source| LoadError::Open { module: name.clone(), path: path.clone(), source })?;
            match finit_module(&file, &CString::default(), ModuleInitFlags::empty()) {
                Ok(()) | Err(nix::Error::EEXIST) => {}
                Err(source) => return Err(LoadError::Kernel { module: name.clone(), path, source }),
            }
            self.loaded.insert(relative);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_list_skips_comments_and_blanks() {
        let names = parse_module_list("virtio-pci\n\n# input\nevdev # keys\n");
        assert_eq!(names, vec![ModuleName::new("virtio_pci"), ModuleName::new("evdev")]);
    }
}
