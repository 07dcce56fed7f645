//! The escape suite (issue 11): a keel host with hostile containers, and from inside
//! them the escapes and attacks on the host an attacker would try. Every attack must
//! fail while the host and the other containers stay up, and every attack has a
//! negative control that shows its check does see the attack work: the same attack run
//! as a privileged host process (`exec` outside any container), or the check pointed at
//! a door opened on purpose.
//!
//! Two boots. The first tries the kernel-interface and network attacks (`keel-probe
//! attack all`, one line per attack, against host services the test starts: one on
//! 127.0.0.1, one on every address but published to no container, one on
//! 169.254.169.254), the container boundary (workdir `/proc/self/fd/N` by declaration,
//! by a symlink left in the upper directory and through `keelctl exec`; a dangling
//! `/etc/hosts` symlink; the reaper binary), a fork bomb and a memory hog, and signals
//! to the host's PID 1 (last, since on a vulnerable host they power it off). The second
//! boot tries hostile image layers (scripts/make-hostile-images.py) and what stops PID 1
//! itself: a FIFO at `/etc/passwd`.
//!
//! The suite does not stop at the first attack that works: it records every result,
//! prints one `escape NAME: …` line per attack and `escape suite: N tried, M blocked`,
//! then asserts that all were blocked and that every negative control succeeded.

use keel_qemu_tests::{build_image, busybox_host, declare_container, target_dir, BootOptions, Guest, TestImage};
use keel_supervisor::control::{Command, ExecResult, Status};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

const IMAGE: &str = keel_qemu_tests::BUSYBOX_IMAGE;
/// A host service bound to 127.0.0.1 only (the CVE-2020-8558 target).
const LOCAL_PORT: u16 = 7777;
/// A host service on every address, published to no container.
const HOST_PORT: u16 = 7778;
/// A host process the signal attacks must not reach.
const SENTINEL_PORT: u16 = 7779;
/// The fds PID 1 may have open when it starts a container.
const FDS: std::ops::RangeInclusive<u32> = 3..=20;

/// One attack's result and its negative control's.
#[derive(Debug, Clone)]
struct Outcome {
    blocked: bool,
    detail: String,
    control_worked: bool,
    control: String,
}

/// Every attack tried, by name, in the order tried.
#[derive(Default)]
struct Suite {
    outcomes: Vec<(String, Outcome)>,
}

impl Suite {
    fn record(&mut self, name: &str, blocked: bool, detail: impl Into<String>, control_worked: bool, control: impl Into<String>) {
        let outcome = Outcome { blocked, detail: detail.into(), control_worked, control: control.into() };
        eprintln!(
            "escape {name}: {} ({}) | control: {} ({})",
            if outcome.blocked { "blocked" } else { "SUCCEEDED" },
            outcome.detail,
            if outcome.control_worked { "succeeded" } else { "FAILED" },
            outcome.control
        );
        self.outcomes.push((name.to_string(), outcome));
    }

    /// The summary and every failure: an attack not blocked, a control that did not work.
    fn verdict(&self) -> (String, Vec<String>) {
        let tried = self.outcomes.len();
        let blocked = self.outcomes.iter().filter(|(_, o)| o.blocked).count();
        let mut failures = Vec::new();
        for (name, o) in &self.outcomes {
            if !o.blocked {
                failures.push(format!("attack {name} SUCCEEDED: {}", o.detail));
            }
            if !o.control_worked {
                failures.push(format!("negative control of {name} did not succeed: {}", o.control));
            }
        }
        (format!("escape suite: {tried} tried, {blocked} blocked"), failures)
    }
}

/// `keel-probe attack …` lines: name → (blocked, whole line).
fn attack_lines(stdout: &str) -> BTreeMap<String, (bool, String)> {
    stdout
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("attack ")?;
            let (name, outcome) = rest.split_once(": ")?;
            let blocked = outcome.starts_with("blocked (");
            let worked = outcome.starts_with("SUCCEEDED (");
            (blocked || worked).then(|| (name.to_string(), (blocked, line.to_string())))
        })
        .collect()
}

/// exec on the host (`None`) or in a container, without failing the test when keel
/// does not answer (a vulnerable host may be down or unable to fork).
fn try_exec(guest: &Guest, container: Option<&str>, argv: &[&str], timeout: Duration) -> Result<ExecResult, String> {
    let command = Command::Exec {
        argv: argv.iter().map(|s| s.to_string()).collect(),
        timeout_secs: Some(timeout.as_secs().max(1)),
        container: container.map(str::to_string),
    };
    let value = guest.call(command, timeout + Duration::from_secs(15)).map_err(|e| e.to_string())?;
    serde_json::from_value(value).map_err(|e| format!("bad exec result: {e}"))
}

/// A host command that must work (setup and controls).
fn host(guest: &Guest, script: &str) -> ExecResult {
    guest.exec(&["sh", "-c", script])
}

