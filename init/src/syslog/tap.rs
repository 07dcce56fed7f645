//! Where log lines enter the syslog queue inside PID 1: keel's logger and the container
//! log sink offer lines here; the event loop pumps the queue into the forwarder's pipe.
//!
//! The queue sits in a static because the logger (a `log` facade static) must reach it
//! from anywhere. PID 1 has one thread, but a line logged while the queue is being pumped
//! would otherwise deadlock on the mutex: offers use `try_lock` and count the line as
//! dropped when the queue is busy. Before [`install`] (no syslog.toml, or before its
//! boot step) offers cost one atomic load.

use super::queue::FrameQueue;
use super::rfc5424::{encode, frame, Message, Severity, FACILITY_DAEMON};
use keel_supervisor::logs::{format_timestamp, Stream};
use std::io;
use std::os::fd::BorrowedFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::SystemTime;

struct Tap {
    queue: FrameQueue,
    hostname: String,
    /// The last `sequenceId` given (RFC 5424 §7.3.1: 1 to 2147483647, then 1 again).
    /// Every offered line takes one, dropped or not, so a receiver sees gaps where lines were lost.
    sequence: u32,
}

static TAP: Mutex<Option<Tap>> = Mutex::new(None);
static ACTIVE: AtomicBool = AtomicBool::new(false);
/// Lines dropped because the queue was busy (a line logged while it was pumped).
static BUSY_DROPS: AtomicU64 = AtomicU64::new(0);

/// Start taking lines: frames name `hostname`; the queue holds `capacity` bytes.
pub fn install(hostname: &str, capacity: usize) {
    if let Ok(mut tap) = TAP.lock() {
        *tap = Some(Tap { queue: FrameQueue::new(capacity), hostname: hostname.to_string(), sequence: 0 });
        ACTIVE.store(true, Ordering::SeqCst);
    }
}

/// Whether lines are being taken.
pub fn active() -> bool {
    ACTIVE.load(Ordering::Relaxed)
}

/// Run `f` on the tap unless it is not installed; `None` also when it is busy (a line
/// logged from inside a pump), which the caller counts as a drop.
fn with<R>(f: impl FnOnce(&mut Tap) -> R) -> Option<R> {
    if !active() {
        return None;
    }
    match TAP.try_lock() {
        Ok(mut guard) => guard.as_mut().map(f),
        Err(_) => {
            BUSY_DROPS.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}

impl Tap {
    fn offer(&mut self, timestamp: &str, app: &str, msgid: &str, severity: Severity, text: &str) {
        self.sequence = if self.sequence >= 2_147_483_647 { 1 } else { self.sequence + 1 };
        let sequence = self.sequence.to_string();
        let sd: &[(&str, &[(&str, &str)])] = &[("meta", &[("sequenceId", &sequence)])];
        let message = Message { facility: FACILITY_DAEMON, severity, timestamp, hostname: &self.hostname, app, msgid, sd, msg: text };
        self.queue.offer(frame(&encode(&message)));
    }
}

/// One of keel's own log lines.
pub fn offer_keel(level: log::Level, text: &str) {
    let severity = match level {
        log::Level::Error => Severity::Error,
        log::Level::Warn => Severity::Warning,
        log::Level::Info => Severity::Informational,
        log::Level::Debug | log::Level::Trace => Severity::Debug,
    };
    with(|tap| tap.offer(&format_timestamp(SystemTime::now()), "keel", "", severity, text));
}

/// Lines container `name` wrote on `stream` (stdout: informational, stderr: error, as
/// Docker's syslog driver has it).
pub fn offer_container<'a>(name: &str, stream: Stream, lines: impl Iterator<Item = &'a str>) {
    let (msgid, severity) = match stream {
        Stream::Stdout => ("stdout", Severity::Informational),
        Stream::Stderr => ("stderr", Severity::Error),
    };
    let timestamp = format_timestamp(SystemTime::now());
    let mut lines = lines;
    let taken = with(|tap| {
        for line in lines.by_ref() {
            tap.offer(&timestamp, name, msgid, severity, line);
        }
    });
    if taken.is_none() && active() {
        BUSY_DROPS.fetch_add(lines.count() as u64, Ordering::Relaxed);
    }
}

/// Write what the pipe `fd` takes now (non-blocking); an error means the reader is gone.
pub fn pump(fd: BorrowedFd<'_>) -> io::Result<()> {
    let result = with(|tap| {
        tap.queue.pump(&mut |bytes| match nix::unistd::write(fd, bytes) {
            Ok(n) => Ok(n),
            Err(e) => Err(io::Error::from_raw_os_error(e as i32)),
        })
    });
    result.unwrap_or(Ok(()))
}

/// A new pipe: start it on a frame boundary.
pub fn restart_stream() {
    with(|tap| tap.queue.restart_stream());
}

/// Whether frames wait to be written.
pub fn has_pending() -> bool {
    with(|tap| !tap.queue.is_empty()).unwrap_or(false)
}

/// (dropped, sent) since [`install`].
pub fn counts() -> (u64, u64) {
    let busy = BUSY_DROPS.load(Ordering::Relaxed);
    with(|tap| (tap.queue.dropped() + busy, tap.queue.sent())).unwrap_or((busy, 0))
}

/// The container and stream of one console echo line (`NAME| text` for stdout, `NAME! text`
/// for stderr, as [`keel_supervisor::logs::format_console`] writes it), without its newline.
pub fn split_console_line<'a>(name: &str, line: &'a str) -> Option<(Stream, &'a str)> {
    let rest = line.strip_prefix(name)?;
    let (stream, text) = match rest.split_at_checked(1)? {
        ("|", text) => (Stream::Stdout, text),
        ("!", text) => (Stream::Stderr, text),
        _ => return None,
    };
    Some((stream, text.strip_prefix(' ').unwrap_or(text)))
}

/// A writer in front of the console echo that also offers each container line to the
/// queue: the container log writes its lines once, in their console form, to it.
pub struct ConsoleTee<'a, W: io::Write> {
    /// The console echo.
    pub console: &'a mut W,
    /// The container whose lines pass.
    pub name: &'a str,
}

impl<W: io::Write> io::Write for ConsoleTee<'_, W> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let text = String::from_utf8_lossy(bytes);
        let lines = text.split_terminator('\n').filter_map(|line| split_console_line(self.name, line));
        let (mut out, mut err) = (Vec::new(), Vec::new());
        for (stream, text) in lines {
            match stream {
                Stream::Stdout => out.push(text),
                Stream::Stderr => err.push(text),
            }
        }
        offer_container(self.name, Stream::Stdout, out.into_iter());
        offer_container(self.name, Stream::Stderr, err.into_iter());
        self.console.write(bytes)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.console.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_supervisor::logs::format_console;
    use keel_supervisor::spec::ContainerName;

    #[test]
    fn console_lines_split_back_into_stream_and_text() {
        let name = ContainerName::new("web").unwrap();
        for (stream, text) in [(Stream::Stdout, "hello | world"), (Stream::Stderr, "! oops"), (Stream::Stdout, "")] {
            let line = format_console(&name, stream, text);
            assert_eq!(split_console_line("web", line.trim_end_matches('\n')), Some((stream, text)));
        }
        assert_eq!(split_console_line("web", "webx| a"), None);
        assert_eq!(split_console_line("web", "other| a"), None);
    }
}
