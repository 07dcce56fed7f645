//! Streams over the virtio-serial control port. The port is one channel for every client
//! of the machine running QEMU, served in PID 1's loop, so a stream cannot be handed
//! over as a socket is: PID 1 gives the stream helper one end of a socketpair and moves
//! bytes between the other end and the port as [`PortLine`]s, one channel per stream
//! (named by its request's id on the wire). Request and answer lines of other clients
//! go on in between.
//!
//! PID 1 never waits here: every descriptor is non-blocking, a channel is read only
//! while the port's outbox has room ([`PORT_ROOM`]), and bytes for a helper that does
//! not take them are kept up to [`CHANNEL_BUFFER`]; past that the stream is dropped
//! (its helper sees the end and hangs up its command), never the port.

use crate::connections::{Connection, MAX_BUFFERED_OUTPUT};
use keel_supervisor::stream::{PortLine, PORT_CHUNK};
use nix::poll::PollFlags;
use std::collections::BTreeMap;
use std::io::{ErrorKind, Read};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::time::Instant;

/// Bytes from the port kept for a helper that has not read them yet; past this its
/// stream is dropped.
pub const CHANNEL_BUFFER: usize = 256 * 1024;

/// Channels are read only while the port's outbox holds less than this (so the reply
/// of any other client still fits under the connection's cap).
pub const PORT_ROOM: usize = MAX_BUFFERED_OUTPUT / 2;

/// One stream over the port: PID 1's end of the helper's socketpair.
struct Channel {
    sock: UnixStream,
    /// Port bytes not yet taken by the helper.
    to_helper: Vec<u8>,
    /// The helper's answer line while it is incomplete (it goes to the port as a line).
    answer: Vec<u8>,
    answered: bool,
}

/// The streams running over the port, by request id on the wire.
#[derive(Default)]
pub struct PortStreams {
    channels: BTreeMap<u64, Channel>,
}

impl PortStreams {
    /// Carry stream `id` between the port and `sock` (the helper's peer, made non-blocking).
    pub fn add(&mut self, id: u64, sock: UnixStream) -> std::io::Result<()> {
        sock.set_nonblocking(true)?;
        self.channels.insert(id, Channel { sock, to_helper: Vec::new(), answer: Vec::new(), answered: false });
        Ok(())
    }

    /// Streams running.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.channels.len()
    }

    /// Whether none runs.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.channels.is_empty()
    }

    /// The port's client is gone: drop every stream (each helper sees the end).
    pub fn clear(&mut self) {
        self.channels.clear();
    }

    /// What to poll: each channel for input while the port has room (`port_buffered`
    /// bytes wait in its outbox), for output while bytes wait for its helper.
    pub fn interest(&self, port_buffered: usize) -> Vec<(u64, BorrowedFd<'_>, PollFlags)> {
        self.channels
            .iter()
            .map(|(id, c)| {
                let mut flags = PollFlags::empty();
                if port_buffered < PORT_ROOM {
                    flags |= PollFlags::POLLIN;
                }
                if !c.to_helper.is_empty() {
                    flags |= PollFlags::POLLOUT;
                }
                (*id, c.sock.as_fd(), flags)
            })
            .collect()
    }

    /// A stream line from the port: bytes for a helper, or the client's end.
    pub fn on_port_line(&mut self, line: &PortLine, port: &mut Connection, now: Instant) {
        if line.end {
            self.channels.remove(&line.id);
            return;
        }
        let Some(channel) = self.channels.get_mut(&line.id) else {
            // A stream that is over (or never was): tell the multiplexer.
            let _ = port.send(PortLine::end(line.id).as_bytes(), now);
            return;
        };
        let fits = match line.bytes() {
            Ok(bytes) if channel.to_helper.len() + bytes.len() <= CHANNEL_BUFFER => {
                channel.to_helper.extend(bytes);
                true
            }
            Ok(_) => {
                log::warn!("port stream {}: its helper does not take its input; stream dropped", line.id);
                false
            }
            Err(e) => {
                log::warn!("{e}; stream dropped");
                false
            }
        };
        if fits {
            flush(channel);
        } else {
            self.channels.remove(&line.id);
            let _ = port.send(PortLine::end(line.id).as_bytes(), now);
        }
    }

    /// Channel `id` is ready: write what waits for its helper; move what the helper wrote
    /// to the port (one read, at most [`PORT_CHUNK`] bytes); its end ends the stream.
    pub fn on_ready(&mut self, id: u64, flags: PollFlags, port: &mut Connection, now: Instant) {
        let Some(channel) = self.channels.get_mut(&id) else { return };
        if flags.contains(PollFlags::POLLOUT) {
            flush(channel);
        }
        if !flags.intersects(PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR) || port.output_len() >= PORT_ROOM {
            return;
        }
        let mut buf = vec![0u8; PORT_CHUNK];
        let n = match channel.sock.read(&mut buf) {
            Ok(n) => n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => return,
            Err(_) => 0,
        };
        if n == 0 {
            self.channels.remove(&id);
            let _ = port.send(PortLine::end(id).as_bytes(), now);
            return;
        }
        let mut data = &buf[..n];
        if !channel.answered {
            match data.iter().position(|b| *b == b'\n') {
                Some(end) => {
                    channel.answer.extend_from_slice(&data[..=end]);
                    channel.answered = true;
                    let _ = port.send(&std::mem::take(&mut channel.answer), now);
                    data = &data[end + 1..];
                }
                None if channel.answer.len() + data.len() <= keel_supervisor::control::MAX_LINE => {
                    channel.answer.extend_from_slice(data);
                    return;
                }
                None => {
                    self.channels.remove(&id);
                    let _ = port.send(PortLine::end(id).as_bytes(), now);
                    return;
                }
            }
        }
        for line in PortLine::data(id, data) {
            let _ = port.send(line.as_bytes(), now);
        }
    }
}

