//! A small blocking HTTP/1.1 client with TLS, for first-boot sources and registry pulls.
//!
//! One request per connection (`Connection: close`); responses are read by
//! `Content-Length`, chunked, or to the end of the stream, either into memory (at most
//! [`MAX_BODY`]) or streamed into a sink. `https://` goes through rustls ([`tls`]) with the
//! image's CA bundle plus CAs added at run time; a [`Proxy`] (Ignition's
//! `ignition.proxy`) forwards http requests and tunnels https with `CONNECT`.
//! Redirects (301, 302, 303, 307, 308) are followed up to [`MAX_REDIRECTS`] times;
//! `Authorization` is not sent to another host. [`Client::fetch`] retries while the
//! network comes up: transport errors and 5xx answers are retried with the [`backoff`]
//! schedule (100 ms doubling to 5 s) until a total timeout.

mod error;
mod proxy;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod tls;
mod url;
pub mod wire;

pub use error::{HttpError, TlsError};
pub use proxy::Proxy;
pub use tls::TrustStore;
pub use url::{parse_url, Scheme, Url};
pub use wire::Response;

use std::io::{BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The largest body held in memory (64 MiB).
pub const MAX_BODY: usize = 64 << 20;
/// The most redirects followed for one request.
pub const MAX_REDIRECTS: usize = 10;
/// One connection attempt waits at most this long.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// One read waits at most this long, unless the client is told otherwise.
const READ_TIMEOUT: Duration = Duration::from_secs(15);
/// The most of an error answer's body kept when the body was meant for a sink.
const ERROR_BODY: u64 = 64 << 10;

/// The connection a request travels on.
enum Transport {
    Plain(TcpStream),
    Tls(Box<tls::TlsStream>),
}

impl Read for Transport {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Transport::Plain(s) => s.read(buf),
            Transport::Tls(s) => tls::read_tolerant(s, buf),
        }
    }
}

impl Transport {
    fn send(&mut self, data: &[u8]) -> std::io::Result<()> {
        match self {
            Transport::Plain(s) => s.write_all(data),
            Transport::Tls(s) => tls::write_all(s, data),
        }
    }
}

/// Called with the head of a 2xx answer before its body is streamed (e.g. to prepare
/// the sink); its error ends the request as [`HttpError::Sink`].
pub type BeforeBody<'a> = &'a mut dyn FnMut(&Response) -> std::io::Result<()>;

/// An HTTP(S) client: trusted CAs, proxy settings, timeouts.
#[derive(Default)]
pub struct Client {
    trust: TrustStore,
    tls_config: Option<Arc<rustls::ClientConfig>>,
    proxy: Proxy,
    read_timeout: Option<Duration>,
}

/// What a fetch found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fetched {
    /// A 2xx answer.
    Found(Response),
    /// A 404 answer: for a metadata service, no user data.
    NotFound,
}

/// The wait before retry number `attempt` (0-based): 100 ms doubling, at most 5 s.
pub fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(100u64.saturating_mul(1u64 << attempt.min(16))).min(Duration::from_secs(5))
}

fn addresses(url: &Url) -> Result<Vec<SocketAddr>, HttpError> {
    if let Ok(ip) = url.host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, url.port)]);
    }
    let fallback = url.fallback.map(|ip| vec![SocketAddr::new(ip, url.port)]);
    match (url.host.as_str(), url.port).to_socket_addrs() {
        Ok(addrs) => {
            let addrs: Vec<SocketAddr> = addrs.collect();
            if addrs.is_empty() {
                fallback.ok_or_else(|| HttpError::NoAddress { host: url.host.clone() })
            } else {
                Ok(addrs)
            }
        }
        Err(source) => fallback.ok_or_else(|| HttpError::Resolve { host: url.host.clone(), source }),
    }
}

fn connect_tcp(url: &Url, timeout: Duration) -> Result<TcpStream, HttpError> {
    let mut last = HttpError::NoAddress { host: url.host.clone() };
    let timeout = timeout.clamp(Duration::from_millis(50), CONNECT_TIMEOUT);
    for addr in addresses(url)? {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(s) => return Ok(s),
            Err(source) if matches!(source.kind(), std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock) => {
                last = HttpError::Timeout { what: format!("connect {addr}"), after: timeout }
            }
            Err(source) => last = HttpError::Connect { addr, source },
        }
    }
    Err(last)
}

/// A read or write on a socket whose timeout passed is a [`HttpError::Timeout`].
fn timed(error: HttpError, after: Duration) -> HttpError {
    match error {
        HttpError::Io { what, source } => HttpError::io(what, source, after),
        other => other,
    }
}

fn is_redirect(status: u16) -> bool {
    matches!(status, 301 | 302 | 303 | 307 | 308)
}

impl Client {
    /// A client trusting the image's CA bundle, without proxies.
    pub fn new() -> Self {
        Client::default()
    }

