//! Running a command inside a running container, for `keelctl exec NAME -- CMD…` and
//! for healthchecks, with the same isolation and restrictions as the container's own
//! process.
//!
//! [`enter`] clones a *middle* process, straight into an exec leaf of the container's
//! cgroup when one is given (CLONE_INTO_CGROUP, so the command counts against the
//! container's limits, and a timeout kills the leaf whole: [`enter_with_output`] writes
//! its `cgroup.kill`, which reaches descendants that left the command's session). The
//! middle joins every namespace the container was created with in one `setns(2)` on a
//! pidfd (Linux ≥ 5.8), then forks the command: only children of a process that joined
//! a pid namespace are in it. The command takes the container process's last steps
//! ([`super::child::restrict_and_exec`]: user, capabilities, no_new_privs, signals,
//! descriptors, seccomp) and execs. The middle forwards signals to it, enforces the
//! deadline of [`enter_with_output`], reaps it and exits with its status, so the caller
//! deals with one pid. Failures before execve come back over a CLOEXEC pipe, as in
//! [`super::spawn`].
//!
//! Nothing here chroots: joining a mount namespace sets the caller's root and working
//! directory to that namespace's root, found by walking down the mounts stacked on the
//! namespace's first mount (`mntns_install` in fs/namespace.c), which is where the
//! container's `pivot_root` left its root filesystem. nsenter(1) relies on the same.
//!
//! [`enter_interactive`] gives the command a stdin (a pipe) or a terminal (the peer of a
//! pty opened in the container's own devpts, [`super::pty::open_in_container`]).
//!
//! Limitations: [`enter`]'s stdin is /dev/null; the command's user,
//! environment and working directory are the container's (from its plan); processes
//! the command leaves behind are reparented to the container's PID 1, which must reap
//! them; without a cgroup (no cgroup v2) the command stays in the caller's cgroup and a
//! timeout kills only its process group. The target pid must be a child the caller has not
//! reaped yet, so that the number cannot name another process.
#![allow(unsafe_code)]

use super::child::{self, Stdio};
use super::clone::{clone3, exit_child, Cloned};
use super::inroot::Root;
use super::plan::LaunchPlan;
use super::rootfs::StepResult;
use super::spawn::{read_report, Report, SpawnError, START_DEADLINE};
use crate::cgroup::ExecCgroup;
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sched::CloneFlags;
use nix::sys::signal::{kill, killpg, sigprocmask, SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;
use std::time::{Duration, Instant};

/// Bytes of stdout and of stderr [`enter_with_output`] keeps; the rest is read and
/// discarded, so a chatty command never blocks on a full pipe nor fills our memory.
pub const OUTPUT_LIMIT: usize = 1 << 20;

/// Exit code [`enter_with_output`] reports for a command that ran out of time (the one
/// coreutils `timeout` uses, so scripts and healthchecks read it the same way).
pub const TIMED_OUT: i32 = 124;

/// Exit code of the middle process when it lost track of the command (waitpid failed).
const LOST: i32 = 125;

/// Most bytes read at once from a captured pipe before polling again.
const READ_BUDGET: usize = 1 << 20;

/// Namespaces a command can join; the container's plan says which of them it has.
const JOINABLE: CloneFlags = CloneFlags::CLONE_NEWUSER
    .union(CloneFlags::CLONE_NEWNS)
    .union(CloneFlags::CLONE_NEWUTS)
    .union(CloneFlags::CLONE_NEWIPC)
    .union(CloneFlags::CLONE_NEWNET)
    .union(CloneFlags::CLONE_NEWCGROUP)
    .union(CloneFlags::CLONE_NEWPID);

/// Signals the middle process passes on to the command, so that `keelctl exec` can
/// interrupt or stop what it started through the one pid it knows.
const FORWARDED: [Signal; 6] = [Signal::SIGHUP, Signal::SIGINT, Signal::SIGQUIT, Signal::SIGTERM, Signal::SIGUSR1, Signal::SIGUSR2];

/// What is needed to enter a running container: which process holds its namespaces,
/// which cgroup the command joins, and the plan its own process was started with.
#[derive(Debug, Clone, Copy)]
pub struct EnterTarget<'a> {
    /// The container's PID 1 as the host sees it, not reaped yet by the caller.
    pub pid: Pid,
    /// The exec leaf the command runs in (made with
    /// [`ContainerCgroup::new_exec`](crate::cgroup::ContainerCgroup::new_exec)); None
    /// without cgroup v2.
    pub cgroup: Option<&'a ExecCgroup>,
    /// The container's plan: environment, user, working directory, capabilities and
    /// namespaces (a user namespace is joined only when the plan has one).
    pub plan: &'a LaunchPlan,
}