/// Whether keel answers `status` as ready within `timeout`.
fn host_answers(guest: &Guest, timeout: Duration) -> Result<(), String> {
    let value = guest.call(Command::Status, timeout).map_err(|e| format!("status: {e}"))?;
    let status: Status = serde_json::from_value(value).map_err(|e| format!("status: {e}"))?;
    if status.state == "ready" {
        Ok(())
    } else {
        Err(format!("host state {}", status.state))
    }
}

/// The host and the bystander are up: keel answers, the host can fork, the bystander runs a command.
fn host_and_bystander_up(guest: &Guest) -> Result<(), String> {
    host_answers(guest, Duration::from_secs(20))?;
    let ok = try_exec(guest, None, &["true"], Duration::from_secs(20))?;
    if ok.exit_code != 0 {
        return Err(format!("host exec true: {ok:?}"));
    }
    let by = try_exec(guest, Some("bystander"), &["true"], Duration::from_secs(20))?;
    if by.exit_code != 0 {
        return Err(format!("bystander exec true: {by:?}"));
    }
    Ok(())
}

/// The first boot's host: the hostile containers, a bystander, the probe on the host and
/// in the busybox image, and `/wd` in the image (the workdir the symlink attacks replace).
fn first_image() -> TestImage {
    let name = "escape";
    let dir = target_dir().join("qemu-tests").join(name);
    std::fs::create_dir_all(&dir).expect("create image dir");
    std::fs::write(dir.join("keep"), "").expect("write keep");
    let mut host =
        busybox_host("keel-escape", &["virtio_pci", "virtio_console", "virtio_net", "virtio_blk", "button", "evdev", "overlay"], 2);
    let _ = write!(host, "\n[[files]]\nsource = \"{}\"\npath = \"{IMAGE}/wd/keep\"\n", dir.join("keep").display());
    let sleeper = "image = \"@IMAGE@\"\ncommand = [\"/bin/sleep\", \"3600\"]\nstop_timeout = \"1s\"\n";
    declare_container(&dir, &mut host, "hostile", sleeper);
    declare_container(&dir, &mut host, "bystander", &format!("{sleeper}network = \"none\"\n"));
    declare_container(&dir, &mut host, "runaway", &format!("{sleeper}network = \"none\"\n"));
    declare_container(&dir, &mut host, "reaper", &format!("{sleeper}init = true\nnetwork = \"none\"\n"));
    declare_container(&dir, &mut host, "hostsln", sleeper);
    declare_container(&dir, &mut host, "execwd", &format!("{sleeper}workdir = \"/wd\"\nnetwork = \"none\"\n"));
    declare_container(
        &dir,
        &mut host,
        "symwd",
        "image = \"@IMAGE@\"\ncommand = [\"keel-probe\", \"attack\", \"cwd-escape\"]\nworkdir = \"/wd\"\nrestart = \"no\"\nnetwork = \"none\"\n",
    );
    for n in FDS {
        declare_container(
            &dir,
            &mut host,
            &format!("wd{n}"),
            &format!("image = \"@IMAGE@\"\ncommand = [\"keel-probe\", \"attack\", \"cwd-escape\"]\nworkdir = \"/proc/self/fd/{n}\"\nrestart = \"no\"\nnetwork = \"none\"\n"),
        );
    }
    declare_container(
        &dir,
        &mut host,
        "killer",
        "image = \"@IMAGE@\"\ncommand = [\"/bin/sh\", \"-c\", \"mkfifo /tmp/go; read x < /tmp/go; kill -s TERM 0; kill -s INT 0; exec sleep 3600\"]\nrestart = \"no\"\nstop_timeout = \"1s\"\nnetwork = \"none\"\n",
    );
    build_image(name, &host, env!("CARGO_BIN_EXE_keel-probe").as_ref())
}

/// A small disk for the block-device attacks (`/dev/vda` in the guest, read-only).
fn marker_disk() -> std::path::PathBuf {
    let path = target_dir().join("qemu-tests").join("escape").join("marker.img");
    let mut data = vec![0u8; 1 << 20];
    data[..24].copy_from_slice(b"keel-escape marker disk\n");
    std::fs::write(&path, data).expect("write marker disk");
    path
}

