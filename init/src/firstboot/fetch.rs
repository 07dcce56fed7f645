//! A small blocking HTTP/1.1 client for first-boot sources, over `std::net::TcpStream`.
//!
//! Only `http://` is supported: keel carries no TLS stack. `https://` URLs are refused
//! with a message naming the URL and pointing at the alternatives (plain http on a
//! trusted network such as a cloud metadata service, QEMU fw_cfg, or an inline
//! `data:` URL); the integrity of http resources can still be pinned with
//! `verification.hash` in the config.
//!
//! Requests send `Host` and `Connection: close`; responses are read with a
//! `Content-Length`, chunked transfer coding, or to end of stream, at most
//! [`MAX_BODY`] bytes. [`fetch`] retries while the network comes up: transport errors
//! and 5xx answers are retried with the [`backoff`] schedule (100 ms doubling to 5 s)
//! until the total timeout; 404 is reported as [`Fetched::NotFound`] at once (a cloud
//! metadata service without user data: no config); other answers are errors at once.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// The largest body keel accepts (64 MiB).
pub const MAX_BODY: usize = 64 << 20;
/// The longest status line or header line accepted.
const MAX_LINE: usize = 8 << 10;
/// The most header lines accepted.
const MAX_HEADERS: usize = 100;
/// One connection attempt waits at most this long.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// One read waits at most this long.
const READ_TIMEOUT: Duration = Duration::from_secs(15);

/// An `http://` URL taken apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    /// The host name or IP literal (IPv6 without brackets).
    pub host: String,
    /// The TCP port (80 when not given).
    pub port: u16,
    /// The path and query, starting with `/`.
    pub path: String,
    /// An address to use when `host` does not resolve (e.g. the link-local metadata IP).
    pub fallback: Option<IpAddr>,
}

impl Url {
    /// The `Host` header value.
    pub fn host_header(&self) -> String {
        let host = if self.host.contains(':') { format!("[{}]", self.host) } else { self.host.clone() };
        if self.port == 80 { host } else { format!("{host}:{}", self.port) }
    }
}

/// The message for an `https://` source: keel has no TLS.
pub fn https_refused(url: &str) -> String {
    format!("{url}: https is not supported by keel (no TLS in PID 1); serve the config over http, pass it by QEMU fw_cfg or inline it as a data: URL")
}

/// Parse an `http://host[:port][/path]` URL; `https://` is refused with [`https_refused`].
pub fn parse_url(url: &str) -> Result<Url, String> {
    if url.starts_with("https://") {
        return Err(https_refused(url));
    }
    let rest = url.strip_prefix("http://").ok_or_else(|| format!("{url}: not an http:// URL"))?;
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) if rest.as_bytes()[i] == b'/' => (&rest[..i], rest[i..].to_string()),
        Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
        None => (rest, "/".to_string()),
    };
    let path = path.split('#').next().unwrap_or("/").to_string();
    if authority.contains('@') {
        return Err(format!("{url}: user information in URLs is not supported"));
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6.split_once(']').ok_or_else(|| format!("{url}: unclosed '[' in the host"))?;
        match after {
            "" => (host, None),
            p => (host, Some(p.strip_prefix(':').ok_or_else(|| format!("{url}: bad text after the IPv6 address"))?)),
        }
    } else {
        match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    if host.is_empty() || host.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("{url}: no valid host"));
    }
    let port = match port {
        None => 80,
        Some(p) => p.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(|| format!("{url}: bad port {p:?}"))?,
    };
    if path.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("{url}: spaces or control characters in the path"));
    }
    Ok(Url { host: host.to_string(), port, path, fallback: None })
}

/// Parse `HTTP/1.x CODE REASON` into the code and reason.
pub fn parse_status_line(line: &str) -> Result<(u16, String), String> {
    let line = line.trim_end_matches(['\r', '\n']);
    let mut parts = line.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    if !(version == "HTTP/1.1" || version == "HTTP/1.0") {
        return Err(format!("not an HTTP/1.x status line: {line:?}"));
    }
    let code = parts.next().unwrap_or("");
    let code = (code.len() == 3).then(|| code.parse::<u16>().ok()).flatten().filter(|c| (100..600).contains(c));
    let code = code.ok_or_else(|| format!("bad status code in {line:?}"))?;
    Ok((code, parts.next().unwrap_or("").to_string()))
}

