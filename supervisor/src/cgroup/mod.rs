//! cgroup v2 for containers: each container gets its own cgroup at
//! `<root>/keel/<NAME>`, where `root` is normally `/sys/fs/cgroup`.
//!
//! Layout (PID 1 and its helpers stay in the root cgroup, outside `keel`):
//!
//! ```text
//! <root>/keel/                 memory.max, pids.max: everything but the host's reserve
//!        keel/<NAME>/          the container's limits; figures of all that runs below
//!        keel/<NAME>/main/     the container's own processes (CLONE_INTO_CGROUP)
//!        keel/<NAME>/exec-P-N/ one `keelctl exec` or healthcheck, killed as a whole
//! ```
//!
//! Defaults that hold a runaway container without any `[resources]`: `pids.max` 2048
//! and `memory.oom.group` 1 per container ([`limits`]), and the parent's limits that
//! keep [`reserve`]'s share of memory and tasks for the host. Each container's cgroup
//! also gets the OCI default device filter ([`devices`], a BPF_CGROUP_DEVICE program)
//! before any of its processes exists.
//!
//! The split follows STYLE.md: [`limits`] and [`stats`] hold pure logic (which files to
//! write, how to parse what the kernel reports), unit-tested on strings. [`CgroupTree`]
//! and [`ContainerCgroup`] apply it to a directory they are given, so tests point them at
//! a tempdir seeded with fixture files instead of the kernel's cgroupfs.
//!
//! Controllers are enabled on the parents only (`<root>` and `<root>/keel`), never in a
//! container's cgroup: its leaves are then charged to it, and cgroup v2's "no internal
//! processes" rule never applies.
//!
//! Limitations (current state):
//! - keel does not mount cgroup2 here; `root` must already be a cgroup v2 mount
//!   ([`CgroupTree::is_v2`]). Hybrid or v1-only hosts are refused, not supported.
//! - `root` is expected to be the hierarchy's real root (keel is PID 1). Inside a cgroup
//!   namespace whose root holds processes, enabling controllers there fails with EBUSY.
//! - Controllers keel enabled are never disabled again, and `<root>/keel` is never removed.
//! - A container named like a cgroup interface file (`memory.max`) collides with that
//!   file in `<root>/keel` and is refused with [`CgroupError::NotADirectory`].
//! - After [`ContainerCgroup::kill`], processes die asynchronously; callers that need the
//!   cgroup empty (before [`ContainerCgroup::remove`]) poll [`ContainerCgroup::is_empty`].
//! - A container's cgroup namespace is rooted at its `main` leaf, so inside it the
//!   container's own limits (set one level up) are not visible in /sys/fs/cgroup.
//! - Processes an exec'd command leaves running after it exits stay in its exec leaf
//!   until the container stops.

mod container;
pub mod devices;
mod error;
mod fsio;
pub mod limits;
pub mod oom;
pub mod reserve;
pub mod stats;
mod tree;

pub use container::{ContainerCgroup, ExecCgroup, EXEC_PREFIX, MAIN_LEAF};
pub use error::{CgroupError, ParseError};
pub use limits::{controllers_needed, limit_writes};
pub use stats::CgroupStats;
pub use tree::{CgroupTree, DEFAULT_ROOT, KEEL_GROUP};

#[cfg(test)]
mod tests;
