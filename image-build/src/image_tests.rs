//! Unit tests of the image plan (kept apart so image.rs stays small).

use std::path::{Path, PathBuf};

use keel_init::kmod::ModulesDep;

use super::*;

const DEP: &str = "kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko\n\
kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko\n\
kernel/drivers/virtio/virtio_ring.ko:\n\
kernel/drivers/acpi/button.ko:\n\
kernel/drivers/input/evdev.ko:\n";

fn spec(text: &str) -> HostSpec {
    HostSpec::parse(text, Path::new("/cfg/host.toml")).expect("test spec parses")
}

fn kernel() -> KernelInfo {
    KernelInfo {
        vmlinuz: PathBuf::from("/boot/vmlinuz-6.1.0"),
        release: "6.1.0".to_string(),
        modules_dir: PathBuf::from("/lib/modules/6.1.0"),
        modules_dep: ModulesDep::parse(DEP).expect("test modules.dep parses"),
    }
}

fn options() -> BuildOptions {
    BuildOptions { keel_binary: PathBuf::from("/build/keel"), source_date_epoch: 0, ca_bundle: None }
}

fn plan_of(text: &str, applets: &[&str]) -> Result<Vec<Entry>, PlanError> {
    let applets: Vec<String> = applets.iter().map(|a| a.to_string()).collect();
    plan(&spec(text), &kernel(), &applets, &[], &crate::admin::AdminFiles::default(), &options())
}

fn node<'a>(entries: &'a [Entry], path: &str) -> &'a Node {
    let found = entries.iter().find(|e| e.path.as_str() == path);
    &found.unwrap_or_else(|| panic!("{path} is not in the plan")).node
}

fn text<'a>(entries: &'a [Entry], path: &str) -> &'a str {
    match node(entries, path) {
        Node::File { source: Source::Inline(bytes), .. } => std::str::from_utf8(bytes).unwrap(),
        other => panic!("{path} is {other:?}"),
    }
}

#[test]
fn minimal_image_has_the_contract_layout() {
    let entries = plan_of("hostname = \"demo\"\n", &[]).unwrap();
    for dir in ["/bin", "/etc/keel/containers", "/lib/modules", "/proc", "/run", "/sbin", "/sys", "/var"] {
        assert!(matches!(node(&entries, dir), Node::Dir { mode: 0o755 }), "{dir}");
    }
    assert_eq!(node(&entries, "/tmp"), &Node::Dir { mode: 0o1777 });
    assert_eq!(node(&entries, "/dev/console"), &Node::CharDev { mode: 0o600, major: 5, minor: 1 });
    assert_eq!(node(&entries, "/dev/null"), &Node::CharDev { mode: 0o666, major: 1, minor: 3 });
    assert_eq!(node(&entries, "/usr/bin/keel"), &Node::File { mode: Some(0o755), source: Source::Host(PathBuf::from("/build/keel")) });
    assert_eq!(node(&entries, "/init"), &Node::Symlink { target: "/usr/bin/keel".into() });
    assert_eq!(node(&entries, "/sbin/init"), &Node::Symlink { target: "/usr/bin/keel".into() });
    assert_eq!(node(&entries, "/usr/bin/keelctl"), &Node::Symlink { target: "keel".into() });
}

