//! The side effects the manager needs, behind a trait: start a container, signal it,
//! kill its cgroup, run a healthcheck. PID 1 uses [`SystemLauncher`]; the manager's
//! unit tests use a fake, so lifecycle rules are tested without processes.

use super::launch_error::{unwind, AttachError, CleanupError, CleanupErrors, LaunchCause, LaunchError, LaunchStep, ProbeError};
use crate::cgroup::{CgroupError, CgroupStats, CgroupTree, ContainerCgroup};
use crate::runtime::{self, HookError, LaunchPlan, NoHooks, SpawnError, StartHooks, Stdio};
use crate::spec::{ContainerName, ContainerSpec};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::collections::BTreeMap;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::PathBuf;
use std::time::{Duration, Instant};

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
    /// Start `spec`'s process in its namespaces and cgroup. A start that fails gives
    /// back everything it took (network, cgroup, state directory) before it returns.
    fn launch(&mut self, spec: &ContainerSpec) -> Result<Launched, LaunchError>;
    /// Send `signal` to the container's PID 1.
    fn signal(&mut self, pid: Pid, signal: i32);
    /// Kill every process of the container (cgroup.kill; SIGKILL to `pid` without a cgroup).
    fn kill_all(&mut self, name: &ContainerName, pid: Pid);
    /// After its PID 1 was reaped: kill what is left, read the final figures, remove the cgroup.
    fn release(&mut self, name: &ContainerName) -> Option<CgroupStats>;
    /// Start a healthcheck command inside the running container; the returned process
    /// exits 0 when healthy.
    fn healthcheck(&mut self, name: &ContainerName, pid: Pid, argv: &[String], timeout: Duration) -> Result<Pid, ProbeError>;
    /// Current cgroup figures.
    fn stats(&self, name: &ContainerName) -> Result<CgroupStats, ProbeError>;
    /// The cgroup directory of a running container.
    fn cgroup_dir(&self, name: &ContainerName) -> Option<PathBuf>;
    /// The launch plan of a running container (for `exec`).
    fn plan(&self, name: &ContainerName) -> Option<&LaunchPlan>;
    /// Finish what could not be finished at once (a killed cgroup not yet empty, so not
    /// yet removed). Called from every turn of the loop; never waits.
    fn tidy(&mut self, _now: Instant) {}
    /// When [`tidy`](Self::tidy) has something to retry, if anything.
    fn tidy_deadline(&self) -> Option<Instant> {
        None
    }
}

/// Connects containers to their network (`network = "NAME"`): PID 1 implements it with
/// keel-netconf (bridge, veth, IPAM, nftables); the runtime only calls it.
pub trait NetworkAttacher {
    /// Before a start: reserve what `spec` needs on its network, add what the container
    /// must see to `plan` (e.g. /etc/resolv.conf and /etc/hosts binds), and return the
    /// hooks that wire the new network namespace during the start.
    fn attach(&mut self, spec: &ContainerSpec, plan: &mut LaunchPlan) -> Result<Box<dyn StartHooks>, AttachError>;
    /// The container's process ended: drop what only a running container needs (its
    /// published ports). Its address stays reserved.
    fn detach(&mut self, name: &ContainerName);
    /// A start failed after [`attach`](Self::attach) was called (whether it succeeded
    /// or failed half-way): give back everything that attach took — what [`detach`]
    /// drops, the files it wrote, and the address when that attach allocated it (an
    /// address the container held before stays its own). Returns every failure.
    ///
    /// [`detach`]: Self::detach
    fn undo_attach(&mut self, name: &ContainerName) -> Vec<AttachError> {
        self.detach(name);
        Vec::new()
    }
}

/// For hosts without container networks (`keel run` without a network, unit tests):
/// `none` and `host` work, a named network is a clear error.
pub struct NoNetworks;

