//! One container's cgroup (`<root>/keel/<NAME>`): its limits and figures, the `main`
//! leaf its own processes are cloned into, and one `exec-*` leaf per `keelctl exec` or
//! healthcheck ([`ExecCgroup`]), so a command that ran out of time is killed with every
//! descendant, even those that left its session.

use super::error::{CgroupError, ParseError};
use super::fsio;
use super::stats::{self, CgroupStats};
use nix::errno::Errno;
use nix::fcntl::{self, OFlag};
use nix::sys::signal::{self, Signal};
use nix::sys::stat::Mode;
use nix::unistd::Pid;
use std::fs;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::thread;
use std::time::Duration;

/// Rounds of the SIGKILL fallback before [`ContainerCgroup::kill`] gives up.
const KILL_ROUNDS: u32 = 50;
/// Pause between rounds of the SIGKILL fallback.
const KILL_PAUSE: Duration = Duration::from_millis(20);

/// The leaf below a container's cgroup that holds the container's own processes.
pub const MAIN_LEAF: &str = "main";
/// Prefix of the leaves below a container's cgroup that hold exec'd commands.
pub const EXEC_PREFIX: &str = "exec-";
/// Most exec leaves tried per process before [`ContainerCgroup::new_exec`] gives up.
const EXEC_NAMES: u32 = 1000;
/// How deep [`ContainerCgroup::procs`] and [`ContainerCgroup::remove`] look below a
/// cgroup: containers cannot create cgroups (their cgroupfs is read-only), so keel's
/// own two levels are all there is.
const MAX_DEPTH: usize = 4;

/// A container's cgroup directory (`<root>/keel/<NAME>`), which holds its limits and
/// counts everything below it; its processes live in the leaves below.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerCgroup {
    dir: PathBuf,
}

fn open_dir(dir: &Path) -> io::Result<OwnedFd> {
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
    fcntl::open(dir, flags, Mode::empty()).map_err(io::Error::from)
}

impl ContainerCgroup {
    /// A handle on the cgroup at `dir`; nothing is checked or created.
    pub fn at(dir: impl Into<PathBuf>) -> Self {
        ContainerCgroup { dir: dir.into() }
    }

    /// The cgroup directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The `main` leaf, where the container's own processes live.
    pub fn main_dir(&self) -> PathBuf {
        self.dir.join(MAIN_LEAF)
    }

    /// Open the `main` leaf (`O_RDONLY|O_DIRECTORY|O_CLOEXEC`) for clone3's
    /// `CLONE_INTO_CGROUP`.
    pub fn open_main_fd(&self) -> io::Result<OwnedFd> {
        open_dir(&self.main_dir())
    }

    /// Move process `pid` (and its threads) into the `main` leaf.
    pub fn add_process(&self, pid: Pid) -> Result<(), CgroupError> {
        fsio::write(&self.main_dir().join("cgroup.procs"), &pid.to_string())
    }

    /// Create a fresh leaf `exec-<PID>-<N>` for one exec'd command (PID: the caller's,
    /// so concurrent helpers never pick the same name; N: the first free number, as a
    /// leaf a command left processes in may outlive its helper) and open it.
    pub fn new_exec(&self) -> Result<ExecCgroup, CgroupError> {
        let me = std::process::id();
        for n in 0..EXEC_NAMES {
            let dir = self.dir.join(format!("{EXEC_PREFIX}{me}-{n}"));
            if fsio::mkdir(&dir)? {
                let fd = open_dir(&dir).map_err(|source| CgroupError::Io { op: "open", path: dir.clone(), source })?;
                return Ok(ExecCgroup { cgroup: ContainerCgroup::at(dir), fd });
            }
        }
        Err(CgroupError::Io {
            op: "mkdir",
            path: self.dir.join(format!("{EXEC_PREFIX}{me}-*")),
            source: io::Error::from(io::ErrorKind::AlreadyExists),
        })
    }

    /// The processes in this cgroup and every cgroup below it (0 = a process outside our
    /// pid namespace).
    pub fn procs(&self) -> Result<Vec<i32>, CgroupError> {
        let mut pids = Vec::new();
        for dir in self.tree(MAX_DEPTH)? {
            let path = dir.join("cgroup.procs");
            let Some(text) = fsio::read_optional(&path)? else { continue };
            let found = stats::parse_procs(&text).map_err(|source| CgroupError::Parse { path, source })?;
            pids.extend(found);
        }
        Ok(pids)
    }

    /// This directory and the directories below it, parents before children, at most
    /// `depth` levels down.
    fn tree(&self, depth: usize) -> Result<Vec<PathBuf>, CgroupError> {
        let mut dirs = vec![self.dir.clone()];
        let mut level = vec![self.dir.clone()];
        for _ in 0..depth {
            let mut next = Vec::new();
            for dir in &level {
                next.extend(child_dirs(dir)?);
            }
            dirs.extend(next.iter().cloned());
            level = next;
        }
        Ok(dirs)
    }

    /// After a kill of a reused cgroup: remove the exec leaves an earlier run left
    /// (best effort; one still busy is removed with the container).
    pub(super) fn remove_stale_children(&self) {
        if let Ok(children) = child_dirs(&self.dir) {
            let is_exec = |c: &&PathBuf| c.file_name().is_some_and(|n| n.to_string_lossy().starts_with(EXEC_PREFIX));
            for child in children.iter().filter(is_exec) {
                let _ = ContainerCgroup::at(child).remove();
            }
        }
    }

