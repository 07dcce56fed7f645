//! One container's leaf cgroup: join it, kill everything in it, read its usage, remove it.

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

/// A container's leaf cgroup directory (`<root>/keel/<NAME>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerCgroup {
    dir: PathBuf,
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

    /// Open the directory (`O_RDONLY|O_DIRECTORY|O_CLOEXEC`), e.g. for clone3's
    /// `CLONE_INTO_CGROUP`.
    pub fn open_dir_fd(&self) -> io::Result<OwnedFd> {
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
        fcntl::open(self.dir.as_path(), flags, Mode::empty()).map_err(io::Error::from)
    }

    /// Move process `pid` (and its threads) into this cgroup.
    pub fn add_process(&self, pid: Pid) -> Result<(), CgroupError> {
        fsio::write(&self.dir.join("cgroup.procs"), &pid.to_string())
    }

    /// The processes in this cgroup (0 = a process outside our pid namespace).
    pub fn procs(&self) -> Result<Vec<i32>, CgroupError> {
        let path = self.dir.join("cgroup.procs");
        let text = fsio::read(&path)?;
        stats::parse_procs(&text).map_err(|source| CgroupError::Parse { path, source })
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

    /// Remove the cgroup directory. Already gone is fine; still holding processes or
    /// child cgroups is [`CgroupError::Busy`].
    pub fn remove(&self) -> Result<(), CgroupError> {
        match fs::remove_dir(&self.dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) if e.raw_os_error() == Some(Errno::EBUSY as i32) => {
                Err(CgroupError::Busy { path: self.dir.clone() })
            }
            Err(source) => Err(CgroupError::Io { op: "rmdir", path: self.dir.clone(), source }),
        }
    }

    /// CPU, memory, pids and OOM figures; files of controllers that are not enabled
    /// count as 0 (`memory_peak`: `None`).
    pub fn stats(&self) -> Result<CgroupStats, CgroupError> {
        stats::read_stats(&self.dir)
    }
}
