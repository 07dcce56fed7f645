//! `exec` requests: run a command on the host without ever blocking PID 1.
//!
//! PID 1 forks a helper process that owns a copy of the client's channel. The helper
//! runs the command, collects its exit code and output, writes the response line and
//! exits; PID 1 only reaps it. PID 1 is single-threaded, so the forked copy holds no
//! lock and may use the whole standard library.

use crate::control_server::write_all_fd;
use keel_supervisor::control::{ExecResult, Response};
use keel_supervisor::forked::run_forked;
use nix::unistd::Pid;
use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::time::Duration;

/// Fork a helper that does `work` (run a command somewhere) and answers request `id`
/// on `channel` with its result. Returns the helper's pid; the caller keeps reaping.
pub fn spawn(id: u64, work: impl FnOnce() -> Result<ExecResult, String>, channel: OwnedFd) -> nix::Result<Pid> {
    run_forked(move || {
        // PID 1 is exempt from the OOM killer and its forks inherit that; a command an
        // operator runs must not be (a runaway one would leave the OOM killer nothing
        // to kill but containers, then panic the kernel).
        if let Err(e) = keel_supervisor::cgroup::oom::set_oom_score_adj(None, 0) {
            log::debug!("exec: {e}");
        }
        let response = match work() {
            Ok(result) => Response::success(id, result),
            Err(error) => Response::failure(id, error),
        };
        i32::from(write_all_fd(channel.as_fd(), response.to_line().as_bytes()).is_err())
    })
}

/// Run the command to completion (or `timeout`, then SIGKILL) and collect its output.
pub fn run(argv: &[String], timeout: Duration) -> Result<ExecResult, String> {
    let (program, args) = argv.split_first().ok_or("exec: empty command")?;
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("exec {program}: {e}"))?;
    let pid = Pid::from_raw(child.id() as i32);
    let (finished, timer) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        if timer.recv_timeout(timeout).is_err() {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        }
    });
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let err_reader = std::thread::spawn(move || read_all(stderr));
    let stdout = read_all(stdout);
    let stderr = err_reader.join().unwrap_or_default();
    let status = child.wait();
    let _ = finished.send(());
    let status = status.map_err(|e| format!("wait for {program}: {e}"))?;
    let exit_code = status.code().or_else(|| status.signal().map(|s| 128 + s)).unwrap_or(255);
    Ok(ExecResult { exit_code, stdout, stderr })
}

fn read_all(source: Option<impl Read>) -> String {
    let mut bytes = Vec::new();
    if let Some(mut source) = source {
        let _ = source.read_to_end(&mut bytes);
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collects_code_and_both_streams() {
        let argv: Vec<String> = ["sh", "-c", "echo out; echo err >&2; exit 3"].iter().map(|s| s.to_string()).collect();
        let result = run(&argv, Duration::from_secs(10)).unwrap();
        assert_eq!(result, ExecResult { exit_code: 3, stdout: "out\n".into(), stderr: "err\n".into() });
    }

    #[test]
    fn killed_by_timeout_is_128_plus_9() {
        let argv: Vec<String> = ["sleep", "30"].iter().map(|s| s.to_string()).collect();
        let result = run(&argv, Duration::from_millis(200)).unwrap();
        assert_eq!(result.exit_code, 137);
    }

    #[test]
    fn missing_program_is_named() {
        let err = run(&["/no/such/prog".to_string()], Duration::from_secs(1)).unwrap_err();
        assert!(err.starts_with("exec /no/such/prog: "), "{err}");
    }
}
