//! Serving the control protocol: the unix socket /run/keel/control.sock (mode 0600)
//! and, when the image asks for it, a virtio-serial port to the machine running QEMU.
//!
//! Everything here is non-blocking: a slow or hostile client can never stall PID 1.
//! Input is framed into lines by [`LineBuffer`]; a line longer than
//! [`MAX_LINE`] is refused and the connection dropped. The connections themselves, with
//! their caps and outboxes, are in [`crate::connections`].

use keel_supervisor::control::MAX_LINE;
use std::fs::File;
use std::io::{ErrorKind, Read};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

/// Splits a byte stream into lines, refusing lines longer than a bound.
#[derive(Debug, Default)]
pub struct LineBuffer {
    pending: Vec<u8>,
}

/// A line longer than [`MAX_LINE`] arrived.
#[derive(Debug, PartialEq, Eq)]
pub struct LineTooLong;

impl LineBuffer {
    /// Bytes of a line begun but not finished.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// Add bytes; return the complete lines they finish (without the newline).
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<String>, LineTooLong> {
        self.pending.extend_from_slice(bytes);
        let mut lines = Vec::new();
        while let Some(end) = self.pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=end).collect();
            let text = String::from_utf8_lossy(&line[..end]).trim().to_string();
            if !text.is_empty() {
                lines.push(text);
            }
        }
        if self.pending.len() > MAX_LINE {
            self.pending.clear();
            return Err(LineTooLong);
        }
        Ok(lines)
    }
}

/// What reading a channel produced.
#[derive(Debug, PartialEq, Eq)]
pub enum ReadOutcome {
    /// These request lines arrived; the channel stays open.
    Lines(Vec<String>),
    /// These lines arrived, then the peer finished sending (answer them, then close).
    LinesThenClosed(Vec<String>),
    /// The peer went away or misbehaved; drop the connection.
    Closed,
}

/// Read what is available from a non-blocking reader into its line buffer, at most
/// `limit` bytes (more stay in the kernel's buffer for a later turn).
pub fn read_lines(reader: &mut impl Read, buffer: &mut LineBuffer, limit: usize) -> ReadOutcome {
    let mut lines = Vec::new();
    let mut chunk = [0u8; 4096];
    let mut left = limit;
    while left > 0 {
        let want = left.min(chunk.len());
        match reader.read(&mut chunk[..want]) {
            Ok(0) => return ReadOutcome::LinesThenClosed(lines),
            Ok(n) => {
                left -= n;
                match buffer.push(&chunk[..n]) {
                    Ok(more) => lines.extend(more),
                    Err(LineTooLong) => return ReadOutcome::Closed,
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => return ReadOutcome::Closed,
        }
    }
    ReadOutcome::Lines(lines)
}

/// Bind the control socket at `path` with mode 0600, replacing a stale one.
pub fn bind_socket(path: &Path) -> std::io::Result<UnixListener> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
        std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o700))?;
    }
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// The virtio-serial control port, when the image asked for one.
pub struct SerialPort {
    /// The device node, e.g. /dev/vport1p1.
    pub path: PathBuf,
    /// The open port (non-blocking).
    pub file: File,
}

impl SerialPort {
    /// Find the port named `name` in sysfs and open it.
    pub fn open(name: &str) -> std::io::Result<SerialPort> {
        let path = find_port(name).ok_or_else(|| {
            std::io::Error::new(ErrorKind::NotFound, format!("no virtio-serial port named {name} (is virtio_console loaded?)"))
        })?;
        let file = std::fs::OpenOptions::new().read(true).write(true).custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC).open(&path)?;
        Ok(SerialPort { path, file })
    }
}

impl AsFd for SerialPort {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

/// /dev node of the virtio-serial port whose sysfs `name` is `name`.
fn find_port(name: &str) -> Option<PathBuf> {
    let entries = std::fs::read_dir("/sys/class/virtio-ports").ok()?;
    entries.flatten().find_map(|entry| {
        let port_name = std::fs::read_to_string(entry.path().join("name")).ok()?;
        (port_name.trim() == name).then(|| PathBuf::from("/dev").join(entry.file_name()))
    })
}

/// Write all of `bytes` to a possibly non-blocking fd, waiting (bounded) when it is full.
/// For forked helpers only (they may wait); PID 1's loop queues replies in an
/// [`crate::connections::Outbox`] instead.
pub fn write_all_fd(fd: BorrowedFd<'_>, mut bytes: &[u8]) -> std::io::Result<()> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    let mut stalls = 0;
    while !bytes.is_empty() {
        match nix::unistd::write(fd, bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(nix::Error::EAGAIN) if stalls < 50 => {
                stalls += 1;
                let mut fds = [PollFd::new(fd, PollFlags::POLLOUT)];
                let _ = poll(&mut fds, PollTimeout::from(100u16));
            }
            Err(nix::Error::EINTR) => {}
            Err(e) => return Err(std::io::Error::from_raw_os_error(e as i32)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_split_across_reads() {
        let mut buffer = LineBuffer::default();
        assert_eq!(buffer.push(b"{\"a\":1}\n{\"b\"").unwrap(), vec!["{\"a\":1}".to_string()]);
        assert_eq!(buffer.push(b":2}\n\n").unwrap(), vec!["{\"b\":2}".to_string()]);
    }

    #[test]
    fn a_read_takes_at_most_its_limit() {
        let mut input: &[u8] = b"{\"a\":1}\n{\"b\":2}\n";
        let mut buffer = LineBuffer::default();
        assert_eq!(read_lines(&mut input, &mut buffer, 9), ReadOutcome::Lines(vec!["{\"a\":1}".to_string()]));
        assert_eq!(read_lines(&mut input, &mut buffer, 100), ReadOutcome::LinesThenClosed(vec!["{\"b\":2}".to_string()]));
    }

    #[test]
    fn endless_line_is_refused() {
        let mut buffer = LineBuffer::default();
        assert_eq!(buffer.push(&vec![b'x'; MAX_LINE + 1]), Err(LineTooLong));
    }

    #[test]
    fn socket_is_private() {
        let dir = std::env::temp_dir().join(format!("keel-sock-{}", std::process::id()));
        let path = dir.join("control.sock");
        let _listener = bind_socket(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
