//! First boot does not hold the host: a `keel.config.url=https://…` source on an address
//! that accepts TCP connections and never answers. While first boot waits for it (in its
//! worker), `keelctl status` answers at once, again and again; after
//! `keel.config.timeout` the first-boot failure is reported as for any other failed
//! source, no container starts and the host stays up.
//!
//! Negative control: on a keel that runs first boot on PID 1's own thread, the first
//! `status` asked once the fetch has begun is only answered when the fetch gives up
//! (the test then fails on the latency it prints).
//!
//! And a first-boot worker that runs out of memory (a test-only cap,
//! `keel.test.worker_memory`, below what its config decompresses) is a failed first
//! boot naming the job and the OOM kill; PID 1 stays up and answers.

use keel_qemu_tests::{build_image, target_dir, BootOptions, Guest, TestImage};
use keel_supervisor::control::Command;
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const HOST: &str = r#"
hostname = "keel-fba"
busybox = "/bin/busybox"

[kernel]
modules = ["virtio_pci", "virtio_console", "virtio_net", "qemu_fw_cfg", "button", "evdev"]

[control]
virtio_serial = true
shutdown_grace_secs = 2
"#;

/// `keel.config.timeout` for the silent source: long enough for many status requests.
const CONFIG_TIMEOUT_SECS: u64 = 25;
/// Status requests asked while first boot waits.
const REQUESTS: usize = 10;
/// The slowest answer allowed (TCG on a shared, loaded machine; an idle guest answers in
/// tens of milliseconds).
const MAX_LATENCY: Duration = Duration::from_secs(1);

/// A TCP listener on 127.0.0.1 (10.0.2.2 in the guest) that accepts every connection,
/// counts it, keeps it open and never sends a byte: an https source that never answers.
struct SilentServer {
    port: u16,
    accepted: Arc<AtomicUsize>,
    /// The connections, held open until the test ends.
    _held: Arc<Mutex<Vec<TcpStream>>>,
}

impl SilentServer {
    fn start() -> SilentServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the silent server");
        let port = listener.local_addr().expect("its address").port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let held = Arc::new(Mutex::new(Vec::new()));
        let (count, keep) = (Arc::clone(&accepted), Arc::clone(&held));
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                count.fetch_add(1, Ordering::SeqCst);
                if let Ok(mut streams) = keep.lock() {
                    streams.push(stream);
                }
            }
        });
        SilentServer { port, accepted, _held: held }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

fn image() -> &'static TestImage {
    static IMAGE: std::sync::OnceLock<TestImage> = std::sync::OnceLock::new();
    IMAGE.get_or_init(|| build_image("firstboot-async", HOST, env!("CARGO_BIN_EXE_keel-probe").as_ref()))
}

