//! The host's figures for `metrics`: pure parsers of /proc/loadavg, /proc/meminfo and
//! /proc/stat, and the reads (three small files and one statvfs) that feed them. A
//! figure that cannot be read is left out rather than failing the whole answer.

use std::path::Path;

/// The three load averages of a /proc/loadavg text (`0.52 0.58 0.59 1/389 12345`).
pub fn parse_loadavg(text: &str) -> Option<[f64; 3]> {
    let mut words = text.split_whitespace().map(|w| w.parse::<f64>().ok().filter(|f| f.is_finite() && *f >= 0.0));
    Some([words.next()??, words.next()??, words.next()??])
}

/// MemTotal and MemAvailable of a /proc/meminfo text, in bytes (the file says kB, which
/// are KiB).
pub fn parse_meminfo(text: &str) -> (Option<u64>, Option<u64>) {
    let field = |key: &str| {
        text.lines().find_map(|line| {
            let rest = line.strip_prefix(key)?.strip_prefix(':')?;
            let mut words = rest.split_whitespace();
            let value: u64 = words.next()?.parse().ok()?;
            match words.next() {
                Some("kB") => value.checked_mul(1024),
                None => Some(value),
                Some(_) => None,
            }
        })
    };
    (field("MemTotal"), field("MemAvailable"))
}

/// The `btime` (Unix time of boot, seconds) of a /proc/stat text.
pub fn parse_btime(text: &str) -> Option<u64> {
    text.lines().find_map(|line| line.strip_prefix("btime ")?.trim().parse().ok())
}

/// What [`read`] found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HostFigures {
    /// 1, 5, 15 minute load.
    pub load: Option<[f64; 3]>,
    /// MemTotal, bytes.
    pub memory_total: Option<u64>,
    /// MemAvailable, bytes.
    pub memory_available: Option<u64>,
    /// Boot time, Unix seconds.
    pub boot_time: Option<u64>,
    /// Size and available bytes of the filesystem at the disk path.
    pub disk: Option<(u64, u64)>,
}

/// Read the figures from `proc` (normally /proc) and the filesystem holding `disk` (/var).
pub fn read(proc: &Path, disk: &Path) -> HostFigures {
    let read = |name: &str| std::fs::read_to_string(proc.join(name)).ok();
    let (memory_total, memory_available) = read("meminfo").map(|t| parse_meminfo(&t)).unwrap_or_default();
    HostFigures {
        load: read("loadavg").and_then(|t| parse_loadavg(&t)),
        memory_total,
        memory_available,
        boot_time: read("stat").and_then(|t| parse_btime(&t)),
        disk: disk_figures(disk),
    }
}

/// Size and available bytes of the filesystem holding `path`.
fn disk_figures(path: &Path) -> Option<(u64, u64)> {
    let stat = nix::sys::statvfs::statvfs(path).ok()?;
    let unit = stat.fragment_size() as u64;
    Some(((stat.blocks() as u64).saturating_mul(unit), (stat.blocks_available() as u64).saturating_mul(unit)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loadavg() {
        assert_eq!(parse_loadavg("0.52 0.58 1.50 1/389 12345\n"), Some([0.52, 0.58, 1.5]));
        assert_eq!(parse_loadavg("0.52 x 1.50 1/389 12345\n"), None);
        assert_eq!(parse_loadavg("0.52\n"), None);
    }

    #[test]
    fn meminfo() {
        let text = "MemTotal:        2014236 kB\nMemFree:          151008 kB\nMemAvailable:    1203812 kB\n";
        assert_eq!(parse_meminfo(text), (Some(2_014_236 * 1024), Some(1_203_812 * 1024)));
        // A kernel without MemAvailable (before 3.14): only the total.
        assert_eq!(parse_meminfo("MemTotal: 10 kB\nMemTotalX: 3 kB\n"), (Some(10 * 1024), None));
        assert_eq!(parse_meminfo("MemTotal: 10 MB\n"), (None, None), "an unknown unit is not guessed");
    }

    #[test]
    fn btime() {
        assert_eq!(parse_btime("cpu  1 2 3\nintr 5\nbtime 1733600000\nprocesses 4\n"), Some(1_733_600_000));
        assert_eq!(parse_btime("cpu 1\n"), None);
    }

    #[test]
    fn reads_a_proc_tree_and_a_filesystem() {
        let dir = std::env::temp_dir().join(format!("keel-metrics-host-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("loadavg"), "1.00 2.00 3.00 1/2 3\n").unwrap();
        std::fs::write(dir.join("meminfo"), "MemTotal: 4 kB\nMemAvailable: 2 kB\n").unwrap();
        let figures = read(&dir, &dir);
        assert_eq!(figures.load, Some([1.0, 2.0, 3.0]));
        assert_eq!((figures.memory_total, figures.memory_available), (Some(4096), Some(2048)));
        assert_eq!(figures.boot_time, None, "no stat file: left out");
        let (size, available) = figures.disk.unwrap();
        assert!(size > 0 && available <= size);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
