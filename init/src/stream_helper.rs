//! Streams on a control connection (`keelctl exec -i/-t`, `keelctl logs -f`), served by a
//! forked helper that owns the connection for the rest of its life.
//!
//! PID 1 never relays a stream's bytes: when a request starts one, it forks a helper
//! with a copy of the connection and of the replies still queued for it, then drops the
//! connection from its own set ([`crate::event_loop`]). The helper writes those queued
//! replies first, then the request's answer line, then frames ([`keel_supervisor::stream`])
//! both ways: it runs the command (on the host or in a container, with pipes or a
//! terminal from the container's own devpts) and relays its stdin, stdout, stderr,
//! window size and signals, or pushes log records as they are written. A client that
//! stops reading stalls only its own helper, which gives up after [`CLIENT_STALL`] and
//! kills the command.

use keel_supervisor::cgroup::{ContainerCgroup, ExecCgroup};
use keel_supervisor::control::{Response, TerminalSize};
use keel_supervisor::forked::run_forked;
use keel_supervisor::runtime::enter::{enter_interactive, EnterTarget, Input};
use keel_supervisor::runtime::pty::{self, Pty};
use keel_supervisor::runtime::{child::Stdio, LaunchPlan};
use keel_supervisor::spec::ContainerName;
use keel_supervisor::stream::{ClientFrame, Decoder, ServerFrame, MAX_PAYLOAD, STREAM_STARTED};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Output bytes (encoded frames) a helper holds for a client that reads slower than the
/// command writes; past this, the command's output is not read (it blocks on its pipe or
/// terminal, as it would on a slow terminal).
pub const OUT_BUFFER: usize = 256 * 1024;

/// A client that takes none of its stream's bytes for this long is gone: the stream
/// ends and the command is killed.
pub const CLIENT_STALL: Duration = Duration::from_secs(60);

/// After the command exits, its output is read to its end, but no longer than this
/// without a byte (a process it left behind may hold the pipe open for ever).
const DRAIN: Duration = Duration::from_secs(1);

/// After the client went away, how long the command has between SIGHUP and SIGKILL.
const HANGUP_GRACE: Duration = Duration::from_secs(2);

/// Exit code of a command killed at its deadline (as coreutils `timeout`).
const TIMED_OUT: i32 = 124;

/// Where an exec stream's command runs.
pub enum Target {
    /// On the host, as PID 1's child's child.
    Host,
    /// In a running container.
    Container {
        /// Its PID 1, as the host sees it.
        pid: Pid,
        /// Its plan (user, environment, restrictions).
        plan: Box<LaunchPlan>,
        /// Its cgroup; the command gets an exec leaf below it.
        cgroup: Option<PathBuf>,
    },
}

/// What a stream helper does.
pub enum StreamWork {
    /// Run a command with streamed stdio.
    Exec {
        /// Program and arguments.
        argv: Vec<String>,
        /// Where.
        target: Target,
        /// A terminal of this size, or pipes.
        tty: Option<TerminalSize>,
        /// Kill it after this long.
        timeout: Option<Duration>,
    },
    /// Push a container's log records as they are written.
    Follow {
        /// Container name (checked in the helper).
        name: String,
        /// How many of the last records first.
        tail: Option<usize>,
    },
}

/// Fork the helper that answers request `id` on `channel` (PID 1's connection, handed
/// over) and serves its stream; `queued` are reply bytes PID 1 had not written yet.
pub fn spawn(id: u64, work: StreamWork, channel: OwnedFd, queued: Vec<u8>) -> nix::Result<Pid> {
    run_forked(move || {
        // Inherited from PID 1: the command (and this relay) must be killable by the OOM killer.
        if let Err(e) = keel_supervisor::cgroup::oom::set_oom_score_adj(None, 0) {
            log::debug!("stream: {e}");
        }
        // PID 1's other descriptors (its listener, other clients, container pipes, the
        // log files) are not this helper's to hold for as long as a stream lasts. The
        // logger's among them: nothing is logged from here on.
        log::set_max_level(log::LevelFilter::Off);
        if keel_supervisor::runtime::child::close_inherited_fds(&[channel.as_raw_fd()]).is_err() {
            return 1;
        }
        let client = UnixStream::from(channel);
        if client.set_nonblocking(true).is_err() || send_bounded(client.as_fd(), &queued).is_err() {
            return 1;
        }
        match work {
            StreamWork::Exec { argv, target, tty, timeout } => exec(id, &client, &argv, target, tty, timeout),
            StreamWork::Follow { name, tail } => follow(id, &client, &name, tail),
        }
    })
}

