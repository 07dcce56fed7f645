//! The console echo of container output, which must never hold PID 1.
//!
//! A serial console takes a few kilobytes a second; one chatty container would throttle
//! PID 1's loop to that speed if the echo blocked. [`BoundedConsole`] writes with
//! `O_NONBLOCK`, keeps what the console cannot take yet in a bounded buffer of whole
//! lines, and drops lines when that buffer is full, counting them; once there is room
//! again it says `keel: N console lines dropped (the log files have them)`. The log files
//! keep everything: the console is a best-effort view.
//!
//! A buffer alone is not enough: QEMU's emulated UART (and a virtual console) never
//! reports full, so every byte would be pushed through it, one emulated port write each,
//! at PID 1's expense. An [`EchoBudget`] therefore also limits what is echoed to
//! [`ECHO_BURST_BYTES`] per [`ECHO_INTERVAL`] (journald's RateLimitIntervalSec/Burst, in
//! bytes); lines over the budget are dropped and counted the same way. The budget is
//! shared fairly: each container that echoes has its own share of it (see
//! [`EchoBudget`]), so one container's flood cannot push another's lines off the console.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::io::{self, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

/// Bytes of console output kept waiting for a slow console.
pub const CONSOLE_BUFFER: usize = 64 * 1024;

/// The window of the console echo budget. One second, so that a burst is announced
/// (and echo resumes) within a second of the flood slowing down.
pub const ECHO_INTERVAL: Duration = Duration::from_secs(1);

/// Bytes of container output echoed to the console per [`ECHO_INTERVAL`]: 8 KiB, below
/// what a 115200-baud serial line carries (about 11.5 KB/s), so a real serial console is
/// never the bottleneck and an emulated one costs PID 1 little; still some hundred lines
/// a second, more than a person reads.
pub const ECHO_BURST_BYTES: usize = 8 * 1024;

/// A fixed-window byte budget of `burst` bytes per `interval`, shared fairly by the
/// containers that echo: each gets at most `burst / (n + 1)` per window, where `n`
/// counts the containers that echoed in this window or the one before (the caller
/// included). The one share left over is kept for a container that starts echoing, so
/// a flooding container can never take a quiet one's lines off the console, not even in
/// the window the quiet one first speaks. All together never pass `burst`. Pure; the
/// caller passes `now` and the source.
#[derive(Debug, Clone)]
pub struct EchoBudget {
    interval: Duration,
    burst: usize,
    window: Option<Instant>,
    /// Bytes charged in this window, in all.
    used: usize,
    /// Bytes charged in this window, per source.
    current: BTreeMap<String, usize>,
    /// Sources that echoed in the window before.
    previous: BTreeSet<String>,
}

impl EchoBudget {
    /// A budget of `burst` bytes per `interval`.
    pub fn new(interval: Duration, burst: usize) -> EchoBudget {
        EchoBudget { interval, burst, window: None, used: 0, current: BTreeMap::new(), previous: BTreeSet::new() }
    }

    /// Whether a line of `len` bytes from `source` may be echoed at `now`; if so, it is
    /// charged. A line longer than the source's whole share goes through when it is the
    /// source's first of the window and the window has room (it would never fit otherwise).
    pub fn admit(&mut self, source: &str, len: usize, now: Instant) -> bool {
        let expired = self.window.is_none_or(|start| now.saturating_duration_since(start) >= self.interval);
        if expired {
            // A window with no line at all in between forgets the earlier sources.
            let skipped = self.window.is_some_and(|start| now.saturating_duration_since(start) >= self.interval * 2);
            self.previous = if skipped { BTreeSet::new() } else { std::mem::take(&mut self.current).into_keys().collect() };
            self.current.clear();
            self.window = Some(now);
            self.used = 0;
        }
        let share = self.share(source);
        let mine = self.current.get(source).copied().unwrap_or(0);
        let fits_share = mine == 0 || mine.saturating_add(len) <= share;
        let fits_window = self.used == 0 || self.used.saturating_add(len) <= self.burst;
        if !(fits_share && fits_window) {
            // Still counted as echoing: its share stays reserved for the next window.
            self.current.entry(source.to_string()).or_insert(0);
            return false;
        }
        self.used = self.used.saturating_add(len);
        *self.current.entry(source.to_string()).or_insert(0) += len;
        true
    }

