//! PID 1's event loop: one thread, one blocking poll(2) over the signalfd, the control
//! channels, the power buttons and the containers' output pipes, with the container
//! manager's next deadline as the timeout. It never returns and never stops on an error: each
//! handler's failure or panic is logged and the loop goes on.
//!
//! Control replies never wait: each is queued on its connection ([`EventLoop::send`], by
//! [`ConnectionId`]) and written as far as the socket takes it, the rest when poll(2)
//! says the socket is writable. Connections are bounded ([`ControlLimits`]).

use crate::connections::{self, Connection, ConnectionId, ControlLimits, Transport};
use crate::control_server::SerialPort;
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
use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::time::{Duration, Instant};

mod network_reload;
mod port_streams;
mod streams;

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
    /// Time since the kernel's start when the boot reached `ready` (for `metrics`).
    pub ready_at: Option<Duration>,
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
    /// Out of descriptors on accept: the listener's pause and the warning's rate limit.
    accept_backoff: crate::accept_backoff::AcceptBackoff,
    connections: BTreeMap<ConnectionId, Connection>,
    port: Option<Connection>,
    port_quiet_until: Option<Instant>,
    /// Streams carried over the port (see [`port_streams`]).
    port_streams: port_streams::PortStreams,
    limits: ControlLimits,
    next_id: u64,
    /// Exec helpers that answer a connection themselves, by pid: while one runs, its
    /// connection is not idle.
    exec_helpers: BTreeMap<nix::unistd::Pid, ConnectionId>,
    buttons: Vec<(PathBuf, File)>,
    manager: Option<Manager>,
    uplink: Option<crate::network::uplink::DhcpUplink>,
    network: Option<crate::network::Shared>,
    grace: Duration,
    state: HostState,
    jobs: Jobs,
    /// Jobs that bring a container's image, with the image reference the manager waits on.
    image_jobs: std::collections::HashMap<keel_supervisor::worker::JobId, String>,
    after_jobs: Vec<(keel_supervisor::worker::JobId, AfterJob)>,
    api: Option<crate::api::supervise::ApiProcess>,
    syslog: Option<crate::syslog::supervise::Forwarding>,
    late: Option<crate::late_boot::LateBoot>,
    watchdog: Option<crate::watchdog::Watchdog>,
    wedge: Option<Duration>,
    /// A `network reload` waiting for its containers to stop.
    network_reload: Option<network_reload::PendingReload>,
}

