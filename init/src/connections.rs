//! Control connections with bounds, so that a slow or hostile client never delays
//! another and never holds PID 1: each connection has a stable [`ConnectionId`], buffers
//! its input and output within caps ([`ControlLimits`]) and is written without waiting
//! ([`Outbox`], flushed when poll(2) says the socket is writable).
//!
//! The policy (which connection to close when a new one comes past the cap, which ones
//! have been idle too long) is pure, over [`Activity`] with `now` passed in.

use crate::control_server::{read_lines, LineBuffer, ReadOutcome};
use keel_supervisor::control::MAX_LINE;
use std::collections::VecDeque;
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

/// Open control connections at most (the virtio-serial port is not counted). keelctl
/// opens one connection per command and closes it, so 64 is far more than operators use
/// at once, and small next to PID 1's 1024 file descriptors, which container pipes and
/// log files share.
pub const MAX_CONNECTIONS: usize = 64;

/// A connection with no complete request and nothing written to it for this long (and
/// no job answering it later) is closed. keelctl sends its request as soon as it
/// connects and reads the answer at once; a connection quiet for 30 s is forgotten or
/// hostile (one byte a second, never a newline, must not hold a slot for ever).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Requests handled per connection per loop turn; the rest wait in its input buffer for
/// the next turn, so one client pipelining requests cannot starve the others.
pub const MAX_REQUESTS_PER_TURN: usize = 8;

/// Input bytes kept per connection (received, not yet handled): one longest request
/// line plus one read. A connection whose buffer is full is not read until it drains.
pub const MAX_BUFFERED_INPUT: usize = MAX_LINE + 4096;

/// Reply bytes kept per connection for a client that reads slowly. A reply is always
/// accepted into an empty buffer (a long `logs` answer may be larger than this); a client
/// whose buffered replies would pass 1 MiB is not reading them and is disconnected.
pub const MAX_BUFFERED_OUTPUT: usize = 1024 * 1024;

/// New connections accepted per loop turn; more wait in the listen backlog, so a connect
/// flood cannot monopolise a turn.
pub const MAX_ACCEPTS_PER_TURN: usize = 16;

/// A control connection's stable id, never reused during a boot: replies of work that
/// finishes later (a worker, a stream of progress events) are addressed to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnectionId(pub u64);

impl std::fmt::Display for ConnectionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// The bounds applied to control connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ControlLimits {
    /// [`MAX_CONNECTIONS`].
    pub max_connections: usize,
    /// [`IDLE_TIMEOUT`]; `None`: never.
    pub idle_timeout: Option<Duration>,
    /// [`MAX_REQUESTS_PER_TURN`].
    pub max_requests_per_turn: usize,
    /// [`MAX_BUFFERED_INPUT`].
    pub max_buffered_input: usize,
    /// [`MAX_BUFFERED_OUTPUT`].
    pub max_buffered_output: usize,
}

impl Default for ControlLimits {
    fn default() -> Self {
        ControlLimits {
            max_connections: MAX_CONNECTIONS,
            idle_timeout: Some(IDLE_TIMEOUT),
            max_requests_per_turn: MAX_REQUESTS_PER_TURN,
            max_buffered_input: MAX_BUFFERED_INPUT,
            max_buffered_output: MAX_BUFFERED_OUTPUT,
        }
    }
}

impl ControlLimits {
    /// The negative control of the bounded-I/O tests (`keel.test.unbounded`): no cap on
    /// connections and no idle timeout. Replies still never wait.
    pub fn unbounded() -> Self {
        ControlLimits { max_connections: usize::MAX, idle_timeout: None, ..ControlLimits::default() }
    }
}

/// What the idle policy knows of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Activity {
    /// When it was accepted, last finished a request line or last had reply bytes taken.
    pub last_active: Instant,
    /// Jobs that will answer on it later (an exec helper, a worker); while there are
    /// any, the connection is never idle.
    pub in_flight: u32,
}

impl Activity {
    /// Activity of a connection accepted at `now`.
    pub fn new(now: Instant) -> Self {
        Activity { last_active: now, in_flight: 0 }
    }

    /// When the idle timeout closes it (`None`: it waits for a job, or no timeout).
    pub fn expires(&self, timeout: Option<Duration>) -> Option<Instant> {
        if self.in_flight > 0 {
            return None;
        }
        timeout.map(|timeout| self.last_active + timeout)
    }
}

