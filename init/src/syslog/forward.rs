//! The `keel syslog` process: read frames from stdin (PID 1's pipe), keep a connection
//! to the receiver (TCP, or TLS with the configured CA) and write the frames to it in
//! order. While it cannot connect it waits (1 s, doubling to [`MAX_BACKOFF`]) and does
//! not read, so the pipe and then PID 1's bounded queue fill and PID 1 drops and counts
//! further lines. A frame whose write failed is sent again first after reconnecting.
//! It exits when the pipe ends (PID 1 closed it).

use super::config::{SyslogConfig, Target};
use super::rfc5424::FrameReader;
use keel_netconf::http::TrustStore;
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::Duration;

/// First wait after a failed connection.
pub const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// Longest wait between connection attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// A connection attempt, or a write the receiver does not take, gives up after this.
const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the receiver cannot be reached.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    /// The name did not resolve, or to no address.
    #[error("{target}: cannot resolve: {reason}")]
    Resolve {
        /// The receiver.
        target: String,
        /// Why.
        reason: String,
    },
    /// No address took the connection.
    #[error("{target}: cannot connect: {source}")]
    Connect {
        /// The receiver.
        target: String,
        /// The last OS error.
        source: std::io::Error,
    },
    /// The CA file or the TLS handshake.
    #[error("{target}: TLS: {source}")]
    Tls {
        /// The receiver.
        target: String,
        /// What failed.
        source: keel_netconf::http::TlsError,
    },
    /// The CA file could not be read.
    #[error("{path}: {source}")]
    Ca {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
}

/// A connection to the receiver.
enum Connection {
    Plain(TcpStream),
    Tls(Box<keel_netconf::http::tls::TlsStream>),
}

impl Connection {
    fn tcp(&self) -> &TcpStream {
        match self {
            Connection::Plain(tcp) => tcp,
            Connection::Tls(tls) => tls.get_ref(),
        }
    }

    /// Whether the receiver closed the connection (a receiver never sends data: a
    /// readable socket means its end, or, with TLS, a session ticket to take in).
    fn closed(&mut self) -> bool {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        let readable = {
            let mut fds = [PollFd::new(self.tcp().as_fd(), PollFlags::POLLIN)];
            poll(&mut fds, PollTimeout::ZERO).is_ok_and(|n| n > 0)
        };
        if !readable || self.tcp().set_nonblocking(true).is_err() {
            return false;
        }
        let mut buffer = [0u8; 4096];
        let closed = match self {
            Connection::Plain(tcp) => match tcp.peek(&mut buffer) {
                Ok(0) => true,
                Ok(_) => false,
                Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
            },
            Connection::Tls(tls) => match tls.read(&mut buffer) {
                Ok(0) => true,
                Ok(_) => false,
                Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
            },
        };
        closed || self.tcp().set_nonblocking(false).is_err()
    }

    /// The input ended: close cleanly (TLS: close_notify, so the receiver sees a complete stream).
    fn finish(&mut self) {
        if let Connection::Tls(tls) = self {
            tls.conn.send_close_notify();
            let _ = tls.flush();
        }
    }

    fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        match self {
            Connection::Plain(tcp) => tcp.write_all(bytes),
            Connection::Tls(tls) => tls.write_all(bytes).and_then(|()| tls.flush()),
        }
    }
}

/// The TLS client configuration for the receiver's CA, when TLS is on.
fn tls_config(config: &SyslogConfig) -> Result<Option<Arc<rustls::ClientConfig>>, ForwardError> {
    let Some(tls) = &config.tls else { return Ok(None) };
    let target = config.target.to_string();
    let pem = std::fs::read(&tls.ca).map_err(|source| ForwardError::Ca { path: tls.ca.display().to_string(), source })?;
    let mut store = TrustStore::empty();
    store.add_pem(&pem).map_err(|source| ForwardError::Tls { target: target.clone(), source })?;
    store.client_config().map(Some).map_err(|source| ForwardError::Tls { target, source })
}

fn connect(target: &Target, tls: Option<(&Arc<rustls::ClientConfig>, &str)>) -> Result<Connection, ForwardError> {
    let name = target.to_string();
    let addresses: Vec<_> = (target.host.as_str(), target.port)
        .to_socket_addrs()
        .map_err(|e| ForwardError::Resolve { target: name.clone(), reason: e.to_string() })?
        .collect();
    let mut last = std::io::Error::new(std::io::ErrorKind::NotFound, "no address");
    for address in &addresses {
        match TcpStream::connect_timeout(address, IO_TIMEOUT) {
            Ok(tcp) => {
                let _ = tcp.set_write_timeout(Some(IO_TIMEOUT));
                let _ = tcp.set_read_timeout(Some(IO_TIMEOUT));
                let _ = tcp.set_nodelay(true);
                return match tls {
                    None => Ok(Connection::Plain(tcp)),
                    Some((config, server_name)) => keel_netconf::http::tls::connect(config.clone(), server_name, tcp)
                        .map(|s| Connection::Tls(Box::new(s)))
                        .map_err(|source| ForwardError::Tls { target: name, source }),
                };
            }
            Err(e) => last = e,
        }
    }
    if addresses.is_empty() {
        return Err(ForwardError::Resolve { target: name, reason: "no address".into() });
    }
    Err(ForwardError::Connect { target: name, source: last })
}