/// Start `argv` inside the container `target`, with fd 0 on /dev/null and fds 1 and 2
/// on `stdio`. Returns the pid of the middle process, which the caller reaps: it exits
/// with the command's exit code, or 128+signal if the command was killed. Signals
/// SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1 and SIGUSR2 sent to it reach the command.
/// The caller must be single-threaded (it is cloned).
pub fn enter(target: &EnterTarget<'_>, argv: &[String], stdio: Stdio) -> Result<Pid, SpawnError> {
    start(target, argv, stdio, Input::Null, None)
}

/// Where an interactive command's fd 0 comes from (`keelctl exec -i/-t`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    /// The host's /dev/null (what [`enter`] and healthchecks use).
    Null,
    /// This descriptor (a pipe's read end).
    Fd(RawFd),
    /// This terminal (the pty's peer, also fds 1 and 2), which becomes the command's
    /// controlling terminal in its new session.
    Terminal(RawFd),
}

/// Start `argv` inside the container `target` like [`enter`], with fd 0 from `input`
/// and, when given, killed at `deadline` by its middle process. With a terminal, pass its
/// descriptor as `stdio`'s stdout and stderr too.
pub fn enter_interactive(
    target: &EnterTarget<'_>,
    argv: &[String],
    stdio: Stdio,
    input: Input,
    deadline: Option<Instant>,
) -> Result<Pid, SpawnError> {
    start(target, argv, stdio, input, deadline)
}

/// Run `argv` inside the container `target` and wait for it: returns its exit code
/// (128+signal if killed, [`TIMED_OUT`] if it ran past `timeout`, after which everything
/// in its exec leaf is killed, or without one its process group) with the first
/// [`OUTPUT_LIMIT`] bytes of its stdout and
/// stderr. For healthchecks and `keelctl exec`, called from a forked helper, so it
/// blocks; output written after the command exited, by processes it left behind, is
/// not collected.
pub fn enter_with_output(target: &EnterTarget<'_>, argv: &[String], timeout: Duration) -> Result<(i32, Vec<u8>, Vec<u8>), SpawnError> {
    let name = &target.plan.name;
    let (out_read, out_write) = pipe(name)?;
    let (err_read, err_write) = pipe(name)?;
    let stdio = Stdio { stdout: out_write.as_raw_fd(), stderr: err_write.as_raw_fd() };
    // A timeout too large to represent is no timeout.
    let deadline = Instant::now().checked_add(timeout);
    let middle = start(target, argv, stdio, Input::Null, deadline)?;
    drop(out_write);
    drop(err_write);
    let kill_at = target.cgroup.zip(deadline);
    collect(middle, out_read, err_read, kill_at).map_err(|source| prepare_error(name, "collect the command's output", source))
}

fn prepare_error(name: &str, what: &str, source: io::Error) -> SpawnError {
    SpawnError::Prepare { name: name.to_string(), what: what.to_string(), source }
}

fn pipe(name: &str) -> Result<(OwnedFd, OwnedFd), SpawnError> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| prepare_error(name, "pipe", e.into()))
}

/// pidfd_open(2): a descriptor that names `pid` for good, even after it is reaped.
fn pidfd_open(pid: Pid) -> io::Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags (none) and returns a new descriptor or -1.
    let ret = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just created this descriptor for us; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(ret as RawFd) })
}

