//! `/etc/keel/keel.toml`: the image's settings for PID 1 itself (written by keel-build).

use keel_supervisor::cgroup::reserve::HostReserve;
use serde::Deserialize;
use std::path::Path;

/// Where the image keeps PID 1's settings.
pub const SETTINGS_PATH: &str = "/etc/keel/keel.toml";

/// PID 1's settings, with defaults for everything.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Name of the virtio-serial port on which to serve the control protocol, if any.
    #[serde(default)]
    pub control_port: Option<String>,
    /// Seconds between SIGTERM and SIGKILL at shutdown.
    #[serde(default = "default_grace")]
    pub shutdown_grace_secs: u64,
    /// `[reserved]`: memory and tasks the host keeps from the containers (their parent
    /// cgroup's limits are the system's figures minus these), like Kubernetes'
    /// `systemReserved`. Default: memory `max(10 % of RAM, 128 MiB)`, 1024 tasks.
    #[serde(default)]
    pub reserved: HostReserve,
    /// Seconds of the hardware watchdog PID 1 arms and pets (like systemd's
    /// `RuntimeWatchdogSec`); 0 leaves it off.
    #[serde(default = "default_watchdog")]
    pub watchdog_secs: u32,
}

fn default_watchdog() -> u32 {
    crate::watchdog::DEFAULT_TIMEOUT_SECS
}

fn default_grace() -> u64 {
    5
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            control_port: None,
            shutdown_grace_secs: default_grace(),
            reserved: HostReserve::default(),
            watchdog_secs: default_watchdog(),
        }
    }
}

/// Why the settings file could not be used; the message names the file and the key.
pub type SettingsError = crate::toml_file::TomlFileError;

/// Parse settings text; `path` is only used in the error.
pub fn parse(text: &str, path: &str) -> Result<Settings, SettingsError> {
    crate::toml_file::decode(text, path)
}

/// Load the settings file; a missing file means the defaults.
pub fn load(path: &Path) -> Result<Settings, SettingsError> {
    match crate::toml_file::read_optional(path)? {
        Some(text) => parse(&text, &path.display().to_string()),
        None => Ok(Settings::default()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_values() {
        assert_eq!(parse("", "k.toml").unwrap(), Settings::default());
        let s = parse("control_port = \"org.keel.control\"\nshutdown_grace_secs = 2\n", "k.toml").unwrap();
        assert_eq!(s.control_port.as_deref(), Some("org.keel.control"));
        assert_eq!(s.shutdown_grace_secs, 2);
        assert_eq!(s.watchdog_secs, 30);
        assert_eq!(parse("watchdog_secs = 0\n", "k.toml").unwrap().watchdog_secs, 0);
        let err = parse("watchdog_secs = -1\n", "k.toml").unwrap_err().to_string();
        assert!(err.contains("watchdog_secs"), "{err}");
    }

    #[test]
    fn reserved_defaults_and_values() {
        use keel_supervisor::cgroup::reserve::MemoryReserve;
        assert_eq!(parse("", "k.toml").unwrap().reserved, HostReserve::default());
        let s = parse("[reserved]\nmemory = \"256M\"\npids = 512\n", "k.toml").unwrap();
        assert_eq!(s.reserved, HostReserve { memory: MemoryReserve::Bytes(256 << 20), pids: 512 });
        let err = parse("[reserved]\nmemory = \"half\"\n", "/etc/keel/keel.toml").unwrap_err().to_string();
        assert!(err.starts_with("/etc/keel/keel.toml: ") && err.contains("reserved memory \"half\""), "{err}");
        let err = parse("[reserved]\ncpus = 1\n", "/etc/keel/keel.toml").unwrap_err().to_string();
        assert!(err.contains("cpus"), "{err}");
    }

    #[test]
    fn unknown_key_names_file_and_key() {
        let err = parse("shutdown_grace = 2\n", "/etc/keel/keel.toml").unwrap_err().to_string();
        assert!(err.starts_with("/etc/keel/keel.toml: "), "{err}");
        assert!(err.contains("shutdown_grace"), "{err}");
        assert!(err.contains("line 1"), "{err}");
    }
}
