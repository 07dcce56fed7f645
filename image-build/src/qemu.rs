//! The QEMU command line for booting an image.
//!
//! [`QemuConfig::command`] is a pure argument builder; reading `KEEL_QEMU_ACCEL` is
//! done separately by [`Accel::from_env`]. TCG is the default because KVM is not
//! usable on every machine keel is built on.

use std::fmt;
use std::path::PathBuf;
use std::process::Command;
use std::str::FromStr;

use crate::image::CONTROL_PORT;

/// The QEMU binary.
pub const QEMU: &str = "qemu-system-x86_64";
/// The fw_cfg key of the first-boot config (the one Fedora CoreOS uses), read in the
/// guest by keel-init's `fwcfg` module.
pub const FW_CFG_CONFIG_KEY: &str = "opt/com.coreos/config";
/// The machine type: q35 (ICH9 chipset, PCI Express root bus).
/// Its ACPI tables route each PCI interrupt in APIC mode through a link with one fixed
/// GSI, so binding a PCI driver evaluates almost no AML. On i440fx (`pc`) every device
/// behind one of the four PIIX links has the kernel's ACPI interpreter choose and
/// program the link: about 0.1 s per virtio device under TCG, 0.2 s of each boot.
pub const MACHINE: &str = "q35";
/// Default guest memory in MiB.
pub const DEFAULT_MEMORY_MB: u32 = 512;

/// How QEMU executes guest code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Accel {
    /// Software emulation; works everywhere.
    #[default]
    Tcg,
    /// Hardware virtualisation through /dev/kvm, with the host CPU model.
    Kvm,
}

impl Accel {
    /// `Kvm` when the environment variable `KEEL_QEMU_ACCEL` is `kvm`, else `Tcg`.
    pub fn from_env() -> Accel {
        Accel::from_setting(std::env::var("KEEL_QEMU_ACCEL").ok().as_deref())
    }

    /// The accelerator named by a `KEEL_QEMU_ACCEL` value.
    pub fn from_setting(value: Option<&str>) -> Accel {
        match value.map(str::trim) {
            Some(v) if v.eq_ignore_ascii_case("kvm") => Accel::Kvm,
            _ => Accel::Tcg,
        }
    }
}

/// Why a `--hostfwd` value was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid port forward {value:?}: {reason} (expected tcp:HOSTPORT-:GUESTPORT, e.g. tcp:8080-:80)")]
pub struct HostFwdError {
    /// The rejected value.
    pub value: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// A forwarded port, written `tcp:HOSTPORT-:GUESTPORT` (or `udp:...`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostFwd {
    /// `tcp` or `udp`.
    pub udp: bool,
    /// Port on the host (QEMU listens on all host addresses).
    pub host_port: u16,
    /// Port in the guest.
    pub guest_port: u16,
}

impl HostFwd {
    /// The form QEMU's user network expects: `tcp::HOSTPORT-:GUESTPORT`.
    pub fn to_qemu(&self) -> String {
        let proto = if self.udp { "udp" } else { "tcp" };
        format!("{proto}::{}-:{}", self.host_port, self.guest_port)
    }
}

impl FromStr for HostFwd {
    type Err = HostFwdError;

    fn from_str(value: &str) -> Result<Self, HostFwdError> {
        let err = |reason| HostFwdError { value: value.to_string(), reason };
        let (proto, rest) = value.split_once(':').ok_or_else(|| err("missing protocol"))?;
        let udp = match proto {
            "tcp" => false,
            "udp" => true,
            _ if proto.bytes().all(|b| b.is_ascii_digit()) => return Err(err("missing protocol")),
            _ => return Err(err("the protocol must be tcp or udp")),
        };
        let (host, guest) = rest.split_once("-:").ok_or_else(|| err("missing \"-:\" between the ports"))?;
        let port = |text: &str, which| match text.parse::<u16>() {
            Ok(0) | Err(_) => Err(err(which)),
            Ok(port) => Ok(port),
        };
        let host_port = port(host, "the host port must be a number from 1 to 65535")?;
        let guest_port = port(guest, "the guest port must be a number from 1 to 65535")?;
        Ok(HostFwd { udp, host_port, guest_port })
    }
}

impl fmt::Display for HostFwd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let proto = if self.udp { "udp" } else { "tcp" };
        write!(f, "{proto}:{}-:{}", self.host_port, self.guest_port)
    }
}

/// Debian's OVMF (package ovmf): the UEFI firmware, read-only.
pub const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
/// The matching template of the firmware's variable store (copied per machine).
pub const OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";

