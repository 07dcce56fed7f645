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

/// When PID 1 loads a listed module (issue 12, point 5: load before ready only what
/// ready needs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Before `keel: ready`: buses, consoles, disks, network cards, the power button,
    /// and every module keel does not know (a driver a host lists may be its uplink).
    BeforeReady,
    /// By a forked loader after `keel: ready`, before the first container starts, or
    /// at once when a boot step needs it earlier ([`load_for_fs`]).
    AfterReady,
}

/// Modules that nothing before `keel: ready` needs: container plumbing (overlay,
/// bridge, veth and theirs), nftables (the firewall is applied once they are in, and
/// no container starts before that) and filesystems the boot mounts only on demand.
/// Watchdog drivers too: PID 1 arms the watchdog when the late boot is done.
/// The power button (`button`, `evdev`) is not here: a press before its driver is bound
/// is lost, not queued, and a cloud "stop" may come right after ready.
pub const AFTER_READY: &[&str] = &[
    "overlay",
    "bridge",
    "stp",
    "llc",
    "veth",
    "crc32c_generic",
    "ext4",
    "jbd2",
    "mbcache",
    "crc16",
    "fat",
    "vfat",
    "isofs",
    "cdrom",
    "libcrc32c",
    "x_tables",
    "i6300esb",
];

/// Name prefixes of after-ready module families: netfilter and nftables, codepages.
const AFTER_READY_PREFIXES: &[&str] = &["nf_", "nft_", "nfnetlink", "nls_"];

/// The stage of one module.
pub fn stage(name: &ModuleName) -> Stage {
    let name = name.as_str();
    if AFTER_READY.contains(&name) || AFTER_READY_PREFIXES.iter().any(|prefix| name.starts_with(prefix)) {
        Stage::AfterReady
    } else {
        Stage::BeforeReady
    }
}

/// Split a module list into (before ready, after ready), each in the given order.
pub fn split(names: Vec<ModuleName>) -> (Vec<ModuleName>, Vec<ModuleName>) {
    names.into_iter().partition(|name| stage(name) == Stage::BeforeReady)
}

/// The modules a filesystem type needs, in load order (none for one keel never loads).
pub fn modules_for_fs(fstype: &str) -> &'static [&'static str] {
    match fstype {
        // ext4's crc32c comes through the crypto API, a soft dependency modules.dep does
        // not order (see image-build's boot modules).
        "ext4" => &["crc32c_generic", "ext4"],
        "vfat" => &["nls_cp437", "nls_ascii", "vfat"],
        "iso9660" => &["isofs"],
        "overlay" => &["overlay"],
        _ => &[],
    }
}

/// Load what mounting `fstype` needs, now, from PID 1 (a boot step about to mount it;
/// the after-ready loader may not have run yet). A module the image does not ship is
/// skipped: the kernel may have it built in, and the mount names the problem if not.
pub fn load_for_fs(fstype: &str) -> Result<(), LoadError> {
    let wanted = modules_for_fs(fstype);
    if wanted.is_empty() {
        return Ok(());
    }
    let mut loader = match ModuleLoader::open(&modules_dir()) {
        Ok(loader) => loader,
        Err(LoadError::ModulesDep { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for name in wanted {
        match loader.load(&ModuleName::new(name)) {
            Ok(()) | Err(LoadError::Resolve(ResolveError::NotFound(_))) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
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

    #[test]
    fn ready_needs_drivers_not_container_plumbing() {
        let listed =
            parse_module_list("overlay\nvirtio_pci\nbridge\nnf_tables\nnft_masq\next4\nvirtio_net\nbutton\nnls_cp437\nmy_nic\nevdev\n");
        let (before, after) = split(listed);
        let names = |list: &[ModuleName]| list.iter().map(|n| n.as_str().to_string()).collect::<Vec<_>>();
        assert_eq!(names(&before), ["virtio_pci", "virtio_net", "button", "my_nic", "evdev"]);
        assert_eq!(names(&after), ["overlay", "bridge", "nf_tables", "nft_masq", "ext4", "nls_cp437"]);
    }

    #[test]
    fn each_mounted_filesystem_has_its_modules() {
        assert_eq!(modules_for_fs("ext4"), ["crc32c_generic", "ext4"]);
        assert_eq!(modules_for_fs("iso9660"), ["isofs"]);
        assert!(modules_for_fs("tmpfs").is_empty());
        // Every module named for a filesystem is one the boot defers.
        for fs in ["ext4", "vfat", "iso9660", "overlay"] {
            assert!(modules_for_fs(fs).iter().all(|m| stage(&ModuleName::new(m)) == Stage::AfterReady), "{fs}");
        }
    }
}
