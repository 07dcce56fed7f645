//! Issue 14 point 3 (containers): `keelctl apply | diff | rm | reload` on a running host,
//! driven by keelctl on this machine over the guest's control channel. Three containers
//! at boot (web depends on db with `started`); each change is checked by the pids of the
//! containers it must not touch, and each refusal by what stayed as it was.

use keel_qemu_tests::output_text as text;
use keel_qemu_tests::{build_image, busybox_host, declare_container, keel_binary, target_dir, BootOptions, Guest, BUSYBOX_IMAGE};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

const DB: &str = "image = \"@IMAGE@\"\ncommand = [\"/bin/sleep\", \"3600\"]\nstop_timeout = \"1s\"\nnetwork = \"none\"\n";
const WEB: &str =
    "image = \"@IMAGE@\"\ncommand = [\"/bin/sleep\", \"3601\"]\ndepends_on = [\"db\"]\nstop_timeout = \"1s\"\nnetwork = \"none\"\n";
const LONE: &str =
    "image = \"@IMAGE@\"\ncommand = [\"/bin/sh\", \"-c\", \"echo lone-up; exec sleep 3602\"]\nstop_timeout = \"1s\"\nnetwork = \"none\"\n";
const EXTRA: &str =
    "image = \"@IMAGE@\"\ncommand = [\"/bin/sh\", \"-c\", \"echo extra-up; exec sleep 3603\"]\nstop_timeout = \"1s\"\nnetwork = \"none\"\n";

/// `keel ctl --socket GUEST ARGS…` run here.
fn keelctl(guest: &Guest, args: &[&str]) -> Output {
    let mut command = std::process::Command::new(keel_binary());
    command.args(["ctl", "--timeout", "30", "--socket"]).arg(guest.control_socket());
    command.args(args).output().unwrap()
}

