//! /etc/keel/api.toml: whether and how the remote API is served. The file is put in the
//! image by host.toml's `[[files]]` or written by the first-boot config; without it the
//! API is off and its port stays closed.
//!
//! ```toml
//! port = 50000                               # TCP port (default 50000)
//! client_ca = "/etc/keel/api/ca.pem"          # PEM: the CA(s) that sign client certificates
//! server_cert = "/etc/keel/api/server.pem"    # optional, with server_key: use these instead
//! server_key = "/etc/keel/api/server.key"     #   of the key made at first start
//! denied_serials = "/etc/keel/api/denied-serials"  # revoked client certificate serials (hex)
//! max_connections = 16
//! idle_timeout_secs = 300
//! metrics_listen = "127.0.0.1:9100"          # optional: GET /metrics without TLS here
//! ```

use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where the API's settings live.
pub const CONFIG_PATH: &str = "/etc/keel/api.toml";
/// The port when the file names none (Talos' apid uses the same).
pub const DEFAULT_PORT: u16 = 50000;
/// The deny list when the file names none.
pub const DEFAULT_DENIED_SERIALS: &str = "/etc/keel/api/denied-serials";
/// Where the host keeps the server key and certificate it made.
pub const STATE_DIR: &str = "/var/lib/keel/api";
/// The audit log.
pub const AUDIT_LOG: &str = "/var/log/keel/audit.log";

/// The file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    port: Option<u16>,
    client_ca: PathBuf,
    server_cert: Option<PathBuf>,
    server_key: Option<PathBuf>,
    denied_serials: Option<PathBuf>,
    max_connections: Option<usize>,
    idle_timeout_secs: Option<u64>,
    metrics_listen: Option<String>,
}

/// Where the server's key and certificate come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerKey {
    /// Made at first start and kept in [`STATE_DIR`].
    Generated,
    /// Files the config names (PEM).
    Files {
        /// Certificate chain, leaf first.
        cert: PathBuf,
        /// Private key.
        key: PathBuf,
    },
}

/// The validated API settings: what `keel api` and the firewall act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiConfig {
    /// TCP port, opened in the input firewall.
    pub port: u16,
    /// PEM file of the CA(s) whose client certificates are accepted.
    pub client_ca: PathBuf,
    /// The server's key and certificate.
    pub server: ServerKey,
    /// Revoked client certificate serials, one hex serial a line (re-read for each handshake).
    pub denied_serials: PathBuf,
    /// Connections served at once; more are closed at accept.
    pub max_connections: usize,
    /// A connection idle (no request) this long is closed.
    pub idle_timeout: Duration,
    /// A handshake not finished in this time is abandoned.
    pub handshake_timeout: Duration,
    /// Where plain HTTP `GET /metrics` is served, if anywhere.
    pub metrics_listen: Option<std::net::SocketAddr>,
}

impl ApiConfig {
    /// The port the input firewall must open for the plain metrics address: none when
    /// it is unset or on loopback (reached from the host only).
    pub fn metrics_firewall_port(&self) -> Option<u16> {
        self.metrics_listen.filter(|a| !a.ip().is_loopback()).map(|a| a.port())
    }
}

/// Why api.toml cannot be used; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum ApiConfigError {
    /// The file could not be read, or is not valid TOML.
    #[error(transparent)]
    File(#[from] crate::toml_file::TomlFileError),
    /// A value is out of range.
    #[error("{path}: {key}: {message}")]
    Value {
        /// The file.
        path: String,
        /// The key.
        key: &'static str,
        /// What is wrong.
        message: &'static str,
    },
}

