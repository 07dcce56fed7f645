//! Forwarding container and keel logs to a remote syslog receiver: RFC 5424 messages in
//! RFC 6587 octet-counting frames over TCP, or TLS (RFC 5425) with the receiver's CA,
//! when /etc/keel/syslog.toml exists.
//!
//! PID 1 never waits for the network: keel's logger and the container log sink offer
//! each line to a bounded queue ([`tap`], [`queue`]); the event loop writes the queue
//! into a non-blocking pipe to `keel syslog` ([`forward`]), a process PID 1 starts and
//! restarts ([`supervise`]), which connects (again, with backoff) and writes the frames
//! in order. When the receiver is down or slow the forwarder stops reading, the pipe and
//! then the queue fill, and further lines are dropped and counted (`metrics`, and a
//! console notice every [`supervise::ANNOUNCE_EVERY`]).
//!
//! Map:
//! - [`config`]: syslog.toml, validated.
//! - [`rfc5424`]: message encoding and frames (pure).
//! - [`queue`]: the bounded frame queue (pure).
//! - [`tap`]: where lines enter the queue inside PID 1.
//! - [`supervise`]: PID 1's side: the pipe and the forwarder process.
//! - [`forward`]: the `keel syslog` process.
//!
//! Limitations: lines logged before the boot's `syslog` step (which runs after first
//! boot, as it may write syslog.toml) are not forwarded; frames written to a connection
//! that then broke may be lost or, when resent after reconnecting, received twice; a
//! receiver that is reached by name is resolved with the C library's resolver.

pub mod config;
pub mod forward;
pub mod queue;
pub mod rfc5424;
pub mod supervise;
pub mod tap;

pub use config::{SyslogConfig, SyslogConfigError, CONFIG_PATH};

/// The syslog part of `metrics`' keel counters.
pub fn counters() -> keel_supervisor::metrics::KeelCounters {
    let (dropped, sent) = tap::counts();
    keel_supervisor::metrics::KeelCounters {
        console_lines_dropped: 0,
        syslog_lines_dropped: dropped,
        syslog_lines_sent: sent,
        syslog_configured: tap::active(),
    }
}

/// `keel syslog [CONFIG]`: run the forwarder (PID 1 starts it with the pipe as stdin).
pub fn main(args: &[String]) -> i32 {
    let path = args.first().map(String::as_str).unwrap_or(CONFIG_PATH);
    match config::load(std::path::Path::new(path)) {
        Ok(Some(config)) => forward::run(&config),
        Ok(None) => {
            eprintln!("keel syslog: {path} does not exist; nothing is forwarded");
            2
        }
        Err(e) => {
            eprintln!("keel syslog: {e}");
            2
        }
    }
}
