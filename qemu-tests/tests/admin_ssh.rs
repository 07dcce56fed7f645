//! The admin container end to end (issue 14 point 4): a host like examples/demo, with
//! the admin image and the demo's admin.toml declaration, a first-boot config giving
//! user `ops` (group wheel) a key pair made by this test, and a data disk for /var.
//! Through QEMU's hostfwd, `ssh -p PORT -i KEY ops@127.0.0.1` logs in with that key and
//! `sudo nsenter -t 1 -a` reaches the host's mount and PID namespaces; another key and
//! password authentication are refused; the host key fingerprints the console shows
//! are those the client sees; after a reboot on the same disk the host keys are the
//! same (and not made again).
//!
//! In the same boot, `priv` (privileged, host_pid) and `plain` (the same declaration
//! without them) show what privileged changes: the host's PID namespace, every
//! capability, no seccomp and no no_new_privs, the host's disk device — and plain has
//! none of it (the negative control).

use keel_build::disk::VarDisk;
use keel_build::qemu::HostFwd;
use keel_qemu_tests::free_port;
use keel_qemu_tests::output_text as text;
use keel_qemu_tests::{build_image, busybox_host, declare_container, target_dir, BootOptions, Guest};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const MODULES: &[&str] = &["virtio_pci", "virtio_console", "virtio_net", "virtio_blk", "qemu_fw_cfg", "button", "evdev"];

/// A new ed25519 key pair at `path` (and `path`.pub); returns the public key line.
fn key_pair(path: &Path, comment: &str) -> String {
    let _ = std::fs::remove_file(path);
    let _ = std::fs::remove_file(path.with_extension("pub"));
    let out = Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"]).arg(path).output().unwrap();
    assert!(out.status.success(), "ssh-keygen: {}", text(&out));
    std::fs::read_to_string(format!("{}.pub", path.display())).unwrap().trim().to_string()
}

/// The host of the test: the busybox test host, the admin image, the demo's admin.toml,
/// and the two containers that differ only in `privileged`/`host_pid`.
fn host_toml(dir: &Path) -> String {
    let mut host = busybox_host("keel-ssh", MODULES, 2);
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/demo/containers/admin.toml");
    host.push_str(&format!(
        "\n[[images]]\nname = \"admin\"\nbusybox = \"/bin/busybox\"\nadmin = true\n\n[[files]]\nsource = \"{}\"\npath = \"/etc/keel/containers/admin.toml\"\n",
        demo.display()
    ));
    let same = "image = \"@IMAGE@\"\ncommand = [\"/bin/sleep\", \"100000\"]\nstop_timeout = \"1s\"\nnetwork = \"none\"\n";
    declare_container(dir, &mut host, "priv", &format!("{same}privileged = true\nhost_pid = true\n"));
    declare_container(dir, &mut host, "plain", same);
    host
}

/// `ssh` to the guest as `user` with `key`, running `command`.
struct Ssh {
    port: u16,
    known_hosts: PathBuf,
}

