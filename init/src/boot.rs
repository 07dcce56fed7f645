//! The boot sequence: one fallible step after another, each logged, none able to stop
//! the ones after it. A failing step adds its cause to the boot errors; a panicking step
//! is caught and logged the same way. Critical failures leave the host in the
//! emergency state, where PID 1 still reaps, answers the control channel and powers off.
//!
//! First boot runs in a worker ([`firstboot`]) while the event loop already answers the
//! control channel, reaps and drives DHCP; the steps that read what it writes (hostname,
//! network for a local config, images, containers) run from the loop when it ends, and
//! only then is the host `ready`.

mod firstboot;

use crate::boot_error::{BootError, ImageFailure};
use crate::cmdline::{self, BootOptions};
use crate::control_server::{bind_socket, SerialPort};
use crate::event_loop::{EventLoop, HostState, Phase};
use crate::kmod::ModuleName;
use crate::modload::{self, ModuleLoader};
use crate::settings::{self, Settings};
use crate::{logger, mounts, power_button, switch_root, sysroot};
use keel_supervisor::control::DEFAULT_SOCKET;
use log::{error, info};
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::time::Duration;

/// The signals PID 1 handles through its signalfd (blocked for normal delivery).
pub const HANDLED_SIGNALS: [Signal; 9] = [
    Signal::SIGCHLD,
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGPWR,
    Signal::SIGHUP,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGQUIT,
    Signal::SIGALRM,
];

/// What the boot steps gather for the event loop, which they set up as they go (the
/// host's state lives in the loop from the start, so `status` sees every step's outcome).
struct Boot<'l> {
    options: BootOptions,
    settings: Settings,
    event_loop: &'l mut EventLoop,
    network: Option<crate::network::Shared>,
    /// The boot's second half, after ready (modules, then bridges and firewall).
    late: Option<crate::late_boot::LateBoot>,
}

/// A boot waiting for a job (first boot): what its remaining steps need, moved out of
/// the [`Boot`] into the loop's continuation.
struct Suspended {
    options: BootOptions,
    settings: Settings,
    network: Option<crate::network::Shared>,
    late: Option<crate::late_boot::LateBoot>,
}

impl Suspended {
    /// The boot again, on the loop that ran while it waited.
    fn resume(self, event_loop: &mut EventLoop) -> Boot<'_> {
        Boot { options: self.options, settings: self.settings, network: self.network, late: self.late, event_loop }
    }
}

impl Boot<'_> {
    /// What the host knows about itself (in the loop).
    fn state(&mut self) -> &mut HostState {
        self.event_loop.state_mut()
    }

    /// Move what the remaining steps need out of this boot (left with defaults).
    fn suspend(&mut self) -> Suspended {
        Suspended {
            options: std::mem::take(&mut self.options),
            settings: std::mem::take(&mut self.settings),
            network: self.network.take(),
            late: self.late.take(),
        }
    }

    /// Seconds between SIGTERM and SIGKILL at shutdown.
    fn grace(&self) -> Duration {
        Duration::from_secs(self.options.shutdown_grace_secs.unwrap_or(self.settings.shutdown_grace_secs))
    }

    /// Run one named step: log its failure or panic, never propagate either.
    fn step<T>(&mut self, name: &str, critical: bool, body: impl FnOnce(&mut Self) -> Result<T, BootError>) -> Option<T> {
        let inject = self.options.panic_in_step.as_deref() == Some(name);
        let started = std::time::Instant::now();
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            if inject {
                panic!("injected panic (keel.test.panic={name})");
            }
            body(self)
        }));
        // With keel.debug, what each step cost (the console stamps say when it ended).
        log::debug!("step {name}: {:.1} ms", started.elapsed().as_secs_f64() * 1000.0);
        let problem = match outcome {
            Ok(Ok(value)) => return Some(value),
            Ok(Err(error)) => format!("{name}: {error}"),
            Err(payload) => format!("{name}: panicked: {}", panic_message(&payload)),
        };
        error!("{problem}");
        self.state().boot_errors.push(problem);
        if critical {
            self.state().phase = Phase::Emergency;
        }
        None
    }
}

