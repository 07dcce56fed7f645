//! Host test (no QEMU) of keel's seccomp allowlist with real programs: `keel run` starts a
//! busybox root filesystem and a glibc one assembled from this host's binaries and the
//! libraries `ldd` names, and their usual programs must work under the filter. keel-probe
//! checks inside that io_uring_setup and CLONE_NEWUSER fail while threads still start;
//! the same probe run on the host is the negative control (there those calls succeed or
//! reach the kernel).
//!
//! Needs root (namespaces); prints a SKIP line otherwise, or fails when
//! `KEEL_REQUIRE_ROOT_TESTS` is set. Uses the `keel` binary built beside the tests
//! (`cargo build --workspace --bins` first, as for the QEMU tests).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use keel_qemu_tests::{keel_binary, target_dir};

/// Programs of the glibc root filesystem (found in /usr/bin or /bin on the host).
#[rustfmt::skip]
const GLIBC_PROGRAMS: &[&str] = &[
    "bash", "ls", "cat", "sort", "date", "id", "grep", "find", "tar", "gzip", "sleep", "env",
    "mkdir", "rm", "cp", "head", "wc", "tr", "uname", "stat", "sha256sum", "xargs", "echo",
];

/// One throwaway directory with the root filesystems and keel's state.
struct Fixture {
    dir: PathBuf,
}