/// Which source a poll entry belongs to.
#[derive(Clone)]
enum Source {
    Signals,
    Listener,
    Connection(ConnectionId),
    Port,
    PortStream(u64),
    Button(usize),
    Output(ContainerName, usize),
    Uplink,
    Job(keel_supervisor::worker::JobId),
    Syslog,
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
            accept_backoff: Default::default(),
            connections: BTreeMap::new(),
            port: None,
            port_quiet_until: None,
            port_streams: port_streams::PortStreams::default(),
            limits: ControlLimits::default(),
            next_id: 1,
            exec_helpers: BTreeMap::new(),
            buttons: Vec::new(),
            manager: None,
            uplink: None,
            network: None,
            grace: Duration::from_secs(5),
            state: HostState::default(),
            jobs: Jobs::new(Some(PathBuf::from(keel_supervisor::cgroup::DEFAULT_ROOT)), None),
            image_jobs: std::collections::HashMap::new(),
            after_jobs: Vec::new(),
            api: None,
            syslog: None,
            late: None,
            watchdog: None,
            wedge: None,
            network_reload: None,
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
        let id = self.fresh_id();
        self.port = Some(Connection::new(id, Transport::Port(port.file), &self.limits, Instant::now()));
    }

    /// Bound control connections by `limits` instead of the defaults (the test-only
    /// `keel.test.unbounded` lifts the caps).
    pub fn set_control_limits(&mut self, limits: ControlLimits) {
        self.limits = limits;
    }

    fn fresh_id(&mut self) -> ConnectionId {
        let id = ConnectionId(self.next_id);
        self.next_id += 1;
        id
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

    /// Finish the late boot when it is due, then tick the manager and start the image
    /// jobs its containers wait for. Containers wait for the late boot (its bridges and
    /// firewall).
    fn tick_manager(&mut self, now: Instant) {
        if let Some(late) = self.late.take_if(|late| late.due()) {
            let outcome = late.finish();
            for problem in outcome.problems {
                error!("{problem}");
                self.state.boot_errors.push(problem.to_string());
            }
            self.watchdog = outcome.watchdog.or(self.watchdog.take());
        }
        if let (None, Some(wedge)) = (&self.late, self.wedge) {
            self.wedge = None;
            crate::logger::marker(&format!("keel: test: wedging the event loop for {} s (keel.test.wedge)", wedge.as_secs()));
            std::thread::sleep(wedge);
            crate::logger::marker("keel: test: the event loop runs again");
        }
        if self.late.is_some() {
            return;
        }
        self.continue_network_reload(now);
        let Some(manager) = self.manager.as_mut() else { return };
        manager.tick(now);
        for need in manager.take_image_needs() {
            if let Err(e) = self.start_image_need(need) {
                warn!("{e}");
            }
        }
        self.purge_removed();
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

    /// Supervise the remote API process.
    pub fn set_api(&mut self, api: crate::api::supervise::ApiProcess) {
        self.api = Some(api);
    }

    /// Forward logs to syslog through this forwarder.
    pub fn set_syslog(&mut self, syslog: crate::syslog::supervise::Forwarding) {
        self.syslog = Some(syslog);
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
        // Control requests are answered before container output is copied: a flooding
        // container then delays a request by at most the rest of one pipe event.
        let (outputs, others): (Vec<_>, Vec<_>) = ready.into_iter().partition(|(source, _)| matches!(source, Source::Output(..)));
        for (source, flags) in others {
            self.on_ready(source, flags);
        }
        self.serve_requests();
        for (source, flags) in outputs {
            self.on_ready(source, flags);
        }
        for end in self.jobs.tick(Instant::now()) {
            self.on_job_end(end);
        }
        self.recycle_port();
        self.close_idle(Instant::now());
        self.connections.retain(|_, c| !c.finished());
        if let Some(uplink) = self.uplink.as_mut() {
            uplink.on_timer(Instant::now());
        }
        self.tick_manager(Instant::now());
        if let Some(watchdog) = self.watchdog.as_mut() {
            watchdog.pet_if_due(Instant::now());
        }
        if let Some(api) = self.api.as_mut() {
            api.tick(Instant::now());
        }
        if let Some(syslog) = self.syslog.as_mut() {
            syslog.tick(Instant::now());
        }
    }

    /// Handle one source that poll(2) reported.
    fn on_ready(&mut self, source: Source, flags: PollFlags) {
        match source {
            Source::Signals => self.on_signals(),
            Source::Listener => self.on_accept(),
            Source::Connection(id) => self.on_connection(id, flags),
            Source::Port => self.on_port(flags),
            Source::PortStream(id) => {
                if let Some(port) = self.port.as_mut() {
                    self.port_streams.on_ready(id, flags, port, Instant::now());
                }
            }
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
            Source::Syslog => {
                if let Some(syslog) = self.syslog.as_mut() {
                    syslog.on_writable();
                }
            }
        }
    }

    fn wait(&mut self) -> Vec<(Source, PollFlags)> {
        let now = Instant::now();
        let port_quiet = self.port_quiet_until.filter(|until| *until > now);
        let mut sources = Vec::new();
        let mut fds: Vec<PollFd> = Vec::new();
        fn add<'fd>(sources: &mut Vec<Source>, source: Source, fd: BorrowedFd<'fd>) -> PollFd<'fd> {
            add_for(sources, source, fd, PollFlags::POLLIN)
        }
        fn add_for<'fd>(sources: &mut Vec<Source>, source: Source, fd: BorrowedFd<'fd>, flags: PollFlags) -> PollFd<'fd> {
            sources.push(source);
            PollFd::new(fd, flags)
        }
        if let Some(signals) = &self.signals {
            fds.push(add(&mut sources, Source::Signals, signals.as_fd()));
        }
        if let Some(listener) = self.listener.as_ref().filter(|_| !self.accept_backoff.is_paused(now)) {
            fds.push(add(&mut sources, Source::Listener, listener.as_fd()));
        }
        for (id, connection) in &self.connections {
            let interest = connection.interest(&self.limits);
            fds.push(add_for(&mut sources, Source::Connection(*id), connection.transport.as_fd(), interest));
        }
        if let (Some(port), None) = (&self.port, port_quiet) {
            fds.push(add_for(&mut sources, Source::Port, port.transport.as_fd(), port.interest(&self.limits)));
            for (id, fd, flags) in self.port_streams.interest(port.output_len()) {
                fds.push(add_for(&mut sources, Source::PortStream(id), fd, flags));
            }
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
        // Requests left over from the last turn (the per-turn cap) are served at once.
        let pending_requests = self.connections.values().chain(self.port.as_ref()).any(Connection::has_requests).then_some(now);
        let idle_deadline = self.connections.values().filter_map(|c| c.activity.expires(self.limits.idle_timeout)).min();
        for (id, fd) in self.jobs.fds() {
            fds.push(add(&mut sources, Source::Job(id), fd));
        }
        if let Some(fd) = self.syslog.as_ref().and_then(|s| s.poll_fd()) {
            fds.push(add_for(&mut sources, Source::Syslog, fd, PollFlags::POLLOUT));
        }
        let deadline = [
            port_quiet,
            self.manager.as_ref().and_then(Manager::next_deadline),
            self.uplink.as_ref().and_then(|u| u.next_deadline()),
            pending_requests,
            idle_deadline,
            self.jobs.next_deadline(),
            self.api.as_ref().and_then(|a| a.next_deadline()),
            self.syslog.as_ref().and_then(|s| s.next_deadline()),
            self.accept_backoff.deadline(now),
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

    /// Offer each reaped child to the exec helpers and jobs first (a worker), then to the manager.
    fn on_reaped(&mut self, reaped: Vec<crate::reaper::Reaped>) {
        let now = Instant::now();
        for child in reaped {
            if let Some(id) = self.exec_helpers.remove(&child.pid) {
                self.job_finished(id, now);
                continue;
            }
            if let Some(end) = self.jobs.on_exit(child.pid, child.code, now) {
                self.on_job_end(end);
                continue;
            }
            let known = self.late.as_mut().is_some_and(|late| late.on_exit(child.pid, child.code))
                || self.manager.as_mut().is_some_and(|m| m.on_exit(child.pid, child.code, now))
                || self.api.as_mut().is_some_and(|a| a.on_exit(child.pid, child.code, now))
                || self.syslog.as_mut().is_some_and(|s| s.on_exit(child.pid, child.code, now));
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
        let subscribers: Vec<(u64, ConnectionId)> = self.jobs.subscribers(id).map(|w| (w.request, w.channel)).collect();
        let mut gone = Vec::new();
        for (request, channel) in subscribers {
            for item in &moved {
                let line = keel_supervisor::control::ProgressLine::new(request, id, Some(item.clone())).to_line();
                if !self.send_progress(channel, &line) {
                    gone.push(request);
                    break;
                }
            }
        }
        if !gone.is_empty() {
            // The client went away (e.g. Ctrl-C on keelctl): the job goes on without it.
            self.jobs.retain_waiters(id, |w| !gone.contains(&w.request));
        }
    }

    /// Queue a progress line on `channel` unless its client is behind (then this line is
    /// skipped: progress never piles up). False when the connection is gone.
    fn send_progress(&mut self, channel: ConnectionId, line: &str) -> bool {
        let limit = self.limits.max_buffered_output / 2;
        let Some(connection) = self.connection_mut(channel).filter(|c| !c.is_closed()) else { return false };
        if connection.output_len() + line.len() > limit {
            return true;
        }
        connection.send(line.as_bytes(), Instant::now()).is_ok()
    }

    /// A job ended: answer the requests that waited for it; containers waiting for its
    /// image start (or count a failed start).
    fn on_job_end(&mut self, end: JobEnd) {
        let now = Instant::now();
        if let Some(reference) = self.image_jobs.remove(&end.id) {
            if let Some(manager) = self.manager.as_mut() {
                let result = end.result.as_ref().map(|_| ()).map_err(|e| e.to_string());
                manager.image_done(&reference, result, now);
            }
        }
        for waiter in &end.waiters {
            let response = match &end.result {
                Ok(value) => Response::success(waiter.request, value),
                Err(e) => Response::failure(waiter.request, e.to_string()),
            };
            self.reply(waiter.channel, &response);
            self.job_finished(waiter.channel, now);
        }
        if let Some(index) = self.after_jobs.iter().position(|(id, _)| *id == end.id) {
            let (_, then) = self.after_jobs.remove(index);
            then(self, end.result);
        }
    }

    /// Accept new clients (a few per turn). Past the cap, the longest-idle connection
    /// makes room; when every connection waits for a job, the new one gets one error
    /// line and is closed.
    fn on_accept(&mut self) {
        for _ in 0..connections::MAX_ACCEPTS_PER_TURN {
            let Some(listener) = &self.listener else { return };
            let stream = match listener.accept() {
                Ok((stream, _)) => stream,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    // Out of descriptors: the listener leaves the poll set for a moment
                    // instead of waking the loop at once (one warning per period).
                    if let Some(warning) = self.accept_backoff.on_error(&e, Instant::now()) {
                        warn!("{warning}");
                    }
                    return;
                }
            };
            if stream.set_nonblocking(true).is_err() {
                continue;
            }
            let now = Instant::now();
            if self.connections.len() >= self.limits.max_connections {
                let table = self.connections.iter().map(|(id, c)| (*id, c.activity));
                match connections::eviction_candidate(table) {
                    Some(victim) => {
                        debug!("control connection {victim}: closed to make room (the longest idle of {})", self.connections.len());
                        if let Some(mut old) = self.connections.remove(&victim) {
                            old.close();
                        }
                    }
                    None => {
                        let refusal = Response::failure(
                            0,
                            format!("too many control connections ({} waiting for answers); try again later", self.connections.len()),
                        );
                        let _ = nix::unistd::write(stream.as_fd(), refusal.to_line().as_bytes());
                        warn!("control socket: refused a connection: {} open, none idle", self.connections.len());
                        continue;
                    }
                }
            }
            let id = self.fresh_id();
            self.connections.insert(id, Connection::new(id, Transport::Socket(stream), &self.limits, now));
        }
    }

    /// A client's socket is readable or writable (or broke).
    fn on_connection(&mut self, id: ConnectionId, flags: PollFlags) {
        let Some(connection) = self.connections.get_mut(&id) else { return };
        let now = Instant::now();
        if flags.contains(PollFlags::POLLOUT) {
            connection.flush(now);
        }
        if flags.intersects(PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR) {
            connection.read(&self.limits, now);
        }
    }

    fn on_port(&mut self, flags: PollFlags) {
        let Some(port) = self.port.as_mut() else { return };
        if flags.contains(PollFlags::POLLHUP) && !flags.contains(PollFlags::POLLIN) {
            // The host side is closed: its client is gone, and so are its answers.
            port.reset();
            self.port_streams.clear();
            self.port_quiet_until = Some(Instant::now() + PORT_QUIET);
            return;
        }
        let now = Instant::now();
        if flags.contains(PollFlags::POLLOUT) {
            port.flush(now);
        }
        if flags.contains(PollFlags::POLLIN) {
            port.read(&self.limits, now);
        }
    }

    /// The port's client finished (EOF, after its answers) or misbehaved (a line too
    /// long): start over with the next client of the port.
    fn recycle_port(&mut self) {
        if let Some(port) = self.port.as_mut().filter(|p| p.finished()) {
            port.reset();
            self.port_streams.clear();
            self.port_quiet_until = Some(Instant::now() + PORT_QUIET);
        }
    }

    /// Handle waiting request lines: at most the per-turn cap on each connection.
    fn serve_requests(&mut self) {
        let max = self.limits.max_requests_per_turn;
        let mut work: Vec<(ConnectionId, Vec<String>)> =
            self.connections.iter_mut().filter(|(_, c)| c.has_requests()).map(|(id, c)| (*id, c.take_requests(max))).collect();
        if let Some(port) = self.port.as_mut().filter(|p| p.has_requests()) {
            work.push((port.id, port.take_requests(max)));
        }
        for (id, lines) in work {
            for line in lines {
                if self.port_stream_line(&line, id) {
                    continue;
                }
                self.on_request(&line, id);
            }
        }
    }

    /// Close the connections idle past the timeout.
    fn close_idle(&mut self, now: Instant) {
        let table = self.connections.iter().map(|(id, c)| (*id, c.activity));
        for id in connections::expired(table, self.limits.idle_timeout, now) {
            if let Some(connection) = self.connections.get_mut(&id) {
                debug!("control connection {id}: idle for {:?}; closed", self.limits.idle_timeout.unwrap_or_default());
                connection.close();
            }
        }
    }

    /// The connection `id` (a socket client or the port).
    fn connection_mut(&mut self, id: ConnectionId) -> Option<&mut Connection> {
        match self.port.as_mut() {
            Some(port) if port.id == id => Some(port),
            _ => self.connections.get_mut(&id),
        }
    }

    /// Queue `response` as a line on connection `id` and write what its socket takes now;
    /// the rest goes out when it is writable. Never waits. A connection that is gone is
    /// an error; one whose client lets replies pile up past the cap is closed.
    pub fn send(&mut self, id: ConnectionId, response: &Response) -> Result<(), SendError> {
        let connection = self.connection_mut(id).filter(|c| !c.is_closed()).ok_or(SendError::Gone(id))?;
        connection.send(response.to_line().as_bytes(), Instant::now()).map_err(|full| {
            warn!("control connection {id}: the client does not read its replies ({full}); closed");
            SendError::Overflow(id, full)
        })
    }

    /// A job (an exec helper, a worker) will answer on connection `id` later: until
    /// [`EventLoop::job_finished`], the connection is neither idle nor evicted.
    pub fn job_started(&mut self, id: ConnectionId) {
        if let Some(connection) = self.connection_mut(id) {
            connection.activity.in_flight += 1;
        }
    }

    /// A job started with [`EventLoop::job_started`] is over.
    pub fn job_finished(&mut self, id: ConnectionId, now: Instant) {
        if let Some(connection) = self.connection_mut(id) {
            connection.activity.in_flight = connection.activity.in_flight.saturating_sub(1);
            connection.activity.last_active = now;
        }
    }

    /// A duplicate of connection `id`'s descriptor, for a helper that answers on it itself.
    fn channel_fd(&mut self, id: ConnectionId) -> Result<OwnedFd, String> {
        let connection = self.connection_mut(id).ok_or_else(|| format!("control connection {id} is gone"))?;
        connection.transport.as_fd().try_clone_to_owned().map_err(|e| e.to_string())
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

    /// Answer one request line from connection `channel`.
    fn on_request(&mut self, line: &str, channel: ConnectionId) {
        let request = match parse_request(line) {
            Ok(request) => request,
            Err(response) => return self.reply(channel, &response),
        };
        let id = request.id;
        let after = match request.command {
            Command::Status => {
                self.reply(channel, &Response::success(id, self.status()));
                After::Continue
            }
            Command::Poweroff => {
                self.reply(channel, &Response::success(id, "powering off"));
                After::Shutdown(PowerAction::PowerOff, "keelctl poweroff")
            }
            Command::Reboot => {
                self.reply(channel, &Response::success(id, "rebooting"));
                After::Shutdown(PowerAction::Reboot, "keelctl reboot")
            }
            Command::Exec { argv, timeout_secs, container } => {
                let timeout = Duration::from_secs(timeout_secs.unwrap_or(DEFAULT_EXEC_TIMEOUT_SECS));
                if let Err(e) = self.exec(id, argv, timeout, container, channel) {
                    self.reply(channel, &Response::failure(id, e));
                }
                After::Continue
            }
            command @ (Command::ExecStream { .. } | Command::LogsFollow { .. }) => {
                if let Err(e) = self.start_stream(id, command, channel) {
                    self.reply(channel, &Response::failure(id, e.to_string()));
                }
                After::Continue
            }
            Command::Logs { name, tail, offset } => {
                self.reply(channel, &container_logs(id, &name, tail, offset));
                After::Continue
            }
            Command::Firstboot => {
                match (&self.state.firstboot, self.state.firstboot_job) {
                    (Some(status), _) => {
                        let response = Response::success(id, status);
                        self.reply(channel, &response)
                    }
                    (None, Some(job)) => self
                        .reply(channel, &Response::failure(id, format!("first boot is still running (job {job}); ask again when it ends"))),
                    (None, None) => self.reply(channel, &Response::failure(id, "the first-boot step did not run")),
                }
                After::Continue
            }
            command @ (Command::ImageInspect { .. } | Command::ImageLoad { .. } | Command::ImagePull { .. }) => {
                if let Err(e) = self.image_job(id, command, channel) {
                    self.reply(channel, &Response::failure(id, e));
                }
                After::Continue
            }
            Command::ImageJobs => {
                let list = self.jobs.list(Instant::now());
                self.reply(channel, &Response::success(id, list));
                After::Continue
            }
            command @ (Command::ImageLs | Command::ImageRm { .. } | Command::ImagePrune) => {
                let in_use = self.manager.as_ref().map(|m| m.image_references()).unwrap_or_default();
                let response = crate::images::request(id, command, &in_use);
                self.reply(channel, &response);
                After::Continue
            }
            command @ (Command::Apply { .. } | Command::Diff { .. } | Command::Rm { .. }) => {
                let response = self.reconcile_request(id, command, None);
                self.reply(channel, &response);
                After::Continue
            }
            Command::Reload { restart_attached } => {
                self.reload_request(id, restart_attached, channel);
                After::Continue
            }
            Command::Metrics => {
                self.reply(channel, &Response::success(id, self.metrics()));
                After::Continue
            }
            Command::NetworkLs => {
                self.reply(channel, &self.network_request(id, None));
                After::Continue
            }
            Command::NetworkInspect { name } => {
                self.reply(channel, &self.network_request(id, Some(&name)));
                After::Continue
            }
            Command::NetworkReload { restart_attached } => {
                self.network_reload_request(id, restart_attached, channel);
                After::Continue
            }
            other => {
                let response = self.container_request(id, other);
                self.reply(channel, &response);
                After::Continue
            }
        };
        if let After::Shutdown(action, reason) = after {
            self.shutdown(action, reason);
        }
    }

    /// Queue one response line on `channel`; a client that went away (or does not read
    /// its replies) is not an error worth more than a debug line.
    fn reply(&mut self, channel: ConnectionId, response: &Response) {
        if let Err(e) = self.send(channel, response) {
            debug!("control reply: {e}");
        }
    }

    /// `image pull | load | inspect`: start the job (or join the same one already
    /// running); the request's reply is sent when it ends, progress lines before that
    /// when asked. PID 1 goes on at once.
    fn image_job(&mut self, id: u64, command: Command, channel: ConnectionId) -> Result<(), String> {
        let (kind, target, progress) = crate::images::job_of(&command).ok_or("not an image job")?;
        let job = match self.jobs.find_running(kind, &target) {
            Some(job) => job,
            None => self.jobs.start(kind, &target, crate::images::job_work(command)).map_err(|e| e.to_string())?,
        };
        if progress {
            let first = keel_supervisor::control::ProgressLine::new(id, job, None).to_line();
            self.send_progress(channel, &first);
            for item in self.jobs.items(job) {
                self.send_progress(channel, &keel_supervisor::control::ProgressLine::new(id, job, Some(item)).to_line());
            }
        }
        self.jobs.wait_for(job, crate::jobs::Waiter { request: id, channel, progress }).map_err(|_| format!("job {job} ended at once"))?;
        self.job_started(channel);
        Ok(())
    }

    /// `exec`, on the host or in a container, in a forked helper that answers itself.
    fn exec(
        &mut self,
        id: u64,
        argv: Vec<String>,
        timeout: Duration,
        container: Option<String>,
        channel: ConnectionId,
    ) -> Result<(), String> {
        let fd = self.channel_fd(channel)?;
        let spawned = match container {
            None => exec_helper::spawn(id, || exec_helper::run(&argv, timeout), fd),
            Some(name) => {
                let manager = self.manager.as_ref().ok_or("no containers on this host")?;
                let (pid, plan, cgroup) = manager.exec_target(&name)?;
                exec_helper::spawn(id, || keel_supervisor::health::run_in(pid, &plan, cgroup.as_deref(), &argv, timeout), fd)
            }
        };
        let pid = spawned.map_err(|e| format!("exec: cannot fork: {e}"))?;
        self.exec_helpers.insert(pid, channel);
        self.job_started(channel);
        Ok(())
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

    /// `apply`, `diff`, `rm` and the containers' half of `reload` (see
    /// [`crate::reconcile`]): answered once the plan has been started; the manager's ticks
    /// carry it out. `networks` is what the reload did with network.toml (its report's
    /// lines), shown with the answer.
    pub(super) fn reconcile_request(&mut self, id: u64, command: Command, networks: Option<String>) -> Response {
        use crate::reconcile;
        let forced = reconcile::NetworkRestarts::new();
        let network = self.network.as_ref().map(|n| n.borrow().config.clone());
        let Some(manager) = self.manager.as_mut() else {
            return Response::failure(id, "no containers on this host");
        };
        let dir = std::path::Path::new(keel_supervisor::manager::CONTAINERS_DIR);
        let now = Instant::now();
        let what = crate::api::roles::command_name(&command);
        let result = match command {
            Command::Apply { files } => reconcile::apply(manager, dir, &files, network.as_ref(), false, now),
            Command::Diff { files } => reconcile::apply(manager, dir, &files, network.as_ref(), true, now),
            Command::Rm { name, purge } => reconcile::remove(manager, dir, &name, purge, now),
            Command::Reload { .. } => reconcile::reload(manager, dir, network.as_ref(), &forced, now),
            _ => return Response::failure(id, "not a reconcile command"),
        };
        match result {
            Ok(mut report) => {
                report.networks = networks;
                info!("{what}: {}", report.plan.to_text().trim_end().replace('\n', "; "));
                Response::success(id, report)
            }
            Err(e) => {
                info!("{what}: refused: {}", e.to_string().replace('\n', "; "));
                Response::failure(id, e.to_string())
            }
        }
    }

    /// A purge job for each container a reconcile removed with `--purge`.
    fn purge_removed(&mut self) {
        let Some(manager) = self.manager.as_mut() else { return };
        for removed in manager.take_removed().into_iter().filter(|r| r.purge) {
            let work = crate::reconcile::purge_work(
                removed.name.clone(),
                PathBuf::from(crate::containers::STATE_ROOT),
                PathBuf::from(logs::DEFAULT_DIR),
            );
            match self.jobs.start(keel_supervisor::worker::JobKind::Purge, removed.name.as_str(), work) {
                Ok(job) => info!("container {}: purging its state (job {job})", removed.name),
                Err(e) => warn!("container {}: cannot purge its state: {e}", removed.name),
            }
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
                Err(e) => Response::failure(id, e.to_string()),
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

    /// `metrics`: a few small files per container and under /proc, one statvfs.
    fn metrics(&self) -> keel_supervisor::metrics::MetricsSnapshot {
        let firstboot = self.state.firstboot.as_ref().map(|f| f.state.name());
        keel_supervisor::metrics::MetricsSnapshot {
            host: crate::metrics::host_metrics(self.state.phase.name(), self.state.ready_at, firstboot),
            containers: self.manager.as_ref().map(Manager::metrics).unwrap_or_default(),
            keel: keel_supervisor::metrics::KeelCounters {
                console_lines_dropped: self.manager.as_ref().map_or(0, Manager::console_lines_dropped),
                ..crate::syslog::counters()
            },
        }
    }

    fn shutdown(&mut self, action: PowerAction, reason: &str) {
        if let Some(watchdog) = self.watchdog.take() {
            watchdog.disarm();
        }
        self.listener = None;
        for end in self.jobs.cancel_all(JOB_CANCEL_GRACE) {
            self.on_job_end(end);
        }
        if let Some(api) = self.api.as_mut() {
            api.stop();
        }
        if let Some(syslog) = self.syslog.as_mut() {
            syslog.stop();
        }
        if let Some(mut manager) = self.manager.take() {
            info!("shutdown ({reason}): stopping containers");
            let mut reap = || reap_all().reaped.into_iter().map(|c| (c.pid, c.code)).collect();
            manager.stop_all(&mut reap);
        }
        shutdown(action, reason, self.grace)
    }
}

/// Why a reply could not be queued.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The connection was closed (its client left, or it was idle or evicted).
    #[error("control connection {0} is gone")]
    Gone(ConnectionId),
    /// The client let its replies pile up past the cap; the connection was closed.
    #[error("control connection {0}: {1}; closed")]
    Overflow(ConnectionId, connections::OutboxFull),
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
