//! Streams end to end (issue 14 point 2): `keelctl exec -it` driven through a pty by the
//! test (a command typed, its output read, the window resized and `stty size` checked,
//! Ctrl-C typed, the exit code kept), over TLS (`--host`, certificates made here) and over
//! the virtio-serial port through `keel-build run`'s multiplexer; exec with piped stdin
//! and no -t (1 MiB through `wc -c`, stdout and stderr apart, the exit code); `logs -f`
//! receiving lines as the container writes them on one connection; a read-only
//! certificate refused exec but allowed logs -f; a client that never reads its stream
//! stalls no one. The round trip of a typed line per transport is printed.

use keel_build::qemu::HostFwd;
use keel_init::api::test_certs::{ca, issue};
use keel_qemu_tests::free_port;
use keel_qemu_tests::output_text as text;
use keel_qemu_tests::{build_image, busybox_host, declare_container, keel_binary, target_dir, BootOptions, Guest};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const MODULES: &[&str] = &["virtio_pci", "virtio_console", "virtio_net", "button", "evdev"];
const API_PORT: u16 = 50000;

/// keelctl run in a pty of the test's, as an operator's terminal would run it.
struct PtySession {
    master: std::fs::File,
    seen: Arc<Mutex<Vec<u8>>>,
    child: Child,
}

fn set_size(fd: &impl AsRawFd, rows: u16, cols: u16) {
    let size = libc::winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCSWINSZ reads one winsize from the pointer, which lives across the call.
    assert_eq!(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &size) }, 0);
}

