//! Booting from a disk image: the first stage, in the unified kernel image's small
//! initramfs.
//!
//! With `keel.root=NAME` on the command line, PID 1 on the initramfs loads the modules
//! its image lists (disk drivers, erofs), waits for the GPT partition named NAME (the
//! kernel shows GPT names as `PARTNAME=` in each partition's uevent), mounts its erofs
//! read-only on [`SYSROOT`], frees the initramfs, makes the erofs the root and executes
//! /usr/bin/keel there, which boots the host as usual (storage then finds the
//! `keel-var` partition, grows it and mounts it on /var; see `storage`). On any failure
//! the cause is returned and printed, and keel stays on the initramfs.

use crate::modload::{self, ModuleLoader};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The command line option naming the root partition (GPT partition name).
pub const ROOT_OPTION: &str = "keel.root";
/// Where the root is mounted before it becomes `/`.
pub const SYSROOT: &str = "/sysroot";
/// Carries a failed switch's cause across the re-exec into the tmpfs root, so that the
/// booted PID 1 reports it (emergency state, `keelctl status`).
pub const ROOT_ERROR_ENV: &str = "KEEL_ROOT_ERROR";
/// How long the root partition is waited for after the drivers are loaded.
pub const ROOT_WAIT: Duration = Duration::from_secs(20);

/// Why the disk root could not be reached (keel stays on the initramfs).
#[derive(Debug, thiserror::Error)]
pub enum SysrootError {
    /// A mount, move or exec failed.
    #[error("{step}: {source}")]
    Sys {
        /// What was being done.
        step: String,
        /// The errno.
        #[source]
        source: nix::Error,
    },
    /// No partition has the name.
    #[error("no partition named {name} appeared within {}s (block devices seen: {seen}); is the disk attached and its GPT intact?", ROOT_WAIT.as_secs())]
    NotFound {
        /// The partition name.
        name: String,
        /// The block devices there were.
        seen: String,
    },
}

fn sys(step: impl Into<String>) -> impl FnOnce(nix::Error) -> SysrootError {
    let step = step.into();
    move |source| SysrootError::Sys { step, source }
}

/// The value of `keel.root=` in a command line, if any (the last one counts).
pub fn root_option(cmdline: &str) -> Option<String> {
    crate::cmdline::split_words(cmdline)
        .into_iter()
        .rev()
        .filter_map(|w| w.strip_prefix("keel.root=").map(str::to_string))
        .find(|v| !v.is_empty())
}

/// `(DEVNAME, PARTNAME)` from a block device's uevent text, when it has a GPT name.
pub fn uevent_partname(uevent: &str) -> Option<(String, String)> {
    let value = |key: &str| uevent.lines().find_map(|l| l.strip_prefix(key).map(str::to_string));
    Some((value("DEVNAME=")?, value("PARTNAME=")?))
}

/// The device node of the partition named `name`, from the uevents in `sys_class_block`.
pub fn find_partname(sys_class_block: &Path, dev: &Path, name: &str) -> Option<PathBuf> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(sys_class_block).ok()?.filter_map(|e| e.ok()).map(|e| e.path()).collect();
    entries.sort();
    entries.iter().find_map(|entry| {
        let text = std::fs::read_to_string(entry.join("uevent")).ok()?;
        let (devname, partname) = uevent_partname(&text)?;
        (partname == name).then(|| dev.join(devname))
    })
}

/// Whether this PID 1 should first switch to a disk root: it runs on the initramfs and
/// the command line names a root partition. /proc is mounted to read the command line
/// and detached again (the initramfs's own tree is bound as the root when no root is named).
pub fn requested_root() -> Option<String> {
    let _ = std::fs::create_dir_all("/proc");
    let mounted = mount(Some("proc"), "/proc", Some("proc"), MsFlags::empty(), None::<&str>).is_ok();
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    if mounted {
        let _ = umount2("/proc", MntFlags::MNT_DETACH);
    }
    root_option(&cmdline)
}

/// Mount the partition named `name` as the root and exec keel there. Returns only on
/// failure, with the initramfs as it was (the kernel filesystems it mounted detached
/// again, so the initramfs's tree can still be bound as the root).
pub fn switch_to_disk_root(name: &str) -> SysrootError {
    let error = match prepare(name) {
        Ok(()) => exec_keel(),
        Err(e) => e,
    };
    for target in [SYSROOT, "/dev", "/sys", "/proc"] {
        let _ = umount2(target, MntFlags::MNT_DETACH);
    }
    error
}

