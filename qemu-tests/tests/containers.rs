//! Container boot tests: images whose /etc/keel/containers declare containers made of a
//! busybox root filesystem with the probe in it; each test is one real boot.

use keel_qemu_tests::{build_image, busybox_host, declare_container, target_dir, BootOptions, Guest, TestImage};
use keel_supervisor::cgroup::reserve;
use keel_supervisor::control::{Command, Status};
use std::time::{Duration, Instant};

/// A host with the busybox container image and the given declarations (name, text).
fn host_image(name: &str, declarations: &[(&str, &str)]) -> TestImage {
    let dir = target_dir().join("qemu-tests").join(name);
    std::fs::create_dir_all(&dir).expect("create image dir");
    let mut host = busybox_host("keel-ctr", &["virtio_pci", "virtio_console", "button", "evdev", "overlay"], 3);
    for (container, text) in declarations {
        declare_container(&dir, &mut host, container, text);
    }
    build_image(name, &host, env!("CARGO_BIN_EXE_keel-probe").as_ref())
}

fn boot(image: &TestImage, name: &str) -> Guest {
    let mut guest = Guest::boot(
        image,
        name,
        BootOptions { extra_cmdline: String::new(), allow_reboot: false, hostfwd: Vec::new(), ..Default::default() },
    );
    guest.wait_ready();
    guest
}

/// Position of `needle` on the console, or a failure naming it.
fn position(guest: &Guest, needle: &str) -> usize {
    guest.console().find(needle).unwrap_or_else(|| guest.fail(&format!("console lacks {needle:?}")))
}

const ISOLATION: &[(&str, &str)] = &[
    ("iso", "image = \"@IMAGE@\"\ncommand = [\"/bin/sleep\", \"3600\"]\nhostname = \"iso\"\nstop_timeout = \"1s\"\nnetwork = \"none\"\n"),
    (
        "reaper",
        "image = \"@IMAGE@\"\ncommand = [\"/bin/sh\", \"-c\", \"keel-probe orphans 100; echo orphans-done; sleep 3600\"]\ninit = true\n",
    ),
    (
        "bomb",
        "image = \"@IMAGE@\"\ncommand = [\"/bin/sh\", \"-c\", \"echo bomb; b() { b | b & }; b; sleep 3600\"]\nrestart = \"no\"\nstop_timeout = \"1s\"\n\n[resources]\npids_max = 32\n",
    ),
    (
        "hog",
        "image = \"@IMAGE@\"\ncommand = [\"/bin/dd\", \"if=/dev/zero\", \"of=/dev/null\", \"bs=96M\", \"count=1\"]\nrestart = \"no\"\n\n[resources]\nmemory_max = \"32M\"\n",
    ),
    ("bad", "image = \"@IMAGE@\"\ncommand = [\"/bin/true\"]\nrestart = \"sometimes\"\n"),
];

