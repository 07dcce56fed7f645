//! keel-supervisor: what PID 1 needs to run and operate the operator's containers.
//!
//! Today this crate holds the control API: the JSON-lines protocol spoken on
//! `/run/keel/control.sock` and on the virtio-serial control port, with its client.
//!
//! Limitations (current state): container specs, spawning with namespaces, cgroup v2 and
//! restart policy are not here yet; the control API only knows host-level commands
//! (status, poweroff, reboot, exec).
#![forbid(unsafe_code)]

pub mod control;
pub mod spec;
