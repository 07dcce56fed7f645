//! PID 1's hardware watchdog (issue 12, point 7): keel arms QEMU's i6300esb and pets it
//! from its loop. A loop wedged on purpose (`keel.test.wedge`) stops petting and the
//! watchdog resets the guest (a second boot on the console); without the watchdog
//! device the same wedge leaves the guest hanging (the negative control); a loop that
//! runs keeps the guest up far past the timeout, and a clean power-off disarms it.

use keel_qemu_tests::{build_image, BootOptions, Guest, TestImage};
use keel_supervisor::control::{Command, Status};
use std::sync::OnceLock;
use std::time::Duration;

const HOST: &str = r#"
hostname = "keel-watchdog"
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

/// The watchdog timeout the tests ask for, in seconds.
const TIMEOUT_SECS: u64 = 4;

/// How long after the wedge a reset must have rebooted the guest (the i6300esb fires
/// after up to two timeouts; the rest is a TCG boot on a loaded machine).
const REBOOT_WINDOW: Duration = Duration::from_secs(60);

/// PID 1's first line of each boot.
const BOOT_MARK: &str = "keel: moving the root from the initramfs";
const WEDGE_MARK: &str = "keel: test: wedging the event loop";

fn image() -> &'static TestImage {
    static IMAGE: OnceLock<TestImage> = OnceLock::new();
    IMAGE.get_or_init(|| build_image("watchdog", HOST, env!("CARGO_BIN_EXE_keel-probe").as_ref()))
}

fn boot(name: &str, extra_cmdline: &str, no_watchdog: bool) -> Guest {
    let options = BootOptions { extra_cmdline: extra_cmdline.to_string(), allow_reboot: true, no_watchdog, ..Default::default() };
    Guest::boot(image(), name, options)
}

fn status(guest: &Guest) -> Status {
    let value = guest.call(Command::Status, Duration::from_secs(30)).unwrap_or_else(|e| guest.fail(&e.to_string()));
    serde_json::from_value(value).unwrap_or_else(|e| guest.fail(&format!("status: {e}")))
}

#[test]
fn wedged_loop_reboots_through_the_watchdog() {
    let mut guest = boot("wedge", &format!("keel.watchdog={TIMEOUT_SECS} keel.test.wedge=600"), false);
    guest.wait_ready();
    guest.wait_for(WEDGE_MARK, Duration::from_secs(30));
    let console = guest.console();
    if !console.contains(&format!("armed, timeout {TIMEOUT_SECS} s")) {
        guest.fail("the watchdog was not armed before the wedge");
    }
    guest.wait_for_count(BOOT_MARK, 2, REBOOT_WINDOW);
    // The second boot came from a reset, not from keel: no shutdown was logged.
    if guest.console().contains("keel: shutdown") {
        guest.fail("the guest shut down by itself instead of being reset by the watchdog");
    }
}

#[test]
fn without_a_watchdog_the_wedged_loop_hangs() {
    // Negative control: the same wedge on a machine without i6300esb is not rebooted,
    // so the test above sees the watchdog and nothing else.
    let mut guest = boot("wedge-nowd", &format!("keel.watchdog={TIMEOUT_SECS} keel.test.wedge=600"), true);
    guest.wait_ready();
    guest.wait_for(WEDGE_MARK, Duration::from_secs(30));
    if !guest.console().contains("keel: watchdog: no hardware watchdog on this machine") {
        guest.fail("expected keel to find no watchdog");
    }
    std::thread::sleep(REBOOT_WINDOW);
    let boots = guest.console().matches(BOOT_MARK).count();
    if boots != 1 || guest.wait_exit(Duration::ZERO).is_some() {
        guest.fail(&format!("the wedged guest without a watchdog booted {boots} time(s) or exited"));
    }
}

#[test]
fn a_running_loop_keeps_the_watchdog_fed_and_poweroff_disarms_it() {
    let mut guest = boot("fed", &format!("keel.watchdog={TIMEOUT_SECS}"), false);
    guest.wait_ready();
    // Armed once the modules loading after ready are in.
    guest.wait_for(&format!("armed, timeout {TIMEOUT_SECS} s"), Duration::from_secs(120));
    let first = status(&guest);
    let watchdog = first.watchdog.clone().unwrap_or_else(|| guest.fail("status shows no watchdog"));
    assert_eq!(watchdog.device, "/dev/watchdog0");
    assert!(watchdog.identity.contains("6300ESB"), "{watchdog:?}");
    assert_eq!(u64::from(watchdog.timeout_secs), TIMEOUT_SECS);
    // Four timeouts with nothing for the loop to do but pet.
    std::thread::sleep(Duration::from_secs(4 * TIMEOUT_SECS));
    let later = status(&guest);
    assert!(later.uptime_secs > first.uptime_secs + (4 * TIMEOUT_SECS) as f64 - 1.0, "{first:?} {later:?}");
    assert_eq!(guest.console().matches(BOOT_MARK).count(), 1, "the guest rebooted although the loop ran");
    // keelctl in the guest prints it too.
    let printed = guest.exec(&["/usr/bin/keelctl", "status"]);
    assert!(printed.stdout.contains("watchdog:  /dev/watchdog0 ("), "{printed:?}");
    // A clean power-off (3 s grace, like a long container stop) disarms it first.
    guest.qmp("system_powerdown");
    match guest.wait_exit(Duration::from_secs(60)) {
        Some(_) => {}
        None => guest.fail("no power-off within 60 s"),
    }
    let console = guest.console();
    assert!(console.contains("disarmed for shutdown"), "{console}");
    assert_eq!(console.matches(BOOT_MARK).count(), 1, "{console}");
}