/// The connection to close so that a new one fits under the cap: the longest idle one
/// (oldest `last_active`; the lower id on a tie) among those no job will answer. `None`
/// when every connection waits for a job: then the new one is refused.
pub fn eviction_candidate(connections: impl IntoIterator<Item = (ConnectionId, Activity)>) -> Option<ConnectionId> {
    connections.into_iter().filter(|(_, a)| a.in_flight == 0).min_by_key(|(id, a)| (a.last_active, *id)).map(|(id, _)| id)
}

/// The connections whose idle timeout has passed at `now`.
pub fn expired(
    connections: impl IntoIterator<Item = (ConnectionId, Activity)>,
    timeout: Option<Duration>,
    now: Instant,
) -> Vec<ConnectionId> {
    connections.into_iter().filter(|(_, a)| a.expires(timeout).is_some_and(|at| at <= now)).map(|(id, _)| id).collect()
}

/// A reply would take a connection's buffered output past its cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{buffered} reply bytes already wait for the client; {more} more would pass the cap of {cap}")]
pub struct OutboxFull {
    /// Bytes already waiting.
    pub buffered: usize,
    /// Bytes of the reply refused.
    pub more: usize,
    /// The cap.
    pub cap: usize,
}

/// Reply bytes waiting for a client, written without waiting.
#[derive(Debug)]
pub struct Outbox {
    bytes: VecDeque<u8>,
    cap: usize,
}

impl Outbox {
    /// An empty outbox that holds at most `cap` bytes (see [`MAX_BUFFERED_OUTPUT`]).
    pub fn new(cap: usize) -> Self {
        Outbox { bytes: VecDeque::new(), cap }
    }

    /// Bytes waiting.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Queue `line`. An empty outbox takes any one reply; otherwise the total must stay
    /// within the cap.
    pub fn queue(&mut self, line: &[u8]) -> Result<(), OutboxFull> {
        if !self.bytes.is_empty() && self.bytes.len().saturating_add(line.len()) > self.cap {
            return Err(OutboxFull { buffered: self.bytes.len(), more: line.len(), cap: self.cap });
        }
        self.bytes.extend(line);
        Ok(())
    }

    /// Write what `fd` (non-blocking) takes now; returns the bytes written. A full
    /// socket is not an error (the rest waits for POLLOUT); a broken one is.
    pub fn flush(&mut self, fd: BorrowedFd<'_>) -> std::io::Result<usize> {
        let mut written = 0;
        while !self.bytes.is_empty() {
            let (front, _) = self.bytes.as_slices();
            match nix::unistd::write(fd, front) {
                Ok(0) => break,
                Ok(n) => {
                    self.bytes.drain(..n);
                    written += n;
                }
                Err(nix::Error::EINTR) => {}
                Err(nix::Error::EAGAIN) => break,
                Err(e) => return Err(std::io::Error::from_raw_os_error(e as i32)),
            }
        }
        Ok(written)
    }

    /// A copy of what waits (for a helper that takes the connection over).
    pub fn to_vec(&self) -> Vec<u8> {
        self.bytes.iter().copied().collect()
    }

    /// Forget what waits (the client went away).
    pub fn clear(&mut self) {
        self.bytes.clear();
    }
}

/// What a connection runs over.
pub enum Transport {
    /// A client of the unix control socket.
    Socket(UnixStream),
    /// The virtio-serial port (one channel to the machine running QEMU).
    Port(File),
}

impl AsFd for Transport {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            Transport::Socket(stream) => stream.as_fd(),
            Transport::Port(file) => file.as_fd(),
        }
    }
}

impl Read for Transport {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Transport::Socket(stream) => stream.read(buf),
            Transport::Port(file) => file.read(buf),
        }
    }
}

/// One control channel: its transport, its input (split into request lines, not yet
/// handled ones kept), its outbox and its activity.
pub struct Connection {
    /// The stable id.
    pub id: ConnectionId,
    /// The transport (non-blocking).
    pub transport: Transport,
    input: LineBuffer,
    requests: VecDeque<String>,
    /// Bytes of `requests`.
    queued_bytes: usize,
    output: Outbox,
    /// Idle bookkeeping.
    pub activity: Activity,
    /// The client finished sending (EOF): answer what was asked, then close.
    eof: bool,
    /// To be dropped after this turn.
    closed: bool,
}

