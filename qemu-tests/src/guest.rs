//! One booted QEMU guest: its console, its control channel and its QMP socket.

use crate::image::TestImage;
use keel_build::qemu::{QemuConfig, UefiBoot};
use keel_build::qmp::Qmp;
use keel_supervisor::control::{Client, ClientError, Command, ExecResult, LogsResult};
use keel_supervisor::manager::{ContainerDetail, ContainerInfo};
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// How to boot.
#[derive(Debug, Clone, Default)]
pub struct BootOptions {
    /// Appended to the image's kernel command line.
    pub extra_cmdline: String,
    /// Let a guest reboot (the default makes QEMU exit on reboot, so a reboot loop or a
    /// kernel panic ends the test instead of hanging it).
    pub allow_reboot: bool,
    /// Ports forwarded from the machine running QEMU into the guest.
    pub hostfwd: Vec<keel_build::qemu::HostFwd>,
    /// A raw disk image attached as virtio-blk (`/dev/vda`), e.g. a data disk made with
    /// `keel_build::disk::VarDisk`; it must exist.
    pub disk: Option<PathBuf>,
    /// More raw disk images, attached read-only as virtio-blk after `disk` (`/dev/vdb`,
    /// … when there is a data disk, else from `/dev/vda`), e.g. a config drive.
    pub extra_disks: Vec<PathBuf>,
    /// A file passed by fw_cfg as `opt/com.coreos/config` (the first-boot config).
    pub config: Option<PathBuf>,
    /// Boot this disk image (raw, qcow2 or vhd; from `keel-build disk`) under UEFI
    /// (OVMF) instead of the image's kernel and initramfs; it is the first disk.
    pub uefi_disk: Option<PathBuf>,
    /// Leave out QEMU's i6300esb watchdog (present by default, as on `keel-build run`).
    pub no_watchdog: bool,
    /// Guest RAM in MiB (default: keel-build's). Without a data disk /var is on the tmpfs
    /// root, which may take half of it.
    pub memory_mb: Option<u32>,
}

/// The console seen so far, shared with the thread that reads it.
#[derive(Default)]
struct Console {
    text: Mutex<String>,
    grew: Condvar,
}

/// A running guest; dropping it kills QEMU.
pub struct Guest {
    name: String,
    child: Child,
    console: Arc<Console>,
    control: PathBuf,
    qmp: PathBuf,
    exit: Option<ExitStatus>,
}

static BOOT_COUNT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