    /// SIGKILL every process in the cgroup (and its descendants): `cgroup.kill` (Linux
    /// 5.14+), else signal each pid of `cgroup.procs` until the list is empty. Returns once
    /// the signals are sent; with `cgroup.kill` the processes may still be exiting.
    pub fn kill(&self) -> Result<(), CgroupError> {
        if fsio::write_existing(&self.dir.join("cgroup.kill"), "1")? {
            return Ok(());
        }
        self.kill_by_signal(KILL_ROUNDS, KILL_PAUSE)
    }

    /// The fallback of [`kill`](Self::kill): up to `rounds` times, read `cgroup.procs`,
    /// stop if it is empty, else SIGKILL each pid and wait `pause` (new forks may appear).
    pub(super) fn kill_by_signal(&self, rounds: u32, pause: Duration) -> Result<(), CgroupError> {
        for _ in 0..rounds {
            let pids = self.procs()?;
            if pids.is_empty() {
                return Ok(());
            }
            self.sigkill_all(&pids)?;
            thread::sleep(pause);
        }
        let remaining = self.procs()?;
        if remaining.is_empty() {
            return Ok(());
        }
        let path = self.dir.join("cgroup.procs");
        Err(CgroupError::KillIncomplete { path, rounds, remaining })
    }

    /// SIGKILL each pid; a pid already gone is fine. Every pid is tried before the
    /// first failure is returned. Pid 0 (outside our pid namespace) is skipped: kill(0)
    /// would signal our own process group.
    fn sigkill_all(&self, pids: &[i32]) -> Result<(), CgroupError> {
        let mut first_error = None;
        for &pid in pids.iter().filter(|&&pid| pid > 0) {
            match signal::kill(Pid::from_raw(pid), Signal::SIGKILL) {
                Ok(()) | Err(Errno::ESRCH) => {}
                Err(source) => {
                    let path = self.dir.join("cgroup.procs");
                    first_error.get_or_insert(CgroupError::Signal { path, pid, source });
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Whether no process is left in the cgroup or below it (`cgroup.events`
    /// `populated 0`).
    pub fn is_empty(&self) -> Result<bool, CgroupError> {
        let path = self.dir.join("cgroup.events");
        let text = fsio::read(&path)?;
        match stats::flat_keyed_value(&text, "populated") {
            Ok(Some(populated)) => Ok(populated == 0),
            Ok(None) => {
                let source = ParseError::MissingKey { key: "populated".into() };
                Err(CgroupError::Parse { path, source })
            }
            Err(source) => Err(CgroupError::Parse { path, source }),
        }
    }

    /// Remove the cgroup directory and the cgroups below it, children first. Already
    /// gone is fine; one still holding processes is [`CgroupError::Busy`] (every other
    /// directory is still tried).
    pub fn remove(&self) -> Result<(), CgroupError> {
        let dirs = match self.tree(MAX_DEPTH) {
            Ok(dirs) => dirs,
            Err(CgroupError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        let mut first_error = None;
        for dir in dirs.iter().rev() {
            if let Err(e) = remove_one(dir) {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// CPU, memory, pids and OOM figures; files of controllers that are not enabled
    /// count as 0 (`memory_peak`: `None`).
    pub fn stats(&self) -> Result<CgroupStats, CgroupError> {
        stats::read_stats(&self.dir)
    }
}

/// rmdir one cgroup directory (cgroupfs lets it go with its interface files).
fn remove_one(dir: &Path) -> Result<(), CgroupError> {
    match fs::remove_dir(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) if e.raw_os_error() == Some(Errno::EBUSY as i32) => Err(CgroupError::Busy { path: dir.to_path_buf() }),
        Err(source) => Err(CgroupError::Io { op: "rmdir", path: dir.to_path_buf(), source }),
    }
}

/// The subdirectories of `dir` (child cgroups), sorted by name.
fn child_dirs(dir: &Path) -> Result<Vec<PathBuf>, CgroupError> {
    let io_error = |source| CgroupError::Io { op: "read", path: dir.to_path_buf(), source };
    let mut children = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_error)? {
        let entry = entry.map_err(io_error)?;
        if entry.file_type().map_err(io_error)?.is_dir() {
            children.push(entry.path());
        }
    }
    children.sort();
    Ok(children)
}

/// The leaf one exec'd command (and whatever it starts) runs in, below its container's
/// cgroup: cloned into through [`fd`](Self::fd), killed as a whole on a timeout.
#[derive(Debug)]
pub struct ExecCgroup {
    cgroup: ContainerCgroup,
    fd: OwnedFd,
}

impl ExecCgroup {
    /// The leaf's directory.
    pub fn dir(&self) -> &Path {
        self.cgroup.dir()
    }

    /// The open leaf, for clone3's `CLONE_INTO_CGROUP`.
    pub fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.fd.as_fd()
    }

    /// SIGKILL every process in the leaf, including those that called setsid or
    /// daemonized (see [`ContainerCgroup::kill`]).
    pub fn kill(&self) -> Result<(), CgroupError> {
        self.cgroup.kill()
    }

    /// Whether no process is left in the leaf.
    pub fn is_empty(&self) -> Result<bool, CgroupError> {
        self.cgroup.is_empty()
    }

    /// The command is over: wait up to `wait` for the leaf to empty (a kill is
    /// asynchronous), then remove it. A leaf that still holds processes the command left
    /// running is kept (they belong to the container now) and removed with it.
    pub fn finish(self, wait: Duration) -> Result<(), CgroupError> {
        let deadline = std::time::Instant::now() + wait;
        while !self.is_empty().unwrap_or(true) && std::time::Instant::now() < deadline {
            thread::sleep(KILL_PAUSE / 4);
        }
        self.cgroup.remove()
    }
}
