//! `keel init [--] CMD [ARGS...]`: a tiny init for containers, the job tini does for
//! `docker run --init`.
//!
//! A container's first process is PID 1 of its pid namespace. The kernel gives that
//! process two duties most programs do not fulfil: it inherits every orphan in the
//! namespace and must reap it, and signals it has no handler for are dropped. A
//! declaration with `init = true` therefore runs `keel init -- CMD...` as PID 1: it
//! starts CMD, forwards the signals it receives to CMD, reaps every child that ends,
//! and exits with CMD's exit code (128+signal when CMD was killed by a signal).
//!
//! It also works as an ordinary process: it then makes itself a child subreaper, so
//! the orphans of its subtree come to it rather than to the host's init.
//!
//! How it runs: every catchable signal except the synchronous fault signals is
//! blocked and read from a blocking signalfd; one thread, no timers, no polling.
//! CMD is started in its own process group and, when keel init owns the terminal's
//! foreground, is given the terminal, so Ctrl-C reaches CMD once, straight from the
//! tty, as under tini.
//!
//! Limitations:
//! - When CMD has ended, keel init reaps the children that are already dead and
//!   exits; it does not wait for orphans that are still running (tini does not either).
//!   As PID 1 of a pid namespace its exit makes the kernel SIGKILL them; as a subreaper
//!   they are handed to the next subreaper or the host's init.
//! - Signals are sent to CMD's pid only, not to its process group (tini's `-g`).
//! - The exit code of keel init's own failures (signal setup) is 125, as for `keel run`.

#![deny(unsafe_code)]

use crate::reaper::{self, Reaped};
use nix::errno::Errno;
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::waitpid;
use nix::unistd::{getpgrp, tcgetpgrp, tcsetpgrp, Pid};
use std::io;
use std::os::unix::process::CommandExt;
use std::process::Command;

/// The usage line, printed on a usage error and for `--help`.
pub const USAGE: &str = "usage: keel init [--] CMD [ARGS...]";

/// The exit code of keel init's own failures, kept apart from CMD's codes.
pub const SETUP_FAILED: i32 = 125;

/// Signals left unblocked: the kernel raises them synchronously on a fault in keel
/// init itself, and a blocked fault signal would kill it without a core or a message.
pub const NOT_BLOCKED: [Signal; 7] =
    [Signal::SIGFPE, Signal::SIGILL, Signal::SIGSEGV, Signal::SIGBUS, Signal::SIGABRT, Signal::SIGTRAP, Signal::SIGSYS];

/// What the command line asks keel init to do.
#[derive(Debug, PartialEq, Eq)]
pub enum Invocation<'a> {
    /// Run this command (program and its arguments) under keel init.
    Run(&'a [String]),
    /// Print the usage and exit 0.
    Help,
}

/// Why the command line was refused; main prints it with the usage and exits 2.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum UsageError {
    /// Nothing to run.
    #[error("no command given")]
    NoCommand,
    /// An option keel init does not have (use `--` before a command starting with `-`).
    #[error("unknown option {0:?} (put -- before a command that starts with -)")]
    UnknownOption(String),
}

/// keel init's own setup failed before CMD was started.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// sigprocmask refused the signal mask.
    #[error("block signals (sigprocmask): {0}")]
    Mask(Errno),
    /// The signalfd could not be created.
    #[error("create signalfd: {0}")]
    SignalFd(Errno),
}

/// Parse the arguments after `init`.
pub fn parse_args(args: &[String]) -> Result<Invocation<'_>, UsageError> {
    let command = match args.first().map(String::as_str) {
        Some("--") => &args[1..],
        Some("-h" | "--help") => return Ok(Invocation::Help),
        Some(option) if option.starts_with('-') => return Err(UsageError::UnknownOption(option.to_string())),
        _ => args,
    };
    if command.is_empty() {
        return Err(UsageError::NoCommand);
    }
    Ok(Invocation::Run(command))
}

/// The signals keel init blocks and reads from its signalfd: all but `NOT_BLOCKED`
/// (SIGKILL and SIGSTOP cannot be blocked; the kernel ignores them in a mask).
pub fn blocked_signals() -> SigSet {
    let mut set = SigSet::all();
    NOT_BLOCKED.iter().for_each(|s| set.remove(*s));
    set
}

/// Whether keel init passes signal number `signo` on to CMD: every signal it blocks,
/// real-time ones included, except SIGCHLD, which is keel init's own business.
pub fn forwards(signo: i32) -> bool {
    let unforwardable = [Signal::SIGCHLD, Signal::SIGKILL, Signal::SIGSTOP];
    let never = |s: &Signal| *s as i32 == signo;
    (1..=libc::SIGRTMAX()).contains(&signo) && !unforwardable.iter().any(never) && !NOT_BLOCKED.iter().any(never)
}

