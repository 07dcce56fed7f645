//! `oom_score_adj`: PID 1 takes -1000 (never chosen by the OOM killer; the kernel spares
//! global init anyway, the setting matters for the helpers it forks, which inherit it).
//! Containers and the commands exec'd into them must not inherit it, or the OOM killer
//! could not choose them when they run their cgroup out of memory: they get 0.

use std::fs;
use std::io;
use std::path::PathBuf;

/// The value that exempts a process from the OOM killer.
pub const OOM_SCORE_ADJ_MIN: i32 = -1000;

/// The file of process `pid` (`None`: the calling process).
fn path(pid: Option<i32>) -> PathBuf {
    match pid {
        Some(pid) => PathBuf::from(format!("/proc/{pid}/oom_score_adj")),
        None => PathBuf::from("/proc/self/oom_score_adj"),
    }
}

/// Set `oom_score_adj` of process `pid` (`None`: the caller) to `value` (-1000 to 1000;
/// lowering it needs CAP_SYS_RESOURCE).
pub fn set_oom_score_adj(pid: Option<i32>, value: i32) -> io::Result<()> {
    let path = path(pid);
    fs::write(&path, value.to_string()).map_err(|e| io::Error::new(e.kind(), format!("write {}: {e}", path.display())))
}

/// The caller's own `oom_score_adj`.
pub fn own_oom_score_adj() -> io::Result<i32> {
    let text = fs::read_to_string(path(None))?;
    text.trim().parse().map_err(|_| io::Error::new(io::ErrorKind::InvalidData, text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_the_process() {
        assert_eq!(path(Some(42)), PathBuf::from("/proc/42/oom_score_adj"));
        assert_eq!(path(None), PathBuf::from("/proc/self/oom_score_adj"));
    }

    #[test]
    fn raising_our_own_score_needs_no_privilege_and_is_read_back() {
        // Raising is always allowed; the test process only becomes a likelier OOM victim.
        let before = own_oom_score_adj().unwrap();
        let raised = (before.max(0) + 1).min(1000);
        set_oom_score_adj(None, raised).unwrap();
        assert_eq!(own_oom_score_adj().unwrap(), raised);
        let err = set_oom_score_adj(Some(i32::MAX), 0).unwrap_err();
        assert!(err.to_string().contains(&format!("/proc/{}/oom_score_adj", i32::MAX)), "{err}");
    }
}
