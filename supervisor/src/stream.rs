//! Framed streams on a control connection: what `keelctl exec -i/-t` and `keelctl logs -f`
//! speak after their request line was answered `ok`.
//!
//! A stream-starting request ([`crate::control::Command::ExecStream`],
//! [`crate::control::Command::LogsFollow`]) is answered by one response line, as every
//! request is. When it is `ok`, the connection carries binary frames in both directions
//! for the rest of its life:
//!
//! ```text
//! frame = type (1 byte) · length (4 bytes, big-endian) · payload (length bytes)
//! ```
//!
//! Each direction has its own frame types ([`ClientFrame`], [`ServerFrame`]); a frame of
//! an unknown type, of the other direction, longer than [`MAX_PAYLOAD`] or with a payload
//! of the wrong size for its type ends the stream ([`FrameError`]), so hostile input is
//! bounded. The server ends a stream with [`ServerFrame::Exit`] (the command's exit code)
//! or [`ServerFrame::Error`].
//!
//! Limitations: there is no flow-control window in the protocol itself; back-pressure is
//! the transport's (a side that does not read stalls the other's writes, and a server
//! helper gives up on a client that does not read for a while).

/// Longest payload of one frame. Readers never buffer more than one frame of this size.
pub const MAX_PAYLOAD: usize = 64 * 1024;

/// Bytes of a frame's header (type and length).
pub const HEADER: usize = 5;

/// The answer's `result` that says frames follow.
pub const STREAM_STARTED: &str = "stream";

/// Signals a client may ask the server to deliver to the command (the rest are refused:
/// a client cannot e.g. stop the command's helper with SIGSTOP).
pub const FORWARDABLE_SIGNALS: [i32; 7] =
    [libc::SIGHUP, libc::SIGINT, libc::SIGQUIT, libc::SIGTERM, libc::SIGUSR1, libc::SIGUSR2, libc::SIGKILL];

const STDIN: u8 = 0x01;
const STDIN_EOF: u8 = 0x02;
const RESIZE: u8 = 0x03;
const SIGNAL: u8 = 0x04;
const STDOUT: u8 = 0x11;
const STDERR: u8 = 0x12;
const EXIT: u8 = 0x13;
const ERROR: u8 = 0x14;

/// What a client sends on a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientFrame {
    /// Bytes for the command's stdin (its terminal, with `-t`).
    Stdin(Vec<u8>),
    /// The client's stdin ended: the command's stdin is closed (with a terminal, the
    /// terminal's end-of-file character is typed).
    StdinEof,
    /// The client's terminal changed size: rows, columns.
    Resize {
        /// Rows.
        rows: u16,
        /// Columns.
        cols: u16,
    },
    /// Deliver this signal (one of [`FORWARDABLE_SIGNALS`]) to the command.
    Signal(i32),
}

/// What a server sends on a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerFrame {
    /// Bytes the command wrote to stdout (or its terminal), or log lines.
    Stdout(Vec<u8>),
    /// Bytes the command wrote to stderr (never with a terminal).
    Stderr(Vec<u8>),
    /// The command ended with this exit code (128+n when killed by signal n); last frame.
    Exit(i32),
    /// The stream failed (the message says why); last frame.
    Error(String),
}

/// Why a byte stream is not valid frames.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// A frame type this direction does not have.
    #[error("unknown frame type {0:#04x}")]
    UnknownType(u8),
    /// A frame longer than [`MAX_PAYLOAD`].
    #[error("frame of {len} bytes (type {kind:#04x}) is longer than the limit of {MAX_PAYLOAD}")]
    TooLong {
        /// The frame's type.
        kind: u8,
        /// Its announced length.
        len: usize,
    },
    /// A fixed-size frame with the wrong size, or a signal that may not be forwarded.
    #[error("frame type {kind:#04x}: {why}")]
    Malformed {
        /// The frame's type.
        kind: u8,
        /// What is wrong.
        why: &'static str,
    },
}

fn encode(kind: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + payload.len());
    out.push(kind);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// Encode bytes as as many `kind` frames as [`MAX_PAYLOAD`] needs.
fn encode_chunked(kind: u8, bytes: &[u8]) -> Vec<u8> {
    if bytes.is_empty() {
        return encode(kind, bytes);
    }
    bytes.chunks(MAX_PAYLOAD).flat_map(|chunk| encode(kind, chunk)).collect()
}