/// The namespaces the command joins: every one the container was created with.
fn namespaces_to_join(plan: &LaunchPlan) -> CloneFlags {
    plan.clone_flags & JOINABLE
}

/// The exit code that stands for `status`, None while the process has not ended.
fn exit_code(status: WaitStatus) -> Option<i32> {
    match status {
        WaitStatus::Exited(_, code) => Some(code),
        WaitStatus::Signaled(_, signal, _) => Some(128 + signal as i32),
        _ => None,
    }
}

/// Clone the middle process and learn whether the command reached execve.
fn start(target: &EnterTarget<'_>, argv: &[String], stdio: Stdio, input: Input, deadline: Option<Instant>) -> Result<Pid, SpawnError> {
    let name = &target.plan.name;
    if argv.is_empty() {
        return Err(prepare_error(name, "exec", io::Error::new(io::ErrorKind::InvalidInput, "no command given")));
    }
    let what = format!("find its process {} (is the container running?)", target.pid);
    let pidfd = pidfd_open(target.pid).map_err(|source| prepare_error(name, &what, source))?;
    let (err_read, err_write) = pipe(name)?;
    match clone3(CloneFlags::empty(), target.cgroup.map(ExecCgroup::fd))
        .map_err(|source| SpawnError::Clone { name: name.clone(), source })?
    {
        Cloned::Child => {
            drop(err_read);
            run_middle(target.plan, pidfd, argv, (stdio, input), err_write, deadline)
        }
        Cloned::Parent(middle) => {
            drop(pidfd);
            drop(err_write);
            let failed = match read_report(err_read, START_DEADLINE) {
                Report::Execed => return Ok(middle),
                Report::Failed(message) => SpawnError::Child { name: name.clone(), message },
                Report::TimedOut => {
                    // SIGKILL to the middle reaches the command as its parent-death signal.
                    let _ = kill(middle, Signal::SIGKILL);
                    SpawnError::TimedOut { name: name.clone(), after: START_DEADLINE }
                }
            };
            let _ = waitpid(middle, None);
            Err(failed)
        }
    }
}

/// The middle process: join the container, fork the command, wait for it. Never returns.
fn run_middle(plan: &LaunchPlan, pidfd: OwnedFd, argv: &[String], io: (Stdio, Input), errors: OwnedFd, deadline: Option<Instant>) -> ! {
    let (stdio, input) = io;
    // First the caller's descriptors go (PID 1's directories among them must never
    // reach the container's namespaces), and no panic may unwind into the copy of the
    // caller's stack.
    let input_fd = match input {
        Input::Null => stdio.stdout,
        Input::Fd(fd) | Input::Terminal(fd) => fd,
    };
    let keep = [pidfd.as_raw_fd(), errors.as_raw_fd(), stdio.stdout, stdio.stderr, input_fd];
    let started = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        child::close_inherited_fds(&keep)?;
        let (signals, null) = join_container(plan, pidfd)?;
        let command = fork_command(plan, argv, (stdio, input), &null, &errors)?;
        Ok((signals, command))
    }))
    .unwrap_or_else(|_| Err("entering the container panicked".to_string()));
    match started {
        Ok((signals, command)) => {
            drop(errors);
            close_all_but(signals.as_raw_fd());
            exit_child(supervise(&signals, command, deadline))
        }
        Err(message) => {
            let _ = nix::unistd::write(&errors, message.as_bytes());
            exit_child(127)
        }
    }
}

