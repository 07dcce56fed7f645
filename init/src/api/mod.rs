//! The remote API: keel's control protocol over TLS 1.3 with client certificates, served
//! by a separate process (`keel api`) that PID 1 starts, restarts and stops, so that no
//! handshake ever runs on PID 1's thread. It proxies each authenticated request line to
//! the local control socket and writes every remote request to an audit log.
//!
//! Map:
//! - [`config`]: /etc/keel/api.toml (off unless the file exists).
//! - [`identity`]: the client certificate's subject (CN, O) and serial, read from its DER.
//! - [`roles`]: admin and read-only (an allowlist of commands).
//! - [`tls`]: server and client TLS configurations, the host's own key and certificate.
//! - [`audit`]: the bounded, rotated audit log.
//! - [`proxy`]: the `keel api` process: accept, handshake, check, forward.
//! - [`http`]: `GET /metrics` on the same port (Prometheus' text format).
//! - [`plain_metrics`]: the same without TLS on `metrics_listen`, when configured.
//! - [`supervise`]: PID 1's side: start with backoff, restart, stop at shutdown.
//! - [`cgroup`]: the API process's own cgroup (memory and pids caps).
//! - [`remote`]: keelctl's side: `--host` over TLS and the keelctl config file's contexts.
//! - `test_certs` (tests and the `testing` feature): throwaway CAs and client certificates.

pub mod audit;
pub mod cgroup;
pub mod config;
pub mod http;
pub mod identity;
pub mod plain_metrics;
pub mod proxy;
pub mod proxy_stream;
pub mod remote;
pub mod roles;
pub mod supervise;
#[cfg(any(test, feature = "testing"))]
pub mod test_certs;
pub mod tls;
pub mod tls_io;

pub use config::{ApiConfig, ApiConfigError, CONFIG_PATH};

/// `keel api [CONFIG]`: run the API process (PID 1 starts it; it is not meant to be run by hand).
pub fn main(args: &[String]) -> i32 {
    let path = args.first().map(String::as_str).unwrap_or(CONFIG_PATH);
    let config = match config::load(std::path::Path::new(path)) {
        Ok(Some(config)) => config,
        Ok(None) => {
            eprintln!("keel api: {path} does not exist; the remote API is off");
            return 2;
        }
        Err(e) => {
            eprintln!("keel api: {e}");
            return 2;
        }
    };
    match proxy::serve(&config) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("keel api: {e}");
            1
        }
    }
}