impl Ssh {
    fn run(&self, user: &str, key: &Path, extra: &[&str], command: &str) -> Output {
        let mut ssh = Command::new("ssh");
        ssh.args(["-p", &self.port.to_string(), "-i"]).arg(key);
        ssh.arg("-o").arg(format!("UserKnownHostsFile={}", self.known_hosts.display()));
        ssh.args(["-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "ConnectTimeout=60", "-o", "LogLevel=ERROR"]);
        ssh.args(extra).arg(format!("{user}@127.0.0.1")).arg(command);
        ssh.output().unwrap()
    }

    /// Retry until sshd answers with a login (it starts after the host is ready).
    fn first_login(&self, guest: &Guest, key: &Path) -> Output {
        let deadline = Instant::now() + Duration::from_secs(240);
        loop {
            let out = self.run("ops", key, &["-o", "StrictHostKeyChecking=accept-new"], "id -un");
            if out.status.success() || Instant::now() > deadline {
                if !out.status.success() {
                    guest.fail(&format!("no ssh login within 240 s: {}", text(&out)));
                }
                return out;
            }
            std::thread::sleep(Duration::from_secs(2));
        }
    }

    /// The host key fingerprints the client sees (ssh-keyscan | ssh-keygen -l), as
    /// "SHA256:… (type)" sorted.
    fn fingerprints(&self) -> Vec<String> {
        let scan = Command::new("ssh-keyscan")
            .args(["-T", "30", "-t", "ed25519,ecdsa", "-p", &self.port.to_string(), "127.0.0.1"])
            .output()
            .unwrap();
        assert!(scan.status.success(), "ssh-keyscan: {}", text(&scan));
        let keys = target_dir().join("qemu-tests/admin-ssh/scanned");
        std::fs::write(&keys, &scan.stdout).unwrap();
        let listed = Command::new("ssh-keygen").arg("-l").arg("-f").arg(&keys).output().unwrap();
        assert!(listed.status.success(), "ssh-keygen -l: {}", text(&listed));
        let mut prints: Vec<String> = String::from_utf8_lossy(&listed.stdout)
            .lines()
            .filter_map(|l| {
                let fields: Vec<&str> = l.split_whitespace().collect();
                let kind = fields.last()?.trim_matches(['(', ')']).to_lowercase();
                Some(format!("{} ({kind})", fields.get(1)?))
            })
            .collect();
        prints.sort();
        prints
    }
}

/// The fingerprints the admin container printed on the console, "SHA256:… (type)" sorted.
fn console_fingerprints(guest: &mut Guest) -> Vec<String> {
    guest.wait_for_count("keel admin: ssh host key SHA256:", 2, Duration::from_secs(240));
    let mut prints: Vec<String> =
        guest.console().lines().filter_map(|l| l.split("keel admin: ssh host key ").nth(1)).map(|s| s.trim().to_string()).collect();
    prints.sort();
    prints
}

fn power_off(guest: &mut Guest) {
    guest.qmp("system_powerdown");
    if !guest.wait_exit(Duration::from_secs(90)).is_some_and(|s| s.success()) {
        guest.fail("QEMU did not exit 0 within 90 s of system_powerdown");
    }
}

/// `grep` of one `/proc/self/status` field in a container (or on the host).
fn status_field(guest: &Guest, container: Option<&str>, field: &str) -> String {
    let out = guest.exec_in(container, &["sh", "-c", &format!("grep '^{field}:' /proc/self/status")]);
    assert_eq!(out.exit_code, 0, "{container:?}: {out:?}");
    out.stdout.split(':').nth(1).unwrap_or_default().trim().to_string()
}

fn check_privileged_against_plain(guest: &Guest) {
    guest.wait_container("priv", Duration::from_secs(90), |c| c.state == "running");
    guest.wait_container("plain", Duration::from_secs(90), |c| c.state == "running");
    assert_eq!(guest.container("priv").privileged.as_deref(), Some("privileged,host-pid"));
    assert_eq!(guest.container("plain").privileged, None);
    let host_pid_ns = guest.exec(&["readlink", "/proc/1/ns/pid"]).stdout;
    let pid_ns = |c| guest.exec_in(Some(c), &["readlink", "/proc/self/ns/pid"]).stdout;
    assert_eq!(pid_ns("priv"), host_pid_ns, "priv is in the host's PID namespace");
    assert_ne!(pid_ns("plain"), host_pid_ns, "control: plain has its own");
    let last_cap: u32 = guest.exec(&["cat", "/proc/sys/kernel/cap_last_cap"]).stdout.trim().parse().unwrap();
    let all = format!("{:016x}", (1u64 << (last_cap + 1)) - 1);
    assert_eq!(status_field(guest, Some("priv"), "CapEff"), all);
    assert_eq!(status_field(guest, Some("priv"), "CapBnd"), all);
    assert_eq!(status_field(guest, Some("plain"), "CapEff"), "00000000a80425fb", "control: the 14 default capabilities");
    assert_eq!(status_field(guest, Some("priv"), "Seccomp"), "0");
    assert_eq!(status_field(guest, Some("plain"), "Seccomp"), "2");
    assert_eq!(status_field(guest, Some("priv"), "NoNewPrivs"), "0");
    assert_eq!(status_field(guest, Some("plain"), "NoNewPrivs"), "1");
    // The host's disk: readable through the host's /dev and the allow-all device filter.
    let read = |c| guest.exec_in(Some(c), &["sh", "-c", "head -c 4096 /dev/vda | wc -c"]);
    let out = read("priv");
    assert_eq!((out.exit_code, out.stdout.trim()), (0, "4096"), "{out:?}");
    let out = read("plain");
    assert!(out.exit_code != 0 || out.stdout.trim() != "4096", "control: plain cannot read the disk: {out:?}");
    // A privileged container is still no part of PID 1's session: kill(0) stays in its own.
    let out = guest.exec_in(Some("priv"), &["sh", "-c", "kill -TERM 0; sleep 5"]);
    assert_ne!(out.exit_code, 0, "the shell got its own SIGTERM: {out:?}");
    std::thread::sleep(Duration::from_secs(2));
    guest.wait_container("priv", Duration::from_secs(30), |c| c.state == "running");
    assert!(guest.exec(&["true"]).exit_code == 0, "PID 1 still answers");
}

#[test]
fn ssh_into_the_admin_container_reaches_the_host_and_keeps_its_host_keys() {
    let name = "admin-ssh";
    let dir = target_dir().join("qemu-tests").join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let key = dir.join("id_ops");
    let other = dir.join("id_other");
    let public = key_pair(&key, "ops@test");
    key_pair(&other, "other@test");
    let config = dir.join("config.ign");
    let ignition = serde_json::json!({
        "ignition": { "version": "3.4.0" },
        "passwd": {
            "users": [ { "name": "ops", "groups": ["wheel"], "sshAuthorizedKeys": [public] } ],
            "groups": [ { "name": "wheel" } ]
        }
    });
    std::fs::write(&config, ignition.to_string()).unwrap();
    let disk = dir.join("var.img");
    let _ = std::fs::remove_file(&disk);
    VarDisk { size: 128 << 20, source_date_epoch: Some(0), ..VarDisk::default() }.create(&disk).unwrap();
    let image = build_image(name, &host_toml(&dir), env!("CARGO_BIN_EXE_keel-probe").as_ref());

    let port = free_port();
    let known_hosts = dir.join("known_hosts");
    let _ = std::fs::remove_file(&known_hosts);
    let ssh = Ssh { port, known_hosts };
    let hostfwd = vec![format!("tcp:{port}-:22").parse::<HostFwd>().unwrap()];
    let options = BootOptions { hostfwd: hostfwd.clone(), disk: Some(disk.clone()), config: Some(config), ..Default::default() };
    let mut guest = Guest::boot(&image, "ssh-boot1", options);
    guest.wait_ready();
    assert_eq!(guest.container("admin").privileged.as_deref(), Some("privileged,host-pid"));

    // 1. ops logs in with the key of the first-boot config.
    let out = ssh.first_login(&guest, &key);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ops", "{}", text(&out));
    // 2. ...and reaches the host's namespaces through sudo and nsenter; without nsenter
    // the session is in the container's mount namespace (the control).
    let host_ns = guest.exec(&["sh", "-c", "readlink /proc/1/ns/mnt; readlink /proc/1/ns/pid"]).stdout;
    let strict = ["-o", "StrictHostKeyChecking=yes"];
    let out = ssh.run("ops", &key, &strict, "sudo nsenter -t 1 -a -- sh -c 'readlink /proc/self/ns/mnt; readlink /proc/self/ns/pid'");
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout), host_ns, "sudo nsenter -t 1 -a reaches the host's namespaces");
    let out = ssh.run("ops", &key, &strict, "readlink /proc/self/ns/mnt");
    assert!(out.status.success() && !host_ns.starts_with(String::from_utf8_lossy(&out.stdout).trim()), "{}", text(&out));
    let out = ssh.run("ops", &key, &strict, "sudo nsenter -t 1 -a -- cat /etc/keel/containers/admin.toml");
    assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).contains("privileged = true"), "{}", text(&out));
    // 3. A key not in the config is refused (the right key above is the control); so are
    // passwords: the server offers public keys only.
    let out = ssh.run("ops", &other, &strict, "id");
    assert!(!out.status.success() && text(&out).contains("Permission denied (publickey)"), "{}", text(&out));
    let password = [
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        "PubkeyAuthentication=no",
        "-o",
        "PreferredAuthentications=password,keyboard-interactive",
    ];
    let out = ssh.run("ops", &key, &password, "id");
    assert!(!out.status.success() && text(&out).contains("Permission denied (publickey)"), "{}", text(&out));
    // 4. The fingerprints on the console are those the client sees.
    let shown = console_fingerprints(&mut guest);
    assert_eq!(shown.len(), 2, "{shown:?}");
    assert_eq!(ssh.fingerprints(), shown);
    // 5. privileged against the same declaration without it.
    check_privileged_against_plain(&guest);
    power_off(&mut guest);

    // 6. Reboot on the same disk: same host keys (not made again), login still works
    // with strict host key checking against the first boot's known_hosts.
    let options = BootOptions { hostfwd, disk: Some(disk), ..Default::default() };
    let mut guest = Guest::boot(&image, "ssh-boot2", options);
    guest.wait_ready();
    assert_eq!(console_fingerprints(&mut guest), shown, "the host keys persist on /var");
    assert!(!guest.console().contains("keel admin: made the ssh host key"), "the keys were made again");
    let deadline = Instant::now() + Duration::from_secs(120);
    let out = loop {
        let out = ssh.run("ops", &key, &strict, "id -un");
        if out.status.success() || Instant::now() > deadline {
            break out;
        }
        std::thread::sleep(Duration::from_secs(2));
    };
    assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "ops", "{}", text(&out));
    power_off(&mut guest);
}