/// Make the middle process unreachable from the container (not dumpable, so its
/// descriptors cannot be taken through ptrace or /proc), take its signals, open the
/// host's /dev/null for the command's stdin (the container's /dev is its own to
/// replace), and join the container's namespaces. Returns the signalfd it then waits
/// on, and /dev/null.
fn join_container(plan: &LaunchPlan, pidfd: OwnedFd) -> Result<(SignalFd, std::fs::File), String> {
    nix::sys::prctl::set_dumpable(false).map_err(|e| format!("prctl(PR_SET_DUMPABLE): {e}"))?;
    child::reset_signals();
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGCHLD);
    FORWARDED.iter().for_each(|signal| mask.add(*signal));
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&mask), None).map_err(|e| format!("sigprocmask: {e}"))?;
    let signals = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK).map_err(|e| format!("signalfd: {e}"))?;
    let null = std::fs::File::open("/dev/null").map_err(|e| format!("open /dev/null: {e}"))?;
    let namespaces = namespaces_to_join(plan);
    nix::sched::setns(&pidfd, namespaces).map_err(|e| match e {
        Errno::ESRCH => "enter its namespaces: the container's process has exited".to_string(),
        e => format!("enter its namespaces ({namespaces:?}): {e}"),
    })?;
    Ok((signals, null))
}

/// Fork the command into the joined pid namespace; the child never returns from here.
fn fork_command(plan: &LaunchPlan, argv: &[String], io: (Stdio, Input), null: &std::fs::File, errors: &OwnedFd) -> Result<Pid, String> {
    match clone3(CloneFlags::empty(), None) {
        Ok(Cloned::Parent(command)) => Ok(command),
        Ok(Cloned::Child) => {
            if let Err(message) = prepare_and_exec(plan, argv, io, null) {
                let _ = nix::unistd::write(errors, message.as_bytes());
            }
            exit_child(127)
        }
        Err(Errno::ENOMEM) => Err("fork into the container: ENOMEM (is it stopping?)".into()),
        Err(e) => Err(format!("fork into the container: {e}")),
    }
}

/// In the command's process, inside the container: everything up to execve. The
/// container may have been compromised since it started: its /etc/passwd, PATH and
/// working directory are resolved in its root, never followed out of it, and a FIFO or
/// an endless file in their place is an error, not a wait.
fn prepare_and_exec(plan: &LaunchPlan, argv: &[String], io: (Stdio, Input), null: &std::fs::File) -> StepResult {
    let (stdio, input) = io;
    // Its own session: no controlling terminal of the caller's, and one process group
    // that a timeout kills as a whole.
    child::leave_session()?;
    // setns moved "/" to the container's root, so this is the container's.
    let root = Root::open(Path::new("/")).map_err(|e| format!("open the container's root: {e}"))?;
    let identity = child::resolve_identity(&root, plan)?;
    let program = child::find_program(&root, &argv[0], &plan.env)?;
    let stdin = match input {
        Input::Null => null.as_raw_fd(),
        Input::Fd(fd) | Input::Terminal(fd) => fd,
    };
    child::redirect_stdio(stdin, stdio)?;
    if let Input::Terminal(_) = input {
        // SAFETY: TIOCSCTTY on fd 0 (the pty's peer) with argument 0 only makes it the
        // controlling terminal of the session this process leads since leave_session.
        if unsafe { libc::ioctl(0, libc::TIOCSCTTY, 0) } < 0 {
            return Err(format!("TIOCSCTTY: {}", io::Error::last_os_error()));
        }
    }
    child::enter_workdir(&root, &plan.workdir)?;
    drop(root);
    // SIGKILL if the middle process dies: the command must not outlive whoever reaps it.
    child::restrict_and_exec(plan, identity, &program, argv, Some(Signal::SIGKILL), None)
}

/// Close every descriptor the middle inherited from the caller except `keep`: it may
/// live as long as the command, and must not hold the caller's pipes and sockets open.
fn close_all_but(keep: RawFd) {
    let keep = keep as libc::c_uint;
    for (first, last) in [(3, keep.saturating_sub(1)), (keep + 1, libc::c_uint::MAX)] {
        if first <= last {
            // SAFETY: close_range only closes descriptors of this process. The owned
            // ones among them belong to the caller's stack frames, which this process
            // never returns to: it ends in `_exit`, so none is closed twice.
            unsafe { libc::syscall(libc::SYS_close_range, first, last, 0) };
        }
    }
}