/// Connect, retrying with backoff; a failure is said once until a connection works again.
fn connect_with_backoff(config: &SyslogConfig, tls: Option<&Arc<rustls::ClientConfig>>, quiet: &mut bool) -> Connection {
    let mut delay = FIRST_BACKOFF;
    let server_name = config.tls.as_ref().map(|t| t.server_name.as_str()).unwrap_or("");
    loop {
        match connect(&config.target, tls.map(|c| (c, server_name))) {
            Ok(connection) => {
                eprintln!("keel syslog: forwarding to {}{}", config.target, if tls.is_some() { " (TLS)" } else { "" });
                *quiet = false;
                return connection;
            }
            Err(e) => {
                if !*quiet {
                    eprintln!("keel syslog: {e}; retrying (every {}s at most)", MAX_BACKOFF.as_secs());
                    *quiet = true;
                }
                std::thread::sleep(delay);
                delay = (delay * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// Forward stdin's frames to the receiver until stdin ends; the process's exit code.
pub fn run(config: &SyslogConfig) -> i32 {
    run_from(config, &mut std::io::stdin().lock())
}

/// Forward the frames read from `input` until it ends; the exit code.
pub fn run_from(config: &SyslogConfig, input: &mut dyn Read) -> i32 {
    let tls = match tls_config(config) {
        Ok(tls) => tls,
        Err(e) => {
            eprintln!("keel syslog: {e}");
            return 2;
        }
    };
    let mut frames = FrameReader::default();
    let mut batch: Vec<u8> = Vec::new();
    let mut quiet = false;
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let mut connection = connect_with_backoff(config, tls.as_ref(), &mut quiet);
        loop {
            if batch.is_empty() {
                let n = match input.read(&mut buffer) {
                    Ok(0) => {
                        connection.finish();
                        return 0;
                    }
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        eprintln!("keel syslog: reading PID 1's pipe: {e}");
                        return 1;
                    }
                };
                match frames.push(&buffer[..n]) {
                    Ok(complete) => complete.iter().for_each(|f| batch.extend_from_slice(f)),
                    Err(e) => {
                        eprintln!("keel syslog: PID 1's pipe: {e}");
                        return 1;
                    }
                }
                if batch.is_empty() {
                    continue;
                }
            }
            if connection.closed() {
                eprintln!("keel syslog: {} closed the connection; reconnecting", config.target);
                break;
            }
            match connection.send(&batch) {
                Ok(()) => batch.clear(),
                Err(e) => {
                    eprintln!("keel syslog: {}: {e}; reconnecting", config.target);
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::test_certs::{ca, issue_server};
    use crate::syslog::config::{parse, TlsSettings};
    use crate::syslog::rfc5424::frame;
    use std::net::TcpListener;

    fn temp_dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("keel-syslog-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn frames(n: u32) -> Vec<u8> {
        (1..=n).flat_map(|i| frame(&format!("<30>1 - - t - stdout - line {i}"))).collect()
    }

    #[test]
    fn frames_reach_a_tcp_receiver_in_order_and_the_forwarder_ends_with_its_input() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let config = parse(&format!("target = \"127.0.0.1:{}\"\n", listener.local_addr().unwrap().port()), "t").unwrap();
        let receiver = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut got = Vec::new();
            stream.read_to_end(&mut got).unwrap();
            got
        });
        let input = frames(500);
        assert_eq!(run_from(&config, &mut input.as_slice()), 0);
        assert_eq!(receiver.join().unwrap(), input);
    }

    #[test]
    fn tls_checks_the_receivers_certificate_against_the_configured_ca() {
        let dir = temp_dir("tls");
        let ours = ca("syslog receivers' CA");
        let other = ca("another CA");
        std::fs::write(dir.join("ca.pem"), ours.cert.pem()).unwrap();
        std::fs::write(dir.join("other.pem"), other.cert.pem()).unwrap();
        let (cert, key) = issue_server(&dir, &ours, "receiver", "localhost");
        let server = rustls::ServerConfig::builder_with_provider(crate::api::tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(crate::api::tls::load_certs(&cert).unwrap(), crate::api::tls::load_key(&key).unwrap())
            .unwrap();
        let server = Arc::new(server);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let receiver = std::thread::spawn(move || {
            let mut received = Vec::new();
            // The first connection is the refused handshake (another CA), the second delivers.
            for _ in 0..2 {
                let (tcp, _) = listener.accept().unwrap();
                let mut tls = rustls::StreamOwned::new(rustls::ServerConnection::new(server.clone()).unwrap(), tcp);
                let mut got = Vec::new();
                let result = tls.read_to_end(&mut got);
                received.push((got, result.is_ok()));
            }
            received
        });
        let mut config = parse(&format!("target = \"127.0.0.1:{port}\"\n"), "t").unwrap();
        // Negative control: a CA that did not sign the receiver's certificate is refused.
        config.tls = Some(TlsSettings { ca: dir.join("other.pem"), server_name: "localhost".into() });
        let refused = tls_config(&config).unwrap().unwrap();
        let err = connect(&config.target, Some((&refused, "localhost"))).err().expect("a certificate from another CA");
        assert!(matches!(err, ForwardError::Tls { .. }), "{err}");
        config.tls = Some(TlsSettings { ca: dir.join("ca.pem"), server_name: "localhost".into() });
        let input = frames(200);
        assert_eq!(run_from(&config, &mut input.as_slice()), 0);
        let received = receiver.join().unwrap();
        assert!(received[0].0.is_empty(), "nothing crossed the refused handshake");
        assert_eq!(received[1], (input, true), "every frame, then close_notify");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
