//! PID 1's event loop: one thread, one blocking poll(2) over the signalfd, the control
//! channels, the power buttons and the containers' output pipes, with the container
//! manager's next deadline as the timeout. It never returns and never stops on an error: each
//! handler's failure or panic is logged and the loop goes on.

use crate::control_server::{read_lines, Connection, LineBuffer, ReadOutcome, SerialPort};
use crate::jobs::{JobEnd, Jobs};
use crate::power_button::{contains_power_press, INPUT_EVENT_SIZE};
use crate::reaper::reap_all;
use crate::shutdown::{shutdown, PowerAction};
use crate::{boot::panic_message, exec_helper};
use keel_supervisor::control::{parse_request, Command, LogsResult, Response, Status, DEFAULT_EXEC_TIMEOUT_SECS};
use keel_supervisor::logs::{self, LogOffset};
use keel_supervisor::manager::{ImageNeed, Manager};
use keel_supervisor::spec::ContainerName;
use log::{debug, error, info, warn};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::Signal;
use nix::sys::signalfd::SignalFd;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
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
    /// The first-boot job while it runs (the boot waits for it in the loop).
    pub firstboot_job: Option<keel_supervisor::worker::JobId>,
}

/// Boot work that waits for a job's end: the loop calls it with the job's result (the
/// boot steps that follow first boot run this way, while the loop answers).
pub type AfterJob = Box<dyn FnOnce(&mut EventLoop, Result<serde_json::Value, keel_supervisor::worker::WorkerError>)>;

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
    jobs: Jobs,
    after_jobs: Vec<(keel_supervisor::worker::JobId, AfterJob)>,
    /// Jobs that bring a container's image, with the image reference the manager waits on.
    image_jobs: std::collections::HashMap<keel_supervisor::worker::JobId, String>,
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
    Job(keel_supervisor::worker::JobId),
}