impl Guest {
    /// Boot `image` in QEMU (TCG unless KEEL_QEMU_ACCEL=kvm); `name` labels the boot's files.
    pub fn boot(image: &TestImage, name: &str, options: BootOptions) -> Guest {
        let serial = BOOT_COUNT.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let run_dir = image.dir.join(format!("{name}-{}-{serial}", std::process::id()));
        let _ = std::fs::remove_dir_all(&run_dir);
        std::fs::create_dir_all(&run_dir).expect("run dir");
        let control = run_dir.join("control.sock");
        let qmp = run_dir.join("qmp.sock");
        let append = format!("{} {}", image.cmdline, options.extra_cmdline).trim().to_string();
        let mut config = match &options.uefi_disk {
            None => QemuConfig::new(image.vmlinuz.clone(), image.initramfs.clone(), append),
            Some(disk) => {
                let format = keel_build::diskimage::DiskFormat::detect(disk).qemu_name();
                let uefi = UefiBoot::ovmf(disk.clone(), format, run_dir.join("OVMF_VARS.fd")).expect("OVMF (install ovmf)");
                QemuConfig::uefi(uefi)
            }
        };
        config.control_socket = Some(control.clone());
        config.qmp_socket = Some(qmp.clone());
        config.no_reboot = !options.allow_reboot;
        config.hostfwd = options.hostfwd.clone();
        config.disk = options.disk.clone();
        config.extra_disks = options.extra_disks.clone();
        config.fw_cfg_config = options.config.clone();
        config.watchdog = !options.no_watchdog;
        if let Some(memory_mb) = options.memory_mb {
            config.memory_mb = memory_mb;
        }
        let mut command = config.command();
        command.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::inherit());
        let mut child = command.spawn().expect("start qemu-system-x86_64");
        let console = Arc::new(Console::default());
        let stdout = child.stdout.take().expect("qemu stdout");
        let log_path = run_dir.join("console.log");
        let sink = Arc::clone(&console);
        std::thread::spawn(move || copy_console(stdout, &sink, log_path));
        Guest { name: name.to_string(), child, console, control, qmp, exit: None }
    }

    /// The QEMU-side socket of the guest's control channel (for a keelctl run on this machine).
    pub fn control_socket(&self) -> &std::path::Path {
        &self.control
    }

    /// Everything the console printed so far.
    pub fn console(&self) -> String {
        self.console.text.lock().map(|t| t.clone()).unwrap_or_default()
    }

    /// Wait until `marker` has appeared `count` times on the console; panic with the
    /// console on timeout or if QEMU exits first.
    pub fn wait_for_count(&mut self, marker: &str, count: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut text = self.console.text.lock().expect("console lock");
        loop {
            if text.matches(marker).count() >= count {
                return;
            }
            let now = Instant::now();
            if now >= deadline {
                drop(text);
                self.fail(&format!("timed out after {timeout:?} waiting for {marker:?} x{count}"));
            }
            let wait = (deadline - now).min(Duration::from_millis(200));
            text = self.console.grew.wait_timeout(text, wait).expect("console lock").0;
            if self.exit.is_none() {
                if let Ok(Some(status)) = self.child.try_wait() {
                    self.exit = Some(status);
                }
            }
            if self.exit.is_some() && text.matches(marker).count() < count {
                drop(text);
                std::thread::sleep(Duration::from_millis(200));
                if self.console().matches(marker).count() >= count {
                    return;
                }
                self.fail(&format!("QEMU exited ({:?}) before {marker:?} x{count}", self.exit));
            }
        }
    }

    /// Wait until `marker` appears on the console.
    pub fn wait_for(&mut self, marker: &str, timeout: Duration) {
        self.wait_for_count(marker, 1, timeout)
    }

    /// Wait for `keel: ready`.
    pub fn wait_ready(&mut self) {
        self.wait_for("keel: ready", Duration::from_secs(120))
    }

    /// Panic with the test's message and the whole console.
    pub fn fail(&self, message: &str) -> ! {
        panic!("[{}] {message}\n----- console -----\n{}\n-------------------", self.name, self.console())
    }

    /// Send one control request over the virtio-serial channel.
    /// Queries that change nothing are asked once more on a new connection when the
    /// first answer does not come in time: a TCG guest on a loaded machine can stall
    /// for a while, and asking again is harmless for them.
    pub fn call(&self, command: Command, timeout: Duration) -> Result<serde_json::Value, ClientError> {
        let query = matches!(
            command,
            Command::Status
                | Command::Ps
                | Command::Inspect { .. }
                | Command::Logs { .. }
                | Command::NetworkLs
                | Command::NetworkInspect { .. }
                | Command::Firstboot
                | Command::ImageLs
                | Command::ImageJobs
        );
        match Client::connect(&self.control)?.call(command.clone(), timeout) {
            Err(ClientError::Io { .. }) if query => Client::connect(&self.control)?.call(command, timeout),
            other => other,
        }
    }

    /// Run a command on the guest host and return what it did.
    pub fn exec(&self, argv: &[&str]) -> ExecResult {
        self.exec_in(None, argv)
    }

    /// Run a command on the guest host, or inside one of its containers.
    pub fn exec_in(&self, container: Option<&str>, argv: &[&str]) -> ExecResult {
        let argv = argv.iter().map(|s| s.to_string()).collect();
        let command = Command::Exec { argv, timeout_secs: Some(120), container: container.map(str::to_string) };
        let result = self.call(command, Duration::from_secs(150)).unwrap_or_else(|e| self.fail(&format!("exec failed: {e}")));
        serde_json::from_value(result).unwrap_or_else(|e| self.fail(&format!("bad exec result: {e}")))
    }

    /// `keelctl ps`: every container.
    pub fn ps(&self) -> Vec<ContainerInfo> {
        let result = self.call(Command::Ps, Duration::from_secs(30)).unwrap_or_else(|e| self.fail(&format!("ps: {e}")));
        serde_json::from_value(result).unwrap_or_else(|e| self.fail(&format!("bad ps result: {e}")))
    }

    /// One container's ps line.
    pub fn container(&self, name: &str) -> ContainerInfo {
        self.ps().into_iter().find(|c| c.name == name).unwrap_or_else(|| self.fail(&format!("no container {name}")))
    }

    /// Poll `keelctl ps` until `ok` holds for container `name`; returns its last line.
    pub fn wait_container(&self, name: &str, timeout: Duration, ok: impl Fn(&ContainerInfo) -> bool) -> ContainerInfo {
        let deadline = Instant::now() + timeout;
        loop {
            let info = self.container(name);
            if ok(&info) {
                return info;
            }
            if Instant::now() > deadline {
                self.fail(&format!("container {name} did not reach the expected state: {info:?}"));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// `keelctl inspect NAME`.
    pub fn inspect(&self, name: &str) -> ContainerDetail {
        let result = self
            .call(Command::Inspect { name: name.into() }, Duration::from_secs(30))
            .unwrap_or_else(|e| self.fail(&format!("inspect {name}: {e}")));
        serde_json::from_value(result).unwrap_or_else(|e| self.fail(&format!("bad inspect result: {e}")))
    }

    /// `keelctl logs NAME`: every record line.
    pub fn logs(&self, name: &str) -> Vec<String> {
        let command = Command::Logs { name: name.into(), tail: None, offset: None };
        let result = self.call(command, Duration::from_secs(30)).unwrap_or_else(|e| self.fail(&format!("logs {name}: {e}")));
        let logs: LogsResult = serde_json::from_value(result).unwrap_or_else(|e| self.fail(&format!("bad logs result: {e}")));
        logs.lines
    }

    /// Run one QMP command (e.g. `system_powerdown`).
    pub fn qmp(&self, command: &str) -> serde_json::Value {
        let mut qmp = Qmp::connect(&self.qmp, Duration::from_secs(10)).unwrap_or_else(|e| self.fail(&format!("qmp: {e}")));
        qmp.execute(command).unwrap_or_else(|e| self.fail(&format!("qmp {command}: {e}")))
    }

    /// Wait for QEMU to exit; `None` on timeout.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(status) = self.exit {
                return Some(status);
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                self.exit = Some(status);
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        if self.exit.is_none() && matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn copy_console(stdout: std::process::ChildStdout, console: &Console, log_path: PathBuf) {
    let mut log = std::fs::File::create(log_path).ok();
    let mut reader = BufReader::new(stdout);
    let mut line = Vec::new();
    while reader.read_until(b'\n', &mut line).map(|n| n > 0).unwrap_or(false) {
        let text = String::from_utf8_lossy(&line).replace('\r', "");
        if let Some(log) = log.as_mut() {
            let _ = log.write_all(text.as_bytes());
        }
        if let Ok(mut all) = console.text.lock() {
            all.push_str(&text);
        }
        console.grew.notify_all();
        line.clear();
    }
}
