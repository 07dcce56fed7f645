//! `privileged`, `host_pid` and `host_network`: the declaration's way out of isolation,
//! checked so that it is always explicit. `host_pid` and `host_network` only come with
//! `privileged = true`, and settings a privileged container would silently ignore
//! (capability lists, a user namespace) are refused rather than dropped.

use super::raw::RawContainer;
use super::validate::Report;
use super::Privilege;

/// The container's [`Privilege`], recording every contradiction in `r`.
pub(super) fn privilege(raw: &RawContainer, r: &mut Report) -> Privilege {
    if !raw.privileged {
        if raw.host_pid {
            r.add("host_pid", "the host's PID namespace needs privileged = true");
        }
        if raw.host_network {
            r.add("host_network", "host_network needs privileged = true (network = \"host\" shares the host's network namespace alone)");
        }
        return Privilege::Unprivileged;
    }
    if !raw.capabilities.add.is_empty() || !raw.capabilities.drop.is_empty() {
        r.add("capabilities", "privileged = true grants every capability: capabilities.add/drop do not apply");
    }
    if raw.user_namespace.is_some() {
        r.add("user_namespace", "privileged = true runs as the host's root: a user namespace does not apply");
    }
    Privilege::Privileged { host_pid: raw.host_pid }
}
