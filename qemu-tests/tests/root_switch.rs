//! The root switch (init/src/switch_root.rs) binds the initramfs's own tree as PID 1's
//! root, over an empty read-only tmpfs, instead of copying it: containers must still
//! pivot_root into their own root, and what a container's mount namespace holds beneath
//! that root must be the empty tmpfs, never the host's files.

use keel_qemu_tests::{build_image, busybox_host, declare_container, target_dir, BootOptions, Guest};
use std::time::Duration;

/// statfs magic of tmpfs.
const TMPFS_MAGIC: &str = "0x1021994";

/// The `ns-root` line of keel-probe for `pid` and `depth`.
fn ns_root(guest: &Guest, pid: &str, depth: u32) -> String {
    let result = guest.exec(&["/usr/bin/keel-probe", "ns-root", pid, &depth.to_string()]);
    assert_eq!(result.exit_code, 0, "keel-probe ns-root {pid} {depth}: {result:?}");
    result.stdout.trim().to_string()
}

#[test]
fn containers_pivot_root_and_see_no_host_file_beneath_their_root() {
    let name = "root-switch";
    let dir = target_dir().join("qemu-tests").join(name);
    std::fs::create_dir_all(&dir).expect("create image dir");
    let mut host = busybox_host("keel-root-switch", &["virtio_pci", "virtio_console", "button", "evdev", "overlay"], 2);
    declare_container(&dir, &mut host, "sleeper", "image = \"@IMAGE@\"\ncommand = [\"/bin/sleep\", \"3600\"]\nstop_timeout = \"1s\"\n");
    let image = build_image(name, &host, env!("CARGO_BIN_EXE_keel-probe").as_ref());
    let mut guest = Guest::boot(&image, "switch", BootOptions::default());
    guest.wait_ready();
    let console = guest.console();
    assert!(!console.contains("switch root:"), "the root switch failed:\n{console}");
    // The container pivoted into its root (a failed pivot_root fails its start).
    let sleeper = guest.wait_container("sleeper", Duration::from_secs(180), |c| c.state == "running");
    let pid = sleeper.pid.unwrap_or_else(|| guest.fail(&format!("no pid: {sleeper:?}"))).to_string();
    // Beneath the container's root: the empty, read-only tmpfs.
    let beneath = ns_root(&guest, &pid, 1);
    assert_eq!(beneath, format!("ns-root 1: fs={TMPFS_MAGIC} ro=true entries="), "beneath the container's root");
    // Negative control: one mount further down is the kernel's rootfs with the host's
    // files (reached here only because the copy was made by the host's root, whose
    // mounts are not locked), so the check sees host files where they are.
    let rootfs = ns_root(&guest, &pid, 2);
    let entries = rootfs.split("entries=").nth(1).unwrap_or_default().split(',').collect::<Vec<_>>();
    assert!(entries.contains(&"usr") && entries.contains(&"etc"), "the control should reach the host's files: {rootfs}");
    // The host's own namespace has the same stack under its root.
    assert_eq!(ns_root(&guest, "1", 1), format!("ns-root 1: fs={TMPFS_MAGIC} ro=true entries="), "beneath the host's root");
    // The probe worked on copies: the container still runs and its root is intact.
    let again = guest.exec_in(Some("sleeper"), &["ls", "/bin/sleep"]);
    assert_eq!(again.exit_code, 0, "{again:?}");
}
