//! Usage figures of one cgroup, and pure parsers for the cgroup v2 file formats they
//! come from (single values, flat-keyed `key value` lines, `cgroup.procs`).

use super::error::{CgroupError, ParseError};
use super::fsio;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Usage of one container's cgroup, as reported over the control API.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CgroupStats {
    /// Total CPU time (`cpu.stat` `usage_usec`), in microseconds.
    pub cpu_usage_usec: u64,
    /// Memory in use now (`memory.current`), in bytes.
    pub memory_current: u64,
    /// Highest memory use seen (`memory.peak`, Linux 5.19+), in bytes.
    pub memory_peak: Option<u64>,
    /// Tasks now (`pids.current`).
    pub pids_current: u64,
    /// Times the memory limit was hit (`memory.events` `oom`).
    pub oom_events: u64,
    /// Processes the OOM killer killed (`memory.events` `oom_kill`).
    pub oom_kill: u64,
    /// Forks refused because a pids limit was hit (`pids.events` `max`).
    #[serde(default)]
    pub pids_limit_hits: u64,
}

/// The value of `key` in a flat-keyed file (`key value` per line), `None` if absent.
/// Every line must have the `key value` shape; only `key`'s value must be a number.
pub fn flat_keyed_value(text: &str, key: &str) -> Result<Option<u64>, ParseError> {
    let mut found = None;
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let mut words = line.split_whitespace();
        let (Some(k), Some(value), None) = (words.next(), words.next(), words.next()) else {
            return Err(ParseError::Malformed { line: index + 1, text: line.to_string() });
        };
        if k == key && found.is_none() {
            found = Some(parse_u64(key, value)?);
        }
    }
    Ok(found)
}

/// Like [`flat_keyed_value`], but an absent key is an error.
pub fn flat_keyed_required(text: &str, key: &str) -> Result<u64, ParseError> {
    flat_keyed_value(text, key)?.ok_or_else(|| ParseError::MissingKey { key: key.to_string() })
}

/// A file holding one unsigned integer (`memory.current`, `pids.current`).
pub fn single_value(text: &str) -> Result<u64, ParseError> {
    parse_u64("value", text.trim())
}

/// The pids in a `cgroup.procs` text, one per line. 0 stands for a process outside the
/// reader's pid namespace.
pub fn parse_procs(text: &str) -> Result<Vec<i32>, ParseError> {
    let lines = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty());
    lines
        .map(|(index, line)| {
            line.trim()
                .parse::<i32>()
                .ok()
                .filter(|pid| *pid >= 0)
                .ok_or_else(|| ParseError::NotAPid { line: index + 1, text: line.to_string() })
        })
        .collect()
}

fn parse_u64(key: &str, value: &str) -> Result<u64, ParseError> {
    value.parse().map_err(|_| ParseError::NotANumber { key: key.to_string(), value: value.to_string() })
}

/// Read the statistics of the cgroup at `dir`. Files of controllers that are not
/// enabled are absent and count as 0 (or `None`); `dir` itself must exist.
pub(super) fn read_stats(dir: &Path) -> Result<CgroupStats, CgroupError> {
    fsio::ensure_dir(dir)?;
    let (oom_events, oom_kill): (u64, u64) =
        read_parsed(dir, "memory.events", |text| Ok((flat_keyed_required(text, "oom")?, flat_keyed_required(text, "oom_kill")?)))?
            .unwrap_or_default();
    Ok(CgroupStats {
        cpu_usage_usec: read_parsed(dir, "cpu.stat", |t| flat_keyed_required(t, "usage_usec"))?.unwrap_or(0),
        memory_current: read_parsed(dir, "memory.current", single_value)?.unwrap_or(0),
        memory_peak: read_parsed(dir, "memory.peak", single_value)?,
        pids_current: read_parsed(dir, "pids.current", single_value)?.unwrap_or(0),
        oom_events,
        oom_kill,
        pids_limit_hits: read_parsed(dir, "pids.events", |t| flat_keyed_required(t, "max"))?.unwrap_or(0),
    })
}