/// Parse one `Name: value` header line; the name is lowercased, the value trimmed.
pub fn parse_header(line: &str) -> Result<(String, String), String> {
    let line = line.trim_end_matches(['\r', '\n']);
    let (name, value) = line.split_once(':').ok_or_else(|| format!("bad header line {line:?}"))?;
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!("bad header name in {line:?}"));
    }
    Ok((name.to_ascii_lowercase(), value.trim().to_string()))
}

fn read_line(reader: &mut impl BufRead) -> Result<String, String> {
    let mut line = Vec::new();
    reader.take(MAX_LINE as u64 + 1).read_until(b'\n', &mut line).map_err(|e| format!("read: {e}"))?;
    if line.len() > MAX_LINE {
        return Err("line too long".into());
    }
    if !line.ends_with(b"\n") {
        return Err("connection closed in the middle of a line".into());
    }
    String::from_utf8(line).map_err(|_| "line is not UTF-8".into())
}

/// Decode a chunked body (RFC 9112 §7.1) of at most `limit` bytes; trailers are skipped.
pub fn decode_chunked(reader: &mut impl BufRead, limit: usize) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    loop {
        let line = read_line(reader).map_err(|e| format!("chunked body: {e}"))?;
        let size = line.trim_end_matches(['\r', '\n']).split(';').next().unwrap_or("").trim();
        let size = (!size.is_empty() && size.len() <= 16)
            .then(|| usize::from_str_radix(size, 16).ok())
            .flatten()
            .ok_or_else(|| format!("chunked body: bad chunk size {:?}", line.trim_end()))?;
        if size == 0 {
            loop {
                let trailer = read_line(reader).map_err(|e| format!("chunked body trailer: {e}"))?;
                if trailer.trim_end_matches(['\r', '\n']).is_empty() {
                    return Ok(body);
                }
            }
        }
        if body.len().saturating_add(size) > limit {
            return Err(format!("body larger than {limit} bytes"));
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader.read_exact(&mut body[start..]).map_err(|e| format!("chunked body: chunk cut short: {e}"))?;
        let mut crlf = [0u8; 2];
        reader.read_exact(&mut crlf).map_err(|e| format!("chunked body: {e}"))?;
        if &crlf != b"\r\n" {
            return Err("chunked body: no CRLF after a chunk".into());
        }
    }
}

/// An HTTP answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The reason phrase.
    pub reason: String,
    /// The headers, names lowercased, in order.
    pub headers: Vec<(String, String)>,
    /// The body, transfer coding removed.
    pub body: Vec<u8>,
}