/// Write what the helper takes now.
fn flush(channel: &mut Channel) {
    while !channel.to_helper.is_empty() {
        match nix::unistd::write(channel.sock.as_fd(), &channel.to_helper) {
            Ok(n) => {
                channel.to_helper.drain(..n);
            }
            Err(nix::Error::EINTR) => {}
            // Full (EAGAIN) or gone (its end is read next turn).
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connections::{ConnectionId, ControlLimits, Transport};
    use std::io::Write;

    fn port() -> (Connection, UnixStream) {
        let (ours, theirs) = UnixStream::pair().unwrap();
        ours.set_nonblocking(true).unwrap();
        (Connection::new(ConnectionId(1), Transport::Socket(ours), &ControlLimits::default(), Instant::now()), theirs)
    }

    #[test]
    fn bytes_go_both_ways_as_lines_after_the_answer_line() {
        let (mut port, mut host) = port();
        let (pid1_end, mut helper) = UnixStream::pair().unwrap();
        let mut streams = PortStreams::default();
        streams.add(5, pid1_end).unwrap();
        helper.write_all(b"{\"id\":5,\"ok\":true,\"result\":\"stream\"}\nFRAMES").unwrap();
        streams.on_ready(5, PollFlags::POLLIN, &mut port, Instant::now());
        streams.on_port_line(&PortLine::parse(&PortLine::data(5, b"in")[0]).unwrap(), &mut port, Instant::now());
        let mut got = [0u8; 2];
        helper.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"in");
        drop(helper);
        streams.on_ready(5, PollFlags::POLLIN, &mut port, Instant::now());
        assert!(streams.is_empty(), "the helper's end ends the stream");
        drop(port);
        let mut text = String::new();
        host.read_to_string(&mut text).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "{\"id\":5,\"ok\":true,\"result\":\"stream\"}");
        assert_eq!(PortLine::parse(lines[1]).unwrap().bytes().unwrap(), b"FRAMES");
        assert_eq!(lines[2], PortLine::end(5).trim());
    }

    #[test]
    fn a_helper_that_does_not_read_loses_its_stream_not_the_port() {
        let (mut port, _host) = port();
        let (pid1_end, _helper) = UnixStream::pair().unwrap();
        let mut streams = PortStreams::default();
        streams.add(5, pid1_end).unwrap();
        let chunk = vec![b'x'; PORT_CHUNK];
        let started = Instant::now();
        let mut sent = 0;
        while !streams.is_empty() {
            streams.on_port_line(&PortLine::parse(&PortLine::data(5, &chunk)[0]).unwrap(), &mut port, Instant::now());
            sent += chunk.len();
            assert!(sent < 64 << 20, "never dropped");
        }
        assert!(started.elapsed().as_millis() < 1000, "PID 1 never waited");
        // The socket buffer took some, the channel CHANNEL_BUFFER more; then the drop.
        assert!(sent > CHANNEL_BUFFER, "{sent}");
        assert!(!port.is_closed(), "the port stays");
        // Control: a helper that reads keeps its stream through the same amount.
        let (pid1_end, mut helper) = UnixStream::pair().unwrap();
        streams.add(6, pid1_end).unwrap();
        let reader = std::thread::spawn(move || {
            let mut all = Vec::new();
            helper.read_to_end(&mut all).map(|_| all.len())
        });
        for _ in 0..(sent / chunk.len() + 8) {
            streams.on_port_line(&PortLine::parse(&PortLine::data(6, &chunk)[0]).unwrap(), &mut port, Instant::now());
            streams.on_ready(6, PollFlags::POLLOUT, &mut port, Instant::now());
            std::thread::sleep(std::time::Duration::from_millis(2));
            assert_eq!(streams.len(), 1, "a reading helper keeps its stream");
        }
        streams.clear();
        assert!(reader.join().unwrap().unwrap() > sent);
    }
}