/// Write all of `bytes` to the non-blocking client, giving up when it takes nothing for
/// [`CLIENT_STALL`].
pub fn send_bounded(fd: BorrowedFd<'_>, mut bytes: &[u8]) -> std::io::Result<()> {
    let mut last = Instant::now();
    while !bytes.is_empty() {
        match nix::unistd::write(fd, bytes) {
            Ok(n) => {
                bytes = &bytes[n..];
                last = Instant::now();
            }
            Err(nix::Error::EAGAIN) => {
                let left = CLIENT_STALL.saturating_sub(last.elapsed());
                if left.is_zero() {
                    return Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "the client does not read"));
                }
                let timeout = PollTimeout::try_from(left).unwrap_or(PollTimeout::MAX);
                let _ = poll(&mut [PollFd::new(fd, PollFlags::POLLOUT)], timeout);
            }
            Err(nix::Error::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

fn answer(client: &UnixStream, response: &Response) -> bool {
    send_bounded(client.as_fd(), response.to_line().as_bytes()).is_ok()
}

/// `logs -f`: the answer, then the records as frames until the client goes away.
fn follow(id: u64, client: &UnixStream, name: &str, tail: Option<usize>) -> i32 {
    let name = match ContainerName::new(name) {
        Ok(name) => name,
        Err(e) => return i32::from(!answer(client, &Response::failure(id, e))),
    };
    if !answer(client, &Response::success(id, STREAM_STARTED)) {
        return 1;
    }
    let mut send = |lines: &[String]| {
        if lines.is_empty() {
            return Ok(());
        }
        let mut text = lines.join("\n");
        text.push('\n');
        send_bounded(client.as_fd(), &ServerFrame::Stdout(text.into_bytes()).encode())
    };
    let dir = std::path::Path::new(keel_supervisor::logs::DEFAULT_DIR);
    match keel_supervisor::logs::follow(dir, &name, tail, client.as_fd(), &mut send) {
        Ok(()) => 0,
        Err(e) => {
            let _ = send_bounded(client.as_fd(), &ServerFrame::Error(format!("logs {name}: {e}")).encode());
            1
        }
    }
}

/// A started command: the pid to wait for and signal, and its ends of the relay.
struct Running {
    pid: Pid,
    stdin: Option<OwnedFd>,
    outputs: Vec<(Option<OwnedFd>, bool)>,
    master: Option<OwnedFd>,
    leaf: Option<ExecCgroup>,
}

/// `exec` with streams: start the command, answer, relay until it ends, send its exit code.
fn exec(id: u64, client: &UnixStream, argv: &[String], target: Target, tty: Option<TerminalSize>, timeout: Option<Duration>) -> i32 {
    let mut running = match start(argv, &target, tty) {
        Ok(running) => running,
        Err(e) => return i32::from(!answer(client, &Response::failure(id, e))),
    };
    if !answer(client, &Response::success(id, STREAM_STARTED)) {
        let _ = kill(running.pid, Signal::SIGKILL);
        let _ = waitpid(running.pid, None);
        return 1;
    }
    let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
    let (outcome, rest) = Relay::new(client, &mut running, deadline).run();
    if let Some(leaf) = running.leaf.take() {
        let _ = leaf.kill();
        if let Err(e) = leaf.finish(Duration::from_millis(500)) {
            log::debug!("exec: {e}");
        }
    }
    let last = match outcome {
        Ok(code) => ServerFrame::Exit(code),
        Err(message) => ServerFrame::Error(message),
    };
    let Some(mut rest) = rest else { return 1 };
    rest.extend(last.encode());
    i32::from(send_bounded(client.as_fd(), &rest).is_err())
}

fn pipe() -> Result<(OwnedFd, OwnedFd), String> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| format!("pipe: {e}"))
}