impl Connection {
    /// A connection over `transport`, accepted at `now`.
    pub fn new(id: ConnectionId, transport: Transport, limits: &ControlLimits, now: Instant) -> Self {
        Connection {
            id,
            transport,
            input: LineBuffer::default(),
            requests: VecDeque::new(),
            queued_bytes: 0,
            output: Outbox::new(limits.max_buffered_output),
            activity: Activity::new(now),
            eof: false,
            closed: false,
        }
    }

    /// The poll(2) events to wait for: input while there is room for it, output while
    /// replies wait.
    pub fn interest(&self, limits: &ControlLimits) -> nix::poll::PollFlags {
        use nix::poll::PollFlags;
        let mut flags = PollFlags::empty();
        if !self.eof && !self.closed && self.buffered_input() < limits.max_buffered_input {
            flags |= PollFlags::POLLIN;
        }
        if !self.output.is_empty() {
            flags |= PollFlags::POLLOUT;
        }
        flags
    }

    /// Bytes received and not yet handled.
    pub fn buffered_input(&self) -> usize {
        self.queued_bytes + self.input.pending_len()
    }

    /// Read what the client sent, up to the input cap; complete lines are queued as
    /// requests. EOF or a line over [`MAX_LINE`] ends the input.
    pub fn read(&mut self, limits: &ControlLimits, now: Instant) {
        if self.eof || self.closed {
            return;
        }
        let room = limits.max_buffered_input.saturating_sub(self.buffered_input());
        let (lines, open) = match read_lines(&mut self.transport, &mut self.input, room) {
            ReadOutcome::Lines(lines) => (lines, true),
            ReadOutcome::LinesThenClosed(lines) => (lines, false),
            ReadOutcome::Closed => (Vec::new(), false),
        };
        if !lines.is_empty() {
            self.activity.last_active = now;
        }
        for line in lines {
            // Counted with its newline, as it was read.
            self.queued_bytes += line.len() + 1;
            self.requests.push_back(line);
        }
        if !open {
            self.eof = true;
        }
    }

    /// Take at most `max` request lines to handle now.
    pub fn take_requests(&mut self, max: usize) -> Vec<String> {
        let count = self.requests.len().min(max);
        let taken: Vec<String> = self.requests.drain(..count).collect();
        self.queued_bytes = self.queued_bytes.saturating_sub(taken.iter().map(|l| l.len() + 1).sum::<usize>());
        taken
    }

    /// Whether request lines wait to be handled.
    pub fn has_requests(&self) -> bool {
        !self.requests.is_empty()
    }

    /// Queue a reply line and write what the socket takes now. A client that lets its
    /// replies pile up past the cap is disconnected (the error says so).
    pub fn send(&mut self, line: &[u8], now: Instant) -> Result<(), OutboxFull> {
        if self.closed {
            return Ok(());
        }
        if let Err(full) = self.output.queue(line) {
            self.close();
            return Err(full);
        }
        self.activity.last_active = now;
        self.flush(now);
        Ok(())
    }

    /// Write waiting replies without waiting; a broken socket closes the connection.
    pub fn flush(&mut self, now: Instant) {
        if self.output.is_empty() || self.closed {
            return;
        }
        match self.output.flush(self.transport.as_fd()) {
            Ok(0) => {}
            Ok(_) => self.activity.last_active = now,
            Err(_) => self.close(),
        }
    }

    /// Whether it is done: closed, or its client finished and everything was answered
    /// (and no job will answer later).
    pub fn finished(&self) -> bool {
        self.closed || (self.eof && self.requests.is_empty() && self.output.is_empty() && self.activity.in_flight == 0)
    }

