//! Host tests of `keel run`: a busybox root filesystem run with full isolation on this
//! machine (namespaces work here; cgroup v2 does not, so no resource limits).

mod common;

use common::{check, Fixture};
use std::path::Path;
use std::process::Command;

#[test]
fn container_is_pid_1_with_its_own_hostname_and_exit_code() {
    let fx = Fixture::new("basic");
    let out = fx.run("web", "echo pid=$$; hostname; echo $(ls /proc | grep '^[0-9]'); exit 7", "");
    let text = check(&out, 7);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "pid=1");
    assert_eq!(lines[1], "web");
    // Only the shell (1) and the pipeline it forked (ls, grep) exist in the namespace.
    let pids: Vec<u32> = lines[2].split_whitespace().map(|p| p.parse().unwrap()).collect();
    assert!(pids.contains(&1) && pids.len() <= 4 && pids.iter().all(|p| *p <= 10), "the container sees host processes: {text}");
}

/// The pids whose parent is `parent`, from /proc.
fn children_of(parent: u32) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| stat[stat.rfind(')')? + 2..].split_whitespace().nth(1)?.parse::<u32>().ok())
                == Some(parent)
        })
        .collect()
}

#[test]
fn signals_are_forwarded_and_a_killed_container_exits_128_plus_signal() {
    let fx = Fixture::new("signal");
    let start = |name: &str, script: &str| {
        let toml = format!("image = \"{}\"\ncommand = [\"/bin/busybox\", \"sh\", \"-c\", {script:?}]\n", fx.dir.join("rootfs").display());
        let file = fx.dir.join(format!("{name}.toml"));
        std::fs::write(&file, toml).unwrap();
        Command::new(env!("CARGO_BIN_EXE_keel"))
            .arg("run")
            .arg(&file)
            .env("KEEL_STATE_DIR", fx.dir.join("state"))
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    // SIGTERM to `keel run` reaches the container, whose handler exits 3.
    let mut child = start("trap", "trap 'exit 3' TERM; echo ready; sleep 30 & wait");
    let pid = child.id();
    let mut reader = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut reader, &mut line).unwrap();
    assert_eq!(line, "ready\n");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(3));

    // SIGKILL to the container's process: 128 + 9.
    let mut child = start("kill", "echo ready; sleep 30");
    let mut reader = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut reader, &mut line).unwrap();
    let container = children_of(child.id());
    assert_eq!(container.len(), 1, "one container process under keel run: {container:?}");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(container[0] as i32), nix::sys::signal::Signal::SIGKILL).unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(137));
}

#[test]
fn isolation_denies_what_a_container_must_not_do() {
    let fx = Fixture::new("isolation");
    let script = "mount -t tmpfs none /mnt 2>/dev/null && echo mount=yes || echo mount=no; \
        echo 1 > /proc/sysrq-trigger 2>/dev/null && echo sysrq=yes || echo sysrq=no; \
        echo kcore=$(head -c 16 /proc/kcore 2>/dev/null | wc -c); \
        echo firmware=$(ls /sys/firmware | wc -l); \
        echo \"devices= $(ls /dev | tr '\\n' ' ') \"; \
        grep -E '^(CapEff|CapBnd|CapAmb|NoNewPrivs|Seccomp):' /proc/self/status; \
        mknod /tmp/sda b 8 0 2>/dev/null; cat /tmp/sda > /dev/null 2>&1 && echo blockdev=yes || echo blockdev=no; \
        ip link 2>/dev/null | grep -c 'eth0' ; ls /sys/class/net";
    let text = check(&fx.run("iso", script, ""), 0);
    assert!(text.contains("mount=no"), "{text}");
    assert!(text.contains("sysrq=no"), "{text}");
    assert!(text.contains("kcore=0"), "{text}");
    assert!(text.contains("firmware=0"), "{text}");
    for dev in
        ["null", "zero", "full", "random", "urandom", "tty", "console", "pts", "shm", "mqueue", "fd", "stdin", "stdout", "stderr", "ptmx"]
    {
        assert!(text.contains(&format!(" {dev} ")) || text.contains(&format!("={dev} ")), "/dev lacks {dev}: {text}");
    }
    assert!(text.contains("CapEff:\t00000000a80425fb"), "{text}");
    assert!(text.contains("CapBnd:\t00000000a80425fb"), "{text}");
    assert!(text.contains("CapAmb:\t0000000000000000"), "{text}");
    assert!(text.contains("NoNewPrivs:\t1"), "{text}");
    assert!(text.contains("Seccomp:\t2"), "{text}");
    assert!(text.contains("blockdev=no"), "{text}");
    assert!(text.trim_end().ends_with("lo"), "only lo in the network namespace: {text}");
}