impl ClientFrame {
    /// The frame's bytes (data longer than [`MAX_PAYLOAD`] becomes several frames).
    pub fn encode(&self) -> Vec<u8> {
        match self {
            ClientFrame::Stdin(data) => encode_chunked(STDIN, data),
            ClientFrame::StdinEof => encode(STDIN_EOF, &[]),
            ClientFrame::Resize { rows, cols } => {
                let mut payload = rows.to_be_bytes().to_vec();
                payload.extend_from_slice(&cols.to_be_bytes());
                encode(RESIZE, &payload)
            }
            ClientFrame::Signal(signal) => encode(SIGNAL, &[u8::try_from(*signal).unwrap_or(0)]),
        }
    }

    fn decode(kind: u8, payload: Vec<u8>) -> Result<Self, FrameError> {
        match kind {
            STDIN => Ok(ClientFrame::Stdin(payload)),
            STDIN_EOF if payload.is_empty() => Ok(ClientFrame::StdinEof),
            STDIN_EOF => Err(FrameError::Malformed { kind, why: "end of stdin carries no payload" }),
            RESIZE => match payload[..] {
                [r0, r1, c0, c1] => Ok(ClientFrame::Resize { rows: u16::from_be_bytes([r0, r1]), cols: u16::from_be_bytes([c0, c1]) }),
                _ => Err(FrameError::Malformed { kind, why: "a resize is 4 bytes (rows, columns)" }),
            },
            SIGNAL => match payload[..] {
                [signal] if FORWARDABLE_SIGNALS.contains(&i32::from(signal)) => Ok(ClientFrame::Signal(i32::from(signal))),
                [_] => Err(FrameError::Malformed { kind, why: "this signal may not be forwarded" }),
                _ => Err(FrameError::Malformed { kind, why: "a signal is 1 byte" }),
            },
            other => Err(FrameError::UnknownType(other)),
        }
    }
}

impl ServerFrame {
    /// The frame's bytes (data longer than [`MAX_PAYLOAD`] becomes several frames).
    pub fn encode(&self) -> Vec<u8> {
        match self {
            ServerFrame::Stdout(data) => encode_chunked(STDOUT, data),
            ServerFrame::Stderr(data) => encode_chunked(STDERR, data),
            ServerFrame::Exit(code) => encode(EXIT, &code.to_be_bytes()),
            ServerFrame::Error(message) => {
                let bytes = message.as_bytes();
                encode(ERROR, &bytes[..bytes.len().min(MAX_PAYLOAD)])
            }
        }
    }

    fn decode(kind: u8, payload: Vec<u8>) -> Result<Self, FrameError> {
        match kind {
            STDOUT => Ok(ServerFrame::Stdout(payload)),
            STDERR => Ok(ServerFrame::Stderr(payload)),
            EXIT => match payload[..] {
                [a, b, c, d] => Ok(ServerFrame::Exit(i32::from_be_bytes([a, b, c, d]))),
                _ => Err(FrameError::Malformed { kind, why: "an exit code is 4 bytes" }),
            },
            ERROR => Ok(ServerFrame::Error(String::from_utf8_lossy(&payload).into_owned())),
            other => Err(FrameError::UnknownType(other)),
        }
    }
}

/// Splits a byte stream into frames of one direction (`F` is [`ClientFrame`] for a
/// server, [`ServerFrame`] for a client). Holds at most one frame's bytes.
#[derive(Debug)]
pub struct Decoder<F> {
    pending: Vec<u8>,
    failed: Option<FrameError>,
    _direction: std::marker::PhantomData<F>,
}

impl<F> Default for Decoder<F> {
    fn default() -> Self {
        Decoder { pending: Vec::new(), failed: None, _direction: std::marker::PhantomData }
    }
}

/// The frames of one direction (implemented by [`ClientFrame`] and [`ServerFrame`]).
pub trait Frame: Sized {
    /// Decode one frame of type `kind` with this payload.
    fn from_parts(kind: u8, payload: Vec<u8>) -> Result<Self, FrameError>;
}

impl Frame for ClientFrame {
    fn from_parts(kind: u8, payload: Vec<u8>) -> Result<Self, FrameError> {
        ClientFrame::decode(kind, payload)
    }
}

impl Frame for ServerFrame {
    fn from_parts(kind: u8, payload: Vec<u8>) -> Result<Self, FrameError> {
        ServerFrame::decode(kind, payload)
    }
}

