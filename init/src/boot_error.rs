//! Why a boot step failed: one variant per step (or per way it fails), each carrying the
//! typed error of the module that failed, so the boot code matches on causes instead of
//! parsing text. Its Display is the text `keelctl status` shows in `boot_errors` (after
//! the step's name), the same text the steps reported when they returned `String`s.
//!
//! Limitation: the container declarations report their problems as a text list (each
//! file's errors already carry file, line and key); that variant carries the list as it is.

use crate::firstboot::job::FirstbootFailure;
use crate::modload::LoadError;
use crate::mounts::MountError;
use crate::settings::SettingsError;
use crate::storage::StorageError;
use keel_netconf::NetlinkError;
use keel_supervisor::image::ImageError;
use keel_supervisor::worker::WorkerError;
use std::fmt::Display;
use std::path::PathBuf;

/// A boot step's failure. [`crate::boot`] records `"{step}: {error}"` in the boot errors.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    /// `mounts`: critical early mounts failed (the non-critical ones are only logged).
    #[error("{}", join(.0))]
    Mounts(Vec<MountError>),
    /// `oom-score`: PID 1's oom_score_adj could not be set.
    #[error("{0}")]
    OomScore(#[source] std::io::Error),
    /// `cmdline`: /proc/cmdline could not be read.
    #[error("read /proc/cmdline: {0}")]
    Cmdline(#[source] std::io::Error),
    /// `settings`: /etc/keel/keel.toml is unreadable or invalid.
    #[error(transparent)]
    Settings(#[from] SettingsError),
    /// `ctrl-alt-del`: the kernel would not route ctrl-alt-del to PID 1 as SIGINT.
    #[error("cannot route ctrl-alt-del to keel: {0}")]
    CtrlAltDel(#[source] nix::Error),
    /// `modules`: the module loader could not start (modules.dep unreadable).
    #[error(transparent)]
    ModuleLoader(LoadError),
    /// `modules`: these modules did not load (the others did).
    #[error("{}", join(.0))]
    Modules(Vec<LoadError>),
    /// `storage`: /var could not be made persistent.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// `firstboot`: the config failed, or its worker could not run or died.
    #[error(transparent)]
    Firstboot(#[from] FirstbootFailure),
    /// `loopback`: `lo` could not be brought up.
    #[error(transparent)]
    Loopback(#[from] NetlinkError),
    /// `network`: every problem of the step (declaration, forwarding, bridges, uplink,
    /// firewall), each naming its interface or network and its cause.
    #[error("{}", join(.0))]
    Network(Vec<crate::network::NetworkProblem>),
    /// `hostname`: /etc/hostname could not be read.
    #[error("read /etc/hostname: {0}")]
    HostnameRead(#[source] std::io::Error),
    /// `hostname`: /etc/hostname holds no name.
    #[error("/etc/hostname is empty")]
    HostnameEmpty,
    /// `hostname`: the kernel refused the name.
    #[error("sethostname({name}): {source}")]
    Sethostname {
        /// The name from /etc/hostname.
        name: String,
        /// The errno.
        #[source]
        source: nix::Error,
    },
    /// `control`: the control socket could not be bound (critical: nothing could ask PID 1).
    #[error("bind {}: {source}", path.display())]
    ControlSocket {
        /// The socket path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// `control-port`: the virtio-serial control port did not appear.
    #[error("{0}")]
    ControlPort(#[source] std::io::Error),
    /// `power-button`: no input device reports a power button.
    #[error("no power button input device (are the button and evdev modules in the image?)")]
    NoPowerButton,
    /// `images`: the image store could not be opened.
    #[error("image store: {0}")]
    ImageStore(#[source] ImageError),
    /// `images`: the pulls of these images could not be started (the containers using them report it again).
    #[error("{}", join(.0))]
    Images(Vec<ImageFailure>),
    /// `api`: /etc/keel/api.toml is not a valid API configuration.
    #[error("{0}")]
    ApiConfig(#[from] crate::api::config::ApiConfigError),
    /// `api`: the API is configured but the network step did not run, so its port cannot be opened.
    #[error("no network: the API port cannot be opened")]
    ApiWithoutNetwork,
    /// `api`: the firewall with the API port open could not be applied.
    #[error("with the API port: {0}")]
    ApiFirewall(#[source] crate::network::FirewallError),
    /// `syslog`: /etc/keel/syslog.toml is not a valid forwarding configuration.
    #[error("{0}")]
    SyslogConfig(#[from] crate::syslog::SyslogConfigError),
    /// `watchdog`: the hardware watchdog could not be armed.
    #[error("{0}")]
    Watchdog(#[from] crate::watchdog::WatchdogError),
    /// `containers`: files that are not declarations, and declarations that are invalid.
    #[error("{}", .0.join("; "))]
    Containers(Vec<String>),
}

/// One image whose pull the boot could not start.
#[derive(Debug, thiserror::Error)]
#[error("{image}: {source}")]
pub struct ImageFailure {
    /// The image as declared (`registry/name:tag`).
    pub image: String,
    /// Why its worker could not start.
    #[source]
    pub source: WorkerError,
}

/// The items' texts joined by "; ".
fn join<T: Display>(items: &[T]) -> String {
    items.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_read_as_one_line_and_causes_keep_their_text() {
        let mounts = BootError::Mounts(vec![
            MountError { fstype: "proc", target: "/proc", critical: true, source: nix::Error::EPERM },
            MountError { fstype: "sysfs", target: "/sys", critical: true, source: nix::Error::ENODEV },
        ]);
        assert_eq!(mounts.to_string(), "mount proc on /proc: EPERM: Operation not permitted; mount sysfs on /sys: ENODEV: No such device");
        let host = BootError::Sethostname { name: "x".into(), source: nix::Error::EINVAL };
        assert_eq!(host.to_string(), "sethostname(x): EINVAL: Invalid argument");
        let network = BootError::Network(vec![
            crate::network::NetworkProblem::RouteLocalnetOff(std::io::Error::from_raw_os_error(30)),
            crate::network::UplinkError::NoSuchInterface(keel_netconf::config::UplinkSelect::Name("eth9".into())).into(),
        ]);
        assert_eq!(
            network.to_string(),
            "route_localnet off on all: Read-only file system (os error 30); uplink interface \"eth9\": no such interface"
        );
        let bind = BootError::ControlSocket { path: "/run/keel/control.sock".into(), source: std::io::Error::from_raw_os_error(13) };
        assert!(bind.to_string().starts_with("bind /run/keel/control.sock: Permission denied"), "{bind}");
    }
}
