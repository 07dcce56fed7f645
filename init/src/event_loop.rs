//! PID 1's event loop: one thread, one blocking poll(2) over the signalfd, the control
//! channels, the power buttons and the containers' output pipes, with the container
//! manager's next deadline as the timeout. It never returns and never stops on an error: each
//! handler's failure or panic is logged and the loop goes on.

use crate::control_server::{read_lines, Connection, LineBuffer, ReadOutcome, SerialPort};
use crate::power_button::{contains_power_press, INPUT_EVENT_SIZE};
use crate::reaper::reap_all;
use crate::shutdown::{shutdown, PowerAction};
use crate::{boot::panic_message, exec_helper};
use keel_supervisor::control::{parse_request, Command, LogsResult, Response, Status, DEFAULT_EXEC_TIMEOUT_SECS};
use keel_supervisor::logs::{self, LogOffset};
use keel_supervisor::manager::Manager;
use keel_supervisor::spec::ContainerName;
use log::{debug, error, info, warn};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::Signal;
use nix::sys::signalfd::SignalFd;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixListener;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Where the host is in its life, as `status` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Phase {
    /// Boot steps are running.
    #[default]
    Booting,
    /// Boot finished.
    Ready,
    /// A critical step failed; PID 1 keeps reaping and answering.
    Emergency,
}

impl Phase {
    fn name(self) -> &'static str {
        match self {
            Phase::Booting => "booting",
            Phase::Ready => "ready",
            Phase::Emergency => "emergency",
        }
    }
}

/// What the host knows about itself.
#[derive(Debug, Clone, Default)]
pub struct HostState {
    /// The host name that was set.
    pub hostname: String,
    /// Boot phase.
    pub phase: Phase,
    /// Every boot step that failed, with its cause.
    pub boot_errors: Vec<String>,
    /// What the first-boot step did.
    pub firstboot: Option<crate::firstboot::run::FirstbootStatus>,
}

/// While the host end of the virtio-serial port is closed, poll(2) reports POLLHUP
/// at once; the port is then left out of the poll set for this long.
const PORT_QUIET: Duration = Duration::from_millis(250);

/// The sources PID 1 waits on.
pub struct EventLoop {
    signals: Option<SignalFd>,
    listener: Option<UnixListener>,
    connections: Vec<Connection>,
    port: Option<SerialPort>,
    port_quiet_until: Option<Instant>,
    buttons: Vec<(PathBuf, File)>,
    manager: Option<Manager>,
    uplink: Option<crate::network::uplink::DhcpUplink>,
    network: Option<crate::network::Shared>,
    grace: Duration,
    state: HostState,
    late: Option<crate::late_boot::LateBoot>,
    watchdog: Option<crate::watchdog::Watchdog>,
    wedge: Option<Duration>,
}

/// Which source a poll entry belongs to.
#[derive(Clone)]
enum Source {
    Signals,
    Listener,
    Connection(usize),
    Port,
    Button(usize),
    Output(ContainerName, usize),
    Uplink,
}

/// What a request asks the loop to do after answering.
enum After {
    Continue,
    Shutdown(PowerAction, &'static str),
}

impl EventLoop {
    /// A loop with its signalfd (None if it could not be created).
    pub fn new(signals: Option<SignalFd>) -> Self {
        EventLoop {
            signals,
            listener: None,
            connections: Vec::new(),
            port: None,
            port_quiet_until: None,
            buttons: Vec::new(),
            manager: None,
            uplink: None,
            network: None,
            grace: Duration::from_secs(5),
            state: HostState::default(),
            late: None,
            watchdog: None,
            wedge: None,
        }
    }

    /// Pet this hardware watchdog from the loop; disarm it at a clean shutdown.
    pub fn set_watchdog(&mut self, watchdog: crate::watchdog::Watchdog) {
        self.watchdog = Some(watchdog);
    }

    /// Test-only (`keel.test.wedge`): block the loop for `duration` once the boot is
    /// complete (the late boot done, the watchdog armed).
    pub fn set_test_wedge(&mut self, duration: Duration) {
        self.wedge = Some(duration);
    }

    /// Finish this part of the boot once its loader exits; no container starts before.
    pub fn set_late(&mut self, late: crate::late_boot::LateBoot) {
        self.late = Some(late);
    }

    /// Whether signals cannot be watched (then reaping falls back to a periodic pass).
    pub fn signals_missing(&self) -> bool {
        self.signals.is_none()
    }

    /// Serve the control protocol on this listener.
    pub fn set_listener(&mut self, listener: UnixListener) {
        self.listener = Some(listener);
    }