/// Booting a disk image under UEFI instead of a kernel and initramfs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UefiBoot {
    /// The firmware code (e.g. [`OVMF_CODE`]).
    pub code: PathBuf,
    /// A writable copy of the variable store.
    pub vars: PathBuf,
    /// The disk image, attached as the first virtio-blk disk with boot index 0.
    pub disk: PathBuf,
    /// Its format as QEMU names it (`raw`, `qcow2`, `vpc`).
    pub format: &'static str,
}

impl UefiBoot {
    /// Debian's OVMF booting `disk`; the variable store template is copied to `vars`
    /// unless a store is there already (it is the machine's NVRAM).
    pub fn ovmf(disk: PathBuf, format: &'static str, vars: PathBuf) -> std::io::Result<UefiBoot> {
        if !vars.exists() {
            std::fs::copy(OVMF_VARS, &vars)
                .map_err(|e| std::io::Error::new(e.kind(), format!("copy {OVMF_VARS} to {}: {e} (install ovmf)", vars.display())))?;
        }
        Ok(UefiBoot { code: PathBuf::from(OVMF_CODE), vars, disk, format })
    }
}

/// Everything that decides the QEMU command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QemuConfig {
    /// Kernel image.
    pub kernel: PathBuf,
    /// Initramfs.
    pub initrd: PathBuf,
    /// Kernel command line.
    pub append: String,
    /// Guest memory in MiB.
    pub memory_mb: u32,
    /// Unix socket (QEMU is the server) for the guest's "org.keel.control" port.
    pub control_socket: Option<PathBuf>,
    /// Unix socket (QEMU is the server) for QMP.
    pub qmp_socket: Option<PathBuf>,
    /// Ports forwarded from the host to the guest.
    pub hostfwd: Vec<HostFwd>,
    /// A raw disk image attached as a virtio-blk disk (`/dev/vda` in the guest): the
    /// data disk that makes /var persistent.
    pub disk: Option<PathBuf>,
    /// More raw disk images, attached read-only as virtio-blk disks after [`Self::disk`]
    /// (`/dev/vdb`, … in the guest when there is a data disk), e.g. a config drive.
    pub extra_disks: Vec<PathBuf>,
    /// A first-boot config passed by fw_cfg under [`FW_CFG_CONFIG_KEY`].
    pub fw_cfg_config: Option<PathBuf>,
    /// Arguments appended verbatim at the end.
    pub extra_args: Vec<String>,
    /// Exit instead of rebooting when the guest reboots (or panics).
    pub no_reboot: bool,
    /// An i6300esb hardware watchdog that resets the machine when it fires (keel arms
    /// and pets it; a wedged PID 1 then reboots the guest). On by default.
    pub watchdog: bool,
    /// The accelerator.
    pub accel: Accel,
    /// Boot a disk image under UEFI; `kernel`, `initrd` and `append` are then unused.
    pub uefi: Option<UefiBoot>,
}

impl QemuConfig {
    /// A configuration with defaults: 512 MiB, TCG, no sockets, no forwards, no disks,
    /// no fw_cfg config.
    pub fn new(kernel: PathBuf, initrd: PathBuf, append: String) -> QemuConfig {
        QemuConfig {
            kernel,
            initrd,
            append,
            memory_mb: DEFAULT_MEMORY_MB,
            control_socket: None,
            qmp_socket: None,
            hostfwd: Vec::new(),
            disk: None,
            extra_disks: Vec::new(),
            fw_cfg_config: None,
            extra_args: Vec::new(),
            no_reboot: false,
            watchdog: true,
            accel: Accel::Tcg,
            uefi: None,
        }
    }

    /// A configuration that boots `boot` under UEFI, with the defaults of [`Self::new`].
    pub fn uefi(boot: UefiBoot) -> QemuConfig {
        QemuConfig { uefi: Some(boot), ..QemuConfig::new(PathBuf::new(), PathBuf::new(), String::new()) }
    }