/// How long workers get between SIGTERM and SIGKILL at shutdown.
const JOB_CANCEL_GRACE: Duration = Duration::from_secs(2);

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
            jobs: Jobs::new(Some(PathBuf::from(keel_supervisor::cgroup::DEFAULT_ROOT)), None),
            after_jobs: Vec::new(),
            image_jobs: std::collections::HashMap::new(),
        }
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

    /// During boot: drive only the uplink's DHCP client for `duration` (sleep when there
    /// is none). The boot's registry probe waits this way between attempts, so the lease
    /// can arrive while it waits. (First boot needs no such wait: it runs in a worker
    /// while the loop itself drives DHCP.)
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

    /// The jobs registry (boot steps start jobs in it before the loop runs).
    pub fn jobs_mut(&mut self) -> &mut Jobs {
        &mut self.jobs
    }

    /// What the host knows about itself (the boot steps record into it, before and
    /// while the loop runs).
    pub fn state_mut(&mut self) -> &mut HostState {
        &mut self.state
    }

    /// Call `then` with job `id`'s result when it ends (the loop runs meanwhile).
    pub fn after_job(&mut self, id: keel_supervisor::worker::JobId, then: AfterJob) {
        self.after_jobs.push((id, then));
    }

    /// Start (or join) the job that brings an image containers need: a pull or an
    /// import in a worker. The manager is told when it starts and when it ends.
    pub fn start_image_need(&mut self, need: ImageNeed) -> Result<keel_supervisor::worker::JobId, keel_supervisor::worker::WorkerError> {
        let reference = need.reference();
        let started = match self.jobs.find_running(need.kind, &reference) {
            Some(job) => Ok(job),
            None => self.jobs.start(need.kind, &reference, crate::images::need_work(need.source.clone())),
        };
        match &started {
            Ok(job) => {
                self.image_jobs.insert(*job, reference.clone());
                if let Some(manager) = self.manager.as_mut() {
                    manager.image_job_started(&reference, need.kind, *job);
                }
            }
            Err(e) => {
                if let Some(manager) = self.manager.as_mut() {
                    manager.image_done(&reference, Err(e.to_string()), Instant::now());
                }
            }
        }
        started
    }

    /// Tick the manager, then start the image jobs its containers wait for.
    fn tick_manager(&mut self, now: Instant) {
        let Some(manager) = self.manager.as_mut() else { return };
        manager.tick(now);
        for need in manager.take_image_needs() {
            if let Err(e) = self.start_image_need(need) {
                warn!("{e}");
            }
        }
    }

    /// Supervise these containers.
    pub fn set_manager(&mut self, manager: Manager) {
        self.manager = Some(manager);
    }

    /// Run forever. The boot may still be waiting for a job (phase `booting`); it
    /// finishes from the loop (see [`EventLoop::after_job`]).
    pub fn run(mut self, grace: Duration) -> ! {
        self.grace = grace;
        self.on_reaped(reap_all().reaped);
        self.tick_manager(Instant::now());
        loop {
            if let Err(payload) = catch_unwind(AssertUnwindSafe(|| self.turn())) {
                error!("event loop: panicked: {}; continuing", panic_message(&payload));
            }
        }
    }

    /// Wait for one batch of events and handle them.
    fn turn(&mut self) {
        if self.signals.is_none() {
            let reaped = reap_all().reaped;
            self.on_reaped(reaped);
        }
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
                Source::Job(id) => self.on_job_readable(id),
            }
        }
        for end in self.jobs.tick(Instant::now()) {
            self.on_job_end(end);
        }
        self.connections.retain(|c| c.buffer_alive());
        if let Some(uplink) = self.uplink.as_mut() {
            uplink.on_timer(Instant::now());
        }
        self.tick_manager(Instant::now());
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
        for (id, fd) in self.jobs.fds() {
            fds.push(add(&mut sources, Source::Job(id), fd));
        }
        let deadline = [
            port_quiet,
            self.manager.as_ref().and_then(Manager::next_deadline),
            self.uplink.as_ref().and_then(|u| u.next_deadline()),
            self.jobs.next_deadline(),
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
                Ok(Signal::SIGCHLD) => self.on_reaped(reap_all().reaped),
                Ok(Signal::SIGTERM) => self.shutdown(PowerAction::PowerOff, "SIGTERM"),
                Ok(Signal::SIGPWR) => self.shutdown(PowerAction::PowerOff, "SIGPWR"),
                Ok(Signal::SIGINT) => self.shutdown(PowerAction::Reboot, "ctrl-alt-del (SIGINT)"),
                Ok(other) => info!("ignoring {other}"),
                Err(_) => info!("ignoring signal {number}"),
            }
        }
    }

    /// Offer each reaped child to the jobs first (a worker), then to the manager.
    fn on_reaped(&mut self, reaped: Vec<crate::reaper::Reaped>) {
        let now = Instant::now();
        for child in reaped {
            if let Some(end) = self.jobs.on_exit(child.pid, child.code, now) {
                self.on_job_end(end);
                continue;
            }
            let known = self.manager.as_mut().is_some_and(|m| m.on_exit(child.pid, child.code, now));
            if !known {
                debug!("reaped pid {} (exit {})", child.pid, child.code);
            }
        }
    }

    /// A worker wrote: read its events; progress goes to the requests following it.
    fn on_job_readable(&mut self, id: keel_supervisor::worker::JobId) {
        let moved = self.jobs.on_readable(id, Instant::now());
        if moved.is_empty() {
            return;
        }
        let mut gone = Vec::new();
        for waiter in self.jobs.subscribers(id) {
            for item in &moved {
                let line = keel_supervisor::control::ProgressLine::new(waiter.request, id, Some(item.clone())).to_line();
                if !send_progress(&waiter.channel, &line) {
                    gone.push(waiter.request);
                    break;
                }
            }
        }
        if !gone.is_empty() {
            // The client went away (e.g. Ctrl-C on keelctl): the job goes on without it.
            self.jobs.retain_waiters(id, |w| !gone.contains(&w.request));
        }
    }

    /// A job ended: answer the requests that waited for it; containers waiting for its
    /// image start (or count a failed start).
    fn on_job_end(&mut self, end: JobEnd) {
        if let Some(reference) = self.image_jobs.remove(&end.id) {
            if let Some(manager) = self.manager.as_mut() {
                let result = end.result.as_ref().map(|_| ()).map_err(|e| e.to_string());
                manager.image_done(&reference, result, Instant::now());
            }
        }
        let response = |request: u64| match &end.result {
            Ok(value) => Response::success(request, value),
            Err(e) => Response::failure(request, e.to_string()),
        };
        for waiter in &end.waiters {
            send_deferred(&waiter.channel, &response(waiter.request).to_line());
        }
        if let Some(index) = self.after_jobs.iter().position(|(id, _)| *id == end.id) {
            let (_, then) = self.after_jobs.remove(index);
            then(self, end.result);
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
                match (&self.state.firstboot, self.state.firstboot_job) {
                    (Some(status), _) => reply(channel, &Response::success(id, status)),
                    (None, Some(job)) => {
                        reply(channel, &Response::failure(id, format!("first boot is still running (job {job}); ask again when it ends")))
                    }
                    (None, None) => reply(channel, &Response::failure(id, "the first-boot step did not run")),
                }
                After::Continue
            }
            command @ (Command::ImageInspect { .. } | Command::ImageLoad { .. } | Command::ImagePull { .. }) => {
                if let Err(e) = self.image_job(id, command, channel) {
                    reply(channel, &Response::failure(id, e));
                }
                After::Continue
            }
            Command::ImageJobs => {
                reply(channel, &Response::success(id, self.jobs.list(Instant::now())));
                After::Continue
            }
            command @ (Command::ImageLs | Command::ImageRm { .. } | Command::ImagePrune) => {
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

    /// `image pull | load | inspect`: start the job (or join the same one already
    /// running); the request's reply is sent when it ends, progress lines before that
    /// when asked. PID 1 goes on at once.
    fn image_job(&mut self, id: u64, command: Command, channel: BorrowedFd<'_>) -> Result<(), String> {
        let (kind, target, progress) = crate::images::job_of(&command).ok_or("not an image job")?;
        let job = match self.jobs.find_running(kind, &target) {
            Some(job) => job,
            None => self.jobs.start(kind, &target, crate::images::job_work(command)).map_err(|e| e.to_string())?,
        };
        let channel = channel.try_clone_to_owned().map_err(|e| format!("control channel: {e}"))?;
        if progress {
            let first = keel_supervisor::control::ProgressLine::new(id, job, None).to_line();
            send_deferred(&channel, &first);
            for item in self.jobs.items(job) {
                send_deferred(&channel, &keel_supervisor::control::ProgressLine::new(id, job, Some(item)).to_line());
            }
        }
        self.jobs.wait_for(job, crate::jobs::Waiter { request: id, channel, progress }).map_err(|_| format!("job {job} ended at once"))
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
        }
    }

    fn shutdown(&mut self, action: PowerAction, reason: &str) {
        self.listener = None;
        for end in self.jobs.cancel_all(JOB_CANCEL_GRACE) {
            self.on_job_end(end);
        }
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

/// Send a progress line without waiting: a client that cannot take it now misses it
/// (the next one carries the newer figures). False when the client is gone.
fn send_progress(channel: &OwnedFd, line: &str) -> bool {
    match nix::unistd::write(channel, line.as_bytes()) {
        Ok(n) if n == line.len() => true,
        // Part of the line went out: the rest must follow, or the stream is garbled.
        Ok(n) => send_deferred(channel, &line[n..]),
        Err(nix::Error::EAGAIN | nix::Error::EINTR) => true,
        Err(e) => {
            debug!("progress line: {e}");
            false
        }
    }
}

/// Send a line to a request that waits for a job (a progress line or its deferred
/// reply) on `channel`, a duplicate of the client's channel. False when the client is
/// gone. The one place to switch to the control connections' outbox.
fn send_deferred(channel: &OwnedFd, line: &str) -> bool {
    match crate::control_server::write_all_fd(channel.as_fd(), line.as_bytes()) {
        Ok(()) => true,
        Err(e) => {
            debug!("deferred control reply: {e}");
            false
        }
    }
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
