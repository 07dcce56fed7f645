//! The containers boot step and what PID 1 needs around the manager: reading the
//! declarations, the real launcher, and the sink that writes container output to
//! /var/log/keel/NAME.log and echoes it on the console.

use keel_supervisor::cgroup::reserve::{self, HostReserve};
use keel_supervisor::cgroup::CgroupTree;
use keel_supervisor::logs::{self, BoundedConsole, ContainerLog, EchoBudget, LogFile, LogLimits, Stream};
use keel_supervisor::manager::{self, LogSink, Manager, SystemLauncher};
use keel_supervisor::spec::ContainerName;
use log::{info, warn};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Where containers keep their writable layer.
pub const STATE_ROOT: &str = "/var/lib/keel/containers";

/// Build the manager from /etc/keel/containers. Problems with files that are not
/// declarations at all are returned for the boot error list; bad declarations are kept
/// in the manager (shown by `keelctl ps`) and returned too. `unbounded_echo` (the
/// test-only `keel.test.unbounded`) lifts the console echo budget.
pub fn load(
    containers_dir: &Path,
    network: Option<crate::network::Shared>,
    reserve: &HostReserve,
    unbounded_echo: bool,
) -> (Manager, Vec<String>) {
    let (declarations, mut problems) = manager::load_dir(containers_dir);
    problems.extend(declarations.iter().filter_map(|d| d.spec.as_ref().err().cloned()));
    // Container state and images are private (0700); narrow what an earlier version left wider.
    for dir in [STATE_ROOT, keel_supervisor::image::store::DEFAULT_ROOT] {
        if let Err(e) = keel_supervisor::privdir::narrow_existing(Path::new(dir)) {
            warn!("{dir}: making it private: {e}");
        }
    }
    let mut tree = CgroupTree::new(keel_supervisor::cgroup::DEFAULT_ROOT);
    match reserve::read_system(Path::new("/proc")).and_then(|system| Ok((system, reserve::parent_limits(&system, reserve)?))) {
        Ok((system, limits)) => {
            info!(
                "containers' cgroup: memory.max {} MiB of {} MiB, pids.max {} of {}",
                limits.memory_max >> 20,
                system.mem_total >> 20,
                limits.pids_max,
                system.pid_max.min(system.threads_max)
            );
            tree = tree.with_parent_limits(limits);
        }
        Err(e) => problems.push(format!("host reserve: {e}; containers share the host's memory and tasks without a cap")),
    }
    let mut launcher = SystemLauncher::new(
        PathBuf::from(STATE_ROOT),
        tree,
        match network {
            Some(network) => Box::new(crate::network::attach::ContainerNetworks::new(network)),
            None => Box::new(keel_supervisor::manager::NoNetworks),
        },
    );
    launcher.fail_launches(test_faults());
    let budget = if unbounded_echo { EchoBudget::new(logs::ECHO_INTERVAL, usize::MAX) } else { EchoBudget::default() };
    let sink = FileAndConsole::new(PathBuf::from(logs::DEFAULT_DIR), budget);
    let mut manager = Manager::new(Box::new(launcher), Box::new(sink), logs::DEFAULT_DIR);
    manager.load(declarations);
    manager.set_image_check(Box::new(keel_supervisor::manager::StoreCheck { root: keel_supervisor::image::store::DEFAULT_ROOT.into() }));
    (manager, problems)
}

/// The test option `keel.test.fail_launch` (read here from /proc/cmdline, so the boot
/// sequence needs no knob for a test-only option; bad values are reported by the boot's
/// own reading of the command line).
fn test_faults() -> Vec<(ContainerName, keel_supervisor::manager::LaunchFault)> {
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    let faults = crate::cmdline::parse(&cmdline).0.fail_launch;
    for (name, fault) in &faults {
        let leak = if fault.leak { ", giving nothing back" } else { "" };
        warn!("container {name}: every start fails after step {}{leak} (test option keel.test.fail_launch)", fault.after);
    }
    faults
}

/// Container output into per-container log files, echoed on the console.
struct FileAndConsole {
    dir: PathBuf,
    logs: BTreeMap<ContainerName, ContainerLog>,
    /// Each started container's `[logs]` limits, for its log file when it is opened.
    limits: BTreeMap<ContainerName, LogLimits>,
    console: BoundedConsole,
    failing: BTreeMap<ContainerName, bool>,
}

impl FileAndConsole {
    fn new(dir: PathBuf, budget: EchoBudget) -> Self {
        FileAndConsole {
            dir,
            logs: BTreeMap::new(),
            limits: BTreeMap::new(),
            console: BoundedConsole::open_console(budget),
            failing: BTreeMap::new(),
        }
    }

    /// The log of container `name`, opened on first use. A free-standing borrow of the
    /// logs alone, so the caller can pass the console beside it.
    fn log_for<'a>(
        logs: &'a mut BTreeMap<ContainerName, ContainerLog>,
        limits: &BTreeMap<ContainerName, LogLimits>,
        dir: &Path,
        name: &ContainerName,
    ) -> &'a mut ContainerLog {
        logs.entry(name.clone()).or_insert_with(|| {
            let limits = limits.get(name).copied().unwrap_or_default();
            let file = LogFile::open(dir, name, limits.max_bytes(), limits.keep())
                .map_err(|e| warn!("container {name}: no log file: {e}; output goes to the console only"))
                .ok();
            ContainerLog::new(name.clone(), file)
        })
    }

    /// Log a write failure once per container until writing works again.
    fn note(&mut self, name: &ContainerName, result: Result<(), logs::LogError>) {
        let was_failing = self.failing.insert(name.clone(), result.is_err()).unwrap_or(false);
        if let Err(e) = result {
            if !was_failing {
                warn!("container {name}: writing its log: {e}");
            }
        }
    }
}

impl LogSink for FileAndConsole {
    fn write(&mut self, name: &ContainerName, stream: Stream, bytes: &[u8]) {
        let log = Self::log_for(&mut self.logs, &self.limits, &self.dir, name);
        self.console.set_source(name.as_str());
        let result = if crate::syslog::tap::active() {
            let mut tee = crate::syslog::tap::ConsoleTee { console: &mut self.console, name: name.as_str() };
            log.feed(stream, bytes, SystemTime::now(), &mut tee)
        } else {
            log.feed(stream, bytes, SystemTime::now(), &mut self.console)
        };
        self.note(name, result);
    }

    fn console_lines_dropped(&self) -> u64 {
        self.console.dropped_total()
    }

    fn finish(&mut self, name: &ContainerName) {
        let log = Self::log_for(&mut self.logs, &self.limits, &self.dir, name);
        self.console.set_source(name.as_str());
        let result = if crate::syslog::tap::active() {
            let mut tee = crate::syslog::tap::ConsoleTee { console: &mut self.console, name: name.as_str() };
            log.finish(SystemTime::now(), &mut tee)
        } else {
            log.finish(SystemTime::now(), &mut self.console)
        };
        // A flood that ends with the container would leave its drops unannounced.
        self.console.announce_dropped();
        self.note(name, result);
    }

    fn forget(&mut self, name: &ContainerName) {
        self.logs.remove(name);
        self.failing.remove(name);
        self.limits.remove(name);
    }

    fn limits(&mut self, name: &ContainerName, limits: LogLimits) {
        self.limits.insert(name.clone(), limits);
        if let Some(log) = self.logs.get_mut(name) {
            log.set_limits(limits);
        }
    }
}
