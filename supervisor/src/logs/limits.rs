//! How much of a container's output its log files keep: the size at which `NAME.log`
//! rotates and how many files (the live one and the rotated ones) are kept, set per
//! container by the declaration's `[logs]` table.
//!
//! [`LogLimits`] can only hold checked values, so the writer never meets a size too
//! small for one record or a file count that would fill /var with a single container.

use super::lines::MAX_LINE_BYTES;

/// Default rotation size of `NAME.log`: 10 MiB.
pub const DEFAULT_MAX_BYTES: u64 = 10 * 1024 * 1024;
/// Default number of rotated files (`NAME.log.1` … `NAME.log.3`) kept besides `NAME.log`.
pub const DEFAULT_KEEP: u32 = 3;
/// The smallest rotation size a declaration may set: 64 KiB, a few of the longest
/// records ([`MAX_LINE_BYTES`] of text) per file, so that rotation keeps whole lines.
pub const MIN_MAX_BYTES: u64 = 64 * 1024;
/// The largest rotation size a declaration may set: 1 GiB per file.
pub const MAX_MAX_BYTES: u64 = 1024 * 1024 * 1024;
/// The most files (the live one included) a declaration may keep: with
/// [`MAX_MAX_BYTES`], 32 GiB for one container, already more than most /var disks.
pub const MAX_FILES: u32 = 32;

// A record of the longest line must fit a file of the smallest size.
const _: () = assert!(MIN_MAX_BYTES > 2 * MAX_LINE_BYTES as u64);

/// Why a `[logs]` value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogLimitError {
    /// `max_size` below [`MIN_MAX_BYTES`].
    #[error("{0} bytes is too small for a log file (at least 64 KiB)")]
    SizeTooSmall(u64),
    /// `max_size` above [`MAX_MAX_BYTES`].
    #[error("{0} bytes is too large for a log file (at most 1 GiB)")]
    SizeTooLarge(u64),
    /// `max_files` outside `1..=MAX_FILES`.
    #[error("{0}: the number of log files must be from 1 to {MAX_FILES}")]
    FileCount(i64),
}

/// A checked pair: `NAME.log` rotates before it would pass `max_bytes`, and `files`
/// files are kept in all (`NAME.log` and `files - 1` rotated ones), so a container's
/// logs take at most about `files × max_bytes` of /var.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogLimits {
    max_bytes: u64,
    files: u32,
}

impl LogLimits {
    /// Check `max_bytes` and `files` against [`MIN_MAX_BYTES`]..=[`MAX_MAX_BYTES`] and
    /// 1..=[`MAX_FILES`]. (`files` is signed so that a negative TOML integer is this
    /// error, naming its value, rather than a type error.)
    pub fn new(max_bytes: u64, files: i64) -> Result<LogLimits, LogLimitError> {
        if max_bytes < MIN_MAX_BYTES {
            return Err(LogLimitError::SizeTooSmall(max_bytes));
        }
        if max_bytes > MAX_MAX_BYTES {
            return Err(LogLimitError::SizeTooLarge(max_bytes));
        }
        let files = u32::try_from(files).ok().filter(|f| (1..=MAX_FILES).contains(f)).ok_or(LogLimitError::FileCount(files))?;
        Ok(LogLimits { max_bytes, files })
    }

    /// The size at which `NAME.log` rotates.
    pub fn max_bytes(&self) -> u64 {
        self.max_bytes
    }

    /// Files kept in all, `NAME.log` included.
    pub fn files(&self) -> u32 {
        self.files
    }

    /// Rotated files kept besides `NAME.log` (what [`super::LogFile`] calls `keep`).
    pub fn keep(&self) -> u32 {
        self.files - 1
    }

    /// The most /var the container's logs take (bounded: at most 32 GiB).
    pub fn total_bytes(&self) -> u64 {
        self.max_bytes * u64::from(self.files)
    }
}

impl Default for LogLimits {
    /// [`DEFAULT_MAX_BYTES`], [`DEFAULT_KEEP`] rotated files besides the live one.
    fn default() -> LogLimits {
        LogLimits { max_bytes: DEFAULT_MAX_BYTES, files: DEFAULT_KEEP + 1 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_checked() {
        let limits = LogLimits::new(64 << 20, 5).unwrap();
        assert_eq!((limits.max_bytes(), limits.files(), limits.keep(), limits.total_bytes()), (64 << 20, 5, 4, 320 << 20));
        assert_eq!(LogLimits::new(MIN_MAX_BYTES - 1, 2), Err(LogLimitError::SizeTooSmall(MIN_MAX_BYTES - 1)));
        assert_eq!(LogLimits::new(MAX_MAX_BYTES + 1, 2), Err(LogLimitError::SizeTooLarge(MAX_MAX_BYTES + 1)));
        assert_eq!(LogLimits::new(u64::MAX, 2), Err(LogLimitError::SizeTooLarge(u64::MAX)));
        for files in [0, -1, i64::from(MAX_FILES) + 1, i64::MAX, i64::MIN, i64::from(u32::MAX) + 1] {
            assert_eq!(LogLimits::new(1 << 20, files), Err(LogLimitError::FileCount(files)), "{files}");
        }
        assert!(LogLimits::new(MIN_MAX_BYTES, 1).is_ok());
        let largest = LogLimits::new(MAX_MAX_BYTES, i64::from(MAX_FILES)).unwrap();
        assert_eq!(largest.total_bytes(), 32 << 30);
        assert_eq!(LogLimits::default().total_bytes(), 40 << 20);
        assert_eq!(LogLimits::default().keep(), DEFAULT_KEEP);
    }
}
