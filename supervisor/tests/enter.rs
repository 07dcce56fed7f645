//! Host tests of `runtime::enter`: a busybox container started with `runtime::spawn`
//! (running `sleep 30`), then commands run inside it, checked against what the
//! container's own process sees and against the host.
//!
//! They need root (namespaces, mounts). Otherwise each prints a SKIP line, or fails if
//! `KEEL_REQUIRE_ROOT_TESTS` is set. Each test runs in a forked child: clone3 in the
//! multi-threaded test harness could copy a lock another thread holds, and the
//! container is the child's to reap. The child reports a failure over a pipe.
#![allow(unsafe_code)]

use keel_supervisor::runtime::{self, enter, enter_with_output, EnterTarget, LaunchPlan, SpawnError, Stdio};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};
use std::io::{BufRead, Read, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const MARKER: &str = "keel-enter-marker";
const APPLETS: [&str; 12] = ["sh", "sleep", "hostname", "cat", "ls", "grep", "id", "head", "kill", "pwd", "echo", "true"];
const TIMEOUT: Duration = Duration::from_secs(10);
const WATCHDOG_MS: u16 = 60_000;

/// True when these tests can run here; prints a visible SKIP otherwise.
fn privileged(test: &str) -> bool {
    if nix::unistd::Uid::effective().is_root() {
        return true;
    }
    assert!(std::env::var_os("KEEL_REQUIRE_ROOT_TESTS").is_none(), "{test}: needs root and KEEL_REQUIRE_ROOT_TESTS is set");
    eprintln!("SKIP {test}: needs root");
    false
}

/// Run `body` in a forked child; panic here with the child's panic message if it failed.
fn in_child(test: &str, body: impl FnOnce()) {
    if !privileged(test) {
        return;
    }
    let (read_end, write_end) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
    // SAFETY: the child runs `body` (syscalls and allocations, which glibc's fork
    // handlers keep usable), writes to its own pipe and leaves with `_exit`, never
    // returning into the test harness.
    match unsafe { fork() }.unwrap() {
        ForkResult::Child => {
            drop(read_end);
            let code = match std::panic::catch_unwind(AssertUnwindSafe(body)) {
                Ok(()) => 0,
                Err(payload) => {
                    let message = payload
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_else(|| "panic".into());
                    let _ = std::fs::File::from(write_end).write_all(message.as_bytes());
                    1
                }
            };
            // SAFETY: ends the child at once; nothing of the harness runs in it.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => {
            drop(write_end);
            // A hung child fails the test instead of hanging the run.
            let mut fds = [PollFd::new(read_end.as_fd(), PollFlags::POLLIN)];
            if poll(&mut fds, PollTimeout::from(WATCHDOG_MS)).unwrap() == 0 {
                let _ = kill(child, Signal::SIGKILL);
                let _ = waitpid(child, None);
                panic!("{test}: still running after {WATCHDOG_MS} ms");
            }
            let mut message = String::new();
            let _ = std::fs::File::from(read_end).read_to_string(&mut message);
            let status = waitpid(child, None).unwrap();
            assert_eq!(status, WaitStatus::Exited(child, 0), "{test}: {message}");
        }
    }
}

/// A throwaway busybox rootfs and state directory.
struct Fixture {
    dir: PathBuf,
}

impl Fixture {
    fn new(name: &str) -> Fixture {
        let dir = std::env::temp_dir().join(format!("keel-enter-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let rootfs = dir.join("rootfs");
        for sub in ["bin", "proc", "sys", "dev", "etc", "tmp"] {
            std::fs::create_dir_all(rootfs.join(sub)).unwrap();
        }
        std::fs::copy("/bin/busybox", rootfs.join("bin/busybox")).expect("busybox-static is installed");
        for applet in APPLETS {
            std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet)).unwrap();
        }
        std::fs::write(rootfs.join("etc/passwd"), "root:x:0:0::/:/bin/sh\nnobody:x:65534:65534::/:/bin/sh\n").unwrap();
        std::fs::write(rootfs.join(MARKER), "from the image\n").unwrap();
        Fixture { dir }
    }

    /// Start `sleep 30` in a container named `name` declared with `extra` TOML.
    fn start(&self, name: &str, extra: &str) -> Container {
        let toml = format!("image = \"{}\"\ncommand = [\"sleep\", \"30\"]\nhostname = \"box\"\n{extra}", self.dir.join("rootfs").display());
        let spec = keel_supervisor::spec::parse(name, &toml, "test.toml").unwrap();
        let plan = runtime::plan(&spec, &self.dir.join("state"), false);
        let pid = runtime::spawn(&plan, Stdio { stdout: 1, stderr: 2 }, None).unwrap();
        Container { pid, plan, reaped: false }
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A running container, killed and reaped when dropped.
struct Container {
    pid: Pid,
    plan: LaunchPlan,
    reaped: bool,
}

impl Container {
    fn target(&self) -> EnterTarget<'_> {
        EnterTarget { pid: self.pid, cgroup: None, plan: &self.plan }
    }

    fn try_run(&self, argv: &[&str]) -> Result<(i32, String, String), SpawnError> {
        let argv: Vec<String> = argv.iter().map(|a| a.to_string()).collect();
        let (code, out, err) = enter_with_output(&self.target(), &argv, TIMEOUT)?;
        Ok((code, String::from_utf8_lossy(&out).into_owned(), String::from_utf8_lossy(&err).into_owned()))
    }

    /// Run `argv` inside; assert it exits 0 and return its stdout.
    fn run(&self, argv: &[&str]) -> String {
        let (code, out, err) = self.try_run(argv).unwrap_or_else(|e| panic!("{argv:?}: {e}"));
        assert_eq!(code, 0, "{argv:?}: stdout {out:?}, stderr {err:?}");
        out
    }

    fn sh(&self, script: &str) -> (i32, String, String) {
        self.try_run(&["sh", "-c", script]).unwrap_or_else(|e| panic!("{script}: {e}"))
    }

    fn stop(&mut self) {
        if !self.reaped {
            let _ = kill(self.pid, Signal::SIGKILL);
            let _ = waitpid(self.pid, None);
            self.reaped = true;
        }
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Host pids whose command line is exactly `argv`.
fn processes_running(argv: &[&str]) -> Vec<u32> {
    let wanted: Vec<u8> = argv.iter().flat_map(|a| a.bytes().chain([0])).collect();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c == wanted))
        .collect()
}

#[test]
fn the_command_sees_the_container_and_not_the_host() {
    in_child("the_command_sees_the_container_and_not_the_host", || {
        let fx = Fixture::new("view");
        let c = fx.start("view", "");
        assert_eq!(c.run(&["hostname"]), "box\n");
        assert_eq!(c.run(&["cat", "/proc/1/cmdline"]), "sleep\u{0}30\u{0}", "PID 1 of its pid namespace is the container's");
        let listing = c.run(&["ls", "/proc"]);
        let pids: Vec<u32> = listing.split_whitespace().filter_map(|p| p.parse().ok()).collect();
        assert!(pids.contains(&1) && pids.len() <= 3, "the command sees more than the container's processes: {pids:?}");
        assert_eq!(c.run(&["cat", &format!("/{MARKER}")]), "from the image\n");
        assert_eq!(c.run(&["pwd"]), "/\n");
        let root = c.run(&["ls", "/"]);
        let entries: Vec<&str> = root.split_whitespace().collect();
        assert!(entries.contains(&MARKER), "/ is not the container's root: {entries:?}");
        for host_only in ["usr", "work"] {
            // Negative control: these exist on the host, so their absence means something.
            if Path::new("/").join(host_only).is_dir() {
                assert!(!entries.contains(&host_only), "the host's /{host_only} is visible: {entries:?}");
            }
        }
        assert!(Path::new("/usr").is_dir(), "the host has /usr");
    });
}

#[test]
fn the_command_has_the_container_restrictions() {
    in_child("the_command_has_the_container_restrictions", || {
        let fx = Fixture::new("restricted");
        let c = fx.start("restricted", "");
        let status = c.run(&["grep", "-E", "^(CapEff|NoNewPrivs|Seccomp):", "/proc/self/status"]);
        assert_eq!(status, "CapEff:\t00000000a80425fb\nNoNewPrivs:\t1\nSeccomp:\t2\n");
        assert_eq!(c.run(&["id", "-u"]), "0\n");
        // Negative control: the test process itself, on the host, has none of these.
        let own = std::fs::read_to_string("/proc/self/status").unwrap();
        assert!(own.contains("Seccomp:\t0") && own.contains("NoNewPrivs:\t0"), "{own}");
    });
}

#[test]
fn the_command_runs_as_the_declared_user() {
    in_child("the_command_runs_as_the_declared_user", || {
        let fx = Fixture::new("user");
        let c = fx.start("user", "user = \"nobody\"\n");
        assert_eq!(c.run(&["id", "-u"]), "65534\n");
        assert_eq!(c.run(&["id", "-g"]), "65534\n");
    });
}

#[test]
fn exit_codes_output_and_errors_are_the_commands() {
    in_child("exit_codes_output_and_errors_are_the_commands", || {
        let fx = Fixture::new("codes");
        let c = fx.start("codes", "");
        assert_eq!(c.sh("exit 7"), (7, String::new(), String::new()));
        assert_eq!(c.run(&["cat"]), "", "stdin is /dev/null: cat ends at once");
        assert_eq!(c.sh("echo out; echo oops >&2; exit 3"), (3, "out\n".into(), "oops\n".into()));
        assert_eq!(c.sh("kill -9 $$").0, 137, "killed by a signal: 128+signal");
        match c.try_run(&["no-such-program", "x"]) {
            Err(SpawnError::Child { message, .. }) => assert!(message.contains("no-such-program"), "{message}"),
            other => panic!("a missing program must be a SpawnError::Child: {other:?}"),
        }
        match c.try_run(&["/bin/missing"]) {
            Err(SpawnError::Child { message, .. }) => assert!(message.contains("/bin/missing"), "{message}"),
            other => panic!("a missing path must be a SpawnError::Child: {other:?}"),
        }
        let (code, out, _) = c.sh("head -c 3000000 /dev/zero; echo done");
        assert_eq!((code, out.len()), (0, runtime::enter::OUTPUT_LIMIT), "output is bounded, the rest discarded");
    });
}

#[test]
fn enter_returns_one_pid_that_forwards_signals_and_exits_like_the_command() {
    in_child("enter_returns_one_pid_that_forwards_signals_and_exits_like_the_command", || {
        let fx = Fixture::new("forward");
        let c = fx.start("forward", "");
        let (read_end, write_end) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).unwrap();
        let script = "trap 'exit 5' TERM; echo ready; sleep 30 & wait";
        let argv: Vec<String> = ["sh", "-c", script].iter().map(|s| s.to_string()).collect();
        let stdio = Stdio { stdout: write_end.as_raw_fd(), stderr: 2 };
        let middle = enter(&c.target(), &argv, stdio).unwrap();
        drop(write_end);
        let mut line = String::new();
        std::io::BufReader::new(std::fs::File::from(read_end)).read_line(&mut line).unwrap();
        assert_eq!(line, "ready\n");
        kill(middle, Signal::SIGTERM).unwrap();
        assert_eq!(waitpid(middle, None).unwrap(), WaitStatus::Exited(middle, 5), "SIGTERM reached the command's trap");
    });
}

#[test]
fn a_timeout_kills_the_command_and_reports_124() {
    in_child("a_timeout_kills_the_command_and_reports_124", || {
        let fx = Fixture::new("timeout");
        let c = fx.start("timeout", "");
        // A duration no other run uses, so that a leftover from elsewhere cannot match.
        let seconds = (1_000_000 + std::process::id()).to_string();
        let script = format!("echo started; sleep {seconds}; echo never");
        let argv: Vec<String> = ["sh", "-c", &script].iter().map(|s| s.to_string()).collect();
        let began = Instant::now();
        let (code, out, _) = enter_with_output(&c.target(), &argv, Duration::from_millis(500)).unwrap();
        let took = began.elapsed();
        assert_eq!((code, out.as_slice()), (124, b"started\n".as_slice()));
        assert!(took >= Duration::from_millis(500) && took < Duration::from_secs(5), "took {took:?}");
        // sh's child `sleep` is in its process group, killed with it.
        let deadline = Instant::now() + Duration::from_secs(2);
        while !processes_running(&["sleep", &seconds]).is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(processes_running(&["sleep", &seconds]), Vec::<u32>::new(), "the command outlived its timeout");
        assert!(!processes_running(&["sleep", "30"]).is_empty(), "negative control: the scan sees the container's own process");
    });
}

#[test]
fn entering_a_container_whose_process_exited_is_an_error() {
    in_child("entering_a_container_whose_process_exited_is_an_error", || {
        let fx = Fixture::new("gone");
        let mut c = fx.start("gone", "");
        kill(c.pid, Signal::SIGKILL).unwrap();
        // Not reaped yet: a zombie, whose namespaces are gone.
        let stat = format!("/proc/{}/stat", c.pid);
        let deadline = Instant::now() + Duration::from_secs(5);
        while !std::fs::read_to_string(&stat).unwrap().contains(") Z ") {
            assert!(Instant::now() < deadline, "the container did not die");
            std::thread::sleep(Duration::from_millis(10));
        }
        match c.try_run(&["true"]) {
            Err(SpawnError::Child { message, .. }) => assert!(message.contains("has exited"), "{message}"),
            other => panic!("entering a dead container must fail: {other:?}"),
        }
        c.stop();
        match c.try_run(&["true"]) {
            Err(e @ SpawnError::Prepare { .. }) => assert!(e.to_string().contains("is the container running?"), "{e}"),
            other => panic!("entering a reaped container must fail: {other:?}"),
        }
    });
}