impl NetworkAttacher for NoNetworks {
    fn attach(&mut self, spec: &ContainerSpec, _plan: &mut LaunchPlan) -> Result<Box<dyn StartHooks>, AttachError> {
        match &spec.network {
            crate::spec::NetworkMode::Named(name) => Err(AttachError::Unavailable { network: name.clone() }),
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
    /// Test option `keel.test.fail_launch`: the starts to fail, and how.
    faults: BTreeMap<ContainerName, LaunchFault>,
    /// Killed cgroups of gone containers, removed once empty (never waited for).
    doomed: super::doomed::DoomedCgroups,
}

/// A test-only failure of a start (`keel.test.fail_launch=NAME:STEP[:leak]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LaunchFault {
    /// The start fails right after this step.
    pub after: LaunchStep,
    /// Negative control: the failed start gives back nothing, so a test can show its
    /// leak checks see what a start takes.
    pub leak: bool,
}

impl SystemLauncher {
    /// Containers keep their state (overlay upper) under `state_root`; cgroups go under
    /// `tree`; `network` connects them to their networks.
    pub fn new(state_root: PathBuf, tree: CgroupTree, network: Box<dyn NetworkAttacher>) -> Self {
        SystemLauncher {
            state_root,
            image_root: crate::image::store::DEFAULT_ROOT.into(),
            tree,
            network,
            running: BTreeMap::new(),
            faults: BTreeMap::new(),
            doomed: Default::default(),
        }
    }

    /// The image store to read images from (default [`crate::image::store::DEFAULT_ROOT`]).
    pub fn with_image_root(mut self, image_root: PathBuf) -> Self {
        self.image_root = image_root;
        self
    }

    /// Test-only (`keel.test.fail_launch=NAME:STEP[:leak]`): every start of each named
    /// container fails right after its step, to prove a failed start gives back all it took.
    pub fn fail_launches(&mut self, faults: impl IntoIterator<Item = (ContainerName, LaunchFault)>) {
        self.faults.extend(faults);
    }

    fn injected(&self, name: &ContainerName, step: LaunchStep) -> Result<(), (LaunchStep, LaunchCause)> {
        match self.faults.get(name) {
            Some(fault) if fault.after == step => Err((step, LaunchCause::Injected(step))),
            _ => Ok(()),
        }
    }