/// Start the command with pipes or a terminal.
fn start(argv: &[String], target: &Target, tty: Option<TerminalSize>) -> Result<Running, String> {
    match target {
        Target::Host => start_on_host(argv, tty),
        Target::Container { pid, plan, cgroup } => {
            let leaf = cgroup.as_ref().map(|dir| ContainerCgroup::at(dir).new_exec().map_err(|e| e.to_string())).transpose()?;
            let enter = EnterTarget { pid: *pid, cgroup: leaf.as_ref(), plan };
            let mut running = match tty {
                Some(size) => {
                    let Pty { master, peer } = pty::open_in_container(*pid).map_err(|e| format!("exec -t {}: {e}", plan.name))?;
                    pty::resize(&master, size.rows, size.cols).map_err(|e| e.to_string())?;
                    let stdio = Stdio { stdout: peer.as_raw_fd(), stderr: peer.as_raw_fd() };
                    let middle =
                        enter_interactive(&enter, argv, stdio, Input::Terminal(peer.as_raw_fd()), None).map_err(|e| e.to_string())?;
                    terminal_running(middle, master)?
                }
                None => {
                    let (in_r, in_w) = pipe()?;
                    let (out_r, out_w) = pipe()?;
                    let (err_r, err_w) = pipe()?;
                    let stdio = Stdio { stdout: out_w.as_raw_fd(), stderr: err_w.as_raw_fd() };
                    let middle = enter_interactive(&enter, argv, stdio, Input::Fd(in_r.as_raw_fd()), None).map_err(|e| e.to_string())?;
                    Running {
                        pid: middle,
                        stdin: Some(in_w),
                        outputs: vec![(Some(out_r), false), (Some(err_r), true)],
                        master: None,
                        leaf: None,
                    }
                }
            };
            running.leaf = leaf;
            Ok(running)
        }
    }
}

fn start_on_host(argv: &[String], tty: Option<TerminalSize>) -> Result<Running, String> {
    let program = argv.first().map(String::as_str).unwrap_or("");
    match tty {
        Some(size) => {
            let Pty { master, peer } = pty::open_on_host().map_err(|e| format!("exec -t: {e}"))?;
            pty::resize(&master, size.rows, size.cols).map_err(|e| e.to_string())?;
            let child = pty::host_command(argv, Some(&peer)).map_err(|e| format!("exec {program}: {e}"))?;
            terminal_running(Pid::from_raw(child.id() as i32), master)
        }
        None => {
            let mut child = pty::host_command(argv, None).map_err(|e| format!("exec {program}: {e}"))?;
            let stdin = child.stdin.take().map(OwnedFd::from);
            let out = child.stdout.take().map(|o| (Some(OwnedFd::from(o)), false));
            let err = child.stderr.take().map(|e| (Some(OwnedFd::from(e)), true));
            Ok(Running {
                pid: Pid::from_raw(child.id() as i32),
                stdin,
                outputs: out.into_iter().chain(err).collect(),
                master: None,
                leaf: None,
            })
        }
    }
}

fn terminal_running(pid: Pid, master: OwnedFd) -> Result<Running, String> {
    let input = master.try_clone().map_err(|e| format!("dup the pty: {e}"))?;
    let output = master.try_clone().map_err(|e| format!("dup the pty: {e}"))?;
    Ok(Running { pid, stdin: Some(input), outputs: vec![(Some(output), false)], master: Some(master), leaf: None })
}

fn set_nonblocking(fd: &OwnedFd) {
    if let Ok(flags) = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_GETFL) {
        let flags = nix::fcntl::OFlag::from_bits_truncate(flags) | nix::fcntl::OFlag::O_NONBLOCK;
        let _ = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_SETFL(flags));
    }
}

/// pidfd_open(2) through libc (the helper waits on it with the rest).
fn pidfd_open(pid: Pid) -> std::io::Result<OwnedFd> {
    #[allow(unsafe_code)]
    // SAFETY: pidfd_open takes a pid and flags (none) and returns a new descriptor or -1.
    let ret = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0) };
    if ret < 0 {
        return Err(std::io::Error::last_os_error());
    }
    #[allow(unsafe_code)]
    // SAFETY: the kernel just created this descriptor for us; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(ret as RawFd) })
}

/// The relay between the client and a running command.
struct Relay<'a> {
    client: &'a UnixStream,
    running: &'a mut Running,
    deadline: Option<Instant>,
    decoder: Decoder<ClientFrame>,
    to_child: Vec<u8>,
    stdin_eof: bool,
    to_client: Vec<u8>,
    client_open: bool,
    last_taken: Instant,
    exited: Option<(i32, Instant)>,
    hangup_at: Option<Instant>,
    timed_out: bool,
}

/// Which descriptor a poll entry is.
#[derive(Clone, Copy)]
enum Slot {
    Client,
    Stdin,
    Output(usize),
    Exit,
}

impl<'a> Relay<'a> {
    fn new(client: &'a UnixStream, running: &'a mut Running, deadline: Option<Instant>) -> Self {
        running.stdin.iter().for_each(set_nonblocking);
        running.outputs.iter().filter_map(|(fd, _)| fd.as_ref()).for_each(set_nonblocking);
        Relay {
            client,
            running,
            deadline,
            decoder: Decoder::default(),
            to_child: Vec::new(),
            stdin_eof: false,
            to_client: Vec::new(),
            client_open: true,
            last_taken: Instant::now(),
            exited: None,
            hangup_at: None,
            timed_out: false,
        }
    }

