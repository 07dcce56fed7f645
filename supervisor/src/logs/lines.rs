//! The pure half of container logging: cutting a pipe's byte stream into lines, and the
//! text form of a line in the log file (a *record*) and on the console.
//!
//! A record is one line of a log file:
//! `2026-11-29T23:10:25.123Z stdout hello` — RFC 3339 UTC timestamp with milliseconds,
//! the stream, one space, the text as the container printed it (without its line end).
//! Because [`LineSplitter`] never yields a `\n`, a record is always exactly one line.

use super::error::RecordError;
use super::timestamp::{format_timestamp, parse_timestamp};
use crate::spec::ContainerName;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::SystemTime;

/// Longest line kept whole, in bytes. A container that prints more without a newline gets
/// its output cut into lines of this size, so PID 1 buffers at most this much per stream.
pub const MAX_LINE_BYTES: usize = 16 * 1024;

/// Which of a container's two output pipes a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    /// The container's fd 1.
    Stdout,
    /// The container's fd 2.
    Stderr,
}

impl Stream {
    /// The name written in records: `stdout` or `stderr`.
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }

    /// The stream a record names; `None` for anything else.
    pub fn parse(text: &str) -> Option<Stream> {
        match text {
            "stdout" => Some(Stream::Stdout),
            "stderr" => Some(Stream::Stderr),
            _ => None,
        }
    }
}

impl fmt::Display for Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Turns the arbitrary chunks a non-blocking pipe read returns into complete lines.
///
/// It exists because a read may end in the middle of a line (or of a UTF-8 character)
/// and the next read continues it. Lines end at `\n`; a `\r` right before it is dropped;
/// bytes that are not UTF-8 become U+FFFD. A line longer than the limit is emitted in
/// pieces of at most the limit (cut on a character boundary when the bytes allow), so
/// the buffer never holds more than about twice the limit.
#[derive(Debug, Clone)]
pub struct LineSplitter {
    buf: Vec<u8>,
    max_line: usize,
}

impl Default for LineSplitter {
    /// A splitter with the [`MAX_LINE_BYTES`] limit.
    fn default() -> Self {
        LineSplitter::new(MAX_LINE_BYTES)
    }
}

impl LineSplitter {
    /// A splitter that cuts lines longer than `max_line` bytes (at least 4, so a whole
    /// UTF-8 character always fits).
    pub fn new(max_line: usize) -> Self {
        LineSplitter { buf: Vec::new(), max_line: max_line.max(4) }
    }

    /// Take the next chunk read from the pipe; return the lines it completes, in order.
    pub fn push(&mut self, mut chunk: &[u8]) -> Vec<String> {
        let mut lines = Vec::new();
        while let Some(end) = chunk.iter().position(|&b| b == b'\n') {
            self.append(&chunk[..end], &mut lines);
            lines.push(self.take_line());
            chunk = &chunk[end + 1..];
        }
        self.append(chunk, &mut lines);
        lines
    }

    /// At end of file: the unterminated last line, if any bytes are left.
    pub fn flush(&mut self) -> Option<String> {
        (!self.buf.is_empty()).then(|| self.take_line())
    }

    /// How many bytes of an unfinished line are buffered.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// Add bytes that contain no `\n`, emitting pieces whenever the line gets too long.
    /// Adding at most `max_line` bytes at a time bounds the buffer.
    fn append(&mut self, bytes: &[u8], lines: &mut Vec<String>) {
        for piece in bytes.chunks(self.max_line) {
            self.buf.extend_from_slice(piece);
            while self.content_len() > self.max_line {
                lines.push(self.split_head());
            }
        }
    }

    /// The length of the buffered line, not counting a trailing `\r` (which may be the
    /// first half of a `\r\n` split across reads, and must not force a cut on its own).
    fn content_len(&self) -> usize {
        self.buf.len() - usize::from(self.buf.last() == Some(&b'\r'))
    }

    /// Remove and return the first `max_line` bytes (fewer, to end on a UTF-8 boundary).
    fn split_head(&mut self) -> String {
        let cut = utf8_cut(&self.buf, self.max_line);
        let head: Vec<u8> = self.buf.drain(..cut).collect();
        String::from_utf8_lossy(&head).into_owned()
    }

    /// Remove and return the buffered line, without a trailing `\r`.
    fn take_line(&mut self) -> String {
        if self.buf.last() == Some(&b'\r') {
            self.buf.pop();
        }
        let line = String::from_utf8_lossy(&self.buf).into_owned();
        self.buf.clear();
        line
    }
}

/// Where to cut `bytes` at or before `max` without splitting a UTF-8 character: back up
/// over at most three continuation bytes; if that finds no start byte, cut at `max`.
fn utf8_cut(bytes: &[u8], max: usize) -> usize {
    let is_continuation = |b: u8| b & 0xC0 == 0x80;
    (max.saturating_sub(3)..=max).rev().take_while(|&i| i > 0).find(|&i| !is_continuation(bytes[i])).unwrap_or(max)
}

/// The log file form of one line: `TIMESTAMP STREAM TEXT\n`, e.g.
/// `2026-11-29T23:10:25.123Z stdout hello\n`. `line` must not contain `\n`
/// ([`LineSplitter`] guarantees that).
pub fn format_record(timestamp: SystemTime, stream: Stream, line: &str) -> String {
    format_record_stamped(&format_timestamp(timestamp), stream, line)
}

/// [`format_record`] with the timestamp already formatted: the lines of one read share
/// it, and formatting it once per line is most of a flood's cost.
pub fn format_record_stamped(stamp: &str, stream: Stream, line: &str) -> String {
    format!("{stamp} {stream} {line}\n")
}

/// The console form of one line: `NAME| text\n` for stdout, `NAME! text\n` for stderr.
/// Short on purpose: the console is a slow serial line shared by all containers, and the
/// name is what tells them apart.
pub fn format_console(name: &ContainerName, stream: Stream, line: &str) -> String {
    let mark = match stream {
        Stream::Stdout => '|',
        Stream::Stderr => '!',
    };
    format!("{name}{mark} {line}\n")
}

/// One record read back from a log file, borrowing its text from the line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    /// When PID 1 read the line from the pipe.
    pub timestamp: SystemTime,
    /// Which pipe it came from.
    pub stream: Stream,
    /// The line as the container printed it.
    pub text: &'a str,
}

/// Parse a line of a log file (with or without its `\n`) back into a [`Record`], for
/// `keelctl logs --json` and filtering by stream or time.
pub fn parse_record(line: &str) -> Result<Record<'_>, RecordError> {
    let line = line.strip_suffix('\n').unwrap_or(line);
    let (ts, rest) = line.split_once(' ').ok_or_else(|| RecordError::MissingStream { line: line.to_string() })?;
    // "TS stdout" (no space, empty text) is accepted as well as "TS stdout ".
    let (stream, text) = rest.split_once(' ').unwrap_or((rest, ""));
    let timestamp = parse_timestamp(ts).ok_or_else(|| RecordError::Timestamp { text: ts.to_string() })?;
    let stream = Stream::parse(stream).ok_or_else(|| RecordError::Stream { text: stream.to_string() })?;
    Ok(Record { timestamp, stream, text })
}
