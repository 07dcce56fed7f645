//! The part of the boot that `keel: ready` does not wait for (issue 12, point 5).
//!
//! The modules ready does not need (see [`modload::Stage`]) are loaded by a forked
//! loader process at the lowest CPU priority. With several CPUs it starts as soon as
//! the boot's own modules are in and runs alongside the boot; with one it starts just
//! after `keel: ready` (on one CPU, module init under the boot's feet only slows the
//! boot: both want the CPU and the same kernel locks). PID 1 never waits for it: it reaps
//! the loader like any child, and only then brings up the container bridges and
//! applies keel's firewall (which need `bridge` and nf_tables). Until that is done no
//! container starts, so no port is ever published without its firewall. The hardware
//! watchdog is armed then too (its driver is one of these modules).
//!
//! Limitations: the loader reports failures on the console and as a count in its exit
//! code, not module by module to PID 1; without a signalfd (PID 1 cannot learn of its
//! exit) the boot loads every module itself, before ready.

use crate::kmod::ModuleName;
use crate::modload::{self, ModuleLoader};
use log::{error, info};
use nix::unistd::Pid;
use std::time::Instant;

/// The late half of the boot while it is under way.
pub struct LateBoot {
    /// The modules, until the loader is started.
    pending: Option<Vec<ModuleName>>,
    /// The loader process, until it is reaped.
    loader: Option<Pid>,
    /// Its exit code once reaped (the number of modules that failed, capped).
    failed: i32,
    /// How many modules it was given.
    modules: usize,
    /// When it was started.
    since: Instant,
    /// The host's networks, whose bridges and firewall wait for the modules.
    network: Option<crate::network::Shared>,
    /// The watchdog timeout to arm with once the modules are in (None: leave it off).
    watchdog_secs: Option<u32>,
}

/// One problem of the late boot, for the boot error list.
#[derive(Debug, thiserror::Error)]
pub enum LateProblem {
    /// The loader could not read modules.dep, so none of the late modules loaded.
    #[error("modules after ready: cannot read modules.dep (see the console)")]
    ModulesDep,
    /// This many late modules failed to load (the loader named them on the console).
    #[error("modules after ready: {0} failed (see the console)")]
    ModulesFailed(i32),
    /// Bridges or firewall.
    #[error(transparent)]
    Network(#[from] crate::network::NetworkProblem),
    /// The hardware watchdog could not be armed.
    #[error("watchdog: {0}")]
    Watchdog(#[from] crate::watchdog::WatchdogError),
}

/// What the late boot hands back to the loop.
pub struct LateOutcome {
    /// Problems for the boot error list.
    pub problems: Vec<LateProblem>,
    /// The hardware watchdog, when one was armed.
    pub watchdog: Option<crate::watchdog::Watchdog>,
}

/// Exit code of a loader that could not read modules.dep.
const NO_MODULES_DEP: i32 = 101;

impl LateBoot {
    /// The late boot of `modules`, its loader started now when the machine has several
    /// CPUs, else by [`spawn`](Self::spawn) after ready.
    pub fn new(modules: Vec<ModuleName>) -> LateBoot {
        let count = modules.len();
        let mut late = LateBoot {
            pending: Some(modules),
            loader: None,
            failed: 0,
            modules: count,
            since: Instant::now(),
            network: None,
            watchdog_secs: None,
        };
        if std::thread::available_parallelism().is_ok_and(|n| n.get() > 1) {
            late.spawn();
        }
        late
    }

    /// Fork the loader, unless it was already. When it cannot fork, the modules are
    /// loaded here and now (a slower boot, not a broken one).
    pub fn spawn(&mut self) {
        let Some(modules) = self.pending.take() else { return };
        self.since = Instant::now();
        let spawned = keel_supervisor::forked::run_forked(|| {
            lower_priority();
            load_all(&modules)
        });
        match spawned {
            Ok(pid) => {
                info!("loading {} module(s) after ready (loader pid {pid})", self.modules);
                self.loader = Some(pid);
            }
            Err(e) => {
                error!("cannot fork the module loader ({e}); loading {} module(s) now", self.modules);
                self.failed = load_all(&modules);
            }
        }
    }

    /// The networks whose bridges and firewall [`finish`](Self::finish) brings up. Their
    /// firewall is held (not applied) until then.
    pub fn set_network(&mut self, network: crate::network::Shared) {
        network.borrow_mut().firewall_held = true;
        self.network = Some(network);
    }

    /// Arm the hardware watchdog with `secs` in [`finish`](Self::finish).
    pub fn arm_watchdog_after(&mut self, secs: u32) {
        self.watchdog_secs = Some(secs);
    }

    /// A reaped child: whether it was the loader (then its exit is recorded).
    pub fn on_exit(&mut self, pid: Pid, code: i32) -> bool {
        if self.loader != Some(pid) {
            return false;
        }
        self.loader = None;
        self.failed = code;
        true
    }

    /// Whether the loader is done and [`finish`](Self::finish) is due.
    pub fn due(&self) -> bool {
        self.pending.is_none() && self.loader.is_none()
    }

    /// Bridges up, firewall applied and watchdog armed, now that their modules are in.
    /// After this, containers may start.
    pub fn finish(self) -> LateOutcome {
        let mut problems = Vec::new();
        match self.failed {
            0 => {}
            NO_MODULES_DEP => problems.push(LateProblem::ModulesDep),
            n => problems.push(LateProblem::ModulesFailed(n)),
        }
        if let Some(network) = &self.network {
            problems.extend(crate::network::bring_up_bridges(&network.borrow()).into_iter().map(LateProblem::Network));
            network.borrow_mut().firewall_held = false;
            if let Err(e) = network.borrow().apply_firewall() {
                problems.push(LateProblem::Network(e.into()));
            }
        }
        info!(
            "{} module(s) loaded after ready, bridges and firewall up, {} ms after the loader started",
            self.modules,
            self.since.elapsed().as_millis()
        );
        let watchdog = match self.watchdog_secs.map(crate::watchdog::arm_logged) {
            Some(Ok(watchdog)) => watchdog,
            Some(Err(e)) => {
                problems.push(e.into());
                None
            }
            None => None,
        };
        LateOutcome { problems, watchdog }
    }
}

/// Load `modules` in order; the number that failed (each logged), capped below
/// [`NO_MODULES_DEP`].
fn load_all(modules: &[ModuleName]) -> i32 {
    let mut loader = match ModuleLoader::open(&modload::modules_dir()) {
        Ok(loader) => loader,
        Err(e) => {
            error!("modules after ready: {e}");
            return NO_MODULES_DEP;
        }
    };
    let mut failed = 0;
    for name in modules {
        match loader.load(name) {
            Ok(()) => log::debug!("loaded module {name}"),
            Err(e) => {
                error!("{e}");
                failed += 1;
            }
        }
    }
    failed.min(NO_MODULES_DEP - 1)
}

/// Nice 19: on one CPU the loader takes the time PID 1 leaves idle.
fn lower_priority() {
    // SAFETY: setpriority takes plain integers and touches no memory of ours.
    let result = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, 19) };
    if result != 0 {
        log::debug!("module loader: setpriority: {}", std::io::Error::last_os_error());
    }
}
