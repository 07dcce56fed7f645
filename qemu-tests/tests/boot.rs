//! Foundation boot tests: each one a real boot of a keel image under QEMU.

use keel_qemu_tests::{build_image, BootOptions, Guest, TestImage};
use keel_supervisor::control::{Command, Status};
use std::sync::OnceLock;
use std::time::Duration;

const HOST: &str = r#"
hostname = "keel-test"
busybox = "/bin/busybox"

[kernel]
modules = ["virtio_pci", "virtio_console", "button", "evdev"]

[control]
virtio_serial = true
shutdown_grace_secs = 3

[[files]]
source = "@PROBE@"
path = "/usr/bin/keel-probe"
mode = 0o755
"#;

fn image() -> &'static TestImage {
    static IMAGE: OnceLock<TestImage> = OnceLock::new();
    IMAGE.get_or_init(|| build_image("boot", HOST, env!("CARGO_BIN_EXE_keel-probe").as_ref()))
}

fn boot(name: &str, extra_cmdline: &str, allow_reboot: bool) -> Guest {
    let options = BootOptions { extra_cmdline: extra_cmdline.to_string(), allow_reboot, hostfwd: Vec::new(), ..Default::default() };
    let mut guest = Guest::boot(image(), name, options);
    guest.wait_ready();
    guest
}

/// Position of `needle` in `haystack`, or a failure naming it.
fn position(guest: &Guest, needle: &str) -> usize {
    guest.console().find(needle).unwrap_or_else(|| guest.fail(&format!("console lacks {needle:?}")))
}

#[test]
fn acpi_powerdown_shuts_down_cleanly_in_order() {
    let mut guest = boot("powerdown", "", false);
    let status: Status =
        serde_json::from_value(guest.call(Command::Status, Duration::from_secs(30)).unwrap_or_else(|e| guest.fail(&e.to_string())))
            .unwrap();
    assert_eq!(status.hostname, "keel-test");
    assert_eq!(status.state, "ready", "boot errors: {:?}", status.boot_errors);
    assert!(status.boot_errors.is_empty(), "{:?}", status.boot_errors);
    eprintln!("[powerdown] PID 1 RSS at ready: {} KiB", status.pid1_rss_kib);

    guest.qmp("system_powerdown");
    let exit = guest.wait_exit(Duration::from_secs(10));
    match exit {
        Some(status) if status.success() => {}
        other => guest.fail(&format!("QEMU did not exit 0 within 10 s of system_powerdown: {other:?}")),
    }
    let steps = [
        "keel: power button pressed",
        "keel: shutdown (power button): powering off",
        "keel: shutdown: sending SIGTERM to all processes",
        "keel: shutdown: syncing filesystems",
        "keel: shutdown: unmounted",
        "keel: shutdown: powering off",
    ];
    let positions: Vec<usize> = steps.iter().map(|s| position(&guest, s)).collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "shutdown steps out of order: {steps:?} at {positions:?}");
}

/// Count zombies in the guest, as the probe reads them from /proc.
fn zombie_count(guest: &Guest) -> usize {
    let result = guest.exec(&["keel-probe", "zombies"]);
    assert_eq!(result.exit_code, 0, "{result:?}");
    let first = result.stdout.lines().next().unwrap_or_default();
    first.strip_prefix("zombies: ").and_then(|n| n.parse().ok()).unwrap_or_else(|| guest.fail(&format!("bad probe output {result:?}")))
}

/// Poll until the zombie count satisfies `ok` or the time is up; returns the last count.
fn settle(guest: &Guest, ok: impl Fn(usize) -> bool) -> usize {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let count = zombie_count(guest);
        if ok(count) || std::time::Instant::now() > deadline {
            return count;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn orphan_storm_leaves_no_zombie_and_the_check_can_see_one() {
    let guest = boot("orphans", "", false);
    let storm = guest.exec(&["keel-probe", "orphans", "1000"]);
    assert_eq!(storm.exit_code, 0, "{storm:?}");
    assert!(storm.stdout.contains("orphaned 1000 grandchildren"), "{storm:?}");
    assert_eq!(settle(&guest, |n| n == 0), 0, "zombies left after the orphan storm");

    // Negative control: a living parent that never waits keeps a zombie, and the check sees it.
    let hold = guest.exec(&["keel-probe", "hold-zombie", "60"]);
    assert_eq!(hold.exit_code, 0, "{hold:?}");
    assert!(settle(&guest, |n| n >= 1) >= 1, "the zombie check did not see a deliberate zombie");
    let still = zombie_count(&guest);
    assert!(still >= 1, "the deliberate zombie vanished: PID 1 cannot reap another process's child");
}

#[test]
fn kill_term_powers_off_and_kill_int_reboots() {
    let mut guest = boot("kill-term", "", false);
    // The exec may or may not answer before the machine goes down.
    let _ = guest.call(
        Command::Exec { argv: vec!["kill".into(), "-TERM".into(), "1".into()], timeout_secs: Some(10), container: None },
        Duration::from_secs(15),
    );
    match guest.wait_exit(Duration::from_secs(30)) {
        Some(status) if status.success() => {}
        other => guest.fail(&format!("kill -TERM 1 did not power off: {other:?}")),
    }
    position(&guest, "keel: shutdown (SIGTERM): powering off");

    let mut guest = boot("kill-int", "", true);
    let _ = guest.call(
        Command::Exec { argv: vec!["kill".into(), "-INT".into(), "1".into()], timeout_secs: Some(10), container: None },
        Duration::from_secs(15),
    );
    guest.wait_for("keel: shutdown (ctrl-alt-del (SIGINT)): rebooting", Duration::from_secs(30));
    guest.wait_for_count("keel: ready", 2, Duration::from_secs(120));
    guest.qmp("quit");
}

#[test]
fn bad_module_and_bad_option_are_reported_and_boot_goes_on() {
    let guest = boot("bad-input", "keel.modules=no_such_module keel.bogus=1", false);
    position(&guest, "keel: error: modules: module no_such_module: not found in modules.dep");
    position(&guest, "keel: error: unknown kernel command line option keel.bogus");
    let status: Status = serde_json::from_value(guest.call(Command::Status, Duration::from_secs(30)).unwrap()).unwrap();
    assert_eq!(status.state, "ready");
    assert_eq!(status.boot_errors.len(), 2, "{:?}", status.boot_errors);
    // The image's own modules still loaded: the control channel answered over virtio_console.
}

#[test]
fn panic_in_a_boot_step_is_logged_and_pid1_stays_up() {
    let guest = boot("panic", "keel.test.panic=hostname", false);
    position(&guest, "keel: error: panic: ");
    position(&guest, "keel: error: hostname: panicked: injected panic (keel.test.panic=hostname)");
    let status: Status = serde_json::from_value(guest.call(Command::Status, Duration::from_secs(30)).unwrap()).unwrap();
    assert_eq!(status.state, "ready");
    assert!(status.boot_errors.iter().any(|e| e.contains("hostname: panicked")), "{:?}", status.boot_errors);
    let echo = guest.exec(&["echo", "alive"]);
    assert_eq!(echo.stdout, "alive\n");
}
