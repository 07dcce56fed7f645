//! The console echo of container output, which must never hold PID 1.
//!
//! A serial console takes a few kilobytes a second; one chatty container would throttle
//! PID 1's loop to that speed if the echo blocked. [`BoundedConsole`] writes with
//! `O_NONBLOCK`, keeps what the console cannot take yet in a bounded buffer of whole
//! lines, and drops lines when that buffer is full, counting them; once there is room
//! again it says `keel: N console lines dropped (the log files have them)`. The log files
//! keep everything: the console is a best-effort view.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::os::fd::{AsFd, OwnedFd};

/// Bytes of console output kept waiting for a slow console.
pub const CONSOLE_BUFFER: usize = 64 * 1024;

/// A non-blocking writer with a bounded buffer that drops whole lines when full.
pub struct BoundedConsole {
    fd: Option<OwnedFd>,
    pending: VecDeque<u8>,
    capacity: usize,
    dropped: u64,
    /// Part of a line written without its newline, kept until the line is complete.
    partial: Vec<u8>,
}

impl BoundedConsole {
    /// Echo to `fd`, made non-blocking here, keeping at most `capacity` bytes waiting.
    pub fn new(fd: OwnedFd, capacity: usize) -> BoundedConsole {
        let _ = set_nonblocking(&fd);
        BoundedConsole { fd: Some(fd), pending: VecDeque::new(), capacity, dropped: 0, partial: Vec::new() }
    }

    /// /dev/console, or a sink when it cannot be opened.
    pub fn open_console() -> BoundedConsole {
        let fd = std::fs::File::options().write(true).open("/dev/console").ok().map(OwnedFd::from);
        match fd {
            Some(fd) => BoundedConsole::new(fd, CONSOLE_BUFFER),
            None => BoundedConsole { fd: None, pending: VecDeque::new(), capacity: 0, dropped: 0, partial: Vec::new() },
        }
    }

    /// Lines dropped since the last notice was queued.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Bytes waiting for the console.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Queue one complete line, or count it as dropped when there is no room.
    fn queue_line(&mut self, line: &[u8]) {
        if self.dropped > 0 {
            let notice = format!("keel: {} console lines dropped (the log files have them)\n", self.dropped);
            if self.pending.len() + notice.len() + line.len() > self.capacity {
                self.dropped += 1;
                return;
            }
            self.pending.extend(notice.as_bytes());
            self.dropped = 0;
        }
        if self.pending.len() + line.len() > self.capacity {
            self.dropped += 1;
            return;
        }
        self.pending.extend(line);
    }

    /// Write what the console takes now, without waiting.
    pub fn pump(&mut self) {
        let Some(fd) = self.fd.as_ref() else {
            self.pending.clear();
            return;
        };
        while !self.pending.is_empty() {
            let (front, _) = self.pending.as_slices();
            match nix::unistd::write(fd.as_fd(), front) {
                Ok(0) => return,
                Ok(n) => {
                    self.pending.drain(..n);
                }
                Err(nix::Error::EINTR) => {}
                // EAGAIN: full; anything else: the console is gone for now. Either way
                // the lines wait (or are dropped) rather than hold the caller.
                Err(_) => return,
            }
        }
    }
}

fn set_nonblocking(fd: &OwnedFd) -> nix::Result<()> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    let flags = OFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFL)?);
    fcntl(fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK)).map(drop)
}

impl Write for BoundedConsole {
    /// Takes every byte at once: complete lines are queued (or dropped), a trailing part
    /// waits for its newline; then the console gets what it takes without waiting.
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        if self.fd.is_none() {
            return Ok(bytes.len());
        }
        let mut rest = bytes;
        while let Some(end) = rest.iter().position(|b| *b == b'\n') {
            let (line, tail) = rest.split_at(end + 1);
            if self.partial.is_empty() {
                self.queue_line(line);
            } else {
                let mut whole = std::mem::take(&mut self.partial);
                whole.extend_from_slice(line);
                self.queue_line(&whole);
            }
            rest = tail;
        }
        if self.partial.len() + rest.len() <= self.capacity {
            self.partial.extend_from_slice(rest);
        }
        self.pump();
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.pump();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::time::{Duration, Instant};

    /// A pipe standing in for a console that nobody reads: it fills up at 64 KiB.
    fn stalled_console(capacity: usize) -> (BoundedConsole, std::fs::File) {
        let (read, write) = nix::unistd::pipe().unwrap();
        (BoundedConsole::new(write, capacity), std::fs::File::from(read))
    }

    #[test]
    fn a_full_console_drops_lines_and_counts_them_without_waiting() {
        let (mut console, mut reader) = stalled_console(4096);
        let line = format!("{}\n", "x".repeat(99));
        // Control: a plain (blocking) writer on such a console waits.
        let (_held, blocking) = nix::unistd::pipe().unwrap();
        let stuck = std::thread::spawn(move || std::fs::File::from(blocking).write_all(&vec![b'x'; 1 << 20]));
        std::thread::sleep(Duration::from_millis(300));
        assert!(!stuck.is_finished(), "control: a blocking write to a full console returned");
        drop(_held);
        let _ = stuck.join();
        let started = Instant::now();
        for _ in 0..5000 {
            console.write_all(line.as_bytes()).unwrap();
        }
        assert!(started.elapsed() < Duration::from_secs(2), "the writes waited for the console");
        // 64 KiB in the pipe, 4 KiB waiting, the rest dropped and counted.
        assert!(console.dropped() > 4000, "{} dropped", console.dropped());
        assert!(console.pending() <= 4096);
        // The console drains: the next line brings the notice first.
        let mut drained = vec![0u8; 1 << 20];
        let n = reader.read(&mut drained).unwrap();
        assert!(n >= 60_000);
        let dropped = console.dropped();
        console.write_all(b"after\n").unwrap();
        let mut rest = vec![0u8; 1 << 20];
        let n = reader.read(&mut rest).unwrap();
        let text = String::from_utf8_lossy(&rest[..n]);
        assert!(text.contains(&format!("keel: {dropped} console lines dropped")), "{}", &text[text.len().saturating_sub(200)..]);
        assert!(text.ends_with("after\n"));
    }

    #[test]
    fn lines_are_kept_whole() {
        let (mut console, mut reader) = stalled_console(4096);
        console.write_all(b"par").unwrap();
        console.write_all(b"tial\nnext\n").unwrap();
        let mut out = vec![0u8; 100];
        let n = reader.read(&mut out).unwrap();
        assert_eq!(&out[..n], b"partial\nnext\n");
        assert_eq!(console.dropped(), 0);
    }
}