    /// The steps of a start; each pushes onto `taken` what it must give back if a later
    /// step fails. On success the cgroup moves to `running` and `taken` is left empty.
    fn start(&mut self, spec: &ContainerSpec, taken: &mut Vec<Taken>) -> Result<Launched, (LaunchStep, LaunchCause)> {
        let cgroup2 = self.tree.is_v2();
        if spec.resources.any() && !cgroup2 {
            return Err((LaunchStep::Image, LaunchCause::NoCgroup2));
        }
        let (merged, mut plan) =
            crate::image::run::plan(&self.image_root, spec, &self.state_root, cgroup2).map_err(|e| (LaunchStep::Image, e.into()))?;
        let spec = &merged;
        if let Some(state) = plan.root.merged.parent().filter(|dir| !dir.exists()) {
            // Made by the network's files or by the spawn: this start's, so gone if it fails.
            taken.push(Taken::StateDir(state.to_path_buf()));
        }
        self.injected(&spec.name, LaunchStep::Image)?;

        // Even a failed attach may have taken something (an address, a file).
        taken.push(Taken::Network(spec.name.clone()));
        let hooks = self.network.attach(spec, &mut plan).map_err(|e| (LaunchStep::Network, e.into()))?;
        let mut hooks = OomScoreReset { inner: hooks, fail: self.faults.get(&spec.name).is_some_and(|f| f.after == LaunchStep::Hooks) };
        self.injected(&spec.name, LaunchStep::Network)?;

        let cgroup_step = |e: CgroupError| (LaunchStep::Cgroup, LaunchCause::Cgroup(e));
        let cgroup_fd = if cgroup2 {
            // A cgroup of an earlier run still waiting for removal is reused (and killed) by prepare.
            self.doomed.forget(&spec.name);
            let devices = crate::cgroup::devices::rules_for(spec.privilege);
            let cgroup = self.tree.prepare_with_devices(&spec.name, &spec.resources, devices).map_err(cgroup_step)?;
            let opened = cgroup.open_main_fd();
            let path = cgroup.main_dir();
            taken.push(Taken::Cgroup(spec.name.clone(), cgroup));
            Some(opened.map_err(|source| (LaunchStep::Cgroup, LaunchCause::CgroupOpen { path, source }))?)
        } else {
            None
        };
        self.injected(&spec.name, LaunchStep::Cgroup)?;

        let pipes = |e| (LaunchStep::Pipes, LaunchCause::Pipes(e));
        let (stdout, stdout_w) = output_pipe().map_err(pipes)?;
        let (stderr, stderr_w) = output_pipe().map_err(pipes)?;
        self.injected(&spec.name, LaunchStep::Pipes)?;

        let stdio = Stdio { stdout: stdout_w.as_raw_fd(), stderr: stderr_w.as_raw_fd() };
        let spawned = runtime::spawn_with_hooks(&plan, stdio, cgroup_fd.as_ref().map(|fd| fd.as_fd()), &mut hooks);
        drop((stdout_w, stderr_w));
        taken.push(Taken::Hooks(Box::new(hooks)));
        let pid = spawned.map_err(|e| {
            let step = if matches!(e, SpawnError::Hook { .. }) { LaunchStep::Hooks } else { LaunchStep::Started };
            (step, LaunchCause::Spawn(e))
        })?;
        taken.push(Taken::Process(pid));
        self.injected(&spec.name, LaunchStep::Started)?;

        let cgroup = taken.drain(..).find_map(|t| match t {
            Taken::Cgroup(_, cgroup) => Some(cgroup),
            _ => None,
        });
        self.running.insert(spec.name.clone(), (plan, cgroup));
        Ok(Launched { pid, stdout: Some(stdout), stderr: Some(stderr) })
    }