impl<F: Frame> Decoder<F> {
    /// Add received bytes; return the frames they complete. After an error every later
    /// call returns the same error (the stream is over).
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<F>, FrameError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        self.pending.extend_from_slice(bytes);
        let mut frames = Vec::new();
        while let Some(header) = self.pending.get(..HEADER) {
            let kind = header[0];
            let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
            if len > MAX_PAYLOAD {
                return Err(self.fail(FrameError::TooLong { kind, len }));
            }
            if self.pending.len() < HEADER + len {
                break;
            }
            let payload = self.pending[HEADER..HEADER + len].to_vec();
            self.pending.drain(..HEADER + len);
            match F::from_parts(kind, payload) {
                Ok(frame) => frames.push(frame),
                Err(e) => return Err(self.fail(e)),
            }
        }
        Ok(frames)
    }

    /// Bytes of a frame begun and not finished.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    fn fail(&mut self, error: FrameError) -> FrameError {
        self.pending.clear();
        self.failed = Some(error.clone());
        error
    }
}

/// Raw stream bytes carried in one [`PortLine`] at most: base64 makes 32 KiB of them
/// about 43 KiB of text, well under the protocol's longest line.
pub const PORT_CHUNK: usize = 32 * 1024;

/// A stream's bytes on the virtio-serial control port, which one channel carries for
/// every client of the machine running QEMU (`keel-build run`'s multiplexer): each
/// stream is a channel named by its request's id on the wire, and its bytes travel base64
/// in JSON lines between the request and answer lines of other clients, so a stream
/// never holds the port:
///
/// ```text
/// {"id":7,"frames":"AQAAAAJoaQ=="}   bytes of stream 7 (frames, as on a socket)
/// {"id":7,"end":true}                stream 7 is over (either side)
/// ```
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortLine {
    /// The stream's request id on the wire.
    pub id: u64,
    /// Stream bytes, base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frames: Option<String>,
    /// The stream ended.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub end: bool,
}

/// A [`PortLine`] whose bytes are not base64.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("stream {id}: bytes on the port are not base64")]
pub struct PortLineError {
    /// The stream.
    pub id: u64,
}

impl PortLine {
    /// Lines carrying `bytes` of stream `id`, [`PORT_CHUNK`] at most each, newline included.
    pub fn data(id: u64, bytes: &[u8]) -> Vec<String> {
        use base64::Engine;
        bytes
            .chunks(PORT_CHUNK)
            .map(|chunk| PortLine { id, frames: Some(base64::engine::general_purpose::STANDARD.encode(chunk)), end: false }.to_line())
            .collect()
    }

    /// The line that ends stream `id`, newline included.
    pub fn end(id: u64) -> String {
        PortLine { id, frames: None, end: true }.to_line()
    }

    /// The line, newline included.
    pub fn to_line(&self) -> String {
        let mut line = serde_json::to_string(self).unwrap_or_default();
        line.push('\n');
        line
    }

    /// A stream line, or `None` when `line` is something else (a request or an answer).
    pub fn parse(line: &str) -> Option<PortLine> {
        serde_json::from_str(line.trim()).ok()
    }