    /// Serve the control protocol on this virtio-serial port too.
    pub fn set_port(&mut self, port: SerialPort) {
        self.port = Some(port);
    }

    /// Watch these power buttons.
    pub fn set_buttons(&mut self, buttons: Vec<(PathBuf, File)>) {
        self.buttons = buttons;
    }

    /// Run this DHCP client on the uplink.
    pub fn set_uplink(&mut self, uplink: crate::network::uplink::DhcpUplink) {
        self.uplink = Some(uplink);
    }

    /// During boot, before the loop runs: drive only the uplink's DHCP client for
    /// `duration` (sleep when there is none). First boot waits this way between the
    /// attempts of an http fetch, so the lease can arrive while it waits.
    pub fn pump_uplink(&mut self, duration: Duration) {
        let end = Instant::now() + duration;
        loop {
            let now = Instant::now();
            if now >= end {
                return;
            }
            let Some(uplink) = self.uplink.as_mut() else {
                std::thread::sleep(end - now);
                return;
            };
            let until = uplink.next_deadline().map_or(end, |at| at.min(end));
            let timeout =
                PollTimeout::try_from(until.saturating_duration_since(now) + Duration::from_millis(1)).unwrap_or(PollTimeout::MAX);
            let readable = {
                let mut fds = [PollFd::new(uplink.fd(), PollFlags::POLLIN)];
                poll(&mut fds, timeout).is_ok_and(|n| n > 0)
            };
            if readable {
                uplink.on_readable(Instant::now());
            }
            uplink.on_timer(Instant::now());
        }
    }

    /// Answer network commands about these networks.
    pub fn set_network(&mut self, network: crate::network::Shared) {
        self.network = Some(network);
    }

    /// Supervise these containers.
    pub fn set_manager(&mut self, manager: Manager) {
        self.manager = Some(manager);
    }

    /// Run forever.
    pub fn run(mut self, mut state: HostState, grace: Duration) -> ! {
        if state.phase == Phase::Booting {
            state.phase = Phase::Ready;
        }
        self.state = state;
        self.grace = grace;
        for child in reap_all().reaped {
            if let Some(late) = self.late.as_mut() {
                late.on_exit(child.pid, child.code);
            }
        }
        self.tick_containers();
        loop {
            if let Err(payload) = catch_unwind(AssertUnwindSafe(|| self.turn())) {
                error!("event loop: panicked: {}; continuing", panic_message(&payload));
            }
        }
    }

    /// Wait for one batch of events and handle them.
    fn turn(&mut self) {
        let ready = self.wait();
        for (source, flags) in ready {
            match source {
                Source::Signals => self.on_signals(),
                Source::Listener => self.on_accept(),
                Source::Connection(index) => self.on_connection(index),
                Source::Port => self.on_port(flags),
                Source::Button(index) => self.on_button(index),
                Source::Output(name, index) => {
                    if let Some(manager) = self.manager.as_mut() {
                        manager.on_output(&name, index);
                    }
                }
                Source::Uplink => {
                    if let Some(uplink) = self.uplink.as_mut() {
                        uplink.on_readable(Instant::now());
                    }
                }
            }
        }
        self.connections.retain(|c| c.buffer_alive());
        if let Some(uplink) = self.uplink.as_mut() {
            uplink.on_timer(Instant::now());
        }
        self.tick_containers();
        if let Some(watchdog) = self.watchdog.as_mut() {
            watchdog.pet_if_due(Instant::now());
        }
    }

    /// Finish the late boot when it is due, then let the manager start what is due;
    /// containers wait for the late boot (its bridges and firewall).
    fn tick_containers(&mut self) {
        if let Some(late) = self.late.take_if(|late| late.due()) {
            let outcome = late.finish();
            for problem in outcome.problems {
                error!("{problem}");
                self.state.boot_errors.push(problem);
            }
            self.watchdog = outcome.watchdog.or(self.watchdog.take());
        }
        if let (None, Some(wedge)) = (&self.late, self.wedge) {
            self.wedge = None;
            crate::logger::marker(&format!("keel: test: wedging the event loop for {} s (keel.test.wedge)", wedge.as_secs()));
            std::thread::sleep(wedge);
            crate::logger::marker("keel: test: the event loop runs again");
        }
        if let (Some(manager), None) = (self.manager.as_mut(), &self.late) {
            manager.tick(Instant::now());
        }
    }

