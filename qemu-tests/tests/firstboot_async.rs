//! First boot does not hold the host: a `keel.config.url=https://…` source on an address
//! that accepts TCP connections and never answers. While first boot waits for it (in its
//! worker), `keelctl status` answers at once, again and again; after
//! `keel.config.timeout` the first-boot failure is reported as for any other failed
//! source, no container starts and the host stays up.
//!
//! Negative control: on a keel that runs first boot on PID 1's own thread, the first
//! `status` asked once the fetch has begun is only answered when the fetch gives up
//! (the test then fails on the latency it prints).

use keel_qemu_tests::{build_image, BootOptions, Guest, TestImage};
use keel_supervisor::control::Command;
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const HOST: &str = r#"
hostname = "keel-fba"
busybox = "/bin/busybox"

[kernel]
modules = ["virtio_pci", "virtio_console", "virtio_net", "button", "evdev"]

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
