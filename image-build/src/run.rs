//! `keel-build run`: boot a built image in QEMU and stop it cleanly on Ctrl-C.
//!
//! QEMU runs in its own process group with stdin on /dev/null, so a terminal Ctrl-C
//! reaches only keel-build, which then powers the guest down through QMP (see
//! [`crate::shutdown`]). The serial console is copied line by line to stdout.
//! SIGINT, SIGTERM, SIGHUP and SIGCHLD are blocked and read from a signalfd, so the wait for
//! QEMU is one blocking `poll` with the current shutdown deadline as its timeout.

use std::io::{self, BufRead, BufReader, Write};
use std::os::fd::AsFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::prctl::set_pdeathsig;
use nix::sys::signal::{sigprocmask, SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

use crate::qemu::{QemuConfig, QEMU};
use crate::qmp::{Qmp, QmpError};
use crate::shutdown::{Action, Shutdown};

/// How long to wait for QEMU's QMP socket when a shutdown step needs it.
const QMP_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest unix socket path (sun_path less the terminating NUL).
const MAX_SOCKET_PATH: usize = 107;

/// Why QEMU could not be run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A unix socket path does not fit `sockaddr_un`.
    #[error("socket path {} is longer than {MAX_SOCKET_PATH} bytes; use a shorter --out or socket path", path.display())]
    SocketPath {
        /// The path.
        path: PathBuf,
    },
    /// Signals could not be blocked or read.
    #[error("signal handling: {0}")]
    Signals(#[source] nix::Error),
    /// QEMU could not be started.
    #[error("cannot start {QEMU}: {0} (is QEMU installed?)")]
    Spawn(#[source] io::Error),
    /// The control socket could not be served.
    #[error("control socket: {0}")]
    Control(#[source] io::Error),
    /// Waiting for QEMU failed.
    #[error("waiting for {QEMU}: {0}")]
    Wait(#[source] io::Error),
}

/// Check that a unix socket path fits `sockaddr_un`.
pub fn check_socket_path(path: &Path) -> Result<(), RunError> {
    if path.as_os_str().len() > MAX_SOCKET_PATH {
        return Err(RunError::SocketPath { path: path.to_path_buf() });
    }
    Ok(())
}

/// Where `run` builds when no `--out` is given: `<target>/keel-run/<hostname>` when the
/// executable lies in a cargo `target` directory, else `<tmp>/keel-run-<hostname>`.
pub fn default_out_dir(hostname: &str, exe: &Path, tmp: &Path) -> PathBuf {
    match exe.ancestors().find(|dir| dir.file_name().is_some_and(|name| name == "target")) {
        Some(target) => target.join("keel-run").join(hostname),
        None => tmp.join(format!("keel-run-{hostname}")),
    }
}

/// The exit code that mirrors how QEMU ended: its code, or 128 + signal.
pub fn exit_code(status: ExitStatus) -> i32 {
    match (status.code(), status.signal()) {
        (Some(code), _) => code,
        (None, Some(signal)) => 128 + signal,
        (None, None) => 1,
    }
}

/// Run QEMU with `config` until it exits; return its exit code.
pub fn run_qemu(config: &QemuConfig) -> Result<i32, RunError> {
    for path in config.qmp_socket.iter().chain(&config.control_socket) {
        check_socket_path(path)?;
    }
    if let Some(qmp) = &config.qmp_socket {
        // A leftover socket of an earlier run would only make connect fail later.
        let _ = std::fs::remove_file(qmp);
    }
    // The control socket clients use is served by keel-build, multiplexed over one
    // connection to QEMU's chardev (next to it, `.qemu`) that stays open: see serial_mux.
    let mut config = config.clone();
    if let Some(control) = config.control_socket.clone() {
        let mut qemu = control.clone().into_os_string();
        qemu.push(".qemu");
        let qemu = PathBuf::from(qemu);
        check_socket_path(&qemu)?;
        crate::serial_mux::spawn(qemu.clone(), &control).map_err(RunError::Control)?;
        config.control_socket = Some(qemu);
    }
    let config = &config;
    let mut mask = SigSet::empty();
    for signal in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP, Signal::SIGCHLD] {
        mask.add(signal);
    }
    mask.thread_block().map_err(RunError::Signals)?;
    let result = supervise(config, &mask);
    let _ = mask.thread_unblock();
    result
}

fn supervise(config: &QemuConfig, mask: &SigSet) -> Result<i32, RunError> {
    let signals = SignalFd::with_flags(mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK).map_err(RunError::Signals)?;
    let mut command = config.command();
    command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::inherit()).process_group(0);
    prepare_child(&mut command);
    let mut child = command.spawn().map_err(RunError::Spawn)?;
    let serial = child.stdout.take().map(copy_serial);
    let mut guard = Guard { child: &mut child, qmp_path: config.qmp_socket.clone(), qmp: None };
    let status = guard.wait(&signals);
    if status.is_err() {
        let _ = guard.child.kill();
        let _ = guard.child.wait();
    }
    if let Some(serial) = serial {
        let _ = serial.join();
    }
    Ok(exit_code(status?))
}

/// Make the child start with an empty signal mask and die with keel-build.
///
/// std passes our signal mask on to children, and ours blocks the signals that the
/// signalfd reads, which would leave QEMU deaf to SIGTERM. The parent-death signal
/// (SIGKILL) keeps QEMU, which is in its own process group, from outliving a
/// keel-build that is killed without a chance to stop it.
#[allow(unsafe_code)]
pub fn prepare_child(command: &mut Command) {
    let parent = nix::unistd::getpid();
    let hook = move || -> io::Result<()> {
        sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)?;
        set_pdeathsig(Signal::SIGKILL)?;
        // The parent may have died before prctl: then no signal would ever come.
        if nix::unistd::getppid() != parent {
            return Err(io::Error::from_raw_os_error(libc::ESRCH));
        }
        Ok(())
    };
    // SAFETY: the hook runs in the forked child before exec, where only
    // async-signal-safe calls are allowed. It only makes the sigprocmask, prctl and
    // getppid system calls on values it owns (a sigset on the stack, plain integers),
    // allocates nothing and touches no lock; errors are built from raw errno values.
    unsafe {
        command.pre_exec(hook);
    }
}

/// QEMU while it runs, with the QMP session used to stop it.
struct Guard<'a> {
    child: &'a mut Child,
    qmp_path: Option<PathBuf>,
    qmp: Option<Qmp>,
}