    /// Give back one thing a failed start took.
    fn give_back(&mut self, taken: Taken) -> Result<(), Vec<CleanupError>> {
        let one = |r: Result<(), CleanupError>| r.map_err(|e| vec![e]);
        match taken {
            Taken::Process(pid) => one(match kill(pid, Signal::SIGKILL) {
                Ok(()) | Err(nix::Error::ESRCH) => Ok(()),
                Err(source) => Err(CleanupError::Kill { pid: pid.as_raw(), source }),
            }),
            Taken::Hooks(mut hooks) => one(hooks.undo().map_err(CleanupError::Hooks)),
            Taken::Cgroup(name, cgroup) => one(self.doomed.discard(&name, cgroup, Instant::now()).map_err(CleanupError::Cgroup)),
            Taken::Network(name) => {
                let errors: Vec<CleanupError> = self.network.undo_attach(&name).into_iter().map(CleanupError::Network).collect();
                if errors.is_empty() {
                    Ok(())
                } else {
                    Err(errors)
                }
            }
            Taken::StateDir(path) => one(match std::fs::remove_dir_all(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(CleanupError::StateDir { path, source: e }),
                _ => Ok(()),
            }),
        }
    }
}

/// What a start took, given back in reverse order when a later step fails.
enum Taken {
    /// The state directory, which did not exist before the start.
    StateDir(PathBuf),
    /// The network attachment of the container.
    Network(ContainerName),
    /// The container's cgroup, created by the start.
    Cgroup(ContainerName, ContainerCgroup),
    /// The start hooks, which may have made a veth.
    Hooks(Box<dyn StartHooks>),
    /// The container's process, which reached execve.
    Process(Pid),
}

/// The network's start hooks, plus one step in the parent while the child waits:
/// PID 1 runs with `oom_score_adj` -1000, which the clone inherited; the container must
/// be a normal candidate for the OOM killer (its cgroup's limits rely on it), so it gets
/// 0 before it runs a single instruction of its own.
struct OomScoreReset {
    inner: Box<dyn StartHooks>,
    /// Test option: fail right after the network's hooks ran.
    fail: bool,
}

impl StartHooks for OomScoreReset {
    fn after_clone(&mut self, pid: Pid) -> Result<(), HookError> {
        crate::cgroup::oom::set_oom_score_adj(Some(pid.as_raw()), 0)
            .map_err(|source| HookError::Io { what: "oom_score_adj".into(), source })?;
        self.inner.after_clone(pid)?;
        if self.fail {
            return Err(HookError::Injected);
        }
        Ok(())
    }
    fn in_child(&self) -> Result<(), HookError> {
        self.inner.in_child()
    }
    fn undo(&mut self) -> Result<(), HookError> {
        self.inner.undo()
    }
}

/// A pipe whose read end does not block PID 1 and whose write end goes to the container.
fn output_pipe() -> Result<(OwnedFd, OwnedFd), nix::Error> {
    use nix::fcntl::OFlag;
    let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
    let flags = nix::fcntl::fcntl(read.as_fd(), nix::fcntl::FcntlArg::F_GETFL)?;
    let flags = OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK;
    nix::fcntl::fcntl(read.as_fd(), nix::fcntl::FcntlArg::F_SETFL(flags))?;
    Ok((read, write))
}

impl Launcher for SystemLauncher {
    fn launch(&mut self, spec: &ContainerSpec) -> Result<Launched, LaunchError> {
        let mut taken = Vec::new();
        match self.start(spec, &mut taken) {
            Ok(launched) => Ok(launched),
            Err((step, cause)) if self.faults.get(&spec.name).is_some_and(|f| f.leak) => {
                drop(taken); // nothing taken has a Drop that would give it back
                Err(LaunchError::Failed { step, cause: Box::new(cause), cleanup: CleanupErrors::default() })
            }
            Err((step, cause)) => {
                let cleanup = unwind(taken, |t| self.give_back(t)).into_iter().flatten().collect();
                Err(LaunchError::Failed { step, cause: Box::new(cause), cleanup: CleanupErrors(cleanup) })
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
        if let Err(e) = self.doomed.discard(name, cgroup, Instant::now()) {
            log::debug!("container {name}: {e}");
        }
        stats
    }

    fn healthcheck(&mut self, name: &ContainerName, pid: Pid, argv: &[String], timeout: Duration) -> Result<Pid, ProbeError> {
        let (plan, cgroup) = self.running.get(name).ok_or_else(|| ProbeError::NotRunning { name: name.to_string() })?;
        let cgroup_dir = cgroup.as_ref().map(|c| c.dir().to_path_buf());
        crate::health::spawn_check(pid, plan, cgroup_dir.as_deref(), argv, timeout).map_err(ProbeError::Fork)
    }

    fn stats(&self, name: &ContainerName) -> Result<CgroupStats, ProbeError> {
        match self.running.get(name) {
            Some((_, Some(cgroup))) => Ok(cgroup.stats()?),
            Some((_, None)) => Err(ProbeError::NoCgroup),
            None => Err(ProbeError::NotRunning { name: name.to_string() }),
        }
    }

    fn cgroup_dir(&self, name: &ContainerName) -> Option<PathBuf> {
        self.running.get(name).and_then(|(_, c)| c.as_ref()).map(|c| c.dir().to_path_buf())
    }

    fn plan(&self, name: &ContainerName) -> Option<&LaunchPlan> {
        self.running.get(name).map(|(plan, _)| plan)
    }

    fn tidy(&mut self, now: Instant) {
        self.doomed.tidy(now);
    }

    fn tidy_deadline(&self) -> Option<Instant> {
        self.doomed.deadline()
    }
}
