//! Host tests of the container boundary against a hostile container, through `keel run`:
//! descriptors of the caller (`/proc/self/fd/N` as the working directory, directly or
//! through a symlink the image holds), a FIFO at /etc/passwd, a dangling /etc/hosts
//! symlink, `kill(0, …)`, TIOCSTI into the caller's terminal and the reaper's binary.
//! Each attack has a negative control that shows it works outside a container, so a
//! pass means keel stopped it.
#![allow(unsafe_code)]

mod common;

use common::{stdout, Fixture};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const SECRET: &str = "host-secret-8d1f";

/// The descriptor number `keel run` is given a host directory on.
const LEAKED_FD: i32 = 7;

/// A host directory holding a file only the host should see.
fn host_dir(fx: &Fixture) -> PathBuf {
    let dir = fx.dir.join("host-only");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("secret"), SECRET).unwrap();
    dir
}

/// Give `command` the directory `dir` open on [`LEAKED_FD`], not close-on-exec: what a
/// PID 1 holding directories (cgroups, state) looks like to the children it clones.
fn with_leaked_dir(command: &mut Command, dir: &Path) -> std::fs::File {
    let held = std::fs::File::open(dir).unwrap();
    let raw = held.as_raw_fd();
    // SAFETY: dup2 is async-signal-safe; it runs in the forked child before exec and
    // touches only that child's descriptor table.
    unsafe {
        command.pre_exec(move || if libc::dup2(raw, LEAKED_FD) < 0 { Err(std::io::Error::last_os_error()) } else { Ok(()) });
    }
    held
}