/// The exit code when CMD cannot be executed, as shells do: 126 when it exists but
/// may not or cannot be executed, 127 otherwise (not found).
pub fn exec_failure_code(error: &io::Error) -> i32 {
    let cannot_execute = [Errno::EACCES, Errno::EPERM, Errno::ENOEXEC, Errno::EISDIR, Errno::ETXTBSY, Errno::E2BIG];
    match error.raw_os_error() {
        Some(errno) if cannot_execute.iter().any(|e| *e as i32 == errno) => 126,
        _ => 127,
    }
}

/// CMD's exit code if CMD (`child`) is among the reaped processes.
pub fn child_code(reaped: &[Reaped], child: Pid) -> Option<i32> {
    reaped.iter().find(|r| r.pid == child).map(|r| r.code)
}

/// Run `keel init` with its arguments (after `init`); returns the exit code.
pub fn main(args: &[String]) -> i32 {
    match parse_args(args) {
        Ok(Invocation::Run(command)) => run(command),
        Ok(Invocation::Help) => {
            println!("{USAGE}");
            0
        }
        Err(error) => {
            eprintln!("keel init: {error}\n{USAGE}");
            2
        }
    }
}

fn run(command: &[String]) -> i32 {
    // Not dumpable: as a container's PID 1 the reaper runs from keel's binary, and a
    // dumpable PID 1 would let the container's root reach that binary and its
    // descriptors through /proc/1/{exe,fd,mem} (CVE-2019-5736 class). The flag is reset
    // at the command's execve, so the command itself is unaffected.
    if let Err(error) = nix::sys::prctl::set_dumpable(false) {
        eprintln!("keel init: PR_SET_DUMPABLE: {error}");
        return SETUP_FAILED;
    }
    let signals = match setup() {
        Ok(signals) => signals,
        Err(error) => {
            eprintln!("keel init: {error}");
            return SETUP_FAILED;
        }
    };
    let terminal = foreground_terminal();
    let child = match spawn(command, terminal) {
        Ok(child) => child,
        Err(error) => {
            eprintln!("keel init: exec {}: {error}", command[0]);
            return exec_failure_code(&error);
        }
    };
    let code = supervise(child, &signals);
    if terminal {
        // SIGTTOU is blocked, so a background process may take the terminal back.
        let _ = tcsetpgrp(io::stdin(), getpgrp());
    }
    code
}

/// Block the signals, open the signalfd, and become a subreaper unless PID 1 already.
fn setup() -> Result<SignalFd, SetupError> {
    let mask = blocked_signals();
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&mask), None).map_err(SetupError::Mask)?;
    let signals = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC).map_err(SetupError::SignalFd)?;
    if std::process::id() != 1 {
        if let Err(error) = nix::sys::prctl::set_child_subreaper(true) {
            eprintln!("keel init: PR_SET_CHILD_SUBREAPER: {error}; orphans will go to the host's init");
        }
    }
    Ok(signals)
}

/// True when stdin is a terminal whose foreground process group is keel init's:
/// only then is it keel init's to hand to CMD.
fn foreground_terminal() -> bool {
    tcgetpgrp(io::stdin()) == Ok(getpgrp())
}

/// Start CMD (PATH lookup) in its own process group, with an empty signal mask (std's
/// Command keeps the parent's mask, which blocks nearly everything here) and, when
/// `terminal`, the terminal's foreground. Exec failures come back as the error.
#[allow(unsafe_code)]
fn spawn(command: &[String], terminal: bool) -> io::Result<Pid> {
    let mut cmd = Command::new(&command[0]);
    cmd.args(&command[1..]).process_group(0);
    let stdin = io::stdin();
    // SAFETY: the closure runs in the forked child before exec. keel init has a single
    // thread, and the closure makes only system calls through nix (no allocation, no
    // lock). SIGTTOU is still blocked there (the inherited mask), so the child, now in a
    // background group, may set the terminal's foreground without being stopped.
    unsafe {
        cmd.pre_exec(move || {
            if terminal {
                let _ = tcsetpgrp(&stdin, getpgrp());
            }
            SigSet::empty().thread_set_mask().map_err(io::Error::from)
        });
    }
    let child = cmd.spawn()?;
    Ok(Pid::from_raw(child.id() as i32))
}

/// The loop: reap whatever has ended, return CMD's code once CMD is among it,
/// otherwise wait (blocking) for the next signal and forward it.
fn supervise(child: Pid, signals: &SignalFd) -> i32 {
    loop {
        // reap_all drains waitpid(-1, WNOHANG) until nothing dead is left, so when
        // CMD's status is in this pass, every already-dead orphan has been reaped too.
        let pass = reaper::reap_all();
        if let Some(code) = child_code(&pass.reaped, child) {
            return code;
        }
        if pass.none_left {
            eprintln!("keel init: pid {child} is gone but was never reaped");
            return SETUP_FAILED;
        }
        match signals.read_signal() {
            Ok(Some(info)) if forwards(info.ssi_signo as i32) => forward(child, info.ssi_signo as i32),
            Ok(_) | Err(Errno::EINTR) => {}
            Err(error) => {
                eprintln!("keel init: read signalfd: {error}; signals are no longer forwarded");
                return wait_without_signals(child);
            }
        }
    }
}

