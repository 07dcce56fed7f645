//! The side effects the manager needs, behind a trait: start a container, signal it,
//! kill its cgroup, run a healthcheck. PID 1 uses [`SystemLauncher`]; the manager's
//! unit tests use a fake, so lifecycle rules are tested without processes.

use crate::cgroup::{CgroupStats, CgroupTree, ContainerCgroup};
use crate::runtime::{self, LaunchPlan, NoHooks, StartHooks, Stdio};
use crate::spec::{ContainerName, ContainerSpec};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::collections::BTreeMap;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::time::Duration;

/// A container that reached execve.
#[derive(Debug)]
pub struct Launched {
    /// Its PID 1, as the host sees it.
    pub pid: Pid,
    /// Read end of its stdout pipe (non-blocking).
    pub stdout: Option<OwnedFd>,
    /// Read end of its stderr pipe (non-blocking).
    pub stderr: Option<OwnedFd>,
}

/// Starting, stopping and probing containers.
pub trait Launcher {
    /// Start `spec`'s process in its namespaces and cgroup.
    fn launch(&mut self, spec: &ContainerSpec) -> Result<Launched, String>;
    /// Send `signal` to the container's PID 1.
    fn signal(&mut self, pid: Pid, signal: i32);
    /// Kill every process of the container (cgroup.kill; SIGKILL to `pid` without a cgroup).
    fn kill_all(&mut self, name: &ContainerName, pid: Pid);
    /// After its PID 1 was reaped: kill what is left, read the final figures, remove the cgroup.
    fn release(&mut self, name: &ContainerName) -> Option<CgroupStats>;
    /// Start a healthcheck command inside the running container; the returned process
    /// exits 0 when healthy.
    fn healthcheck(&mut self, name: &ContainerName, pid: Pid, argv: &[String], timeout: Duration) -> Result<Pid, String>;
    /// Current cgroup figures.
    fn stats(&self, name: &ContainerName) -> Result<CgroupStats, String>;
    /// The cgroup directory of a running container.
    fn cgroup_dir(&self, name: &ContainerName) -> Option<PathBuf>;
    /// The launch plan of a running container (for `exec`).
    fn plan(&self, name: &ContainerName) -> Option<&LaunchPlan>;
}

/// Connects containers to their network (`network = "NAME"`): PID 1 implements it with
/// keel-netconf (bridge, veth, IPAM, nftables); the runtime only calls it.
pub trait NetworkAttacher {
    /// Before a start: reserve what `spec` needs on its network, add what the container
    /// must see to `plan` (e.g. /etc/resolv.conf and /etc/hosts binds), and return the
    /// hooks that wire the new network namespace during the start.
    fn attach(&mut self, spec: &ContainerSpec, plan: &mut LaunchPlan) -> Result<Box<dyn StartHooks>, String>;
    /// The container's process ended, or its start failed: drop what only a running
    /// container needs (its published ports). Its address stays reserved.
    fn detach(&mut self, name: &ContainerName);
}

/// For hosts without container networks (`keel run` without a network, unit tests):
/// `none` and `host` work, a named network is a clear error.
pub struct NoNetworks;

impl NetworkAttacher for NoNetworks {
    fn attach(&mut self, spec: &ContainerSpec, _plan: &mut LaunchPlan) -> Result<Box<dyn StartHooks>, String> {
        match &spec.network {
            crate::spec::NetworkMode::Named(name) => Err(format!("network {name:?}: container networks are not set up here")),
            _ => Ok(Box::new(NoHooks)),
        }
    }
    fn detach(&mut self, _name: &ContainerName) {}
}

/// The real launcher: runtime::spawn with cgroup v2 under `/sys/fs/cgroup/keel`.
pub struct SystemLauncher {
    state_root: PathBuf,
    image_root: PathBuf,
    tree: CgroupTree,
    network: Box<dyn NetworkAttacher>,
    running: BTreeMap<ContainerName, (LaunchPlan, Option<ContainerCgroup>)>,
}

impl SystemLauncher {
    /// Containers keep their state (overlay upper) under `state_root`; cgroups go under
    /// `tree`; `network` connects them to their networks.
    pub fn new(state_root: PathBuf, tree: CgroupTree, network: Box<dyn NetworkAttacher>) -> Self {
        SystemLauncher { state_root, image_root: crate::image::store::DEFAULT_ROOT.into(), tree, network, running: BTreeMap::new() }
    }
}

/// The network's start hooks, plus one step in the parent while the child waits:
/// PID 1 runs with `oom_score_adj` -1000, which the clone inherited; the container must
/// be a normal candidate for the OOM killer (its cgroup's limits rely on it), so it gets
/// 0 before it runs a single instruction of its own.
struct OomScoreReset {
    inner: Box<dyn StartHooks>,
}

