//! The container runtime: from a validated declaration to a process isolated in its
//! own namespaces, root filesystem, capabilities, seccomp filter and cgroup.
//!
//! [`plan::plan`] computes everything as data; [`spawn::spawn`] applies it with clone3
//! and a child that reports its own failures; [`enter::enter`] runs a command inside a
//! running container with the same restrictions. Limitations: images are root filesystem
//! directories only; the network namespace holds only `lo` (bridges come with the
//! network issue).

pub mod child;
pub mod clone;
pub mod enter;
pub mod inroot;
pub mod plan;
pub mod pty;
pub mod reaper;
pub mod rootfs;
pub mod spawn;
pub mod users;

pub use child::Stdio;
pub use enter::{enter, enter_with_output, EnterTarget};
pub use plan::{plan, LaunchPlan};
pub use spawn::{spawn, spawn_with_hooks, HookError, NoHooks, SpawnError, StartHooks};