/// The https source never answers: `status` answers within [`MAX_LATENCY`] each time
/// while first boot waits; then first boot fails naming the source, and the host is up.
#[test]
fn a_silent_https_source_does_not_delay_status() {
    let server = SilentServer::start();
    let cmdline = format!("keel.config.url=https://10.0.2.2:{}/config.ign keel.config.timeout={CONFIG_TIMEOUT_SECS}", server.port);
    let mut guest = Guest::boot(image(), "silent-https", BootOptions { extra_cmdline: cmdline, ..Default::default() });

    // First boot is fetching once the source has seen its first connection.
    let started = Instant::now();
    while server.accepted() == 0 {
        if started.elapsed() > Duration::from_secs(180) {
            guest.fail("the first-boot fetch never connected to the silent source");
        }
        if guest.wait_exit(Duration::from_millis(100)).is_some() {
            guest.fail("QEMU exited before first boot fetched");
        }
    }
    let fetching = Instant::now();
    eprintln!("first boot connected to the silent source {:?} after QEMU started", started.elapsed());

    let mut latencies = Vec::new();
    for i in 0..REQUESTS {
        let asked = Instant::now();
        let status = guest.call(Command::Status, Duration::from_secs(120)).unwrap_or_else(|e| guest.fail(&format!("status {i}: {e}")));
        let latency = asked.elapsed();
        latencies.push(latency);
        eprintln!("status {i}: {latency:?}, {:?} into the fetch: state {}", asked.duration_since(fetching), status["state"]);
        if latency > MAX_LATENCY {
            guest.fail(&format!(
                "status {i} took {latency:?} (max {MAX_LATENCY:?}) while first boot waited for the silent source; answers so far: {latencies:?}"
            ));
        }
        assert_eq!(status["state"], "booting", "status {i} during first boot: {status}");
        std::thread::sleep(Duration::from_millis(300));
    }
    let early = guest.call(Command::Firstboot, Duration::from_secs(30));
    assert!(
        early.as_ref().is_err_and(|e| e.to_string().contains("first boot is still running (job ")),
        "keelctl firstboot while it runs: {early:?}"
    );
    assert!(
        fetching.elapsed() < Duration::from_secs(CONFIG_TIMEOUT_SECS),
        "the status requests outlasted the config timeout, so they did not all run while first boot waited"
    );
    assert!(!guest.console().contains("keel: ready"), "ready before first boot gave up");
    let mut sorted = latencies.clone();
    sorted.sort();
    eprintln!("status latencies while first boot waited: median {:?}, max {:?}", sorted[sorted.len() / 2], sorted[sorted.len() - 1]);

    // After the timeout: failed as for any other source, nothing started, the host answers.
    guest.wait_for("keel: ready", Duration::from_secs(CONFIG_TIMEOUT_SECS + 120));
    eprintln!("ready {:?} after the fetch began (keel.config.timeout={CONFIG_TIMEOUT_SECS})", fetching.elapsed());
    let console = guest.console();
    for needle in ["first-boot config FAILED", "containers: not started"] {
        assert!(console.contains(needle), "console lacks {needle:?}:\n{console}");
    }
    let firstboot = guest.call(Command::Firstboot, Duration::from_secs(30)).unwrap_or_else(|e| guest.fail(&e.to_string()));
    assert_eq!(firstboot["state"], "failed", "{firstboot}");
    let problems = firstboot["problems"].to_string();
    assert!(problems.contains(&format!("https://10.0.2.2:{}/config.ign", server.port)), "the failure names no source: {firstboot}");
    let status = guest.call(Command::Status, Duration::from_secs(30)).unwrap_or_else(|e| guest.fail(&e.to_string()));
    assert_eq!(status["state"], "ready", "{status}");
    assert!(status["boot_errors"].to_string().contains("firstboot"), "{status}");
    let marker = guest.exec(&["sh", "-c", "ls /var/lib/keel/firstboot.done 2>&1"]);
    assert!(marker.stdout.contains("No such file"), "a failed first boot wrote its marker: {marker:?}");
    guest.call(Command::Poweroff, Duration::from_secs(20)).unwrap_or_else(|e| guest.fail(&e.to_string()));
    if !guest.wait_exit(Duration::from_secs(60)).is_some_and(|s| s.success()) {
        guest.fail("did not power off");
    }
}

/// A gzip-compressed file that decompresses to this much (zeros), more than the worker's
/// cap. Small enough for the default cap (a quarter of the guest's RAM, 114 MiB here):
/// the worker holds the decompressed data and also pays for the file it stages on the
/// tmpfs root (charged to its cgroup); a 40 MiB file already did not fit.
const INFLATED: usize = 24 << 20;
/// The first-boot worker's memory cap in this test.
const WORKER_MEMORY: &str = "8M";