impl StartHooks for OomScoreReset {
    fn after_clone(&mut self, pid: Pid) -> Result<(), String> {
        crate::cgroup::oom::set_oom_score_adj(Some(pid.as_raw()), 0).map_err(|e| format!("oom_score_adj: {e}"))?;
        self.inner.after_clone(pid)
    }
    fn in_child(&self) -> Result<(), String> {
        self.inner.in_child()
    }
}

/// A pipe whose read end does not block PID 1 and whose write end goes to the container.
fn output_pipe() -> Result<(OwnedFd, OwnedFd), String> {
    use nix::fcntl::OFlag;
    let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| format!("pipe: {e}"))?;
    let flags = nix::fcntl::fcntl(read.as_fd(), nix::fcntl::FcntlArg::F_GETFL).map_err(|e| format!("fcntl: {e}"))?;
    let flags = OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK;
    nix::fcntl::fcntl(read.as_fd(), nix::fcntl::FcntlArg::F_SETFL(flags)).map_err(|e| format!("fcntl: {e}"))?;
    Ok((read, write))
}

impl Launcher for SystemLauncher {
    fn launch(&mut self, spec: &ContainerSpec) -> Result<Launched, String> {
        let cgroup2 = self.tree.is_v2();
        if spec.resources.any() && !cgroup2 {
            return Err("resources: limits need cgroup v2, which is not mounted at /sys/fs/cgroup".into());
        }
        let (merged, mut plan) = crate::image::run::plan(&self.image_root, spec, &self.state_root, cgroup2)?;
        let spec = &merged;
        let hooks = self.network.attach(spec, &mut plan)?;
        let cgroup = match cgroup2.then(|| self.tree.prepare(&spec.name, &spec.resources)).transpose() {
            Ok(cgroup) => cgroup,
            Err(e) => {
                self.network.detach(&spec.name);
                return Err(e.to_string());
            }
        };
        let cgroup_fd = cgroup.as_ref().map(|c| c.open_main_fd()).transpose().map_err(|e| format!("open cgroup: {e}"))?;
        let mut hooks = OomScoreReset { inner: hooks };
        let (stdout, stdout_w) = output_pipe()?;
        let (stderr, stderr_w) = output_pipe()?;
        let stdio = Stdio { stdout: stdout_w.as_raw_fd(), stderr: stderr_w.as_raw_fd() };
        let spawned = runtime::spawn_with_hooks(&plan, stdio, cgroup_fd.as_ref().map(|fd| fd.as_fd()), &mut hooks);
        drop((stdout_w, stderr_w));
        match spawned {
            Ok(pid) => {
                self.running.insert(spec.name.clone(), (plan, cgroup));
                Ok(Launched { pid, stdout: Some(stdout), stderr: Some(stderr) })
            }
            Err(e) => {
                if let Some(cgroup) = cgroup {
                    let _ = cgroup.kill();
                    let _ = cgroup.remove();
                }
                self.network.detach(&spec.name);
                Err(e.to_string())
            }
        }
    }

    fn signal(&mut self, pid: Pid, signal: i32) {
        if let Ok(signal) = Signal::try_from(signal) {
            let _ = kill(pid, signal);
        }
    }

    fn kill_all(&mut self, name: &ContainerName, pid: Pid) {
        match self.running.get(name).and_then(|(_, cgroup)| cgroup.as_ref()) {
            Some(cgroup) if cgroup.kill().is_ok() => {}
            _ => {
                let _ = kill(pid, Signal::SIGKILL);
            }
        }
    }

    fn release(&mut self, name: &ContainerName) -> Option<CgroupStats> {
        self.network.detach(name);
        let (_, cgroup) = self.running.remove(name)?;
        let cgroup = cgroup?;
        let stats = cgroup.stats().ok();
        let _ = cgroup.kill();
        for _ in 0..50 {
            if cgroup.is_empty().unwrap_or(true) {
                break;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        if let Err(e) = cgroup.remove() {
            log::debug!("container {name}: {e}");
        }
        stats
    }

    fn healthcheck(&mut self, name: &ContainerName, pid: Pid, argv: &[String], timeout: Duration) -> Result<Pid, String> {
        let (plan, cgroup) = self.running.get(name).ok_or("not running")?;
        let cgroup_dir = cgroup.as_ref().map(|c| c.dir().to_path_buf());
        crate::health::spawn_check(pid, plan, cgroup_dir.as_deref(), argv, timeout)
    }

    fn stats(&self, name: &ContainerName) -> Result<CgroupStats, String> {
        match self.running.get(name) {
            Some((_, Some(cgroup))) => cgroup.stats().map_err(|e| e.to_string()),
            Some((_, None)) => Err("no cgroup: cgroup v2 is not mounted on this host".into()),
            None => Err(format!("{name} is not running")),
        }
    }

    fn cgroup_dir(&self, name: &ContainerName) -> Option<PathBuf> {
        self.running.get(name).and_then(|(_, c)| c.as_ref()).map(|c| c.dir().to_path_buf())
    }

    fn plan(&self, name: &ContainerName) -> Option<&LaunchPlan> {
        self.running.get(name).map(|(plan, _)| plan)
    }
}