/// Tests 1, 2, 3 and 6 of the container issue: own pid namespace and reaper, what a
/// container cannot do, pids and memory limits, and a bad declaration beside good ones.
#[test]
fn containers_are_isolated_limited_and_bad_declarations_do_not_stop_others() {
    let image = host_image("containers-isolation", ISOLATION);
    let guest = boot(&image, "isolation");

    // 6. The bad declaration is reported with its file, line and key; the others run.
    let bad = guest.container("bad");
    assert_eq!(bad.state, "invalid", "{bad:?}");
    let detail = bad.detail.unwrap_or_default();
    assert!(detail.contains("/etc/keel/containers/bad.toml:3: restart"), "{detail}");
    position(&guest, "/etc/keel/containers/bad.toml:3: restart");
    guest.wait_container("iso", Duration::from_secs(60), |c| c.state == "running");

    // 1. The container sees only its own processes; its PID 1 is its command.
    let ps = guest.exec_in(Some("iso"), &["ps", "-o", "pid,comm"]);
    assert_eq!(ps.exit_code, 0, "{ps:?}");
    let rows: Vec<(u32, String)> = ps
        .stdout
        .lines()
        .skip(1)
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            Some((words.next()?.parse().ok()?, words.next()?.to_string()))
        })
        .collect();
    assert!(rows.contains(&(1, "sleep".to_string())), "PID 1 is not the command: {rows:?}");
    assert!(rows.len() <= 3 && rows.iter().all(|(pid, _)| *pid < 20), "the container sees other processes: {rows:?}");

    // 2. Its own hostname, mounts and network; what it must not do fails.
    let own = guest.exec_in(Some("iso"), &["sh", "-c", "hostname; ls /sys/class/net; grep -c ' / overlay ' /proc/mounts"]);
    assert_eq!(own.stdout, "iso\nlo\n1\n", "{own:?}");
    let deny = guest.exec_in(Some("iso"), &["keel-probe", "deny"]);
    for line in deny.stdout.lines() {
        assert!(!line.ends_with(": ok"), "a container could do this: {line}\n{}", deny.stdout);
    }
    for expected in
        ["mount: EPERM", "module: EPERM", "reboot: EPERM", "keyctl: EPERM", "kcore: empty", "firmware: empty", "control: NotFound"]
    {
        assert!(deny.stdout.contains(expected), "{expected} missing: {}", deny.stdout);
    }
    let status = guest.exec_in(Some("iso"), &["grep", "-E", "^(CapEff|NoNewPrivs|Seccomp):", "/proc/self/status"]);
    assert_eq!(status.stdout, "CapEff:\t00000000a80425fb\nNoNewPrivs:\t1\nSeccomp:\t2\n", "{status:?}");

    // 1. init = true: keel's reaper is PID 1 and reaps the orphans inside the container.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !guest.logs("reaper").iter().any(|l| l.ends_with("orphans-done")) {
        assert!(Instant::now() < deadline, "reaper never finished its orphans: {:?}", guest.logs("reaper"));
        std::thread::sleep(Duration::from_millis(300));
    }
    let init = guest.exec_in(Some("reaper"), &["sh", "-c", "tr '\\0' ' ' < /proc/1/cmdline"]);
    assert!(init.stdout.starts_with("keel init -- /bin/sh -c"), "{init:?}");
    let mut zombies = String::new();
    for _ in 0..50 {
        zombies = guest.exec_in(Some("reaper"), &["keel-probe", "zombies"]).stdout;
        if zombies.starts_with("zombies: 0") {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(zombies.starts_with("zombies: 0"), "zombies left in the container: {zombies}");

    // 3. The memory hog is OOM-killed inside its container, and that is reported.
    let hog = guest.wait_container("hog", Duration::from_secs(60), |c| c.state != "running" && c.state != "waiting");
    assert_eq!((hog.state.as_str(), hog.last_exit), ("exited", Some(137)), "{hog:?}");
    assert!(guest.inspect("hog").oom_kills >= 1, "{:?}", guest.inspect("hog"));

    // 3. The fork bomb stops at pids_max and the host still answers.
    guest.wait_container("bomb", Duration::from_secs(30), |c| c.state == "running");
    std::thread::sleep(Duration::from_secs(3));
    let started = Instant::now();
    let host: Status = serde_json::from_value(guest.call(Command::Status, Duration::from_secs(20)).unwrap()).unwrap();
    assert_eq!(host.state, "ready");
    eprintln!("[isolation] status answered in {} ms during the fork bomb", started.elapsed().as_millis());
    let events = guest.exec(&["cat", "/sys/fs/cgroup/keel/bomb/pids.events", "/sys/fs/cgroup/keel/bomb/pids.current"]);
    let max_hits: u64 = events.stdout.lines().find_map(|l| l.strip_prefix("max ")).and_then(|n| n.parse().ok()).unwrap_or(0);
    let current: u64 = events.stdout.lines().last().and_then(|n| n.parse().ok()).unwrap_or(u64::MAX);
    assert!(max_hits > 0 && current <= 32, "pids_max not enforced: {events:?}");
    guest.call(Command::Stop { name: "bomb".into() }, Duration::from_secs(20)).unwrap();
    guest.wait_container("bomb", Duration::from_secs(30), |c| c.state == "stopped");
    let left = guest.exec(&["sh", "-c", "cat /sys/fs/cgroup/keel/bomb/cgroup.procs 2>/dev/null | wc -l"]);
    assert_eq!(left.stdout.trim(), "0", "processes of the bomb survived its stop: {left:?}");
}

const LIFECYCLE: &[(&str, &str)] = &[
    (
        "db",
        "image = \"@IMAGE@\"\ncommand = [\"/bin/sh\", \"-c\", \"sleep 2; touch /tmp/ready; exec sleep 3600\"]\nstop_timeout = \"2s\"\n\n[healthcheck]\ncommand = [\"test\", \"-f\", \"/tmp/ready\"]\ninterval = \"1s\"\n",
    ),
    (
        "web",
        "image = \"@IMAGE@\"\ncommand = [\"/bin/sleep\", \"3600\"]\ninit = true\ndepends_on = { db = \"healthy\" }\nstop_timeout = \"5s\"\n",
    ),
    ("crashy", "image = \"@IMAGE@\"\ncommand = [\"/bin/sleep\", \"3600\"]\nrestart = \"always\"\nstop_timeout = \"1s\"\n"),
    ("once", "image = \"@IMAGE@\"\ncommand = [\"/bin/sh\", \"-c\", \"exit 3\"]\nrestart = \"no\"\n"),
    (
        "retry",
        "image = \"@IMAGE@\"\ncommand = [\"/bin/sh\", \"-c\", \"echo try; exit 1\"]\nrestart = \"on-failure\"\nmax_retries = 2\n",
    ),
    (
        "stubborn",
        "image = \"@IMAGE@\"\ncommand = [\"/bin/sh\", \"-c\", \"trap '' TERM; while true; do sleep 1; done\"]\nstop_timeout = \"1s\"\n",
    ),
];

/// Tests 4 and 5 of the container issue: restart policies with backoff, dependency
/// order at boot, and shutdown in reverse order, each container within its timeout.
#[test]
fn restart_policies_dependency_order_and_shutdown() {
    let image = host_image("containers-lifecycle", LIFECYCLE);
    let mut guest = boot(&image, "lifecycle");

    // 5. web waits for db to be healthy.
    guest.wait_container("web", Duration::from_secs(60), |c| c.state == "running");
    let db_started = position(&guest, "container db: started");
    let db_healthy = position(&guest, "container db: healthy");
    let web_started = position(&guest, "container web: started");
    assert!(db_started < db_healthy && db_healthy < web_started, "web started before db was healthy");
    let hostname = guest.exec_in(Some("web"), &["hostname"]);
    assert_eq!(hostname.stdout, "web\n", "{hostname:?}");

    // 4. restart = "no" stays down; on-failure honours max_retries.
    let once = guest.wait_container("once", Duration::from_secs(30), |c| c.state == "exited");
    assert_eq!((once.last_exit, once.restarts), (Some(3), 0), "{once:?}");
    let retry = guest.wait_container("retry", Duration::from_secs(60), |c| c.state == "failed");
    assert_eq!((retry.last_exit, retry.restarts), (Some(1), 2), "{retry:?}");
    let tries = guest.logs("retry").iter().filter(|l| l.ends_with(" stdout try")).count();
    assert_eq!(tries, 3, "{:?}", guest.logs("retry"));

    // 4. kill -9 → restarted, each time after a longer delay.
    let mut pid = guest.wait_container("crashy", Duration::from_secs(30), |c| c.state == "running").pid.unwrap();
    for round in 1..=3 {
        let killed = guest.exec(&["kill", "-9", &pid.to_string()]);
        assert_eq!(killed.exit_code, 0, "{killed:?}");
        let info = guest.wait_container("crashy", Duration::from_secs(30), |c| c.state == "running" && c.pid != Some(pid));
        assert_eq!(info.restarts, round, "{info:?}");
        assert_eq!(info.last_exit, Some(137));
        pid = info.pid.unwrap();
    }
    let delays: Vec<usize> = ["restarting in 500 ms", "restarting in 1000 ms", "restarting in 2000 ms"]
        .iter()
        .map(|d| position(&guest, &format!("container crashy: {d}")))
        .collect();
    assert!(delays.windows(2).all(|w| w[0] < w[1]), "backoff did not grow: {delays:?}");
    let last = guest.inspect("crashy");
    let gap = last.info.uptime_secs.map(|_| last.started_at.unwrap() - last.finished_at.unwrap()).unwrap();
    assert!(gap >= 1.9, "third restart came after {gap:.2} s, not after the 2 s backoff");

    // Stop and start on request.
    guest.call(Command::Stop { name: "crashy".into() }, Duration::from_secs(20)).unwrap();
    guest.wait_container("crashy", Duration::from_secs(20), |c| c.state == "stopped");
    guest.call(Command::Start { name: "crashy".into() }, Duration::from_secs(20)).unwrap();
    guest.wait_container("crashy", Duration::from_secs(20), |c| c.state == "running");

    // 5. Shutdown stops web before db, and each within its timeout.
    guest.call(Command::Poweroff, Duration::from_secs(20)).unwrap();
    match guest.wait_exit(Duration::from_secs(60)) {
        Some(status) if status.success() => {}
        other => guest.fail(&format!("QEMU did not power off: {other:?}")),
    }
    let web_stopped = position(&guest, "container web: stopped in");
    let db_stopped = position(&guest, "container db: stopped in");
    assert!(web_stopped < db_stopped, "db was stopped before web, which depends on it");
    position(&guest, "container stubborn: stop timeout passed; killing it");
    let console = guest.console();
    for (name, limit_ms) in [("web", 5000), ("db", 2000), ("stubborn", 1000), ("crashy", 1000)] {
        let line = console.lines().find(|l| l.contains(&format!("container {name}: stopped in"))).unwrap();
        let ms: u64 = line.rsplit("stopped in ").next().and_then(|t| t.trim_end_matches(" ms").trim().parse().ok()).unwrap();
        assert!(ms <= limit_ms + 1500, "{name} took {ms} ms to stop (timeout {limit_ms} ms)");
    }
}

const RUNAWAY: &[(&str, &str)] = &[
    (
        "runaway",
        "image = \"@IMAGE@\"\ncommand = [\"/bin/sh\", \"-c\", \"keel-probe hog 15 400 & b() { b | b & }; b; exec sleep 3600\"]\nrestart = \"no\"\nstop_timeout = \"1s\"\n",
    ),
    ("bystander", "image = \"@IMAGE@\"\ncommand = [\"/bin/sleep\", \"3600\"]\nstop_timeout = \"1s\"\nnetwork = \"none\"\n"),
];

/// One line of `cat` output as a number.
fn number(text: &str) -> u64 {
    text.trim().parse().unwrap_or_else(|_| panic!("not a number: {text:?}"))
}

/// `key value` from a flat-keyed cgroup file's text.
fn keyed(text: &str, key: &str) -> u64 {
    text.lines().find_map(|l| l.strip_prefix(&format!("{key} "))).map(number).unwrap_or_else(|| panic!("{key} missing in {text:?}"))
}

/// Issue 11 point 8: a fork bomb and a memory hog in one container without declared
/// limits are held inside the containers' subtree (default pids.max, the host's reserve
/// on keel/, memory.oom.group), the host and a bystander keep working, and ps says what
/// happened. Also: the parent limits follow the reserve, PID 1 is exempt from the OOM
/// killer and containers are not, the device filter is attached and refuses what nodev
/// does not, and an exec's timeout kills what left its session.
#[test]
fn runaway_container_is_contained_and_reported() {
    let image = host_image("containers-runaway", RUNAWAY);
    let guest = boot(&image, "runaway");
    let bystander = guest.wait_container("bystander", Duration::from_secs(60), |c| c.state == "running");
    let bystander_pid = bystander.pid.unwrap();

    // The parent's limits are the system's figures minus the default reserve.
    let figures = guest.exec(&["cat", "/proc/meminfo", "/proc/sys/kernel/pid_max", "/proc/sys/kernel/threads-max"]);
    let mut lines = figures.stdout.lines().rev();
    let threads_max = number(lines.next().unwrap());
    let pid_max = number(lines.next().unwrap());
    let system = reserve::SystemFigures { mem_total: reserve::parse_mem_total(&figures.stdout).unwrap(), pid_max, threads_max };
    let expected = reserve::parent_limits(&system, &reserve::HostReserve::default()).unwrap();
    let parent = guest.exec(&["cat", "/sys/fs/cgroup/keel/memory.max", "/sys/fs/cgroup/keel/pids.max"]);
    assert_eq!(parent.stdout, format!("{}\n{}\n", expected.memory_max, expected.pids_max), "{system:?}");
    eprintln!("[runaway] {system:?}: keel/ memory.max {} MiB, pids.max {}", expected.memory_max >> 20, expected.pids_max);

    // PID 1 is exempt from the OOM killer; the containers it starts are not.
    let scores = guest.exec(&["cat", "/proc/1/oom_score_adj", &format!("/proc/{bystander_pid}/oom_score_adj")]);
    assert_eq!(scores.stdout, "-1000\n0\n", "{scores:?}");

    // The fork bomb runs into its default pids.max (2048); ps shows it live.
    let started = Instant::now();
    let hit = guest.wait_container("runaway", Duration::from_secs(60), |c| c.pids_limit_hits > 0 || c.state != "running");
    eprintln!("[runaway] pids limit hit after {} ms: {hit:?}", started.elapsed().as_millis());
    let events = guest.exec(&["sh", "-c", "cat /sys/fs/cgroup/keel/runaway/pids.max /sys/fs/cgroup/keel/runaway/pids.events"]);
    // The hog waits 15 s after the first refused fork: the container is still there.
    assert_eq!(events.stdout.lines().next(), Some("2048"), "{events:?}");
    assert!(keyed(&events.stdout, "max") > 0, "the bomb never hit its limit: {events:?}");

    // The host keeps answering, and can fork, while the bomb runs.
    let asked = Instant::now();
    let host: Status = serde_json::from_value(guest.call(Command::Status, Duration::from_secs(20)).unwrap()).unwrap();
    assert_eq!(host.state, "ready");
    let forks = guest.exec(&["sh", "-c", "for i in 1 2 3 4 5 6 7 8; do true & done; wait; echo forked"]);
    assert_eq!((forks.exit_code, forks.stdout.as_str()), (0, "forked\n"), "{forks:?}");
    eprintln!("[runaway] status and a host exec answered in {} ms during the bomb", asked.elapsed().as_millis());

    // The hog then runs the containers' subtree out of memory: the runaway container is
    // OOM-killed as a whole (memory.oom.group), and reported as both.
    let ended = guest.wait_container("runaway", Duration::from_secs(90), |c| c.state != "running" && c.state != "waiting");
    assert_eq!((ended.state.as_str(), ended.last_exit), ("exited", Some(137)), "{ended:?}");
    assert!(ended.pids_limit_hits > 0 && ended.oom_killed > 0, "{ended:?}");
    assert_eq!(ended.limits_hit().unwrap(), format!("pids-limit-hit:{},oom-killed:{}", ended.pids_limit_hits, ended.oom_killed));
    assert!(guest.inspect("runaway").oom_kills > 0);
    // From its log file: the console is a best-effort view, and the bomb's "can't fork"
    // lines may use the container's whole share of the echo budget.
    let hog = guest.exec(&["grep", "-c", "hog: fork refused; allocating 400 MiB", "/var/log/keel/runaway.log"]);
    assert_eq!(hog.stdout.trim(), "1", "the hog never started: {hog:?}");

    // The bystander kept running, untouched, and reports nothing.
    let after = guest.container("bystander");
    assert_eq!(
        (after.state.as_str(), after.pid, after.restarts, after.limits_hit()),
        ("running", Some(bystander_pid), 0, None),
        "{after:?}"
    );
    let inside = guest.exec_in(Some("bystander"), &["echo", "alive"]);
    assert_eq!(inside.stdout, "alive\n", "{inside:?}");

    device_filter_refuses_what_nodev_does_not(&guest);
    exec_timeout_kills_what_left_its_session(&guest);
}

/// The bystander's cgroup carries the device filter; a host process moved below it can
/// no longer open /dev/kmsg or /dev/mem (the host's /dev is not nodev), while the same
/// process outside does (negative control).
fn device_filter_refuses_what_nodev_does_not(guest: &Guest) {
    let programs = guest.exec(&["sh", "-c", "keel-probe devcg /sys/fs/cgroup/keel/bystander; keel-probe devcg /sys/fs/cgroup/keel"]);
    assert_eq!(programs.stdout, "device programs: 1\ndevice programs: 0\n", "{programs:?}");
    let outside = guest.exec(&["keel-probe", "devices"]);
    assert_eq!(outside.stdout, "null: ok\nkmsg: ok\nmem: ok\nmknod-mem: ok\nopen-mknod-mem: ok\n", "negative control: {outside:?}");
    let leaf = "/sys/fs/cgroup/keel/bystander/probe";
    guest.exec(&["mkdir", "-p", leaf]);
    let inside = guest.exec(&["keel-probe", "devices", leaf]);
    assert_eq!(inside.stdout, "null: ok\nkmsg: EPERM\nmem: EPERM\nmknod-mem: ok\nopen-mknod-mem: EPERM\n", "{inside:?}");
}

/// An exec that runs out of time is killed with a descendant that called setsid; one
/// that ends in time leaves its setsid descendant running (negative control: the check
/// sees a survivor).
fn exec_timeout_kills_what_left_its_session(guest: &Guest) {
    let exec = |argv: &[&str], timeout_secs| {
        let argv = argv.iter().map(|s| s.to_string()).collect();
        let command = Command::Exec { argv, timeout_secs: Some(timeout_secs), container: Some("bystander".into()) };
        let value = guest.call(command, Duration::from_secs(60)).unwrap_or_else(|e| guest.fail(&format!("exec: {e}")));
        serde_json::from_value::<keel_supervisor::control::ExecResult>(value).unwrap()
    };
    let count = |marker: &str| {
        let ps = guest.exec_in(Some("bystander"), &["ps", "-o", "args"]);
        ps.stdout.lines().filter(|l| l.contains(marker)).count()
    };
    let left = exec(&["sh", "-c", "setsid sleep 1001 </dev/null >/dev/null 2>&1 & exit 0"], 20);
    assert_eq!(left.exit_code, 0, "{left:?}");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(count("sleep 1001"), 1, "negative control: a survivor is seen");
    let timed_out = exec(&["sh", "-c", "setsid sleep 1002 </dev/null >/dev/null 2>&1 & sleep 1000"], 2);
    assert_eq!(timed_out.exit_code, 124, "{timed_out:?}");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(count("sleep 1002"), 0, "the setsid descendant outlived the exec's timeout");
}

const OVERFLOW: &[(&str, &str)] = &[
    ("good1", "image = \"@IMAGE@\"\ncommand = [\"/bin/sleep\", \"3600\"]\nstop_timeout = \"1s\"\nnetwork = \"none\"\n"),
    ("huge", "image = \"@IMAGE@\"\ncommand = [\"/bin/sleep\", \"3600\"]\nstop_timeout = \"18446744073709551615s1s\"\nnetwork = \"none\"\n"),
    ("good2", "image = \"@IMAGE@\"\ncommand = [\"/bin/sleep\", \"3600\"]\nstop_timeout = \"1s\"\nnetwork = \"none\"\n"),
];

/// Issue 12: one declaration whose stop_timeout overflows (it used to panic the
/// containers boot step, so no container started) is shown invalid, naming its key;
/// the two good ones beside it run, and nothing panicked. The negative control is
/// the unit test spec::tests::overflowing_durations_and_sizes_name_their_key, which
/// panics against the parser before the fix.
#[test]
fn an_overflowing_duration_leaves_the_other_containers_running() {
    let image = host_image("containers-overflow", OVERFLOW);
    let guest = boot(&image, "overflow");
    for name in ["good1", "good2"] {
        guest.wait_container(name, Duration::from_secs(60), |c| c.state == "running");
    }
    let huge = guest.container("huge");
    assert_eq!(huge.state, "invalid", "{huge:?}");
    let detail = huge.detail.unwrap_or_default();
    let expected =
        "/etc/keel/containers/huge.toml:3: stop_timeout: \"18446744073709551615s1s\": duration too large (at most 8760h, one year)";
    assert!(detail.contains(expected), "{detail}");
    position(&guest, expected);
    let console = guest.console();
    assert!(!console.contains("panicked"), "a panic on the console:\n{console}");
}

/// One container per step a start can fail after (test option keel.test.fail_launch),
/// one failing with its cleanup skipped (negative control), one that starts.
const FAILING_STEPS: &[(&str, &str)] =
    &[("fnet", "network"), ("fcg", "cgroup"), ("fpipe", "pipes"), ("fhook", "hooks"), ("fstart", "started")];

/// Issue 12: a start failing after each of its steps leaves no cgroup, state directory,
/// IPAM lease or veth behind (the host test `launch_cleanup` covers the same without
/// cgroups). Negative control: `leaky` fails after its process started with its cleanup
/// skipped, and the same checks see its cgroup, state directory, lease and veth.
#[test]
fn a_failed_launch_leaves_no_cgroup_state_dir_lease_or_veth_behind() {
    let declaration = "image = \"@IMAGE@\"\ncommand = [\"/bin/sleep\", \"3600\"]\nrestart = \"no\"\nstop_timeout = \"1s\"\n\n[resources]\nmemory_max = \"64M\"\n";
    let mut declarations: Vec<(&str, &str)> = FAILING_STEPS.iter().map(|(name, _)| (*name, declaration)).collect();
    declarations.extend([("leaky", declaration), ("ok", declaration)]);
    let image = host_image("containers-failed-launch", &declarations);
    let faults: Vec<String> =
        FAILING_STEPS.iter().map(|(name, step)| format!("{name}:{step}")).chain(["leaky:started:leak".into()]).collect();
    let mut guest = Guest::boot(
        &image,
        "failed-launch",
        BootOptions { extra_cmdline: format!("keel.test.fail_launch={}", faults.join(",")), ..Default::default() },
    );
    guest.wait_ready();
    let ok = guest.wait_container("ok", Duration::from_secs(60), |c| c.state == "running");
    let injected = |c: &keel_supervisor::manager::ContainerInfo| c.detail.as_deref().is_some_and(|d| d.contains("injected failure"));
    for (name, step) in FAILING_STEPS.iter().copied().chain([("leaky", "started")]) {
        let info = guest.wait_container(name, Duration::from_secs(60), injected);
        let detail = info.detail.unwrap_or_default();
        assert!(detail.starts_with(&format!("{step}: ")), "{name}: {detail}");
        assert!(!detail.contains("could not be given back"), "{name}: {detail}");
    }
    let leases = guest.exec(&["cat", "/var/lib/keel/ipam/keel0.json"]).stdout;
    let veths: Vec<String> =
        guest.exec(&["ls", "/sys/class/net"]).stdout.split_whitespace().filter(|l| l.starts_with("kv")).map(String::from).collect();
    let exists = |path: &str| guest.exec(&["test", "-e", path]).exit_code == 0;
    let taken = |name: &str| {
        (
            exists(&format!("/sys/fs/cgroup/keel/{name}")),
            exists(&format!("/var/lib/keel/containers/{name}")),
            leases.contains(&format!("\"{name}\"")),
        )
    };
    for (name, step) in FAILING_STEPS {
        assert_eq!(
            taken(name),
            (false, false, false),
            "{name} (failed after {step}) left (cgroup, state dir, lease) behind; leases {leases}"
        );
    }
    // Negative control, and the container that runs: the checks see what a start takes.
    assert_eq!(taken("leaky"), (true, true, true), "the leak of leaky is not seen; leases {leases}");
    assert_eq!(taken("ok"), (true, true, true), "leases {leases}");
    let ok_veth = format!("kv{}", ok.pid.expect("ok's pid"));
    assert!(veths.contains(&ok_veth) && veths.len() == 2, "expected ok's {ok_veth} and leaky's veth only: {veths:?}");
}
