//! Linux capabilities by name, and the default set a container gets.

/// Every capability the kernel defines (linux/capability.h), by number.
pub const NAMES: [&str; 41] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// The 14 capabilities Docker and Podman grant a container by default.
pub const DEFAULT_SET: [&str; 14] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "FSETID",
    "FOWNER",
    "MKNOD",
    "NET_RAW",
    "SETGID",
    "SETUID",
    "SETFCAP",
    "SETPCAP",
    "NET_BIND_SERVICE",
    "SYS_CHROOT",
    "KILL",
    "AUDIT_WRITE",
];

/// A capability, stored as its kernel number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Capability(pub u8);

impl Capability {
    /// Parse `NET_ADMIN` or `CAP_NET_ADMIN` (any case).
    pub fn parse(text: &str) -> Result<Capability, String> {
        let upper = text.trim().to_ascii_uppercase();
        let name = upper.strip_prefix("CAP_").unwrap_or(&upper);
        NAMES.iter().position(|n| *n == name).map(|i| Capability(i as u8)).ok_or_else(|| format!("unknown capability {text:?}"))
    }

    /// The name without the CAP_ prefix.
    pub fn name(self) -> &'static str {
        NAMES.get(usize::from(self.0)).copied().unwrap_or("?")
    }
}

/// The default set as a bit mask (bit n = capability n).
pub fn default_mask() -> u64 {
    DEFAULT_SET.iter().filter_map(|n| Capability::parse(n).ok()).fold(0, |mask, c| mask | 1 << c.0)
}

/// The default set with `add` added and `drop` removed (`ALL` allowed in either).
pub fn effective_mask(add: &[CapabilityChoice], drop: &[CapabilityChoice]) -> u64 {
    let all = (1u64 << NAMES.len()) - 1;
    let bits = |choices: &[CapabilityChoice]| {
        choices.iter().fold(0u64, |mask, c| match c {
            CapabilityChoice::All => all,
            CapabilityChoice::One(cap) => mask | 1 << cap.0,
        })
    };
    (default_mask() | bits(add)) & !bits(drop)
}

/// One entry of `add` or `drop`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CapabilityChoice {
    /// `ALL`.
    All,
    /// One capability.
    One(Capability),
}

impl CapabilityChoice {
    /// Parse a capability name or `ALL`.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.trim().eq_ignore_ascii_case("all") {
            Ok(CapabilityChoice::All)
        } else {
            Capability::parse(text).map(CapabilityChoice::One)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_set_has_fourteen() {
        assert_eq!(default_mask().count_ones(), 14);
        assert_eq!(Capability::parse("cap_sys_admin").unwrap().0, 21);
        assert_eq!(Capability(12).name(), "NET_ADMIN");
    }

    #[test]
    fn add_and_drop_adjust_the_default() {
        let net_admin = CapabilityChoice::parse("NET_ADMIN").unwrap();
        let chown = CapabilityChoice::parse("CHOWN").unwrap();
        let mask = effective_mask(&[net_admin], &[chown]);
        assert_ne!(mask & 1 << 12, 0);
        assert_eq!(mask & 1, 0);
        assert_eq!(effective_mask(&[], &[CapabilityChoice::All]), 0);
    }
}