impl Fixture {
    fn new(name: &str) -> Fixture {
        let dir = target_dir().join(format!("seccomp-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Fixture { dir }
    }

    /// A root filesystem skeleton at `dir/name`.
    fn rootfs(&self, name: &str) -> PathBuf {
        let root = self.dir.join(name);
        for sub in ["bin", "proc", "sys", "dev", "etc", "tmp", "mnt", "usr/bin"] {
            std::fs::create_dir_all(root.join(sub)).unwrap();
        }
        let passwd = "root:x:0:0::/:/bin/sh\nnobody:x:65534:65534::/:/bin/sh\n";
        std::fs::write(root.join("etc/passwd"), passwd).unwrap();
        std::fs::write(root.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n").unwrap();
        copy_file(Path::new(env!("CARGO_BIN_EXE_keel-probe")), &root.join("bin/keel-probe"));
        root
    }

    /// Runs `argv` in `root` with `keel run`.
    fn run(&self, name: &str, root: &Path, argv: &[&str]) -> Output {
        let toml = format!("image = {:?}\ncommand = {argv:?}\nnetwork = \"none\"\n", root.display().to_string());
        let file = self.dir.join(format!("{name}.toml"));
        std::fs::write(&file, toml).unwrap();
        Command::new(keel_binary()).arg("run").arg(&file).env("KEEL_STATE_DIR", self.dir.join("state")).output().expect("run keel")
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// True when this test can run here; prints a visible SKIP otherwise.
fn privileged(test: &str) -> bool {
    if nix::unistd::Uid::effective().is_root() {
        return true;
    }
    assert!(std::env::var_os("KEEL_REQUIRE_ROOT_TESTS").is_none(), "{test}: needs root and KEEL_REQUIRE_ROOT_TESTS is set");
    eprintln!("SKIP {test}: needs root");
    false
}

/// Copies `from` (following links) to `to`, creating parents, keeping the mode.
fn copy_file(from: &Path, to: &Path) {
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    std::fs::copy(from, to).unwrap_or_else(|e| panic!("copy {} to {}: {e}", from.display(), to.display()));
}

/// The host path of `program`.
fn host_program(program: &str) -> PathBuf {
    ["/usr/bin", "/bin"]
        .iter()
        .map(|dir| Path::new(dir).join(program))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{program} is not installed on this host"))
}

/// The shared libraries `binary` loads, with the loader, as absolute paths (from `ldd`).
fn libraries(binary: &Path) -> Vec<PathBuf> {
    let out = Command::new("ldd").arg(binary).output().expect("run ldd");
    String::from_utf8_lossy(&out.stdout).split_whitespace().filter(|word| word.starts_with('/')).map(PathBuf::from).collect()
}

/// Copies `binary` to `root/usr/bin/name` and its libraries to the same paths under `root`.
fn install(root: &Path, name: &str, binary: &Path) {
    copy_file(binary, &root.join("usr/bin").join(name));
    for lib in libraries(binary) {
        let target = root.join(lib.strip_prefix("/").unwrap());
        if !target.exists() {
            copy_file(&lib, &target);
        }
    }
}

/// A glibc root filesystem from the host's programs; with python3 (the interpreter, the
/// `encodings` package and `os.py`, enough for `python3 -S`) when the host has it.
fn glibc_rootfs(fx: &Fixture) -> (PathBuf, bool) {
    let root = fx.rootfs("glibc");
    for program in GLIBC_PROGRAMS {
        install(&root, program, &host_program(program));
    }
    std::os::unix::fs::symlink("../usr/bin/bash", root.join("bin/sh")).unwrap();
    let python = Path::new("/usr/bin/python3");
    let Ok(real) = python.canonicalize() else {
        eprintln!("SKIP python3 in the glibc rootfs: /usr/bin/python3 is not installed");
        return (root, false);
    };
    let version = real.file_name().unwrap().to_string_lossy().into_owned();
    let stdlib = Path::new("/usr/lib").join(&version);
    install(&root, "python3", &real);
    let target = root.join("usr/lib").join(&version);
    copy_file(&stdlib.join("os.py"), &target.join("os.py"));
    std::fs::create_dir_all(target.join("lib-dynload")).unwrap();
    for entry in std::fs::read_dir(stdlib.join("encodings")).unwrap().flatten() {
        if entry.path().extension().is_some_and(|e| e == "py") {
            copy_file(&entry.path(), &target.join("encodings").join(entry.file_name()));
        }
    }
    (root, true)
}

fn text(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Asserts `output` exited 0 and printed every line of `want`, in order, and nothing else.
fn expect_lines(what: &str, output: &Output, want: &[&str]) {
    let stdout = text(output);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{what}: stdout:\n{stdout}\nstderr:\n{stderr}");
    let got: Vec<&str> = stdout.lines().collect();
    assert_eq!(got, want, "{what}: stderr:\n{stderr}");
}

/// The usual programs of a glibc system, each step printing one line.
const GLIBC_SCRIPT: &str = r#"set -e
echo hello > /tmp/a.txt && cat /tmp/a.txt
printf 'b\na\nc\n' | sort | tr -d '\n'; echo
ls / | grep -c usr
date -u -d @0 +%Y
id -u
find /usr/bin -name bash
mkdir -p /tmp/d && cp /tmp/a.txt /tmp/d/ && tar -czf /tmp/x.tgz -C /tmp d && tar -tzf /tmp/x.tgz | head -1
gzip -c /tmp/a.txt | gzip -dc
sha256sum /tmp/a.txt | head -c 8; echo
( sleep 0.1 & wait ); echo waited
stat -c %s /tmp/a.txt
echo a b c | xargs -n1 | wc -l
uname -s
env -i PATH=/usr/bin bash -c 'echo subshell'
rm -r /tmp/d && echo removed
"#;

#[test]
fn usual_programs_run_under_the_filter_and_attacks_fail() {
    if !privileged("usual_programs_run_under_the_filter_and_attacks_fail") {
        return;
    }
    let fx = Fixture::new("rootfs");

    // busybox: its applets, and the probe.
    let busybox = fx.rootfs("busybox");
    copy_file(Path::new("/bin/busybox"), &busybox.join("bin/busybox"));
    // Every applet as a link, as a busybox image has them (tar -z runs `gzip`).
    let list = Command::new("/bin/busybox").arg("--list").output().expect("busybox --list");
    for applet in String::from_utf8_lossy(&list.stdout).lines().filter(|a| *a != "busybox") {
        std::os::unix::fs::symlink("busybox", busybox.join("bin").join(applet)).unwrap();
    }
    let script = "set -e; echo hi > /tmp/a; cat /tmp/a; printf 'b\\na\\n' | sort | tr -d '\\n'; echo; \
        ls / | grep -c bin; date -u -d @0 +%Y; id -u; find /bin -name sh; \
        tar -czf /tmp/x.tgz -C /tmp a; tar -tzf /tmp/x.tgz; gzip -c /tmp/a | gzip -dc; \
        sed 's/h/H/' /tmp/a; echo 1 2 | awk '{print $2}'; (sleep 0.1 & wait); echo waited; \
        ps | grep -c ps >/dev/null && echo ps; seq 3 | wc -l; mkdir /tmp/d; rm -r /tmp/d; echo done";
    let out = fx.run("bb", &busybox, &["/bin/busybox", "sh", "-c", script]);
    let want = ["hi", "ab", "1", "1970", "0", "/bin/sh", "a", "hi", "Hi", "2", "waited", "ps", "3", "done"];
    expect_lines("busybox", &out, &want);

    // glibc: host programs and their libraries.
    let (glibc, python) = glibc_rootfs(&fx);
    let script = if python { format!("{GLIBC_SCRIPT}python3 -S -c 'print(6 * 7)'\n") } else { GLIBC_SCRIPT.to_string() };
    let out = fx.run("glibc", &glibc, &["/usr/bin/bash", "-c", &script]);
    let mut want = vec![
        "hello",
        "abc",
        "1",
        "1970",
        "0",
        "/usr/bin/bash",
        "d/",
        "hello",
        "5891b5b5",
        "waited",
        "6",
        "3",
        "Linux",
        "subshell",
        "removed",
    ];
    if python {
        want.push("42");
    }
    expect_lines("glibc", &out, &want);

    // The probe inside (static glibc: its thread goes through clone3 -> ENOSYS -> clone).
    let probe_want = |io_uring: &str, newuser: &str| {
        vec![
            format!("io_uring_setup: {io_uring}"),
            format!("clone_newuser: {newuser}"),
            format!("unshare_newuser: {newuser}"),
            "syscall_1000: ENOSYS".to_string(),
            "personality_query: ok".to_string(),
            "thread: ok".to_string(),
        ]
    };
    for (name, root) in [("bb-probe", &busybox), ("glibc-probe", &glibc)] {
        let out = fx.run(name, root, &["/bin/keel-probe", "seccomp"]);
        let want = probe_want("EPERM", "EPERM");
        let want: Vec<&str> = want.iter().map(String::as_str).collect();
        expect_lines(name, &out, &want);
    }

    // Negative control: the same probe on the host, outside any filter, reaches the kernel.
    let out = Command::new(env!("CARGO_BIN_EXE_keel-probe")).arg("seccomp").output().unwrap();
    let want = probe_want("EFAULT", "ok");
    let want: Vec<&str> = want.iter().map(String::as_str).collect();
    expect_lines("probe on the host", &out, &want);
}
