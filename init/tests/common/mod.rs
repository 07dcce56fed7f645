//! The fixture of the `keel run` host tests: a throwaway busybox root filesystem and
//! state directory, and `keel run` of a declaration made from a script.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Output};

/// A throwaway busybox rootfs and state directory for one test.
pub struct Fixture {
    /// The test's directory: `rootfs/`, `state/` and the declarations.
    pub dir: PathBuf,
}

impl Fixture {
    /// A fresh fixture named after the test.
    pub fn new(name: &str) -> Fixture {
        let dir = std::env::temp_dir().join(format!("keel-run-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let rootfs = dir.join("rootfs");
        for sub in ["bin", "proc", "sys", "dev", "etc", "tmp", "mnt"] {
            std::fs::create_dir_all(rootfs.join(sub)).unwrap();
        }
        std::fs::copy("/bin/busybox", rootfs.join("bin/busybox")).expect("busybox-static is installed");
        std::os::unix::fs::symlink("busybox", rootfs.join("bin/sh")).unwrap();
        std::fs::write(rootfs.join("etc/passwd"), "root:x:0:0::/:/bin/sh\nnobody:x:65534:65534::/:/bin/sh\n").unwrap();
        Fixture { dir }
    }

    /// The container's root filesystem directory.
    pub fn rootfs(&self) -> PathBuf {
        self.dir.join("rootfs")
    }

    /// `keel run` of a container running `script` under `sh -c`, declared with `extra`
    /// TOML, not started yet (the caller may change its stdio or pre-exec steps).
    pub fn command(&self, name: &str, script: &str, extra: &str) -> Command {
        // Host tests keep the host's own network untouched: no bridge unless asked.
        let network = if extra.contains("network") { "" } else { "network = \"none\"\n" };
        let toml =
            format!("image = \"{}\"\ncommand = [\"/bin/busybox\", \"sh\", \"-c\", {script:?}]\n{network}{extra}", self.rootfs().display());
        let file = self.dir.join(format!("{name}.toml"));
        std::fs::write(&file, toml).unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_keel"));
        command.arg("run").arg(&file).env("KEEL_STATE_DIR", self.dir.join("state"));
        command
    }

    /// Run `script` under `sh -c` in a container declared with `extra` TOML.
    pub fn run(&self, name: &str, script: &str, extra: &str) -> Output {
        self.command(name, script, extra).output().expect("run keel")
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// What the run printed on stdout.
pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Assert the run exited with `code`; its stdout.
pub fn check(output: &Output, code: i32) -> String {
    let text = stdout(output);
    assert_eq!(output.status.code(), Some(code), "stdout: {text}\nstderr: {}", String::from_utf8_lossy(&output.stderr));
    text
}
