//! The device filter of cgroup v2: a `BPF_PROG_TYPE_CGROUP_DEVICE` program attached to
//! each container's cgroup, so that device access never relies on `nodev` mounts alone.
//! A container's root may create a device node (CAP_MKNOD, as OCI runtimes allow) on any
//! filesystem it can write without `nodev`, or be given one through a bind mount; the
//! kernel then asks this program whether the open (or mknod) may go ahead.
//!
//! The rules are the OCI runtimes' defaults, as runc (`libcontainer/specconv`
//! `AllowedDevices`) and crun install them: mknod of any character or block device
//! (creating a node gives no access), and read, write and mknod of /dev/null (c 1:3),
//! /dev/zero (c 1:5), /dev/full (c 1:7), /dev/random (c 1:8), /dev/urandom (c 1:9),
//! /dev/tty (c 5:0), /dev/console (c 5:1), /dev/ptmx (c 5:2) and the devpts terminals
//! (c 136:*). Difference: runc also allows /dev/net/tun (c 10:200) for backward
//! compatibility; keel gives containers no tun device, so it is not allowed.
//!
//! [`program`] builds the bytecode (pure, tested here with a small interpreter over the
//! same context the kernel passes); [`sys`] loads and attaches it. The attachment holds
//! the program: its fd is closed right after.
//!
//! Limitations: the rule list is fixed (declarations cannot add devices yet); the
//! program is attached without `BPF_F_ALLOW_MULTI`, so it replaces an earlier keel
//! program on the same cgroup and nothing below can attach another one.

pub mod program;
mod sys;

pub use sys::{attach_default_filter, attach_filter, attached_programs, DeviceFilterError};

/// Which devices a rule is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceKind {
    /// Character devices (`c`).
    Char,
    /// Block devices (`b`).
    Block,
    /// Both (`a`).
    Any,
}

impl DeviceKind {
    /// `BPF_DEVCG_DEV_*` of the kind (Any has none: it is not tested).
    fn bpf_type(self) -> u32 {
        match self {
            DeviceKind::Block => 1,
            DeviceKind::Char => 2,
            DeviceKind::Any => 0,
        }
    }
}

/// A set of `BPF_DEVCG_ACC_*` bits: mknod 1, read 2, write 4.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Access(u8);

impl Access {
    /// Creating a device node.
    pub const MKNOD: Access = Access(1);
    /// Opening for reading.
    pub const READ: Access = Access(2);
    /// Opening for writing.
    pub const WRITE: Access = Access(4);
    /// `rwm`.
    pub const ALL: Access = Access(7);

    /// The bits.
    pub fn bits(self) -> u8 {
        self.0
    }
}

/// One allow rule, like a line of cgroup v1's `devices.allow` (`c 136:* rwm`). Majors
/// and minors are kernel device numbers (below 2^20), so they fit the program's
/// signed 32-bit immediates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceRule {
    /// Character, block or both.
    pub kind: DeviceKind,
    /// The major number; None for any.
    pub major: Option<u32>,
    /// The minor number; None for any.
    pub minor: Option<u32>,
    /// What is allowed.
    pub access: Access,
}

const fn rwm(major: u32, minor: Option<u32>) -> DeviceRule {
    DeviceRule { kind: DeviceKind::Char, major: Some(major), minor, access: Access::ALL }
}

/// The OCI default allowlist (see the module documentation).
pub const DEFAULT_RULES: [DeviceRule; 11] = [
    DeviceRule { kind: DeviceKind::Char, major: None, minor: None, access: Access::MKNOD },
    DeviceRule { kind: DeviceKind::Block, major: None, minor: None, access: Access::MKNOD },
    rwm(1, Some(3)),
    rwm(1, Some(5)),
    rwm(1, Some(7)),
    rwm(1, Some(8)),
    rwm(1, Some(9)),
    rwm(5, Some(0)),
    rwm(5, Some(1)),
    rwm(5, Some(2)),
    rwm(136, None),
];

/// A privileged container's rules: every device, as on the host (`a *:* rwm`).
pub const PRIVILEGED_RULES: [DeviceRule; 1] = [DeviceRule { kind: DeviceKind::Any, major: None, minor: None, access: Access::ALL }];

/// The rules of a container's filter: [`PRIVILEGED_RULES`] or [`DEFAULT_RULES`].
pub fn rules_for(privilege: crate::spec::Privilege) -> &'static [DeviceRule] {
    if privilege.is_privileged() {
        &PRIVILEGED_RULES
    } else {
        &DEFAULT_RULES
    }
}

#[cfg(test)]
mod tests;
