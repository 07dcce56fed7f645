//! keel-init: keel's PID 1 and its `keelctl` client.
//!
//! PID 1 runs a fallible boot (each step logged, a failing step never stops the
//! others), then an event loop that never returns: it reaps children, serves the
//! control channel, and shuts the machine down on a signal, the power button or a
//! request. Pure parts (command line, settings, module order, shutdown plan) are
//! plain functions with unit tests; the rest applies them to the kernel.
//!
//! Limitations (current state): no containers, network or first-boot config yet —
//! those steps arrive with their issues.

pub mod accept_backoff;
pub mod api;
pub mod boot;
pub mod boot_error;
pub mod clock;
pub mod cmdline;
pub mod connections;
pub mod containers;
pub mod control_server;
pub mod ctl;
pub mod ctl_stream;
pub mod event_loop;
pub mod exec_helper;
pub mod firstboot;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzzing;
pub mod fwcfg;
pub mod gpt;
pub mod grow;
pub mod images;
pub mod init_cmd;
pub mod jobs;
pub mod kmod;
pub mod late_boot;
pub mod logger;
pub mod metrics;
pub mod modload;
pub mod mounts;
pub mod network;
pub mod power_button;
pub mod progress_view;
pub mod reaper;
pub mod reconcile;
pub mod respawn;
pub mod run_cmd;
mod scratch;
pub mod settings;
pub mod shutdown;
pub mod storage;
pub mod stream_helper;
pub mod switch_root;
pub mod syslog;
pub mod sysroot;
pub mod toml_file;
pub mod watchdog;
