//! First-boot tests: an Ignition config passed by QEMU fw_cfg, applied once on a host
//! with a persistent /var; and an invalid config refused whole.

use keel_qemu_tests::{build_image, target_dir, BootOptions, Guest, TestImage};
use keel_supervisor::control::Command;
use std::path::{Path, PathBuf};
use std::time::Duration;

const HOST: &str = r#"
hostname = "keel-fb"
busybox = "/bin/busybox"

[kernel]
modules = ["virtio_pci", "virtio_console", "virtio_blk", "qemu_fw_cfg", "button", "evdev"]

[control]
virtio_serial = true
shutdown_grace_secs = 2

[[images]]
name = "busybox"
busybox = "/bin/busybox"
"#;

/// A `data:` URL of `text`, percent-encoded.
fn data_url(text: &str) -> String {
    let encoded: String =
        text.bytes().map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") }).collect();
    format!("data:,{encoded}")
}

const CONTAINER: &str = "image = \"/usr/share/keel/images/busybox\"\ncommand = [\"/bin/sh\", \"-c\", \"echo provisioned; exec sleep 3600\"]\nnetwork = \"none\"\n";

fn config_a() -> String {
    format!(
        r#"{{
  "ignition": {{ "version": "3.4.0" }},
  "passwd": {{
    "users": [{{ "name": "ops", "sshAuthorizedKeys": ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKeelTestKey ops@example"] }}]
  }},
  "storage": {{
    "directories": [{{ "path": "/var/lib/app", "mode": 493 }}],
    "files": [
      {{ "path": "/etc/motd", "mode": 416, "user": {{ "name": "ops" }}, "contents": {{ "source": "{motd}" }} }},
      {{ "path": "/var/lib/app/data", "contents": {{ "source": "data:,first" }} }},
      {{ "path": "/etc/keel/containers/hello.toml", "contents": {{ "source": "{container}" }} }}
    ]
  }}
}}"#,
        motd = data_url("welcome to keel\n"),
        container = data_url(CONTAINER),
    )
}

const CONFIG_B: &str = r#"{ "ignition": { "version": "3.4.0" },
  "storage": { "files": [ { "path": "/var/lib/app/data", "overwrite": true, "contents": { "source": "data:,second" } },
                          { "path": "/etc/config-b", "contents": { "source": "data:,b" } } ] } }"#;

/// Errors on lines 3, 4 and 5, and an unsupported section.
const INVALID: &str = r#"{ "ignition": { "version": "3.4.0" },
  "storage": { "files": [
    { "path": "/etc/a", "moed": 420 },
    { "path": "/usr/bin/evil", "contents": { "source": "data:,x" } },
    { "path": "etc/relative" } ] },
  "systemd": { "units": [ { "name": "x.service", "enabled": true } ] } }"#;

/// One image for both tests (built once: they run in parallel).
fn image() -> &'static TestImage {
    static IMAGE: std::sync::OnceLock<TestImage> = std::sync::OnceLock::new();
    IMAGE.get_or_init(|| build_image("firstboot", HOST, env!("CARGO_BIN_EXE_keel-probe").as_ref()))
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn boot(image: &TestImage, name: &str, disk: Option<PathBuf>, config: PathBuf) -> Guest {
    let mut guest = Guest::boot(image, name, BootOptions { disk, config: Some(config), ..Default::default() });
    guest.wait_ready();
    guest
}

fn firstboot(guest: &Guest) -> serde_json::Value {
    guest.call(Command::Firstboot, Duration::from_secs(30)).unwrap_or_else(|e| guest.fail(&e.to_string()))
}

fn power_off(mut guest: Guest) {
    guest.call(Command::Poweroff, Duration::from_secs(20)).unwrap();
    if !guest.wait_exit(Duration::from_secs(60)).is_some_and(|s| s.success()) {
        guest.fail("did not power off");
    }
}

/// Tests 1 and 2: the config writes files (content, mode, owner), a user with an SSH
/// key and a container that runs; a second boot with another config applies nothing
/// and keeps what changed after the first.
#[test]
fn config_is_applied_once_on_a_persistent_var() {
    let image = image();
    let dir = target_dir().join("qemu-tests").join("firstboot");
    let disk = dir.join(format!("var-{}.img", std::process::id()));
    let _ = std::fs::remove_file(&disk);
    keel_build::disk::VarDisk::default().create(&disk).expect("make the data disk");

    let guest = boot(image, "first", Some(disk.clone()), write(&dir, "a.ign", &config_a()));
    let status = firstboot(&guest);
    assert_eq!(status["state"], "applied", "{status}");
    let motd = guest.exec(&["sh", "-c", "cat /etc/motd; stat -c '%a %U' /etc/motd"]);
    assert_eq!(motd.stdout, "welcome to keel\n640 ops\n", "{motd:?}");
    let keys = guest.exec(&["sh", "-c", "cat /home/ops/.ssh/authorized_keys; stat -c '%a %U' /home/ops/.ssh/authorized_keys; grep ^ops: /etc/passwd"]);
    assert!(keys.stdout.starts_with("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKeelTestKey ops@example\n600 ops\nops:x:1000:1000:"), "{keys:?}");
    guest.wait_container("hello", Duration::from_secs(60), |c| c.state == "running");
    let changed = guest.exec(&["sh", "-c", "echo changed > /var/lib/app/data"]);
    assert_eq!(changed.exit_code, 0);
    power_off(guest);

    let guest = boot(image, "second", Some(disk.clone()), write(&dir, "b.ign", CONFIG_B));
    let status = firstboot(&guest);
    assert_eq!(status["state"], "skipped", "{status}");
    let after = guest.exec(&["sh", "-c", "cat /var/lib/app/data /etc/motd; ls /etc/config-b 2>&1"]);
    assert!(after.stdout.starts_with("changed\nwelcome to keel\n"), "{after:?}");
    assert!(after.stdout.contains("No such file"), "the second config was applied: {after:?}");
    guest.wait_container("hello", Duration::from_secs(60), |c| c.state == "running");
    power_off(guest);
    let _ = std::fs::remove_file(&disk);
}

/// Test 3: an invalid config names every problem on the console and over keelctl,
/// writes nothing, and no container starts; the machine stays up.
#[test]
fn invalid_config_is_refused_whole() {
    let image = image();
    let dir = target_dir().join("qemu-tests").join("firstboot");
    let guest = boot(image, "invalid", None, write(&dir, "invalid.ign", INVALID));
    let console = guest.console();
    for needle in [
        "first-boot config FAILED",
        "storage.files[0].moed (line 3",
        "storage.files[1].path",
        "storage.files[2].path",
        "systemd.units",
        "containers: not started",
    ] {
        assert!(console.contains(needle), "console lacks {needle:?}:\n{console}");
    }
    let status = firstboot(&guest);
    assert_eq!(status["state"], "failed", "{status}");
    assert!(status["problems"].as_array().is_some_and(|p| p.len() >= 4), "{status}");
    let written = guest.exec(&["sh", "-c", "ls /etc/a /var/lib/keel/firstboot.done 2>&1 | grep -c 'No such file'"]);
    assert_eq!(written.stdout.trim(), "2", "something was written: {written:?}");
    let report = guest.exec(&["cat", "/run/keel/firstboot.json"]);
    assert!(report.stdout.contains("\"failed\""), "{report:?}");
    let ps = guest.call(Command::Ps, Duration::from_secs(10));
    assert!(ps.is_err() || ps.as_ref().is_ok_and(|v| v.as_array().is_some_and(|a| a.is_empty())), "containers: {ps:?}");
    power_off(guest);
}
