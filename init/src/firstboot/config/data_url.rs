//! `data:` URLs (RFC 2397): `data:[<mediatype>][;base64],<data>`, read exactly as
//! Ignition reads them, so keel accepts the same URLs and decodes them to the same bytes.
//!
//! The grammar (RFC 2397 over RFC 2396 and RFC 2045, as Ignition's data-URL library
//! applies it):
//! - the prefix is `data:` in lowercase;
//! - an optional media type `TYPE/SUBTYPE`, whose type is one of the RFC 2045 types
//!   (text, image, audio, video, application, message, multipart; matched as a prefix)
//!   or an `x-` extension, both made of RFC 2045 token characters;
//! - parameters `;NAME=VALUE` (VALUE a token or a quoted string), the last of which
//!   may be the bare `;base64`;
//! - a `,` and the data: without `;base64`, RFC 2396 URI characters (printable ASCII
//!   except space and `<>#"{}|\^[]` and backquote) with `%XX` escapes; with `;base64`,
//!   the standard base64 alphabet, padded to a multiple of four.

use thiserror::Error;

/// Why a `data:` URL is malformed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DataUrlError {
    /// The URL does not start with lowercase `data:` (an uppercase `DATA:` is refused too).
    #[error("a data URL must start with \"data:\" (in lowercase)")]
    Prefix,
    /// No `,` separates the media type from the data.
    #[error("a data URL needs a ',' between the media type and the data")]
    MissingComma,
    /// The media type is not `TYPE/SUBTYPE` of token characters.
    #[error("media type is not TYPE/SUBTYPE: {0}")]
    MediaType(&'static str),
    /// The type is not one RFC 2045 defines and not an `x-` extension.
    #[error("media type {0:?} is not text, image, audio, video, application, message, multipart or x-…")]
    UnknownType(String),
    /// A `;NAME=VALUE` parameter is malformed.
    #[error("media type parameter: {0}")]
    Parameter(&'static str),
    /// A bare parameter other than the final `;base64` (which is case-sensitive).
    #[error("expected \";base64\" before the ',', found \";{0}\"")]
    NotBase64(String),
    /// A character that RFC 2396 does not allow in the data (unescaped).
    #[error("character {0:?} at data offset {1} must be percent-escaped")]
    DataCharacter(char, usize),
    /// A `%` not followed by two hex digits.
    #[error("bad percent escape at data offset {0}: '%' needs two hex digits")]
    PercentEscape(usize),
    /// A character outside the base64 alphabet in `;base64` data.
    #[error("invalid base64 character {0:?} at data offset {1}")]
    Base64Character(char, usize),
    /// base64 data whose length or padding is wrong (padding is required).
    #[error("base64 data must be padded with '=' to a multiple of 4 characters")]
    Base64Padding,
}

/// Decodes a `data:` URL into its bytes, or says why it is malformed (a `String`
/// for the fetcher, which reports errors as text).
pub fn decode_data_url(url: &str) -> Result<Vec<u8>, String> {
    decode(url).map_err(|e| e.to_string())
}

/// Decodes a `data:` URL into its bytes.
pub fn decode(url: &str) -> Result<Vec<u8>, DataUrlError> {
    let rest = url.strip_prefix("data:").ok_or(DataUrlError::Prefix)?;
    let (base64, data) = media_type(rest)?;
    if base64 {
        decode_base64(data)
    } else {
        decode_ascii(data)
    }
}

/// RFC 2045 token characters: printable ASCII except space and tspecials.
fn is_token(c: char) -> bool {
    c.is_ascii() && !c.is_ascii_control() && c != ' ' && !"()<>@,;:\\\"/[]?=".contains(c)
}

/// Reads the media type and parameters; returns whether the data is base64 and the data.
fn media_type(rest: &str) -> Result<(bool, &str), DataUrlError> {
    let chars: Vec<(usize, char)> = rest.char_indices().collect();
    let at = |i: usize| chars.get(i).map(|&(_, c)| c);
    let offset = |i: usize| chars.get(i).map_or(rest.len(), |&(o, _)| o);
    let mut i = 0;
    match at(0) {
        None => return Err(DataUrlError::MissingComma),
        Some(';' | ',') => {}
        Some(c) if is_token(c) => {
            // The type: an `x-` extension or one of RFC 2045's types.
            let extension = matches!(c, 'x' | 'X') && at(1) == Some('-');
            // Like Ignition's reader, an `x` consumes the next character unchecked.
            i = if matches!(c, 'x' | 'X') { 2.min(chars.len()) } else { 1 };
            loop {
                match at(i) {
                    Some('/') => break,
                    None => return Err(DataUrlError::MediaType("no '/' between type and subtype")),
                    Some(c) if is_token(c) => i += 1,
                    Some(_) => return Err(DataUrlError::MediaType("invalid character in the type")),
                }
            }
            let kind = &rest[..offset(i)];
            let known = ["text", "image", "audio", "video", "application", "message", "multipart"];
            if !extension && !known.iter().any(|k| kind.starts_with(k)) {
                return Err(DataUrlError::UnknownType(kind.to_string()));
            }
            i += 1;
            loop {
                match at(i) {
                    Some(';' | ',') => break,
                    None => return Err(DataUrlError::MediaType("no ',' after the subtype")),
                    Some(c) if is_token(c) => i += 1,
                    Some(_) => return Err(DataUrlError::MediaType("invalid character in the subtype")),
                }
            }
        }
        Some(_) => return Err(DataUrlError::MediaType("invalid character after \"data:\"")),
    }
    // Parameters, then the comma.
    loop {
        match at(i) {
            Some(',') => return Ok((false, &rest[offset(i) + 1..])),
            Some(';') => i += 1,
            _ => return Err(DataUrlError::Parameter("expected ';' or ','")),
        }
        let name_start = i;
        loop {
            match at(i) {
                Some('=') if i > name_start => break,
                Some(',') if i > name_start => {
                    let name = &rest[offset(name_start)..offset(i)];
                    if name != "base64" {
                        return Err(DataUrlError::NotBase64(name.to_string()));
                    }
                    return Ok((true, &rest[offset(i) + 1..]));
                }
                None => return Err(DataUrlError::MissingComma),
                Some(c) if is_token(c) => i += 1,
                Some(_) => return Err(DataUrlError::Parameter("invalid character in a parameter name")),
            }
        }
        i += 1; // '='
        match at(i) {
            Some('"') => {
                i += 1;
                let start = i;
                loop {
                    match at(i) {
                        None => return Err(DataUrlError::Parameter("unclosed quoted string")),
                        Some('"') => break,
                        Some('\\') if at(i + 1).is_some_and(|c| c.is_ascii()) => i += 2,
                        Some(c) if c.is_ascii() && c != '\\' => i += 1,
                        Some(_) => return Err(DataUrlError::Parameter("non-ASCII character in a quoted value")),
                    }
                }
                check_quoted(&rest[offset(start)..offset(i)])?;
                i += 1;
            }
            Some(c) if is_token(c) => {
                let start = i;
                while at(i).is_some_and(|c| c != ';' && c != ',') {
                    if !at(i).is_some_and(is_token) {
                        return Err(DataUrlError::Parameter("invalid character in a parameter value"));
                    }
                    i += 1;
                }
                if at(i).is_none() {
                    return Err(DataUrlError::MissingComma);
                }
                percent_decode(&rest[offset(start)..offset(i)], 0)?;
            }
            None => return Err(DataUrlError::MissingComma),
            Some(_) => return Err(DataUrlError::Parameter("empty or invalid parameter value")),
        }
    }
}

/// Checks the escapes of a quoted parameter value (the escapes a Go string literal
/// allows, as Ignition unquotes it): `\a \b \f \n \r \t \v \\ \"`, `\xHH`, `\OOO`,
/// `\uHHHH` and `\UHHHHHHHH` (valid code points).
fn check_quoted(value: &str) -> Result<(), DataUrlError> {
    let bad = DataUrlError::Parameter("invalid escape in a quoted value");
    let b = value.as_bytes();
    let hex = |s: &[u8]| s.iter().all(u8::is_ascii_hexdigit);
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\n' {
            return Err(bad);
        }
        if b[i] != b'\\' {
            i += 1;
            continue;
        }
        let rest = &b[i + 1..];
        let len = match rest.first() {
            Some(b'a' | b'b' | b'f' | b'n' | b'r' | b't' | b'v' | b'\\' | b'"') => 1,
            Some(b'x') if rest.len() >= 3 && hex(&rest[1..3]) => 3,
            Some(b'0'..=b'7') if rest.len() >= 3 && rest[..3].iter().all(|d| (b'0'..=b'7').contains(d)) && rest[0] <= b'3' => 3,
            Some(b'u') if rest.len() >= 5 && hex(&rest[1..5]) => {
                let code = u32::from_str_radix(std::str::from_utf8(&rest[1..5]).unwrap_or("D800"), 16).unwrap_or(0xD800);
                if char::from_u32(code).is_none() {
                    return Err(bad);
                }
                5
            }
            Some(b'U') if rest.len() >= 9 && hex(&rest[1..9]) => {
                let code = u32::from_str_radix(std::str::from_utf8(&rest[1..9]).unwrap_or("D800"), 16).unwrap_or(0xD800);
                if char::from_u32(code).is_none() {
                    return Err(bad);
                }
                9
            }
            _ => return Err(bad),
        };
        i += 1 + len;
    }
    Ok(())
}

