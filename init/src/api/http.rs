//! The one HTTP request the API port answers: `GET /metrics` (Prometheus' scrape), after
//! the same TLS handshake with a client certificate as the control protocol. A connection
//! whose first line is an HTTP/1.x request line is answered once and closed; anything
//! else on the port is the control protocol. Pure: the request line, the header bound
//! and the response bytes.

use std::io::{BufRead, Read};

/// The path that serves the metrics.
pub const METRICS_PATH: &str = "/metrics";
/// Most header lines read (and ignored) after the request line.
pub const MAX_HEADERS: usize = 100;
/// Longest header line.
pub const MAX_HEADER_LINE: usize = 8192;

/// A parsed request line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestLine {
    /// GET, HEAD, …
    pub method: String,
    /// The path without its query.
    pub path: String,
}

/// The request line of `line` when it is one (`METHOD TARGET HTTP/1.x`); None for a
/// control protocol line.
pub fn request_line(line: &str) -> Option<RequestLine> {
    let mut words = line.trim_end_matches(['\r', '\n']).split(' ');
    let (method, target, version) = (words.next()?, words.next()?, words.next()?);
    let http = words.next().is_none()
        && (version == "HTTP/1.1" || version == "HTTP/1.0")
        && !method.is_empty()
        && method.chars().all(|c| c.is_ascii_uppercase())
        && target.starts_with('/');
    http.then(|| RequestLine { method: method.to_string(), path: target.split('?').next().unwrap_or(target).to_string() })
}

/// Read the header lines up to the blank line, bounded; false when the bound was hit or
/// the peer went away first.
pub fn skip_headers(reader: &mut impl BufRead) -> bool {
    for _ in 0..MAX_HEADERS {
        let mut line = Vec::new();
        match reader.by_ref().take(MAX_HEADER_LINE as u64).read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => return false,
            Ok(_) if !line.ends_with(b"\n") => return false,
            Ok(_) if line == b"\r\n" || line == b"\n" => return true,
            Ok(_) => {}
        }
    }
    false
}

/// What an HTTP request gets: status, content type, body, and how the audit log files it.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// Content-Type.
    pub content_type: &'static str,
    /// The body.
    pub body: String,
    /// The audit log's result.
    pub outcome: super::audit::Outcome,
}

impl Answer {
    /// An error or refusal in plain text.
    pub fn text(status: u16, message: &str, outcome: super::audit::Outcome) -> Answer {
        Answer { status, content_type: "text/plain; charset=utf-8", body: format!("{message}\n"), outcome }
    }

    /// The metrics in Prometheus' text format.
    pub fn metrics(body: String) -> Answer {
        Answer { status: 200, content_type: crate::metrics::format::CONTENT_TYPE, body, outcome: super::audit::Outcome::Ok }
    }

    /// The audit detail: what was asked when it was not answered with 200.
    pub fn detail(&self, request: &RequestLine) -> Option<String> {
        (self.status != 200).then(|| format!("HTTP {} {} -> {}", request.method, request.path, self.status))
    }

    /// The response's bytes.
    pub fn bytes(&self) -> Vec<u8> {
        response(self.status, self.content_type, &self.body)
    }
}

/// A complete HTTP/1.1 response that closes the connection.
pub fn response(status: u16, content_type: &str, body: &str) -> Vec<u8> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Service Unavailable",
    };
    let mut out = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body.as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_lines_and_control_lines_are_told_apart() {
        assert_eq!(request_line("GET /metrics HTTP/1.1\r\n"), Some(RequestLine { method: "GET".into(), path: "/metrics".into() }));
        assert_eq!(request_line("GET /metrics?x=1 HTTP/1.0\n").unwrap().path, "/metrics");
        assert_eq!(request_line("POST / HTTP/1.1\r\n").unwrap().method, "POST");
        for line in
            ["{\"id\":1,\"cmd\":\"status\"}\n", "GET /metrics\r\n", "GET metrics HTTP/1.1\r\n", "GET /metrics HTTP/2\r\n", "get / HTTP/1.1"]
        {
            assert_eq!(request_line(line), None, "{line:?}");
        }
    }

    #[test]
    fn headers_are_read_to_the_blank_line_within_bounds() {
        let mut input: &[u8] = b"Host: localhost\r\nAccept: */*\r\n\r\nrest";
        assert!(skip_headers(&mut input));
        assert_eq!(input, b"rest");
        let endless = "X: y\r\n".repeat(MAX_HEADERS + 1);
        assert!(!skip_headers(&mut endless.as_bytes()), "more than MAX_HEADERS lines");
        let long = format!("X: {}\r\n\r\n", "y".repeat(MAX_HEADER_LINE));
        assert!(!skip_headers(&mut long.as_bytes()), "a line longer than MAX_HEADER_LINE");
        assert!(!skip_headers(&mut &b"Host: x\r\n"[..]), "the peer left before the blank line");
    }

    #[test]
    fn responses_carry_their_length_and_close() {
        let text = String::from_utf8(response(200, "text/plain", "é\n")).unwrap();
        assert_eq!(text, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\nConnection: close\r\n\r\né\n");
        assert!(String::from_utf8(response(403, "text/plain", "")).unwrap().starts_with("HTTP/1.1 403 Forbidden\r\n"));
    }
}