    /// Whether it was closed (it is dropped at the end of the turn).
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Mark it for dropping; the socket is shut down at once.
    pub fn close(&mut self) {
        if let Transport::Socket(stream) = &self.transport {
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
        self.closed = true;
    }

    /// The client went away (the port's host side closed): forget its input and replies,
    /// keep the channel.
    pub fn reset(&mut self) {
        self.input = LineBuffer::default();
        self.requests.clear();
        self.queued_bytes = 0;
        self.output.clear();
        self.eof = false;
        self.closed = false;
    }

    /// For a stream helper that takes this connection over: a duplicate of the socket and
    /// the reply bytes not written yet (the helper writes them first). `None` for the
    /// virtio-serial port, which is never handed over.
    pub fn hand_over(&self) -> Option<std::io::Result<(std::os::fd::OwnedFd, Vec<u8>)>> {
        match &self.transport {
            Transport::Socket(stream) => Some(stream.as_fd().try_clone_to_owned().map(|fd| (fd, self.output.to_vec()))),
            Transport::Port(_) => None,
        }
    }

    /// Bytes of replies waiting.
    pub fn output_len(&self) -> usize {
        self.output.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn at(base: Instant, secs: u64, in_flight: u32) -> Activity {
        Activity { last_active: base + Duration::from_secs(secs), in_flight }
    }

    #[test]
    fn the_longest_idle_connection_is_evicted() {
        let t0 = Instant::now();
        let table = [(ConnectionId(1), at(t0, 5, 0)), (ConnectionId(2), at(t0, 1, 0)), (ConnectionId(3), at(t0, 9, 0))];
        assert_eq!(eviction_candidate(table), Some(ConnectionId(2)));
        // A tie goes to the older id.
        let tie = [(ConnectionId(7), at(t0, 1, 0)), (ConnectionId(4), at(t0, 1, 0))];
        assert_eq!(eviction_candidate(tie), Some(ConnectionId(4)));
    }

    #[test]
    fn a_connection_waiting_for_a_job_is_never_evicted() {
        let t0 = Instant::now();
        let table = [(ConnectionId(1), at(t0, 0, 1)), (ConnectionId(2), at(t0, 3, 0))];
        assert_eq!(eviction_candidate(table), Some(ConnectionId(2)));
        let busy = [(ConnectionId(1), at(t0, 0, 1)), (ConnectionId(2), at(t0, 3, 2))];
        assert_eq!(eviction_candidate(busy), None, "none idle: the new connection is refused");
        assert_eq!(eviction_candidate([]), None);
    }

    #[test]
    fn idle_connections_expire_after_the_timeout() {
        let t0 = Instant::now();
        let table = [(ConnectionId(1), at(t0, 0, 0)), (ConnectionId(2), at(t0, 20, 0)), (ConnectionId(3), at(t0, 0, 1))];
        let timeout = Some(Duration::from_secs(30));
        assert_eq!(expired(table, timeout, t0 + Duration::from_secs(29)), vec![]);
        assert_eq!(expired(table, timeout, t0 + Duration::from_secs(30)), vec![ConnectionId(1)]);
        assert_eq!(expired(table, timeout, t0 + Duration::from_secs(60)), vec![ConnectionId(1), ConnectionId(2)]);
        assert_eq!(expired(table, None, t0 + Duration::from_secs(3600)), vec![], "no timeout: never");
        assert_eq!(table[2].1.expires(timeout), None);
    }

    #[test]
    fn an_outbox_takes_one_large_reply_but_not_a_pile() {
        let mut outbox = Outbox::new(10);
        outbox.queue(&[b'x'; 25]).expect("an empty outbox takes any one reply");
        assert_eq!(outbox.queue(b"y"), Err(OutboxFull { buffered: 25, more: 1, cap: 10 }));
        let mut outbox = Outbox::new(10);
        outbox.queue(b"12345").unwrap();
        outbox.queue(b"67890").unwrap();
        assert!(outbox.queue(b"!").is_err());
        assert_eq!(outbox.len(), 10);
    }

    #[test]
    fn an_outbox_never_waits_for_a_full_socket() {
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        ours.set_nonblocking(true).unwrap();
        let mut outbox = Outbox::new(usize::MAX);
        outbox.queue(&vec![b'r'; 4 << 20]).unwrap();
        let started = Instant::now();
        let written = outbox.flush(ours.as_fd()).unwrap();
        assert!(started.elapsed() < Duration::from_millis(500));
        assert!(written > 0 && written < 4 << 20, "{written} written");
        assert_eq!(outbox.len(), (4 << 20) - written);
        // The client reads; the rest goes out on later flushes.
        let reader = std::thread::spawn(move || {
            let mut all = Vec::new();
            theirs.read_to_end(&mut all).map(|_| all.len())
        });
        while !outbox.is_empty() {
            outbox.flush(ours.as_fd()).unwrap();
            std::thread::sleep(Duration::from_millis(1));
        }
        drop(ours);
        assert_eq!(reader.join().unwrap().unwrap(), 4 << 20);
    }

    #[test]
    fn a_connection_handles_a_bounded_number_of_requests_per_turn() {
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        ours.set_nonblocking(true).unwrap();
        let limits = ControlLimits::default();
        let now = Instant::now();
        let mut connection = Connection::new(ConnectionId(1), Transport::Socket(ours), &limits, now);
        let pipelined: String = (0..20).map(|i| format!("{{\"id\":{i},\"cmd\":\"status\"}}\n")).collect();
        theirs.write_all(pipelined.as_bytes()).unwrap();
        connection.read(&limits, now);
        assert_eq!(connection.take_requests(limits.max_requests_per_turn).len(), MAX_REQUESTS_PER_TURN);
        assert_eq!(connection.take_requests(limits.max_requests_per_turn).len(), MAX_REQUESTS_PER_TURN);
        assert_eq!(connection.take_requests(limits.max_requests_per_turn).len(), 4);
        assert!(!connection.has_requests());
        assert_eq!(connection.buffered_input(), 0);
    }

    #[test]
    fn input_is_not_read_past_its_cap() {
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        ours.set_nonblocking(true).unwrap();
        theirs.set_nonblocking(true).unwrap();
        let limits = ControlLimits { max_buffered_input: 1000, ..ControlLimits::default() };
        let now = Instant::now();
        let mut connection = Connection::new(ConnectionId(1), Transport::Socket(ours), &limits, now);
        let line = format!("{{\"id\":1,\"cmd\":\"status\",\"pad\":\"{}\"}}\n", "p".repeat(60));
        for _ in 0..100 {
            let _ = theirs.write_all(line.as_bytes());
        }
        connection.read(&limits, now);
        assert!(connection.buffered_input() <= 1000 + line.len(), "{} buffered", connection.buffered_input());
        assert!(!connection.interest(&limits).contains(nix::poll::PollFlags::POLLIN), "a full input buffer is not polled");
        connection.take_requests(usize::MAX);
        assert!(connection.interest(&limits).contains(nix::poll::PollFlags::POLLIN));
    }

    #[test]
    fn a_client_that_does_not_read_is_disconnected_at_the_cap() {
        let (ours, theirs) = UnixStream::pair().unwrap();
        ours.set_nonblocking(true).unwrap();
        let limits = ControlLimits { max_buffered_output: 64 * 1024, ..ControlLimits::default() };
        let now = Instant::now();
        let mut connection = Connection::new(ConnectionId(1), Transport::Socket(ours), &limits, now);
        let reply = vec![b'a'; 16 * 1024];
        let mut sent = 0;
        let started = Instant::now();
        let outcome = loop {
            match connection.send(&reply, now) {
                Ok(()) => sent += 1,
                Err(full) => break full,
            }
            assert!(sent < 10_000, "never refused");
        };
        assert!(started.elapsed() < Duration::from_millis(500), "sending waited");
        assert_eq!(outcome.cap, 64 * 1024);
        assert!(connection.finished(), "the connection is closed");
        drop(theirs);
    }

    #[test]
    fn after_eof_the_connection_answers_then_finishes() {
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        ours.set_nonblocking(true).unwrap();
        let limits = ControlLimits::default();
        let now = Instant::now();
        let mut connection = Connection::new(ConnectionId(1), Transport::Socket(ours), &limits, now);
        theirs.write_all(b"{\"id\":1,\"cmd\":\"ps\"}\n").unwrap();
        theirs.shutdown(std::net::Shutdown::Write).unwrap();
        connection.read(&limits, now);
        connection.read(&limits, now);
        assert!(!connection.finished(), "a request still waits");
        assert_eq!(connection.take_requests(8).len(), 1);
        connection.send(b"answer\n", now).unwrap();
        assert!(connection.finished());
        drop(connection);
        let mut answer = String::new();
        theirs.read_to_string(&mut answer).unwrap();
        assert_eq!(answer, "answer\n");
    }
}