impl Response {
    /// The first header called `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// Read a whole response (status line, headers, body) of a request with `method`.
pub fn read_response(reader: &mut impl BufRead, method: &str, limit: usize) -> Result<Response, String> {
    let (status, reason) = parse_status_line(&read_line(reader)?)?;
    let mut headers = Vec::new();
    loop {
        let line = read_line(reader)?;
        if line.trim_end_matches(['\r', '\n']).is_empty() {
            break;
        }
        if headers.len() >= MAX_HEADERS {
            return Err("too many headers".into());
        }
        headers.push(parse_header(&line)?);
    }
    let mut response = Response { status, reason, headers, body: Vec::new() };
    if method == "HEAD" || status == 204 || status == 304 || status < 200 {
        return Ok(response);
    }
    let chunked = response.header("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    response.body = if chunked {
        decode_chunked(reader, limit)?
    } else if let Some(length) = response.header("content-length") {
        let length: usize = length.parse().map_err(|_| format!("bad Content-Length {length:?}"))?;
        if length > limit {
            return Err(format!("body of {length} bytes is larger than {limit} bytes"));
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).map_err(|e| format!("body cut short: {e}"))?;
        body
    } else {
        let mut body = Vec::new();
        reader.take(limit as u64 + 1).read_to_end(&mut body).map_err(|e| format!("read body: {e}"))?;
        if body.len() > limit {
            return Err(format!("body larger than {limit} bytes"));
        }
        body
    };
    Ok(response)
}

fn addresses(url: &Url) -> Result<Vec<SocketAddr>, String> {
    if let Ok(ip) = url.host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, url.port)]);
    }
    match (url.host.as_str(), url.port).to_socket_addrs() {
        Ok(addrs) => {
            let addrs: Vec<SocketAddr> = addrs.collect();
            match (addrs.is_empty(), url.fallback) {
                (true, Some(ip)) => Ok(vec![SocketAddr::new(ip, url.port)]),
                (true, None) => Err(format!("{} resolves to no address", url.host)),
                (false, _) => Ok(addrs),
            }
        }
        Err(_) if url.fallback.is_some() => Ok(vec![SocketAddr::new(url.fallback.unwrap_or(IpAddr::from([0, 0, 0, 0])), url.port)]),
        Err(e) => Err(format!("resolve {}: {e}", url.host)),
    }
}

/// One request, no retries: connect (each resolved address in turn), send, read the answer.
pub fn request(method: &str, url: &Url, headers: &[(&str, &str)], timeout: Duration) -> Result<Response, String> {
    let mut last = String::from("no address");
    let mut stream = None;
    for addr in addresses(url)? {
        match TcpStream::connect_timeout(&addr, timeout.clamp(Duration::from_millis(50), CONNECT_TIMEOUT)) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last = format!("connect {addr}: {e}"),
        }
    }
    let mut stream = stream.ok_or(last)?;
    stream.set_read_timeout(Some(READ_TIMEOUT)).map_err(|e| e.to_string())?;
    stream.set_write_timeout(Some(READ_TIMEOUT)).map_err(|e| e.to_string())?;
    let mut text = format!("{method} {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: keel\r\nAccept: */*\r\nConnection: close\r\n", url.path, url.host_header());
    for (name, value) in headers {
        text.push_str(&format!("{name}: {value}\r\n"));
    }
    if method == "PUT" || method == "POST" {
        text.push_str("Content-Length: 0\r\n");
    }
    text.push_str("\r\n");
    stream.write_all(text.as_bytes()).map_err(|e| format!("send: {e}"))?;
    read_response(&mut BufReader::new(stream), method, MAX_BODY)
}

/// The wait before retry number `attempt` (0-based): 100 ms doubling, at most 5 s.
pub fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(100u64.saturating_mul(1u64 << attempt.min(16))).min(Duration::from_secs(5))
}

/// What a fetch found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fetched {
    /// A 2xx answer.
    Found(Response),
    /// A 404 answer: for a metadata service, no user data.
    NotFound,
}

