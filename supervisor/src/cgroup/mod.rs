//! cgroup v2 for containers: each container gets its own cgroup at
//! `<root>/keel/<NAME>`, where `root` is normally `/sys/fs/cgroup`.
//!
//! The split follows STYLE.md: [`limits`] and [`stats`] hold pure logic (which files to
//! write, how to parse what the kernel reports), unit-tested on strings. [`CgroupTree`]
//! and [`ContainerCgroup`] apply it to a directory they are given, so tests point them at
//! a tempdir seeded with fixture files instead of the kernel's cgroupfs.
//!
//! Controllers are enabled on the parents only (`<root>` and `<root>/keel`), never on a
//! container's leaf: cgroup v2's "no internal processes" rule would otherwise forbid the
//! leaf from holding the container's processes.
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

mod container;
mod error;
mod fsio;
pub mod limits;
pub mod stats;
mod tree;

pub use container::ContainerCgroup;
pub use error::{CgroupError, ParseError};
pub use limits::{controllers_needed, limit_writes};
pub use stats::CgroupStats;
pub use tree::{CgroupTree, DEFAULT_ROOT, KEEL_GROUP};

#[cfg(test)]
mod tests;