    /// The bytes `source` may echo in this window: `burst / (n + 1)`, with `n` the
    /// sources of this window and the one before, `source` included.
    fn share(&self, source: &str) -> usize {
        let mut known: BTreeSet<&str> = self.previous.iter().map(String::as_str).collect();
        known.extend(self.current.keys().map(String::as_str));
        known.insert(source);
        self.burst / (known.len() + 1)
    }
}

impl Default for EchoBudget {
    /// [`ECHO_BURST_BYTES`] per [`ECHO_INTERVAL`].
    fn default() -> EchoBudget {
        EchoBudget::new(ECHO_INTERVAL, ECHO_BURST_BYTES)
    }
}

/// A non-blocking writer with a bounded buffer that drops whole lines when full.
pub struct BoundedConsole {
    fd: Option<OwnedFd>,
    pending: VecDeque<u8>,
    capacity: usize,
    dropped: u64,
    /// Lines dropped since it was made (the notices reset `dropped`, not this).
    dropped_total: u64,
    /// Part of a line written without its newline, kept until the line is complete.
    partial: Vec<u8>,
    budget: EchoBudget,
    /// Whose lines are being written (the echo budget's share), see [`BoundedConsole::set_source`].
    source: String,
}

impl BoundedConsole {
    /// Echo to `fd`, made non-blocking here, keeping at most `capacity` bytes waiting,
    /// within the default [`EchoBudget`].
    pub fn new(fd: OwnedFd, capacity: usize) -> BoundedConsole {
        BoundedConsole::with_budget(fd, capacity, EchoBudget::default())
    }

    /// Echo to `fd` like [`BoundedConsole::new`], within `budget`.
    pub fn with_budget(fd: OwnedFd, capacity: usize, budget: EchoBudget) -> BoundedConsole {
        let _ = set_nonblocking(&fd);
        BoundedConsole {
            fd: Some(fd),
            pending: VecDeque::new(),
            capacity,
            dropped: 0,
            dropped_total: 0,
            partial: Vec::new(),
            budget,
            source: String::new(),
        }
    }

    /// /dev/console within `budget`, or a sink when it cannot be opened.
    pub fn open_console(budget: EchoBudget) -> BoundedConsole {
        let fd = std::fs::File::options().write(true).open("/dev/console").ok().map(OwnedFd::from);
        match fd {
            Some(fd) => BoundedConsole::with_budget(fd, CONSOLE_BUFFER, budget),
            None => BoundedConsole {
                fd: None,
                pending: VecDeque::new(),
                capacity: 0,
                dropped: 0,
                dropped_total: 0,
                partial: Vec::new(),
                budget,
                source: String::new(),
            },
        }
    }

    /// The lines written from now on are `source`'s (a container name): each source
    /// gets its own share of the echo budget. A source's unterminated line is kept
    /// apart only while the source stays the same (PID 1 writes whole lines).
    pub fn set_source(&mut self, source: &str) {
        if self.source != source {
            self.source.clear();
            self.source.push_str(source);
        }
    }

    /// Lines dropped since the last notice was queued.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Lines dropped since this console was made, announced or not.
    pub fn dropped_total(&self) -> u64 {
        self.dropped_total
    }

    /// Bytes waiting for the console.
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Queue one complete line, or count it as dropped when it is over the budget at
    /// `now` or there is no room. Dropped lines are announced before the next line queued.
    fn queue_line(&mut self, line: &[u8], now: Instant) {
        let notice = (self.dropped > 0).then(|| dropped_notice(self.dropped));
        let notice_len = notice.as_ref().map_or(0, String::len);
        if self.pending.len() + notice_len + line.len() > self.capacity || !self.budget.admit(&self.source, line.len(), now) {
            self.dropped += 1;
            self.dropped_total += 1;
            return;
        }
        if let Some(notice) = notice {
            self.pending.extend(notice.as_bytes());
            self.dropped = 0;
        }
        self.pending.extend(line);
    }