/// Parse and validate api.toml text; `path` only names the file in errors.
pub fn parse(text: &str, path: &str) -> Result<ApiConfig, ApiConfigError> {
    let raw: RawConfig = crate::toml_file::decode(text, path)?;
    let value = |key, message| ApiConfigError::Value { path: path.into(), key, message };
    let port = raw.port.unwrap_or(DEFAULT_PORT);
    if port == 0 {
        return Err(value("port", "must be 1 to 65535"));
    }
    let server = match (raw.server_cert, raw.server_key) {
        (None, None) => ServerKey::Generated,
        (Some(cert), Some(key)) => ServerKey::Files { cert, key },
        (Some(_), None) => return Err(value("server_key", "server_cert is set, so server_key must be too")),
        (None, Some(_)) => return Err(value("server_cert", "server_key is set, so server_cert must be too")),
    };
    let max_connections = raw.max_connections.unwrap_or(16);
    if !(1..=1024).contains(&max_connections) {
        return Err(value("max_connections", "must be 1 to 1024"));
    }
    let idle = raw.idle_timeout_secs.unwrap_or(300);
    if !(1..=86_400).contains(&idle) {
        return Err(value("idle_timeout_secs", "must be 1 to 86400"));
    }
    let metrics_listen = match raw.metrics_listen {
        None => None,
        Some(text) => match text.parse::<std::net::SocketAddr>() {
            Ok(addr) if addr.port() == 0 => return Err(value("metrics_listen", "the port must be 1 to 65535")),
            Ok(addr) if addr.port() == port => return Err(value("metrics_listen", "must not be the API's own port")),
            Ok(addr) => Some(addr),
            Err(_) => return Err(value("metrics_listen", "must be ADDRESS:PORT, e.g. 127.0.0.1:9100 or [::1]:9100")),
        },
    };
    Ok(ApiConfig {
        port,
        metrics_listen,
        client_ca: raw.client_ca,
        server,
        denied_serials: raw.denied_serials.unwrap_or_else(|| DEFAULT_DENIED_SERIALS.into()),
        max_connections,
        idle_timeout: Duration::from_secs(idle),
        handshake_timeout: Duration::from_secs(10),
    })
}

/// Load api.toml; `None` when it does not exist (the API is off).
pub fn load(path: &Path) -> Result<Option<ApiConfig>, ApiConfigError> {
    crate::toml_file::read_optional(path)?.map(|text| parse(&text, &path.display().to_string())).transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let c = parse("client_ca = \"/etc/keel/api/ca.pem\"\n", "api.toml").unwrap();
        assert_eq!(c.port, DEFAULT_PORT);
        assert_eq!(c.server, ServerKey::Generated);
        assert_eq!(c.denied_serials, PathBuf::from(DEFAULT_DENIED_SERIALS));
        assert_eq!(c.max_connections, 16);
    }

    #[test]
    fn values_and_errors_name_the_key() {
        let c = parse("port = 6443\nclient_ca = \"ca.pem\"\nserver_cert = \"s.pem\"\nserver_key = \"s.key\"\n", "api.toml").unwrap();
        assert_eq!((c.port, c.server), (6443, ServerKey::Files { cert: "s.pem".into(), key: "s.key".into() }));
        let err = parse("client_ca = \"ca.pem\"\nserver_cert = \"s.pem\"\n", "/etc/keel/api.toml").unwrap_err().to_string();
        assert!(err.starts_with("/etc/keel/api.toml: server_key:"), "{err}");
        let err = parse("port = 0\nclient_ca = \"ca.pem\"\n", "api.toml").unwrap_err().to_string();
        assert!(err.contains("port"), "{err}");
        let err = parse("client_ca = \"ca.pem\"\nprot = 1\n", "api.toml").unwrap_err().to_string();
        assert!(err.contains("prot") && err.contains("line 2"), "{err}");
        let err = parse("port = 1\n", "api.toml").unwrap_err().to_string();
        assert!(err.contains("client_ca"), "a CA is required: {err}");
        for (listen, message) in [("localhost:9100", "ADDRESS:PORT"), ("127.0.0.1:0", "1 to 65535"), ("0.0.0.0:50000", "own port")] {
            let err = parse(&format!("client_ca = \"ca.pem\"\nmetrics_listen = \"{listen}\"\n"), "api.toml").unwrap_err().to_string();
            assert!(err.starts_with("api.toml: metrics_listen: ") && err.contains(message), "{listen}: {err}");
        }
    }

    #[test]
    fn the_plain_metrics_port_is_opened_only_off_loopback() {
        let with = |listen: &str| parse(&format!("client_ca = \"ca.pem\"\nmetrics_listen = \"{listen}\"\n"), "api.toml").unwrap();
        assert_eq!(with("127.0.0.1:9100").metrics_firewall_port(), None);
        assert_eq!(with("[::1]:9100").metrics_firewall_port(), None);
        assert_eq!(with("0.0.0.0:9100").metrics_firewall_port(), Some(9100));
        assert_eq!(parse("client_ca = \"ca.pem\"\n", "api.toml").unwrap().metrics_listen, None);
    }
}
