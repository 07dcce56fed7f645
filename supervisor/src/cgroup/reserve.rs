//! The host's reserve: how much memory and how many tasks the containers' parent cgroup
//! (`<root>/keel`) leaves to PID 1, its helpers and the kernel, like Kubernetes'
//! `systemReserved`. Every container lives below that parent, so its `memory.max` and
//! `pids.max` bound all containers together: a runaway container is OOM-killed or
//! refused a fork inside the containers' subtree, while the host keeps what it needs.
//!
//! The figures come from the running kernel (`/proc/meminfo` `MemTotal`,
//! `/proc/sys/kernel/pid_max` and `/proc/sys/kernel/threads-max`); the computation is
//! pure ([`parent_limits`]), reading them is [`read_system`].
//!
//! Default reserve: memory `max(10 % of MemTotal, 128 MiB)`, 1024 tasks. The tasks limit
//! of the system is the smaller of `pid_max` and `threads-max`: `fork` fails at either,
//! and on a small machine `threads-max` (derived from RAM) is far below `pid_max`.

use crate::spec::units::parse_bytes;
use serde::Deserialize;
use std::fs;
use std::path::{Path, PathBuf};

/// Tasks kept for the host when nothing else is configured.
pub const DEFAULT_RESERVED_PIDS: u64 = 1024;
/// Share of `MemTotal` kept for the host when nothing else is configured, in percent.
pub const DEFAULT_RESERVED_MEMORY_PERCENT: u8 = 10;
/// The least memory the default reserve keeps for the host, in bytes.
pub const MIN_RESERVED_MEMORY: u64 = 128 << 20;

/// How much memory the host keeps from the containers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum MemoryReserve {
    /// `max(10 % of MemTotal, 128 MiB)`.
    Default,
    /// A fixed size (`"512M"`).
    Bytes(u64),
    /// A share of `MemTotal` (`"15%"`, 1 to 99).
    Percent(u8),
}

impl TryFrom<String> for MemoryReserve {
    type Error = ReserveError;

    /// `"512M"`, `"1G"` or a byte count; `"15%"`; `"default"`.
    fn try_from(text: String) -> Result<Self, ReserveError> {
        let trimmed = text.trim();
        if trimmed == "default" {
            return Ok(MemoryReserve::Default);
        }
        if let Some(number) = trimmed.strip_suffix('%') {
            return match number.trim().parse::<u8>() {
                Ok(percent @ 1..=99) => Ok(MemoryReserve::Percent(percent)),
                _ => Err(ReserveError::BadMemory { text, why: "a percentage from 1% to 99%" }),
            };
        }
        match parse_bytes(trimmed) {
            Ok(bytes) if bytes > 0 => Ok(MemoryReserve::Bytes(bytes)),
            _ => Err(ReserveError::BadMemory { text, why: "a size such as 256M, or a percentage" }),
        }
    }
}

impl std::fmt::Display for MemoryReserve {
    /// The text [`MemoryReserve::try_from`] reads back: `default`, bytes, or `N%`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MemoryReserve::Default => f.write_str("default"),
            MemoryReserve::Bytes(bytes) => write!(f, "{bytes}"),
            MemoryReserve::Percent(percent) => write!(f, "{percent}%"),
        }
    }
}

/// What the host keeps from the containers (`[reserved]` in /etc/keel/keel.toml).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostReserve {
    /// Memory kept for the host.
    #[serde(default = "default_memory")]
    pub memory: MemoryReserve,
    /// Tasks (processes and threads) kept for the host.
    #[serde(default = "default_pids")]
    pub pids: u64,
}

fn default_memory() -> MemoryReserve {
    MemoryReserve::Default
}

fn default_pids() -> u64 {
    DEFAULT_RESERVED_PIDS
}

impl Default for HostReserve {
    fn default() -> Self {
        HostReserve { memory: MemoryReserve::Default, pids: DEFAULT_RESERVED_PIDS }
    }
}

/// The kernel's figures the reserve is taken from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SystemFigures {
    /// `MemTotal` of /proc/meminfo, in bytes.
    pub mem_total: u64,
    /// /proc/sys/kernel/pid_max.
    pub pid_max: u64,
    /// /proc/sys/kernel/threads-max.
    pub threads_max: u64,
}

/// What `<root>/keel` gets: the system's figures minus the host's reserve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParentLimits {
    /// `memory.max` of `<root>/keel`, in bytes.
    pub memory_max: u64,
    /// `pids.max` of `<root>/keel`.
    pub pids_max: u64,
}

impl ParentLimits {
    /// The writes into `<root>/keel`.
    pub fn writes(&self) -> Vec<(&'static str, String)> {
        vec![("memory.max", self.memory_max.to_string()), ("pids.max", self.pids_max.to_string())]
    }
}