/// `method` on `url` with `headers`, retried until `total` has passed. `wait` is
/// called instead of sleeping between attempts (PID 1 drives the uplink's DHCP client
/// in it, so the network comes up while first boot waits). Errors name the URL and
/// the last cause.
pub fn fetch(
    method: &str,
    url: &Url,
    shown: &str,
    headers: &[(&str, &str)],
    total: Duration,
    wait: &mut dyn FnMut(Duration),
) -> Result<Fetched, String> {
    let end = Instant::now() + total;
    let mut attempt = 0;
    loop {
        let remaining = end.saturating_duration_since(Instant::now());
        let last = match request(method, url, headers, remaining) {
            Ok(r) if (200..300).contains(&r.status) => return Ok(Fetched::Found(r)),
            Ok(r) if r.status == 404 => return Ok(Fetched::NotFound),
            Ok(r) if r.status < 500 => return Err(format!("{shown}: HTTP {} {}", r.status, r.reason)),
            Ok(r) => format!("HTTP {} {}", r.status, r.reason),
            Err(e) => e,
        };
        let remaining = end.saturating_duration_since(Instant::now());
        if remaining.is_zero() {
            return Err(format!("{shown}: gave up after {} s and {} attempt(s): {last}", total.as_secs(), attempt + 1));
        }
        log::debug!("{shown}: {last}; retrying");
        wait(backoff(attempt).min(remaining));
        attempt += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn urls_are_taken_apart() {
        let url = parse_url("http://10.0.2.2:8000/config.ign?x=1").unwrap();
        assert_eq!((url.host.as_str(), url.port, url.path.as_str()), ("10.0.2.2", 8000, "/config.ign?x=1"));
        assert_eq!(url.host_header(), "10.0.2.2:8000");
        let url = parse_url("http://metadata.google.internal").unwrap();
        assert_eq!((url.host.as_str(), url.port, url.path.as_str()), ("metadata.google.internal", 80, "/"));
        assert_eq!(url.host_header(), "metadata.google.internal");
        let url = parse_url("http://[fe80::1]:81/a#frag").unwrap();
        assert_eq!((url.host.as_str(), url.port, url.path.as_str()), ("fe80::1", 81, "/a"));
        assert_eq!(url.host_header(), "[fe80::1]:81");
        assert_eq!(parse_url("http://h?q").unwrap().path, "/?q");
        for bad in ["http://", "http://:80/", "http://h:0/", "http://h:99999/", "http://h:x/", "ftp://h/", "http://u@h/", "http://h/a b"] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
        let err = parse_url("https://example.com/c.ign").unwrap_err();
        assert!(err.contains("https://example.com/c.ign") && err.contains("fw_cfg") && err.contains("data:"), "{err}");
    }

    #[test]
    fn status_lines_and_headers_parse() {
        assert_eq!(parse_status_line("HTTP/1.1 200 OK\r\n").unwrap(), (200, "OK".into()));
        assert_eq!(parse_status_line("HTTP/1.0 404 Not Found\r\n").unwrap(), (404, "Not Found".into()));
        assert_eq!(parse_status_line("HTTP/1.1 204\r\n").unwrap(), (204, String::new()));
        for bad in ["HTTP/2 200 OK", "HTTP/1.1 20 OK", "HTTP/1.1 abc OK", "", "SSH-2.0-OpenSSH", "HTTP/1.1 999 x"] {
            assert!(parse_status_line(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_header("Content-Length:  12 \r\n").unwrap(), ("content-length".into(), "12".into()));
        assert_eq!(parse_header("X-Empty:\r\n").unwrap(), ("x-empty".into(), String::new()));
        assert!(parse_header("no colon\r\n").is_err());
        assert!(parse_header(": v\r\n").is_err());
        assert!(parse_header("Bad Name: v\r\n").is_err());
    }

    #[test]
    fn chunked_bodies_decode_and_malformed_ones_fail() {
        let mut ok = &b"4\r\nWiki\r\n6;ext=1\r\npedia \r\nE\r\nin \r\n\r\nchunks.\r\n0\r\nTrailer: x\r\n\r\n"[..];
        assert_eq!(decode_chunked(&mut ok, 100).unwrap(), b"Wikipedia in \r\n\r\nchunks.");
        for bad in [
            &b"zz\r\nabc\r\n0\r\n\r\n"[..],
            b"4\r\nabc",
            b"3\r\nabcX\r\n0\r\n\r\n",
            b"3\r\nabc\r\n",
            b"\r\n",
            b"ffffffffffffffffff\r\n",
        ] {
            assert!(decode_chunked(&mut &bad[..], 100).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        assert!(decode_chunked(&mut &b"5\r\nhello\r\n0\r\n\r\n"[..], 4).unwrap_err().contains("larger"));
    }

    #[test]
    fn responses_read_by_length_chunks_or_to_the_end() {
        let read = |text: &str| read_response(&mut text.as_bytes(), "GET", 10);
        assert_eq!(read("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabcdef").unwrap().body, b"abc");
        assert_eq!(read("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n0\r\n\r\n").unwrap().body, b"ab");
        assert_eq!(read("HTTP/1.0 200 OK\r\n\r\nto the end").unwrap().body, b"to the end");
        assert!(read("HTTP/1.0 200 OK\r\n\r\nmore than ten").unwrap_err().contains("larger"));
        assert!(read("HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n").unwrap_err().contains("larger"));
        assert!(read("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab").unwrap_err().contains("cut short"));
        assert!(read("HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n").is_err());
        assert!(read("HTTP/1.1 200 OK\r\nContent").is_err());
        let r = read("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n").unwrap();
        assert_eq!((r.status, r.header("content-length")), (404, Some("0")));
    }

    #[test]
    fn backoff_doubles_from_100_ms_to_5_s() {
        let schedule: Vec<u64> = (0..10).map(|a| backoff(a).as_millis() as u64).collect();
        assert_eq!(schedule, [100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000, 5000]);
        assert_eq!(backoff(u32::MAX), Duration::from_secs(5));
    }

    /// Serve `answers` one connection each; return the requests seen.
    fn serve(answers: Vec<&'static str>) -> (u16, std::thread::JoinHandle<Vec<String>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let handle = std::thread::spawn(move || {
            let mut seen = Vec::new();
            for answer in answers {
                let (mut stream, _) = listener.accept().unwrap();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut request = String::new();
                loop {
                    let mut line = String::new();
                    reader.read_line(&mut line).unwrap();
                    request.push_str(&line);
                    if line == "\r\n" || line.is_empty() {
                        break;
                    }
                }
                seen.push(request);
                stream.write_all(answer.as_bytes()).unwrap();
            }
            seen
        });
        (port, handle)
    }

    #[test]
    fn fetch_retries_server_errors_and_sends_headers() {
        let (port, server) = serve(vec!["HTTP/1.1 503 Busy\r\nContent-Length: 0\r\n\r\n", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi"]);
        let url = parse_url(&format!("http://127.0.0.1:{port}/x")).unwrap();
        let mut waits = Vec::new();
        let got = fetch("GET", &url, "u", &[("X-Token", "t")], Duration::from_secs(10), &mut |d| {
            waits.push(d);
            std::thread::sleep(d)
        })
        .unwrap();
        assert!(matches!(got, Fetched::Found(r) if r.body == b"hi"));
        assert_eq!(waits, [Duration::from_millis(100)]);
        let seen = server.join().unwrap();
        assert!(seen[1].starts_with("GET /x HTTP/1.1\r\n"), "{seen:?}");
        assert!(seen[1].contains(&format!("Host: 127.0.0.1:{port}\r\n")) && seen[1].contains("X-Token: t\r\n"), "{seen:?}");
        assert!(seen[1].contains("Connection: close\r\n"), "{seen:?}");
    }

    #[test]
    fn fetch_reports_404_and_refusals() {
        let (port, server) = serve(vec!["HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n", "HTTP/1.1 403 Forbidden\r\n\r\n"]);
        let url = parse_url(&format!("http://127.0.0.1:{port}/x")).unwrap();
        let mut no_wait = |_| panic!("no retry expected");
        assert_eq!(fetch("GET", &url, "u", &[], Duration::from_secs(5), &mut no_wait).unwrap(), Fetched::NotFound);
        let err = fetch("PUT", &url, "the-url", &[], Duration::from_secs(5), &mut no_wait).unwrap_err();
        assert!(err.contains("the-url") && err.contains("403"), "{err}");
        assert!(server.join().unwrap()[1].contains("Content-Length: 0"));
    }

    #[test]
    fn fetch_gives_up_naming_the_url_and_cause() {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let url = parse_url(&format!("http://127.0.0.1:{port}/x")).unwrap();
        let err = fetch("GET", &url, "http://here", &[], Duration::from_millis(300), &mut std::thread::sleep).unwrap_err();
        assert!(err.contains("http://here") && err.contains("gave up") && err.contains("connect"), "{err}");
    }
}
