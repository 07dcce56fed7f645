//! Container logs: what PID 1 does with each container's stdout and stderr, and how
//! `keelctl logs` reads it back.
//!
//! PID 1 reads the pipes (non-blocking) in its event loop and hands the bytes to a
//! [`ContainerLog`]. That splits them into lines ([`LineSplitter`]), appends one record
//! per line to `/var/log/keel/NAME.log` ([`LogFile`], size-rotated into `NAME.log.1` …
//! `NAME.log.KEEP`, sizes per container from the declaration's `[logs]`, [`LogLimits`])
//! and echoes `NAME| line` to the console. A record is
//! `2026-11-29T23:10:25.123Z stdout hello`: UTC timestamp, stream, text.
//! [`tail`] and [`read_from`] read the files back, [`parse_record`] splits a record.
//!
//! The split follows STYLE.md: `lines` and `timestamp` are pure (bytes in, strings
//! out, `now` passed in); `file` and `read` do the I/O, on a directory they are given.
//!
//! Limitations (current state):
//! - Every write errors out on its own (a full disk fails each record); the caller logs
//!   errors once per state change. Records are not fsynced; a crash may lose the last ones.
//! - A line is timestamped when PID 1 reads it, not when the container wrote it.
//! - Lines longer than [`MAX_LINE_BYTES`] are stored as several records.
//! - One writer per container: two `LogFile`s on the same name would rotate each other.
//! - The console echo never waits ([`BoundedConsole`]): lines the console cannot take
//!   are buffered up to [`CONSOLE_BUFFER`], then dropped and counted; the files keep all.
//!   It is also rate-limited ([`EchoBudget`]: [`ECHO_BURST_BYTES`] per [`ECHO_INTERVAL`]
//!   for all containers together, shared fairly: a flooding container cannot take a
//!   quiet one's lines off the console), since an emulated console never fills.

mod console;
mod error;
mod file;
mod follow;
mod limits;
mod lines;
mod read;
mod timestamp;

pub use console::{BoundedConsole, EchoBudget, CONSOLE_BUFFER, ECHO_BURST_BYTES, ECHO_INTERVAL};
pub use error::{LogError, RecordError};
pub use file::{log_path, rotated_path, ContainerLog, LogFile, DEFAULT_DIR};
pub use follow::{follow, FollowError, FALLBACK_INTERVAL};
pub use limits::{LogLimitError, LogLimits, DEFAULT_KEEP, DEFAULT_MAX_BYTES, MAX_FILES, MAX_MAX_BYTES, MIN_MAX_BYTES};
pub use lines::{format_console, format_record, format_record_stamped, parse_record, LineSplitter, Record, Stream, MAX_LINE_BYTES};
pub use read::{read_from, tail, LogOffset, FOLLOW_READ_LIMIT};
pub use timestamp::{format_timestamp, parse_timestamp};

#[cfg(test)]
mod tests;
