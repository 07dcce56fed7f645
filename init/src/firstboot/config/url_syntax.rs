//! URL syntax as Ignition checks it (Go's `net/url` parser, RFC 3986 with Go's
//! leniencies), so keel refuses exactly the source and proxy URLs Ignition refuses
//! as unparsable, before keel's own, stricter fetchability rules.
//!
//! Refused: ASCII control characters anywhere; a `:` with nothing before it; with an
//! authority (`//…`): user information with characters outside RFC 3986's, a host
//! with characters a host cannot hold (space, `{}|\^` and backquote, `%` escapes of
//! ASCII other than `%25`), a port that is not all digits, an unclosed `[`; a `%` not
//! followed by two hex digits in the user information, host, path or fragment.
//! Accepted as Ignition does: an opaque rest (`http:foo`), an empty host (`http:///a`),
//! spaces in the path; the query is not checked.

use thiserror::Error;

/// Why a URL does not parse.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum UrlSyntaxError {
    /// An ASCII control character (below 0x20, or 0x7f).
    #[error("control character {0:?} in the URL")]
    ControlCharacter(char),
    /// The URL starts with `:`.
    #[error("missing scheme before ':'")]
    MissingScheme,
    /// A relative URL whose first path segment holds a `:`.
    #[error("first path segment of a relative URL contains ':'")]
    ColonInFirstSegment,
    /// Characters not allowed in the user information.
    #[error("invalid user information")]
    Userinfo,
    /// A `[` without its `]`.
    #[error("missing ']' in the host")]
    UnclosedBracket,
    /// Text after the host that is not `:DIGITS`.
    #[error("invalid port {0:?} after the host")]
    Port(String),
    /// A character a host name cannot hold.
    #[error("invalid character {0:?} in the host name")]
    HostCharacter(char),
    /// A `%` not followed by two hex digits (or, in a host, escaping ASCII).
    #[error("invalid percent escape {0:?}")]
    Escape(String),
}

/// The parts of a parsed URL that the validator needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlParts {
    /// The scheme, lowercased (empty for a relative URL).
    pub scheme: String,
    /// Whether the URL has an authority (`scheme://…`).
    pub has_authority: bool,
}

/// Parses `url` as Ignition does; `Ok` holds its scheme.
pub fn parse(url: &str) -> Result<UrlParts, UrlSyntaxError> {
    if let Some(c) = url.chars().find(|&c| c < ' ' || c == '\x7f') {
        return Err(UrlSyntaxError::ControlCharacter(c));
    }
    let (url, fragment) = url.split_once('#').unwrap_or((url, ""));
    unescape(fragment, Mode::Other)?;
    let (scheme, rest) = split_scheme(url)?;
    let rest = rest.split_once('?').map_or(rest, |(r, _query)| r);
    if !rest.starts_with('/') {
        if !scheme.is_empty() {
            return Ok(UrlParts { scheme, has_authority: false }); // opaque
        }
        if rest.split('/').next().is_some_and(|seg| seg.contains(':')) {
            return Err(UrlSyntaxError::ColonInFirstSegment);
        }
    }
    let mut has_authority = false;
    let mut path = rest;
    if let Some(after) = rest.strip_prefix("//").filter(|_| !scheme.is_empty() || !rest.starts_with("///")) {
        let (authority, p) = after.find('/').map_or((after, ""), |i| (&after[..i], &after[i..]));
        parse_authority(authority)?;
        has_authority = true;
        path = p;
    }
    unescape(path, Mode::Other)?;
    Ok(UrlParts { scheme, has_authority })
}

/// Splits `scheme:rest` (RFC 3986 scheme characters; none when the first character
/// cannot start a scheme or an invalid character comes before any `:`).
fn split_scheme(url: &str) -> Result<(String, &str), UrlSyntaxError> {
    for (i, c) in url.char_indices() {
        match c {
            'a'..='z' | 'A'..='Z' => {}
            '0'..='9' | '+' | '-' | '.' if i > 0 => {}
            ':' if i == 0 => return Err(UrlSyntaxError::MissingScheme),
            ':' => return Ok((url[..i].to_ascii_lowercase(), &url[i + 1..])),
            _ => return Ok((String::new(), url)),
        }
    }
    Ok((String::new(), url))
}

fn parse_authority(authority: &str) -> Result<(), UrlSyntaxError> {
    let (userinfo, host) = match authority.rfind('@') {
        Some(i) => (Some(&authority[..i]), &authority[i + 1..]),
        None => (None, authority),
    };
    parse_host(host)?;
    if let Some(info) = userinfo {
        let allowed = |c: char| c.is_ascii_alphanumeric() || "-._:~!$&'()*+,;=%@".contains(c);
        if !info.chars().all(allowed) {
            return Err(UrlSyntaxError::Userinfo);
        }
        let (user, password) = info.split_once(':').unwrap_or((info, ""));
        unescape(user, Mode::Other)?;
        unescape(password, Mode::Other)?;
    }
    Ok(())
}

fn valid_optional_port(port: &str) -> bool {
    port.is_empty() || port.strip_prefix(':').is_some_and(|digits| digits.bytes().all(|b| b.is_ascii_digit()))
}

fn parse_host(host: &str) -> Result<(), UrlSyntaxError> {
    if host.starts_with('[') {
        let close = host.rfind(']').ok_or(UrlSyntaxError::UnclosedBracket)?;
        let port = &host[close + 1..];
        if !valid_optional_port(port) {
            return Err(UrlSyntaxError::Port(port.to_string()));
        }
        return match host[..close].find("%25") {
            // An IPv6 zone: any escape is allowed in it.
            Some(zone) => {
                unescape(&host[..zone], Mode::Host)?;
                unescape(&host[zone..close], Mode::Other)?;
                unescape(&host[close..], Mode::Host)
            }
            None => unescape(host, Mode::Host),
        };
    }
    if let Some(i) = host.rfind(':') {
        if !valid_optional_port(&host[i..]) {
            return Err(UrlSyntaxError::Port(host[i..].to_string()));
        }
    }
    unescape(host, Mode::Host)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Host,
    Other,
}

/// Checks `%XX` escapes (and, in a host, the characters and what may be escaped).
fn unescape(text: &str, mode: Mode) -> Result<(), UrlSyntaxError> {
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let escape = || text.get(i..(i + 3).min(text.len())).unwrap_or("%").to_string();
            if i + 2 >= b.len() || !b[i + 1].is_ascii_hexdigit() || !b[i + 2].is_ascii_hexdigit() {
                return Err(UrlSyntaxError::Escape(escape()));
            }
            // RFC 3986: a host may %-escape only non-ASCII bytes (and %25 for zones).
            if mode == Mode::Host && b[i + 1] < b'8' && &b[i..i + 3] != b"%25" {
                return Err(UrlSyntaxError::Escape(escape()));
            }
            i += 3;
        } else {
            if mode == Mode::Host && b[i] < 0x80 && !host_char(b[i]) {
                return Err(UrlSyntaxError::HostCharacter(char::from(b[i])));
            }
            i += 1;
        }
    }
    Ok(())
}

/// ASCII characters a host (with its port and IPv6 brackets) may hold unescaped.
fn host_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"-_.~!$&'()*+,;=:[]<>\"".contains(&c)
}