    /// Relay until the command ended and its output is drained; its exit code, and the
    /// output bytes (whole frames) not yet written to the client; `None` when the client
    /// is gone (or stopped reading): nothing more is sent.
    fn run(mut self) -> (Result<i32, String>, Option<Vec<u8>>) {
        let outcome = self.relay();
        let rest = self.client_open.then(|| std::mem::take(&mut self.to_client));
        (outcome, rest)
    }

    fn relay(&mut self) -> Result<i32, String> {
        let pidfd = pidfd_open(self.running.pid).map_err(|e| format!("pidfd_open: {e}"))?;
        loop {
            if let Some((code, at)) = self.exited {
                // Waiting for the client to take what is buffered is not a quiet output.
                if self.to_client.len() >= OUT_BUFFER {
                    self.exited = Some((code, Instant::now()));
                } else if self.running.outputs.iter().all(|(fd, _)| fd.is_none()) || at.elapsed() >= DRAIN {
                    return Ok(if self.timed_out { TIMED_OUT } else { code });
                }
            }
            if !self.to_client.is_empty() && self.last_taken.elapsed() >= CLIENT_STALL {
                self.client_open = false;
                self.kill_command();
                return Err("the client took nothing for a minute; the command was killed".into());
            }
            self.on_time();
            let (slots, ready) = self.wait(&pidfd);
            for (slot, flags) in slots.into_iter().zip(ready) {
                if !flags.is_empty() {
                    self.on_ready(slot, flags)?;
                }
            }
            if !self.client_open && self.to_client.is_empty() && self.exited.is_some() {
                return Ok(self.exited.map_or(0, |(c, _)| c));
            }
        }
    }