/// The text of a panic payload.
pub fn panic_message(payload: &Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

/// PID 1's whole life: signals blocked, root switched, boot steps, then the loop. Never returns.
pub fn pid1_main() -> ! {
    let mut mask = SigSet::empty();
    for signal in HANDLED_SIGNALS {
        mask.add(signal);
    }
    let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&mask), None);
    logger::install();
    std::panic::set_hook(Box::new(|info| log::error!("panic: {info}")));
    std::env::set_var("PATH", "/usr/sbin:/usr/bin:/sbin:/bin");
    // A session and process group of its own (the kernel starts init in session 0), so
    // no other process group's kill(0, …) or the console's job control ever means PID 1.
    // EPERM means it already leads one (the re-exec after a root switch).
    let _ = nix::unistd::setsid();
    if switch_root::on_initramfs() {
        if let Some(name) = sysroot::requested_root() {
            info!("root: looking for the partition named {name}");
            let failure = sysroot::switch_to_disk_root(&name);
            logger::marker(&format!("keel: error: root: {failure}; staying on the initramfs"));
            // Survives the re-exec below, so the booted PID 1 can report it.
            std::env::set_var(sysroot::ROOT_ERROR_ENV, failure.to_string());
        }
        info!("moving the root from the initramfs's kernel mount onto a bind of it (containers need pivot_root)");
        if let Err(failure) = switch_root::switch_to_bound_root() {
            error!("{failure}; continuing on the initramfs root (containers cannot pivot_root)");
        }
    }
    let signals = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC);
    let mut event_loop = EventLoop::new(signals.ok());
    let mut boot =
        Boot { options: BootOptions::default(), settings: Settings::default(), event_loop: &mut event_loop, network: None, late: None };
    if let Some(failure) = std::env::var_os(sysroot::ROOT_ERROR_ENV) {
        std::env::remove_var(sysroot::ROOT_ERROR_ENV);
        boot.state().phase = Phase::Emergency;
        boot.state().boot_errors.push(format!("root: {}; running on the initramfs", failure.to_string_lossy()));
    }
    if boot.event_loop.signals_missing() {
        boot.state().phase = Phase::Emergency;
        boot.state().boot_errors.push("signalfd: cannot watch signals; reaping and shutdown are degraded".into());
    }
    let grace = run_steps(&mut boot);
    event_loop.run(grace)
}

/// The steps up to first boot; the rest run when it ends (now, or from the loop when it
/// runs in a worker). Returns the shutdown grace.
fn run_steps(boot: &mut Boot) -> Duration {
    boot.step("mounts", true, |_| mount_early());
    logger::attach_kmsg();
    boot.step("oom-score", false, |_| protect_from_oom());
    if let Some(options) = boot.step("cmdline", false, read_cmdline) {
        boot.options = options;
        boot.event_loop.jobs_mut().set_memory_override(boot.options.worker_memory_max);
        logger::set_verbose(boot.options.debug);
    }
    if let Some(settings) = boot.step("settings", false, |_| Ok(settings::load(Path::new(settings::SETTINGS_PATH))?)) {
        boot.settings = settings;
    }
    boot.step("ctrl-alt-del", false, |_| nix::sys::reboot::set_cad_enabled(false).map_err(BootError::CtrlAltDel));
    boot.step("modules", false, load_modules);
    boot.step("storage", false, mount_var);
    let grace = boot.grace();
    // The control channel and the power button work while first boot runs.
    boot.step("control", true, open_control_socket);
    if let Some(port) = boot.settings.control_port.clone() {
        boot.step("control-port", false, |b| open_control_port(b, &port));
    }
    boot.step("power-button", false, watch_power_button);
    // An http or metadata source, or a config that fetches over http(s), needs the
    // uplink: first boot then runs after the network step (and a network.toml it
    // writes applies from the next boot on). A local config runs before it.
    if boot.options.firstboot_needs_network() {
        network_steps(boot);
        firstboot::start(boot, true);
    } else {
        firstboot::start(boot, false);
    }
    grace
}

/// The loopback interface, then the host's networks.
fn network_steps(boot: &mut Boot) {
    boot.step("loopback", false, |_| Ok(keel_netconf::set_link_up("lo")?));
    boot.step("network", false, bring_up_network);
}

/// The steps after first boot, then `ready`: the hostname it may have written, the
/// network (unless it ran before first boot), the images and containers (not when the
/// config failed).
fn after_firstboot(boot: &mut Boot, network_done: bool) {
    boot.step("hostname", false, set_hostname);
    if !network_done {
        network_steps(boot);
    }
    // After first boot, which may write /etc/keel/syslog.toml.
    boot.step("syslog", false, start_syslog);
    // After first boot (which may write /etc/keel/api.toml) and the network (whose
    // firewall opens the API port).
    boot.step("api", false, start_api);
    if boot.state().firstboot.as_ref().is_some_and(|f| f.failed()) {
        error!("containers: not started, because the first-boot config failed");
    } else {
        boot.step("images", false, pull_images);
        boot.step("containers", false, load_containers);
    }
    boot.step("watchdog", false, arm_watchdog);
    if let Some(secs) = boot.options.wedge_secs {
        boot.event_loop.set_test_wedge(Duration::from_secs(secs));
    }
    let state = boot.state();
    if state.phase == Phase::Booting {
        state.phase = Phase::Ready;
        state.ready_at = Some(crate::clock::since_boot());
    }
    announce(state);
    if let Some(mut late) = boot.late.take() {
        late.spawn();
        boot.event_loop.set_late(late);
    }
}

