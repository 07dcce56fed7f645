//! Persistent /var and the fw_cfg config transport: a data disk made by keel-build is
//! mounted on /var and keeps what a boot wrote for the next one; without it keel says
//! /var is not persistent; a config passed by fw_cfg reaches the guest byte for byte.

use keel_build::disk::VarDisk;
use keel_qemu_tests::{build_image, BootOptions, Guest, TestImage};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

const HOST: &str = r#"
hostname = "keel-disk"
busybox = "/bin/busybox"

[kernel]
modules = ["virtio_pci", "virtio_console", "virtio_blk", "qemu_fw_cfg", "button", "evdev"]

[control]
virtio_serial = true
shutdown_grace_secs = 3
"#;

/// What keel prints without a data disk (keel_init::storage::NOT_PERSISTENT_MESSAGE).
const NOT_PERSISTENT_MESSAGE: &str = "keel: /var is not persistent (no disk labelled keel-var): every boot is a first boot";
/// Where the qemu_fw_cfg module shows the config in the guest.
const FW_CFG_RAW: &str = "/sys/firmware/qemu_fw_cfg/by_name/opt/com.coreos/config/raw";

fn image() -> &'static TestImage {
    static IMAGE: OnceLock<TestImage> = OnceLock::new();
    IMAGE.get_or_init(|| build_image("data-disk", HOST, env!("CARGO_BIN_EXE_keel-probe").as_ref()))
}

fn boot(name: &str, disk: Option<&Path>, config: Option<PathBuf>) -> Guest {
    let options = BootOptions { disk: disk.map(Path::to_path_buf), config, ..Default::default() };
    let mut guest = Guest::boot(image(), name, options);
    guest.wait_ready();
    guest
}

/// Run a shell command in the guest; its stdout, or a failure with everything it said.
fn sh(guest: &Guest, script: &str) -> String {
    let result = guest.exec(&["/bin/sh", "-c", script]);
    if result.exit_code != 0 {
        guest.fail(&format!("`{script}` exited {}: {}{}", result.exit_code, result.stdout, result.stderr));
    }
    result.stdout
}

/// The /proc/mounts line of /var, if /var is a mount of its own.
fn var_mount(guest: &Guest) -> Option<String> {
    sh(guest, "cat /proc/mounts").lines().find(|line| line.split_whitespace().nth(1) == Some("/var")).map(str::to_string)
}

fn power_off(guest: &mut Guest) {
    guest.qmp("system_powerdown");
    match guest.wait_exit(Duration::from_secs(60)) {
        Some(status) if status.success() => {}
        other => guest.fail(&format!("QEMU did not exit 0 within 60 s of system_powerdown: {other:?}")),
    }
}

#[test]
fn var_on_the_data_disk_survives_a_reboot_and_fw_cfg_carries_the_config() {
    let dir = &image().dir;
    let disk = dir.join("var.img");
    let _ = std::fs::remove_file(&disk);
    VarDisk { size: 64 << 20, source_date_epoch: Some(0), ..VarDisk::default() }.create(&disk).expect("create the data disk");
    // Not JSON on purpose: the transport must not care. Bytes beyond ASCII, no final newline.
    let config_bytes: Vec<u8> = b"{\"ignition\":{\"version\":\"3.4.0\"}}\n\xc3\xa9\x00 tail".to_vec();
    let config = dir.join("config.ign");
    std::fs::write(&config, &config_bytes).expect("write config");

    let mut first = boot("disk-boot1", Some(&disk), Some(config));
    let mount = var_mount(&first).unwrap_or_else(|| first.fail("/var is not a mount of its own"));
    let fields: Vec<&str> = mount.split_whitespace().collect();
    assert_eq!(&fields[..3], ["/dev/vda", "/var", "ext4"], "{mount}");
    for option in ["nosuid", "nodev", "noatime"] {
        assert!(fields[3].split(',').any(|o| o == option), "{option} missing from {mount}");
    }
    let console = first.console();
    assert!(console.contains("mounted /dev/vda (ext4, label keel-var) on /var"), "{console}");
    assert!(!console.contains(NOT_PERSISTENT_MESSAGE), "{console}");
    sh(&first, "test -d /var/lib/keel && test -d /var/log/keel");
    sh(&first, "mkdir -p /var/lib/keel-test && echo written-by-boot-1 > /var/lib/keel-test/marker");

    let raw = first.exec(&["/bin/sh", "-c", &format!("od -An -v -tx1 {FW_CFG_RAW}")]);
    assert_eq!(raw.exit_code, 0, "{raw:?}");
    let seen: Vec<u8> = raw.stdout.split_whitespace().map(|b| u8::from_str_radix(b, 16).expect("hex byte")).collect();
    assert_eq!(seen, config_bytes, "the fw_cfg config differs from the file passed");
    power_off(&mut first);
    drop(first);

    let mut second = boot("disk-boot2", Some(&disk), None);
    let mount = var_mount(&second).unwrap_or_else(|| second.fail("/var is not a mount of its own on the second boot"));
    assert!(mount.starts_with("/dev/vda /var ext4 "), "{mount}");
    assert_eq!(sh(&second, "cat /var/lib/keel-test/marker"), "written-by-boot-1\n");
    assert_ne!(second.exec(&["test", "-e", FW_CFG_RAW]).exit_code, 0, "no config was passed this time");
    power_off(&mut second);
}

#[test]
fn without_a_data_disk_var_is_not_persistent() {
    let mut guest = boot("no-disk", None, None);
    guest.wait_for(NOT_PERSISTENT_MESSAGE, Duration::from_secs(10));
    assert_eq!(var_mount(&guest), None, "nothing is mounted on /var");
    assert_ne!(guest.exec(&["test", "-e", FW_CFG_RAW]).exit_code, 0);
    power_off(&mut guest);
}

#[test]
fn a_data_disk_that_does_not_mount_is_a_boot_error_and_var_stays_on_tmpfs() {
    let disk = image().dir.join("broken.img");
    let _ = std::fs::remove_file(&disk);
    VarDisk { size: 16 << 20, source_date_epoch: Some(0), ..VarDisk::default() }.create(&disk).expect("create the data disk");
    // Keep the label, set an incompatible feature bit no kernel knows (s_feature_incompat
    // at 0x60 of the superblock, at byte 1024): ext4 must refuse to mount it.
    let mut bytes = std::fs::read(&disk).expect("read disk");
    bytes[1024 + 0x63] |= 0x80;
    std::fs::write(&disk, &bytes).expect("write disk");
    let mut guest = boot("broken-disk", Some(&disk), None);
    guest.wait_for("keel: error: storage: mount /dev/vda (label keel-var) on /var as ext4:", Duration::from_secs(10));
    let console = guest.console();
    assert!(console.contains("keel: ready") && console.contains("boot error(s)"), "{console}");
    assert_eq!(var_mount(&guest), None, "/var stays on the tmpfs root");
    sh(&guest, "echo still-writable > /var/probe && cat /var/probe");
    power_off(&mut guest);
}