impl Guard<'_> {
    /// Wait for QEMU to exit, stepping through the shutdown on signals and deadlines.
    fn wait(&mut self, signals: &SignalFd) -> Result<ExitStatus, RunError> {
        let mut shutdown = Shutdown::default();
        loop {
            if let Some(status) = self.child.try_wait().map_err(RunError::Wait)? {
                return Ok(status);
            }
            let timeout = poll_timeout(shutdown.deadline(), Instant::now());
            let mut fds = [PollFd::new(signals.as_fd(), PollFlags::POLLIN)];
            match nix::poll::poll(&mut fds, timeout) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(err) => return Err(RunError::Signals(err)),
            }
            let mut action = shutdown.tick(Instant::now());
            while let Some(info) = signals.read_signal().map_err(RunError::Signals)? {
                let signo = info.ssi_signo as i32;
                if signo != Signal::SIGCHLD as i32 {
                    action = shutdown.escalate(Instant::now());
                }
            }
            while !self.perform(action) {
                action = shutdown.escalate(Instant::now());
            }
        }
    }

    /// Carry out one shutdown step; `false` when it failed and the next one is due.
    fn perform(&mut self, action: Action) -> bool {
        match action {
            Action::Wait => true,
            Action::Powerdown => {
                eprintln!("keel-build: asking the guest to power down (Ctrl-C again to quit QEMU at once)");
                self.qmp_execute("system_powerdown")
            }
            Action::Quit => {
                eprintln!("keel-build: quitting QEMU");
                self.qmp_execute("quit")
            }
            Action::Kill => {
                eprintln!("keel-build: killing QEMU");
                if let Err(err) = self.child.kill() {
                    eprintln!("keel-build: cannot kill QEMU: {err}");
                }
                true
            }
        }
    }

    fn qmp_execute(&mut self, command: &str) -> bool {
        let result = self.qmp_session().and_then(|qmp| qmp.execute(command));
        match result {
            Ok(_) => true,
            // QEMU closes the connection as it quits; that is success.
            Err(QmpError::Closed) if command == "quit" => true,
            Err(err) => {
                eprintln!("keel-build: {err}");
                self.qmp = None;
                false
            }
        }
    }

    fn qmp_session(&mut self) -> Result<&mut Qmp, QmpError> {
        let Some(path) = &self.qmp_path else {
            let source = io::Error::other("QEMU was started without a QMP socket");
            return Err(QmpError::Connect { path: PathBuf::new(), source });
        };
        if self.qmp.is_none() {
            self.qmp = Some(Qmp::connect(path, QMP_TIMEOUT)?);
        }
        match self.qmp.as_mut() {
            Some(qmp) => Ok(qmp),
            None => Err(QmpError::Closed),
        }
    }
}