/// Arm the hardware watchdog, when the machine has one, for the loop to pet.
fn arm_watchdog(boot: &mut Boot) -> Result<(), BootError> {
    let secs = boot.options.watchdog_secs.unwrap_or(boot.settings.watchdog_secs);
    if secs == 0 {
        info!("watchdog: off (watchdog_secs = 0)");
        return Ok(());
    }
    // Its driver may be among the modules loading after ready: arm it when they are in.
    if let Some(late) = boot.late.as_mut() {
        late.arm_watchdog_after(secs);
        return Ok(());
    }
    if let Some(watchdog) = crate::watchdog::arm_logged(secs)? {
        boot.event_loop.set_watchdog(watchdog);
    }
    Ok(())
}

/// The host's networks: the declaration, bridges, forwarding, the uplink (static now,
/// DHCP in the event loop, so nothing waits for a server) and keel's firewall table.
fn bring_up_network(boot: &mut Boot) -> Result<(), BootError> {
    use crate::network::{self, HostNetwork};
    let path = Path::new(keel_netconf::config::CONFIG_PATH);
    let (config, config_problem) = network::load_config(path);
    let mut problems: Vec<network::NetworkProblem> = config_problem.into_iter().map(Into::into).collect();
    let shared = std::rc::Rc::new(std::cell::RefCell::new(HostNetwork::new(config, Path::new(network::IPAM_DIR))));
    boot.network = Some(shared.clone());
    // CVE-2020-8558: never route_localnet on `all` (a fresh kernel has 0; turn off whatever
    // set it); `apply_firewall` turns it on per bridge where a port is published on 127.0.0.1.
    if let Err(e) = keel_netconf::set_route_localnet("all", false) {
        problems.push(network::NetworkProblem::RouteLocalnetOff(e));
    }
    // With modules still loading, the bridges and firewall come after ready (late_boot).
    match boot.late.as_mut() {
        Some(late) => late.set_network(shared.clone()),
        None => problems.extend(network::bring_up_bridges(&shared.borrow())),
    }
    let uplink = network::choose_uplink(&shared.borrow().config);
    match uplink {
        Ok(Some((link, keel_netconf::config::UplinkMode::Dhcp, _))) => {
            let mac = link.mac.unwrap_or_default();
            match network::uplink::DhcpUplink::start(&link.name, link.index, mac, shared.clone(), std::time::Instant::now()) {
                Ok(dhcp) => boot.event_loop.set_uplink(dhcp),
                Err(e) => problems.push(e.into()),
            }
        }
        Ok(Some((link, mode, mtu))) => {
            if let Err(e) = network::configure_static(&mut shared.borrow_mut(), &link, &mode, mtu) {
                problems.push(e.into());
            }
        }
        Ok(None) => info!("no uplink interface found; containers get host-internal networks only"),
        Err(e) => problems.push(e.into()),
    }
    if let Err(e) = shared.borrow().apply_firewall() {
        problems.push(e.into());
    }
    boot.event_loop.set_network(shared);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(BootError::Network(problems))
    }
}

/// Log forwarding, when /etc/keel/syslog.toml exists: from now on keel's and the
/// containers' lines are queued for the `keel syslog` process the event loop supervises.
fn start_syslog(boot: &mut Boot) -> Result<(), BootError> {
    let Some(config) = crate::syslog::config::load(Path::new(crate::syslog::CONFIG_PATH))? else {
        return Ok(());
    };
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    crate::syslog::tap::install(hostname.trim(), config.buffer_bytes);
    let tls = if config.tls.is_some() { " over TLS" } else { "" };
    info!("syslog: forwarding container and keel logs to {}{tls} (buffer {} KiB)", config.target, config.buffer_bytes / 1024);
    boot.event_loop.set_syslog(crate::syslog::supervise::Forwarding::new(crate::syslog::CONFIG_PATH, std::time::Instant::now()));
    Ok(())
}

