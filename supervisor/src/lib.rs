//! keel-supervisor: what PID 1 needs to run and operate the operator's containers.
//!
//! It holds the control API (the JSON-lines protocol spoken on `/run/keel/control.sock`
//! and on the virtio-serial control port, with its client), container declarations
//! (`spec`), container images (`image`: references, the OCI format, the verified
//! content-addressed store, layers as overlay lowers), registry pulls (`registry`), the
//! container runtime (`runtime`: namespaces, rootfs, identity), cgroup v2 (`cgroup`),
//! capabilities and seccomp (`security`), the restart policy (`restart`) and container
//! logs (`logs`).
#![deny(unsafe_code)]

pub mod cgroup;
pub mod control;
pub mod forked;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzzing;
pub mod health;
pub mod image;
pub mod logs;
pub mod manager;
pub mod metrics;
pub mod privdir;
pub mod registry;
pub mod restart;
pub mod runtime;
pub mod security;
pub mod spec;
pub mod stream;
pub mod worker;