    /// The arguments after the program name.
    pub fn args(&self) -> Vec<String> {
        let mut args: Vec<String> = Vec::new();
        let mut push = |items: &[&str]| args.extend(items.iter().map(|s| s.to_string()));
        push(&["-machine", MACHINE, "-m", &self.memory_mb.to_string(), "-smp", "1"]);
        push(&["-nodefaults", "-no-user-config", "-display", "none", "-serial", "stdio"]);
        match &self.uefi {
            None => {
                push(&["-kernel", &self.kernel.to_string_lossy(), "-initrd", &self.initrd.to_string_lossy()]);
                push(&["-append", &self.append]);
            }
            Some(uefi) => {
                let code = format!("if=pflash,format=raw,unit=0,readonly=on,file={}", opt_value(&uefi.code));
                let vars = format!("if=pflash,format=raw,unit=1,file={}", opt_value(&uefi.vars));
                let disk = format!("file={},format={},if=none,id=boot0", opt_value(&uefi.disk), uefi.format);
                push(&["-drive", &code, "-drive", &vars, "-drive", &disk]);
                push(&["-device", "virtio-blk-pci,drive=boot0,bootindex=0"]);
            }
        }
        match self.accel {
            Accel::Tcg => push(&["-accel", "tcg"]),
            Accel::Kvm => push(&["-accel", "kvm", "-cpu", "host"]),
        }
        if let Some(path) = &self.control_socket {
            let chardev = format!("socket,id=keelctl,path={},server=on,wait=off", opt_value(path));
            let port = format!("virtserialport,bus=vser0.0,chardev=keelctl,name={CONTROL_PORT}");
            push(&["-device", "virtio-serial-pci,id=vser0", "-chardev", &chardev, "-device", &port]);
        }
        if let Some(path) = &self.qmp_socket {
            push(&["-qmp", &format!("unix:{},server=on,wait=off", opt_value(path))]);
        }
        if let Some(path) = &self.disk {
            let drive = format!("file={},format=raw,if=virtio", opt_value(path));
            push(&["-drive", &drive]);
        }
        for path in &self.extra_disks {
            let drive = format!("file={},format=raw,if=virtio,readonly=on", opt_value(path));
            push(&["-drive", &drive]);
        }
        if let Some(path) = &self.fw_cfg_config {
            let item = format!("name={FW_CFG_CONFIG_KEY},file={}", opt_value(path));
            push(&["-fw_cfg", &item]);
        }
        let mut netdev = "user,id=net0".to_string();
        for fwd in &self.hostfwd {
            netdev.push_str(&format!(",hostfwd={}", fwd.to_qemu()));
        }
        // Under UEFI, no network boot ROM: the firmware would try PXE before the disk.
        let nic = if self.uefi.is_some() { "virtio-net-pci,netdev=net0,romfile=" } else { "virtio-net-pci,netdev=net0" };
        push(&["-netdev", &netdev, "-device", nic]);
        if self.watchdog {
            push(&["-device", "i6300esb", "-action", "watchdog=reset"]);
        }
        if self.no_reboot {
            push(&["-no-reboot"]);
        }
        args.extend(self.extra_args.iter().cloned());
        args
    }

    /// The QEMU command (not started; stdio and process group are the caller's choice).
    pub fn command(&self) -> Command {
        let mut command = Command::new(QEMU);
        command.args(self.args());
        command
    }
}

