//! The errors of the launcher boundary ([`super::Launcher`], [`super::NetworkAttacher`]),
//! and the pure part of a failed start's rollback: what was taken, given back in
//! reverse order, every failure to give something back kept.

use crate::cgroup::CgroupError;
use crate::image::run::PlanError;
use crate::runtime::{HookError, SpawnError};
use std::fmt;
use std::path::PathBuf;

/// The steps of a start, in order; a failed start is named by the step that failed,
/// and the test option `keel.test.fail_launch=NAME:STEP` fails a start right after one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LaunchStep {
    /// The image is ready and the launch plan made.
    Image,
    /// The container is attached to its network (address, resolv.conf, ports).
    Network,
    /// Its cgroup exists with its limits, and is open.
    Cgroup,
    /// Its output pipes exist.
    Pipes,
    /// It was cloned and the start hooks ran in the parent (the veth exists).
    Hooks,
    /// It reached execve.
    Started,
}

impl LaunchStep {
    /// Every step, in the order a start runs them.
    pub const ALL: [LaunchStep; 6] =
        [LaunchStep::Image, LaunchStep::Network, LaunchStep::Cgroup, LaunchStep::Pipes, LaunchStep::Hooks, LaunchStep::Started];

    /// The step's name, as the test option spells it.
    pub fn name(self) -> &'static str {
        match self {
            LaunchStep::Image => "image",
            LaunchStep::Network => "network",
            LaunchStep::Cgroup => "cgroup",
            LaunchStep::Pipes => "pipes",
            LaunchStep::Hooks => "hooks",
            LaunchStep::Started => "started",
        }
    }

    /// The step named `name`.
    pub fn from_name(name: &str) -> Option<LaunchStep> {
        LaunchStep::ALL.into_iter().find(|s| s.name() == name)
    }
}

