//! Host tests: each check runs in a forked child (filters and capability drops are
//! irreversible), which reports a failure message over a pipe; the parent asserts.
//!
//! They need root on x86_64. Otherwise they print a SKIP line, or fail if
//! `KEEL_REQUIRE_ROOT_TESTS` is set, so a CI that expects them cannot skip silently.
//!
//! `unsafe` is allowed here for `fork` and for raw `syscall`s the filter must stop.
#![allow(unsafe_code)]

use std::io::{Read, Write};

use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, pipe, ForkResult, Gid, Uid};

use super::caps::{self, DOCKER_DEFAULT_CAPS};
use super::seccomp::{self, SeccompError, X32_SYSCALL_BIT};

type Check = Result<(), String>;

/// True when the privileged tests can run here; prints a visible SKIP otherwise.
fn privileged(test: &str) -> bool {
    if Uid::effective().is_root() && cfg!(target_arch = "x86_64") {
        return true;
    }
    assert!(std::env::var_os("KEEL_REQUIRE_ROOT_TESTS").is_none(), "{test}: needs root on x86_64 and KEEL_REQUIRE_ROOT_TESTS is set");
    eprintln!("SKIP {test}: needs root on x86_64");
    false
}

/// Runs `body` in a forked child and returns its verdict (message on failure).
fn in_child(body: impl FnOnce() -> Check) -> Check {
    let (read_end, write_end) = pipe().map_err(|e| format!("pipe: {e}"))?;
    // SAFETY: the child only runs `body` (syscalls, small allocations that glibc's
    // fork handlers keep usable), writes to its own pipe and leaves with `_exit`, never
    // returning into the test harness or running its atexit handlers.
    match unsafe { fork() }.map_err(|e| format!("fork: {e}"))? {
        ForkResult::Child => {
            drop(read_end);
            let code = match body() {
                Ok(()) => 0,
                Err(msg) => {
                    let _ = std::fs::File::from(write_end).write_all(msg.as_bytes());
                    1
                }
            };
            // SAFETY: `_exit` terminates the child immediately; nothing is borrowed.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => {
            drop(write_end);
            let mut msg = String::new();
            let _ = std::fs::File::from(read_end).read_to_string(&mut msg);
            match waitpid(child, None).map_err(|e| format!("waitpid: {e}"))? {
                WaitStatus::Exited(_, 0) => Ok(()),
                WaitStatus::Exited(_, code) => Err(format!("child exited {code}: {msg}")),
                other => Err(format!("child ended abnormally: {other:?} {msg}")),
            }
        }
    }
}

/// Raw `syscall(nr, args...)`: `Ok(return value)` or `Err(errno)`.
fn raw(nr: libc::c_long, args: [libc::c_long; 5]) -> Result<libc::c_long, i32> {
    let [a, b, c, d, e] = args;
    // SAFETY: every call site passes integer or NULL arguments only, chosen so that the
    // kernel rejects the call or it has no effect beyond this disposable child.
    let rc = unsafe { libc::syscall(nr, a, b, c, d, e) };
    if rc == -1 {
        Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
    } else {
        Ok(rc)
    }
}

/// Fails unless `res` is exactly `Err(errno)`.
fn expect_errno(what: &str, res: Result<libc::c_long, i32>, errno: i32) -> Check {
    match res {
        Err(e) if e == errno => Ok(()),
        other => Err(format!("{what}: expected errno {errno}, got {other:?}")),
    }
}

/// `keyctl(KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 0)`.
fn keyctl_probe() -> Result<libc::c_long, i32> {
    raw(libc::SYS_keyctl, [0, -3, 0, 0, 0])
}

/// `reboot(0, 0, 0, 0)`: bad magic, so without the filter the kernel answers `EINVAL`
/// (with `CAP_SYS_BOOT`) or `EPERM` (without). Never reboots.
fn reboot_probe() -> Result<libc::c_long, i32> {
    raw(libc::SYS_reboot, [0; 5])
}

/// `mount(NULL, NULL, NULL, 0, NULL)`: without the filter fails with `EFAULT`.
fn mount_probe() -> Result<libc::c_long, i32> {
    raw(libc::SYS_mount, [0; 5])
}

/// The checks that must hold once the default filter is installed.
fn filtered_checks() -> Check {
    expect_errno("keyctl", keyctl_probe(), libc::EPERM)?;
    expect_errno("reboot", reboot_probe(), libc::EPERM)?;
    expect_errno("mount", mount_probe(), libc::EPERM)?;
    let unshare = raw(libc::SYS_unshare, [libc::CLONE_NEWUSER as libc::c_long, 0, 0, 0, 0]);
    expect_errno("unshare(CLONE_NEWUSER)", unshare, libc::EPERM)?;
    let flags = (libc::CLONE_NEWUSER | libc::SIGCHLD) as libc::c_long;
    match raw(libc::SYS_clone, [flags, 0, 0, 0, 0]) {
        // SAFETY: we are the unexpected grandchild; leave at once.
        Ok(0) => unsafe { libc::_exit(0) },
        res => expect_errno("clone(CLONE_NEWUSER)", res, libc::EPERM)?,
    }
    expect_errno("clone3", raw(libc::SYS_clone3, [0; 5]), libc::ENOSYS)?;
    // io_uring_setup(1, NULL): EFAULT without the filter.
    expect_errno("io_uring_setup", raw(libc::SYS_io_uring_setup, [1, 0, 0, 0, 0]), libc::EPERM)?;
    // Past the policy: ENOSYS, as from a kernel without the call.
    expect_errno("syscall 1000", raw(1000, [0; 5]), libc::ENOSYS)?;
    // ADDR_NO_RANDOMIZE is not one of Docker's personalities; the query is.
    expect_errno("personality", raw(libc::SYS_personality, [0x0004_0000, 0, 0, 0, 0]), libc::EPERM)?;
    raw(libc::SYS_personality, [0xffff_ffff, 0, 0, 0, 0]).map_err(|e| format!("personality query: errno {e}"))?;
    let x32_getpid = libc::c_long::from(X32_SYSCALL_BIT) | libc::SYS_getpid;
    expect_errno("x32 getpid", raw(x32_getpid, [0; 5]), libc::EPERM)?;
    let pid = raw(libc::SYS_getpid, [0; 5]).map_err(|e| format!("getpid: errno {e}"))?;
    if pid != libc::c_long::from(std::process::id() as i32) {
        return Err(format!("getpid returned {pid}"));
    }
    // pthread_create tries clone3 first and must fall back to clone.
    std::thread::spawn(|| ()).join().map_err(|_| "thread panicked".to_owned())?;
    Ok(())
}

