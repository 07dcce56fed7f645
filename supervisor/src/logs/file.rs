//! Writing container logs: [`LogFile`] appends records to `DIR/NAME.log` and rotates it
//! by size; [`ContainerLog`] ties a container's two pipes, the file and the console
//! together for PID 1's event loop.

use super::error::LogError;
use super::lines::{format_console, format_record_stamped, LineSplitter, Stream};
use crate::spec::ContainerName;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

/// Where PID 1 keeps container logs.
pub const DEFAULT_DIR: &str = "/var/log/keel";
/// Mode of new log files: the owner writes, the group (an operator) reads.
const FILE_MODE: u32 = 0o640;
/// Mode of a log directory keel creates.
const DIR_MODE: u32 = 0o750;

/// `DIR/NAME.log`, the file being written.
pub fn log_path(dir: &Path, name: &ContainerName) -> PathBuf {
    dir.join(format!("{name}.log"))
}

/// `DIR/NAME.log.K`, the K-th newest rotated file (`K` ≥ 1); `K = 0` is [`log_path`].
pub fn rotated_path(dir: &Path, name: &ContainerName, k: u32) -> PathBuf {
    match k {
        0 => log_path(dir, name),
        _ => dir.join(format!("{name}.log.{k}")),
    }
}

/// An append-only, size-rotated log file for one container.
///
/// Rotation renames `NAME.log` → `NAME.log.1` → … → `NAME.log.KEEP` and drops what was
/// `NAME.log.KEEP`, so disk use stays near `(KEEP + 1) × max_bytes` per container and a
/// reader sees whole files only. Writes never panic: every failure is returned.
#[derive(Debug)]
pub struct LogFile {
    dir: PathBuf,
    name: ContainerName,
    file: File,
    size: u64,
    max_bytes: u64,
    keep: u32,
}

impl LogFile {
    /// Open (or create, mode 0640) `dir/NAME.log` for appending, creating `dir` (0750) if
    /// needed. The file rotates before a record would take it past `max_bytes`; `keep`
    /// rotated files are kept (`0`: the old contents are simply dropped).
    pub fn open(dir: &Path, name: &ContainerName, max_bytes: u64, keep: u32) -> Result<LogFile, LogError> {
        fs::DirBuilder::new().recursive(true).mode(DIR_MODE).create(dir).map_err(|e| LogError::io("mkdir", dir, e))?;
        let path = log_path(dir, name);
        let file = open_append(&path)?;
        let size = file.metadata().map_err(|e| LogError::io("stat", &path, e))?.len();
        Ok(LogFile { dir: dir.to_path_buf(), name: name.clone(), file, size, max_bytes, keep })
    }

    /// Rotate at `max_bytes` and keep `keep` rotated files from the next write on (a
    /// declaration changed while its log was open). Files beyond the new `keep` are left
    /// as they are: they go at the next rotations that reach them.
    pub fn set_limits(&mut self, max_bytes: u64, keep: u32) {
        self.max_bytes = max_bytes;
        self.keep = keep;
    }

    /// The path being written, `DIR/NAME.log`.
    pub fn path(&self) -> PathBuf {
        log_path(&self.dir, &self.name)
    }