impl PtySession {
    fn spawn(args: &[String], rows: u16, cols: u16) -> PtySession {
        let pty = nix::pty::openpty(None, None).unwrap();
        set_size(&pty.master, rows, cols);
        let peer: OwnedFd = pty.slave;
        let mut command = Command::new(keel_binary());
        command.args(args).stdin(peer.try_clone().unwrap()).stdout(peer.try_clone().unwrap()).stderr(peer.try_clone().unwrap());
        // SAFETY: runs in the forked child before execve; setsid and ioctl are async-signal-safe.
        unsafe {
            command.pre_exec(|| {
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command.spawn().unwrap();
        drop(peer);
        let master = std::fs::File::from(pty.master);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let mut reader = master.try_clone().unwrap();
        let sink = seen.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        PtySession { master, seen, child }
    }

    fn type_text(&mut self, text: &str) {
        self.master.write_all(text.as_bytes()).unwrap();
    }

    fn len(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    /// Wait until `text` appears after byte `from` of the output; the end of the match.
    fn wait_for(&self, text: &str, from: usize, timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        loop {
            {
                let seen = self.seen.lock().unwrap();
                let tail = String::from_utf8_lossy(&seen[from.min(seen.len())..]).into_owned();
                if let Some(at) = tail.find(text) {
                    return from + at + text.len();
                }
                if Instant::now() > deadline {
                    panic!("{text:?} never came; the terminal showed:\n{tail}");
                }
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        None
    }
}

/// An interactive shell in container `web` through `base` (keelctl's transport options):
/// size, resize, typed lines, Ctrl-C, the exit code. Returns the median round trip of a
/// typed line (keystrokes out, the command's output back).
fn interactive_shell(label: &str, base: &[String]) -> Duration {
    let mut args = base.to_vec();
    args.extend(["exec", "-it", "web", "--", "sh"].map(String::from));
    let mut s = PtySession::spawn(&args, 30, 100);
    let mut at = s.wait_for("# ", 0, Duration::from_secs(60));
    s.type_text("stty size; tty\r");
    at = s.wait_for("30 100", at, Duration::from_secs(20));
    at = s.wait_for("/dev/pts/", at, Duration::from_secs(20));
    // The terminal is the container's own: its devpts holds it and nothing of the host's.
    s.type_text("ls /dev/pts | tr '\\n' ' '; echo END$((40+2))\r");
    let listing = s.wait_for("END42", at, Duration::from_secs(20));
    let shown = String::from_utf8_lossy(&s.seen.lock().unwrap()[at..listing]).into_owned();
    assert!(shown.contains("0 ptmx"), "{label}: the container's /dev/pts: {shown:?}");
    at = listing;
    // Resize the test's terminal: keelctl gets SIGWINCH and sends the new size.
    set_size(&s.master, 50, 132);
    std::thread::sleep(Duration::from_millis(300));
    s.type_text("stty size\r");
    at = s.wait_for("50 132", at, Duration::from_secs(20));
    let mut times = Vec::new();
    for n in 0..11 {
        let started = Instant::now();
        s.type_text(&format!("echo $((1000+{n}))\r"));
        at = s.wait_for(&format!("{}\r\n", 1000 + n), at, Duration::from_secs(20));
        times.push(started.elapsed());
    }
    times.sort();
    // Ctrl-C interrupts the foreground command; the shell goes on.
    s.type_text("sleep 30\r");
    std::thread::sleep(Duration::from_millis(800));
    let interrupted = Instant::now();
    s.type_text("\x03");
    s.type_text("echo after-$((2+3))\r");
    at = s.wait_for("after-5", at, Duration::from_secs(20));
    assert!(interrupted.elapsed() < Duration::from_secs(15), "{label}: Ctrl-C did not interrupt sleep");
    s.type_text("exit 7\r");
    let code = s.wait_exit(Duration::from_secs(30));
    assert_eq!(
        code,
        Some(7),
        "{label}: keelctl's exit code is the shell's; the terminal showed:\n{}",
        String::from_utf8_lossy(&s.seen.lock().unwrap()[at.min(s.len())..])
    );
    times[times.len() / 2]
}

/// `keelctl exec web -- sh -c 'wc -c; echo err >&2; exit 3'` with 1 MiB piped in.
fn piped_exec(label: &str, base: &[String]) -> Duration {
    let mut command = Command::new(keel_binary());
    command.args(base).args(["exec", "web", "--", "sh", "-c", "wc -c; echo err >&2; exit 3"]);
    let mut child = command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let started = Instant::now();
    let mut stdin = child.stdin.take().unwrap();
    std::thread::spawn(move || stdin.write_all(&vec![b'x'; 1 << 20]));
    let out = child.wait_with_output().unwrap();
    let took = started.elapsed();
    assert_eq!(out.status.code(), Some(3), "{label}: {}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1048576", "{label}: {}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stderr), "err\n", "{label}: {}", text(&out));
    took
}

/// `keelctl logs -f ticker --tail 1`: the lines that arrive, each with when it arrived.
fn follow_lines(base: &[String], want: usize) -> Vec<(Instant, String)> {
    let mut child =
        Command::new(keel_binary()).args(base).args(["logs", "-f", "ticker", "--tail", "1"]).stdout(Stdio::piped()).spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send((Instant::now(), line)).is_err() {
                break;
            }
        }
    });
    let mut lines = Vec::new();
    while lines.len() < want {
        match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(line) => lines.push(line),
            Err(_) => break,
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    lines
}

/// The lines came one by one as the ticker wrote them (once a second), not in a batch.
fn assert_pushed(label: &str, lines: &[(Instant, String)]) {
    assert!(lines.len() >= 4, "{label}: {lines:?}");
    assert!(lines.iter().all(|(_, l)| l.contains("tick-")), "{label}: {lines:?}");
    for pair in lines[1..].windows(2) {
        let gap = pair[1].0.duration_since(pair[0].0);
        assert!(gap > Duration::from_millis(400), "{label}: lines arrived together ({gap:?}): {lines:?}");
    }
}

#[test]
fn exec_it_pipes_and_logs_follow_over_tls_and_the_serial_port() {
    let name = "streams";
    let dir = target_dir().join("qemu-tests").join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let ours = ca("keel test clients CA");
    std::fs::write(dir.join("ca.pem"), ours.cert.pem()).unwrap();
    std::fs::write(dir.join("api.toml"), format!("port = {API_PORT}\nclient_ca = \"/etc/keel/api/ca.pem\"\n")).unwrap();
    let admin = issue(&dir, &ours, "admin", "alice", "admin", 0x11, false);
    let reader = issue(&dir, &ours, "reader", "bob", "read-only", 0x22, false);

    let mut host = busybox_host("keel-streams", MODULES, 2);
    for (file, path) in [("api.toml", "/etc/keel/api.toml"), ("ca.pem", "/etc/keel/api/ca.pem")] {
        host.push_str(&format!("\n[[files]]\nsource = \"{}\"\npath = \"{path}\"\n", dir.join(file).display()));
    }
    declare_container(&dir, &mut host, "web", "image = \"@IMAGE@\"\ncommand = [\"/bin/sleep\", \"3600\"]\nstop_timeout = \"1s\"\n");
    declare_container(
        &dir,
        &mut host,
        "ticker",
        "image = \"@IMAGE@\"\ncommand = [\"/bin/sh\", \"-c\", \"i=0; while true; do i=$((i+1)); echo tick-$i; sleep 1; done\"]\nstop_timeout = \"1s\"\n",
    );
    let image = build_image(name, &host, env!("CARGO_BIN_EXE_keel-probe").as_ref());
    let port = free_port();
    let hostfwd = vec![format!("tcp:{port}-:{API_PORT}").parse::<HostFwd>().unwrap()];
    let mut guest = Guest::boot(&image, name, BootOptions { hostfwd, ..Default::default() });
    guest.wait_ready();
    guest.wait_for("server certificate sha256 ", Duration::from_secs(120));
    let fp = guest
        .console()
        .lines()
        .find(|l| l.contains("server certificate sha256 "))
        .unwrap()
        .rsplit("sha256 ")
        .next()
        .unwrap()
        .trim()
        .to_string();
    for container in ["web", "ticker"] {
        guest.wait_container(container, Duration::from_secs(60), |c| c.state == "running");
    }
    let tls = |cert: &(PathBuf, PathBuf)| -> Vec<String> {
        let mut args: Vec<String> =
            ["ctl", "--timeout", "60", "--host", &format!("127.0.0.1:{port}"), "--fingerprint", &fp].map(String::from).to_vec();
        args.extend(["--cert".into(), cert.0.display().to_string(), "--key".into(), cert.1.display().to_string()]);
        args
    };
    let admin_tls = tls(&admin);
    let reader_tls = tls(&reader);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !Command::new(keel_binary()).args(&admin_tls).arg("status").output().unwrap().status.success() {
        assert!(Instant::now() < deadline, "the API never answered");
        std::thread::sleep(Duration::from_millis(500));
    }

    // Over TLS.
    let tls_latency = interactive_shell("tls", &admin_tls);
    let tls_piped = piped_exec("tls", &admin_tls);
    let follow_started = Instant::now();
    let lines = follow_lines(&admin_tls, 5);
    assert_pushed("tls", &lines);
    assert!(lines[1].0.duration_since(follow_started) < Duration::from_secs(15), "{lines:?}");

    // Read-only: logs -f yes, exec (with or without a terminal) never.
    let out = Command::new(keel_binary()).args(&reader_tls).args(["exec", "-it", "web", "--", "sh"]).stdin(Stdio::null()).output().unwrap();
    assert!(!out.status.success() && text(&out).contains("refused: the read-only role may not run `exec_stream`"), "{}", text(&out));
    let out = Command::new(keel_binary()).args(&reader_tls).args(["exec", "web", "--", "true"]).stdin(Stdio::null()).output().unwrap();
    assert!(!out.status.success() && text(&out).contains("may not run `exec`"), "{}", text(&out));
    assert_pushed("tls read-only", &follow_lines(&reader_tls, 4));

    // A client that never reads a flooding stream stalls no one.
    let context = keel_init::api::remote::Context {
        host: format!("127.0.0.1:{port}"),
        fingerprint: Some(fp.clone()),
        cert: Some(admin.0.clone()),
        key: Some(admin.1.clone()),
        ..Default::default()
    };
    let flood = |argv: &str| keel_supervisor::control::Command::ExecStream {
        argv: vec!["sh".into(), "-c".into(), argv.into()],
        container: Some("web".into()),
        tty: None,
        timeout_secs: Some(300),
    };
    let stalled_client = keel_init::api::remote::connect(&context, Duration::from_secs(30)).unwrap();
    let (stalled, _) = stalled_client.start_stream(flood("yes flood-line | head -c 8000000"), Duration::from_secs(30)).unwrap();
    std::thread::sleep(Duration::from_secs(3));
    let mut slowest = Duration::ZERO;
    for _ in 0..5 {
        let asked = Instant::now();
        let out = Command::new(keel_binary()).args(&admin_tls).arg("status").output().unwrap();
        assert!(out.status.success(), "{}", text(&out));
        slowest = slowest.max(asked.elapsed());
    }
    assert!(slowest < Duration::from_secs(5), "status waited {slowest:?} behind a client that does not read");
    // Control: the same flood, read, is 8 MB: the stalled client holds back megabytes.
    let started = Instant::now();
    let out = Command::new(keel_binary())
        .args(&admin_tls)
        .args(["exec", "-i", "web", "--", "sh", "-c", "yes flood-line | head -c 8000000"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.stdout.len(), 8_000_000, "{:?}", out.status);
    let flood_rate = 8.0 / started.elapsed().as_secs_f64();
    drop(stalled);

    // The audit log: the exec stream with its exit code; one logs_follow per follow.
    let audit = guest.exec(&["cat", "/var/log/keel/audit.log"]).stdout;
    let entries: Vec<serde_json::Value> = audit.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let count = |cn: &str, cmd: &str, detail: &str| {
        entries.iter().filter(|e| e["cn"] == cn && e["cmd"] == cmd && e["detail"].as_str().unwrap_or("").contains(detail)).count()
    };
    assert!(count("alice", "exec_stream", "exit code 7") >= 1 && count("alice", "exec_stream", "exit code 3") >= 1, "{audit}");
    assert_eq!(count("alice", "logs_follow", "stream started"), 1, "one connection for the whole follow: {audit}");
    assert_eq!(count("bob", "logs_follow", "stream started"), 1, "{audit}");
    assert!(count("bob", "exec_stream", "refused") >= 1, "{audit}");

    // Over the virtio-serial port, through keel-build run's multiplexer (from here on
    // the guest's own helpers, which connect to QEMU's socket directly, are not used).
    let mux = dir.join("mux.sock");
    keel_build::serial_mux::spawn(guest.control_socket().to_path_buf(), &mux).unwrap();
    let serial: Vec<String> = vec!["ctl".into(), "--timeout".into(), "60".into(), "--socket".into(), mux.display().to_string()];
    let ready = Instant::now() + Duration::from_secs(20);
    while !Command::new(keel_binary()).args(&serial).arg("status").output().unwrap().status.success() {
        assert!(Instant::now() < ready, "the multiplexer never reached the guest");
        std::thread::sleep(Duration::from_millis(100));
    }
    let serial_latency = interactive_shell("serial", &serial);
    let serial_piped = piped_exec("serial", &serial);
    assert_pushed("serial", &follow_lines(&serial, 5));
    println!(
        "STREAMS exec -it typed-line round trip (median of 11): TLS {tls_latency:?}, virtio-serial (multiplexed) {serial_latency:?}; \
         1 MiB through `exec web -- wc -c`: TLS {tls_piped:?}, serial {serial_piped:?}; 8 MB read from a stream over TLS at {flood_rate:.1} MB/s; \
         status while a client did not read: slowest {slowest:?}"
    );

    let out = Command::new(keel_binary()).args(&serial).arg("poweroff").output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(guest.wait_exit(Duration::from_secs(60)).is_some(), "the guest did not power off");
}