    fn wait(&mut self) -> Vec<(Source, PollFlags)> {
        let now = Instant::now();
        let port_quiet = self.port_quiet_until.filter(|until| *until > now);
        let mut sources = Vec::new();
        let mut fds: Vec<PollFd> = Vec::new();
        fn add<'fd>(sources: &mut Vec<Source>, source: Source, fd: BorrowedFd<'fd>) -> PollFd<'fd> {
            sources.push(source);
            PollFd::new(fd, PollFlags::POLLIN)
        }
        if let Some(signals) = &self.signals {
            fds.push(add(&mut sources, Source::Signals, signals.as_fd()));
        }
        if let Some(listener) = &self.listener {
            fds.push(add(&mut sources, Source::Listener, listener.as_fd()));
        }
        for (i, connection) in self.connections.iter().enumerate() {
            fds.push(add(&mut sources, Source::Connection(i), connection.stream.as_fd()));
        }
        if let (Some(port), None) = (&self.port, port_quiet) {
            fds.push(add(&mut sources, Source::Port, port.as_fd()));
        }
        for (i, (_, button)) in self.buttons.iter().enumerate() {
            fds.push(add(&mut sources, Source::Button(i), button.as_fd()));
        }
        if let Some(manager) = &self.manager {
            for (name, index, fd) in manager.output_fds() {
                fds.push(add(&mut sources, Source::Output(name, index), fd));
            }
        }
        if let Some(uplink) = &self.uplink {
            fds.push(add(&mut sources, Source::Uplink, uplink.fd()));
        }
        let deadline = [
            port_quiet,
            self.manager.as_ref().and_then(Manager::next_deadline),
            self.uplink.as_ref().and_then(|u| u.next_deadline()),
            self.watchdog.as_ref().map(crate::watchdog::Watchdog::next_pet),
        ]
        .into_iter()
        .flatten()
        .min();
        let timeout = match (deadline, &self.signals) {
            (Some(until), _) => {
                PollTimeout::try_from(until.saturating_duration_since(now) + Duration::from_millis(1)).unwrap_or(PollTimeout::MAX)
            }
            (None, None) => PollTimeout::from(1000u16),
            (None, Some(_)) => PollTimeout::NONE,
        };
        if self.signals.is_none() {
            reap_all();
        }
        match poll(&mut fds, timeout) {
            Ok(_) => {}
            Err(nix::Error::EINTR) => return Vec::new(),
            Err(e) => {
                error!("poll: {e}");
                std::thread::sleep(Duration::from_millis(100));
                return Vec::new();
            }
        }
        sources
            .into_iter()
            .zip(fds.iter().map(|fd| fd.revents().unwrap_or(PollFlags::empty())))
            .filter(|(_, flags)| !flags.is_empty())
            .collect()
    }

    fn on_signals(&mut self) {
        let Some(signals) = &self.signals else { return };
        let mut received = Vec::new();
        while let Ok(Some(info)) = signals.read_signal() {
            received.push(info.ssi_signo as i32);
        }
        for number in received {
            match Signal::try_from(number) {
                Ok(Signal::SIGCHLD) => {
                    let now = Instant::now();
                    for child in reap_all().reaped {
                        let known = self.late.as_mut().is_some_and(|late| late.on_exit(child.pid, child.code))
                            || self.manager.as_mut().is_some_and(|m| m.on_exit(child.pid, child.code, now));
                        if !known {
                            debug!("reaped pid {} (exit {})", child.pid, child.code);
                        }
                    }
                }
                Ok(Signal::SIGTERM) => self.shutdown(PowerAction::PowerOff, "SIGTERM"),
                Ok(Signal::SIGPWR) => self.shutdown(PowerAction::PowerOff, "SIGPWR"),
                Ok(Signal::SIGINT) => self.shutdown(PowerAction::Reboot, "ctrl-alt-del (SIGINT)"),
                Ok(other) => info!("ignoring {other}"),
                Err(_) => info!("ignoring signal {number}"),
            }
        }
    }

    fn on_accept(&mut self) {
        let Some(listener) = &self.listener else { return };
        loop {
            match listener.accept() {
                Ok((stream, _)) => {
                    if stream.set_nonblocking(true).is_ok() {
                        self.connections.push(Connection { stream, buffer: LineBuffer::default() });
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    warn!("control socket accept: {e}");
                    return;
                }
            }
        }
    }

    fn on_connection(&mut self, index: usize) {
        let Some(connection) = self.connections.get_mut(index) else { return };
        let lines = match read_lines(&mut connection.stream, &mut connection.buffer) {
            ReadOutcome::Lines(lines) => lines,
            ReadOutcome::Closed => {
                connection.close();
                return;
            }
        };
        for line in lines {
            let Some(connection) = self.connections.get(index) else { return };
            let Ok(channel) = connection.stream.try_clone() else { return };
            self.on_request(&line, channel.as_fd());
        }
    }

    fn on_port(&mut self, flags: PollFlags) {
        if flags.contains(PollFlags::POLLHUP) && !flags.contains(PollFlags::POLLIN) {
            self.port_quiet_until = Some(Instant::now() + PORT_QUIET);
            return;
        }
        let Some(port) = self.port.as_mut() else { return };
        let lines = match read_lines(&mut port.file, &mut port.buffer) {
            ReadOutcome::Lines(lines) => lines,
            ReadOutcome::Closed => {
                self.port_quiet_until = Some(Instant::now() + PORT_QUIET);
                return;
            }
        };
        for line in lines {
            let Some(port) = &self.port else { return };
            let Ok(channel) = port.file.try_clone() else { return };
            self.on_request(&line, channel.as_fd());
        }
    }

    fn on_button(&mut self, index: usize) {
        let Some((path, button)) = self.buttons.get_mut(index) else { return };
        let mut events = [0u8; INPUT_EVENT_SIZE * 16];
        match button.read(&mut events) {
            Ok(n) if contains_power_press(&events[..n]) => {
                info!("power button pressed ({})", path.display());
                self.shutdown(PowerAction::PowerOff, "power button");
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => {
                warn!("power button {}: {e}; no longer watched", path.display());
                self.buttons.remove(index);
            }
        }
    }

    /// Answer one request line on `channel`.
    fn on_request(&mut self, line: &str, channel: BorrowedFd<'_>) {
        let request = match parse_request(line) {
            Ok(request) => request,
            Err(response) => return reply(channel, &response),
        };
        let id = request.id;
        let after = match request.command {
            Command::Status => {
                reply(channel, &Response::success(id, self.status()));
                After::Continue
            }
            Command::Poweroff => {
                reply(channel, &Response::success(id, "powering off"));
                After::Shutdown(PowerAction::PowerOff, "keelctl poweroff")
            }
            Command::Reboot => {
                reply(channel, &Response::success(id, "rebooting"));
                After::Shutdown(PowerAction::Reboot, "keelctl reboot")
            }
            Command::Exec { argv, timeout_secs, container } => {
                let timeout = Duration::from_secs(timeout_secs.unwrap_or(DEFAULT_EXEC_TIMEOUT_SECS));
                if let Err(e) = self.exec(id, argv, timeout, container, channel) {
                    reply(channel, &Response::failure(id, e));
                }
                After::Continue
            }
            Command::Logs { name, tail, offset } => {
                reply(channel, &container_logs(id, &name, tail, offset));
                After::Continue
            }
            Command::Firstboot => {
                match &self.state.firstboot {
                    Some(status) => reply(channel, &Response::success(id, status)),
                    None => reply(channel, &Response::failure(id, "the first-boot step did not run")),
                }
                After::Continue
            }
            command @ (Command::ImageLs
            | Command::ImageInspect { .. }
            | Command::ImageLoad { .. }
            | Command::ImagePull { .. }
            | Command::ImageRm { .. }
            | Command::ImagePrune) => {
                let in_use = self.manager.as_ref().map(|m| m.image_references()).unwrap_or_default();
                reply(channel, &crate::images::request(id, command, &in_use));
                After::Continue
            }
            Command::NetworkLs => {
                reply(channel, &self.network_request(id, None));
                After::Continue
            }
            Command::NetworkInspect { name } => {
                reply(channel, &self.network_request(id, Some(&name)));
                After::Continue
            }
            other => {
                reply(channel, &self.container_request(id, other));
                After::Continue
            }
        };
        if let After::Shutdown(action, reason) = after {
            self.shutdown(action, reason);
        }
    }

    /// `exec`, on the host or in a container, in a forked helper that answers itself.
    fn exec(
        &self,
        id: u64,
        argv: Vec<String>,
        timeout: Duration,
        container: Option<String>,
        channel: BorrowedFd<'_>,
    ) -> Result<(), String> {
        let fd = channel.try_clone_to_owned().map_err(|e| e.to_string())?;
        let spawned = match container {
            None => exec_helper::spawn(id, || exec_helper::run(&argv, timeout), fd),
            Some(name) => {
                let manager = self.manager.as_ref().ok_or("no containers on this host")?;
                let (pid, plan, cgroup) = manager.exec_target(&name)?;
                exec_helper::spawn(id, || keel_supervisor::health::run_in(pid, &plan, cgroup.as_deref(), &argv, timeout), fd)
            }
        };
        spawned.map(drop).map_err(|e| format!("exec: cannot fork: {e}"))
    }

    /// Container commands answered by the manager.
    fn container_request(&mut self, id: u64, command: Command) -> Response {
        let Some(manager) = self.manager.as_mut() else {
            return Response::failure(id, "no containers on this host");
        };
        if self.late.is_some() && matches!(command, Command::Start { .. } | Command::Restart { .. }) {
            return Response::failure(
                id,
                "containers start once the boot has loaded their modules and applied the firewall; try again in a moment",
            );
        }
        let now = Instant::now();
        let answer = |result: Result<String, String>| match result {
            Ok(text) => Response::success(id, text),
            Err(e) => Response::failure(id, e),
        };
        match command {
            Command::Ps => Response::success(id, manager.ps(now)),
            Command::Inspect { name } => {
                manager.inspect(&name, now).map_or_else(|e| Response::failure(id, e), |d| Response::success(id, d))
            }
            Command::Stats { name } => manager.stats(&name).map_or_else(|e| Response::failure(id, e), |s| Response::success(id, s)),
            Command::Start { name } => answer(manager.start(&name, now)),
            Command::Stop { name } => answer(manager.stop(&name, now)),
            Command::Restart { name } => answer(manager.restart(&name, now)),
            _ => Response::failure(id, "not a container command"),
        }
    }

    /// `network ls` (no name) and `network inspect NAME`.
    fn network_request(&self, id: u64, name: Option<&str>) -> Response {
        let Some(network) = &self.network else {
            return Response::failure(id, "networking is not set up on this host (see the boot log)");
        };
        let network = network.borrow();
        match name {
            None => Response::success(id, crate::network::inspect::list(&network)),
            Some(name) => match crate::network::inspect::inspect(&network, name) {
                Ok(detail) => Response::success(id, detail),
                Err(e) => Response::failure(id, e),
            },
        }
    }

    fn status(&self) -> Status {
        Status {
            hostname: self.state.hostname.clone(),
            state: self.state.phase.name().to_string(),
            uptime_secs: crate::clock::since_boot().as_secs_f64(),
            boot_errors: self.state.boot_errors.clone(),
            pid1_rss_kib: own_rss_kib(),
            watchdog: self.watchdog.as_ref().map(|w| w.status().clone()),
        }
    }

    fn shutdown(&mut self, action: PowerAction, reason: &str) {
        if let Some(watchdog) = self.watchdog.take() {
            watchdog.disarm();
        }
        self.listener = None;
        if let Some(mut manager) = self.manager.take() {
            info!("shutdown ({reason}): stopping containers");
            let mut reap = || reap_all().reaped.into_iter().map(|c| (c.pid, c.code)).collect();
            manager.stop_all(&mut reap);
        }
        shutdown(action, reason, self.grace)
    }
}

impl Connection {
    /// Mark the connection finished; it is dropped after this turn.
    fn close(&mut self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
        self.buffer = LineBuffer::closed();
    }

    fn buffer_alive(&self) -> bool {
        !self.buffer.is_closed()
    }
}

/// Write one response line; a client that went away is not an error worth more than a debug line.
fn reply(channel: BorrowedFd<'_>, response: &Response) {
    let mut file = match channel.try_clone_to_owned() {
        Ok(fd) => File::from(fd),
        Err(e) => return debug!("control reply: {e}"),
    };
    if let Err(e) = crate::control_server::write_all_fd(file.as_fd(), response.to_line().as_bytes()) {
        debug!("control reply: {e}");
    }
    let _ = file.flush();
}

/// PID 1's resident memory in KiB, from /proc/self/status.
fn own_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)).and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// `logs NAME`: the last `tail` lines (all when not given), or what follows `offset`.
fn container_logs(id: u64, name: &str, tail: Option<usize>, offset: Option<LogOffset>) -> Response {
    let name = match ContainerName::new(name) {
        Ok(name) => name,
        Err(e) => return Response::failure(id, e),
    };
    let dir = std::path::Path::new(logs::DEFAULT_DIR);
    let read = match offset {
        Some(offset) => logs::read_from(dir, &name, offset),
        None => logs::tail(dir, &name, tail.unwrap_or(usize::MAX)),
    };
    match read {
        Ok((lines, offset)) => Response::success(id, LogsResult { lines, offset }),
        Err(e) => Response::failure(id, format!("logs {name}: {e}")),
    }
}
