//! `data:` URLs (RFC 2397): `data:[<mediatype>][;base64],<data>`.
//!
//! The payload is percent-decoded first (RFC 3986), then, with `;base64`, decoded
//! as standard base64 (RFC 4648 §4; padding optional, whitespace refused). The
//! media type is checked for shape only and otherwise ignored: the bytes are what
//! is written.

/// Decodes a `data:` URL into its bytes, or says why it is malformed.
pub fn decode_data_url(url: &str) -> Result<Vec<u8>, String> {
    let rest = match url.get(..5) {
        Some(scheme) if scheme.eq_ignore_ascii_case("data:") => &url[5..],
        _ => return Err("a data URL must start with \"data:\"".into()),
    };
    let Some((meta, payload)) = rest.split_once(',') else {
        return Err("a data URL needs a ',' between the media type and the data".into());
    };
    let (media_type, base64) = match meta.len().checked_sub(7).and_then(|i| meta.get(i..).map(|t| (i, t))) {
        Some((i, tail)) if tail.eq_ignore_ascii_case(";base64") => (&meta[..i], true),
        _ => (meta, false),
    };
    check_media_type(media_type)?;
    let bytes = percent_decode(payload)?;
    if base64 {
        decode_base64(&bytes)
    } else {
        Ok(bytes)
    }
}

/// Accepts `type/subtype` with optional `;name=value` parameters, or nothing.
fn check_media_type(media_type: &str) -> Result<(), String> {
    let mut parts = media_type.split(';');
    let essence = parts.next().unwrap_or("");
    if !essence.is_empty() {
        let ok = essence.split_once('/').is_some_and(|(t, s)| is_token(t) && is_token(s));
        if !ok {
            return Err(format!("media type {essence:?} is not TYPE/SUBTYPE"));
        }
    }
    for param in parts {
        let ok = param.split_once('=').is_some_and(|(k, v)| is_token(k) && !v.is_empty());
        if !ok {
            return Err(format!("media type parameter {param:?} is not NAME=VALUE"));
        }
    }
    Ok(())
}

fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$&^_.+-".contains(&b))
}

/// Decodes `%XX` escapes; every other character stands for itself (as UTF-8).
fn percent_decode(text: &str) -> Result<Vec<u8>, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
            match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                Some(b) if hex.is_some_and(|h| h.bytes().all(|c| c.is_ascii_hexdigit())) => out.push(b),
                _ => return Err(format!("bad percent escape at data offset {i}: '%' needs two hex digits")),
            }
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Ok(out)
}

fn base64_value(b: u8) -> Option<u32> {
    match b {
        b'A'..=b'Z' => Some(u32::from(b - b'A')),
        b'a'..=b'z' => Some(u32::from(b - b'a') + 26),
        b'0'..=b'9' => Some(u32::from(b - b'0') + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    }
}

/// Standard base64 with optional `=` padding.
fn decode_base64(input: &[u8]) -> Result<Vec<u8>, String> {
    let body_len = input.iter().rposition(|&b| b != b'=').map_or(0, |p| p + 1);
    let (body, padding) = input.split_at(body_len);
    if let Some(i) = body.iter().position(|&b| base64_value(b).is_none()) {
        return Err(format!("invalid base64 character {:?} at data offset {i}", char::from(body[i])));
    }
    if padding.len() > 2 || (!padding.is_empty() && !input.len().is_multiple_of(4)) {
        return Err("bad base64 padding".into());
    }
    if body.len() % 4 == 1 {
        return Err("base64 data has a dangling character (truncated?)".into());
    }
    let mut out = Vec::with_capacity(body.len() / 4 * 3 + 2);
    for chunk in body.chunks(4) {
        let mut acc = 0u32;
        for (j, &b) in chunk.iter().enumerate() {
            acc |= base64_value(b).unwrap_or(0) << (18 - 6 * j);
        }
        let [_, b0, b1, b2] = acc.to_be_bytes();
        out.extend_from_slice(&[b0, b1, b2][..chunk.len() - 1]);
    }
    Ok(out)
}
