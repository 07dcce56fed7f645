//! /etc/keel/syslog.toml: where container and keel logs are forwarded. The file is put
//! in the image by host.toml's `[[files]]` or written by the first-boot config; without
//! it nothing is forwarded.
//!
//! ```toml
//! target = "10.0.2.2:6514"            # HOST:PORT of the receiver (IPv6: "[fd00::1]:6514")
//! tls = true                          # RFC 5425; default false (plain TCP, RFC 6587)
//! ca = "/etc/keel/syslog/ca.pem"      # with tls: the CA(s) of the receiver's certificate
//! server_name = "logs.example.com"    # with tls: the name to check (default: target's host)
//! buffer_bytes = 262144               # PID 1's queue; lines past it are dropped and counted
//! ```

use serde::Deserialize;
use std::path::{Path, PathBuf};

/// Where the forwarding settings live.
pub const CONFIG_PATH: &str = "/etc/keel/syslog.toml";
/// PID 1's queue when the file names no size.
pub const DEFAULT_BUFFER: usize = 256 * 1024;
/// Smallest queue: a couple of the longest messages.
pub const MIN_BUFFER: usize = 16 * 1024;
/// Largest queue.
pub const MAX_BUFFER: usize = 16 * 1024 * 1024;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    target: String,
    #[serde(default)]
    tls: bool,
    ca: Option<PathBuf>,
    server_name: Option<String>,
    buffer_bytes: Option<usize>,
}

/// The receiver's address as written: a host (name or address) and a port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// Name or IP address (without brackets).
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// TLS settings of the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// PEM file of the CA(s) that sign the receiver's certificate.
    pub ca: PathBuf,
    /// The name the receiver's certificate must carry.
    pub server_name: String,
}

/// The validated settings: what PID 1 and `keel syslog` act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyslogConfig {
    /// The receiver.
    pub target: Target,
    /// TLS, when on.
    pub tls: Option<TlsSettings>,
    /// PID 1's queue, bytes.
    pub buffer_bytes: usize,
}

/// Why syslog.toml cannot be used; each names the file (and the key).
#[derive(Debug, thiserror::Error)]
pub enum SyslogConfigError {
    /// The file could not be read, or is not valid TOML.
    #[error(transparent)]
    File(#[from] crate::toml_file::TomlFileError),
    /// A value is wrong.
    #[error("{path}: {key}: {message}")]
    Value {
        /// The file.
        path: String,
        /// The key.
        key: &'static str,
        /// What is wrong.
        message: String,
    },
}

/// `HOST:PORT` or `[IPV6]:PORT`.
pub fn parse_target(text: &str) -> Result<Target, String> {
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (host, port) = rest.split_once("]:").ok_or("an IPv6 address must be written [ADDRESS]:PORT")?;
        host.parse::<std::net::Ipv6Addr>().map_err(|_| format!("{host:?} is not an IPv6 address"))?;
        (host, port)
    } else {
        let (host, port) = text.rsplit_once(':').ok_or("must be HOST:PORT")?;
        if host.contains(':') {
            return Err("an IPv6 address must be written [ADDRESS]:PORT".into());
        }
        let name_ok = !host.is_empty() && host.len() <= 253 && host.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
        if !name_ok {
            return Err(format!("{host:?} is not a host name or address"));
        }
        (host, port)
    };
    let port: u16 = port.parse().ok().filter(|p| *p > 0).ok_or_else(|| format!("port {port:?} is not 1 to 65535"))?;
    Ok(Target { host: host.to_string(), port })
}

/// Parse and validate syslog.toml text; `path` names the file in errors.
pub fn parse(text: &str, path: &str) -> Result<SyslogConfig, SyslogConfigError> {
    let raw: RawConfig = crate::toml_file::decode(text, path)?;
    let value = |key, message: String| SyslogConfigError::Value { path: path.into(), key, message };
    let target = parse_target(&raw.target).map_err(|m| value("target", m))?;
    let tls = match (raw.tls, raw.ca, raw.server_name) {
        (true, Some(ca), name) => Some(TlsSettings { ca, server_name: name.unwrap_or_else(|| target.host.clone()) }),
        (true, None, _) => return Err(value("ca", "tls = true needs the CA of the receiver's certificate".into())),
        (false, Some(_), _) => return Err(value("ca", "is only used with tls = true".into())),
        (false, None, Some(_)) => return Err(value("server_name", "is only used with tls = true".into())),
        (false, None, None) => None,
    };
    let buffer_bytes = raw.buffer_bytes.unwrap_or(DEFAULT_BUFFER);
    if !(MIN_BUFFER..=MAX_BUFFER).contains(&buffer_bytes) {
        return Err(value("buffer_bytes", format!("must be {MIN_BUFFER} to {MAX_BUFFER}")));
    }
    Ok(SyslogConfig { target, tls, buffer_bytes })
}

/// Load syslog.toml; `None` when it does not exist (nothing is forwarded).
pub fn load(path: &Path) -> Result<Option<SyslogConfig>, SyslogConfigError> {
    crate::toml_file::read_optional(path)?.map(|text| parse(&text, &path.display().to_string())).transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_tls() {
        let c = parse("target = \"10.0.2.2:6514\"\n", "syslog.toml").unwrap();
        assert_eq!(c.target, Target { host: "10.0.2.2".into(), port: 6514 });
        assert_eq!((c.tls, c.buffer_bytes), (None, DEFAULT_BUFFER));
        let c = parse("target = \"logs.example.com:6514\"\ntls = true\nca = \"/etc/keel/syslog/ca.pem\"\n", "syslog.toml").unwrap();
        assert_eq!(c.tls, Some(TlsSettings { ca: "/etc/keel/syslog/ca.pem".into(), server_name: "logs.example.com".into() }));
        let c = parse("target = \"[fd00::1]:514\"\nbuffer_bytes = 16384\n", "syslog.toml").unwrap();
        assert_eq!((c.target.to_string(), c.buffer_bytes), ("[fd00::1]:514".into(), 16384));
    }

    /// Each rejection names the file, the key and the problem.
    #[test]
    fn rejections_name_the_key() {
        for (text, key, message) in [
            ("target = \"10.0.2.2\"\n", "target", "HOST:PORT"),
            ("target = \"10.0.2.2:0\"\n", "target", "1 to 65535"),
            ("target = \"10.0.2.2:x\"\n", "target", "1 to 65535"),
            ("target = \"fd00::1:514\"\n", "target", "[ADDRESS]:PORT"),
            ("target = \"bad host:514\"\n", "target", "not a host name"),
            ("target = \"h:1\"\ntls = true\n", "ca", "needs the CA"),
            ("target = \"h:1\"\nca = \"x.pem\"\n", "ca", "only used with tls"),
            ("target = \"h:1\"\nserver_name = \"x\"\n", "server_name", "only used with tls"),
            ("target = \"h:1\"\nbuffer_bytes = 10\n", "buffer_bytes", "16384"),
        ] {
            let err = parse(text, "/etc/keel/syslog.toml").unwrap_err();
            assert!(matches!(&err, SyslogConfigError::Value { key: k, .. } if *k == key), "{text}: {err:?}");
            let shown = err.to_string();
            assert!(shown.starts_with(&format!("/etc/keel/syslog.toml: {key}: ")) && shown.contains(message), "{shown}");
        }
        let err = parse("target = \"h:1\"\ntarget = 2\n", "syslog.toml").unwrap_err().to_string();
        assert!(err.contains("targe") && err.contains("line 2"), "{err}");
        assert!(parse("tls = false\n", "syslog.toml").unwrap_err().to_string().contains("target"));
    }
}
