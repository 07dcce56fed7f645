//! Errors of the logs module. I/O failures name the operation and the file; record
//! parse failures quote the part that did not parse.

use crate::spec::ContainerName;
use std::io;
use std::path::PathBuf;

/// Why writing or reading a container's log failed. PID 1 logs these and carries on:
/// a full or missing /var must never stop a container or the event loop.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    /// A filesystem operation (`mkdir`, `open`, `stat`, `read`, `write`, `rename`,
    /// `remove`) on a log file or the log directory failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// The operation.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// Echoing a container's lines to the console failed (the file may still have them).
    #[error("console echo for container {name}: {source}")]
    Console {
        /// The container whose lines were being echoed.
        name: ContainerName,
        /// The OS error.
        source: io::Error,
    },
}

impl LogError {
    /// Wrap an I/O error with the operation and the path it was about.
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        LogError::Io { op, path: path.into(), source }
    }
}

/// Why a line of a log file is not a record `TIMESTAMP STREAM TEXT`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// The line has no space after the timestamp.
    #[error("record {line:?} has no stream field")]
    MissingStream {
        /// The whole line.
        line: String,
    },
    /// The first field is not `YYYY-MM-DDTHH:MM:SS.mmmZ`.
    #[error("record timestamp {text:?} is not YYYY-MM-DDTHH:MM:SS.mmmZ")]
    Timestamp {
        /// The first field.
        text: String,
    },
    /// The second field is neither `stdout` nor `stderr`.
    #[error("record stream {text:?} is neither stdout nor stderr")]
    Stream {
        /// The second field.
        text: String,
    },
}
