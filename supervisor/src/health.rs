//! Commands run inside a running container from the outside: healthchecks and
//! `keelctl exec NAME`. Each runs in a forked helper so PID 1 never waits for one, and
//! in an exec leaf of its own below the container's cgroup, so a timeout kills it with
//! everything it started.

use crate::cgroup::oom::set_oom_score_adj;
use crate::cgroup::{ContainerCgroup, ExecCgroup};
use crate::control::ExecResult;
use crate::forked::run_forked;
use crate::runtime::enter::{enter_with_output, EnterTarget};
use crate::runtime::LaunchPlan;
use nix::unistd::Pid;
use std::path::Path;
use std::time::Duration;

/// How long a finished command's exec leaf may take to empty before it is removed (a
/// kill is asynchronous); a leaf still busy after that stays until the container stops.
const LEAF_DRAIN: Duration = Duration::from_millis(500);

/// Run `argv` in the container whose PID 1 is `pid` and collect its exit code and output.
/// `cgroup_dir` is the container's cgroup (`<root>/keel/<NAME>`): the command runs in a
/// new exec leaf below it. Blocks until it ends or `timeout` passes (then everything in
/// the leaf is killed: exit code 124).
pub fn run_in(pid: Pid, plan: &LaunchPlan, cgroup_dir: Option<&Path>, argv: &[String], timeout: Duration) -> Result<ExecResult, String> {
    // The helper inherited PID 1's exemption from the OOM killer; the command must not.
    if let Err(e) = set_oom_score_adj(None, 0) {
        log::debug!("exec: {e}");
    }
    let leaf: Option<ExecCgroup> = cgroup_dir.map(|dir| ContainerCgroup::at(dir).new_exec().map_err(|e| e.to_string())).transpose()?;
    let target = EnterTarget { pid, cgroup: leaf.as_ref(), plan };
    let outcome = enter_with_output(&target, argv, timeout);
    if let Some(leaf) = leaf {
        if let Err(e) = leaf.finish(LEAF_DRAIN) {
            log::debug!("exec: {e}");
        }
    }
    let (exit_code, stdout, stderr) = outcome.map_err(|e| e.to_string())?;
    Ok(ExecResult {
        exit_code,
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    })
}

/// Start a healthcheck in a forked helper; the helper exits 0 when the check passed.
pub fn spawn_check(pid: Pid, plan: &LaunchPlan, cgroup_dir: Option<&Path>, argv: &[String], timeout: Duration) -> Result<Pid, nix::Error> {
    run_forked(|| match run_in(pid, plan, cgroup_dir, argv, timeout) {
        Ok(result) => result.exit_code,
        Err(_) => 1,
    })
}