/// Why the reserve could not be worked out.
#[derive(Debug, thiserror::Error)]
pub enum ReserveError {
    /// A `[reserved] memory` value that is neither a size nor a percentage.
    #[error("reserved memory {text:?}: expected {why}")]
    BadMemory {
        /// The text given.
        text: String,
        /// What was expected.
        why: &'static str,
    },
    /// A kernel file could not be read.
    #[error("read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A kernel file did not hold what the kernel documents.
    #[error("parse {}: {what}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        what: String,
    },
    /// The reserve leaves the containers nothing (or less than one container needs).
    #[error("reserved {what} ({reserve}) leaves too little of the system's {total} for the containers")]
    TooLarge {
        /// `memory` (bytes) or `pids`.
        what: &'static str,
        /// The reserve.
        reserve: u64,
        /// The system's figure.
        total: u64,
    },
}

/// The reserved memory in bytes for a machine with `mem_total` bytes.
pub fn reserved_memory(reserve: MemoryReserve, mem_total: u64) -> u64 {
    let percent = |p: u8| mem_total / 100 * u64::from(p);
    match reserve {
        MemoryReserve::Default => percent(DEFAULT_RESERVED_MEMORY_PERCENT).max(MIN_RESERVED_MEMORY),
        MemoryReserve::Bytes(bytes) => bytes,
        MemoryReserve::Percent(p) => percent(p),
    }
}

/// The limits of `<root>/keel`: `MemTotal - reserved memory` and
/// `min(pid_max, threads-max) - reserved pids`. Refused when the containers would be
/// left with less than a quarter of the memory or fewer tasks than one container may use
/// by default ([`super::limits::DEFAULT_PIDS_MAX`] / 8).
pub fn parent_limits(system: &SystemFigures, reserve: &HostReserve) -> Result<ParentLimits, ReserveError> {
    let memory = reserved_memory(reserve.memory, system.mem_total);
    let memory_max = system.mem_total.saturating_sub(memory);
    if memory_max < system.mem_total / 4 {
        let total = system.mem_total;
        return Err(ReserveError::TooLarge { what: "memory", reserve: memory, total });
    }
    let tasks = system.pid_max.min(system.threads_max);
    let pids_max = tasks.saturating_sub(reserve.pids);
    if pids_max < super::limits::DEFAULT_PIDS_MAX / 8 {
        return Err(ReserveError::TooLarge { what: "pids", reserve: reserve.pids, total: tasks });
    }
    Ok(ParentLimits { memory_max, pids_max })
}

/// `MemTotal` of a /proc/meminfo text, in bytes (the file gives kB).
pub fn parse_mem_total(text: &str) -> Result<u64, String> {
    let line = text.lines().find_map(|l| l.strip_prefix("MemTotal:")).ok_or_else(|| "no MemTotal line".to_string())?;
    let mut words = line.split_whitespace();
    match (words.next().map(str::parse::<u64>), words.next(), words.next()) {
        (Some(Ok(kib)), Some("kB"), None) => kib.checked_mul(1024).ok_or_else(|| format!("MemTotal {kib} kB is too large")),
        _ => Err(format!("MemTotal:{line}: expected \"<number> kB\"")),
    }
}

/// A file holding one unsigned integer (`pid_max`, `threads-max`).
fn parse_number(text: &str) -> Result<u64, String> {
    text.trim().parse().map_err(|_| format!("{:?} is not a number", text.trim()))
}