/// `data` gzip-compressed, by the host's gzip.
fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut child = std::process::Command::new("gzip")
        .args(["-c", "-n", "-9"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run gzip");
    let mut stdin = child.stdin.take().expect("gzip stdin");
    let input = data.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().expect("gzip output");
    writer.join().expect("gzip writer").expect("write to gzip");
    assert!(out.status.success(), "gzip: {out:?}");
    out.stdout
}

/// `bytes` as a percent-encoded `data:` URL.
fn data_url_bytes(bytes: &[u8]) -> String {
    let encoded: String =
        bytes.iter().map(|b| if b.is_ascii_alphanumeric() { (*b as char).to_string() } else { format!("%{b:02X}") }).collect();
    format!("data:,{encoded}")
}

/// The worker decompresses 24 MiB under an 8 MiB cap: the OOM killer ends it, first boot
/// fails naming the job and the cause, nothing is written, and PID 1 answers throughout.
/// Negative control: the same config under the default cap is applied, so the failure
/// is the cap's doing, not the config's.
#[test]
fn a_first_boot_worker_out_of_memory_is_a_failed_first_boot() {
    let dir = target_dir().join("qemu-tests").join("firstboot-async");
    std::fs::create_dir_all(&dir).unwrap();
    let config = format!(
        r#"{{"ignition":{{"version":"3.4.0"}},"storage":{{"files":[{{"path":"/etc/small","contents":{{"source":"data:,s"}}}},{{"path":"/var/lib/big","contents":{{"compression":"gzip","source":"{}"}}}}]}}}}"#,
        data_url_bytes(&gzip(&vec![0u8; INFLATED]))
    );
    assert!(config.len() < 1 << 20, "the config ({} bytes) should stay small for fw_cfg", config.len());
    let path = dir.join("oom.ign");
    std::fs::write(&path, config).unwrap();

    let mut control = Guest::boot(image(), "worker-default-cap", BootOptions { config: Some(path.clone()), ..Default::default() });
    control.wait_ready();
    let applied = control.call(Command::Firstboot, Duration::from_secs(30)).unwrap_or_else(|e| control.fail(&e.to_string()));
    assert_eq!(applied["state"], "applied", "negative control: under the default cap the config applies: {applied}");
    let size = control.exec(&["stat", "-c", "%s", "/var/lib/big"]);
    assert_eq!(size.stdout.trim(), INFLATED.to_string(), "{size:?}");
    control.call(Command::Poweroff, Duration::from_secs(20)).unwrap_or_else(|e| control.fail(&e.to_string()));
    if !control.wait_exit(Duration::from_secs(60)).is_some_and(|s| s.success()) {
        control.fail("did not power off");
    }

    let options =
        BootOptions { config: Some(path), extra_cmdline: format!("keel.test.worker_memory={WORKER_MEMORY}"), ..Default::default() };
    let mut guest = Guest::boot(image(), "worker-oom", options);
    guest.wait_ready();
    let firstboot = guest.call(Command::Firstboot, Duration::from_secs(30)).unwrap_or_else(|e| guest.fail(&e.to_string()));
    assert_eq!(firstboot["state"], "failed", "{firstboot}");
    let problems = firstboot["problems"].to_string();
    assert!(
        problems.contains("firstboot config (local) (job 1): worker was killed by the OOM killer (memory.max 8 MiB)"),
        "the failure does not name the job and the OOM kill: {firstboot}"
    );
    let console = guest.console();
    for needle in ["first-boot config FAILED", "containers: not started", "killed by the OOM killer"] {
        assert!(console.contains(needle), "console lacks {needle:?}:\n{console}");
    }
    let status = guest.call(Command::Status, Duration::from_secs(30)).unwrap_or_else(|e| guest.fail(&e.to_string()));
    assert_eq!(status["state"], "ready", "{status}");
    let written = guest.exec(&["sh", "-c", "ls /etc/small /var/lib/big /var/lib/keel/firstboot.done 2>&1 | grep -c 'No such file'"]);
    assert_eq!(written.stdout.trim(), "3", "something was written: {written:?}");
    guest.call(Command::Poweroff, Duration::from_secs(20)).unwrap_or_else(|e| guest.fail(&e.to_string()));
    if !guest.wait_exit(Duration::from_secs(60)).is_some_and(|s| s.success()) {
        guest.fail("did not power off");
    }
}