/// Send signal number `signo` to CMD. A raw number, because nix's `Signal` has no
/// real-time signals. An error (CMD already gone) needs no action: its SIGCHLD follows.
#[allow(unsafe_code)]
fn forward(child: Pid, signo: i32) {
    // SAFETY: kill(2) takes two integers and touches no memory of this process.
    let _ = unsafe { libc::kill(child.as_raw(), signo) };
}

/// Fallback when the signalfd fails: keep reaping with a blocking wait until CMD ends.
fn wait_without_signals(child: Pid) -> i32 {
    loop {
        match waitpid(None::<Pid>, None) {
            Ok(status) => match reaper::exit_code(status) {
                Some((pid, code)) if pid == child => return code,
                _ => {}
            },
            Err(Errno::EINTR) => {}
            Err(error) => {
                eprintln!("keel init: waitpid: {error}");
                return SETUP_FAILED;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(args: &[&str]) -> Vec<String> {
        args.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn command_after_double_dash_or_bare() {
        let args = strings(&["--", "sh", "-c", "exit 3"]);
        assert_eq!(parse_args(&args), Ok(Invocation::Run(&args[1..])));
        let args = strings(&["sleep", "1"]);
        assert_eq!(parse_args(&args), Ok(Invocation::Run(&args[..])));
        let args = strings(&["--", "-weird", "--"]);
        assert_eq!(parse_args(&args), Ok(Invocation::Run(&args[1..])));
    }

    #[test]
    fn no_command_or_unknown_option_is_a_usage_error() {
        assert_eq!(parse_args(&[]), Err(UsageError::NoCommand));
        assert_eq!(parse_args(&strings(&["--"])), Err(UsageError::NoCommand));
        assert_eq!(parse_args(&strings(&["-g", "sh"])), Err(UsageError::UnknownOption("-g".into())));
        assert_eq!(parse_args(&strings(&["--help"])), Ok(Invocation::Help));
    }

    #[test]
    fn forwards_everything_but_sigchld_and_faults() {
        for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP, Signal::SIGQUIT, Signal::SIGUSR1, Signal::SIGUSR2] {
            assert!(forwards(s as i32), "{s}");
        }
        for s in [Signal::SIGWINCH, Signal::SIGCONT, Signal::SIGALRM, Signal::SIGTSTP, Signal::SIGTTIN, Signal::SIGTTOU] {
            assert!(forwards(s as i32), "{s}");
        }
        assert!(forwards(libc::SIGRTMIN()) && forwards(libc::SIGRTMAX()));
        for s in [Signal::SIGCHLD, Signal::SIGKILL, Signal::SIGSTOP, Signal::SIGSEGV, Signal::SIGBUS, Signal::SIGFPE] {
            assert!(!forwards(s as i32), "{s}");
        }
        assert!(!forwards(0) && !forwards(libc::SIGRTMAX() + 1));
    }

    #[test]
    fn every_forwarded_signal_is_blocked_and_faults_are_not() {
        let blocked = blocked_signals();
        for s in Signal::iterator().filter(|s| forwards(*s as i32)) {
            assert!(blocked.contains(s), "{s} is forwarded but not blocked, so it would never be read");
        }
        assert!(blocked.contains(Signal::SIGCHLD));
        assert!(NOT_BLOCKED.iter().all(|s| !blocked.contains(*s)));
    }

    #[test]
    fn exec_failures_map_like_shells() {
        assert_eq!(exec_failure_code(&io::Error::from_raw_os_error(libc::ENOENT)), 127);
        assert_eq!(exec_failure_code(&io::Error::from_raw_os_error(libc::ENOTDIR)), 127);
        assert_eq!(exec_failure_code(&io::Error::from_raw_os_error(libc::EACCES)), 126);
        assert_eq!(exec_failure_code(&io::Error::from_raw_os_error(libc::ENOEXEC)), 126);
    }

    #[test]
    fn child_code_picks_the_direct_child() {
        let orphan = Reaped { pid: Pid::from_raw(7), code: 0 };
        let cmd = Reaped { pid: Pid::from_raw(5), code: 143 };
        assert_eq!(child_code(&[orphan, cmd], Pid::from_raw(5)), Some(143));
        assert_eq!(child_code(&[orphan], Pid::from_raw(5)), None);
    }
}
