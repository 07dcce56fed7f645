//! A small RFC 8259 JSON parser that remembers where every key and value starts.
//!
//! serde_json does not report the positions of values, but keel's first-boot report
//! names the line and column of each problem, so the config is parsed into a [`Node`]
//! tree here and walked afterwards. The parser is strict: a byte order mark, duplicate
//! keys, lone UTF-16 surrogates, control characters in strings and trailing garbage
//! are errors (duplicate keys and lone surrogates are keel's rules: Go's reader, which
//! Ignition uses, keeps the last duplicate and replaces a lone surrogate). It
//! stops at the first syntax error (nothing after it can be trusted).
//!
//! Limits: documents above [`MAX_SIZE`] bytes and nesting deeper than [`MAX_DEPTH`]
//! are refused, so a hostile config cannot exhaust PID 1's memory or stack.

use super::report::{JsonPath, Seg};

/// Largest accepted document, in bytes.
pub const MAX_SIZE: usize = 16 * 1024 * 1024;
/// Deepest accepted nesting of arrays and objects.
pub const MAX_DEPTH: usize = 128;

/// A parsed JSON value and the byte offset where it starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// Byte offset of the value's first character in the document.
    pub offset: usize,
    /// The value itself.
    pub kind: Kind,
}

/// The kinds of JSON value.
#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    /// `null`
    Null,
    /// `true` or `false`
    Bool(bool),
    /// A number, kept as written so integers are never rounded through f64.
    Number(String),
    /// A string, escapes decoded.
    String(String),
    /// An array.
    Array(Vec<Node>),
    /// An object, members in document order (keys are unique).
    Object(Vec<Member>),
}

/// One `"key": value` pair of an object.
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    /// The decoded key.
    pub key: String,
    /// Byte offset of the key's opening quote.
    pub key_offset: usize,
    /// The value.
    pub value: Node,
}

impl Kind {
    /// The kind's name with an article, for "expected X, found Y" messages.
    pub fn describe(&self) -> &'static str {
        match self {
            Kind::Null => "null",
            Kind::Bool(_) => "a boolean",
            Kind::Number(_) => "a number",
            Kind::String(_) => "a string",
            Kind::Array(_) => "an array",
            Kind::Object(_) => "an object",
        }
    }
}

/// A syntax error: what went wrong, where, and inside which value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    /// Byte offset of the offending character.
    pub offset: usize,
    /// JSON path of the container being parsed when the error happened.
    pub path: JsonPath,
    /// Human-readable description.
    pub message: String,
}

/// Parses a whole document (text must already be valid UTF-8).
pub fn parse(text: &str) -> Result<Node, SyntaxError> {
    let mut parser = Parser { text, bytes: text.as_bytes(), pos: 0, path: Vec::new() };
    if text.len() > MAX_SIZE {
        return Err(parser.error(format!("config is {} bytes; the limit is {MAX_SIZE}", text.len())));
    }
    if text.starts_with('\u{feff}') {
        // Ignition's JSON reader refuses it too.
        return Err(parser.error("the config starts with a byte order mark; save it as UTF-8 without one".into()));
    }
    parser.skip_ws();
    let node = parser.value()?;
    parser.skip_ws();
    if parser.pos < parser.bytes.len() {
        return Err(parser.error("unexpected data after the end of the document".into()));
    }
    Ok(node)
}

struct Parser<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
    path: Vec<Seg>,
}