    /// The size of `NAME.log` as far as this writer knows.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Append `records` in as few writes as rotation allows: one syscall per batch, not
    /// per line (a flooding container would otherwise cost PID 1 a syscall a line).
    pub fn write_records(&mut self, records: &[String]) -> Result<(), LogError> {
        let mut first_error = None;
        let mut batch = String::new();
        for record in records {
            // A batch only ever holds what fits before the bound (or one record alone):
            // write_record then rotates on a record boundary, as record by record would.
            let total = self.size.saturating_add(batch.len() as u64).saturating_add(record.len() as u64);
            if !batch.is_empty() && total > self.max_bytes {
                if let Err(e) = self.write_record(&batch) {
                    first_error.get_or_insert(e);
                }
                batch.clear();
            }
            batch.push_str(record);
        }
        if !batch.is_empty() {
            if let Err(e) = self.write_record(&batch) {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Append one record (normally from [`format_record`]; or several, already joined,
    /// that fit before the rotation bound), rotating first if it would take the file past
    /// `max_bytes`. A record larger than `max_bytes` still goes into a file of its own
    /// rather than being lost.
    pub fn write_record(&mut self, record: &str) -> Result<(), LogError> {
        let len = record.len() as u64;
        if self.size > 0 && self.size.saturating_add(len) > self.max_bytes {
            self.rotate()?;
        }
        match self.file.write_all(record.as_bytes()) {
            Ok(()) => {
                self.size += len;
                Ok(())
            }
            Err(e) => {
                // A short write (ENOSPC) may have appended part of the record.
                self.size = self.file.metadata().map_or(self.size, |m| m.len());
                Err(LogError::io("write", self.path(), e))
            }
        }
    }

    /// Shift the rotated files up by one, move `NAME.log` to `NAME.log.1`, start a new
    /// `NAME.log`. Missing files (gaps) are skipped. If a step fails, the record that
    /// asked for the rotation is not written (the size bound wins over completeness) and
    /// the next write retries the rotation from wherever the files are now.
    fn rotate(&mut self) -> Result<(), LogError> {
        if self.keep == 0 {
            remove_if_present(&self.path())?;
        } else {
            remove_if_present(&rotated_path(&self.dir, &self.name, self.keep))?;
            for k in (0..self.keep).rev() {
                let from = rotated_path(&self.dir, &self.name, k);
                rename_if_present(&from, &rotated_path(&self.dir, &self.name, k + 1))?;
            }
        }
        self.file = open_append(&self.path())?;
        self.size = 0;
        Ok(())
    }
}

/// Open `path` for appending, creating it with [`FILE_MODE`]. (std sets `O_CLOEXEC`, so
/// containers forked by PID 1 do not inherit it.)
fn open_append(path: &Path) -> Result<File, LogError> {
    OpenOptions::new().append(true).create(true).mode(FILE_MODE).open(path).map_err(|e| LogError::io("open", path, e))
}

/// `rename(from, to)`, where a missing `from` is not an error.
fn rename_if_present(from: &Path, to: &Path) -> Result<(), LogError> {
    match fs::rename(from, to) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(LogError::io("rename", from, e)),
        _ => Ok(()),
    }
}

/// `unlink(path)`, where a missing file is not an error.
fn remove_if_present(path: &Path) -> Result<(), LogError> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(LogError::io("remove", path, e)),
        _ => Ok(()),
    }
}

/// Everything PID 1 keeps for one running container's output: a [`LineSplitter`] per
/// pipe, the [`LogFile`] (absent when it could not be opened: the console still gets the
/// lines) and the name used on the console.
///
/// The console sink is passed to each call rather than stored, so all containers can
/// share PID 1's one console handle; pass `&mut std::io::sink()` to skip the echo.
#[derive(Debug)]
pub struct ContainerLog {
    name: ContainerName,
    stdout: LineSplitter,
    stderr: LineSplitter,
    file: Option<LogFile>,
}

impl ContainerLog {
    /// Logging for container `name` into `file` (`None`: console only).
    pub fn new(name: ContainerName, file: Option<LogFile>) -> ContainerLog {
        ContainerLog { name, stdout: LineSplitter::default(), stderr: LineSplitter::default(), file }
    }

    /// The container this log belongs to.
    pub fn name(&self) -> &ContainerName {
        &self.name
    }

    /// The log file, if one is open.
    pub fn file(&self) -> Option<&LogFile> {
        self.file.as_ref()
    }

    /// Apply `limits` to the open log file (see [`LogFile::set_limits`]).
    pub fn set_limits(&mut self, limits: super::LogLimits) {
        if let Some(file) = self.file.as_mut() {
            file.set_limits(limits.max_bytes(), limits.keep());
        }
    }

    /// Take bytes just read from `stream`'s pipe at time `now`: every line they complete
    /// is written to the file and echoed to `console`. All lines are attempted even after
    /// a failure; the first error is returned. A read of 0 bytes (EOF) is a no-op: call
    /// [`ContainerLog::end_stream`] for that.
    pub fn feed(&mut self, stream: Stream, bytes: &[u8], now: SystemTime, console: &mut dyn Write) -> Result<(), LogError> {
        let lines = self.splitter(stream).push(bytes);
        self.emit(stream, &lines, now, console)
    }

    /// `stream`'s pipe reached end of file: write its unterminated last line, if any.
    pub fn end_stream(&mut self, stream: Stream, now: SystemTime, console: &mut dyn Write) -> Result<(), LogError> {
        let rest: Vec<String> = self.splitter(stream).flush().into_iter().collect();
        self.emit(stream, &rest, now, console)
    }

    /// The container is gone: write both pipes' unterminated last lines (stdout first).
    pub fn finish(&mut self, now: SystemTime, console: &mut dyn Write) -> Result<(), LogError> {
        let out = self.end_stream(Stream::Stdout, now, console);
        let err = self.end_stream(Stream::Stderr, now, console);
        out.and(err)
    }

    /// The splitter of `stream`'s pipe.
    fn splitter(&mut self, stream: Stream) -> &mut LineSplitter {
        match stream {
            Stream::Stdout => &mut self.stdout,
            Stream::Stderr => &mut self.stderr,
        }
    }

    /// Write `lines` to the file in batches (rotation still happens on record
    /// boundaries), then echo them to the console in one write.
    fn emit(&mut self, stream: Stream, lines: &[String], now: SystemTime, console: &mut dyn Write) -> Result<(), LogError> {
        if lines.is_empty() {
            return Ok(());
        }
        let mut first_error = None;
        if let Some(file) = self.file.as_mut() {
            // One timestamp for the whole read, formatted once.
            let stamp = super::timestamp::format_timestamp(now);
            let records: Vec<String> = lines.iter().map(|line| format_record_stamped(&stamp, stream, line)).collect();
            if let Err(e) = file.write_records(&records) {
                first_error.get_or_insert(e);
            }
        }
        let echo: String = lines.iter().map(|l| format_console(&self.name, stream, l)).collect();
        if let Err(source) = console.write_all(echo.as_bytes()).and_then(|()| console.flush()) {
            first_error.get_or_insert(LogError::Console { name: self.name.clone(), source });
        }
        first_error.map_or(Ok(()), Err)
    }
}
