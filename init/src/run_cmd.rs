//! `keel run FILE.toml`: run one container in the foreground on any Linux host (as
//! root, not as PID 1), with the same isolation PID 1 gives it, and exit with its exit
//! code — for trying a declaration before baking it into an image, and for benchmarks.

use keel_supervisor::cgroup::CgroupTree;
use keel_supervisor::manager::{NetworkAttacher, NoNetworks};
use keel_supervisor::runtime::{self, Stdio};
use keel_supervisor::spec;
use nix::sys::signal::{kill, SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag};
use nix::unistd::Pid;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

/// Where `keel run` keeps container state unless KEEL_STATE_DIR says otherwise. The
/// state of a foreground run is thrown away when it exits, so it lives on /run (tmpfs
/// on every systemd or keel host): creating and removing its directories on a disk
/// filesystem costs more than the rest of the start (measured: 1.5–5 ms per rmdir on
/// a busy ext4 disk).
const DEFAULT_STATE_ROOT: &str = "/run/keel/run";

/// Run `keel run` with its arguments (after `run`); returns the exit code.
pub fn main(args: &[String]) -> i32 {
    let [file] = args else {
        eprintln!("usage: keel run FILE.toml");
        return 2;
    };
    match run(Path::new(file)) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("keel run: {message}");
            125
        }
    }
}

fn run(file: &Path) -> Result<i32, String> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let name = file.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
    let spec = spec::parse(name, &text, &file.display().to_string()).map_err(|errors| errors.to_string())?;
    let tree = CgroupTree::new(PathBuf::from("/sys/fs/cgroup"));
    let cgroup2 = tree.is_v2();
    if spec.resources.any() && !cgroup2 {
        return Err(format!(
            "{}: resources: limits need cgroup v2, which is not mounted at /sys/fs/cgroup on this host; remove [resources] to run without a cgroup",
            file.display()
        ));
    }
    let state_root = std::env::var_os("KEEL_STATE_DIR").map(PathBuf::from).unwrap_or_else(|| DEFAULT_STATE_ROOT.into());
    let image_root =
        std::env::var_os("KEEL_IMAGE_STORE").map(PathBuf::from).unwrap_or_else(|| keel_supervisor::image::store::DEFAULT_ROOT.into());
    // `keel run` is a command, not PID 1: it imports in the foreground when needed.
    if let keel_supervisor::spec::ImageRef::Image(source) = &spec.image {
        let store = keel_supervisor::image::Store::open(&image_root).map_err(|e| format!("image store: {e}"))?;
        keel_supervisor::image::import::ensure(&store, source).map_err(|e| format!("image {source}: {e}"))?;
    }
    let (spec, mut plan) = keel_supervisor::image::run::plan(&image_root, &spec, &state_root, cgroup2).map_err(|e| e.to_string())?;
    let mut network = attacher(&spec, &state_root);
    let mut hooks = network.attach(&spec, &mut plan).map_err(|e| e.to_string())?;
    let cgroup = if cgroup2 {
        Some(
            tree.prepare_with_devices(&spec.name, &spec.resources, keel_supervisor::cgroup::devices::rules_for(spec.privilege))
                .map_err(|e| e.to_string())?,
        )
    } else {
        None
    };
    let cgroup_fd = cgroup.as_ref().map(|c| c.open_main_fd()).transpose().map_err(|e| format!("open cgroup: {e}"))?;
    let signals = block_signals()?;
    let stdio = Stdio { stdout: 1, stderr: 2 };
    let spawned = runtime::spawn_with_hooks(&plan, stdio, cgroup_fd.as_ref().map(|fd| fd.as_fd()), hooks.as_mut());
    network.detach(&spec.name);
    let result = spawned.map_err(|e| e.to_string()).map(|pid| wait_forwarding(pid, &signals));
    if let Some(cgroup) = cgroup {
        let _ = cgroup.kill();
        let _ = cgroup.remove();
    }
    let _ = std::fs::remove_dir_all(runtime::plan::state_dir(&state_root, spec.name.as_str()));
    result
}

/// How `keel run` connects the container: `none` gets `lo` up, `host` nothing, and a
/// named network is set up on this host as PID 1 would (bridge, NAT, veth), from
/// /etc/keel/network.toml or the default `keel0`.
fn attacher(spec: &spec::ContainerSpec, state_root: &Path) -> Box<dyn NetworkAttacher> {
    use crate::network::{self, attach::ContainerNetworks, HostNetwork};
    match spec.network {
        spec::NetworkMode::None => Box::new(LoopbackAttacher),
        spec::NetworkMode::Host => Box::new(NoNetworks),
        spec::NetworkMode::Named(_) => {
            let path = Path::new(keel_netconf::config::CONFIG_PATH);
            let (mut config, problem) = network::load_config(path);
            if let Some(problem) = problem {
                eprintln!("keel run: {problem}");
            }
            if !path.exists() {
                // Not a keel host (no network declaration): keel run must not close the
                // input of a machine it does not own. A keel host's boot drops by default.
                config.firewall.input = keel_netconf::config::InputPolicy::Accept;
            }
            let host = HostNetwork::new(config, &state_root.join("ipam"));
            for problem in network::bring_up_bridges(&host) {
                eprintln!("keel run: {problem}");
            }
            if let Err(problem) = host.apply_firewall() {
                eprintln!("keel run: {problem}");
            }
            Box::new(ContainerNetworks::new(std::rc::Rc::new(std::cell::RefCell::new(host))))
        }
    }
}

/// `network = "none"`: only `lo`, up.
struct LoopbackAttacher;

impl NetworkAttacher for LoopbackAttacher {
    fn attach(
        &mut self,
        _spec: &spec::ContainerSpec,
        _plan: &mut runtime::LaunchPlan,
    ) -> Result<Box<dyn runtime::StartHooks>, keel_supervisor::manager::AttachError> {
        Ok(Box::new(crate::network::attach::LoopbackOnly))
    }
    fn detach(&mut self, _name: &spec::ContainerName) {}
}

const FORWARDED: [Signal; 5] = [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP, Signal::SIGQUIT, Signal::SIGUSR1];

fn block_signals() -> Result<SignalFd, String> {
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGCHLD);
    FORWARDED.iter().for_each(|s| mask.add(*s));
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&mask), None).map_err(|e| format!("sigprocmask: {e}"))?;
    SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC).map_err(|e| format!("signalfd: {e}"))
}

/// Wait for the container, forwarding signals to it; its exit code, 128+signal if killed.
fn wait_forwarding(pid: Pid, signals: &SignalFd) -> i32 {
    loop {
        match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(status) => {
                if let Some((_, code)) = crate::reaper::exit_code(status) {
                    return code;
                }
            }
            Err(nix::Error::EINTR) => continue,
            Err(e) => {
                eprintln!("keel run: waitpid: {e}");
                return 125;
            }
        }
        if let Ok(Some(info)) = signals.read_signal() {
            if let Ok(signal) = Signal::try_from(info.ssi_signo as i32) {
                if signal != Signal::SIGCHLD {
                    let _ = kill(pid, signal);
                }
            }
        }
    }
}