/// The remote API, when /etc/keel/api.toml exists: its port opened in the firewall and
/// the `keel api` process supervised by the event loop.
fn start_api(boot: &mut Boot) -> Result<(), BootError> {
    let Some(config) = crate::api::config::load(Path::new(crate::api::CONFIG_PATH))? else {
        return Ok(());
    };
    info!("api: serving the control protocol over TLS on port {}", config.port);
    boot.event_loop.set_api(crate::api::supervise::ApiProcess::new(crate::api::CONFIG_PATH, std::time::Instant::now()));
    let network = boot.network.as_ref().ok_or(BootError::ApiWithoutNetwork)?;
    network.borrow_mut().api_port = Some(config.port);
    network.borrow_mut().metrics_port = config.metrics_firewall_port();
    let applied = network.borrow().apply_firewall();
    applied.map_err(BootError::ApiFirewall)
}

/// Read the container declarations; the event loop starts them once boot is done.
/// The registry images of the declared containers that are not in the store yet are
/// pulled now (progress on the console). Each registry is first probed while the
/// uplink's DHCP client is driven, for up to a minute, so a first start does not fail
/// only because the lease was not bound yet. A failed pull is reported here and again
/// by the container's start.
fn pull_images(boot: &mut Boot) -> Result<(), BootError> {
    use keel_supervisor::image::{store, ImageSource, Store};
    use keel_supervisor::manager::ImageNeed;
    use keel_supervisor::worker::JobKind;
    let (declarations, _) = keel_supervisor::manager::load_dir(Path::new(keel_supervisor::manager::CONTAINERS_DIR));
    let mut wanted: Vec<ImageSource> = Vec::new();
    for spec in declarations.iter().filter_map(|d| d.spec.as_ref().ok()) {
        if let keel_supervisor::spec::ImageRef::Image(source @ ImageSource::Registry(_)) = &spec.image {
            if !wanted.contains(source) {
                wanted.push(source.clone());
            }
        }
    }
    if wanted.is_empty() {
        return Ok(());
    }
    let store = Store::open(store::DEFAULT_ROOT).map_err(BootError::ImageStore)?;
    let mut problems = Vec::new();
    // Each pull runs in a worker; the boot does not wait. Containers that need the
    // image wait for its job (the manager is told when it ends).
    for source in wanted {
        if store.lookup(&source.to_string()).ok().flatten().is_some() {
            continue;
        }
        match boot.event_loop.start_image_need(ImageNeed { kind: JobKind::Pull, source: source.clone() }) {
            Ok(job) => info!("image {source}: pulling in the background (job {job})"),
            Err(e) => problems.push(ImageFailure { image: source.to_string(), source: e }),
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(BootError::Images(problems))
    }
}

fn load_containers(boot: &mut Boot) -> Result<(), BootError> {
    let dir = Path::new(keel_supervisor::manager::CONTAINERS_DIR);
    let (manager, problems) = crate::containers::load(dir, boot.network.clone(), &boot.settings.reserved, boot.options.unbounded);
    if let Some(network) = &boot.network {
        let declared: Vec<String> = manager.ps(std::time::Instant::now()).into_iter().map(|c| c.name).collect();
        crate::network::release_undeclared(&mut network.borrow_mut(), &declared);
    }
    let count = manager.ps(std::time::Instant::now()).len();
    boot.event_loop.set_manager(manager);
    info!("{count} container(s) declared in {}", dir.display());
    if problems.is_empty() {
        Ok(())
    } else {
        Err(BootError::Containers(problems))
    }
}

/// `oom_score_adj` -1000 for PID 1: the kernel never picks global init anyway, but the
/// helpers PID 1 forks (exec, pulls, workers) inherit the value and so are never chosen
/// over a container. Containers and commands exec'd into them get 0 back (see
/// keel_supervisor::cgroup::oom).
fn protect_from_oom() -> Result<(), BootError> {
    use keel_supervisor::cgroup::oom::{set_oom_score_adj, OOM_SCORE_ADJ_MIN};
    set_oom_score_adj(None, OOM_SCORE_ADJ_MIN).map_err(BootError::OomScore)
}

fn announce(state: &HostState) {
    if state.phase == Phase::Emergency {
        logger::marker(&format!(
            "keel: emergency: {} boot step(s) failed; still reaping and answering the control channel",
            state.boot_errors.len()
        ));
        for problem in &state.boot_errors {
            logger::marker(&format!("keel: emergency: {problem}"));
        }
    } else {
        let errors = if state.boot_errors.is_empty() { String::new() } else { format!(", {} boot error(s)", state.boot_errors.len()) };
        logger::marker(&format!("keel: ready ({:.3} s since kernel start{errors})", crate::clock::since_boot().as_secs_f64()));
    }
}

fn mount_early() -> Result<(), BootError> {
    let mut failures = Vec::new();
    for entry in mounts::early_mounts() {
        match mounts::apply(&entry) {
            Ok(()) => info!("mounted {} on {}", entry.fstype, entry.target),
            Err(e) => failures.push(e),
        }
    }
    if failures.iter().any(|f| f.critical) {
        Err(BootError::Mounts(failures))
    } else {
        failures.iter().for_each(|f| error!("{f}"));
        Ok(())
    }
}

fn read_cmdline(boot: &mut Boot) -> Result<BootOptions, BootError> {
    let text = std::fs::read_to_string("/proc/cmdline").map_err(BootError::Cmdline)?;
    let (options, problems) = cmdline::parse(&text);
    for problem in problems {
        error!("{problem}");
        boot.state().boot_errors.push(format!("cmdline: {problem}"));
    }
    Ok(options)
}

fn load_modules(boot: &mut Boot) -> Result<(), BootError> {
    let listed = match std::fs::read_to_string(modload::MODULE_LIST_PATH) {
        Ok(text) => modload::parse_module_list(&text),
        Err(_) => Vec::new(),
    };
    let listed: Vec<ModuleName> = listed.into_iter().chain(boot.options.extra_modules.iter().cloned()).collect();
    // Without a signalfd PID 1 would never learn that the loader is done.
    let (wanted, after_ready) = match boot.event_loop.signals_missing() {
        false => modload::split(listed),
        true => (listed, Vec::new()),
    };
    if !after_ready.is_empty() {
        boot.late = Some(crate::late_boot::LateBoot::new(after_ready));
    }
    if wanted.is_empty() {
        return Ok(());
    }
    let dir = modload::modules_dir();
    let mut loader = ModuleLoader::open(&dir).map_err(BootError::ModuleLoader)?;
    let mut failed = Vec::new();
    for name in &wanted {
        match loader.load(name) {
            Ok(()) => log::debug!("loaded module {name}"),
            Err(e) => failed.push(e),
        }
    }
    info!("loaded {} of {} modules", wanted.len() - failed.len(), wanted.len());
    if failed.is_empty() {
        Ok(())
    } else {
        Err(BootError::Modules(failed))
    }
}

/// Mount the data disk labelled keel-var on /var, when there is one.
fn mount_var(_: &mut Boot) -> Result<crate::storage::VarStorage, BootError> {
    Ok(crate::storage::mount_var()?)
}

fn set_hostname(boot: &mut Boot) -> Result<(), BootError> {
    let text = std::fs::read_to_string("/etc/hostname").map_err(BootError::HostnameRead)?;
    let name = text.trim();
    if name.is_empty() {
        return Err(BootError::HostnameEmpty);
    }
    nix::unistd::sethostname(name).map_err(|source| BootError::Sethostname { name: name.to_string(), source })?;
    boot.state().hostname = name.to_string();
    info!("hostname set to {name}");
    Ok(())
}

fn open_control_socket(boot: &mut Boot) -> Result<(), BootError> {
    let listener =
        bind_socket(Path::new(DEFAULT_SOCKET)).map_err(|source| BootError::ControlSocket { path: DEFAULT_SOCKET.into(), source })?;
    boot.event_loop.set_listener(listener);
    if boot.options.unbounded {
        boot.event_loop.set_control_limits(crate::connections::ControlLimits::unbounded());
        info!("keel.test.unbounded: no cap on control connections, no idle timeout, no console echo budget");
    }
    info!("control socket at {DEFAULT_SOCKET}");
    Ok(())
}

fn open_control_port(boot: &mut Boot, name: &str) -> Result<(), BootError> {
    // The port's device node appears shortly after virtio_console binds; wait up to 3 s.
    let mut last = std::io::Error::from(std::io::ErrorKind::NotFound);
    for _ in 0..30 {
        match SerialPort::open(name) {
            Ok(port) => {
                info!("control channel on virtio-serial port {} ({name})", port.path.display());
                boot.event_loop.set_port(port);
                return Ok(());
            }
            Err(e) => last = e,
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(BootError::ControlPort(last))
}

fn watch_power_button(boot: &mut Boot) -> Result<(), BootError> {
    let buttons = power_button::open_all();
    if buttons.is_empty() {
        return Err(BootError::NoPowerButton);
    }
    for (path, _) in &buttons {
        info!("watching power button {}", path.display());
    }
    boot.event_loop.set_buttons(buttons);
    Ok(())
}
