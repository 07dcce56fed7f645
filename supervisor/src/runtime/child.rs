//! The container side of a start: from the fresh namespaces to execve.
//!
//! Every step returns a message naming what failed; the first failure is written to
//! the error pipe and the child exits, so the parent reports "mount overlay on …: EINVAL"
//! rather than a bare exit code.
#![allow(unsafe_code)]

use super::inroot::{self, InRootError, Root};
use super::plan::LaunchPlan;
use super::reaper;
use super::rootfs::{self, StepResult};
use super::users::{self, Identity};
use crate::security;
use crate::spec::UserSpec;
use nix::sys::signal::{signal, sigprocmask, SigHandler, SigSet, SigmaskHow, Signal};
use nix::unistd::{Gid, Uid};
use rustix::fs::OFlags;
use std::ffi::CString;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::path::Path;

/// Standard streams the container gets (fd 0 is always /dev/null).
#[derive(Debug, Clone, Copy)]
pub struct Stdio {
    /// Target of the container's fd 1.
    pub stdout: RawFd,
    /// Target of the container's fd 2.
    pub stderr: RawFd,
}

/// Most bytes of a container's /etc/passwd keel reads.
pub const PASSWD_LIMIT: u64 = 1 << 20;

/// Run in the cloned child: drop every inherited descriptor, leave the caller's session,
/// wait for the parent, build the container, exec. Never returns, never unwinds: a
/// panic here would run the rest of a copy of the caller's stack (PID 1's loop).
pub fn run(plan: &LaunchPlan, go: OwnedFd, errors: OwnedFd, stdio: Stdio, hooks: &dyn super::spawn::StartHooks) -> ! {
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        close_inherited_fds(&[go.as_raw_fd(), errors.as_raw_fd(), stdio.stdout, stdio.stderr])?;
        leave_session()?;
        wait_for_parent(go)?;
        hooks.in_child().map_err(|e| e.to_string())?;
        setup_and_exec(plan, stdio)
    }))
    .unwrap_or_else(|_| Err("the container's setup panicked".into()));
    if let Err(message) = result {
        let mut pipe = std::fs::File::from(errors);
        let _ = pipe.write_all(message.as_bytes());
    }
    super::clone::exit_child(127)
}

/// Close every descriptor above stderr but `keep`, first thing after clone: a cloned
/// child holds copies of all of its caller's descriptors (PID 1's cgroup directories,
/// sockets, other containers' pipes), and any directory among them would lead out of
/// the container through `/proc/self/fd/N` (CVE-2024-21626). CLOEXEC alone is not
/// enough: the path work before execve would still see them.
pub fn close_inherited_fds(keep: &[RawFd]) -> StepResult {
    let mut keep: Vec<libc::c_uint> = keep.iter().filter(|fd| **fd > 2).map(|fd| *fd as libc::c_uint).collect();
    keep.sort_unstable();
    keep.dedup();
    let mut first: libc::c_uint = 3;
    for fd in keep.iter().copied().chain(std::iter::once(libc::c_uint::MAX)) {
        if fd > first {
            let last = if fd == libc::c_uint::MAX { fd } else { fd - 1 };
            // SAFETY: close_range only closes descriptors of this process. Those owned by
            // objects on the copied stack are never dropped: this process ends in `_exit`.
            if unsafe { libc::syscall(libc::SYS_close_range, first, last, 0) } < 0 {
                return Err(format!("close inherited descriptors: {}", std::io::Error::last_os_error()));
            }
        }
        first = fd.saturating_add(1);
    }
    Ok(())
}

/// A session of its own: the container gets no controlling terminal of its caller's
/// (TIOCSTI into the caller's shell, CVE-2017-5226) and is not in PID 1's process group
/// (`kill(0, SIGTERM)` must not reach the host's init).
pub(super) fn leave_session() -> StepResult {
    nix::unistd::setsid().map(drop).map_err(|e| format!("setsid: {e}"))
}

fn wait_for_parent(go: OwnedFd) -> StepResult {
    let mut byte = [0u8; 1];
    match std::fs::File::from(go).read(&mut byte) {
        Ok(1) => Ok(()),
        _ => Err("the parent gave up before the container started".into()),
    }
}

