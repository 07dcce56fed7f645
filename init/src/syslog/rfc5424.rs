//! RFC 5424 syslog messages and RFC 6587 octet-counting frames, pure.
//!
//! ```text
//! <30>1 2026-12-07T22:10:00.123Z keel-demo web - stdout [meta sequenceId="7"] \u{feff}hello
//! ```
//! PRI (facility × 8 + severity, §6.2.1), VERSION 1, TIMESTAMP (UTC with milliseconds),
//! HOSTNAME, APP-NAME (the container, or `keel`), PROCID (`-`), MSGID, STRUCTURED-DATA
//! and the MSG as UTF-8 behind a BOM (§6.4). Header fields are printable US-ASCII of
//! bounded length (§6: anything else becomes `_`, an empty one `-`); SD-PARAM values
//! escape `"`, `\` and `]` (§6.3.3); the MSG is not escaped — the frame's length says
//! where it ends, so it may hold any byte. The SD-ID `keel@32473` uses the enterprise
//! number RFC 5612 reserves for documentation; `meta` (§7.3) carries `sequenceId`.
//!
//! A frame (RFC 6587 §3.4.1) is `MSG-LEN SP SYSLOG-MSG`, MSG-LEN in decimal without
//! leading zeros.

/// Syslog severities (RFC 5424 §6.2.1, table 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// 3: error conditions.
    Error = 3,
    /// 4: warning conditions.
    Warning = 4,
    /// 6: informational messages.
    Informational = 6,
    /// 7: debug-level messages.
    Debug = 7,
}

/// Facility 3, "system daemons": keel and its containers (as Docker's syslog driver does).
pub const FACILITY_DAEMON: u8 = 3;

/// Longest message written (RFC 5425 §4.3.1: receivers SHOULD take 8192 octets); a
/// longer MSG is cut at a character boundary.
pub const MAX_MESSAGE: usize = 8192;

/// The BOM that marks the MSG as UTF-8 (§6.4).
const BOM: &str = "\u{feff}";

/// One message to encode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message<'a> {
    /// Facility (0–23).
    pub facility: u8,
    /// Severity.
    pub severity: Severity,
    /// RFC 3339 time, e.g. `2026-12-07T22:10:00.123Z`.
    pub timestamp: &'a str,
    /// The host's name.
    pub hostname: &'a str,
    /// The container's name, or `keel`.
    pub app: &'a str,
    /// `stdout`, `stderr`, or empty.
    pub msgid: &'a str,
    /// Structured data: (SD-ID, [(PARAM-NAME, value)]).
    pub sd: &'a [(&'a str, &'a [(&'a str, &'a str)])],
    /// The text.
    pub msg: &'a str,
}

/// A header field: printable US-ASCII (33–126) of at most `max` characters, `-` when empty.
pub fn header_field(text: &str, max: usize) -> String {
    if text.is_empty() {
        return "-".into();
    }
    text.chars().take(max).map(|c| if ('!'..='~').contains(&c) { c } else { '_' }).collect()
}

/// An SD-NAME (SD-ID or PARAM-NAME): printable US-ASCII except `=`, space, `]`, `"`; at most 32.
pub fn sd_name(text: &str) -> String {
    let name: String = text.chars().take(32).map(|c| if ('!'..='~').contains(&c) && !"=]\"".contains(c) { c } else { '_' }).collect();
    if name.is_empty() {
        "_".into()
    } else {
        name
    }
}

/// A PARAM-VALUE with `"`, `\` and `]` escaped by a backslash.
pub fn escape_param_value(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '"' | '\\' | ']') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The message as RFC 5424 text.
pub fn encode(m: &Message<'_>) -> String {
    let pri = u16::from(m.facility.min(23)) * 8 + m.severity as u16;
    let mut out = format!(
        "<{pri}>1 {} {} {} - {} ",
        header_field(m.timestamp, 48),
        header_field(m.hostname, 255),
        header_field(m.app, 48),
        header_field(m.msgid, 32)
    );
    if m.sd.is_empty() {
        out.push('-');
    }
    for (id, params) in m.sd {
        out.push('[');
        out.push_str(&sd_name(id));
        for (name, value) in params.iter() {
            out.push_str(&format!(" {}=\"{}\"", sd_name(name), escape_param_value(value)));
        }
        out.push(']');
    }
    if !m.msg.is_empty() {
        out.push(' ');
        out.push_str(BOM);
        let room = MAX_MESSAGE.saturating_sub(out.len());
        let mut end = m.msg.len().min(room);
        while !m.msg.is_char_boundary(end) {
            end -= 1;
        }
        out.push_str(&m.msg[..end]);
    }
    out
}

/// `MSG-LEN SP MSG` (RFC 6587 §3.4.1).
pub fn frame(message: &str) -> Vec<u8> {
    let mut out = format!("{} ", message.len()).into_bytes();
    out.extend_from_slice(message.as_bytes());
    out
}

/// Why a byte stream is not a sequence of frames.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// MSG-LEN is not 1–9 digits without a leading zero, followed by a space.
    #[error("bad frame length {0:?}")]
    BadLength(String),
    /// MSG-LEN is larger than the longest message accepted.
    #[error("frame of {0} bytes is longer than {MAX_MESSAGE}")]
    TooLong(usize),
}

