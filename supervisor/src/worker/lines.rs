//! The parent's bounded line buffer for a worker's event pipe: bytes in, whole lines
//! out, and an error instead of unbounded growth when a line never ends.

/// Longest event line PID 1 accepts from a worker; a longer one is a protocol error.
pub const MAX_EVENT_LINE: usize = 1 << 20;

/// Longest line from an `inspect` worker, whose result lists every path of every layer.
pub const MAX_INSPECT_LINE: usize = 64 << 20;

/// Why the buffer refused input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    /// A line grew past the limit without a newline.
    #[error("an event line is longer than {limit} bytes")]
    TooLong {
        /// The limit.
        limit: usize,
    },
}

/// Bytes received but not yet ending in a newline, at most `limit` of them.
#[derive(Debug)]
pub struct LineBuffer {
    pending: Vec<u8>,
    limit: usize,
}

impl Default for LineBuffer {
    fn default() -> Self {
        LineBuffer::new(MAX_EVENT_LINE)
    }
}

impl LineBuffer {
    /// A buffer that refuses lines longer than `limit` bytes.
    pub fn new(limit: usize) -> Self {
        LineBuffer { pending: Vec::new(), limit }
    }

    /// Add `bytes`; return every line completed by them (without the newline, lossy UTF-8).
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<String>, LineError> {
        let mut lines = Vec::new();
        let mut rest = bytes;
        while let Some(end) = rest.iter().position(|&b| b == b'\n') {
            if self.pending.len() + end > self.limit {
                return Err(LineError::TooLong { limit: self.limit });
            }
            self.pending.extend_from_slice(&rest[..end]);
            lines.push(String::from_utf8_lossy(&self.pending).into_owned());
            self.pending.clear();
            rest = &rest[end + 1..];
        }
        if self.pending.len() + rest.len() > self.limit {
            return Err(LineError::TooLong { limit: self.limit });
        }
        self.pending.extend_from_slice(rest);
        Ok(lines)
    }

    /// Bytes of an unfinished line.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }
}
