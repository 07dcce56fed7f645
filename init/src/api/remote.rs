//! keelctl's side of the remote API: a TLS 1.3 connection to `HOST[:PORT]` with a
//! client certificate, and the keelctl config file's contexts (like talosconfig):
//! named sets of host, CA or pinned fingerprint, certificate and key, one of them current.
//!
//! The config file is `$KEELCONFIG`, else `~/.config/keel/keelctl.toml`:
//! ```toml
//! current = "lab"
//! [contexts.lab]
//! host = "192.0.2.10:50000"
//! fingerprint = "AB:CD:…"      # or ca = "/path/ca.pem"
//! cert = "/path/admin.pem"
//! key = "/path/admin.key"
//! ```

use super::config::DEFAULT_PORT;
use super::tls::{self, ServerTrust, TlsError};
use keel_supervisor::control::{Client, Transport};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Why keelctl cannot reach a host over the remote API.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// Keys, certificates, TLS.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The host could not be resolved or reached.
    #[error("{host}: {source}")]
    Connect {
        /// HOST:PORT.
        host: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The options do not say how to trust the server, or are inconsistent.
    #[error("{0}")]
    Usage(&'static str),
    /// The keelctl config file.
    #[error("{path}: {message}")]
    Config {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// Where and how to reach a host: a context, or the command line's `--host` options.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Context {
    /// HOST or HOST:PORT (port 50000 when not given).
    pub host: String,
    /// PEM of the CA that signed the server certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<PathBuf>,
    /// The server certificate's SHA-256, as the host's console shows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    /// Client certificate (PEM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert: Option<PathBuf>,
    /// Client key (PEM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<PathBuf>,
}

/// `HOST[:PORT]` (IPv6 in brackets) → (host, port).
pub fn split_host(text: &str) -> (String, u16) {
    if let Some(rest) = text.strip_prefix('[') {
        if let Some((host, after)) = rest.split_once(']') {
            let port = after.strip_prefix(':').and_then(|p| p.parse().ok()).unwrap_or(DEFAULT_PORT);
            return (host.to_string(), port);
        }
    }
    match text.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => match port.parse() {
            Ok(port) => (host.to_string(), port),
            Err(_) => (text.to_string(), DEFAULT_PORT),
        },
        _ => (text.to_string(), DEFAULT_PORT),
    }
}

/// The TLS connection keelctl talks the control protocol over.
struct TlsTransport(rustls::StreamOwned<rustls::ClientConnection, TcpStream>);

impl std::io::Read for TlsTransport {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.read(buf)
    }
}

impl std::io::Write for TlsTransport {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

impl Transport for TlsTransport {
    fn set_read_timeout(&self, timeout: Option<Duration>) -> std::io::Result<()> {
        self.0.sock.set_read_timeout(timeout)
    }

    fn into_stream(self: Box<Self>) -> std::io::Result<Box<dyn keel_supervisor::control::StreamIo>> {
        let rustls::StreamOwned { conn, sock } = self.0;
        Ok(Box::new(super::tls_io::TlsIo::new(conn, sock)?))
    }
}

/// Connect to the context's host over TLS (the handshake finishes here, so a refused
/// certificate shows as an error of the first answer) and return a control client.
pub fn connect(context: &Context, timeout: Duration) -> Result<Client, RemoteError> {
    let trust = match (&context.ca, &context.fingerprint) {
        (Some(ca), None) => ServerTrust::Ca(tls::load_certs(ca)?),
        (None, Some(pin)) => {
            ServerTrust::Pinned(tls::parse_fingerprint(pin).ok_or(RemoteError::Usage("--fingerprint: not a SHA-256 (64 hex digits)"))?)
        }
        (Some(_), Some(_)) => return Err(RemoteError::Usage("give --ca or --fingerprint, not both")),
        (None, None) => return Err(RemoteError::Usage("--host needs --ca FILE or --fingerprint SHA256 to trust the server")),
    };
    let identity = match (&context.cert, &context.key) {
        (Some(cert), Some(key)) => Some((tls::load_certs(cert)?, tls::load_key(key)?)),
        (None, None) => None,
        _ => return Err(RemoteError::Usage("--cert and --key go together")),
    };
    let config = tls::client_config(trust, identity)?;
    let (host, port) = split_host(&context.host);
    let address = format!("{host}:{port}");
    let connect_error = |source| RemoteError::Connect { host: address.clone(), source };
    let target = (host.as_str(), port)
        .to_socket_addrs()
        .map_err(connect_error)?
        .next()
        .ok_or_else(|| connect_error(std::io::Error::new(std::io::ErrorKind::NotFound, "no address")))?;
    let tcp = TcpStream::connect_timeout(&target, timeout).map_err(connect_error)?;
    let _ = tcp.set_nodelay(true);
    tcp.set_read_timeout(Some(timeout)).map_err(connect_error)?;
    tcp.set_write_timeout(Some(timeout)).map_err(connect_error)?;
    let name = rustls::pki_types::ServerName::try_from(host.clone())
        .map_err(|_| RemoteError::Usage("the host is not a valid DNS name or IP address"))?;
    let mut conn = rustls::ClientConnection::new(config, name).map_err(TlsError::from)?;
    let mut tcp = tcp;
    while conn.is_handshaking() {
        conn.complete_io(&mut tcp).map_err(connect_error)?;
    }
    Ok(Client::over(format!("tls://{address}"), Box::new(TlsTransport(rustls::StreamOwned::new(conn, tcp)))))
}

/// The keelctl config file: contexts by name and the current one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeelConfig {
    /// The context used when none is named.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<String>,
    /// Contexts by name.
    #[serde(default)]
    pub contexts: BTreeMap<String, Context>,
}

