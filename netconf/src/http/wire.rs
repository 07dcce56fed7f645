//! HTTP/1.1 on the wire: status lines, header lines, chunked bodies and whole responses,
//! read from any `BufRead` so they are tested on byte strings.

use super::HttpError;
use std::io::{BufRead, Read, Write};

/// The longest status line or header line accepted.
const MAX_LINE: usize = 8 << 10;
/// The most header lines accepted.
const MAX_HEADERS: usize = 100;

/// Parse `HTTP/1.x CODE REASON` into the code and reason.
pub fn parse_status_line(line: &str) -> Result<(u16, String), HttpError> {
    let line = line.trim_end_matches(['\r', '\n']);
    let mut parts = line.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    if !(version == "HTTP/1.1" || version == "HTTP/1.0") {
        return Err(HttpError::malformed(format!("not an HTTP/1.x status line: {line:?}")));
    }
    let code = parts.next().unwrap_or("");
    let code = (code.len() == 3).then(|| code.parse::<u16>().ok()).flatten().filter(|c| (100..600).contains(c));
    let code = code.ok_or_else(|| HttpError::malformed(format!("bad status code in {line:?}")))?;
    Ok((code, parts.next().unwrap_or("").to_string()))
}

/// Parse one `Name: value` header line; the name is lowercased, the value trimmed.
pub fn parse_header(line: &str) -> Result<(String, String), HttpError> {
    let line = line.trim_end_matches(['\r', '\n']);
    let (name, value) = line.split_once(':').ok_or_else(|| HttpError::malformed(format!("bad header line {line:?}")))?;
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(HttpError::malformed(format!("bad header name in {line:?}")));
    }
    Ok((name.to_ascii_lowercase(), value.trim().to_string()))
}

fn read_line(reader: &mut impl BufRead) -> Result<String, HttpError> {
    let mut line = Vec::new();
    reader.take(MAX_LINE as u64 + 1).read_until(b'\n', &mut line).map_err(|source| HttpError::Io { what: "read".into(), source })?;
    if line.len() > MAX_LINE {
        return Err(HttpError::malformed("line too long"));
    }
    if !line.ends_with(b"\n") {
        return Err(HttpError::malformed("connection closed in the middle of a line"));
    }
    String::from_utf8(line).map_err(|_| HttpError::malformed("line is not UTF-8"))
}

/// Counts what goes into a sink and stops past a limit.
struct Limited<'a> {
    sink: &'a mut dyn Write,
    written: u64,
    limit: u64,
}

impl Limited<'_> {
    fn copy(&mut self, reader: &mut impl Read, len: u64, what: &'static str) -> Result<(), HttpError> {
        if self.written.saturating_add(len) > self.limit {
            return Err(HttpError::TooLarge { length: None, limit: self.limit });
        }
        let copied = std::io::copy(&mut reader.take(len), self.sink).map_err(|source| HttpError::Io { what: what.into(), source })?;
        self.written += copied;
        if copied < len {
            return Err(HttpError::CutShort { what, got: copied, expected: len });
        }
        Ok(())
    }
}

/// Decode a chunked body (RFC 9112 §7.1) of at most `limit` bytes; trailers are skipped.
pub fn decode_chunked(reader: &mut impl BufRead, limit: usize) -> Result<Vec<u8>, HttpError> {
    let mut body = Vec::new();
    decode_chunked_into(reader, &mut Limited { sink: &mut body, written: 0, limit: limit as u64 })?;
    Ok(body)
}