fn setup_and_exec(plan: &LaunchPlan, stdio: Stdio) -> StepResult {
    let merged = plan.root.merged.as_path();
    if plan.user_namespace.is_some() {
        become_namespace_root()?;
    }
    rootfs::make_mounts_private()?;
    rootfs::mount_root(plan)?;
    let root = Root::open(merged).map_err(|e| format!("open the container's root: {e}"))?;
    rootfs::apply_mounts(&root, &plan.mounts)?;
    rootfs::write_sysctls(&root, &plan.sysctls)?;
    if !plan.privileged {
        rootfs::mask_and_protect(&root)?;
    }
    nix::unistd::sethostname(&plan.hostname).map_err(|e| format!("sethostname {}: {e}", plan.hostname))?;
    let reaper = plan.init.then(reaper::sealed_copy_of_self).transpose().map_err(|e| e.to_string())?;
    let null = root.open_in(Path::new("/dev/null"), OFlags::RDWR).map_err(|e| format!("open /dev/null: {e}"))?;
    drop(root);
    rootfs::pivot_into(merged)?;
    // From here on "/" is the container's root and no host path is reachable.
    let root = Root::open(Path::new("/")).map_err(|e| format!("open the container's root: {e}"))?;
    let identity = resolve_identity(&root, plan)?;
    let program = find_program(&root, &plan.argv[0], &plan.env)?;
    redirect_stdio(null.as_raw_fd(), stdio)?;
    drop(null);
    enter_workdir(&root, &plan.workdir)?;
    drop(root);
    restrict_and_exec(plan, identity, &program, &plan.argv, None, reaper.as_ref())
}

/// The declared user as ids, from the container's /etc/passwd read in its root: a
/// regular file of at most [`PASSWD_LIMIT`] bytes, or none at all. A numeric user does
/// without a passwd file that cannot be read that way (a FIFO, a device, a huge file:
/// its gid is then its uid, as with no entry); a user name needs the file.
pub(super) fn resolve_identity(root: &Root, plan: &LaunchPlan) -> Result<Identity, String> {
    let passwd = match root.read_small_file(Path::new("/etc/passwd"), PASSWD_LIMIT) {
        Ok(passwd) => passwd.unwrap_or_default(),
        Err(e) if matches!(plan.user, UserSpec::Name(_)) => return Err(format!("user {:?}: {e}", plan.user)),
        Err(_) => Vec::new(),
    };
    users::resolve(&plan.user, &String::from_utf8_lossy(&passwd))
}