/// Run `command` to its end, killing it after `limit`; None if it had to be killed.
fn output_within(mut command: Command, limit: Duration) -> Option<Output> {
    let mut child = command.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("run keel");
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if child.try_wait().unwrap().is_some() {
            return Some(child.wait_with_output().unwrap());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

fn describe(output: &Output) -> String {
    format!("status {:?}, stdout {:?}, stderr {:?}", output.status, stdout(output), String::from_utf8_lossy(&output.stderr))
}

#[test]
fn an_inherited_descriptor_as_workdir_never_reaches_the_host() {
    let fx = Fixture::new("fd-workdir");
    let host = host_dir(&fx);
    // Negative control: a host process given the same descriptor reads the host's file
    // through /proc/self/fd/N.
    let mut control = Command::new("/bin/busybox");
    control.args(["sh", "-c", &format!("cd /proc/self/fd/{LEAKED_FD} && cat secret")]);
    let _held = with_leaked_dir(&mut control, &host);
    let control = control.output().unwrap();
    assert_eq!(stdout(&control), SECRET, "control: {}", describe(&control));
    std::os::unix::fs::symlink(format!("/proc/self/fd/{LEAKED_FD}"), fx.rootfs().join("w")).unwrap();
    for fd in 3..=20 {
        for (how, workdir) in [("declared", format!("/proc/self/fd/{fd}")), ("symlink", "/w".to_string())] {
            if how == "symlink" && fd != LEAKED_FD {
                continue;
            }
            let mut run = fx.command("leak", "cat secret ../secret ../../secret 2>/dev/null; pwd", &format!("workdir = {workdir:?}\n"));
            let _held = with_leaked_dir(&mut run, &host);
            let output = output_within(run, Duration::from_secs(30)).expect("keel run finished");
            assert!(!stdout(&output).contains(SECRET), "{how} workdir {workdir}: the container read a host file: {}", describe(&output));
            assert!(!output.status.success(), "{how} workdir {workdir}: a magic link as workdir must be refused: {}", describe(&output));
        }
    }
}

#[test]
fn a_fifo_at_etc_passwd_fails_the_start_instead_of_hanging() {
    let fx = Fixture::new("fifo-passwd");
    std::fs::remove_file(fx.rootfs().join("etc/passwd")).unwrap();
    nix::unistd::mkfifo(&fx.rootfs().join("etc/passwd"), nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
    // Negative control: a plain open of the FIFO blocks (no writer), which is what used
    // to hang the container's setup and PID 1 with it.
    let fifo = fx.rootfs().join("etc/passwd");
    let opener = std::thread::spawn(move || std::fs::read(fifo).map(|b| b.len()));
    std::thread::sleep(Duration::from_millis(300));
    assert!(!opener.is_finished(), "control: opening the FIFO did not block");
    let started = Instant::now();
    // A user name needs the file: a clear error, at once.
    let output = output_within(fx.command("fifo", "echo started", "user = \"nobody\"\n"), Duration::from_secs(30))
        .expect("keel run hung on a FIFO at /etc/passwd");
    assert!(started.elapsed() < Duration::from_secs(5), "the start took {:?}", started.elapsed());
    assert!(!output.status.success() && !stdout(&output).contains("started"), "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("/etc/passwd") && stderr.contains("FIFO"), "the error names the file and why: {stderr}");
    // A numeric user does without it, and starts.
    let output = output_within(fx.command("fifo", "echo started; id -g", "user = \"1000\"\n"), Duration::from_secs(30))
        .expect("keel run hung on a FIFO at /etc/passwd");
    assert_eq!(stdout(&output), "started\n1000\n", "{}", describe(&output));
    // Unblock the control thread.
    let _ = std::fs::OpenOptions::new().write(true).open(fx.rootfs().join("etc/passwd"));
    let _ = opener.join();
}

#[test]
fn a_dangling_etc_hosts_symlink_creates_nothing_on_the_host() {
    let fx = Fixture::new("hosts-link");
    let host_path = fx.dir.join("created-on-the-host");
    std::os::unix::fs::symlink(&host_path, fx.rootfs().join("etc/hosts")).unwrap();
    // Bind sources live under /var.
    let var = tempfile_under_var("hosts-link");
    let source = var.join("hosts-source");
    std::fs::write(&source, "127.0.0.1 bound\n").unwrap();
    let mounts =
        format!("[[mounts]]\ntype = \"bind\"\nsource = {:?}\ntarget = \"/etc/hosts\"\nread_only = true\n", source.display().to_string());
    let output = fx.run("hosts", "cat /etc/hosts", &mounts);
    assert!(!host_path.exists(), "keel created {} by following the container's symlink", host_path.display());
    assert_eq!(stdout(&output), "127.0.0.1 bound\n", "{}", describe(&output));
    // Negative control: creating the mount point the way keel used to (following the
    // link on the host) does create the host file.
    std::fs::File::create(fx.rootfs().join("etc/hosts")).unwrap();
    assert!(host_path.exists(), "control: the symlink leads to the host path");
    let _ = std::fs::remove_dir_all(var);
}

/// A fresh directory under /var/tmp for bind sources.
fn tempfile_under_var(name: &str) -> PathBuf {
    let dir = PathBuf::from(format!("/var/tmp/keel-boundary-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn a_bind_source_under_var_may_not_lead_out_of_var_or_into_keels_state() {
    let fx = Fixture::new("bind-escape");
    let var = tempfile_under_var("bind-escape");
    std::os::unix::fs::symlink("/etc", var.join("to-etc")).unwrap();
    std::os::unix::fs::symlink("../../lib/keel", var.join("to-state")).unwrap();
    for (link, why) in [("to-etc", "leads out of /var"), ("to-state", "leads into keel's state")] {
        let mounts = format!("[[mounts]]\ntype = \"bind\"\nsource = {:?}\ntarget = \"/mnt/x\"\n", var.join(link).display().to_string());
        let output = fx.run("bind", "ls /mnt/x | head -3; echo listed", &mounts);
        assert!(
            !output.status.success() && !stdout(&output).contains("listed"),
            "a bind source that {why} was used: {}",
            describe(&output)
        );
    }
    // Control: the host follows the same links.
    assert!(var.join("to-etc/passwd").exists());
    let _ = std::fs::remove_dir_all(var);
}

#[test]
fn kill_zero_in_the_container_does_not_reach_keel_run() {
    let fx = Fixture::new("kill-zero");
    // keel run leads its own process group here, as a shell's job would; SIGUSR2 is not
    // one it forwards, so receiving it would kill it.
    let script = "trap 'echo got-usr2' USR2; kill -USR2 0; sleep 1; echo sid=$(cut -d' ' -f6 /proc/self/stat)";
    let mut run = fx.command("killzero", script, "");
    run.process_group(0);
    let output = output_within(run, Duration::from_secs(30)).expect("keel run finished");
    assert!(output.status.success(), "kill(0) in the container reached keel run: {}", describe(&output));
    let text = stdout(&output);
    assert_eq!(text.matches("got-usr2").count(), 1, "{text}");
    // The shell is PID 1 of its namespace and leads its own session.
    assert!(text.contains("sid=1\n"), "the container does not lead its own session: {text}");
    // Negative control: a process in keel run's process group that does the same kills it.
    let mut control = Command::new("/bin/busybox");
    control.args(["sh", "-c", "sleep 5 & kill -USR2 0; wait"]).process_group(0);
    let status = control.status().unwrap();
    assert_eq!(std::os::unix::process::ExitStatusExt::signal(&status), Some(libc::SIGUSR2), "control: kill(0) reaches the group");
}

/// A pseudo-terminal pair; the slave becomes the controlling terminal of the processes
/// started on it, like a user's shell session.
fn pty() -> (std::os::fd::OwnedFd, std::os::fd::OwnedFd) {
    let pty = nix::pty::openpty(None, None).unwrap();
    (pty.master, pty.slave)
}

/// Start `command` in a new session whose controlling terminal is `slave`, with its
/// stdio on it; wait for it.
fn run_on_terminal(mut command: Command, slave: &std::os::fd::OwnedFd) -> std::process::ExitStatus {
    let raw = slave.as_raw_fd();
    // SAFETY: setsid, ioctl and dup2 are async-signal-safe and change only the forked
    // child before exec.
    unsafe {
        command.pre_exec(move || {
            libc::setsid();
            if libc::ioctl(raw, libc::TIOCSCTTY, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            for fd in 0..3 {
                libc::dup2(raw, fd);
            }
            Ok(())
        });
    }
    command.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
    command.status().unwrap()
}

/// What is waiting in the terminal's input queue (what the user's shell would read next).
fn pending_input(slave: &std::os::fd::OwnedFd) -> String {
    let flags = nix::fcntl::OFlag::O_NONBLOCK;
    nix::fcntl::fcntl(slave, nix::fcntl::FcntlArg::F_SETFL(flags)).unwrap();
    let mut termios = nix::sys::termios::tcgetattr(slave).unwrap();
    // Raw: read what is queued without waiting for a full line.
    nix::sys::termios::cfmakeraw(&mut termios);
    nix::sys::termios::tcsetattr(slave, nix::sys::termios::SetArg::TCSANOW, &termios).unwrap();
    let mut buf = [0u8; 256];
    match nix::unistd::read(slave, &mut buf) {
        Ok(n) => String::from_utf8_lossy(&buf[..n]).into_owned(),
        Err(_) => String::new(),
    }
}

fn probe() -> PathBuf {
    let probe = Path::new(env!("CARGO_BIN_EXE_keel")).with_file_name("keel-probe");
    assert!(probe.is_file(), "{} is missing: build the workspace's binaries first (make test does)", probe.display());
    probe
}

#[test]
fn tiocsti_cannot_type_into_the_callers_terminal() {
    let fx = Fixture::new("tiocsti");
    std::fs::copy(probe(), fx.rootfs().join("bin/keel-probe")).unwrap();
    // Negative control: the probe run on the terminal as a host process types into it.
    let (_master, slave) = pty();
    let mut control = Command::new(probe());
    control.args(["tiocsti", "echo INJECTED\n"]);
    assert!(run_on_terminal(control, &slave).success(), "control: TIOCSTI works on this kernel");
    assert!(pending_input(&slave).contains("echo INJECTED"), "control: the typed text is queued");
    // keel run on a terminal: the container's output goes there, but it must not type.
    let (_master, slave) = pty();
    let status = run_on_terminal(fx.command("tiocsti", "/bin/keel-probe tiocsti 'echo INJECTED\n'", ""), &slave);
    let typed = pending_input(&slave);
    assert!(!typed.contains("INJECTED"), "the container typed into the caller's terminal: {typed:?}");
    assert!(!status.success(), "TIOCSTI must fail in the container: {status:?}");
}

#[test]
fn the_reaper_is_a_sealed_copy_not_the_callers_binary() {
    let fx = Fixture::new("reaper");
    // A writable copy of keel, as on an initramfs or tmpfs root.
    let keel = fx.dir.join("keel");
    std::fs::copy(env!("CARGO_BIN_EXE_keel"), &keel).unwrap();
    let mode = |p: &Path| std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(p).unwrap().permissions());
    let before = mode(&keel);
    let script = "readlink /proc/1/exe; chmod 4777 /proc/1/exe && echo chmod-ok; chown 1:1 /proc/1/exe && echo chown-ok; exit 0";
    // Writes reaper.toml; run from the copy below instead of the build's binary.
    drop(fx.command("reaper", script, "init = true\n"));
    let declaration = fx.dir.join("reaper.toml");
    let mut copy_run = Command::new(&keel);
    copy_run.arg("run").arg(&declaration).env("KEEL_STATE_DIR", fx.dir.join("state"));
    let output = copy_run.output().unwrap();
    let text = stdout(&output);
    assert!(output.status.success(), "{}", describe(&output));
    assert!(!text.contains("chmod-ok") && !text.contains("chown-ok"), "the container changed its reaper's binary: {text}");
    assert!(!text.contains(&keel.display().to_string()), "/proc/1/exe leads to the host's binary: {text}");
    assert_eq!(mode(&keel), before, "the host's keel binary changed mode");
    // Negative control: a process run from the same file, as root on the host, can change
    // it through /proc/PID/exe.
    let mut sleeper = Command::new(&keel).args(["init", "--", "/bin/busybox", "sleep", "5"]).spawn().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let through = format!("/proc/{}/exe", sleeper.id());
    // The reaper is non-dumpable, which closes /proc/PID/exe to other users only; root on
    // the host still reaches it.
    std::fs::set_permissions(&through, std::os::unix::fs::PermissionsExt::from_mode(0o4755)).unwrap();
    let _ = sleeper.kill();
    let _ = sleeper.wait();
    assert_eq!(mode(&keel) & 0o7777, 0o4755, "control: /proc/PID/exe leads to the file");
}