    /// A client trusting exactly `trust`.
    pub fn with_trust(trust: TrustStore) -> Self {
        Client { trust, ..Client::default() }
    }

    /// Trust the PEM certificates in `pem` as well; returns how many were added.
    pub fn add_ca_pem(&mut self, pem: &[u8]) -> Result<usize, TlsError> {
        let added = self.trust.add_pem(pem)?;
        self.tls_config = None;
        Ok(added)
    }

    /// Send requests through `proxy` from now on.
    pub fn set_proxy(&mut self, proxy: Proxy) {
        self.proxy = proxy;
    }

    /// Wait at most `timeout` for each read (e.g. Ignition's `httpResponseHeaders`).
    pub fn set_read_timeout(&mut self, timeout: Duration) {
        self.read_timeout = Some(timeout);
    }

    fn tls_config(&mut self) -> Result<Arc<rustls::ClientConfig>, TlsError> {
        if let Some(config) = &self.tls_config {
            return Ok(config.clone());
        }
        let config = self.trust.client_config()?;
        self.tls_config = Some(config.clone());
        Ok(config)
    }

    /// A connection to `url`'s origin, directly or through the proxy, TLS set up for https.
    fn connect(&mut self, url: &Url, timeout: Duration) -> Result<(Transport, bool), HttpError> {
        let proxy = self.proxy.for_url(url).cloned();
        let tcp = connect_tcp(proxy.as_ref().unwrap_or(url), timeout)?;
        let read_timeout = Some(self.read_timeout());
        tcp.set_read_timeout(read_timeout).map_err(|source| HttpError::Io { what: "set read timeout".into(), source })?;
        tcp.set_write_timeout(read_timeout).map_err(|source| HttpError::Io { what: "set write timeout".into(), source })?;
        match (url.scheme, proxy) {
            (Scheme::Http, proxy) => Ok((Transport::Plain(tcp), proxy.is_some())),
            (Scheme::Https, proxy) => {
                let tcp = match proxy {
                    Some(proxy) => tunnel(tcp, url, &proxy, self.read_timeout())?,
                    None => tcp,
                };
                let stream = tls::connect(self.tls_config()?, &url.host, tcp)?;
                Ok((Transport::Tls(Box::new(stream)), false))
            }
        }
    }

    fn read_timeout(&self) -> Duration {
        self.read_timeout.unwrap_or(READ_TIMEOUT)
    }