/// Enter the working directory, resolved in the root (no symlink or magic link leads
/// out; made when missing, as Docker does) and checked to be inside it.
pub(super) fn enter_workdir(root: &Root, workdir: &Path) -> StepResult {
    let dir = match root.open_in(workdir, OFlags::PATH | OFlags::DIRECTORY) {
        Ok(dir) => dir,
        Err(InRootError::Resolve { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            root.mkdir_all(workdir).map_err(|e| format!("workdir {e}"))?
        }
        Err(e) => return Err(format!("workdir {e}")),
    };
    inroot::enter_dir(dir.as_fd(), workdir).map_err(|e| format!("workdir {e}"))
}

/// In a new user namespace the process still has the host's ids, which are not mapped
/// there: files it would create (overlay's work directory, mount points) have no owner
/// the namespace can express (EOVERFLOW). Become the namespace's root (the mapped
/// host ids, which own the container's directories) before building the root. The
/// capabilities the namespace gave at creation are kept.
fn become_namespace_root() -> StepResult {
    let root_gid = Gid::from_raw(0);
    let root_uid = Uid::from_raw(0);
    nix::unistd::setresgid(root_gid, root_gid, root_gid).map_err(|e| format!("user namespace: setresgid 0: {e}"))?;
    nix::unistd::setresuid(root_uid, root_uid, root_uid).map_err(|e| format!("user namespace: setresuid 0: {e}"))
}

/// Exec `keel init -- PROGRAM ARGS…` from the sealed copy (execveat with AT_EMPTY_PATH).
fn exec_reaper(keel: &OwnedFd, program: &str, argv: &[String], env: &[String]) -> StepResult {
    let mut full = vec!["keel".to_string(), "init".to_string(), "--".to_string(), program.to_string()];
    full.extend(argv.iter().skip(1).cloned());
    let argv_c = c_strings(&full)?;
    let env_c = c_strings(env)?;
    let err = nix::unistd::execveat(keel, c"", &argv_c, &env_c, nix::fcntl::AtFlags::AT_EMPTY_PATH).err().unwrap_or(nix::Error::EINVAL);
    Err(format!("exec keel init (init = true): {err}"))
}

fn c_strings(items: &[String]) -> Result<Vec<CString>, String> {
    items.iter().map(|s| CString::new(s.as_str()).map_err(|_| format!("{s:?} contains a NUL byte"))).collect()
}

/// The last steps of every process keel starts in a container, its own and each command
/// entered into it ([`super::enter`]), kept in one place so both get the same
/// restrictions in the order the kernel needs: the uid change (keeping capabilities),
/// the parent-death signal if asked (after the uid change, which clears it), the
/// capability sets, no_new_privs, default signals, descriptors closed at exec, the
/// seccomp filter (neither no_new_privs nor seccomp for a privileged plan), then execve of `program` with `argv` and the plan's environment.
pub(super) fn restrict_and_exec(
    plan: &LaunchPlan,
    identity: Identity,
    program: &str,
    argv: &[String],
    parent_death: Option<Signal>,
    reaper: Option<&OwnedFd>,
) -> StepResult {
    become_user(identity)?;
    if let Some(signal) = parent_death {
        nix::sys::prctl::set_pdeathsig(signal).map_err(|e| format!("parent death signal: {e}"))?;
    }
    security::caps::apply_capabilities(plan.capabilities).map_err(|e| format!("capabilities: {e}"))?;
    // A privileged container is root on the host by declaration: setuid programs (sudo)
    // must work in it and nothing is filtered.
    if !plan.privileged {
        security::caps::set_no_new_privs().map_err(|e| format!("no_new_privs: {e}"))?;
    }
    reset_signals();
    mark_fds_cloexec()?;
    if !plan.privileged {
        security::seccomp::install_default_filter(plan.capabilities).map_err(|e| format!("seccomp: {e}"))?;
    }
    match reaper {
        Some(keel) => exec_reaper(keel, program, argv, &plan.env),
        None => exec(program, argv, &plan.env),
    }
}

/// Look `name` up in the container's PATH (from its environment), in `root`: the
/// first regular file with an execute bit. Returns the path as the container sees it.
pub(super) fn find_program(root: &Root, name: &str, env: &[String]) -> Result<String, String> {
    if name.contains('/') {
        return Ok(name.to_string());
    }
    let path = env.iter().find_map(|e| e.strip_prefix("PATH=")).unwrap_or(super::plan::DEFAULT_PATH);
    path.split(':')
        .map(|dir| format!("{}/{name}", dir.trim_end_matches('/')))
        .find(|candidate| root.is_executable(Path::new(candidate)))
        .ok_or_else(|| format!("exec {name}: not found in the image's PATH ({path})"))
}

/// Make fd 0 `null` and fds 1 and 2 the given streams.
pub(super) fn redirect_stdio(null: RawFd, stdio: Stdio) -> StepResult {
    for (from, to) in [(null, 0), (stdio.stdout, 1), (stdio.stderr, 2)] {
        if from != to {
            // SAFETY: dup2 on descriptors this process owns; it only replaces 0, 1 or 2.
            if unsafe { libc::dup2(from, to) } < 0 {
                return Err(format!("stdio: dup2 to {to}: {}", std::io::Error::last_os_error()));
            }
        }
    }
    Ok(())
}

fn become_user(identity: Identity) -> StepResult {
    let gid = Gid::from_raw(identity.gid);
    let uid = Uid::from_raw(identity.uid);
    if let Err(e) = nix::unistd::setgroups(&[]) {
        // In a user namespace with setgroups denied this is expected to fail.
        if e != nix::Error::EPERM {
            return Err(format!("setgroups: {e}"));
        }
    }
    nix::unistd::setresgid(gid, gid, gid).map_err(|e| format!("setresgid {}: {e}", identity.gid))?;
    security::caps::keep_caps_across_setuid().map_err(|e| format!("keepcaps: {e}"))?;
    nix::unistd::setresuid(uid, uid, uid).map_err(|e| format!("setresuid {}: {e}", identity.uid))
}

/// Default dispositions and an empty mask, as a freshly started program expects.
pub(super) fn reset_signals() {
    for signal_number in 1..32 {
        if let Ok(sig) = Signal::try_from(signal_number) {
            if sig != Signal::SIGKILL && sig != Signal::SIGSTOP {
                // SAFETY: setting the default disposition installs no handler code.
                let _ = unsafe { signal(sig, SigHandler::SigDfl) };
            }
        }
    }
    let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
}

/// Every descriptor above stderr closes at exec: nothing of the parent leaks in.
fn mark_fds_cloexec() -> StepResult {
    const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
    // SAFETY: close_range only changes flags of this process's descriptors.
    let ret = unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, CLOSE_RANGE_CLOEXEC) };
    if ret < 0 {
        return Err(format!("close_range: {}", std::io::Error::last_os_error()));
    }
    Ok(())
}

fn exec(program: &str, argv: &[String], env: &[String]) -> StepResult {
    let program_c = CString::new(program).map_err(|_| format!("{program:?} contains a NUL byte"))?;
    let err = nix::unistd::execve(&program_c, &c_strings(argv)?, &c_strings(env)?).err().unwrap_or(nix::Error::EINVAL);
    Err(format!("exec {program}: {err}"))
}
