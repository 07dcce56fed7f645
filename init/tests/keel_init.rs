//! Host tests of `keel init -- CMD`, in the spirit of tini's own: exit codes come back
//! exactly, signals reach CMD, orphans are reaped (with a negative control showing
//! the zombie check does see zombies), exec failures are named. Run as root: the
//! orphan tests use `unshare -fp --mount-proc` for a pid namespace of their own.

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};

const KEEL: &str = env!("CARGO_BIN_EXE_keel");

fn keel_init(args: &[&str]) -> Output {
    Command::new(KEEL).arg("init").args(args).output().expect("run keel init")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn explain(output: &Output) -> String {
    format!("status {:?}\nstdout: {}\nstderr: {}", output.status, text(&output.stdout), text(&output.stderr))
}

#[test]
fn every_exit_code_comes_back_exactly() {
    // Four at a time: 256 runs of keel init + sh stay well under a few seconds.
    let codes: Vec<i32> = (0..=255).collect();
    for chunk in codes.chunks(4) {
        let children: Vec<(i32, Child)> = chunk
            .iter()
            .map(|code| {
                let child = Command::new(KEEL).args(["init", "--", "sh", "-c", &format!("exit {code}")]).spawn().expect("spawn keel init");
                (*code, child)
            })
            .collect();
        for (code, mut child) in children {
            assert_eq!(child.wait().unwrap().code(), Some(code), "sh -c 'exit {code}'");
        }
    }
}

#[test]
fn killed_child_gives_128_plus_signal() {
    let out = keel_init(&["--", "sh", "-c", "kill -KILL $$"]);
    assert_eq!(out.status.code(), Some(137), "{}", explain(&out));
    let out = keel_init(&["--", "sh", "-c", "kill -TERM $$"]);
    assert_eq!(out.status.code(), Some(143), "{}", explain(&out));
}

/// Start keel init on `script` and wait until the script printed its first line.
fn start_ready(script: &str) -> Child {
    let mut child = Command::new(KEEL).args(["init", "--", "sh", "-c", script]).stdout(Stdio::piped()).spawn().expect("spawn keel init");
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready", "the script did not start");
    child
}

#[test]
fn signals_sent_to_keel_init_reach_the_child() {
    let cases = [
        (Signal::SIGTERM, "TERM", 11),
        (Signal::SIGINT, "INT", 12),
        (Signal::SIGHUP, "HUP", 13),
        (Signal::SIGUSR1, "USR1", 14),
        (Signal::SIGUSR2, "USR2", 15),
        (Signal::SIGQUIT, "QUIT", 16),
        (Signal::SIGWINCH, "WINCH", 17),
        (Signal::SIGTSTP, "TSTP", 18),
    ];
    for (signal, name, code) in cases {
        // The trap runs after the current short sleep ends; each signal its own code.
        let script = format!("trap 'exit {code}' {name}; echo ready; while :; do sleep 0.05; done");
        let mut child = start_ready(&script);
        kill(Pid::from_raw(child.id() as i32), signal).unwrap();
        assert_eq!(child.wait().unwrap().code(), Some(code), "{name} was not forwarded");
    }
}

#[test]
fn realtime_signals_are_forwarded_too() {
    let signo = libc::SIGRTMIN() + 6;
    let mut child = start_ready(&format!("trap 'exit 40' {signo}; echo ready; while :; do sleep 0.05; done"));
    // SAFETY: kill(2) takes two integers and touches no memory of this process.
    assert_eq!(unsafe { libc::kill(child.id() as i32, signo) }, 0);
    assert_eq!(child.wait().unwrap().code(), Some(40));
}

#[test]
fn sigterm_to_keel_init_kills_a_child_without_handler_143() {
    let mut child = start_ready("echo ready; exec sleep 30");
    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(143));
}

/// The SigBlk and SigIgn lines of a process's /proc/self/status, as grep printed them.
fn signal_lines(output: &Output) -> Vec<String> {
    text(&output.stdout).lines().map(str::to_string).collect()
}

#[test]
fn child_starts_with_no_blocked_signal_and_ignores_what_it_would_alone() {
    // grep is CMD itself and reads its own status, as tini's test reads the child's.
    let grep = ["grep", "-E", "^Sig(Blk|Ign):", "/proc/self/status"];
    let under_init = keel_init(&[&["--"][..], &grep[..]].concat());
    let alone = Command::new(grep[0]).args(&grep[1..]).output().unwrap();
    let lines = signal_lines(&under_init);
    assert_eq!(lines.len(), 2, "{}", explain(&under_init));
    assert_eq!(lines[0], "SigBlk:\t0000000000000000", "keel init leaked its signal mask to the child");
    assert_eq!(lines[1], signal_lines(&alone)[1], "keel init changed what the child ignores");
}

