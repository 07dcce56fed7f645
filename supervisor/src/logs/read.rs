//! Reading container logs back for `keelctl logs`: the last N records across the rotated
//! files ([`tail`]) and, for `-f`, the records appended since a position ([`read_from`]),
//! following `NAME.log` across rotations.
//!
//! Lines are returned as stored (one record each, without the `\n`); [`parse_record`]
//! splits one into timestamp, stream and text.
//!
//! Limitations: rotated files are read as `NAME.log.1`, `NAME.log.2`, … up to the first
//! one missing, so a gap left by deleting a middle file by hand hides the older ones.
//! A follower that falls more than one rotation behind skips the files it missed.
//!
//! [`parse_record`]: super::lines::parse_record

use super::error::LogError;
use super::file::{log_path, rotated_path};
use crate::spec::ContainerName;
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};

/// Bytes read per step when [`tail`] walks a file backwards.
const TAIL_BLOCK: u64 = 64 * 1024;
/// Most bytes one [`read_from`] call reads, so a follower starting far behind catches up
/// in bounded steps.
pub const FOLLOW_READ_LIMIT: u64 = 1024 * 1024;

/// Where a follower is in a container's log: which file (by inode, so a rotation is
/// noticed even when the new `NAME.log` has grown past the old offset) and how far.
/// Serializable so it can travel in control-API messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct LogOffset {
    /// Inode of the file `offset` is in; 0 means "whatever `NAME.log` is now".
    pub inode: u64,
    /// Byte offset just after the last line returned.
    pub offset: u64,
}

/// An open log file with the facts the reader needs.
struct Opened {
    file: File,
    path: PathBuf,
    inode: u64,
    len: u64,
}

/// The last `n` records of container `name` (oldest first) across `NAME.log.K` …
/// `NAME.log`, reading each file backwards so a large log costs only what is returned.
/// Also returns the position at the end of `NAME.log`'s last complete line, where a
/// follower continues with [`read_from`]. No log yet: no lines, [`LogOffset::default`].
pub fn tail(dir: &Path, name: &ContainerName, n: usize) -> Result<(Vec<String>, LogOffset), LogError> {
    let mut newest_first: Vec<Vec<String>> = Vec::new();
    let mut seen = Vec::new();
    let mut follow = LogOffset::default();
    let mut want = n;
    for k in 0.. {
        let Some(f) = open_log(&rotated_path(dir, name, k))? else {
            // NAME.log may be missing for a moment during a rotation; a rotated file not.
            if k == 0 {
                continue;
            } else {
                break;
            }
        };
        // A rotation between two opens shows the same file twice; read it once.
        if seen.contains(&f.inode) {
            continue;
        }
        seen.push(f.inode);
        // Only complete lines of the live file; rotated files are finished.
        let end = if k == 0 { last_line_end(&f)? } else { f.len };
        if k == 0 {
            follow = LogOffset { inode: f.inode, offset: end };
        }
        let lines = last_lines(&f, end, want)?;
        want -= lines.len();
        newest_first.push(lines);
        if want == 0 {
            break;
        }
    }
    Ok((newest_first.into_iter().rev().flatten().collect(), follow))
}

/// The complete records appended to `NAME.log` since `from` (at most
/// [`FOLLOW_READ_LIMIT`] bytes' worth per call), and the position to pass next time.
///
/// If `NAME.log` is a different file than `from` names (it was rotated), the rest of the
/// old file is read first from `NAME.log.1`, then the new file from its start. If the
/// same file is shorter than `from` (truncated), it is read again from its start.
/// No log yet: no lines, `from` unchanged.
pub fn read_from(dir: &Path, name: &ContainerName, from: LogOffset) -> Result<(Vec<String>, LogOffset), LogError> {
    let Some(current) = open_log(&log_path(dir, name))? else {
        return Ok((Vec::new(), from));
    };
    if from.inode == 0 || from.inode == current.inode {
        let start = if from.offset > current.len { 0 } else { from.offset };
        return read_forward(&current, start, false);
    }
    let mut lines = Vec::new();
    if let Some(old) = open_log(&rotated_path(dir, name, 1))?.filter(|o| o.inode == from.inode) {
        let (rest, pos) = read_forward(&old, from.offset.min(old.len), true)?;
        if pos.offset < old.len {
            return Ok((rest, pos));
        }
        lines = rest;
    }
    let (new, pos) = read_forward(&current, 0, false)?;
    lines.extend(new);
    Ok((lines, pos))
}