/// Wait for the command, forwarding signals and killing it at `deadline`; its exit code.
fn supervise(signals: &SignalFd, command: Pid, deadline: Option<Instant>) -> i32 {
    loop {
        match waitpid(command, Some(WaitPidFlag::WNOHANG)) {
            Ok(status) => {
                if let Some(code) = exit_code(status) {
                    return code;
                }
            }
            Err(Errno::EINTR) => {}
            Err(_) => return LOST,
        }
        let timeout = match deadline.map(|d| d.saturating_duration_since(Instant::now())) {
            None => PollTimeout::NONE,
            Some(left) if left.is_zero() => return stop(command),
            // Rounded up, so the wait never ends just before the deadline and spins.
            Some(left) => PollTimeout::try_from(left + Duration::from_micros(999)).unwrap_or(PollTimeout::MAX),
        };
        let _ = poll(&mut [PollFd::new(signals.as_fd(), PollFlags::POLLIN)], timeout);
        while let Ok(Some(info)) = signals.read_signal() {
            match Signal::try_from(info.ssi_signo as i32) {
                Ok(Signal::SIGCHLD) | Err(_) => {}
                Ok(signal) => {
                    let _ = kill(command, signal);
                }
            }
        }
    }
}

/// The deadline passed: kill the command's process group and the command itself (in
/// case it had not reached setsid yet), reap it, and report [`TIMED_OUT`] unless it
/// had ended by itself in the meantime. The middle runs in the container's mount
/// namespace and cannot reach the exec leaf; descendants that left the process group
/// are killed by the caller through the leaf ([`collect`]).
fn stop(command: Pid) -> i32 {
    let _ = killpg(command, Signal::SIGKILL);
    let _ = kill(command, Signal::SIGKILL);
    loop {
        match waitpid(command, None) {
            Ok(WaitStatus::Signaled(_, Signal::SIGKILL, _)) => return TIMED_OUT,
            Ok(status) => {
                if let Some(code) = exit_code(status) {
                    return code;
                }
            }
            Err(Errno::EINTR) => {}
            Err(_) => return LOST,
        }
    }
}

/// One captured stream: its read end and the bytes kept so far.
struct Capture {
    fd: OwnedFd,
    kept: Vec<u8>,
    open: bool,
}

impl Capture {
    fn new(fd: OwnedFd) -> io::Result<Capture> {
        let flags = nix::fcntl::OFlag::O_NONBLOCK | nix::fcntl::OFlag::O_CLOEXEC;
        nix::fcntl::fcntl(&fd, nix::fcntl::FcntlArg::F_SETFL(flags)).map_err(io::Error::from)?;
        Ok(Capture { fd, kept: Vec::new(), open: true })
    }

    /// Read what is there now (at most [`READ_BUDGET`] bytes, so an endless writer
    /// cannot keep us from polling), keeping up to [`OUTPUT_LIMIT`] bytes in all.
    fn drain(&mut self) {
        let mut buf = [0u8; 16384];
        let mut budget = READ_BUDGET;
        while self.open && budget > 0 {
            match nix::unistd::read(&self.fd, &mut buf) {
                Ok(0) => self.open = false,
                Ok(n) => {
                    budget = budget.saturating_sub(n);
                    let room = OUTPUT_LIMIT - self.kept.len();
                    self.kept.extend_from_slice(&buf[..n.min(room)]);
                }
                Err(Errno::EINTR) => {}
                Err(Errno::EAGAIN) => return,
                Err(_) => self.open = false,
            }
        }
    }
}