/// `$KEELCONFIG`, else `$HOME/.config/keel/keelctl.toml`.
pub fn config_path() -> PathBuf {
    if let Some(path) = std::env::var_os("KEELCONFIG") {
        return path.into();
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    Path::new(&home).join(".config/keel/keelctl.toml")
}

/// Read the config file; a missing one is empty.
pub fn load_config(path: &Path) -> Result<KeelConfig, RemoteError> {
    match std::fs::read_to_string(path) {
        Ok(text) => toml::from_str(&text).map_err(|e| RemoteError::Config { path: path.into(), message: e.to_string().trim_end().into() }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(KeelConfig::default()),
        Err(e) => Err(RemoteError::Config { path: path.into(), message: e.to_string() }),
    }
}

/// Write the config file atomically (mode 0600: it names keys).
pub fn save_config(path: &Path, config: &KeelConfig) -> Result<(), RemoteError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let error = |e: std::io::Error| RemoteError::Config { path: path.into(), message: e.to_string() };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(error)?;
    }
    let text = toml::to_string(config).map_err(|e| RemoteError::Config { path: path.into(), message: e.to_string() })?;
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp).map_err(error)?;
    file.write_all(text.as_bytes()).and_then(|()| file.sync_all()).map_err(error)?;
    std::fs::rename(&tmp, path).map_err(error)
}

/// Make absolute the paths of a context being added, so it works from any directory.
pub fn absolute(context: &mut Context) {
    for path in [&mut context.ca, &mut context.cert, &mut context.key].into_iter().flatten() {
        if let Ok(full) = std::path::absolute(&*path) {
            *path = full;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_and_ports() {
        assert_eq!(split_host("10.0.0.1"), ("10.0.0.1".into(), DEFAULT_PORT));
        assert_eq!(split_host("localhost:6443"), ("localhost".into(), 6443));
        assert_eq!(split_host("[::1]:7"), ("::1".into(), 7));
        assert_eq!(split_host("[fd00::1]"), ("fd00::1".into(), DEFAULT_PORT));
        assert_eq!(split_host("fd00::1"), ("fd00::1".into(), DEFAULT_PORT));
    }

    #[test]
    fn config_round_trips() {
        let path = std::env::temp_dir().join(format!("keelctl-{}.toml", std::process::id()));
        let mut config = KeelConfig::default();
        config.contexts.insert("lab".into(), Context { host: "h:1".into(), fingerprint: Some("AA".into()), ..Default::default() });
        config.current = Some("lab".into());
        save_config(&path, &config).unwrap();
        assert_eq!(load_config(&path).unwrap(), config);
        std::fs::write(&path, "current = \"x\"\nbogus = 1\n").unwrap();
        assert!(load_config(&path).unwrap_err().to_string().contains("bogus"));
        let _ = std::fs::remove_file(&path);
    }
}