/// RFC 2396 URI characters: printable ASCII except space, delims and "unwise" ones.
fn is_uri_char(c: char) -> bool {
    c.is_ascii() && !c.is_ascii_control() && !" <>#\"{}|\\^[]`".contains(c)
}

/// Plain data: URI characters with `%XX` escapes.
fn decode_ascii(data: &str) -> Result<Vec<u8>, DataUrlError> {
    if let Some((i, c)) = data.char_indices().find(|&(_, c)| !is_uri_char(c)) {
        return Err(DataUrlError::DataCharacter(c, i));
    }
    percent_decode(data, 0)
}

/// Decodes `%XX` escapes; every other (ASCII) character stands for itself.
fn percent_decode(text: &str, base: usize) -> Result<Vec<u8>, DataUrlError> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).filter(|h| h.iter().all(u8::is_ascii_hexdigit));
            let value = hex.and_then(|h| std::str::from_utf8(h).ok()).and_then(|h| u8::from_str_radix(h, 16).ok());
            out.push(value.ok_or(DataUrlError::PercentEscape(base + i))?);
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

/// Standard base64 (RFC 4648 §4), padding required; line feeds are skipped.
fn decode_base64(data: &str) -> Result<Vec<u8>, DataUrlError> {
    if let Some((i, c)) = data.char_indices().find(|&(_, c)| !(c.is_ascii_alphanumeric() || "+/=\n".contains(c))) {
        return Err(DataUrlError::Base64Character(c, i));
    }
    let input: Vec<u8> = data.bytes().filter(|&b| b != b'\n').collect();
    let body_len = input.iter().rposition(|&b| b != b'=').map_or(0, |p| p + 1);
    let (body, padding) = input.split_at(body_len);
    if padding.len() > 2 || body.contains(&b'=') || !input.len().is_multiple_of(4) || (body.len() % 4 == 1) {
        return Err(DataUrlError::Base64Padding);
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