/// Read the command's output until the middle process exits, then reap it. With
/// `kill_at`, the exec leaf is killed whole (the middle, the command and every
/// descendant) once the deadline passes, and again after the middle is reaped if it
/// ended by its own deadline.
fn collect(middle: Pid, stdout: OwnedFd, stderr: OwnedFd, kill_at: Option<(&ExecCgroup, Instant)>) -> io::Result<(i32, Vec<u8>, Vec<u8>)> {
    let watched = pidfd_open(middle).and_then(|exited| Ok((exited, [Capture::new(stdout)?, Capture::new(stderr)?])));
    let (exited, mut streams) = match watched {
        Ok(watched) => watched,
        Err(e) => {
            // SIGKILL to the middle reaches the command as its parent-death signal.
            let _ = kill(middle, Signal::SIGKILL);
            let _ = waitpid(middle, None);
            return Err(e);
        }
    };
    let mut killed = pump(&exited, &mut streams, kill_at);
    let code = loop {
        match waitpid(middle, None) {
            Err(Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
            Ok(status) => {
                if let Some(code) = exit_code(status) {
                    break code;
                }
            }
        }
    };
    if let Some((cgroup, deadline)) = kill_at {
        if !killed && code == TIMED_OUT && Instant::now() >= deadline {
            kill_leaf(cgroup);
            killed = true;
        }
    }
    let code = if killed { TIMED_OUT } else { code };
    let [stdout, stderr] = streams;
    Ok((code, stdout.kept, stderr.kept))
}

/// SIGKILL everything in the exec leaf (cgroup.kill, or signals pid by pid).
fn kill_leaf(cgroup: &ExecCgroup) {
    if let Err(e) = cgroup.kill() {
        log::warn!("exec timeout: {e}");
    }
}

/// Keep both pipes drained until `exited` (the middle's pidfd) is readable, then take
/// what the command wrote before it ended. Kills the exec leaf of `kill_at` when its
/// deadline passes first; returns whether it did.
fn pump(exited: &OwnedFd, streams: &mut [Capture; 2], kill_at: Option<(&ExecCgroup, Instant)>) -> bool {
    let mut killed = false;
    loop {
        let timeout = match kill_at {
            Some(_) if killed => PollTimeout::NONE,
            Some((cgroup, deadline)) => match deadline.checked_duration_since(Instant::now()) {
                Some(left) if !left.is_zero() => PollTimeout::try_from(left + Duration::from_micros(999)).unwrap_or(PollTimeout::MAX),
                _ => {
                    kill_leaf(cgroup);
                    killed = true;
                    PollTimeout::NONE
                }
            },
            None => PollTimeout::NONE,
        };
        let done = {
            let mut fds: Vec<PollFd> = streams.iter().filter(|s| s.open).map(|s| PollFd::new(s.fd.as_fd(), PollFlags::POLLIN)).collect();
            fds.push(PollFd::new(exited.as_fd(), PollFlags::POLLIN));
            match poll(&mut fds, timeout) {
                Ok(_) => fds.last().and_then(PollFd::revents).is_some_and(|r| !r.is_empty()),
                Err(Errno::EINTR) => false,
                // Cannot wait any more: the middle's own deadline ends it, waitpid follows.
                Err(_) => true,
            }
        };
        streams.iter_mut().for_each(Capture::drain);
        if done {
            return killed;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::parse;

    fn plan(extra: &str) -> LaunchPlan {
        let spec = parse("web", &format!("image = \"/img\"\ncommand = \"/bin/app\"\n{extra}"), "web.toml").unwrap();
        super::super::plan(&spec, Path::new("/s"), false)
    }

    #[test]
    fn joins_the_namespaces_the_container_has() {
        let joined = namespaces_to_join(&plan(""));
        assert!(joined.contains(CloneFlags::CLONE_NEWPID | CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWNET));
        assert!(!joined.contains(CloneFlags::CLONE_NEWUSER));
        let joined = namespaces_to_join(&plan("network = \"host\"\n[user_namespace]\nuid_map = \"0:100000:65536\"\n"));
        assert!(joined.contains(CloneFlags::CLONE_NEWUSER));
        assert!(!joined.contains(CloneFlags::CLONE_NEWNET), "host network: the command stays in the host's, like the container");
    }

    #[test]
    fn exit_codes_follow_the_shell_convention() {
        let pid = Pid::from_raw(1);
        assert_eq!(exit_code(WaitStatus::Exited(pid, 7)), Some(7));
        assert_eq!(exit_code(WaitStatus::Signaled(pid, Signal::SIGKILL, false)), Some(137));
        assert_eq!(exit_code(WaitStatus::StillAlive), None);
    }
}