    /// Queue the notice of lines dropped so far, if any and if it fits, without waiting
    /// for a next line (say, when a container ends its flood by exiting).
    pub fn announce_dropped(&mut self) {
        if self.dropped == 0 || self.fd.is_none() {
            return;
        }
        let notice = dropped_notice(self.dropped);
        if self.pending.len() + notice.len() <= self.capacity {
            self.pending.extend(notice.as_bytes());
            self.dropped = 0;
        }
        self.pump();
    }

    /// Take `bytes` as written at `now`: complete lines are queued (or dropped), a
    /// trailing part waits for its newline; then the console gets what it takes without
    /// waiting. [`Write::write`] calls this with the current time.
    pub fn write_at(&mut self, bytes: &[u8], now: Instant) {
        if self.fd.is_none() {
            return;
        }
        let mut rest = bytes;
        while let Some(end) = rest.iter().position(|b| *b == b'\n') {
            let (line, tail) = rest.split_at(end + 1);
            if self.partial.is_empty() {
                self.queue_line(line, now);
            } else {
                let mut whole = std::mem::take(&mut self.partial);
                whole.extend_from_slice(line);
                self.queue_line(&whole, now);
            }
            rest = tail;
        }
        if self.partial.len() + rest.len() <= self.capacity {
            self.partial.extend_from_slice(rest);
        }
        self.pump();
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

/// The console line that announces `count` dropped lines.
fn dropped_notice(count: u64) -> String {
    format!("keel: {count} console lines dropped (the log files have them)\n")
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
        self.write_at(bytes, Instant::now());
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
    /// (No echo budget: these tests are about the buffer.)
    fn stalled_console(capacity: usize) -> (BoundedConsole, std::fs::File) {
        let (read, write) = nix::unistd::pipe().unwrap();
        (BoundedConsole::with_budget(write, capacity, EchoBudget::new(ECHO_INTERVAL, usize::MAX)), std::fs::File::from(read))
    }

    /// A console that takes everything at once (as QEMU's emulated UART does), with
    /// `budget`; the pipe's reader is returned to see what was echoed.
    fn fast_console(budget: EchoBudget) -> (BoundedConsole, std::fs::File) {
        let (read, write) = nix::unistd::pipe().unwrap();
        nix::fcntl::fcntl(&write, nix::fcntl::FcntlArg::F_SETPIPE_SZ(1 << 20)).unwrap();
        (BoundedConsole::with_budget(write, CONSOLE_BUFFER, budget), std::fs::File::from(read))
    }

    fn drain(reader: &mut std::fs::File) -> String {
        let mut out = vec![0u8; 1 << 20];
        let n = reader.read(&mut out).unwrap();
        String::from_utf8_lossy(&out[..n]).into_owned()
    }

    /// The sum of the counts in every drop notice of `text`.
    fn announced(text: &str) -> u64 {
        text.lines()
            .filter_map(|l| l.strip_prefix("keel: ")?.strip_suffix(" console lines dropped (the log files have them)"))
            .map(|n| n.parse::<u64>().unwrap())
            .sum()
    }

    #[test]
    fn the_budget_admits_its_share_per_window() {
        let t0 = Instant::now();
        // Alone, a source gets half of the burst: the other half is kept for a newcomer.
        let mut budget = EchoBudget::new(Duration::from_secs(1), 100);
        assert!(budget.admit("a", 30, t0));
        assert!(budget.admit("a", 20, t0 + Duration::from_millis(500)));
        assert!(!budget.admit("a", 1, t0 + Duration::from_millis(999)), "over its share");
        // A new window starts with the next line at or after the interval.
        assert!(budget.admit("a", 50, t0 + Duration::from_secs(1)));
        assert!(!budget.admit("a", 1, t0 + Duration::from_millis(1500)));
        // A line larger than the share goes through alone as the first of a window.
        assert!(budget.admit("a", 90, t0 + Duration::from_secs(3)));
        assert!(!budget.admit("a", 1, t0 + Duration::from_secs(3)));
    }

    #[test]
    fn a_flooding_source_cannot_take_another_ones_share() {
        let t0 = Instant::now();
        let mut budget = EchoBudget::new(Duration::from_secs(1), 900);
        // The flood takes all it may (450: half, alone) before b says anything.
        let flooded = (0..1000).filter(|_| budget.admit("flood", 10, t0)).count();
        assert_eq!(flooded, 45);
        // b speaks in the same window: its share (900 / 3 = 300) is there.
        assert_eq!((0..10).filter(|_| budget.admit("b", 10, t0 + Duration::from_millis(10))).count(), 10);
        // Next window: both known, 300 each, whatever the order.
        let t1 = t0 + Duration::from_secs(1);
        assert_eq!((0..1000).filter(|_| budget.admit("flood", 10, t1)).count(), 30);
        assert_eq!((0..10).filter(|_| budget.admit("b", 10, t1)).count(), 10);
        // Never more than the burst in one window, however many sources.
        let t2 = t0 + Duration::from_secs(2);
        let total: usize = (0..20).map(|i| (0..1000).filter(|_| budget.admit(&format!("s{i}"), 10, t2)).count() * 10).sum();
        assert!(total <= 900, "{total}");
        // Negative control: one shared source (the old, unfair budget) leaves b nothing.
        let mut shared = EchoBudget::new(Duration::from_secs(1), 900);
        let _ = (0..1000).filter(|_| shared.admit("", 10, t0)).count();
        assert_eq!((0..10).filter(|_| shared.admit("", 10, t0 + Duration::from_millis(10))).count(), 0);
    }

    #[test]
    fn a_quiet_container_keeps_its_lines_on_the_console_during_a_flood() {
        let t0 = Instant::now();
        let (mut console, mut reader) = fast_console(EchoBudget::new(Duration::from_secs(1), 8192));
        for second in 0..3u64 {
            let at = t0 + Duration::from_secs(second);
            console.set_source("flood");
            for n in 0..5000 {
                console.write_at(format!("flood| flood {n}\n").as_bytes(), at);
            }
            console.set_source("calm");
            console.write_at(format!("calm| tick {second}\n").as_bytes(), at + Duration::from_millis(500));
        }
        let text = drain(&mut reader);
        for second in 0..3 {
            assert!(text.contains(&format!("calm| tick {second}\n")), "calm's line {second} is missing");
        }
        assert!(announced(&text) > 0);
    }

    #[test]
    fn lines_over_the_budget_are_dropped_counted_and_announced() {
        let t0 = Instant::now();
        let line = "flood| 0123456789\n"; // 18 bytes
                                          // 360 bytes, half for the one source: 10 lines.
        let (mut console, mut reader) = fast_console(EchoBudget::new(Duration::from_secs(1), 360));
        for _ in 0..1000 {
            console.write_at(line.as_bytes(), t0 + Duration::from_millis(10));
        }
        let first = drain(&mut reader);
        assert_eq!(first.matches("flood| ").count(), 10, "{first}");
        assert_eq!(console.dropped(), 990);
        assert_eq!(console.dropped_total(), 990);
        // The next window: the notice, then the line.
        console.write_at(b"after\n", t0 + Duration::from_millis(1010));
        let second = drain(&mut reader);
        assert_eq!(second, "keel: 990 console lines dropped (the log files have them)\nafter\n");
        assert_eq!(console.dropped(), 0);
        assert_eq!(console.dropped_total(), 990, "the total survives the notice");
    }

    #[test]
    fn without_a_budget_a_fast_console_takes_every_line() {
        // Control for the test above: a console that never fills drops nothing by itself.
        let t0 = Instant::now();
        let line = "flood| 0123456789\n";
        let (mut console, mut reader) = fast_console(EchoBudget::new(Duration::from_secs(1), usize::MAX));
        for _ in 0..1000 {
            console.write_at(line.as_bytes(), t0);
        }
        assert_eq!(drain(&mut reader).matches("flood| ").count(), 1000);
        assert_eq!(console.dropped(), 0);
    }

    #[test]
    fn drops_are_announced_without_a_next_line() {
        let t0 = Instant::now();
        let (mut console, mut reader) = fast_console(EchoBudget::new(Duration::from_secs(1), 10));
        console.write_at(b"one line\ntwo\nthree\n", t0);
        console.announce_dropped();
        let text = drain(&mut reader);
        assert_eq!(text, "one line\nkeel: 2 console lines dropped (the log files have them)\n");
        assert_eq!(announced(&text), 2);
        console.announce_dropped();
        assert_eq!(console.pending(), 0, "nothing more to announce");
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