fn decode_chunked_into(reader: &mut impl BufRead, out: &mut Limited<'_>) -> Result<(), HttpError> {
    loop {
        let line = read_line(reader)?;
        let size = line.trim_end_matches(['\r', '\n']).split(';').next().unwrap_or("").trim();
        let size = (!size.is_empty() && size.len() <= 16)
            .then(|| u64::from_str_radix(size, 16).ok())
            .flatten()
            .ok_or_else(|| HttpError::malformed(format!("chunked body: bad chunk size {:?}", line.trim_end())))?;
        if size == 0 {
            loop {
                let trailer = read_line(reader)?;
                if trailer.trim_end_matches(['\r', '\n']).is_empty() {
                    return Ok(());
                }
            }
        }
        out.copy(reader, size, "chunked body: chunk")?;
        let mut crlf = [0u8; 2];
        reader.read_exact(&mut crlf).map_err(|source| HttpError::Io { what: "chunked body".into(), source })?;
        if &crlf != b"\r\n" {
            return Err(HttpError::malformed("chunked body: no CRLF after a chunk"));
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
    /// The body, transfer coding removed (empty when it was streamed into a sink).
    pub body: Vec<u8>,
}

impl Response {
    /// The first header called `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// Read the status line and headers; the body is left in `reader`.
pub fn read_head(reader: &mut impl BufRead) -> Result<Response, HttpError> {
    let (status, reason) = parse_status_line(&read_line(reader)?)?;
    let mut headers = Vec::new();
    loop {
        let line = read_line(reader)?;
        if line.trim_end_matches(['\r', '\n']).is_empty() {
            break;
        }
        if headers.len() >= MAX_HEADERS {
            return Err(HttpError::malformed("too many headers"));
        }
        headers.push(parse_header(&line)?);
    }
    Ok(Response { status, reason, headers, body: Vec::new() })
}

/// Whether a response to `method` with this head carries a body.
fn has_body(method: &str, head: &Response) -> bool {
    !(method == "HEAD" || method == "CONNECT" && head.is_success() || head.status == 204 || head.status == 304 || head.status < 200)
}

/// Read the body that follows `head` into `sink`: by `Content-Length`, chunked, or to
/// the end of the stream; at most `limit` bytes. Returns the number of bytes written.
pub fn read_body_into(
    reader: &mut impl BufRead,
    method: &str,
    head: &Response,
    sink: &mut dyn Write,
    limit: u64,
) -> Result<u64, HttpError> {
    let mut out = Limited { sink, written: 0, limit };
    if !has_body(method, head) {
        return Ok(0);
    }
    let chunked = head.header("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    if chunked {
        decode_chunked_into(reader, &mut out)?;
    } else if let Some(length) = head.header("content-length") {
        let length: u64 = length.parse().map_err(|_| HttpError::malformed(format!("bad Content-Length {length:?}")))?;
        if length > limit {
            return Err(HttpError::TooLarge { length: Some(length), limit });
        }
        out.copy(reader, length, "body")?;
    } else {
        let copied = std::io::copy(&mut reader.take(limit.saturating_add(1)), out.sink)
            .map_err(|source| HttpError::Io { what: "read body".into(), source })?;
        if copied > limit {
            return Err(HttpError::TooLarge { length: None, limit });
        }
        out.written = copied;
    }
    Ok(out.written)
}

/// Read a whole response (status line, headers, body in memory) of a request with `method`.
pub fn read_response(reader: &mut impl BufRead, method: &str, limit: usize) -> Result<Response, HttpError> {
    let mut response = read_head(reader)?;
    let mut body = Vec::new();
    read_body_into(reader, method, &response, &mut body, limit as u64)?;
    response.body = body;
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

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
        for bad in
            [&b"zz\r\nabc\r\n0\r\n\r\n"[..], b"4\r\nabc", b"3\r\nabcX\r\n0\r\n\r\n", b"3\r\nabc\r\n", b"\r\n", b"ffffffffffffffffff\r\n"]
        {
            assert!(decode_chunked(&mut &bad[..], 100).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        assert!(matches!(decode_chunked(&mut &b"5\r\nhello\r\n0\r\n\r\n"[..], 4), Err(HttpError::TooLarge { length: None, limit: 4 })));
    }

    #[test]
    fn responses_read_by_length_chunks_or_to_the_end() {
        let read = |text: &str| read_response(&mut text.as_bytes(), "GET", 10);
        assert_eq!(read("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabcdef").unwrap().body, b"abc");
        assert_eq!(read("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n0\r\n\r\n").unwrap().body, b"ab");
        assert_eq!(read("HTTP/1.0 200 OK\r\n\r\nto the end").unwrap().body, b"to the end");
        assert!(matches!(read("HTTP/1.0 200 OK\r\n\r\nmore than ten"), Err(HttpError::TooLarge { length: None, limit: 10 })));
        assert!(matches!(read("HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n"), Err(HttpError::TooLarge { length: Some(11), limit: 10 })));
        let short = read("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab");
        assert!(matches!(short, Err(HttpError::CutShort { what: "body", got: 2, expected: 5 })), "{short:?}");
        assert!(matches!(read("HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n"), Err(HttpError::Malformed { .. })));
        assert!(matches!(read("HTTP/1.1 200 OK\r\nContent"), Err(HttpError::Malformed { .. })));
        let r = read("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n").unwrap();
        assert_eq!((r.status, r.header("content-length")), (404, Some("0")));
        let r = read_response(&mut &b"HTTP/1.1 200 Connection established\r\n\r\n"[..], "CONNECT", 10).unwrap();
        assert_eq!((r.status, r.body.len()), (200, 0));
    }

    #[test]
    fn an_unbounded_limit_reads_to_the_end() {
        let mut reader = &b"HTTP/1.0 200 OK\r\n\r\nall of it"[..];
        let head = read_head(&mut reader).unwrap();
        let mut sink = Vec::new();
        assert_eq!(read_body_into(&mut reader, "GET", &head, &mut sink, u64::MAX).unwrap(), 9);
        assert_eq!(sink, b"all of it");
    }

    #[test]
    fn bodies_stream_into_a_sink() {
        let mut reader = &b"HTTP/1.1 206 Partial\r\nContent-Length: 4\r\n\r\nwxyz"[..];
        let head = read_head(&mut reader).unwrap();
        let mut sink = Vec::new();
        assert_eq!(read_body_into(&mut reader, "GET", &head, &mut sink, 100).unwrap(), 4);
        assert_eq!((head.status, sink.as_slice()), (206, &b"wxyz"[..]));
    }
}