    fn wait(&self, pidfd: &OwnedFd) -> (Vec<Slot>, Vec<PollFlags>) {
        let mut slots = Vec::new();
        let mut fds = Vec::new();
        let mut client_flags = PollFlags::empty();
        if self.client_open && self.to_child.is_empty() {
            client_flags |= PollFlags::POLLIN;
        }
        if !self.to_client.is_empty() {
            client_flags |= PollFlags::POLLOUT;
        }
        slots.push(Slot::Client);
        fds.push(PollFd::new(self.client.as_fd(), client_flags));
        if let (Some(stdin), false) = (&self.running.stdin, self.to_child.is_empty()) {
            slots.push(Slot::Stdin);
            fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLOUT));
        }
        if self.to_client.len() < OUT_BUFFER {
            for (i, fd) in self.running.outputs.iter().enumerate().filter_map(|(i, (fd, _))| fd.as_ref().map(|fd| (i, fd))) {
                slots.push(Slot::Output(i));
                fds.push(PollFd::new(fd.as_fd(), PollFlags::POLLIN));
            }
        }
        if self.exited.is_none() {
            slots.push(Slot::Exit);
            fds.push(PollFd::new(pidfd.as_fd(), PollFlags::POLLIN));
        }
        let now = Instant::now();
        let wake = [self.deadline.filter(|_| !self.timed_out), self.hangup_at, self.exited.map(|(_, at)| at + DRAIN)]
            .into_iter()
            .flatten()
            .min()
            .map_or(Duration::from_secs(1), |at| at.saturating_duration_since(now).min(Duration::from_secs(1)));
        let _ = poll(&mut fds, PollTimeout::try_from(wake + Duration::from_millis(1)).unwrap_or(PollTimeout::MAX));
        (slots, fds.iter().map(|fd| fd.revents().unwrap_or(PollFlags::empty())).collect())
    }

    fn on_time(&mut self) {
        let now = Instant::now();
        if self.deadline.is_some_and(|d| now >= d) && !self.timed_out && self.exited.is_none() {
            self.timed_out = true;
            self.kill_command();
        }
        if self.hangup_at.is_some_and(|at| now >= at) {
            self.hangup_at = None;
            self.kill_command();
        }
    }

    fn kill_command(&self) {
        let _ = kill(self.running.pid, Signal::SIGKILL);
        if let Some(leaf) = &self.running.leaf {
            let _ = leaf.kill();
        }
    }

    fn on_ready(&mut self, slot: Slot, flags: PollFlags) -> Result<(), String> {
        match slot {
            Slot::Client => {
                if flags.contains(PollFlags::POLLOUT) {
                    self.flush_client();
                }
                if flags.intersects(PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR) && self.client_open {
                    self.read_client()?;
                }
            }
            Slot::Stdin => self.write_stdin(),
            Slot::Output(i) => self.read_output(i),
            Slot::Exit => {
                let code = match waitpid(self.running.pid, None) {
                    Ok(WaitStatus::Exited(_, code)) => code,
                    Ok(WaitStatus::Signaled(_, signal, _)) => 128 + signal as i32,
                    _ => 255,
                };
                self.exited = Some((code, Instant::now()));
            }
        }
        Ok(())
    }

    fn read_client(&mut self) -> Result<(), String> {
        let mut buf = vec![0u8; MAX_PAYLOAD];
        match nix::unistd::read(self.client, &mut buf) {
            Ok(0) | Err(nix::Error::ECONNRESET) => {
                // The client went away: hang up the command, kill it if it stays.
                self.client_open = false;
                self.to_client.clear();
                let _ = kill(self.running.pid, Signal::SIGHUP);
                self.hangup_at = Some(Instant::now() + HANGUP_GRACE);
            }
            Ok(n) => {
                let frames = self.decoder.push(&buf[..n]).map_err(|e| {
                    self.kill_command();
                    format!("bad frame from the client: {e}")
                })?;
                for frame in frames {
                    self.on_frame(frame);
                }
            }
            Err(nix::Error::EAGAIN | nix::Error::EINTR) => {}
            Err(e) => return Err(format!("reading the client: {e}")),
        }
        Ok(())
    }

    fn on_frame(&mut self, frame: ClientFrame) {
        match frame {
            ClientFrame::Stdin(data) if self.running.stdin.is_some() && !self.stdin_eof => self.to_child.extend(data),
            ClientFrame::Stdin(_) => {}
            ClientFrame::StdinEof if self.running.master.is_some() => self.to_child.push(4),
            ClientFrame::StdinEof => {
                self.stdin_eof = true;
                if self.to_child.is_empty() {
                    self.running.stdin = None;
                }
            }
            ClientFrame::Resize { rows, cols } => {
                if let Some(master) = &self.running.master {
                    let _ = pty::resize(master, rows, cols);
                }
            }
            ClientFrame::Signal(number) => {
                if let Ok(signal) = Signal::try_from(number) {
                    let _ = kill(self.running.pid, signal);
                }
            }
        }
    }

    fn write_stdin(&mut self) {
        let Some(stdin) = &self.running.stdin else { return };
        match nix::unistd::write(stdin, &self.to_child) {
            Ok(n) => {
                self.to_child.drain(..n);
            }
            Err(nix::Error::EAGAIN | nix::Error::EINTR) => {}
            Err(_) => {
                // The command closed its stdin (EPIPE): what the client sends is dropped.
                self.to_child.clear();
                self.running.stdin = None;
            }
        }
        if self.to_child.is_empty() && self.stdin_eof {
            self.running.stdin = None;
        }
    }

    fn read_output(&mut self, index: usize) {
        let Some((Some(fd), is_err)) = self.running.outputs.get(index) else { return };
        let mut buf = vec![0u8; MAX_PAYLOAD];
        match nix::unistd::read(fd, &mut buf) {
            Ok(n) if n > 0 => {
                let data = buf[..n].to_vec();
                let frame = if *is_err { ServerFrame::Stderr(data) } else { ServerFrame::Stdout(data) };
                if let Some((code, _)) = self.exited {
                    // Still draining after the exit: the quiet period starts again.
                    self.exited = Some((code, Instant::now()));
                }
                if self.client_open {
                    if self.to_client.is_empty() {
                        self.last_taken = Instant::now();
                    }
                    self.to_client.extend(frame.encode());
                    self.flush_client();
                }
            }
            Err(nix::Error::EAGAIN | nix::Error::EINTR) => {}
            // EOF, or EIO from a pty whose last terminal user left.
            _ => {
                self.running.outputs[index].0 = None;
            }
        }
    }

    fn flush_client(&mut self) {
        while !self.to_client.is_empty() {
            match nix::unistd::write(self.client.as_fd(), &self.to_client) {
                Ok(n) => {
                    self.to_client.drain(..n);
                    self.last_taken = Instant::now();
                }
                Err(nix::Error::EINTR) => {}
                Err(nix::Error::EAGAIN) => return,
                Err(_) => {
                    self.to_client.clear();
                    self.client_open = false;
                    let _ = kill(self.running.pid, Signal::SIGHUP);
                    self.hangup_at = Some(Instant::now() + HANGUP_GRACE);
                    return;
                }
            }
        }
        self.last_taken = Instant::now();
    }
}

#[cfg(test)]
mod tests;