/// Splits a byte stream into frames (each returned whole, length prefix included).
#[derive(Debug, Default)]
pub struct FrameReader {
    pending: Vec<u8>,
}

impl FrameReader {
    /// Add bytes; return the frames they complete, in order.
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<Vec<u8>>, FrameError> {
        self.pending.extend_from_slice(bytes);
        let mut frames = Vec::new();
        loop {
            let Some(space) = self.pending.iter().take(10).position(|b| *b == b' ') else {
                if self.pending.len() >= 10 || self.pending.iter().any(|b| !b.is_ascii_digit()) {
                    return Err(FrameError::BadLength(String::from_utf8_lossy(&self.pending[..self.pending.len().min(10)]).into()));
                }
                return Ok(frames);
            };
            let digits = &self.pending[..space];
            if digits.is_empty() || digits[0] == b'0' || !digits.iter().all(u8::is_ascii_digit) {
                return Err(FrameError::BadLength(String::from_utf8_lossy(digits).into()));
            }
            let len: usize = std::str::from_utf8(digits).ok().and_then(|d| d.parse().ok()).unwrap_or(usize::MAX);
            if len > MAX_MESSAGE {
                return Err(FrameError::TooLong(len));
            }
            let total = space + 1 + len;
            if self.pending.len() < total {
                return Ok(frames);
            }
            frames.push(self.pending.drain(..total).collect());
        }
    }

    /// Bytes of a frame begun but not finished.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message<'a>(msg: &'a str, sd: &'a [(&'a str, &'a [(&'a str, &'a str)])]) -> Message<'a> {
        Message {
            facility: FACILITY_DAEMON,
            severity: Severity::Informational,
            timestamp: "2026-12-07T22:10:00.123Z",
            hostname: "keel-demo",
            app: "web",
            msgid: "stdout",
            sd,
            msg,
        }
    }

    #[test]
    fn a_container_line() {
        let sd: &[(&str, &[(&str, &str)])] = &[("meta", &[("sequenceId", "7")])];
        assert_eq!(
            encode(&message("hello world", sd)),
            "<30>1 2026-12-07T22:10:00.123Z keel-demo web - stdout [meta sequenceId=\"7\"] \u{feff}hello world"
        );
        let error = Message { severity: Severity::Error, ..message("x", &[]) };
        assert!(encode(&error).starts_with("<27>1 "), "daemon.err is 3*8+3");
    }

    #[test]
    fn param_values_escape_quote_backslash_and_bracket_and_the_msg_is_verbatim() {
        let sd: &[(&str, &[(&str, &str)])] = &[("keel@32473", &[("path", "a\"b\\c]d")])];
        let text = encode(&message("quote \" backslash \\ bracket ] newline\nend", sd));
        assert!(text.contains("[keel@32473 path=\"a\\\"b\\\\c\\]d\"]"), "{text}");
        assert!(text.ends_with("\u{feff}quote \" backslash \\ bracket ] newline\nend"), "{text}");
    }

    #[test]
    fn header_fields_are_printable_ascii_bounded_and_never_empty() {
        assert_eq!(header_field("", 48), "-");
        assert_eq!(header_field("my host\té", 255), "my_host__");
        assert_eq!(header_field(&"a".repeat(60), 48).len(), 48);
        assert_eq!(sd_name("a=b c]\"d"), "a_b_c__d");
        let no_sd = encode(&Message { hostname: "", app: "", msgid: "", ..message("", &[]) });
        assert_eq!(no_sd, "<30>1 2026-12-07T22:10:00.123Z - - - - -");
    }

    #[test]
    fn long_messages_are_cut_on_a_character_boundary() {
        let long = "é".repeat(MAX_MESSAGE);
        let text = encode(&message(&long, &[]));
        assert!(text.len() <= MAX_MESSAGE && text.len() > MAX_MESSAGE - 2, "{}", text.len());
    }

    #[test]
    fn frames_count_octets_not_characters() {
        let framed = frame("é\n]");
        assert_eq!(framed, b"4 \xc3\xa9\n]".to_vec());
        let mut reader = FrameReader::default();
        let mut stream = frame("one");
        stream.extend(frame("two words"));
        stream.extend(frame("é"));
        // Fed a byte at a time, the frames come out whole and in order.
        let mut out = Vec::new();
        for byte in &stream {
            out.extend(reader.push(&[*byte]).unwrap());
        }
        assert_eq!(out, vec![b"3 one".to_vec(), b"9 two words".to_vec(), b"2 \xc3\xa9".to_vec()]);
        assert_eq!(reader.pending(), 0);
    }

    #[test]
    fn bad_frames_are_refused() {
        assert_eq!(FrameReader::default().push(b"03 abc"), Err(FrameError::BadLength("03".into())));
        assert_eq!(FrameReader::default().push(b"x abc"), Err(FrameError::BadLength("x".into())));
        assert_eq!(FrameReader::default().push(b"1234567890"), Err(FrameError::BadLength("1234567890".into())));
        assert_eq!(FrameReader::default().push(b"99999 "), Err(FrameError::TooLong(99999)));
        assert_eq!(FrameReader::default().push(b"12"), Ok(vec![]), "a length still arriving");
    }
}
