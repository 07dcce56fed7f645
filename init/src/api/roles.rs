//! The two roles of a remote client, from its certificate's subject O: `admin` may run
//! every command; `read-only` only those on [`READ_ONLY_COMMANDS`], so a command added
//! to the protocol is admin-only until it is listed here.

use keel_supervisor::control::Command;

/// The O value that makes a certificate an administrator's.
pub const ADMIN_ORG: &str = "admin";
/// The O value of a read-only certificate.
pub const READ_ONLY_ORG: &str = "read-only";

/// The commands (their `cmd` names) a read-only client may send.
pub const READ_ONLY_COMMANDS: &[&str] = &[
    "status",
    "ps",
    "inspect",
    "logs",
    "logs_follow",
    "stats",
    "network_ls",
    "network_inspect",
    "image_ls",
    "image_inspect",
    "metrics",
    "diff",
];

/// What a client may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Everything.
    Admin,
    /// The allowlist.
    ReadOnly,
}

impl Role {
    /// The role's name, as the audit log writes it.
    pub fn name(self) -> &'static str {
        match self {
            Role::Admin => ADMIN_ORG,
            Role::ReadOnly => READ_ONLY_ORG,
        }
    }

    /// Whether this role may run the command named `cmd`.
    pub fn allows(self, cmd: &str) -> bool {
        match self {
            Role::Admin => true,
            Role::ReadOnly => READ_ONLY_COMMANDS.contains(&cmd),
        }
    }
}

/// The role of a certificate with these O values: admin wins; none of the two, no role.
pub fn role_of(organizations: &[String]) -> Option<Role> {
    if organizations.iter().any(|o| o == ADMIN_ORG) {
        Some(Role::Admin)
    } else if organizations.iter().any(|o| o == READ_ONLY_ORG) {
        Some(Role::ReadOnly)
    } else {
        None
    }
}

/// The `cmd` name of a parsed command, as it travels on the wire (the typed command, so
/// what is checked is what PID 1 will run, whatever else the request line held).
pub fn command_name(command: &Command) -> String {
    serde_json::to_value(command).ok().and_then(|v| v.get("cmd").and_then(|c| c.as_str()).map(str::to_string)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_only_is_an_allowlist() {
        assert!(Role::ReadOnly.allows("ps") && Role::ReadOnly.allows("status") && Role::ReadOnly.allows("network_inspect"));
        // `diff` only reads: it shows what an apply would do and changes nothing.
        assert!(Role::ReadOnly.allows("diff"));
        for cmd in [
            "exec",
            "poweroff",
            "reboot",
            "start",
            "stop",
            "restart",
            "image_pull",
            "image_rm",
            "firstboot",
            "apply",
            "rm",
            "reload",
            "new_thing",
        ] {
            assert!(!Role::ReadOnly.allows(cmd), "{cmd}");
            assert!(Role::Admin.allows(cmd), "{cmd}");
        }
    }

    #[test]
    fn roles_from_organizations() {
        let orgs = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(role_of(&orgs(&["admin"])), Some(Role::Admin));
        assert_eq!(role_of(&orgs(&["read-only", "admin"])), Some(Role::Admin));
        assert_eq!(role_of(&orgs(&["read-only"])), Some(Role::ReadOnly));
        assert_eq!(role_of(&orgs(&["Admin", "ops"])), None);
        assert_eq!(role_of(&[]), None);
    }

    #[test]
    fn command_names_are_the_wire_names() {
        assert_eq!(command_name(&Command::Ps), "ps");
        assert_eq!(command_name(&Command::NetworkLs), "network_ls");
        assert_eq!(command_name(&Command::Exec { argv: vec!["true".into()], timeout_secs: None, container: None }), "exec");
        assert_eq!(command_name(&Command::ImageInspect { reference: "x".into() }), "image_inspect");
        let reload = Command::NetworkReload { restart_attached: true };
        assert_eq!(command_name(&reload), "network_reload");
        assert!(!Role::ReadOnly.allows(&command_name(&reload)), "network reload changes the host: admin only");
    }
}
