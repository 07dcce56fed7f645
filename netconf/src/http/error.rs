//! Why an HTTP(S) request failed, as a type: callers tell a timeout from a refused
//! certificate from an HTTP status without reading the message, and the message names
//! the URL, the step and the cause.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

/// Why TLS could not be set up or the handshake failed.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A CA bundle that is not PEM.
    #[error("not a valid PEM certificate bundle: {reason}")]
    BadPem {
        /// The PEM parser's message.
        reason: String,
    },
    /// A CA bundle without a certificate.
    #[error("no PEM certificate (-----BEGIN CERTIFICATE-----) in it")]
    NoCertificate,
    /// The image's CA bundle could not be read.
    #[error("{path}: {source}")]
    Bundle {
        /// The bundle's path.
        path: String,
        /// The system's error.
        source: io::Error,
    },
    /// A CA added at run time is not a usable trust anchor.
    #[error("a configured CA certificate is not usable: {0}")]
    UnusableCa(#[source] rustls::Error),
    /// Nothing to trust.
    #[error("no trusted CA certificates: {bundle} is missing and none were configured")]
    NoTrustedCa {
        /// The bundle looked for.
        bundle: &'static str,
    },
    /// rustls refused the configuration.
    #[error("TLS setup: {0}")]
    Setup(#[source] rustls::Error),
    /// The host cannot be a TLS server name.
    #[error("{host}: not a valid TLS server name: {reason}")]
    ServerName {
        /// The host.
        host: String,
        /// Why.
        reason: String,
    },
    /// The handshake failed; `hint` says what the usual cause is for certificate errors.
    #[error("TLS handshake with {host}: {source}{hint}")]
    Handshake {
        /// The host.
        host: String,
        /// rustls' error, as an I/O error.
        source: io::Error,
        /// A hint for people (empty when there is none).
        hint: &'static str,
    },
}

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The URL cannot be fetched by keel.
    #[error("{url}: {reason}")]
    BadUrl {
        /// The URL as written.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The host name does not resolve.
    #[error("resolve {host}: {source}")]
    Resolve {
        /// The host.
        host: String,
        /// The resolver's error.
        source: io::Error,
    },
    /// The host name resolves to no address.
    #[error("{host} resolves to no address")]
    NoAddress {
        /// The host.
        host: String,
    },
    /// No connection could be made.
    #[error("connect {addr}: {source}")]
    Connect {
        /// The last address tried.
        addr: SocketAddr,
        /// The system's error.
        source: io::Error,
    },
    /// A connect, send or read took longer than allowed.
    #[error("{what}: timed out after {after:?}")]
    Timeout {
        /// The step, e.g. "connect 10.0.2.2:80", "read".
        what: String,
        /// The limit that passed.
        after: Duration,
    },
    /// Sending or receiving failed.
    #[error("{what}: {source}")]
    Io {
        /// The step, e.g. "send", "read body".
        what: String,
        /// The system's error.
        source: io::Error,
    },
    /// TLS setup or handshake.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The answer is not well-formed HTTP/1.x.
    #[error("{reason}")]
    Malformed {
        /// What is wrong, e.g. "bad status code in …".
        reason: String,
    },
    /// The body is larger than the caller allows.
    #[error("body{} larger than {limit} bytes", length.map(|l| format!(" of {l} bytes is")).unwrap_or_default())]
    TooLarge {
        /// The length announced, when announced.
        length: Option<u64>,
        /// The limit.
        limit: u64,
    },
    /// The connection ended before the announced length.
    #[error("{what} cut short after {got} of {expected} bytes")]
    CutShort {
        /// "body", "chunked body: chunk".
        what: &'static str,
        /// Bytes received.
        got: u64,
        /// Bytes announced.
        expected: u64,
    },
    /// A final answer that is not what the caller can use (not 2xx, not 404 where
    /// 404 means "none").
    #[error("HTTP {status} {reason}")]
    Status {
        /// The status code.
        status: u16,
        /// The reason phrase.
        reason: String,
    },
    /// Redirects did not end.
    #[error("more than {limit} redirects")]
    TooManyRedirects {
        /// The most followed.
        limit: usize,
    },
    /// The proxy refused the `CONNECT` tunnel.
    #[error("proxy {proxy} refused the tunnel to {target}: HTTP {status} {reason}")]
    ProxyRefused {
        /// The proxy.
        proxy: String,
        /// The origin the tunnel was for.
        target: String,
        /// The proxy's status code.
        status: u16,
        /// Its reason phrase.
        reason: String,
    },
    /// The proxy sent data before the TLS handshake.
    #[error("proxy {proxy}: sent data before the TLS handshake")]
    ProxyEarlyData {
        /// The proxy.
        proxy: String,
    },
    /// A step through the proxy failed.
    #[error("proxy {proxy}: {source}")]
    Proxy {
        /// The proxy.
        proxy: String,
        /// What failed.
        source: Box<HttpError>,
    },
    /// The caller's check of a 2xx head refused it, or preparing its sink failed.
    #[error("{0}")]
    Sink(#[source] io::Error),
    /// The request to `url` failed (the URL is added once, by the redirect loop).
    #[error("{url}: {source}")]
    At {
        /// The URL requested.
        url: String,
        /// What failed.
        source: Box<HttpError>,
    },
    /// [`super::Client::fetch`]: an error that is not retried, named by the URL as shown.
    #[error("{shown}: {source}")]
    Fetch {
        /// The URL as the user wrote it (abbreviated).
        shown: String,
        /// What failed.
        source: Box<HttpError>,
    },
    /// [`super::Client::fetch`] retried until its deadline.
    #[error("{shown}: gave up after {secs} s and {attempts} attempt(s): {last}")]
    GaveUp {
        /// The URL as the user wrote it.
        shown: String,
        /// The total time allowed.
        secs: u64,
        /// How many requests were made.
        attempts: u32,
        /// The last failure.
        last: Box<HttpError>,
    },
}

impl HttpError {
    /// An I/O error of step `what`; a timed-out one (`WouldBlock`/`TimedOut`, what a
    /// socket timeout gives) is [`HttpError::Timeout`] after `after`.
    pub fn io(what: impl Into<String>, source: io::Error, after: Duration) -> HttpError {
        match source.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => HttpError::Timeout { what: what.into(), after },
            _ => HttpError::Io { what: what.into(), source },
        }
    }

    /// A malformed answer.
    pub fn malformed(reason: impl Into<String>) -> HttpError {
        HttpError::Malformed { reason: reason.into() }
    }

    /// The error under the URL, proxy and retry wrappers.
    pub fn root(&self) -> &HttpError {
        match self {
            HttpError::At { source, .. } | HttpError::Fetch { source, .. } | HttpError::Proxy { source, .. } => source.root(),
            HttpError::GaveUp { last, .. } => last.root(),
            other => other,
        }
    }

    /// Whether the server's certificate was refused (retrying cannot help).
    pub fn is_certificate_error(&self) -> bool {
        match self.root() {
            HttpError::Tls(TlsError::Handshake { source, hint, .. }) => !hint.is_empty() || source.to_string().contains("certificate"),
            _ => false,
        }
    }

    /// Whether a step ran out of time.
    pub fn is_timeout(&self) -> bool {
        matches!(self.root(), HttpError::Timeout { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_timeouts_are_timeouts_and_wrappers_are_seen_through() {
        let after = Duration::from_secs(15);
        let timeout = HttpError::io("read", io::Error::from(io::ErrorKind::WouldBlock), after);
        assert!(matches!(timeout, HttpError::Timeout { .. }), "{timeout:?}");
        assert_eq!(timeout.to_string(), "read: timed out after 15s");
        let wrapped = HttpError::GaveUp {
            shown: "http://x".into(),
            secs: 1,
            attempts: 2,
            last: Box::new(HttpError::At { url: "http://x/".into(), source: Box::new(timeout) }),
        };
        assert!(wrapped.is_timeout() && !wrapped.is_certificate_error());
        assert_eq!(wrapped.to_string(), "http://x: gave up after 1 s and 2 attempt(s): http://x/: read: timed out after 15s");
        let reset = HttpError::io("read", io::Error::from(io::ErrorKind::ConnectionReset), after);
        assert!(matches!(reset, HttpError::Io { .. }) && !reset.is_timeout());
        let cert = HttpError::Tls(TlsError::Handshake {
            host: "h".into(),
            source: io::Error::other("invalid peer certificate: UnknownIssuer"),
            hint: " (the server's certificate is not signed by a trusted CA)",
        });
        assert!(HttpError::Fetch { shown: "https://h".into(), source: Box::new(cert) }.is_certificate_error());
    }

    #[test]
    fn too_large_says_the_announced_length_when_there_is_one() {
        assert_eq!(HttpError::TooLarge { length: None, limit: 10 }.to_string(), "body larger than 10 bytes");
        assert_eq!(HttpError::TooLarge { length: Some(11), limit: 10 }.to_string(), "body of 11 bytes is larger than 10 bytes");
    }
}
