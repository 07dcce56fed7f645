//! Disk images under UEFI (OVMF, TCG): the example host built by `keel-build disk` as a
//! qcow2 on a disk grown from 4 to 8 GiB boots to ready and runs its containers; / is
//! the read-only erofs (EROFS from the host and from a read-only container), /etc and
//! /var are writable, /var grew to fill the disk on the first boot and keeps what was
//! written across a reboot; the fw_cfg first-boot config is applied once. A disk whose
//! root slot is corrupt gives a console error, the emergency state and a machine that
//! stays up and answers its control channel. Two builds
//! of the same input have the same sha256.

use keel_build::build::sha256_file;
use keel_build::diskimage::{build_disk, layout, DiskFormat};
use keel_build::{BuildOptions, HostSpec};
use keel_qemu_tests::{keel_binary, target_dir, BootOptions, Guest, TestImage};
use keel_supervisor::control::Command;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The example host, plus a container whose root is the image itself, read-only.
fn host_toml() -> String {
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/demo");
    let text = std::fs::read_to_string(demo.join("host.toml")).expect("examples/demo/host.toml");
    let text = text.replace("source = \"", &format!("source = \"{}/", demo.display()));
    format!("{text}\n[[files]]\nsource = \"{}\"\npath = \"/etc/keel/containers/ro.toml\"\n", ro_container().display())
}

fn ro_container() -> PathBuf {
    let path = dir().join("ro.toml");
    let text = "image = \"/usr/share/keel/images/busybox\"\ncommand = [\"/bin/sleep\", \"100000\"]\nread_only = true\nnetwork = \"none\"\n";
    std::fs::write(&path, text).expect("write ro.toml");
    path
}

fn dir() -> PathBuf {
    let dir = target_dir().join("qemu-tests").join("disk-image");
    std::fs::create_dir_all(&dir).expect("create the test directory");
    dir
}

/// Build the disk image of the test host into `out`. Builds take turns: they share
/// the host.toml and ro.toml they write.
fn build(out: &Path, format: DiskFormat, size: u64, epoch: u64) -> PathBuf {
    static BUILDING: Mutex<()> = Mutex::new(());
    let _turn = BUILDING.lock().unwrap_or_else(|e| e.into_inner());
    let toml = dir().join("host.toml");
    std::fs::write(&toml, host_toml()).expect("write host.toml");
    let spec = HostSpec::load(&toml).unwrap_or_else(|e| panic!("{e}"));
    let options = BuildOptions { keel_binary: keel_binary(), source_date_epoch: epoch, ca_bundle: keel_build::build::default_ca_bundle() };
    build_disk(&spec, &options, format, size, out).unwrap_or_else(|e| panic!("keel-build disk: {e}")).image
}

/// The 4 GiB qcow2, built once.
fn image() -> &'static PathBuf {
    static IMAGE: OnceLock<PathBuf> = OnceLock::new();
    IMAGE.get_or_init(|| build(&dir().join("qcow2"), DiskFormat::Qcow2, 4 << 30, 0))
}

fn test_image() -> TestImage {
    TestImage { dir: dir(), vmlinuz: PathBuf::new(), initramfs: PathBuf::new(), cmdline: String::new() }
}

fn qemu_img(args: &[&str]) {
    let status = std::process::Command::new("qemu-img").args(args).status().expect("run qemu-img (qemu-utils)");
    assert!(status.success(), "qemu-img {args:?}: {status}");
}

/// Boot `disk` under UEFI; returns the guest (ready) and the seconds QEMU took to get there.
fn boot(name: &str, disk: &Path, config: Option<PathBuf>) -> (Guest, f64) {
    let options = BootOptions { uefi_disk: Some(disk.to_path_buf()), config, ..Default::default() };
    let started = Instant::now();
    let mut guest = Guest::boot(&test_image(), name, options);
    guest.wait_for("keel: ready", Duration::from_secs(240));
    let seconds = started.elapsed().as_secs_f64();
    eprintln!("[{name}] keel: ready {seconds:.1} s after QEMU started (UEFI, TCG)");
    (guest, seconds)
}

