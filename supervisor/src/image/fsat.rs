//! File operations confined to a directory: every path is resolved by the kernel with
//! `openat2(RESOLVE_BENEATH)`, so no `..` and no symlink (absolute or relative) can make
//! an unpacked layer write outside its root. Escapes come back as [`Escape`] errors.

use rustix::fs::{self as rfs, AtFlags, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;
use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

/// Marker text in the errors of paths that would resolve outside the root.
pub const ESCAPE: &str = "resolves outside the layer root";

fn errno(e: Errno) -> io::Error {
    io::Error::from_raw_os_error(e.raw_os_error())
}

/// Open `rel` (a directory) beneath `root` without leaving it.
pub fn open_dir(root: &OwnedFd, rel: &Path) -> io::Result<OwnedFd> {
    let path: &Path = if rel.as_os_str().is_empty() { Path::new(".") } else { rel };
    rfs::openat2(
        root,
        path,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS,
    )
    .map_err(|e| if e == Errno::XDEV { io::Error::other(format!("{}: {ESCAPE}", rel.display())) } else { errno(e) })
}

/// Open a directory for reading entries (same confinement).
pub fn open_dir_read(root: &OwnedFd, rel: &Path) -> io::Result<OwnedFd> {
    let path: &Path = if rel.as_os_str().is_empty() { Path::new(".") } else { rel };
    rfs::openat2(
        root,
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC | OFlags::NOFOLLOW,
        Mode::empty(),
        ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS,
    )
    .map_err(|e| if e == Errno::XDEV { io::Error::other(format!("{}: {ESCAPE}", rel.display())) } else { errno(e) })
}

/// The parent directory of `rel` (created as needed, by `make_dir` for each missing
/// part) and the last name.
pub fn parent_of<'a>(
    root: &OwnedFd,
    rel: &'a Path,
    make_dir: &mut dyn FnMut(&OwnedFd, &Path) -> io::Result<()>,
) -> io::Result<(OwnedFd, &'a OsStr)> {
    let name = rel.file_name().ok_or_else(|| io::Error::other(format!("{:?}: no name", rel)))?;
    let parent = rel.parent().unwrap_or(Path::new(""));
    match open_dir(root, parent) {
        Ok(fd) => Ok((fd, name)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let mut sofar = PathBuf::new();
            for part in parent.iter() {
                sofar.push(part);
                if let Err(e) = open_dir(root, &sofar) {
                    if e.kind() != io::ErrorKind::NotFound {
                        return Err(e);
                    }
                    make_dir(root, &sofar)?;
                }
            }
            Ok((open_dir(root, parent)?, name))
        }
        Err(e) => Err(e),
    }
}

/// lstat of `name` in `dir`, None when absent.
pub fn lstat(dir: &OwnedFd, name: &OsStr) -> io::Result<Option<rfs::Stat>> {
    match rfs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => Ok(Some(st)),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(errno(e)),
    }
}

/// Is this stat a directory?
pub fn is_dir(st: &rfs::Stat) -> bool {
    rfs::FileType::from_raw_mode(st.st_mode) == rfs::FileType::Directory
}

/// Remove `name` from `dir`, recursively for a directory; absent is fine.
pub fn remove_all(dir: &OwnedFd, name: &OsStr) -> io::Result<()> {
    let Some(st) = lstat(dir, name)? else { return Ok(()) };
    if is_dir(&st) {
        let sub = rfs::openat(dir, name, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty())
            .map_err(errno)?;
        for child in children(&sub)? {
            remove_all(&sub, &child)?;
        }
        rfs::unlinkat(dir, name, AtFlags::REMOVEDIR).map_err(errno)
    } else {
        rfs::unlinkat(dir, name, AtFlags::empty()).map_err(errno)
    }
}

/// The names in a directory (without `.` and `..`).
pub fn children(dir: &impl AsFd) -> io::Result<Vec<std::ffi::OsString>> {
    let mut names = Vec::new();
    for entry in rfs::Dir::read_from(dir).map_err(errno)? {
        let entry = entry.map_err(errno)?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            names.push(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(name).to_os_string());
        }
    }
    Ok(names)
}

/// Make `name` in `dir` a directory: keep an existing one, replace anything else.
pub fn ensure_dir(dir: &OwnedFd, name: &OsStr, mode: u32) -> io::Result<()> {
    match lstat(dir, name)? {
        Some(st) if is_dir(&st) => Ok(()),
        Some(_) => {
            remove_all(dir, name)?;
            rfs::mkdirat(dir, name, Mode::from_raw_mode(mode)).map_err(errno)
        }
        None => rfs::mkdirat(dir, name, Mode::from_raw_mode(mode)).map_err(errno),
    }
}

/// Convert a rustix error for callers outside this module.
pub fn io_err(e: Errno) -> io::Error {
    errno(e)
}