#[test]
fn minimal_image_has_the_contract_files() {
    let entries = plan_of("hostname = \"demo\"\n", &[]).unwrap();
    assert_eq!(text(&entries, "/etc/hostname"), "demo\n");
    assert_eq!(text(&entries, "/etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n");
    assert_eq!(text(&entries, "/etc/group"), "root:x:0:\n");
    assert_eq!(text(&entries, "/etc/keel/keel.toml"), "shutdown_grace_secs = 5\n");
    let entries = plan_of("hostname = \"demo\"\n[control]\nwatchdog_secs = 0\n", &[]).unwrap();
    assert_eq!(text(&entries, "/etc/keel/keel.toml"), "shutdown_grace_secs = 5\nwatchdog_secs = 0\n");
    assert_eq!(text(&entries, "/etc/keel/modules"), "");
    assert_eq!(text(&entries, "/lib/modules/6.1.0/modules.dep"), "");
    let mut sorted = entries.clone();
    sorted.sort_by(|a, b| a.path.cmp(&b.path));
    assert_eq!(sorted, entries, "the plan is sorted by path");
}

#[test]
fn control_settings_go_to_keel_toml() {
    let entries = plan_of("hostname = \"h\"\n[control]\nvirtio_serial = true\nshutdown_grace_secs = 12\n", &[]).unwrap();
    assert_eq!(text(&entries, "/etc/keel/keel.toml"), "control_port = \"org.keel.control\"\nshutdown_grace_secs = 12\n");
}

#[test]
fn reserved_goes_to_keel_toml_and_reads_back() {
    let entries = plan_of("hostname = \"h\"\n[reserved]\nmemory = \"15%\"\n", &[]).unwrap();
    let text = text(&entries, "/etc/keel/keel.toml");
    assert_eq!(text, "shutdown_grace_secs = 5\n\n[reserved]\nmemory = \"15%\"\npids = 1024\n");
    let settings = keel_init::settings::parse(text, "keel.toml").unwrap();
    assert_eq!(settings.reserved.memory, keel_supervisor::cgroup::reserve::MemoryReserve::Percent(15));
    let bad = "hostname = \"h\"\n[reserved]\nmemory = \"lots\"\n";
    let err = HostSpec::parse(bad, Path::new("/cfg/host.toml")).unwrap_err().to_string();
    assert!(err.starts_with("/cfg/host.toml: ") && err.contains("reserved memory \"lots\""), "{err}");
}

#[test]
fn modules_ship_with_their_dependencies() {
    let entries = plan_of("hostname = \"h\"\n[kernel]\nmodules = [\"virtio-pci\", \"button\", \"button\"]\n", &[]).unwrap();
    assert_eq!(text(&entries, "/etc/keel/modules"), "virtio_pci\nbutton\n");
    assert_eq!(
        text(&entries, "/lib/modules/6.1.0/modules.dep"),
        "kernel/drivers/acpi/button.ko:\n\
kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko\n\
kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko\n\
kernel/drivers/virtio/virtio_ring.ko:\n"
    );
    assert_eq!(
        node(&entries, "/lib/modules/6.1.0/kernel/drivers/virtio/virtio_ring.ko"),
        &Node::File { mode: Some(0o644), source: Source::Host(PathBuf::from("/lib/modules/6.1.0/kernel/drivers/virtio/virtio_ring.ko")) }
    );
    assert!(!entries.iter().any(|e| e.path.as_str().ends_with("evdev.ko")));
}

#[test]
fn unknown_modules_are_named() {
    let err = plan_of("hostname = \"h\"\n[kernel]\nmodules = [\"button\", \"nosuch\", \"zz-top\"]\n", &[]).unwrap_err();
    assert!(matches!(&err, PlanError::UnknownModules { names, .. } if names.len() == 2));
    let msg = err.to_string();
    assert!(msg.contains("nosuch, zz_top") && msg.contains("6.1.0"), "{msg}");
}

#[test]
fn busybox_applets_yield_to_other_entries() {
    let toml = "hostname = \"h\"\nbusybox = \"bb\"\n[[symlinks]]\npath = \"/bin/ls\"\ntarget = \"mine\"\n";
    let entries = plan_of(toml, &["[", "ls", "sh"]).unwrap();
    assert_eq!(node(&entries, "/bin/busybox"), &Node::File { mode: Some(0o755), source: Source::Host(PathBuf::from("/cfg/bb")) });
    assert_eq!(node(&entries, "/bin/["), &Node::Symlink { target: "busybox".into() });
    assert_eq!(node(&entries, "/bin/sh"), &Node::Symlink { target: "busybox".into() });
    assert_eq!(node(&entries, "/bin/ls"), &Node::Symlink { target: "mine".into() });
}

#[test]
fn user_files_keep_their_mode_choice() {
    let toml = "hostname = \"h\"\n[[files]]\nsource = \"a\"\npath = \"/opt/a\"\n\
[[files]]\nsource = \"/b\"\npath = \"/opt/b\"\nmode = 0o700\n";
    let entries = plan_of(toml, &[]).unwrap();
    assert_eq!(node(&entries, "/opt"), &Node::Dir { mode: 0o755 });
    assert_eq!(node(&entries, "/opt/a"), &Node::File { mode: None, source: Source::Host("/cfg/a".into()) });
    assert_eq!(node(&entries, "/opt/b"), &Node::File { mode: Some(0o700), source: Source::Host("/b".into()) });
}

#[test]
fn user_entries_cannot_replace_the_layout() {
    let toml = "hostname = \"h\"\n[[files]]\nsource = \"a\"\npath = \"/etc/hostname\"\n";
    let err = plan_of(toml, &[]).unwrap_err();
    assert!(matches!(err, PlanError::Tree(TreeError::Duplicate { .. })), "{err}");
    assert!(err.to_string().starts_with("/etc/hostname: two entries"), "{err}");
    let toml = "hostname = \"h\"\n[[symlinks]]\npath = \"/usr/bin/keel/x\"\ntarget = \"y\"\n";
    let err = plan_of(toml, &[]).unwrap_err();
    assert!(matches!(err, PlanError::Tree(TreeError::ParentNotDirectory { .. })), "{err}");
}

#[test]
fn modules_list_is_deduplicated_in_order() {
    let names = [ModuleName::new("b"), ModuleName::new("a"), ModuleName::new("b")];
    assert_eq!(modules_list(&names), "b\na\n");
}