fn sh(guest: &Guest, script: &str) -> String {
    let result = guest.exec(&["/bin/sh", "-c", script]);
    if result.exit_code != 0 {
        guest.fail(&format!("`{script}` exited {}: {}{}", result.exit_code, result.stdout, result.stderr));
    }
    result.stdout
}

fn power_off(guest: &mut Guest) {
    guest.qmp("system_powerdown");
    match guest.wait_exit(Duration::from_secs(90)) {
        Some(status) if status.success() => {}
        other => guest.fail(&format!("QEMU did not exit 0 within 90 s of system_powerdown: {other:?}")),
    }
}

/// Size in MiB of the keel-var partition and the total of the filesystem on /var.
fn var_sizes(guest: &Guest) -> (u64, u64) {
    let sectors: u64 = sh(guest, "cat /sys/class/block/vda4/size").trim().parse().expect("sectors");
    let df = sh(guest, "df -k /var | tail -1");
    let total_k: u64 = df.split_whitespace().nth(1).and_then(|v| v.parse().ok()).unwrap_or_else(|| guest.fail(&format!("df: {df}")));
    (sectors / 2048, total_k / 1024)
}

const GREW_PARTITION: &str = "keel: grew partition 4 (keel-var) of /dev/vda from ";
const GREW_FS: &str = "keel: grew the ext4 filesystem on /var from ";
/// The demo config writes /etc/motd.
const MOTD: &str = "Provisioned by keel's first-boot config.\n";

#[test]
fn the_qcow2_boots_under_uefi_with_a_read_only_root_and_a_var_that_grows_and_persists() {
    let disk = dir().join("boot.qcow2");
    std::fs::copy(image(), &disk).expect("copy the image");
    qemu_img(&["resize", "-q", disk.to_str().expect("utf-8 path"), "8G"]);
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/demo/config.ign");

    let (mut first, _) = boot("uefi-boot1", &disk, Some(config.clone()));
    let console = first.console();
    // 1. The example host's containers run.
    first.wait_container("web", Duration::from_secs(90), |c| c.state == "running" && c.health.as_deref() == Some("healthy"));
    first.wait_container("hello", Duration::from_secs(60), |c| c.state == "running");
    first.wait_container("ro", Duration::from_secs(60), |c| c.state == "running");
    // 2. / is the erofs of keel-root-a, read-only, from the host and from a container.
    let mounts = sh(&first, "cat /proc/mounts");
    assert!(mounts.lines().any(|l| l.starts_with("/dev/vda2 / erofs ro,")), "{mounts}");
    let write = first.exec(&["/bin/sh", "-c", "echo x > /usr/keel-test"]);
    assert!(write.exit_code != 0 && write.stderr.contains("Read-only file system"), "{write:?}");
    let write = first.exec_in(Some("ro"), &["/bin/sh", "-c", "echo x > /usr/keel-test"]);
    assert!(write.exit_code != 0 && write.stderr.contains("Read-only file system"), "{write:?}");
    // A container with an overlay root writes into its own upper layer on /var; the
    // image on the erofs stays as it was.
    sh(&first, "test ! -e /usr/share/keel/images/busybox/usr/keel-test");
    // 4. The first-boot config came by fw_cfg and was applied (it writes /etc/motd).
    assert!(console.contains("keel: firstboot: applied the config from "), "{console}");
    assert_eq!(sh(&first, "cat /etc/motd"), MOTD);
    // /etc and /var are writable.
    sh(&first, "echo changed > /etc/motd && mkdir -p /var/lib/keel-test && echo boot-1 > /var/lib/keel-test/marker");
    // 3. /var grew to fill the 8 GiB disk: 8192 MiB minus 1 MiB before and after the
    // partitions, the ESP and the two root slots.
    let expected_var = 8192 - 2 - (layout::ESP_SIZE >> 20) - 2 * (layout::ROOT_SLOT_SIZE >> 20);
    let (partition, filesystem) = var_sizes(&first);
    assert_eq!(partition, expected_var, "keel-var partition size in MiB");
    assert!(filesystem > expected_var * 9 / 10, "/var has {filesystem} MiB of a {partition} MiB partition");
    assert!(console.contains(GREW_PARTITION) && console.contains(GREW_FS), "{console}");
    power_off(&mut first);
    drop(first);

    let (mut second, _) = boot("uefi-boot2", &disk, Some(config));
    let console = second.console();
    assert!(console.contains("firstboot: not a first boot"), "{console}");
    assert!(!console.contains(GREW_PARTITION) && !console.contains(GREW_FS), "growth happens once: {console}");
    assert_eq!(sh(&second, "cat /var/lib/keel-test/marker"), "boot-1\n");
    assert_eq!(sh(&second, "cat /etc/motd"), "changed\n", "the config is not applied again");
    assert_eq!(var_sizes(&second).0, expected_var);
    second.wait_container("web", Duration::from_secs(90), |c| c.state == "running");
    power_off(&mut second);
}

