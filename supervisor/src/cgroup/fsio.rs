//! File operations on cgroup files, each turning an `io::Error` into a [`CgroupError`]
//! that carries the path and the operation. No cgroup logic lives here.

use super::error::CgroupError;
use std::fs::{self, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::Path;

fn io_error<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> CgroupError + 'a {
    move |source| CgroupError::Io { op, path: path.to_path_buf(), source }
}

fn write_error(path: &Path, data: &str, source: std::io::Error) -> CgroupError {
    CgroupError::Write { path: path.to_path_buf(), data: data.to_string(), source }
}

/// Read a file that must exist.
pub(super) fn read(path: &Path) -> Result<String, CgroupError> {
    fs::read_to_string(path).map_err(io_error("read", path))
}

/// Read a file that may be absent (a controller that is not enabled): `None` if so.
pub(super) fn read_optional(path: &Path) -> Result<Option<String>, CgroupError> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(source) => Err(CgroupError::Io { op: "read", path: path.to_path_buf(), source }),
    }
}

/// Write `data` to an existing file in one write; `Ok(false)` if the file does not exist.
pub(super) fn write_existing(path: &Path, data: &str) -> Result<bool, CgroupError> {
    let mut file = match OpenOptions::new().write(true).open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(false),
        Err(source) => return Err(write_error(path, data, source)),
    };
    file.write_all(data.as_bytes()).map_err(|source| write_error(path, data, source))?;
    Ok(true)
}

/// Write `data` to a file, creating it if it is missing. cgroupfs never lets a file be
/// created, so there a missing file is reported as the original "not found" error;
/// on a plain directory (test fixtures) the file is simply created.
pub(super) fn write(path: &Path, data: &str) -> Result<(), CgroupError> {
    if write_existing(path, data)? {
        return Ok(());
    }
    let not_found = || std::io::Error::from(ErrorKind::NotFound);
    let mut file = OpenOptions::new().write(true).create_new(true).open(path).map_err(|_| write_error(path, data, not_found()))?;
    file.write_all(data.as_bytes()).map_err(|source| write_error(path, data, source))
}

/// Create a directory: `Ok(true)` if created, `Ok(false)` if a directory was already there.
pub(super) fn mkdir(path: &Path) -> Result<bool, CgroupError> {
    match fs::create_dir(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {
            ensure_not_other(path)?;
            Ok(false)
        }
        Err(source) => Err(CgroupError::Io { op: "mkdir", path: path.to_path_buf(), source }),
    }
}

/// Fail if `path` exists and is not a directory (a missing path is fine).
pub(super) fn ensure_not_other(path: &Path) -> Result<(), CgroupError> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => Err(CgroupError::NotADirectory { path: path.to_path_buf() }),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(source) => Err(CgroupError::Io { op: "stat", path: path.to_path_buf(), source }),
    }
}

/// Fail unless `path` is an existing directory.
pub(super) fn ensure_dir(path: &Path) -> Result<(), CgroupError> {
    let meta = fs::metadata(path).map_err(io_error("stat", path))?;
    if meta.is_dir() {
        Ok(())
    } else {
        Err(CgroupError::NotADirectory { path: path.to_path_buf() })
    }
}