/// Read the system's figures under `proc_root` (normally `/proc`).
pub fn read_system(proc_root: &Path) -> Result<SystemFigures, ReserveError> {
    let read = |relative: &str, parse: fn(&str) -> Result<u64, String>| {
        let path = proc_root.join(relative);
        let text = fs::read_to_string(&path).map_err(|source| ReserveError::Read { path: path.clone(), source })?;
        parse(&text).map_err(|what| ReserveError::Parse { path, what })
    };
    Ok(SystemFigures {
        mem_total: read("meminfo", parse_mem_total)?,
        pid_max: read("sys/kernel/pid_max", parse_number)?,
        threads_max: read("sys/kernel/threads-max", parse_number)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    /// The head of a 512 MiB QEMU guest's /proc/meminfo.
    const MEMINFO: &str = "MemTotal:         486340 kB\nMemFree:          401232 kB\n\
                           MemAvailable:     420000 kB\nBuffers:               0 kB\n";

    fn system(mem_total: u64, pid_max: u64, threads_max: u64) -> SystemFigures {
        SystemFigures { mem_total, pid_max, threads_max }
    }

    #[test]
    fn mem_total_is_read_in_bytes() {
        assert_eq!(parse_mem_total(MEMINFO), Ok(486_340 * 1024));
        assert!(parse_mem_total("MemFree: 5 kB\n").unwrap_err().contains("no MemTotal"));
        assert!(parse_mem_total("MemTotal: 5 MB\n").is_err());
        assert!(parse_mem_total("MemTotal: lots kB\n").is_err());
    }

    #[test]
    fn default_reserve_is_ten_percent_but_at_least_128_mib() {
        // 512 MiB: 10 % is 51 MiB, so the floor applies.
        assert_eq!(reserved_memory(MemoryReserve::Default, 512 * MIB), 128 * MIB);
        // 4 GiB: 10 % (409.6 MiB) is above the floor.
        let four_gib = 4096 * MIB;
        assert_eq!(reserved_memory(MemoryReserve::Default, four_gib), four_gib / 100 * 10);
        assert_eq!(reserved_memory(MemoryReserve::Percent(25), 400 * MIB), 100 * MIB);
        assert_eq!(reserved_memory(MemoryReserve::Bytes(64 * MIB), 4096 * MIB), 64 * MIB);
    }

    #[test]
    fn parent_limits_of_a_small_guest() {
        let guest = system(parse_mem_total(MEMINFO).unwrap(), 32_768, 3_799);
        let limits = parent_limits(&guest, &HostReserve::default()).unwrap();
        assert_eq!(limits.memory_max, 486_340 * 1024 - 128 * MIB);
        // threads-max, not pid_max, is the system's limit here.
        assert_eq!(limits.pids_max, 3_799 - 1024);
        assert_eq!(limits.writes(), [("memory.max", limits.memory_max.to_string()), ("pids.max", "2775".to_string())]);
    }

    #[test]
    fn parent_limits_of_a_large_host_use_pid_max() {
        let host = system(64 * 1024 * MIB, 4_194_304, 514_000);
        let reserve = HostReserve { memory: MemoryReserve::Bytes(2048 * MIB), pids: 4096 };
        let limits = parent_limits(&host, &reserve).unwrap();
        assert_eq!(limits, ParentLimits { memory_max: 62 * 1024 * MIB, pids_max: 509_904 });
    }

    #[test]
    fn a_reserve_that_starves_the_containers_is_refused() {
        let small = system(512 * MIB, 32_768, 3_799);
        let memory = HostReserve { memory: MemoryReserve::Percent(80), pids: 1024 };
        let err = parent_limits(&small, &memory).unwrap_err();
        assert!(matches!(err, ReserveError::TooLarge { what: "memory", .. }), "{err:?}");
        let pids = HostReserve { pids: 3_700, ..HostReserve::default() };
        let err = parent_limits(&small, &pids).unwrap_err();
        let expected = ReserveError::TooLarge { what: "pids", reserve: 3_700, total: 3_799 };
        assert_eq!(err.to_string(), expected.to_string());
        // Negative control: the same machine with the default reserve is fine.
        parent_limits(&small, &HostReserve::default()).unwrap();
    }

    #[test]
    fn memory_reserve_parses_sizes_and_percentages() {
        let parse = |t: &str| MemoryReserve::try_from(t.to_string());
        assert_eq!(parse("256M").unwrap(), MemoryReserve::Bytes(256 * MIB));
        assert_eq!(parse("15%").unwrap(), MemoryReserve::Percent(15));
        assert_eq!(parse("default").unwrap(), MemoryReserve::Default);
        for bad in ["0", "100%", "0%", "lots", "-5%", ""] {
            let err = parse(bad).unwrap_err();
            assert!(matches!(&err, ReserveError::BadMemory { text, .. } if text == bad), "{bad}");
        }
    }

    #[test]
    fn memory_reserve_text_reads_back() {
        for reserve in [MemoryReserve::Default, MemoryReserve::Bytes(3 << 20), MemoryReserve::Percent(7)] {
            assert_eq!(MemoryReserve::try_from(reserve.to_string()).unwrap(), reserve);
        }
    }

    #[test]
    fn reserve_deserializes_with_defaults() {
        let r: HostReserve = toml::from_str("").unwrap();
        assert_eq!(r, HostReserve::default());
        let r: HostReserve = toml::from_str("memory = \"20%\"\npids = 64\n").unwrap();
        assert_eq!(r, HostReserve { memory: MemoryReserve::Percent(20), pids: 64 });
        let err = toml::from_str::<HostReserve>("memory = \"x\"\n").unwrap_err().to_string();
        assert!(err.contains("reserved memory \"x\""), "{err}");
        assert!(toml::from_str::<HostReserve>("cpu = 1\n").is_err());
    }

    #[test]
    fn system_figures_are_read_from_a_proc_tree() {
        let tmp = tempfile::tempdir().unwrap();
        fs::create_dir_all(tmp.path().join("sys/kernel")).unwrap();
        fs::write(tmp.path().join("meminfo"), MEMINFO).unwrap();
        fs::write(tmp.path().join("sys/kernel/pid_max"), "32768\n").unwrap();
        fs::write(tmp.path().join("sys/kernel/threads-max"), "3799\n").unwrap();
        let figures = read_system(tmp.path()).unwrap();
        assert_eq!(figures, system(486_340 * 1024, 32_768, 3_799));
        fs::write(tmp.path().join("sys/kernel/pid_max"), "many\n").unwrap();
        let err = read_system(tmp.path()).unwrap_err();
        let pid_max = tmp.path().join("sys/kernel/pid_max");
        assert!(matches!(&err, ReserveError::Parse { path, .. } if *path == pid_max), "{err:?}");
    }
}