/// [`keelctl`] for a request that may be sent twice (a query or a refusal): asked once
/// more when its answer did not come in time (the virtio-serial channel between QEMU
/// and a loaded TCG guest can drop a request; see the harness's `Guest::call`).
fn keelctl_again(guest: &Guest, args: &[&str]) -> Output {
    let out = keelctl(guest, args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("Resource temporarily unavailable") || stderr.contains("closed before an answer") {
        eprintln!("[apply] keelctl {args:?}: no answer ({}); asking again", stderr.trim());
        return keelctl(guest, args);
    }
    out
}

/// keelctl's stdout, failing the test if it did not succeed.
fn ok(guest: &Guest, args: &[&str]) -> String {
    let out = keelctl(guest, args);
    if !out.status.success() {
        guest.fail(&format!("keelctl {args:?} failed: {}", text(&out)));
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Write declaration `name` (with `@IMAGE@` filled in) into `dir` here; its path as text.
fn local(dir: &Path, name: &str, body: &str) -> String {
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, body.replace("@IMAGE@", BUSYBOX_IMAGE)).unwrap();
    path.display().to_string()
}

/// The pid of every running container, by name.
fn pids(guest: &Guest) -> Vec<(String, Option<i32>)> {
    guest.ps().into_iter().map(|c| (c.name, c.pid)).collect()
}

fn pid(guest: &Guest, name: &str) -> i32 {
    guest.wait_container(name, Duration::from_secs(60), |c| c.state == "running").pid.unwrap()
}

/// The files of /etc/keel/containers on the guest.
fn listing(guest: &Guest) -> String {
    guest.exec(&["ls", "/etc/keel/containers"]).stdout
}

#[test]
fn apply_diff_rm_and_reload_touch_only_what_changed() {
    let dir: PathBuf = target_dir().join("qemu-tests").join("apply");
    std::fs::create_dir_all(&dir).unwrap();
    let mut host = busybox_host("keel-apply", &["virtio_pci", "virtio_console", "button", "evdev", "overlay"], 3);
    for (name, body) in [("db", DB), ("web", WEB), ("lone", LONE)] {
        declare_container(&dir, &mut host, name, body);
    }
    let image = build_image("apply", &host, env!("CARGO_BIN_EXE_keel-probe").as_ref());
    let mut guest = Guest::boot(&image, "apply", BootOptions::default());
    guest.wait_ready();
    let files = dir.join("client");
    std::fs::create_dir_all(&files).unwrap();
    let (db, web, lone) = (pid(&guest, "db"), pid(&guest, "web"), pid(&guest, "lone"));

    // diff names what apply would do and writes nothing (the control for apply below).
    let extra = local(&files, "extra", EXTRA);
    let diff = keelctl_again(&guest, &["diff", &extra]);
    assert!(diff.status.success(), "{}", text(&diff));
    let diff = String::from_utf8_lossy(&diff.stdout);
    assert_eq!(diff, "unchanged db\nadd extra\nunchanged lone\nunchanged web\n", "{diff}");
    assert_eq!(listing(&guest), "db.toml\nlone.toml\nweb.toml\n");

    // apply adds a container: written, started; the others keep their processes.
    let applied = ok(&guest, &["apply", &extra]);
    assert!(applied.starts_with("unchanged db\nadd extra\n") && applied.contains("file /etc/keel/containers/extra.toml"), "{applied}");
    pid(&guest, "extra");
    assert_eq!(guest.exec(&["cat", "/etc/keel/containers/extra.toml"]).stdout, EXTRA.replace("@IMAGE@", BUSYBOX_IMAGE));
    assert_eq!((pid(&guest, "db"), pid(&guest, "web"), pid(&guest, "lone")), (db, web, lone));
    let extra_pid = pid(&guest, "extra");

    // A comment-only edit (keys reordered, spacing changed) is written and touches nothing.
    let commented = format!("# the database, reordered\nnetwork   =   \"none\"\n{}", DB.replace("network = \"none\"\n", ""));
    let db_file = local(&files, "db", &commented);
    let out = ok(&guest, &["apply", &db_file]);
    assert!(out.starts_with("unchanged db\nunchanged extra\nunchanged lone\nunchanged web\n"), "{out}");
    assert!(guest.exec(&["cat", "/etc/keel/containers/db.toml"]).stdout.starts_with("# the database, reordered"));
    std::thread::sleep(Duration::from_secs(3));
    let before = pids(&guest);
    assert_eq!(before.iter().find(|(n, _)| n == "db").unwrap().1, Some(db), "{before:?}");
    assert_eq!(before.iter().find(|(n, _)| n == "web").unwrap().1, Some(web), "{before:?}");

    // A real change restarts it and its `started` dependent, dependent first; the others stay.
    let changed = local(&files, "db", &format!("{commented}env = {{ MODE = \"fast\" }}\n"));
    let out = ok(&guest, &["apply", &changed]);
    assert!(out.starts_with("change db: env\n") && out.contains("restart-dependent web (after db)\n"), "{out}");
    assert!(out.contains("unchanged lone\n") && out.contains("unchanged extra\n"), "{out}");
    let db2 = guest.wait_container("db", Duration::from_secs(60), |c| c.state == "running" && c.pid != Some(db)).pid.unwrap();
    let web2 = guest.wait_container("web", Duration::from_secs(60), |c| c.state == "running" && c.pid != Some(web)).pid.unwrap();
    assert_eq!((pid(&guest, "lone"), pid(&guest, "extra")), (lone, extra_pid), "an unchanged container was restarted");
    let env = guest.exec_in(Some("db"), &["sh", "-c", "echo $MODE"]);
    assert_eq!(env.stdout, "fast\n", "{env:?}");
    let console = guest.console();
    let at = |needle: &str| console.find(needle).unwrap_or_else(|| guest.fail(&format!("console lacks {needle:?}")));
    assert!(at("container web: stopping") < at("container db: stopping"), "db was stopped before web, which depends on it");
    eprintln!("[apply] db {db} -> {db2}, web {web} -> {web2}; lone {lone} and extra {extra_pid} untouched");

    // A bad file changes nothing (not even the good file beside it) and is named file:line:key.
    let bad = local(&files, "bad", "image = \"/x\"\ncommand = [\"/x\"]\n\nstop_timeout = \"soon\"\n");
    let good = local(&files, "good", LONE);
    let out = keelctl_again(&guest, &["apply", &good, &bad]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("{bad}:4: stop_timeout: ")) && stderr.contains("nothing was changed"), "{stderr}");
    assert_eq!(listing(&guest), "db.toml\nextra.toml\nlone.toml\nweb.toml\n");
    let dangling = local(&files, "web", &WEB.replace("\"db\"", "\"ghost\""));
    let stderr = String::from_utf8_lossy(&keelctl_again(&guest, &["apply", &dangling]).stderr).into_owned();
    assert!(stderr.contains(&format!("{dangling}:3: depends_on.ghost: no container ghost is declared")), "{stderr}");
    assert_eq!((pid(&guest, "db"), pid(&guest, "web")), (db2, web2));

    // An edit by hand does nothing until reload (the control), which then restarts only lone.
    let edit = "sed -i 's/3602/3612/' /etc/keel/containers/lone.toml";
    assert_eq!(guest.exec(&["sh", "-c", edit]).exit_code, 0);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(pid(&guest, "lone"), lone, "a hand edit alone restarted lone");
    let out = ok(&guest, &["reload"]);
    assert!(out.contains("change lone: command\n") && out.contains("unchanged db\n") && out.contains("unchanged web\n"), "{out}");
    assert!(out.contains("network.toml: no network changes"), "{out}");
    let lone2 = guest.wait_container("lone", Duration::from_secs(60), |c| c.state == "running" && c.pid != Some(lone)).pid.unwrap();
    assert_eq!((pid(&guest, "db"), pid(&guest, "web"), pid(&guest, "extra")), (db2, web2, extra_pid));
    let args = guest.exec(&["sh", "-c", &format!("tr '\\0' ' ' < /proc/{lone2}/cmdline")]).stdout;
    assert!(args.contains("3612"), "{args}");

    // rm refuses a container others depend on, naming the dependent's file, line and key.
    let out = keelctl_again(&guest, &["rm", "db"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("/etc/keel/containers/web.toml:3: depends_on.db: no container db is declared"),
        "{}",
        text(&out)
    );
    assert_eq!(pid(&guest, "db"), db2);

    // rm --purge deletes the declaration, the state directory and the logs; rm alone keeps
    // them (the control: lone's log and state stay).
    let state = |name: &str| format!("/var/lib/keel/containers/{name}");
    let log = |name: &str| format!("/var/log/keel/{name}.log");
    for name in ["extra", "lone"] {
        let there = guest.exec(&["sh", "-c", &format!("test -d {} && test -f {}", state(name), log(name))]);
        assert_eq!(there.exit_code, 0, "{name}: no state dir or log before rm: {there:?}");
    }
    assert!(ok(&guest, &["rm", "--purge", "extra"]).starts_with("remove extra\n"));
    assert!(ok(&guest, &["rm", "lone"]).starts_with("remove lone\n"));
    let mut purged = false;
    for _ in 0..100 {
        let gone = guest.exec(&["sh", "-c", &format!("test ! -e {} && test ! -e {}", state("extra"), log("extra"))]);
        if gone.exit_code == 0 {
            purged = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(purged, "extra's state was not purged: {}", guest.exec(&["ls", "-la", "/var/lib/keel/containers", "/var/log/keel"]).stdout);
    let kept = guest.exec(&["sh", "-c", &format!("test -d {} && test -f {}", state("lone"), log("lone"))]);
    assert_eq!(kept.exit_code, 0, "rm without --purge deleted lone's state: {kept:?}");
    assert_eq!(listing(&guest), "db.toml\nweb.toml\n");
    let names: Vec<String> = guest.ps().into_iter().map(|c| c.name).collect();
    assert_eq!(names, ["db", "web"]);
    assert_eq!((pid(&guest, "db"), pid(&guest, "web")), (db2, web2));
    assert!(guest.console().contains("purge"), "no purge job on the console");
}