/// A path as a value inside a QEMU option list, where a literal comma is written twice.
fn opt_value(path: &std::path::Path) -> String {
    path.to_string_lossy().replace(',', ",,")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> QemuConfig {
        QemuConfig::new("/o/vmlinuz".into(), "/o/initramfs.img".into(), "console=ttyS0 quiet".into())
    }

    #[test]
    fn default_command_line() {
        let command = config().command();
        assert_eq!(command.get_program(), QEMU);
        let args: Vec<String> = command.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
        let expected = "-machine q35 -m 512 -smp 1 -nodefaults -no-user-config -display none -serial stdio \
-kernel /o/vmlinuz -initrd /o/initramfs.img -append |console=ttyS0 quiet| -accel tcg \
-netdev user,id=net0 -device virtio-net-pci,netdev=net0 -device i6300esb -action watchdog=reset";
        let joined = args.iter().map(|a| if a.contains(' ') { format!("|{a}|") } else { a.clone() });
        assert_eq!(joined.collect::<Vec<_>>().join(" "), expected);
    }

    #[test]
    fn a_disk_image_boots_under_uefi_from_the_first_disk() {
        let config =
            QemuConfig::uefi(UefiBoot { code: OVMF_CODE.into(), vars: "/o/vars.fd".into(), disk: "/o/disk.qcow2".into(), format: "qcow2" });
        let args = config.args().join(" ");
        assert!(!args.contains("-kernel") && !args.contains("-append"), "{args}");
        assert!(
            args.contains(&format!(
                "-drive if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE} -drive if=pflash,format=raw,unit=1,file=/o/vars.fd"
            )),
            "{args}"
        );
        assert!(
            args.contains("-drive file=/o/disk.qcow2,format=qcow2,if=none,id=boot0 -device virtio-blk-pci,drive=boot0,bootindex=0"),
            "{args}"
        );
        assert!(args.contains("-device virtio-net-pci,netdev=net0,romfile= -device i6300esb"), "{args}");
    }

    #[test]
    fn every_option_shows_up() {
        let mut config = config();
        config.memory_mb = 1024;
        config.accel = Accel::Kvm;
        config.control_socket = Some("/o/control.sock".into());
        config.qmp_socket = Some("/o/qmp.sock".into());
        config.hostfwd = vec!["tcp:8080-:80".parse().unwrap(), "udp:5353-:53".parse().unwrap()];
        config.no_reboot = true;
        config.disk = Some("/o/var.img".into());
        config.fw_cfg_config = Some("/o/config.ign".into());
        config.extra_args = vec!["-s".into()];
        let args = config.args();
        let tail: Vec<&str> = args.iter().skip(18).map(String::as_str).collect();
        assert_eq!(&args[..4], ["-machine", "q35", "-m", "1024"]);
        assert_eq!(
            tail,
            [
                "-accel",
                "kvm",
                "-cpu",
                "host",
                "-device",
                "virtio-serial-pci,id=vser0",
                "-chardev",
                "socket,id=keelctl,path=/o/control.sock,server=on,wait=off",
                "-device",
                "virtserialport,bus=vser0.0,chardev=keelctl,name=org.keel.control",
                "-qmp",
                "unix:/o/qmp.sock,server=on,wait=off",
                "-drive",
                "file=/o/var.img,format=raw,if=virtio",
                "-fw_cfg",
                "name=opt/com.coreos/config,file=/o/config.ign",
                "-netdev",
                "user,id=net0,hostfwd=tcp::8080-:80,hostfwd=udp::5353-:53",
                "-device",
                "virtio-net-pci,netdev=net0",
                "-device",
                "i6300esb",
                "-action",
                "watchdog=reset",
                "-no-reboot",
                "-s",
            ]
        );
    }

    #[test]
    fn the_watchdog_can_be_left_out() {
        let mut config = config();
        assert!(config.args().join(" ").contains("-device i6300esb -action watchdog=reset"));
        config.watchdog = false;
        assert!(!config.args().join(" ").contains("i6300esb"));
    }

    #[test]
    fn extra_disks_follow_the_data_disk_read_only() {
        let mut config = config();
        config.disk = Some("/o/var.img".into());
        config.extra_disks = vec!["/o/cidata.img".into(), "/o/x,y.iso".into()];
        let args = config.args();
        let drives: Vec<&str> = args.windows(2).filter(|pair| pair[0] == "-drive").map(|pair| pair[1].as_str()).collect();
        assert_eq!(
            drives,
            [
                "file=/o/var.img,format=raw,if=virtio",
                "file=/o/cidata.img,format=raw,if=virtio,readonly=on",
                "file=/o/x,,y.iso,format=raw,if=virtio,readonly=on",
            ]
        );
        config.disk = None;
        let args = config.args();
        let first = args.iter().position(|a| a == "-drive").unwrap();
        assert_eq!(args[first + 1], "file=/o/cidata.img,format=raw,if=virtio,readonly=on");
    }

    #[test]
    fn commas_in_paths_are_doubled() {
        let mut config = config();
        config.qmp_socket = Some("/o,x/qmp.sock".into());
        config.disk = Some("/o,x/var.img".into());
        config.fw_cfg_config = Some("/o,x/c.ign".into());
        let args = config.args();
        for expected in [
            "unix:/o,,x/qmp.sock,server=on,wait=off",
            "file=/o,,x/var.img,format=raw,if=virtio",
            "name=opt/com.coreos/config,file=/o,,x/c.ign",
        ] {
            assert!(args.contains(&expected.to_string()), "{expected} not in {args:?}");
        }
    }

    #[test]
    fn hostfwd_syntax() {
        let fwd: HostFwd = "tcp:2222-:22".parse().unwrap();
        assert_eq!(fwd.to_qemu(), "tcp::2222-:22");
        assert_eq!(fwd.to_string(), "tcp:2222-:22");
        for (bad, reason) in [
            ("2222", "missing protocol"),
            ("8080:80", "missing protocol"),
            ("2222-:22", "the protocol must be tcp or udp"),
            ("sctp:1-:2", "the protocol must be tcp or udp"),
            ("tcp:2222:22", "missing \"-:\" between the ports"),
            ("tcp:x-:22", "the host port must be a number from 1 to 65535"),
            ("tcp:1-:70000", "the guest port must be a number from 1 to 65535"),
            ("tcp:0-:22", "the host port must be a number from 1 to 65535"),
        ] {
            assert_eq!(bad.parse::<HostFwd>().unwrap_err(), HostFwdError { value: bad.into(), reason });
        }
    }

    #[test]
    fn accel_setting() {
        assert_eq!(Accel::from_setting(None), Accel::Tcg);
        assert_eq!(Accel::from_setting(Some("kvm")), Accel::Kvm);
        assert_eq!(Accel::from_setting(Some("tcg")), Accel::Tcg);
    }
}