#[test]
fn a_corrupt_root_slot_is_a_console_error_and_the_machine_stays_up() {
    let raw = dir().join("corrupt.raw");
    let _ = std::fs::remove_file(&raw);
    qemu_img(&["convert", "-q", "-O", "raw", image().to_str().expect("utf-8 path"), raw.to_str().expect("utf-8 path")]);
    // Zero the erofs superblock (at byte 1024 of keel-root-a).
    let root_at = (1 << 20) + layout::ESP_SIZE + 1024;
    let file = std::fs::OpenOptions::new().write(true).open(&raw).expect("open the raw image");
    std::os::unix::fs::FileExt::write_all_at(&file, &[0u8; 128], root_at).expect("corrupt the root");
    drop(file);
    let options = BootOptions { uefi_disk: Some(raw.clone()), ..Default::default() };
    let mut guest = Guest::boot(&test_image(), "uefi-corrupt-root", options);
    guest
        .wait_for("keel: error: root: mount /dev/vda2 (partition keel-root-a) on /sysroot as erofs, read-only: ", Duration::from_secs(240));
    guest.wait_for("keel: emergency: root: mount /dev/vda2", Duration::from_secs(60));
    // PID 1 is alive on the initramfs and reports the cause on the control channel.
    let status = guest.call(Command::Status, Duration::from_secs(30)).unwrap_or_else(|e| guest.fail(&format!("status: {e}")));
    assert_eq!(status["state"], "emergency", "{status}");
    let errors = status["boot_errors"].to_string();
    assert!(errors.contains("root: mount /dev/vda2 (partition keel-root-a) on /sysroot as erofs"), "{status}");
    assert!(guest.wait_exit(Duration::from_secs(1)).is_none(), "PID 1 kept the machine up");
    let _ = std::fs::remove_file(&raw);
}

#[test]
fn two_builds_of_the_same_input_have_the_same_sha256() {
    let epoch = 1_700_000_000;
    for (format, size) in [(DiskFormat::Qcow2, 4 << 30), (DiskFormat::Vhd, 1 << 30)] {
        let a = build(&dir().join(format!("repro-a-{}", format.name())), format, size, epoch);
        let b = build(&dir().join(format!("repro-b-{}", format.name())), format, size, epoch);
        let (sha_a, sha_b) = (sha256_file(&a).expect("sha256"), sha256_file(&b).expect("sha256"));
        eprintln!("{}: {sha_a} ({} bytes)", format.name(), std::fs::metadata(&a).map(|m| m.len()).unwrap_or(0));
        assert_eq!(sha_a, sha_b, "{} and {} differ", a.display(), b.display());
        let other = build(&dir().join(format!("repro-c-{}", format.name())), format, size, epoch + 1);
        assert_ne!(sha256_file(&other).expect("sha256"), sha_a, "another epoch gives another image (the test can fail)");
        for path in [a, b, other] {
            let _ = std::fs::remove_file(path);
        }
    }
}