/// Wait until container `name` has finished a run, failed to start or been refused.
fn wait_settled(guest: &Guest, name: &str, timeout: Duration) -> keel_supervisor::manager::ContainerInfo {
    let deadline = Instant::now() + timeout;
    loop {
        let info = guest.container(name);
        if matches!(info.state.as_str(), "exited" | "failed" | "stopped" | "invalid") || Instant::now() > deadline {
            return info;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Print how long the suite has run at the end of a phase.
fn phase(started: &Instant, what: &str) {
    eprintln!("escape suite: {what} done at {:.0} s", started.elapsed().as_secs_f64());
}

/// The attack lines a container printed to its log.
fn logged_attack_lines(guest: &Guest, name: &str) -> Vec<String> {
    guest.logs(name).into_iter().filter(|l| l.contains("attack ")).collect()
}

#[test]
fn hostile_containers_cannot_escape_or_take_the_host_down() {
    let started = Instant::now();
    let mut suite = Suite::default();
    let image = first_image();
    let disk = marker_disk();
    let mut guest = Guest::boot(&image, "escape", BootOptions { extra_disks: vec![disk], ..Default::default() });
    guest.wait_ready();
    for name in ["hostile", "bystander", "runaway", "reaper", "hostsln", "execwd"] {
        guest.wait_container(name, Duration::from_secs(90), |c| c.state == "running");
    }

    // Host services the network attacks aim at, and what the probe needs to know.
    let gateway = "10.88.0.1";
    let setup = host(
        &guest,
        &format!(
            "keel-probe serve 127.0.0.1:{LOCAL_PORT} 600 && keel-probe serve 0.0.0.0:{HOST_PORT} 600 && \
             keel-probe serve 127.0.0.1:{SENTINEL_PORT} 600 && ip addr add 169.254.169.254/32 dev lo && \
             keel-probe serve 169.254.169.254:80 600 && readlink /proc/1/ns/pid"
        ),
    );
    assert_eq!(setup.exit_code, 0, "host setup: {setup:?}");
    let host_pidns = setup.stdout.lines().last().unwrap_or_default().to_string();
    let sentinel_pid = setup
        .stdout
        .lines()
        .find(|l| l.contains(&format!(":{SENTINEL_PORT} pid ")))
        .and_then(|l| l.rsplit(' ').next())
        .unwrap_or_default()
        .to_string();
    assert!(host_pidns.starts_with("pid:[") && !sentinel_pid.is_empty(), "{setup:?}");

    // 1. The kernel-interface attacks, from a default container; the control runs the
    // very same probe as a host process (devices made in /dev, crafted frames on lo).
    let pidns = format!("pidns={host_pidns}");
    let localnet = format!("localnet={LOCAL_PORT}");
    let inside = try_exec(
        &guest,
        Some("hostile"),
        &["keel-probe", "attack", "all", &pidns, &localnet, &format!("hostport={HOST_PORT}")],
        Duration::from_secs(120),
    )
    .unwrap_or_else(|e| guest.fail(&format!("attack all in a container: {e}")));
    let hostaddr = format!("hostaddr={gateway}:{HOST_PORT}");
    // The lo variant of raw-localnet needs lo to accept its own source address and to
    // route 127/8 arriving from a packet socket (what keel used to turn on for all
    // interfaces): opened for the control only, closed again after it.
    let control = host(
        &guest,
        &format!(
            "echo 1 > /proc/sys/net/ipv4/conf/lo/accept_local; echo 1 > /proc/sys/net/ipv4/conf/lo/route_localnet; \
             keel-probe attack all scratch=/dev iface=lo {pidns} {localnet} {hostaddr}; \
             echo 0 > /proc/sys/net/ipv4/conf/lo/accept_local; echo 0 > /proc/sys/net/ipv4/conf/lo/route_localnet"
        ),
    );
    let inside_lines = attack_lines(&inside.stdout);
    let mut control_lines = attack_lines(&control.stdout);
    assert!(inside_lines.len() >= 30, "too few attack lines from the container: {inside:?}");
    // fd-leak's control: the probe in the container's mount and PID namespaces holding a
    // host directory open (fd 7), as a container holding a leaked host fd would.
    let hostile_pid = guest.container("hostile").pid.unwrap_or_default().to_string();
    let leak = host(&guest, &format!("exec 7</etc/keel; nsenter -t {hostile_pid} -m -p keel-probe attack fd-leak"));
    control_lines.extend(attack_lines(&leak.stdout));
    // Every attack either side printed: one missing from the container's output counts
    // as not blocked, one missing from the control's as a control that did not work.
    let names: std::collections::BTreeSet<&String> = inside_lines.keys().chain(control_lines.keys()).collect();
    for name in names {
        let (blocked, line) = match inside_lines.get(name) {
            Some((blocked, line)) => (*blocked, line.clone()),
            None => (false, format!("no line from the container: {inside:?}")),
        };
        let (control_worked, control_line) = match control_lines.get(name) {
            Some((control_blocked, line)) => (!control_blocked, line.clone()),
            None => (false, format!("no control line: {control:?} {leak:?}")),
        };
        suite.record(name, blocked, line, control_worked, control_line);
    }

    phase(&started, "attack all");
    // 2. workdir = "/proc/self/fd/N" in a declaration, for every N PID 1 may hold open.
    let cwd_control = host(&guest, "cd /var/lib/keel && keel-probe attack cwd-escape");
    let cwd_control_worked = cwd_control.stdout.contains("attack cwd-escape: SUCCEEDED");
    let mut escaped = Vec::new();
    let mut outcomes = Vec::new();
    for n in FDS {
        let name = format!("wd{n}");
        let info = wait_settled(&guest, &name, Duration::from_secs(60));
        let lines = logged_attack_lines(&guest, &name);
        if lines.iter().any(|l| l.contains("SUCCEEDED")) {
            escaped.push(format!("fd {n}: {}", lines.join(" ")));
        }
        outcomes.push(format!("{n}:{}", if lines.is_empty() { info.state.clone() } else { "blocked".into() }));
    }
    suite.record(
        "workdir-proc-self-fd",
        escaped.is_empty(),
        if escaped.is_empty() { outcomes.join(" ") } else { escaped.join("; ") },
        cwd_control_worked,
        cwd_control.stdout.trim(),
    );

    phase(&started, "workdir declarations");
    // The symlink and exec variants run while PID 1 answers a request, with more fds
    // open than at boot: every fd it has now, and a few more.
    let pid1_fds = host(&guest, "ls -l /proc/1/fd").stdout;
    eprintln!("PID 1's fds now:\n{pid1_fds}");
    let highest = pid1_fds.lines().filter_map(|l| l.split(" -> ").next()?.rsplit(' ').next()?.parse::<u32>().ok()).max().unwrap_or(0);
    let more_fds = 3..=(*FDS.end()).max(highest + 4);

    // 3. The same through a symlink left in the container's upper directory (placed
    // while it is stopped, as a previous run of it can leave it), then a start.
    let upper = host(&guest, "ls -d /var/lib/keel/containers/symwd/upper").stdout.trim().to_string();
    assert!(!upper.is_empty(), "no upper directory for symwd");
    wait_settled(&guest, "symwd", Duration::from_secs(60));
    let mut escaped = Vec::new();
    for n in more_fds.clone() {
        let before = logged_attack_lines(&guest, "symwd").len();
        let planted = host(&guest, &format!("rm -rf {upper}/wd && ln -s /proc/self/fd/{n} {upper}/wd"));
        assert_eq!(planted.exit_code, 0, "{planted:?}");
        let _ = guest.call(Command::Start { name: "symwd".into() }, Duration::from_secs(30));
        std::thread::sleep(Duration::from_millis(300));
        wait_settled(&guest, "symwd", Duration::from_secs(30));
        let lines = logged_attack_lines(&guest, "symwd");
        escaped.extend(lines.iter().skip(before).filter(|l| l.contains("SUCCEEDED")).map(|l| format!("fd {n}: {l}")));
    }
    suite.record(
        "workdir-symlink-in-upper",
        escaped.is_empty(),
        if escaped.is_empty() { "no start reached a host directory".to_string() } else { escaped.join("; ") },
        cwd_control_worked,
        cwd_control.stdout.trim(),
    );

    // 4. And through `keelctl exec`, whose helper is a fork of PID 1: the container
    // points its workdir at /proc/self/fd/N (done from the host through the container's
    // own root, /proc/PID/root, which is the container's tree).
    phase(&started, "workdir symlink in upper");
    let execwd_pid = guest.container("execwd").pid.unwrap_or_default();
    let mut escaped = Vec::new();
    for n in more_fds.clone() {
        let planted = host(&guest, &format!("rm -rf /proc/{execwd_pid}/root/wd && ln -s /proc/self/fd/{n} /proc/{execwd_pid}/root/wd"));
        assert_eq!(planted.exit_code, 0, "{planted:?}");
        match try_exec(&guest, Some("execwd"), &["keel-probe", "attack", "cwd-escape"], Duration::from_secs(20)) {
            Ok(out) if out.stdout.contains("SUCCEEDED") => escaped.push(format!("fd {n}: {}", out.stdout.trim())),
            _ => {}
        }
    }
    suite.record(
        "workdir-keelctl-exec",
        escaped.is_empty(),
        if escaped.is_empty() { "no exec reached a host directory".to_string() } else { escaped.join("; ") },
        cwd_control_worked,
        cwd_control.stdout.trim(),
    );

    phase(&started, "workdir exec");
    // 5. A dangling absolute symlink at /etc/hosts in the container's upper directory:
    // the next start must not create the host path it names.
    let hosts_upper = "/var/lib/keel/containers/hostsln/upper";
    guest.call(Command::Stop { name: "hostsln".into() }, Duration::from_secs(30)).expect("stop hostsln");
    guest.wait_container("hostsln", Duration::from_secs(30), |c| c.state == "stopped");
    let planted = host(
        &guest,
        &format!("mkdir -p {hosts_upper}/etc && rm -f {hosts_upper}/etc/hosts && ln -s /escape-hosts {hosts_upper}/etc/hosts"),
    );
    assert_eq!(planted.exit_code, 0, "{planted:?}");
    let _ = guest.call(Command::Start { name: "hostsln".into() }, Duration::from_secs(30));
    std::thread::sleep(Duration::from_secs(2));
    let created = host(&guest, "ls -l /escape-hosts 2>&1");
    // Control: a host-root process that opens the planted kind of link creates the file.
    let control = host(
        &guest,
        &format!("ln -s /escape-hosts-control {hosts_upper}/etc/control && : > {hosts_upper}/etc/control && ls -l /escape-hosts-control"),
    );
    suite.record(
        "etc-hosts-symlink",
        created.exit_code != 0,
        format!("after the start: {} (container {})", created.stdout.trim(), guest.container("hostsln").state),
        control.exit_code == 0,
        control.stdout.trim(),
    );

    // 6. The reaper (init = true): /proc/1/exe must not lead to the host's keel binary.
    let stat = |guest: &Guest| host(guest, "stat -L -c '%Z %a %u:%g' /usr/bin/keel").stdout;
    let before = stat(&guest);
    let attack = try_exec(&guest, Some("reaper"), &["keel-probe", "attack", "reaper-exe"], Duration::from_secs(30))
        .map(|o| o.stdout)
        .unwrap_or_else(|e| e);
    std::thread::sleep(Duration::from_millis(1100));
    let after = stat(&guest);
    let control_before = stat(&guest);
    let control = host(&guest, "keel-probe attack reaper-exe").stdout;
    let control_after = stat(&guest);
    suite.record(
        "reaper-exe",
        attack.contains("attack reaper-exe: blocked") && before == after,
        format!("{} host file {} -> {}", attack.trim(), before.trim(), after.trim()),
        control.contains("SUCCEEDED") && control_before != control_after,
        format!("{} host file {} -> {}", control.trim(), control_before.trim(), control_after.trim()),
    );

    // 7. A fork bomb in a container with no declared limit: the host keeps forking, keel
    // answers and the bystander runs commands while the bomb holds.
    phase(&started, "before the fork bomb");
    let bomb_start = Instant::now();
    let bomb = try_exec(&guest, Some("runaway"), &["keel-probe", "attack", "fork-bomb", "15"], Duration::from_secs(60));
    let during = host_and_bystander_up(&guest);
    let bomb_text = match &bomb {
        Ok(out) => out.stdout.trim().to_string(),
        Err(e) => e.clone(),
    };
    std::thread::sleep(Duration::from_secs(16).saturating_sub(bomb_start.elapsed()));
    // Control: the same bomb as a host process, with threads-max set 100 above the
    // threads running before it, then (once the bomb holds its tasks) 40 above, so the
    // slots its own exec frees do not count: the same check then sees the host unable
    // to fork until the bomb lets go.
    let saved = host(&guest, "cat /proc/sys/kernel/threads-max").stdout.trim().to_string();
    let control_start = Instant::now();
    let control = host(
        &guest,
        "n=$(ls -d /proc/[0-9]*/task/* | wc -l); echo $((n + 100)) > /proc/sys/kernel/threads-max && keel-probe attack fork-bomb 8; \
         echo $((n + 40)) > /proc/sys/kernel/threads-max",
    );
    let control_during = host_and_bystander_up(&guest);
    std::thread::sleep(Duration::from_secs(9).saturating_sub(control_start.elapsed()));
    let mut restore = Err(String::from("not tried"));
    for _ in 0..10 {
        restore = try_exec(&guest, None, &["sh", "-c", &format!("echo {saved} > /proc/sys/kernel/threads-max")], Duration::from_secs(20));
        if restore.as_ref().is_ok_and(|r| r.exit_code == 0) {
            break;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    suite.record(
        "fork-bomb",
        during.is_ok(),
        format!("{bomb_text}; host during the bomb: {during:?}"),
        control_during.is_err(),
        format!(
            "{}; host during the bomb: {control_during:?}; threads-max restored: {:?}",
            control.stdout.trim(),
            restore.map(|r| r.exit_code)
        ),
    );
    phase(&started, "fork bomb");

    // 8. A memory hog in a container with no declared limit: it must be OOM-killed inside
    // the containers' cgroup subtree (a memory.events `oom` there), not by a global OOM.
    // The cgroup path is read before the hog: the OOM kill takes the whole container
    // (memory.oom.group), its PID 1 with it.
    let runaway_pid = guest.container("runaway").pid.unwrap_or_default();
    let runaway_cgroup = host(&guest, &format!("sed -n 's/^0:://p' /proc/{runaway_pid}/cgroup")).stdout.trim().to_string();
    let ooms = |guest: &Guest| -> (u64, u64) {
        let script = format!(
            "c={runaway_cgroup:?}; n=0; while [ -n \"$c\" ] && [ \"$c\" != / ]; do \
             v=$(sed -n 's/^oom //p' /sys/fs/cgroup$c/memory.events 2>/dev/null); n=$((n + ${{v:-0}})); c=${{c%/*}}; done; \
             echo $n $(sed -n 's/^oom_kill //p' /proc/vmstat)"
        );
        let out = host(guest, &script).stdout;
        let mut words = out.split_whitespace().map(|w| w.parse().unwrap_or(0));
        (words.next().unwrap_or(0), words.next().unwrap_or(0))
    };
    let contained = |before: (u64, u64), after: (u64, u64)| after.1 > before.1 && after.0 > before.0;
    let before = ooms(&guest);
    let hog = try_exec(&guest, Some("runaway"), &["keel-probe", "attack", "memory-hog", "2048"], Duration::from_secs(90));
    let after = ooms(&guest);
    let up = host_and_bystander_up(&guest);
    let control_before = ooms(&guest);
    let control = try_exec(&guest, None, &["keel-probe", "attack", "memory-hog", "2048"], Duration::from_secs(90));
    let control_after = ooms(&guest);
    suite.record(
        "memory-hog",
        contained(before, after) && up.is_ok(),
        format!("hog {:?}; (container-subtree ooms, all oom kills) {before:?} -> {after:?}; host {up:?}", hog.map(|o| o.exit_code)),
        control_after.1 > control_before.1 && !contained(control_before, control_after),
        format!("host hog {:?}; {control_before:?} -> {control_after:?}", control.map(|o| o.exit_code)),
    );

    // 9. Signals. kill(-1) inside a container reaches only its own processes: the host's
    // sentinel process still answers. Control: the host kills the sentinel itself.
    let sentinel_up = |guest: &Guest| {
        try_exec(
            guest,
            None,
            &["keel-probe", "attack", "unpublished-host-port", &format!("hostaddr=127.0.0.1:{SENTINEL_PORT}")],
            Duration::from_secs(20),
        )
        .is_ok_and(|o| o.stdout.contains("SUCCEEDED"))
    };
    let killer_running = guest.container("killer").state == "running";
    phase(&started, "memory hog");
    let kill_all = try_exec(
        &guest,
        Some("hostile"),
        &["sh", "-c", "kill -s KILL -1; kill -s TERM 1; kill -s KILL 1; echo sent"],
        Duration::from_secs(20),
    );
    std::thread::sleep(Duration::from_secs(3));
    let sentinel_before_control = sentinel_up(&guest);
    let others_up = host_and_bystander_up(&guest);
    let survived = sentinel_before_control && others_up.is_ok();
    let killed = host(&guest, &format!("kill -s KILL {sentinel_pid}"));
    std::thread::sleep(Duration::from_millis(500));
    suite.record(
        "kill-all-and-pid1",
        survived,
        format!("kill -1 / kill 1 from a container: {kill_all:?}; host sentinel up: {sentinel_before_control}; host and bystander: {others_up:?}"),
        killed.exit_code == 0 && !sentinel_up(&guest),
        format!("the host killed the sentinel (pid {sentinel_pid}); it stopped answering"),
    );

    // kill(0) from a container's own process and from `keelctl exec`: the process group
    // must be the container's, never PID 1's (which shuts down on SIGTERM).
    let shutdown_seen = |guest: &Guest| guest.console().contains("shutdown (");
    let exec_kill = try_exec(&guest, Some("hostile"), &["sh", "-c", "kill -s TERM 0"], Duration::from_secs(20));
    std::thread::sleep(Duration::from_secs(5));
    let exec_shutdown = shutdown_seen(&guest);
    let exec_kill_blocked = !exec_shutdown && host_answers(&guest, Duration::from_secs(20)).is_ok();
    let main_kill_blocked = if exec_kill_blocked && killer_running {
        let _ = try_exec(&guest, Some("killer"), &["sh", "-c", "echo go > /tmp/go"], Duration::from_secs(20));
        std::thread::sleep(Duration::from_secs(5));
        !shutdown_seen(&guest) && host_answers(&guest, Duration::from_secs(20)).is_ok()
    } else {
        false
    };
    // Control for both: SIGTERM to PID 1 from a host process, and the same check sees
    // the host shut down (which also ends this boot).
    let host_alive_before_control = !shutdown_seen(&guest);
    if host_alive_before_control {
        let _ = try_exec(&guest, None, &["kill", "-s", "TERM", "1"], Duration::from_secs(20));
    }
    // The check (a shutdown on the console) saw the host go down, by the control's kill
    // or, on a vulnerable host, by the attack itself.
    let control_shutdown = guest.wait_exit(Duration::from_secs(60)).is_some() && shutdown_seen(&guest);
    let control_text = if host_alive_before_control {
        format!("kill -TERM 1 from the host: shutdown seen: {control_shutdown}")
    } else {
        format!("not needed: the attack itself shut the host down, and the check saw it: {control_shutdown}")
    };
    suite.record(
        "kill-process-group-exec",
        exec_kill_blocked,
        format!("keelctl exec kill -TERM 0: {:?}; host shutdown seen 5 s later: {exec_shutdown}", exec_kill.map(|o| o.exit_code)),
        control_shutdown,
        control_text.clone(),
    );
    suite.record(
        "kill-process-group-container",
        main_kill_blocked,
        match (exec_kill_blocked, killer_running) {
            (true, true) => {
                format!("the container's own process ran kill -TERM 0 and kill -INT 0; host shutdown seen: {}", !main_kill_blocked)
            }
            (true, false) => "not tried: the killer container was not running".to_string(),
            (false, _) => "not tried: the host went down at the exec variant".to_string(),
        },
        control_shutdown,
        control_text,
    );
    drop(guest);
    phase(&started, "first boot");

    // Second boot: a FIFO at /etc/passwd must not stop PID 1.
    fifo_attack(&mut suite);

    let (summary, failures) = suite.verdict();
    eprintln!("{summary}");
    eprintln!("escape suite took {:.0} s", started.elapsed().as_secs_f64());
    let tried = suite.outcomes.len();
    assert!(tried >= 30, "{summary}: fewer than 30 attacks");
    assert!(failures.is_empty(), "{summary}\n{}", failures.join("\n"));
}

/// The hostile layers of scripts/make-hostile-images.py, one image (and container) each.
/// (sparse.tar is not declared: it is loaded with `keelctl image load` once the FIFO is
/// in place, since on a vulnerable host it fills /var.)
const LAYER_ATTACKS: [&str; 3] = ["dotdot", "linkout", "devices"];

/// Host files named escape-tar-* outside the image store's layers.
fn escaped_tar_files(guest: &Guest) -> String {
    let found =
        host(guest, "find / \\( -path /proc -o -path /sys -o -path /var/lib/keel/images/layers \\) -prune -o -name 'escape-tar-*' -print");
    found.stdout.trim().to_string()
}

/// The image-layer attacks: each container's image must be refused or be harmless.
fn layer_attacks(guest: &Guest, suite: &mut Suite) {
    let mut settled = BTreeMap::new();
    for kind in LAYER_ATTACKS {
        let name = format!("tar-{kind}");
        let deadline = Instant::now() + Duration::from_secs(90);
        let info = loop {
            let info = guest.container(&name);
            let done = matches!(info.state.as_str(), "exited" | "failed" | "stopped") || (info.state != "running" && info.detail.is_some());
            if done || Instant::now() > deadline {
                break info;
            }
            std::thread::sleep(Duration::from_millis(300));
        };
        let lines = logged_attack_lines(guest, &name);
        settled.insert(kind, (info, lines));
    }
    let describe = |kind: &str| -> String {
        let (info, lines) = &settled[kind];
        format!(
            "{} {}: {} {}",
            info.state,
            info.last_exit.map(|c| c.to_string()).unwrap_or_default(),
            info.detail.clone().unwrap_or_default(),
            lines.join(" ")
        )
    };
    let outside = escaped_tar_files(guest);

    // A `..` entry and a file through a symlink to /: nothing lands outside the layer.
    let control = host(guest, "mkdir -p /var/lib/keel/ctl/a/b/c && cd /var/lib/keel/ctl/a/b/c && echo x > ../../../../../../../../escape-tar-ctl-dotdot && ln -s / /var/lib/keel/ctl/out && echo x > /var/lib/keel/ctl/out/escape-tar-ctl-link");
    let control_found = escaped_tar_files(guest);
    suite.record(
        "tar-dotdot",
        !outside.contains("escape-tar-dotdot"),
        format!("{}; host files outside the store: {outside:?}", describe("dotdot")),
        control.exit_code == 0 && control_found.contains("/escape-tar-ctl-dotdot"),
        format!("a host process writing ../../…/escape-tar-ctl-dotdot from a deep directory: {control_found:?}"),
    );
    suite.record(
        "tar-symlink-out",
        !outside.contains("escape-tar-link"),
        format!("{}; host files outside the store: {outside:?}", describe("linkout")),
        control.exit_code == 0 && control_found.contains("/escape-tar-ctl-link"),
        format!("a host process writing through a link to /: {control_found:?}"),
    );
    let _ = host(guest, "rm -rf /var/lib/keel/ctl /escape-tar-ctl-*");

    // Device nodes in a layer: refused, or useless inside the container.
    let devices = &settled["devices"];
    let control = host(guest, "keel-probe attack mknod-dev-mem scratch=/dev").stdout;
    suite.record(
        "tar-device-nodes",
        !devices.1.iter().any(|l| l.contains("SUCCEEDED")) && devices.0.state != "running",
        describe("devices"),
        control.contains("SUCCEEDED"),
        control.trim(),
    );
}

/// A 1 TiB sparse file in a ~700 KiB image: the load must stop at a limit, not when the
/// host's filesystem is full. What a refused load left behind is removed afterwards
/// (and reported), so the rest of the boot has room.
fn sparse_attack(guest: &Guest, suite: &mut Suite) {
    let source = "oci-archive:/usr/share/keel/images/escape/sparse.tar";
    let loaded =
        guest.call(Command::ImageLoad { source: source.into(), progress: false }, Duration::from_secs(150)).map_err(|e| e.to_string());
    let left = host(guest, "df -k /var | tail -n 1; find /var/lib/keel -xdev -type f -size +8192k -print -exec rm -f {} +").stdout;
    let refused = match &loaded {
        Ok(_) => false,
        Err(e) => !e.contains("No space left") && !e.contains("control channel"),
    };
    let control = host(guest, "dd if=/dev/zero of=/var/lib/keel/escape-fill bs=1M 2>&1; rm -f /var/lib/keel/escape-fill");
    suite.record(
        "tar-huge-sparse",
        refused,
        format!("image load: {loaded:?}; /var then, and files over 8 MiB left: {}", left.trim().replace('\n', " ")),
        control.stdout.contains("No space left"),
        format!("a host process writing zeros to /var: {}", control.stdout.trim().replace('\n', " ")),
    );
}

/// The second boot: hostile image layers (scripts/make-hostile-images.py: a `..` entry,
/// a symlink out of the layer, device nodes, a 1 TiB sparse file), then the FIFO attack:
/// a container that replaces its /etc/passwd with a FIFO and exits, with restart =
/// "always"; the restart must not hang PID 1: keel still answers and an unrelated
/// container (re)starts.
fn fifo_attack(suite: &mut Suite) {
    let name = "escape-fifo";
    let dir = target_dir().join("qemu-tests").join(name);
    std::fs::create_dir_all(&dir).expect("create image dir");
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/make-hostile-images.py");
    let archives = dir.join("archives");
    let made = std::process::Command::new(script)
        .arg(&archives)
        .arg(env!("CARGO_BIN_EXE_keel-probe"))
        .output()
        .expect("run make-hostile-images.py");
    assert!(made.status.success(), "make-hostile-images.py: {}", String::from_utf8_lossy(&made.stderr));
    let mut host = busybox_host("keel-escape-fifo", &["virtio_pci", "virtio_console", "button", "evdev", "overlay"], 2);
    declare_container(
        &dir,
        &mut host,
        "fifo",
        "image = \"@IMAGE@\"\ncommand = [\"/bin/sh\", \"-c\", \"while [ ! -e /armed ]; do sleep 0.2; done; rm -f /etc/passwd; mkfifo /etc/passwd; touch /made; while [ ! -e /go ]; do sleep 0.2; done; exit 1\"]\nrestart = \"always\"\nnetwork = \"none\"\nstop_timeout = \"1s\"\n",
    );
    declare_container(
        &dir,
        &mut host,
        "bystander",
        "image = \"@IMAGE@\"\ncommand = [\"/bin/sleep\", \"3600\"]\nnetwork = \"none\"\nstop_timeout = \"1s\"\n",
    );
    let _ = write!(
        host,
        "\n[[files]]\nsource = \"{}\"\npath = \"/usr/share/keel/images/escape/sparse.tar\"\n",
        archives.join("sparse.tar").display()
    );
    for kind in LAYER_ATTACKS {
        let _ = write!(
            host,
            "\n[[files]]\nsource = \"{}\"\npath = \"/usr/share/keel/images/escape/{kind}.tar\"\n",
            archives.join(format!("{kind}.tar")).display()
        );
        declare_container(
            &dir,
            &mut host,
            &format!("tar-{kind}"),
            &format!("image = \"oci-archive:/usr/share/keel/images/escape/{kind}.tar\"\nrestart = \"no\"\nnetwork = \"none\"\n"),
        );
    }
    let image = build_image(name, &host, env!("CARGO_BIN_EXE_keel-probe").as_ref());
    let mut guest = Guest::boot(&image, "escape-fifo", BootOptions::default());
    guest.wait_ready();
    for container in ["fifo", "bystander"] {
        guest.wait_container(container, Duration::from_secs(90), |c| c.state == "running");
    }
    layer_attacks(&guest, suite);
    // The container makes the FIFO in its own tree; then, before it exits, the control:
    // the planted FIFO is live (a host-root reader of it blocks).
    let armed = try_exec(
        &guest,
        Some("fifo"),
        &["sh", "-c", "touch /armed; while [ ! -e /made ]; do sleep 0.2; done; test -p /etc/passwd && echo fifo"],
        Duration::from_secs(30),
    );
    assert!(armed.as_ref().is_ok_and(|o| o.exit_code == 0 && o.stdout == "fifo\n"), "arm: {armed:?}");
    let control = try_exec(
        &guest,
        None,
        &["sh", "-c", "ls -ln /var/lib/keel/containers/fifo/upper/etc/passwd; timeout 3 cat /var/lib/keel/containers/fifo/upper/etc/passwd; echo exit=$?"],
        Duration::from_secs(20),
    )
    .map(|o| o.stdout)
    .unwrap_or_else(|e| e);
    sparse_attack(&guest, suite);
    // The container exits, is restarted after its backoff and meets the FIFO.
    let went = try_exec(&guest, Some("fifo"), &["touch", "/go"], Duration::from_secs(20));
    assert!(went.as_ref().is_ok_and(|o| o.exit_code == 0), "go: {went:?}");
    std::thread::sleep(Duration::from_secs(4));
    let answers = host_answers(&guest, Duration::from_secs(15));
    let restarted = answers.clone().and_then(|()| {
        let old = guest.container("bystander").pid;
        guest.call(Command::Restart { name: "bystander".into() }, Duration::from_secs(30)).map_err(|e| format!("restart: {e}"))?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let info = guest.container("bystander");
            if info.state == "running" && info.pid.is_some() && info.pid != old {
                return Ok(format!("running as pid {:?}", info.pid));
            }
            if Instant::now() > deadline {
                return Err(format!("the bystander did not come back: {info:?}"));
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    });
    let fifo_state = if restarted.is_ok() { format!("{:?}", guest.container("fifo")) } else { "unknown".into() };
    suite.record(
        "fifo-etc-passwd",
        restarted.is_ok(),
        format!("keel answers: {answers:?}; bystander restart: {restarted:?}; fifo: {fifo_state}"),
        control.contains("exit=124") || control.contains("exit=143"),
        control.replace('\n', " "),
    );
    if restarted.is_ok() {
        let _ = guest.call(Command::Poweroff, Duration::from_secs(20));
        guest.wait_exit(Duration::from_secs(60));
    }
}