#[test]
fn security_filter_denies_listed_syscalls() {
    if !privileged("security_filter_denies_listed_syscalls") {
        return;
    }
    // As root without no_new_privs: CAP_SYS_ADMIN allows the install.
    in_child(|| {
        seccomp::install_default_filter(DOCKER_DEFAULT_CAPS).map_err(|e| e.to_string())?;
        filtered_checks()
    })
    .unwrap();
}

#[test]
fn security_negative_control_without_filter() {
    if !privileged("security_negative_control_without_filter") {
        return;
    }
    in_child(|| {
        if keyctl_probe() == Err(libc::EPERM) {
            return Err("keyctl already EPERM without a filter".into());
        }
        expect_errno("reboot", reboot_probe(), libc::EINVAL)?;
        expect_errno("mount", mount_probe(), libc::EFAULT)?;
        expect_errno("clone3", raw(libc::SYS_clone3, [0; 5]), libc::EINVAL)?;
        expect_errno("io_uring_setup", raw(libc::SYS_io_uring_setup, [1, 0, 0, 0, 0]), libc::EFAULT)?;
        if filtered_checks().is_ok() {
            return Err("filtered_checks passed without a filter".into());
        }
        Ok(())
    })
    .unwrap();
}

#[test]
fn security_install_needs_no_new_privs_without_sys_admin() {
    if !privileged("security_install_needs_no_new_privs_without_sys_admin") {
        return;
    }
    in_child(|| {
        caps::apply_capabilities(DOCKER_DEFAULT_CAPS).map_err(|e| e.to_string())?;
        match seccomp::install_default_filter(DOCKER_DEFAULT_CAPS) {
            Err(SeccompError::NotPermitted) => {}
            other => return Err(format!("expected NotPermitted, got {other:?}")),
        }
        caps::set_no_new_privs().map_err(|e| e.to_string())?;
        seccomp::install_default_filter(DOCKER_DEFAULT_CAPS).map_err(|e| e.to_string())?;
        let status = std::fs::read_to_string("/proc/self/status").map_err(|e| e.to_string())?;
        for line in ["NoNewPrivs:\t1", "Seccomp:\t2"] {
            if !status.lines().any(|l| l == line) {
                return Err(format!("/proc/self/status lacks {line:?}"));
            }
        }
        filtered_checks()
    })
    .unwrap();
}

/// Fails unless effective, permitted and bounding equal `mask` and the inheritable and
/// ambient sets are empty (CVE-2022-24769: nothing to inherit through file capabilities).
fn expect_caps(mask: u64) -> Check {
    let sets = caps::read_own_capabilities().map_err(|e| e.to_string())?;
    let want = caps::CapSets { effective: mask, permitted: mask, inheritable: 0, bounding: mask, ambient: 0 };
    if sets != want {
        return Err(format!("capabilities {sets:x?}, expected {want:x?}"));
    }
    Ok(())
}

#[test]
fn security_apply_capabilities_as_root() {
    if !privileged("security_apply_capabilities_as_root") {
        return;
    }
    in_child(|| {
        // Negative control: the host's full sets do not pass the check, and CAP_SYS_BOOT works.
        if expect_caps(DOCKER_DEFAULT_CAPS).is_ok() {
            return Err("caps already equal the mask before dropping".into());
        }
        expect_errno("reboot before drop", reboot_probe(), libc::EINVAL)?;
        caps::apply_capabilities(DOCKER_DEFAULT_CAPS).map_err(|e| e.to_string())?;
        expect_caps(DOCKER_DEFAULT_CAPS)?;
        expect_errno("reboot without CAP_SYS_BOOT", reboot_probe(), libc::EPERM)
    })
    .unwrap();
}

#[test]
fn security_apply_capabilities_after_setuid() {
    if !privileged("security_apply_capabilities_after_setuid") {
        return;
    }
    in_child(|| {
        let nobody = (Uid::from_raw(65534), Gid::from_raw(65534));
        caps::keep_caps_across_setuid().map_err(|e| e.to_string())?;
        nix::unistd::setresgid(nobody.1, nobody.1, nobody.1).map_err(|e| e.to_string())?;
        nix::unistd::setresuid(nobody.0, nobody.0, nobody.0).map_err(|e| e.to_string())?;
        let eff = caps::read_own_capabilities().map_err(|e| e.to_string())?.effective;
        if eff != 0 {
            return Err(format!("setresuid left effective {eff:#x}"));
        }
        caps::apply_capabilities(DOCKER_DEFAULT_CAPS).map_err(|e| e.to_string())?;
        expect_caps(DOCKER_DEFAULT_CAPS)
    })
    .unwrap();
}