#[test]
fn missing_command_is_127_and_named() {
    let out = keel_init(&["--", "/no/such/command", "arg"]);
    assert_eq!(out.status.code(), Some(127), "{}", explain(&out));
    let stderr = text(&out.stderr);
    assert!(stderr.starts_with("keel init: exec /no/such/command: No such file or directory"), "{stderr}");
    let out = keel_init(&["no-such-command-on-path"]);
    assert_eq!(out.status.code(), Some(127), "{}", explain(&out));
}

#[test]
fn non_executable_command_is_126() {
    let file = std::env::temp_dir().join(format!("keel-init-noexec-{}", std::process::id()));
    std::fs::write(&file, "#!/bin/sh\nexit 0\n").unwrap();
    let out = keel_init(&["--", file.to_str().unwrap()]);
    let _ = std::fs::remove_file(&file);
    assert_eq!(out.status.code(), Some(126), "{}", explain(&out));
    assert!(text(&out.stderr).contains("Permission denied"), "{}", explain(&out));
}

#[test]
fn no_command_is_a_usage_error() {
    for args in [&[][..], &["--"][..], &["--bogus", "sh"][..]] {
        let out = keel_init(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", explain(&out));
        assert!(text(&out.stderr).contains("usage: keel init [--] CMD [ARGS...]"), "{}", explain(&out));
    }
}

/// Spawns 200 orphans (each `sleep 1` whose subshell parent exits at once), counts
/// those that were handed to PID 1, waits until they have all ended, then counts
/// zombies and the processes left. Printed as `orphans=N zombies=N left=N`.
const ORPHANS_SCRIPT: &str = r#"
i=0
while [ $i -lt 200 ]; do (sleep 1 &); i=$((i+1)); done
orphans=$(ps -eo ppid=,comm= | awk '$1 == 1 && $2 == "sleep"' | wc -l)
sleep 2
zombies=$(ps -eo stat= | grep -c '^Z')
left=$(ps -eo comm= | grep -c '^sleep$')
echo "orphans=$orphans zombies=$zombies left=$left"
"#;

/// The `name=N` value in the script's output.
fn field(output: &Output, name: &str) -> usize {
    let stdout = text(&output.stdout);
    stdout
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix(&format!("{name}=")))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name}= in the output; {}", explain(output)))
}

#[test]
fn orphans_in_a_pid_namespace_are_all_reaped() {
    let out = Command::new("unshare")
        .args(["-fp", "--mount-proc", KEEL, "init", "--", "sh", "-c", ORPHANS_SCRIPT])
        .output()
        .expect("unshare (util-linux) is installed; run as root");
    assert_eq!(out.status.code(), Some(0), "{}", explain(&out));
    assert!(field(&out, "orphans") >= 100, "too few orphans reached PID 1 for the test to mean anything: {}", explain(&out));
    assert_eq!(field(&out, "zombies"), 0, "keel init left zombies: {}", explain(&out));
    assert_eq!(field(&out, "left"), 0, "{}", explain(&out));
}

#[test]
fn negative_control_zombie_check_sees_zombies_when_pid_1_does_not_reap() {
    // Same script, but PID 1 is `sleep`, which never waits: the orphans handed to it
    // stay zombies, and the very same check must count them.
    let out = Command::new("unshare")
        .args(["-fp", "--mount-proc", "sh", "-c", "sh -c \"$0\" & exec sleep 4", ORPHANS_SCRIPT])
        .output()
        .expect("unshare (util-linux) is installed; run as root");
    assert!(field(&out, "orphans") >= 100, "{}", explain(&out));
    assert!(field(&out, "zombies") >= 100, "the zombie check did not see the zombies: {}", explain(&out));
}

#[test]
fn as_a_normal_process_it_is_the_subreaper_of_its_subtree() {
    // The orphan's parent must become keel init ($PPID of the script), and keel init
    // must reap it while the script still runs: /proc/$pid is then gone, not a zombie.
    let script = r#"
pid=$( (sleep 0.3 >/dev/null 2>&1 & echo $!) )
sleep 0.1
echo "parent=$(cut -d' ' -f4 /proc/$pid/stat) init=$PPID"
sleep 0.6
if [ -e /proc/$pid ]; then echo "still=$(cut -d' ' -f3 /proc/$pid/stat)"; else echo reaped; fi
"#;
    let out = keel_init(&["--", "sh", "-c", script]);
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(out.status.code(), Some(0), "{}", explain(&out));
    let init = lines[0].split_whitespace().find_map(|kv| kv.strip_prefix("init=")).unwrap();
    assert_eq!(lines[0], format!("parent={init} init={init}"), "the orphan did not go to keel init");
    assert_eq!(lines[1], "reaped", "{}", explain(&out));
}