/// Open `path` for reading and stat it; `None` if it does not exist.
fn open_log(path: &Path) -> Result<Option<Opened>, LogError> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(LogError::io("open", path, e)),
    };
    let meta = file.metadata().map_err(|e| LogError::io("stat", path, e))?;
    Ok(Some(Opened { file, path: path.to_path_buf(), inode: meta.ino(), len: meta.len() }))
}

/// Up to `len` bytes of `f` from `start`; fewer if the file ends first.
fn read_range(f: &Opened, start: u64, len: u64) -> Result<Vec<u8>, LogError> {
    let mut buf = vec![0; usize::try_from(len).unwrap_or(usize::MAX)];
    let mut filled = 0;
    while filled < buf.len() {
        match f.file.read_at(&mut buf[filled..], start + filled as u64) {
            Ok(0) => break,
            Ok(got) => filled += got,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(LogError::io("read", &f.path, e)),
        }
    }
    buf.truncate(filled);
    Ok(buf)
}

/// The offset just after the last `\n` of the file (0 if it has none), found backwards.
fn last_line_end(f: &Opened) -> Result<u64, LogError> {
    let mut pos = f.len;
    while pos > 0 {
        let start = pos.saturating_sub(TAIL_BLOCK);
        let block = read_range(f, start, pos - start)?;
        if let Some(i) = block.iter().rposition(|&b| b == b'\n') {
            return Ok(start + i as u64 + 1);
        }
        pos = start;
    }
    Ok(0)
}

/// The last `want` lines of the first `end` bytes of `f`, reading backwards block by
/// block until enough line ends are seen (a trailing `\n` ends the last line, it does
/// not start an empty one).
fn last_lines(f: &Opened, end: u64, want: usize) -> Result<Vec<String>, LogError> {
    let mut blocks = Vec::new();
    let (mut pos, mut newlines) = (end, 0usize);
    while pos > 0 && newlines < want {
        let start = pos.saturating_sub(TAIL_BLOCK);
        let block = read_range(f, start, pos - start)?;
        let trailing = usize::from(pos == end && block.last() == Some(&b'\n'));
        newlines += bytecount(&block, b'\n') - trailing;
        blocks.push(block);
        pos = start;
    }
    let data: Vec<u8> = blocks.into_iter().rev().flatten().collect();
    let mut lines = split_lines(&data);
    Ok(lines.split_off(lines.len().saturating_sub(want)))
}

/// Read forward from `start`: the complete lines found (all lines, the unterminated last
/// one too, if the file is `finished`) and the position after them.
fn read_forward(f: &Opened, start: u64, finished: bool) -> Result<(Vec<String>, LogOffset), LogError> {
    let data = read_range(f, start, f.len.saturating_sub(start).min(FOLLOW_READ_LIMIT))?;
    let at_eof = start + data.len() as u64 >= f.len;
    let used = match data.iter().rposition(|&b| b == b'\n') {
        _ if finished && at_eof => data.len(),
        Some(i) => i + 1,
        // A full read without any line end (not something keel writes): take it all, so
        // the follower still moves on.
        None if !at_eof => data.len(),
        None => 0,
    };
    let lines = split_lines(&data[..used]);
    Ok((lines, LogOffset { inode: f.inode, offset: start + used as u64 }))
}

/// Split `data` at `\n` into lines (lossy UTF-8); a final `\n` ends the last line.
fn split_lines(data: &[u8]) -> Vec<String> {
    if data.is_empty() {
        return Vec::new();
    }
    let body = data.strip_suffix(b"\n").unwrap_or(data);
    body.split(|&b| b == b'\n').map(|l| String::from_utf8_lossy(l).into_owned()).collect()
}

/// How many times `byte` occurs in `data`.
fn bytecount(data: &[u8], byte: u8) -> usize {
    data.iter().filter(|&&b| b == byte).count()
}