fn prepare(name: &str) -> Result<(), SysrootError> {
    for (fstype, target) in [("proc", "/proc"), ("sysfs", "/sys"), ("devtmpfs", "/dev")] {
        let _ = std::fs::create_dir_all(target);
        match mount(Some(fstype), target, Some(fstype), MsFlags::MS_NOSUID, None::<&str>) {
            Ok(()) | Err(nix::Error::EBUSY) => {}
            Err(e) => return Err(sys(format!("mount {fstype} on {target}"))(e)),
        }
    }
    load_boot_modules();
    let device = wait_for_partition(name)?;
    log::info!("root: partition {name} is {}", device.display());
    let _ = std::fs::create_dir_all(SYSROOT);
    mount(Some(&device), SYSROOT, Some("erofs"), MsFlags::MS_RDONLY | MsFlags::MS_NODEV, None::<&str>)
        .map_err(sys(format!("mount {} (partition {name}) on {SYSROOT} as erofs, read-only", device.display())))?;
    free_initramfs();
    for target in ["/proc", "/sys", "/dev"] {
        let _ = umount2(target, MntFlags::MNT_DETACH);
    }
    std::env::set_current_dir(SYSROOT).map_err(|e| sys(format!("chdir {SYSROOT}"))(io_errno(e)))?;
    mount(Some("."), "/", None::<&str>, MsFlags::MS_MOVE, None::<&str>).map_err(sys("move the root partition onto /"))?;
    nix::unistd::chroot(".").map_err(sys("chroot"))?;
    std::env::set_current_dir("/").map_err(|e| sys("chdir /")(io_errno(e)))?;
    log::info!("root: {} (erofs, read-only) is the root now", device.display());
    Ok(())
}

fn io_errno(e: std::io::Error) -> nix::Error {
    nix::Error::from_raw(e.raw_os_error().unwrap_or(libc::EIO))
}

/// Load the initramfs's module list (disk drivers, erofs); failures are logged, since
/// the root may still appear (a driver may be built in).
fn load_boot_modules() {
    let listed = std::fs::read_to_string(modload::MODULE_LIST_PATH).map(|t| modload::parse_module_list(&t)).unwrap_or_default();
    let mut loader = match ModuleLoader::open(&modload::modules_dir()) {
        Ok(loader) => loader,
        Err(e) => return log::warn!("root: {e}"),
    };
    for module in &listed {
        if let Err(e) = loader.load(module) {
            log::warn!("root: {e}");
        }
    }
}

fn wait_for_partition(name: &str) -> Result<PathBuf, SysrootError> {
    let deadline = Instant::now() + ROOT_WAIT;
    loop {
        if let Some(device) = find_partname(Path::new(crate::storage::SYS_CLASS_BLOCK), Path::new(crate::storage::DEV_DIR), name) {
            if device.exists() {
                return Ok(device);
            }
        }
        if Instant::now() >= deadline {
            let mut seen: Vec<String> = std::fs::read_dir(crate::storage::SYS_CLASS_BLOCK)
                .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
                .unwrap_or_default();
            seen.sort();
            let seen = if seen.is_empty() { "none".to_string() } else { seen.join(", ") };
            return Err(SysrootError::NotFound { name: name.to_string(), seen });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Delete the initramfs's files (they are RAM) except the mount points in use.
fn free_initramfs() {
    let Ok(entries) = std::fs::read_dir("/") else { return };
    for entry in entries.filter_map(|e| e.ok()) {
        let path = entry.path();
        if ["/proc", "/sys", "/dev", SYSROOT].iter().any(|keep| path == Path::new(keep)) {
            continue;
        }
        let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
        let _ = if is_dir { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) };
    }
}

fn exec_keel() -> SysrootError {
    let error = crate::switch_root::exec_self();
    SysrootError::Sys { step: error.step, source: io_errno(error.source) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_root_option_is_read_from_the_command_line() {
        assert_eq!(root_option("console=ttyS0 keel.root=keel-root-a quiet").as_deref(), Some("keel-root-a"));
        assert_eq!(root_option("keel.root=a keel.root=b").as_deref(), Some("b"));
        assert_eq!(root_option("keel.root= quiet"), None);
        assert_eq!(root_option("root=/dev/vda2 keel.rootx=1"), None);
    }

    #[test]
    fn partition_names_come_from_uevents() {
        let text = "MAJOR=254\nMINOR=2\nDEVNAME=vda2\nDEVTYPE=partition\nDISKSEQ=9\nPARTN=2\nPARTNAME=keel-root-a\n";
        assert_eq!(uevent_partname(text), Some(("vda2".into(), "keel-root-a".into())));
        assert_eq!(uevent_partname("MAJOR=254\nDEVNAME=vda\nDEVTYPE=disk\n"), None);
    }

    #[test]
    fn the_named_partition_is_found() {
        let root = crate::scratch::TempDir::new("partname");
        for (name, uevent) in [
            ("vda", "DEVNAME=vda\nDEVTYPE=disk\n"),
            ("vda1", "DEVNAME=vda1\nPARTNAME=esp\n"),
            ("vda2", "DEVNAME=vda2\nPARTNAME=keel-root-a\n"),
            ("vda3", "DEVNAME=vda3\nPARTNAME=keel-root-b\n"),
        ] {
            std::fs::create_dir_all(root.0.join(name)).unwrap();
            std::fs::write(root.0.join(name).join("uevent"), uevent).unwrap();
        }
        let found = find_partname(&root.0, Path::new("/dev"), "keel-root-a");
        assert_eq!(found, Some(PathBuf::from("/dev/vda2")));
        assert_eq!(find_partname(&root.0, Path::new("/dev"), "keel-root"), None);
    }
}