impl Parser<'_> {
    fn error(&self, message: String) -> SyntaxError {
        SyntaxError { offset: self.pos, path: JsonPath(self.path.clone()), message }
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn found(&self) -> String {
        match self.text.get(self.pos..).and_then(|s| s.chars().next()) {
            None => "the end of the document".into(),
            Some(c) if c.is_control() => format!("{c:?}"),
            Some(c) => format!("'{c}'"),
        }
    }

    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.pos += 1;
        }
    }

    fn value(&mut self) -> Result<Node, SyntaxError> {
        let offset = self.pos;
        let kind = match self.peek() {
            Some(b'{') => self.object()?,
            Some(b'[') => self.array()?,
            Some(b'"') => Kind::String(self.string()?),
            Some(b't') => self.literal("true", Kind::Bool(true))?,
            Some(b'f') => self.literal("false", Kind::Bool(false))?,
            Some(b'n') => self.literal("null", Kind::Null)?,
            Some(b'-' | b'0'..=b'9') => self.number()?,
            _ => return Err(self.error(format!("expected a value, found {}", self.found()))),
        };
        Ok(Node { offset, kind })
    }

    fn literal(&mut self, word: &str, kind: Kind) -> Result<Kind, SyntaxError> {
        if self.bytes[self.pos..].starts_with(word.as_bytes()) {
            self.pos += word.len();
            Ok(kind)
        } else {
            Err(self.error(format!("expected a value, found {}", self.found())))
        }
    }

    fn enter(&mut self) -> Result<(), SyntaxError> {
        if self.path.len() >= MAX_DEPTH {
            return Err(self.error(format!("nesting is deeper than {MAX_DEPTH} levels")));
        }
        self.pos += 1;
        self.skip_ws();
        Ok(())
    }

    fn object(&mut self) -> Result<Kind, SyntaxError> {
        self.enter()?;
        let mut members: Vec<Member> = Vec::new();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(Kind::Object(members));
        }
        loop {
            if self.peek() != Some(b'"') {
                return Err(self.error(format!("expected a key in quotes, found {}", self.found())));
            }
            let key_offset = self.pos;
            let key = self.string()?;
            if members.iter().any(|m| m.key == key) {
                self.pos = key_offset;
                return Err(self.error(format!("duplicate key {key:?}")));
            }
            self.skip_ws();
            if self.peek() != Some(b':') {
                return Err(self.error(format!("expected ':' after a key, found {}", self.found())));
            }
            self.pos += 1;
            self.skip_ws();
            self.path.push(Seg::Key(key.clone()));
            let value = self.value()?;
            self.path.pop();
            members.push(Member { key, key_offset, value });
            self.skip_ws();
            match self.peek() {
                Some(b',') => {
                    self.pos += 1;
                    self.skip_ws();
                }
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(Kind::Object(members));
                }
                _ => return Err(self.error(format!("expected ',' or '}}', found {}", self.found()))),
            }
        }
    }

    fn array(&mut self) -> Result<Kind, SyntaxError> {
        self.enter()?;
        let mut items = Vec::new();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(Kind::Array(items));
        }
        loop {
            self.path.push(Seg::Index(items.len()));
            let value = self.value()?;
            self.path.pop();
            items.push(value);
            self.skip_ws();
            match self.peek() {
                Some(b',') => {
                    self.pos += 1;
                    self.skip_ws();
                }
                Some(b']') => {
                    self.pos += 1;
                    return Ok(Kind::Array(items));
                }
                _ => return Err(self.error(format!("expected ',' or ']', found {}", self.found()))),
            }
        }
    }

    fn number(&mut self) -> Result<Kind, SyntaxError> {
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => self.digits(),
            _ => return Err(self.error(format!("expected a digit, found {}", self.found()))),
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            self.require_digits()?;
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.pos += 1;
            }
            self.require_digits()?;
        }
        Ok(Kind::Number(self.text[start..self.pos].to_string()))
    }

    fn digits(&mut self) {
        while let Some(b'0'..=b'9') = self.peek() {
            self.pos += 1;
        }
    }

    fn require_digits(&mut self) -> Result<(), SyntaxError> {
        if !matches!(self.peek(), Some(b'0'..=b'9')) {
            return Err(self.error(format!("expected a digit, found {}", self.found())));
        }
        self.digits();
        Ok(())
    }

    fn string(&mut self) -> Result<String, SyntaxError> {
        self.pos += 1; // opening quote
        let mut out = String::new();
        loop {
            let run_start = self.pos;
            while let Some(b) = self.peek() {
                if b == b'"' || b == b'\\' || b < 0x20 {
                    break;
                }
                self.pos += 1;
            }
            out.push_str(&self.text[run_start..self.pos]);
            match self.peek() {
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(out);
                }
                Some(b'\\') => out.push(self.escape()?),
                Some(_) => return Err(self.error("control character in a string (escape it)".into())),
                None => return Err(self.error("unterminated string".into())),
            }
        }
    }

    fn escape(&mut self) -> Result<char, SyntaxError> {
        self.pos += 1; // backslash
        let c = match self.peek() {
            Some(b'"') => '"',
            Some(b'\\') => '\\',
            Some(b'/') => '/',
            Some(b'b') => '\u{8}',
            Some(b'f') => '\u{c}',
            Some(b'n') => '\n',
            Some(b'r') => '\r',
            Some(b't') => '\t',
            Some(b'u') => return self.unicode_escape(),
            _ => return Err(self.error(format!("invalid escape '\\' followed by {}", self.found()))),
        };
        self.pos += 1;
        Ok(c)
    }

    /// Decodes `uXXXX` (the backslash is consumed), joining a surrogate pair.
    fn unicode_escape(&mut self) -> Result<char, SyntaxError> {
        let start = self.pos - 1;
        let high = self.hex4()?;
        let code = if (0xD800..0xDC00).contains(&high) {
            if !self.bytes[self.pos..].starts_with(b"\\u") {
                self.pos = start;
                return Err(self.error("high surrogate escape not followed by a low surrogate".into()));
            }
            self.pos += 1;
            let low = self.hex4()?;
            if !(0xDC00..0xE000).contains(&low) {
                self.pos = start;
                return Err(self.error("high surrogate escape not followed by a low surrogate".into()));
            }
            0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00)
        } else if (0xDC00..0xE000).contains(&high) {
            self.pos = start;
            return Err(self.error("lone low surrogate escape".into()));
        } else {
            high
        };
        char::from_u32(code).ok_or_else(|| self.error("invalid unicode escape".into()))
    }

    /// Reads `u` and four hex digits.
    fn hex4(&mut self) -> Result<u32, SyntaxError> {
        self.pos += 1; // 'u'
        let digits = self.bytes.get(self.pos..self.pos + 4).unwrap_or(&[]);
        let text = std::str::from_utf8(digits).unwrap_or("");
        if text.len() != 4 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(self.error("expected four hex digits after \\u".into()));
        }
        self.pos += 4;
        u32::from_str_radix(text, 16).map_err(|e| self.error(e.to_string()))
    }
}

/// Converts byte offsets into 1-based line and column (columns count characters).
#[derive(Debug, Clone)]
pub struct LineIndex<'a> {
    text: &'a str,
    starts: Vec<usize>,
}

impl<'a> LineIndex<'a> {
    /// Indexes the line starts of `text`.
    pub fn new(text: &'a str) -> Self {
        let mut starts = vec![0];
        starts.extend(text.bytes().enumerate().filter(|(_, b)| *b == b'\n').map(|(i, _)| i + 1));
        LineIndex { text, starts }
    }

    /// Line and column of a byte offset.
    pub fn position(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let line = self.starts.partition_point(|&s| s <= offset);
        let start = self.starts[line - 1];
        let column = self.text.get(start..offset).map_or(offset - start, |s| s.chars().count()) + 1;
        (line, column)
    }
}