    /// The stream bytes it carries (none for an end).
    pub fn bytes(&self) -> Result<Vec<u8>, PortLineError> {
        use base64::Engine;
        match &self.frames {
            None => Ok(Vec::new()),
            Some(text) => base64::engine::general_purpose::STANDARD.decode(text).map_err(|_| PortLineError { id: self.id }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_split_anywhere() {
        let sent = [
            ClientFrame::Stdin(b"ls\r".to_vec()),
            ClientFrame::Resize { rows: 40, cols: 132 },
            ClientFrame::Signal(libc::SIGINT),
            ClientFrame::StdinEof,
        ];
        let bytes: Vec<u8> = sent.iter().flat_map(ClientFrame::encode).collect();
        for split in 0..bytes.len() {
            let mut decoder = Decoder::<ClientFrame>::default();
            let mut got = decoder.push(&bytes[..split]).unwrap();
            got.extend(decoder.push(&bytes[split..]).unwrap());
            assert_eq!(got, sent, "split at {split}");
            assert_eq!(decoder.pending_len(), 0);
        }
        let sent = [ServerFrame::Stdout(b"a".to_vec()), ServerFrame::Stderr(vec![]), ServerFrame::Exit(-3), ServerFrame::Error("x".into())];
        let bytes: Vec<u8> = sent.iter().flat_map(ServerFrame::encode).collect();
        assert_eq!(Decoder::<ServerFrame>::default().push(&bytes).unwrap(), sent);
    }

    #[test]
    fn long_data_becomes_several_bounded_frames() {
        let data = vec![7u8; MAX_PAYLOAD * 2 + 10];
        let bytes = ClientFrame::Stdin(data.clone()).encode();
        let frames = Decoder::<ClientFrame>::default().push(&bytes).unwrap();
        assert_eq!(frames.len(), 3);
        let joined: Vec<u8> = frames.into_iter().flat_map(|f| if let ClientFrame::Stdin(d) = f { d } else { vec![] }).collect();
        assert_eq!(joined, data);
    }

    #[test]
    fn an_oversized_frame_is_refused_from_its_header() {
        let mut decoder = Decoder::<ClientFrame>::default();
        let mut header = vec![STDIN];
        header.extend_from_slice(&((MAX_PAYLOAD + 1) as u32).to_be_bytes());
        assert_eq!(decoder.push(&header), Err(FrameError::TooLong { kind: STDIN, len: MAX_PAYLOAD + 1 }));
        assert_eq!(decoder.pending_len(), 0, "nothing of it is kept");
        assert!(decoder.push(&ClientFrame::StdinEof.encode()).is_err(), "the stream stays failed");
        // Control: the largest allowed frame is taken.
        let mut decoder = Decoder::<ClientFrame>::default();
        assert_eq!(decoder.push(&encode(STDIN, &vec![0; MAX_PAYLOAD])).unwrap().len(), 1);
    }

    #[test]
    fn unknown_and_wrong_direction_types_are_refused() {
        assert_eq!(Decoder::<ClientFrame>::default().push(&encode(0x7f, b"")), Err(FrameError::UnknownType(0x7f)));
        // A server frame sent by a client.
        assert_eq!(Decoder::<ClientFrame>::default().push(&ServerFrame::Exit(0).encode()), Err(FrameError::UnknownType(EXIT)));
        assert_eq!(Decoder::<ServerFrame>::default().push(&ClientFrame::StdinEof.encode()), Err(FrameError::UnknownType(STDIN_EOF)));
    }

    #[test]
    fn fixed_size_frames_are_checked() {
        let bad = [encode(RESIZE, &[0, 1]), encode(SIGNAL, &[]), encode(STDIN_EOF, b"x")];
        for frame in bad {
            assert!(matches!(Decoder::<ClientFrame>::default().push(&frame), Err(FrameError::Malformed { .. })), "{frame:?}");
        }
        assert!(matches!(Decoder::<ServerFrame>::default().push(&encode(EXIT, &[0])), Err(FrameError::Malformed { .. })));
    }

    #[test]
    fn only_listed_signals_are_forwarded() {
        let stop = encode(SIGNAL, &[libc::SIGSTOP as u8]);
        assert!(matches!(Decoder::<ClientFrame>::default().push(&stop), Err(FrameError::Malformed { .. })));
        let int = encode(SIGNAL, &[libc::SIGINT as u8]);
        assert_eq!(Decoder::<ClientFrame>::default().push(&int).unwrap(), vec![ClientFrame::Signal(libc::SIGINT)]);
    }
}

#[cfg(test)]
mod port_tests {
    use super::*;

    #[test]
    fn port_lines_carry_bytes_and_ends_and_are_told_from_requests() {
        let bytes: Vec<u8> = (0..=255u8).cycle().take(PORT_CHUNK * 2 + 3).collect();
        let lines = PortLine::data(7, &bytes);
        assert_eq!(lines.len(), 3);
        assert!(lines.iter().all(|l| l.len() < crate::control::MAX_LINE && l.ends_with('\n')));
        let back: Vec<u8> = lines.iter().flat_map(|l| PortLine::parse(l).unwrap().bytes().unwrap()).collect();
        assert_eq!(back, bytes);
        assert_eq!(PortLine::parse(&PortLine::end(7)), Some(PortLine { id: 7, frames: None, end: true }));
        assert_eq!(PortLine::parse(r#"{"id":7,"cmd":"status"}"#), None, "a request is not a stream line");
        assert_eq!(PortLine::parse(r#"{"id":7,"ok":true,"result":"stream"}"#), None, "nor an answer");
        assert_eq!(PortLine::parse(r#"{"id":7,"frames":"!!"}"#).unwrap().bytes(), Err(PortLineError { id: 7 }));
    }
}