/// Read `dir/file` if it exists and parse it, attaching the path to a parse error.
fn read_parsed<T>(dir: &Path, file: &str, parse: impl FnOnce(&str) -> Result<T, ParseError>) -> Result<Option<T>, CgroupError> {
    let path = dir.join(file);
    match fsio::read_optional(&path)? {
        Some(text) => parse(&text).map(Some).map_err(|source| CgroupError::Parse { path, source }),
        None => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CPU_STAT: &str = "usage_usec 1234567\nuser_usec 1000000\nsystem_usec 234567\n\
                            nr_periods 0\nnr_throttled 0\nthrottled_usec 0\n";
    const MEMORY_EVENTS: &str = "low 0\nhigh 0\nmax 17\noom 3\noom_kill 2\noom_group_kill 0\n";

    #[test]
    fn flat_keyed_finds_keys() {
        assert_eq!(flat_keyed_value(CPU_STAT, "usage_usec"), Ok(Some(1_234_567)));
        assert_eq!(flat_keyed_value(CPU_STAT, "system_usec"), Ok(Some(234_567)));
        assert_eq!(flat_keyed_value(MEMORY_EVENTS, "oom"), Ok(Some(3)));
        assert_eq!(flat_keyed_value(MEMORY_EVENTS, "oom_kill"), Ok(Some(2)));
        assert_eq!(flat_keyed_value("populated 0\nfrozen 0\n", "populated"), Ok(Some(0)));
    }

    #[test]
    fn flat_keyed_absent_key_is_none_or_missing() {
        assert_eq!(flat_keyed_value(CPU_STAT, "oom"), Ok(None));
        assert_eq!(flat_keyed_value("", "oom"), Ok(None));
        assert_eq!(flat_keyed_required(CPU_STAT, "oom"), Err(ParseError::MissingKey { key: "oom".into() }));
    }

    #[test]
    fn flat_keyed_rejects_bad_shape_and_values() {
        assert_eq!(flat_keyed_value("usage_usec 1\nbogus\n", "usage_usec"), Err(ParseError::Malformed { line: 2, text: "bogus".into() }));
        assert_eq!(flat_keyed_value("a 1 2\n", "b"), Err(ParseError::Malformed { line: 1, text: "a 1 2".into() }));
        assert_eq!(flat_keyed_value("oom -1\n", "oom"), Err(ParseError::NotANumber { key: "oom".into(), value: "-1".into() }));
        // Another key's odd value does not matter.
        assert_eq!(flat_keyed_value("x max\noom 4\n", "oom"), Ok(Some(4)));
    }

    #[test]
    fn single_values() {
        assert_eq!(single_value("4096\n"), Ok(4096));
        assert_eq!(single_value("max\n"), Err(ParseError::NotANumber { key: "value".into(), value: "max".into() }));
        assert!(single_value("").is_err());
    }

    #[test]
    fn procs_lists_pids() {
        assert_eq!(parse_procs("12\n345\n0\n"), Ok(vec![12, 345, 0]));
        assert_eq!(parse_procs(""), Ok(vec![]));
        assert_eq!(parse_procs("12\nx\n"), Err(ParseError::NotAPid { line: 2, text: "x".into() }));
        assert_eq!(parse_procs("-1\n"), Err(ParseError::NotAPid { line: 1, text: "-1".into() }));
    }

    #[test]
    fn stats_serialize_with_field_names() {
        let stats = CgroupStats { memory_peak: Some(5), oom_kill: 1, ..CgroupStats::default() };
        let json = serde_json::to_value(stats).unwrap();
        assert_eq!(json["memory_peak"], 5);
        assert_eq!(json["oom_kill"], 1);
        assert_eq!(json["cpu_usage_usec"], 0);
    }
}