#[test]
fn user_and_read_only_root_are_honoured() {
    let fx = Fixture::new("user");
    let text = check(
        &fx.run("ro", "id -u; id -g; touch /x 2>/dev/null && echo write=yes || echo write=no", "user = \"nobody\"\nread_only = true\n"),
        0,
    );
    assert_eq!(text, "65534\n65534\nwrite=no\n");
    let text = check(&fx.run("rw", "touch /x && echo write=yes", ""), 0);
    assert_eq!(text, "write=yes\n");
    assert!(!Path::new(&fx.dir.join("rootfs/x")).exists(), "the overlay must keep the image untouched");
}

#[test]
fn bad_declaration_names_file_key_and_line() {
    let fx = Fixture::new("bad");
    let out = fx.run("bad", "true", "network = \"none\"\nrestart = \"sometimes\"\n");
    assert_eq!(out.status.code(), Some(125));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.toml:4: restart:"), "{err}");
}

#[test]
fn resource_limits_without_cgroup2_are_refused_clearly() {
    if Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        return eprintln!("SKIP-NOT-APPLICABLE: this host has cgroup v2; covered in QEMU");
    }
    let fx = Fixture::new("cg");
    let out = fx.run("cg", "true", "[resources]\npids_max = 10\n");
    assert_eq!(out.status.code(), Some(125));
    assert!(String::from_utf8_lossy(&out.stderr).contains("limits need cgroup v2"));
}

#[test]
fn host_network_shares_the_hosts_links_and_keeps_a_private_sys() {
    let fx = Fixture::new("hostnet");
    let host_links = std::fs::read_dir("/sys/class/net").unwrap().count();
    let text = check(&fx.run("hostnet", "ls /sys/class/net | wc -l; grep -c ' /sys ' /proc/mounts", "network = \"host\"\n"), 0);
    let mut lines = text.lines();
    assert_eq!(lines.next().and_then(|n| n.trim().parse().ok()), Some(host_links), "{text}");
    assert_eq!(lines.next(), Some("1"), "{text}");
}

#[test]
fn init_true_runs_keels_reaper_as_pid_1() {
    let fx = Fixture::new("init");
    let text = check(&fx.run("init", "tr '\\0' ' ' < /proc/1/cmdline; echo; echo me=$$; exit 5", "init = true\n"), 5);
    assert!(text.starts_with("keel init -- /bin/busybox sh -c"), "{text}");
    assert!(text.contains("me=2\n"), "{text}");
}

#[test]
fn user_namespace_maps_root_to_an_unprivileged_host_range() {
    let fx = Fixture::new("userns");
    let extra = "[user_namespace]\nuid_map = \"0:100000:65536\"\ngid_map = \"0:100000:65536\"\n";
    // The image's files belong to host root, unmapped here (nobody): the container's
    // root writes in its own tmpfs.
    let mounts = "[[mounts]]\ntype = \"tmpfs\"\ntarget = \"/scratch\"\n";
    let script =
        "cat /proc/self/uid_map /proc/self/gid_map; id -u; echo hi > /scratch/file && ls -n /scratch/file; cat /proc/self/setgroups";
    let text = check(&fx.run("userns", script, &format!("{extra}{mounts}")), 0);
    let words: Vec<&str> = text.split_whitespace().collect();
    assert_eq!(&words[..7], ["0", "100000", "65536", "0", "100000", "65536", "0"], "{text}");
    let file = text.lines().find(|l| l.ends_with("/scratch/file")).unwrap_or_default();
    let owner: Vec<&str> = file.split_whitespace().skip(2).take(2).collect();
    assert_eq!(owner, ["0", "0"], "the container's root does not own its files: {text}");
    assert!(text.trim_end().ends_with("deny"), "{text}");
    let read_only = check(
        &fx.run("userns-ro", "id -u; touch /x 2>/dev/null && echo writable || echo read-only", &format!("read_only = true\n{extra}")),
        0,
    );
    assert_eq!(read_only, "0\nread-only\n");
}

#[test]
fn default_network_gives_eth0_an_address_a_route_and_name_files() {
    // Run in a throwaway network namespace, so the bridge and the firewall table keel
    // creates for the default keel0 network are not the host's.
    let fx = Fixture::new("keel0");
    let script = "ip -4 -o addr show eth0 | tr -s ' ' | cut -d' ' -f4; ip route | grep default; grep -c nameserver /etc/resolv.conf || true; grep keel0 /etc/hosts";
    let toml = format!("image = \"{}\"\ncommand = [\"/bin/busybox\", \"sh\", \"-c\", {script:?}]\n", fx.dir.join("rootfs").display());
    let file = fx.dir.join("keel0.toml");
    std::fs::write(&file, toml).unwrap();
    let output = Command::new("unshare")
        .args(["--net", "--"])
        .arg(env!("CARGO_BIN_EXE_keel"))
        .arg("run")
        .arg(&file)
        .env("KEEL_STATE_DIR", fx.dir.join("state"))
        .output()
        .expect("unshare keel run");
    let text = check(&output, 0);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "10.88.0.2/16", "{text}");
    assert!(lines[1].starts_with("default via 10.88.0.1 dev eth0"), "{text}");
    assert!(text.contains("keel0"), "/etc/hosts lacks the container: {text}");
}
