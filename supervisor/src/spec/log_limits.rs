//! The declaration's `[logs]` table into [`LogLimits`]: sizes parsed without overflow,
//! then checked against the caps in [`crate::logs`], each problem under its own key.

use super::raw::RawLogs;
use super::units::parse_bytes;
use super::validate::Report;
use crate::logs::{LogLimits, DEFAULT_KEEP, DEFAULT_MAX_BYTES};

/// `[logs]` checked whole; `None` (with every problem reported) when a value is refused.
pub(super) fn log_limits(raw: &RawLogs, r: &mut Report) -> Option<LogLimits> {
    let size = match raw.max_size.as_deref() {
        None => Some(DEFAULT_MAX_BYTES),
        Some(text) => r.check("logs.max_size", parse_bytes(text)),
    };
    let files = raw.max_files.unwrap_or(i64::from(DEFAULT_KEEP) + 1);
    // Check each value alone first, so that each bad one is named under its own key.
    let size_ok = size.and_then(|size| r.check("logs.max_size", LogLimits::new(size, 1).map(|_| size)));
    let files_ok = r.check("logs.max_files", LogLimits::new(DEFAULT_MAX_BYTES, files).map(|_| files));
    LogLimits::new(size_ok?, files_ok?).ok()
}
