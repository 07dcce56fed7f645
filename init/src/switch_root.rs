//! Leaving the initramfs: copy the root into a tmpfs and make that the root.
//!
//! The kernel's initramfs root ("rootfs") can never be unmounted or pivoted away from:
//! pivot_root(2) fails on it with EINVAL, and containers need pivot_root. So, before
//! anything else, PID 1 copies the initramfs tree into a fresh tmpfs, frees the old
//! files, moves the tmpfs onto `/`, chroots into it and executes itself again.

use nix::mount::{mount, MsFlags};
use nix::sys::stat::{mknod, Mode, SFlag};
use std::ffi::CString;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

/// Set in the environment of the re-executed PID 1, so it knows the switch is done.
pub const SWITCHED_ENV: &str = "KEEL_ROOT_SWITCHED";

/// Where the new root is assembled before it is moved onto `/`.
const NEW_ROOT: &str = "/.keel-newroot";

/// Why the switch failed (the boot continues on the initramfs root).
#[derive(Debug, thiserror::Error)]
#[error("switch root: {step}: {source}")]
pub struct SwitchError {
    /// What was being done.
    pub step: String,
    /// The cause.
    pub source: std::io::Error,
}

fn fail(step: impl Into<String>) -> impl FnOnce(std::io::Error) -> SwitchError {
    let step = step.into();
    move |source| SwitchError { step, source }
}

fn nix_io(e: nix::Error) -> std::io::Error {
    std::io::Error::from_raw_os_error(e as i32)
}

/// Whether this PID 1 still runs on the kernel's initramfs root.
pub fn on_initramfs() -> bool {
    if std::env::var_os(SWITCHED_ENV).is_some() {
        return false;
    }
    const RAMFS_MAGIC: i64 = 0x8584_58f6;
    const TMPFS_MAGIC: i64 = 0x0102_1994;
    match nix::sys::statfs::statfs("/") {
        Ok(stat) => {
            let kind = stat.filesystem_type().0;
            kind == RAMFS_MAGIC || kind == TMPFS_MAGIC
        }
        Err(_) => false,
    }
}

/// Copy the root into a tmpfs, move it onto `/` and exec `/usr/bin/keel` there.
/// Returns only on failure.
pub fn switch_to_tmpfs() -> SwitchError {
    match prepare() {
        Ok(()) => exec_self(),
        Err(e) => e,
    }
}

fn prepare() -> Result<(), SwitchError> {
    fs::create_dir_all(NEW_ROOT).map_err(fail(format!("create {NEW_ROOT}")))?;
    mount(Some("tmpfs"), NEW_ROOT, Some("tmpfs"), MsFlags::empty(), Some("mode=0755"))
        .map_err(|e| fail(format!("mount tmpfs on {NEW_ROOT}"))(nix_io(e)))?;
    for entry in fs::read_dir("/").map_err(fail("read /"))? {
        let entry = entry.map_err(fail("read /"))?;
        if entry.path() == Path::new(NEW_ROOT) {
            continue;
        }
        copy_tree(&entry.path(), &Path::new(NEW_ROOT).join(entry.file_name()))?;
        remove_tree(&entry.path());
    }
    std::env::set_current_dir(NEW_ROOT).map_err(fail(format!("chdir {NEW_ROOT}")))?;
    mount(Some("."), "/", None::<&str>, MsFlags::MS_MOVE, None::<&str>).map_err(|e| fail("move the new root onto /")(nix_io(e)))?;
    nix::unistd::chroot(".").map_err(|e| fail("chroot")(nix_io(e)))?;
    std::env::set_current_dir("/").map_err(fail("chdir /"))
}

/// Copy one file, symlink, device or directory tree, keeping modes.
fn copy_tree(from: &Path, to: &Path) -> Result<(), SwitchError> {
    let meta = fs::symlink_metadata(from).map_err(fail(format!("stat {}", from.display())))?;
    let kind = meta.file_type();
    let what = || format!("copy {}", from.display());
    if kind.is_dir() {
        fs::create_dir(to).map_err(fail(what()))?;
        for entry in fs::read_dir(from).map_err(fail(what()))? {
            let entry = entry.map_err(fail(what()))?;
            copy_tree(&entry.path(), &to.join(entry.file_name()))?;
        }
    } else if kind.is_symlink() {
        let target = fs::read_link(from).map_err(fail(what()))?;
        std::os::unix::fs::symlink(target, to).map_err(fail(what()))?;
        return Ok(());
    } else if kind.is_char_device() || kind.is_block_device() {
        let sflag = if kind.is_char_device() { SFlag::S_IFCHR } else { SFlag::S_IFBLK };
        mknod(to, sflag, Mode::from_bits_truncate(meta.mode()), meta.rdev()).map_err(|e| fail(what())(nix_io(e)))?;
    } else if kind.is_file() {
        fs::copy(from, to).map_err(fail(what()))?;
    } else {
        return Ok(()); // sockets and fifos do not survive a copy; the initramfs has none
    }
    fs::set_permissions(to, fs::Permissions::from_mode(meta.mode() & 0o7777)).map_err(fail(what()))
}

/// Free the initramfs copy of an entry; what cannot be removed only costs memory.
fn remove_tree(path: &Path) {
    let is_dir = fs::symlink_metadata(path).map(|m| m.is_dir()).unwrap_or(false);
    let _ = if is_dir { fs::remove_dir_all(path) } else { fs::remove_file(path) };
}

/// Execute /usr/bin/keel of the current root, marked as switched. Returns only on failure.
pub(crate) fn exec_self() -> SwitchError {
    let program = CString::new("/usr/bin/keel").unwrap_or_default();
    let args: Vec<CString> = std::env::args_os().filter_map(|a| CString::new(a.into_encoded_bytes()).ok()).collect();
    let mut env: Vec<CString> =
        std::env::vars_os().filter_map(|(k, v)| CString::new(format!("{}={}", k.to_string_lossy(), v.to_string_lossy())).ok()).collect();
    env.extend(CString::new(format!("{SWITCHED_ENV}=1")));
    let err = nix::unistd::execve(&program, &args, &env).err().unwrap_or(nix::Error::EINVAL);
    fail("exec /usr/bin/keel in the new root")(nix_io(err))
}
