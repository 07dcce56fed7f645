//! PID 1's log: every line, timestamped with the time since kernel start, goes to the
//! console (our stderr, which the kernel connected to /dev/console) and to /dev/kmsg.
//!
//! Lines are written with one `write` each, so they do not interleave with the output
//! of other processes on the console.

use crate::clock::since_boot;
use log::{Level, LevelFilter, Log, Metadata, Record};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::sync::Mutex;

/// The logger PID 1 installs; `kmsg` is attached once /dev is mounted.
pub struct KeelLogger {
    kmsg: Mutex<Option<File>>,
    level: Mutex<LevelFilter>,
}

static LOGGER: KeelLogger = KeelLogger { kmsg: Mutex::new(None), level: Mutex::new(LevelFilter::Info) };

/// Install the logger (idempotent). Before /dev is mounted, lines go to the console only.
pub fn install() {
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(LevelFilter::Debug);
    }
}

/// Start copying log lines to /dev/kmsg (after devtmpfs is mounted).
pub fn attach_kmsg() {
    if let Ok(file) = OpenOptions::new().write(true).open("/dev/kmsg") {
        if let Ok(mut slot) = LOGGER.kmsg.lock() {
            *slot = Some(file);
        }
    }
}

/// Show debug lines too (`keel.debug` on the command line).
pub fn set_verbose(verbose: bool) {
    if let Ok(mut level) = LOGGER.level.lock() {
        *level = if verbose { LevelFilter::Debug } else { LevelFilter::Info };
    }
}

/// The console form of a log line: `[   1.234567] keel: message`.
pub fn format_line(seconds: f64, level: Level, message: &str) -> String {
    let tag = match level {
        Level::Error => "error: ",
        Level::Warn => "warning: ",
        _ => "",
    };
    format!("[{seconds:12.6}] keel: {tag}{message}\n")
}

/// The kmsg priority of a level (`<3>` error … `<7>` debug).
fn kmsg_priority(level: Level) -> u8 {
    match level {
        Level::Error => 3,
        Level::Warn => 4,
        Level::Info => 6,
        Level::Debug | Level::Trace => 7,
    }
}

impl Log for KeelLogger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        self.level.lock().map(|l| metadata.level() <= *l).unwrap_or(true)
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let message = record.args().to_string();
        let line = format_line(since_boot().as_secs_f64(), record.level(), &message);
        let _ = std::io::stderr().write_all(line.as_bytes());
        if let Ok(mut kmsg) = self.kmsg.lock() {
            if let Some(file) = kmsg.as_mut() {
                let entry = format!("<{}>keel: {message}\n", kmsg_priority(record.level()));
                let _ = file.write_all(entry.as_bytes());
            }
        }
        crate::syslog::tap::offer_keel(record.level(), &message);
    }

    fn flush(&self) {}
}

/// Print a marker line exactly as given (plus the timestamp prefix), for tests and
/// scripts that wait for it, such as `keel: ready`.
pub fn marker(text: &str) {
    let line = format!("[{:12.6}] {text}\n", since_boot().as_secs_f64());
    let _ = std::io::stderr().write_all(line.as_bytes());
    if let Ok(mut kmsg) = LOGGER.kmsg.lock() {
        if let Some(file) = kmsg.as_mut() {
            let _ = file.write_all(format!("<5>{text}\n").as_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_carry_time_and_severity() {
        assert_eq!(format_line(1.5, Level::Info, "mounted /proc"), "[    1.500000] keel: mounted /proc\n");
        assert_eq!(format_line(0.0, Level::Error, "x"), "[    0.000000] keel: error: x\n");
    }
}
