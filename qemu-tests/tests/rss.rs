//! PID 1's memory with 20 containers declared (issue 12's note asks for the figure),
//! and the order the fast boot promises: `keel: ready` first, then the modules loaded
//! after ready with the bridges and firewall, and only then the first container start.

use keel_qemu_tests::{build_image, busybox_host, declare_container, target_dir, BootOptions, Guest};
use keel_supervisor::control::{Command, Status};
use std::time::Duration;

/// PID 1's RSS bound, KiB: a static binary of ~6 MiB with its heap; far above this
/// means PID 1 keeps per-container state it should not.
const RSS_BOUND_KIB: u64 = 24 * 1024;

const CONTAINERS: usize = 20;

fn status(guest: &Guest) -> Status {
    let value = guest.call(Command::Status, Duration::from_secs(30)).unwrap_or_else(|e| guest.fail(&e.to_string()));
    serde_json::from_value(value).unwrap_or_else(|e| guest.fail(&format!("status: {e}")))
}

fn position(guest: &Guest, needle: &str) -> usize {
    guest.console().find(needle).unwrap_or_else(|| guest.fail(&format!("console lacks {needle:?}")))
}

#[test]
fn pid1_rss_with_twenty_containers_and_late_boot_before_first_start() {
    let name = "rss-20";
    let dir = target_dir().join("qemu-tests").join(name);
    std::fs::create_dir_all(&dir).expect("create image dir");
    let mut host = busybox_host("keel-rss", &["virtio_pci", "virtio_console", "button", "evdev", "overlay"], 2);
    for i in 0..CONTAINERS {
        let text = "image = \"@IMAGE@\"\ncommand = [\"/bin/sleep\", \"3600\"]\nstop_timeout = \"1s\"\n";
        declare_container(&dir, &mut host, &format!("c{i:02}"), text);
    }
    let image = build_image(name, &host, env!("CARGO_BIN_EXE_keel-probe").as_ref());
    let mut guest = Guest::boot(&image, "rss", BootOptions::default());
    guest.wait_ready();
    let at_ready = status(&guest);
    assert_eq!(at_ready.state, "ready");
    guest.wait_for("bridges and firewall up", Duration::from_secs(120));
    for i in 0..CONTAINERS {
        guest.wait_container(&format!("c{i:02}"), Duration::from_secs(300), |c| c.state == "running");
    }
    let running = status(&guest);
    eprintln!(
        "[rss] PID 1 RSS with {CONTAINERS} containers declared: {} KiB at ready, {} KiB with all running",
        at_ready.pid1_rss_kib, running.pid1_rss_kib
    );
    assert!(at_ready.pid1_rss_kib > 0 && at_ready.pid1_rss_kib < RSS_BOUND_KIB, "{at_ready:?}");
    assert!(running.pid1_rss_kib < RSS_BOUND_KIB, "{running:?}");
    assert!(running.boot_errors.is_empty(), "{:?}", running.boot_errors);
    // Ready before the late boot, the late boot (firewall) before any container.
    let ready = position(&guest, "keel: ready");
    let late = position(&guest, "bridges and firewall up");
    let first_start = position(&guest, ": started, pid ");
    assert!(ready < late && late < first_start, "ready {ready}, late boot {late}, first start {first_start}");
}