impl fmt::Display for LaunchStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a container could not be connected to its network, or disconnected after a
/// failed start.
#[derive(Debug, thiserror::Error)]
pub enum AttachError {
    /// A named network on a host (or a `keel run`) without container networks.
    #[error("network {network:?}: container networks are not set up here")]
    Unavailable {
        /// The network the declaration names.
        network: String,
    },
    /// The network is not in /etc/keel/network.toml.
    #[error("network: {network:?} is not declared in /etc/keel/network.toml")]
    Undeclared {
        /// The network the declaration names.
        network: String,
    },
    /// The address allocations could not be loaded at boot.
    #[error("network: IPAM is not available (see the boot log)")]
    NoIpam,
    /// Allocating or releasing the container's address failed.
    #[error("network {network}: {source}")]
    Ipam {
        /// The network.
        network: String,
        /// IPAM's error.
        source: keel_netconf::ipam::IpamError,
    },
    /// The network has `subnet6` but the address has no IPv6 counterpart in it.
    #[error("network {network}: {address} has no IPv6 counterpart in {subnet6}")]
    NoIpv6 {
        /// The network.
        network: String,
        /// The IPv4 address.
        address: std::net::Ipv4Addr,
        /// The IPv6 subnet, as written.
        subnet6: String,
    },
    /// A port the container publishes is published by another container.
    #[error("ports: {port}/{proto} is already published by container {other}")]
    PortTaken {
        /// The host port.
        port: u16,
        /// `tcp` or `udp`.
        proto: String,
        /// The container that has it.
        other: String,
    },
    /// A file the container gets (resolv.conf, hosts) could not be written or removed.
    #[error("{op} {path}: {source}")]
    File {
        /// "write", "remove", "create directory".
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The system's error.
        source: std::io::Error,
    },
    /// The firewall (published ports, metadata access) could not be applied.
    #[error("{0}")]
    Firewall(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Something a failed start took and could not give back.
#[derive(Debug, thiserror::Error)]
pub enum CleanupError {
    /// The network attachment (address, files, firewall).
    #[error("network: {0}")]
    Network(#[source] AttachError),
    /// What the start hooks made on the host (the veth).
    #[error("start hooks: {0}")]
    Hooks(#[source] HookError),
    /// The cgroup.
    #[error("cgroup: {0}")]
    Cgroup(#[source] CgroupError),
    /// The container's process, which reached execve.
    #[error("kill pid {pid}: {source}")]
    Kill {
        /// Its pid.
        pid: i32,
        /// The errno.
        source: nix::Error,
    },
    /// The state directory the start created.
    #[error("remove {path}: {source}")]
    StateDir {
        /// The directory.
        path: PathBuf,
        /// The system's error.
        source: std::io::Error,
    },
}

/// The cleanup errors of a failed start, shown as a list after the cause.
#[derive(Debug, Default)]
pub struct CleanupErrors(pub Vec<CleanupError>);

impl fmt::Display for CleanupErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return Ok(());
        }
        write!(f, "; and {} thing(s) it took could not be given back:", self.0.len())?;
        for (i, e) in self.0.iter().enumerate() {
            write!(f, " ({}) {e}", i + 1)?;
        }
        Ok(())
    }
}

/// Why a step of a start failed.
#[derive(Debug, thiserror::Error)]
pub enum LaunchCause {
    /// The declaration asks for limits and cgroup v2 is not mounted.
    #[error("resources: limits need cgroup v2, which is not mounted at /sys/fs/cgroup")]
    NoCgroup2,
    /// The image or the launch plan.
    #[error(transparent)]
    Image(#[from] PlanError),
    /// Attaching to the network.
    #[error(transparent)]
    Network(#[from] AttachError),
    /// Creating or opening the cgroup.
    #[error("cgroup: {0}")]
    Cgroup(#[from] CgroupError),
    /// Opening the cgroup directory for clone3.
    #[error("open cgroup {path}: {source}")]
    CgroupOpen {
        /// The cgroup directory.
        path: PathBuf,
        /// The system's error.
        source: std::io::Error,
    },
    /// Making the output pipes.
    #[error("output pipe: {0}")]
    Pipes(#[source] nix::Error),
    /// Cloning, the start hooks, or the child's own setup.
    #[error(transparent)]
    Spawn(#[from] SpawnError),
    /// A test-only failure (`keel.test.fail_launch`).
    #[error("injected failure after step {0} (test option keel.test.fail_launch)")]
    Injected(LaunchStep),
}

/// Why a container could not be started.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// A step failed; everything the earlier steps took was given back, except what
    /// `cleanup` lists.
    #[error("{step}: {cause}{cleanup}")]
    Failed {
        /// The step that failed.
        step: LaunchStep,
        /// Why (boxed: a start's error stays small on the manager's path).
        #[source]
        cause: Box<LaunchCause>,
        /// What could not be given back (empty when everything was).
        cleanup: CleanupErrors,
    },
    /// The image is not in the store yet and a pull job for it is running; the start
    /// is retried when the job ends. Not produced yet: the worker-based pulls (issue 12
    /// point 1) return it, so both sides agree on the name now.
    #[error("image {reference}: not in the store yet; a pull job is running")]
    ImagePending {
        /// The image as the declaration names it.
        reference: String,
    },
}

impl LaunchError {
    /// The step that failed, when one did.
    pub fn step(&self) -> Option<LaunchStep> {
        match self {
            LaunchError::Failed { step, .. } => Some(*step),
            LaunchError::ImagePending { .. } => None,
        }
    }

    /// What could not be given back after the failure.
    pub fn cleanup(&self) -> &[CleanupError] {
        match self {
            LaunchError::Failed { cleanup, .. } => &cleanup.0,
            LaunchError::ImagePending { .. } => &[],
        }
    }
}

/// Why a running container could not be probed (`keelctl stats`, a healthcheck).
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// It is not running.
    #[error("{name} is not running")]
    NotRunning {
        /// The container.
        name: String,
    },
    /// It has no cgroup to read.
    #[error("no cgroup: cgroup v2 is not mounted on this host")]
    NoCgroup,
    /// Reading its cgroup failed.
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    /// The healthcheck's helper could not be forked.
    #[error("fork: {0}")]
    Fork(#[source] nix::Error),
}

/// Give back what was taken, last taken first, with `undo`; every failure is kept, none
/// stops the others. The pure core of a failed start's cleanup.
pub fn unwind<T, E>(taken: Vec<T>, mut undo: impl FnMut(T) -> Result<(), E>) -> Vec<E> {
    taken.into_iter().rev().filter_map(|t| undo(t).err()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unwind_undoes_in_reverse_and_keeps_every_error() {
        let mut order = Vec::new();
        let errors = unwind(vec![1, 2, 3, 4], |n| {
            order.push(n);
            if n % 2 == 0 {
                Err(format!("undo {n} failed"))
            } else {
                Ok(())
            }
        });
        assert_eq!(order, [4, 3, 2, 1]);
        assert_eq!(errors, ["undo 4 failed", "undo 2 failed"]);
    }

    #[test]
    fn step_names_round_trip_in_order() {
        for (i, step) in LaunchStep::ALL.into_iter().enumerate() {
            assert_eq!(LaunchStep::from_name(step.name()), Some(step));
            assert!(LaunchStep::ALL[..i].iter().all(|s| *s < step), "ALL is in start order");
        }
        assert_eq!(LaunchStep::from_name("nope"), None);
    }

    #[test]
    fn a_failed_launch_names_its_step_and_lists_every_cleanup_error() {
        let error = LaunchError::Failed {
            step: LaunchStep::Cgroup,
            cause: Box::new(LaunchCause::NoCgroup2),
            cleanup: CleanupErrors(vec![
                CleanupError::StateDir { path: "/var/lib/keel/containers/web".into(), source: std::io::Error::other("busy") },
                CleanupError::Network(AttachError::NoIpam),
            ]),
        };
        assert_eq!(
            error.to_string(),
            "cgroup: resources: limits need cgroup v2, which is not mounted at /sys/fs/cgroup; and 2 thing(s) it took could not be given back: (1) remove /var/lib/keel/containers/web: busy (2) network: network: IPAM is not available (see the boot log)"
        );
        let clean = LaunchError::Failed {
            step: LaunchStep::Image,
            cause: Box::new(LaunchCause::Injected(LaunchStep::Image)),
            cleanup: CleanupErrors::default(),
        };
        assert_eq!(clean.to_string(), "image: injected failure after step image (test option keel.test.fail_launch)");
        assert!(clean.cleanup().is_empty());
    }
}