    /// One exchange, no redirects: the head, with a 2xx body streamed into `sink` (after
    /// `before_body` has seen the head) and any other body (up to 64 KiB) kept in the response.
    /// (The arguments are [`Client::request_streaming`]'s, passed on per redirect.)
    #[allow(clippy::too_many_arguments)]
    fn exchange(
        &mut self,
        method: &str,
        url: &Url,
        headers: &[(&str, &str)],
        timeout: Duration,
        sink: &mut dyn Write,
        limit: u64,
        before_body: BeforeBody<'_>,
    ) -> Result<Response, HttpError> {
        let (mut transport, absolute) = self.connect(url, timeout)?;
        let after = self.read_timeout();
        let target = if absolute { url.to_string() } else { url.path.clone() };
        let mut text = format!("{method} {target} HTTP/1.1\r\nHost: {}\r\nUser-Agent: keel\r\nConnection: close\r\n", url.host_header());
        if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("accept")) {
            text.push_str("Accept: */*\r\n");
        }
        for (name, value) in headers {
            text.push_str(&format!("{name}: {value}\r\n"));
        }
        if method == "PUT" || method == "POST" {
            text.push_str("Content-Length: 0\r\n");
        }
        text.push_str("\r\n");
        transport.send(text.as_bytes()).map_err(|source| HttpError::io("send", source, after))?;
        let mut reader = BufReader::new(transport);
        let mut head = wire::read_head(&mut reader).map_err(|e| timed(e, after))?;
        if head.is_success() {
            before_body(&head).map_err(HttpError::Sink)?;
            wire::read_body_into(&mut reader, method, &head, sink, limit).map_err(|e| timed(e, after))?;
        } else {
            let mut body = Vec::new();
            // An error's body is only informative: a cut-off one is fine.
            let _ = wire::read_body_into(&mut reader, method, &head, &mut body, ERROR_BODY);
            head.body = body;
        }
        Ok(head)
    }

    /// `method` on `url`, following redirects, with a 2xx body streamed into `sink` (at
    /// most `limit` bytes). The answer's body holds the body of a non-2xx answer.
    pub fn request_into(
        &mut self,
        method: &str,
        url: &Url,
        headers: &[(&str, &str)],
        timeout: Duration,
        sink: &mut dyn Write,
        limit: u64,
    ) -> Result<Response, HttpError> {
        self.request_streaming(method, url, headers, timeout, sink, limit, &mut |_| Ok(()))
    }

    /// [`Client::request_into`], with `before_body` called with a 2xx head before its
    /// body goes into `sink` (e.g. to start a resumed download over on a 200 that
    /// ignored the `Range` asked for).
    #[allow(clippy::too_many_arguments)]
    pub fn request_streaming(
        &mut self,
        method: &str,
        url: &Url,
        headers: &[(&str, &str)],
        timeout: Duration,
        sink: &mut dyn Write,
        limit: u64,
        before_body: BeforeBody<'_>,
    ) -> Result<Response, HttpError> {
        let mut url = url.clone();
        let mut method = method.to_string();
        let mut headers: Vec<(&str, &str)> = headers.to_vec();
        for _ in 0..=MAX_REDIRECTS {
            let response = self
                .exchange(&method, &url, &headers, timeout, sink, limit, &mut *before_body)
                .map_err(|e| HttpError::At { url: url.to_string(), source: Box::new(e) })?;
            let location = response.header("location").filter(|_| is_redirect(response.status));
            let Some(location) = location else { return Ok(response) };
            let next = url.join(location).map_err(|e| HttpError::At { url: url.to_string(), source: Box::new(e) })?;
            if next.host != url.host || next.port != url.port {
                headers.retain(|(n, _)| !n.eq_ignore_ascii_case("authorization"));
            }
            if response.status == 303 && method != "HEAD" {
                method = "GET".into();
            }
            url = next;
        }
        Err(HttpError::At { url: url.to_string(), source: Box::new(HttpError::TooManyRedirects { limit: MAX_REDIRECTS }) })
    }

    /// One request (following redirects), the body in memory (at most [`MAX_BODY`]).
    pub fn request(&mut self, method: &str, url: &Url, headers: &[(&str, &str)], timeout: Duration) -> Result<Response, HttpError> {
        let mut body = Vec::new();
        let mut response = self.request_into(method, url, headers, timeout, &mut body, MAX_BODY as u64)?;
        if response.is_success() {
            response.body = body;
        }
        Ok(response)
    }

    /// `method` on `url` with `headers`, retried until `total` has passed. `wait` is
    /// called instead of sleeping between attempts (PID 1 drives the uplink's DHCP client
    /// in it, so the network comes up while first boot waits). TLS certificate errors are
    /// not retried. Errors name `shown` (the URL as the user wrote it) and the last cause.
    pub fn fetch(
        &mut self,
        method: &str,
        url: &Url,
        shown: &str,
        headers: &[(&str, &str)],
        total: Duration,
        wait: &mut dyn FnMut(Duration),
    ) -> Result<Fetched, HttpError> {
        let end = Instant::now() + total;
        let mut attempt = 0;
        loop {
            let remaining = end.saturating_duration_since(Instant::now());
            let last = match self.request(method, url, headers, remaining) {
                Ok(r) if r.is_success() => return Ok(Fetched::Found(r)),
                Ok(r) if r.status == 404 => return Ok(Fetched::NotFound),
                Ok(r) if r.status < 500 => {
                    let source = Box::new(HttpError::Status { status: r.status, reason: r.reason });
                    return Err(HttpError::Fetch { shown: shown.to_string(), source });
                }
                Ok(r) => HttpError::Status { status: r.status, reason: r.reason },
                Err(e) if e.is_certificate_error() => return Err(HttpError::Fetch { shown: shown.to_string(), source: Box::new(e) }),
                Err(e) => e,
            };
            let remaining = end.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(HttpError::GaveUp {
                    shown: shown.to_string(),
                    secs: total.as_secs(),
                    attempts: attempt + 1,
                    last: Box::new(last),
                });
            }
            wait(backoff(attempt).min(remaining));
            attempt += 1;
        }
    }
}

/// Open a `CONNECT` tunnel to `url`'s origin through `proxy` over `tcp`.
fn tunnel(mut tcp: TcpStream, url: &Url, proxy: &Url, after: Duration) -> Result<TcpStream, HttpError> {
    let request = format!("CONNECT {0} HTTP/1.1\r\nHost: {0}\r\nUser-Agent: keel\r\n\r\n", url.authority());
    let via = |e: HttpError| HttpError::Proxy { proxy: proxy.authority(), source: Box::new(timed(e, after)) };
    tcp.write_all(request.as_bytes()).map_err(|source| via(HttpError::Io { what: "send".into(), source }))?;
    let mut reader = BufReader::new(tcp);
    let head = wire::read_head(&mut reader).map_err(via)?;
    if !head.is_success() {
        return Err(HttpError::ProxyRefused {
            proxy: proxy.authority(),
            target: url.authority(),
            status: head.status,
            reason: head.reason,
        });
    }
    if !reader.buffer().is_empty() {
        return Err(HttpError::ProxyEarlyData { proxy: proxy.authority() });
    }
    Ok(reader.into_inner())
}

#[cfg(test)]
mod tests;