/// The poll timeout that wakes up at `deadline` (or never, without one).
pub fn poll_timeout(deadline: Option<Instant>, now: Instant) -> PollTimeout {
    match deadline {
        None => PollTimeout::NONE,
        Some(deadline) => {
            // Round up so that the wake-up is at or after the deadline.
            let millis = deadline.saturating_duration_since(now).as_micros().div_ceil(1000);
            PollTimeout::try_from(millis).unwrap_or(PollTimeout::MAX)
        }
    }
}

/// Copy QEMU's serial output to our stdout, line by line, until QEMU closes it.
fn copy_serial(output: ChildStdout) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(output);
        let mut line = Vec::new();
        let mut stdout_ok = true;
        loop {
            line.clear();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) if stdout_ok => {
                    let mut stdout = io::stdout().lock();
                    // Keep draining even when our stdout is gone, so QEMU never blocks.
                    stdout_ok = stdout.write_all(&line).and_then(|()| stdout.flush()).is_ok();
                }
                Ok(_) => {}
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blocked_mask_of_child(prepare: bool) -> String {
        // grep itself, not a shell: a shell may reset the mask on its own.
        let mut command = Command::new("grep");
        command.args(["SigBlk", "/proc/self/status"]);
        command.stdout(Stdio::piped());
        if prepare {
            prepare_child(&mut command);
        }
        let mut mask = SigSet::empty();
        mask.add(Signal::SIGTERM);
        mask.thread_block().unwrap();
        let output = command.output();
        mask.thread_unblock().unwrap();
        let stdout = String::from_utf8(output.unwrap().stdout).unwrap();
        stdout.trim().trim_start_matches("SigBlk:").trim().to_string()
    }

    #[test]
    fn child_starts_with_an_empty_signal_mask() {
        assert_eq!(blocked_mask_of_child(true), "0000000000000000");
        // Negative control: without the hook, the child inherits our blocked SIGTERM.
        assert_eq!(blocked_mask_of_child(false), "0000000000004000");
    }

    #[test]
    fn exit_codes_mirror_qemu() {
        assert_eq!(exit_code(ExitStatus::from_raw(0)), 0);
        assert_eq!(exit_code(ExitStatus::from_raw(3 << 8)), 3);
        assert_eq!(exit_code(ExitStatus::from_raw(9)), 137);
    }

    #[test]
    fn poll_wakes_at_the_deadline() {
        let now = Instant::now();
        assert_eq!(poll_timeout(None, now), PollTimeout::NONE);
        let wake = poll_timeout(Some(now + Duration::from_micros(1500)), now);
        assert_eq!(i32::from(wake), 2);
        assert_eq!(i32::from(poll_timeout(Some(now), now + Duration::from_secs(1))), 0);
    }

    #[test]
    fn default_out_dir_prefers_the_cargo_target_dir() {
        let exe = Path::new("/w/target/x86_64-unknown-linux-gnu/debug/keel-build");
        assert_eq!(default_out_dir("demo", exe, Path::new("/tmp")), Path::new("/w/target/keel-run/demo"));
        let exe = Path::new("/usr/local/bin/keel-build");
        assert_eq!(default_out_dir("demo", exe, Path::new("/tmp")), Path::new("/tmp/keel-run-demo"));
    }

    #[test]
    fn long_socket_paths_are_refused() {
        assert!(check_socket_path(Path::new("/tmp/qmp.sock")).is_ok());
        let long = PathBuf::from(format!("/{}", "x".repeat(107)));
        assert!(matches!(check_socket_path(&long), Err(RunError::SocketPath { .. })));
    }
}
