//! Commands run inside a running container from the outside: healthchecks and
//! `keelctl exec NAME`. Each runs in a forked helper so PID 1 never waits for one.

use crate::control::ExecResult;
use crate::forked::run_forked;
use crate::runtime::enter::{enter_with_output, EnterTarget};
use crate::runtime::LaunchPlan;
use nix::unistd::Pid;
use std::os::fd::AsFd;
use std::path::Path;
use std::time::Duration;

/// Run `argv` in the container whose PID 1 is `pid` and collect its exit code and output.
/// Blocks until it ends or `timeout` passes (then it is killed: exit code 124).
pub fn run_in(pid: Pid, plan: &LaunchPlan, cgroup_dir: Option<&Path>, argv: &[String], timeout: Duration) -> Result<ExecResult, String> {
    let cgroup = cgroup_dir
        .map(|dir| std::fs::File::open(dir).map_err(|e| format!("open {}: {e}", dir.display())))
        .transpose()?;
    let target = EnterTarget { pid, cgroup: cgroup.as_ref().map(|f| f.as_fd()), plan };
    let (exit_code, stdout, stderr) = enter_with_output(&target, argv, timeout).map_err(|e| e.to_string())?;
    Ok(ExecResult {
        exit_code,
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    })
}

/// Start a healthcheck in a forked helper; the helper exits 0 when the check passed.
pub fn spawn_check(pid: Pid, plan: &LaunchPlan, cgroup_dir: Option<&Path>, argv: &[String], timeout: Duration) -> Result<Pid, String> {
    run_forked(|| match run_in(pid, plan, cgroup_dir, argv, timeout) {
        Ok(result) => result.exit_code,
        Err(_) => 1,
    })
    .map_err(|e| format!("fork: {e}"))
}
