//! Leaving the kernel's initial root mount ("rootfs") without copying it.
//!
//! pivot_root(2) fails with EINVAL while the caller's root is rootfs, the one mount
//! that has no parent, and containers need pivot_root. All it takes is a root mount
//! that has a parent, so PID 1 binds rootfs's own tree onto itself instead of copying
//! the initramfs (16 MB, 0.2–0.3 s under TCG) into a tmpfs and executing itself again:
//!
//! ```text
//! rootfs (the initramfs files)      the kernel's; left where it is
//!  └─ empty tmpfs, read-only         moved onto rootfs's "/"
//!      └─ bind of rootfs's "/"       moved onto the tmpfs: PID 1's root from then on
//! ```
//!
//! The empty tmpfs keeps what the copy gave: a container's mount namespace is a copy of
//! the host's, whose own root a process reaches with setns(2) once the mounts above it
//! are detached. With the copy that was the emptied rootfs; now it is this empty,
//! read-only tmpfs (a copied mount, locked in a user namespace), never the host's files.
//! Containers still pivot_root into their own root and detach the host's.

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use std::ffi::CString;
use std::path::Path;

/// Set in the environment of a PID 1 executed again on a new root (the disk root, see
/// [`crate::sysroot`]), so it knows the switch is done.
pub const SWITCHED_ENV: &str = "KEEL_ROOT_SWITCHED";

/// Where rootfs's tree is bound before it becomes `/` (a directory of rootfs, removed after).
const BOUND: &str = "/.keel-root";
/// Where the empty tmpfs is mounted before it is moved under the bound tree (likewise).
const BASE: &str = "/.keel-base";

/// Why the switch failed (the boot continues on rootfs, where containers cannot pivot_root).
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

fn nix_fail(step: impl Into<String>) -> impl FnOnce(nix::Error) -> SwitchError {
    let step = step.into();
    move |e| SwitchError { step, source: nix_io(e) }
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

/// Make a bind of rootfs's tree, stacked on an empty read-only tmpfs, this process's
/// root (see the module documentation). On failure the root is left as it was, or
/// rootfs with nothing visible changed; the boot goes on either way.
pub fn switch_to_bound_root() -> Result<(), SwitchError> {
    let result = stack_and_enter();
    if result.is_err() {
        // Whatever of the stack is still reachable from rootfs (nothing, once moved).
        let _ = umount2(BOUND, MntFlags::MNT_DETACH);
        let _ = umount2(BASE, MntFlags::MNT_DETACH);
        let _ = std::env::set_current_dir("/");
    }
    // Only directories of rootfs now (no longer mount points), in the new root's view.
    let _ = std::fs::remove_dir(BOUND);
    let _ = std::fs::remove_dir(BASE);
    result
}

fn stack_and_enter() -> Result<(), SwitchError> {
    // The tree first: "/" is this process's root, rootfs's own root directory, with no
    // mount on it yet. A plain (non-recursive) bind carries no other mount.
    make_dir(BOUND)?;
    mount(Some("/"), BOUND, None::<&str>, MsFlags::MS_BIND, None::<&str>).map_err(nix_fail(format!("bind / on {BOUND}")))?;
    let bound = std::fs::File::open(BOUND).map_err(fail(format!("open {BOUND}")))?;
    // The empty base, moved onto rootfs's "/" (it stays the topmost mount there).
    make_dir(BASE)?;
    let base_flags = MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    mount(Some("tmpfs"), BASE, Some("tmpfs"), base_flags, Some("mode=0755"))
        .map_err(nix_fail(format!("mount an empty tmpfs on {BASE}")))?;
    std::env::set_current_dir(BASE).map_err(fail(format!("chdir {BASE}")))?;
    mount(Some("."), "/", None::<&str>, MsFlags::MS_MOVE, None::<&str>).map_err(nix_fail("move the empty tmpfs onto /"))?;
    // The bound tree onto the base, then into it. Moving onto "/" lands on the topmost
    // mount there, the base.
    nix::unistd::fchdir(&bound).map_err(nix_fail(format!("fchdir {BOUND}")))?;
    mount(Some("."), "/", None::<&str>, MsFlags::MS_MOVE, None::<&str>).map_err(nix_fail("move the bound root onto /"))?;
    nix::unistd::chroot(".").map_err(nix_fail("chroot"))?;
    std::env::set_current_dir("/").map_err(fail("chdir /"))
}

fn make_dir(path: &str) -> Result<(), SwitchError> {
    match std::fs::create_dir(Path::new(path)) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => Err(fail(format!("create {path}"))(e)),
        _ => Ok(()),
    }
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
