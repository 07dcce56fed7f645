//! Unpacking one layer tar into a directory, confined to it (see [`super::fsat`]).
//!
//! Two targets: [`Target::Flat`] applies the layer on top of what the directory already
//! holds (whiteouts delete, opaque markers empty the directory of lower content: what
//! `keel image unpack` does), and [`Target::Overlay`] makes the directory one overlayfs
//! lower layer on its own (whiteouts become 0:0 character devices, opaque markers the
//! `trusted.overlay.opaque` xattr: what the store does, so each layer is unpacked once).

use super::entry::{classify, relative, Change};
use super::fsat::{self, ESCAPE};
use super::limits::{LimitExceeded, Meter, Resource, Scope, Usage, ENTRY_METADATA_MAX};
use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags, Timespec, Timestamps};
use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::ffi::OsStr;
use std::io::{self, Read};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::rc::Rc;

pub mod xattr;

/// Where the layer goes.
#[derive(Debug, Clone, Copy)]
pub enum Target<'a> {
    /// Onto the lower layers already in the directory.
    Flat,
    /// Into an empty directory that becomes an overlay lower layer; `lowers` are the
    /// unpacked layers below it, top first (for hard links to lower files).
    Overlay { lowers: &'a [PathBuf] },
}

/// What is allowed and kept.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Create character and block device entries (refused by default).
    pub allow_devices: bool,
    /// Keep owners from the tar (root only).
    pub same_owner: bool,
}

/// A refused or failed entry.
#[derive(Debug, thiserror::Error)]
#[error("layer entry {entry}: {message}")]
pub struct LayerError {
    /// The entry's name in the tar (or `(tar)` for a stream error).
    pub entry: String,
    /// Why.
    pub message: String,
}

/// Why a layer was not unpacked.
#[derive(Debug, thiserror::Error)]
pub enum ExtractError {
    /// An entry was refused or could not be written.
    #[error(transparent)]
    Entry(#[from] LayerError),
    /// A limit on image content was reached (at `entry`, or `(tar)` in the stream).
    #[error("layer entry {entry}: {limit}")]
    Limit { entry: String, limit: LimitExceeded },
}

/// Counts one import against its limits; the unpacker and the reader that counts the
/// decompressed stream share it (see [`super::limits::MeteredReader`]).
pub type MeterRef<'m> = &'m RefCell<Meter>;

/// Unpack the tar stream `reader` into `root`, counting entries, inodes and content
/// bytes on `meter` (the caller counts the decompressed stream on the same meter).
/// Returns the layer's counts.
pub fn extract(reader: impl Read, root: &Path, target: Target, options: Options, meter: MeterRef<'_>) -> Result<Usage, ExtractError> {
    let root_fd = rfs::open(root, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| LayerError { entry: root.display().to_string(), message: format!("open: {e}") })?;
    let guard = Rc::new(GuardState::default());
    let mut unpacker = Unpacker { root: root_fd, target, options, written: HashSet::new(), meter, guard: guard.clone() };
    let mut archive = tar::Archive::new(MetadataGuard { inner: reader, state: guard.clone() });
    let failed = |entry: String, message: String| -> ExtractError {
        match meter.borrow().exceeded().or(guard.tripped.get()) {
            Some(limit) => ExtractError::Limit { entry, limit },
            None => ExtractError::Entry(LayerError { entry, message }),
        }
    };
    let tar_err = |e: io::Error| failed("(tar)".into(), e.to_string());
    for entry in archive.entries().map_err(tar_err)? {
        let mut entry = entry.map_err(tar_err)?;
        guard.since_entry.set(0);
        let name = entry.path().map_err(tar_err)?.into_owned();
        unpacker.apply(&mut entry).map_err(|message| failed(name.display().to_string(), message))?;
    }
    Ok(meter.borrow().layer())
}

/// What [`MetadataGuard`] shares with the unpacker.
#[derive(Debug, Default)]
struct GuardState {
    /// Bytes read since the last entry was handed out, outside file content.
    since_entry: Cell<u64>,
    /// Set while the unpacker copies a file's content (counted as content instead).
    in_content: Cell<bool>,
    /// The cap, once reached.
    tripped: Cell<Option<LimitExceeded>>,
}

/// Caps what the tar reader consumes on its own between two entries at
/// [`ENTRY_METADATA_MAX`]: it reads GNU long names and PAX headers whole into memory,
/// and skips the data of entries nobody reads.
struct MetadataGuard<R> {
    inner: R,
    state: Rc<GuardState>,
}

impl<R: Read> Read for MetadataGuard<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if !self.state.in_content.get() {
            let value = self.state.since_entry.get() + n as u64;
            self.state.since_entry.set(value);
            if value > ENTRY_METADATA_MAX {
                let hit = LimitExceeded { scope: Scope::Layer, resource: Resource::EntryMetadata, limit: ENTRY_METADATA_MAX, value };
                self.state.tripped.set(Some(hit));
                return Err(io::Error::other(hit));
            }
        }
        Ok(n)
    }
}

struct Unpacker<'a> {
    root: OwnedFd,
    target: Target<'a>,
    options: Options,
    /// Paths this layer put (an opaque marker keeps them, whatever the entry order).
    written: HashSet<PathBuf>,
    meter: MeterRef<'a>,
    guard: Rc<GuardState>,
}

fn io(e: impl std::fmt::Display) -> String {
    e.to_string()
}

impl Unpacker<'_> {
    fn apply<R: Read>(&mut self, entry: &mut tar::Entry<R>) -> Result<(), String> {
        self.count(Resource::Entries, 1)?;
        let change = classify(&entry.path().map_err(io)?)?;
        match change {
            Change::Whiteout(path) => self.whiteout(&path),
            Change::Opaque(dir) => self.opaque(&dir),
            Change::Put(path) if path.as_os_str().is_empty() => Ok(()),
            Change::Put(path) => {
                self.put(&path, entry)?;
                // Only a flat unpack needs them (for opaque markers); a store layer keeps
                // no per-entry memory.
                if matches!(self.target, Target::Flat) {
                    self.written.insert(path);
                }
                Ok(())
            }
        }
    }

    fn count(&self, resource: Resource, amount: u64) -> Result<(), String> {
        self.meter.borrow_mut().add(resource, amount).map_err(|e| e.to_string())
    }

    fn parent<'p>(&self, rel: &'p Path) -> Result<(OwnedFd, &'p OsStr), String> {
        let lowers: Vec<PathBuf> = match self.target {
            Target::Overlay { lowers } => lowers.to_vec(),
            Target::Flat => Vec::new(),
        };
        // Directories a layer does not list are inodes too (a deep path makes many).
        let mut make = |root: &OwnedFd, dir: &Path| {
            self.meter.borrow_mut().add(Resource::Inodes, 1).map_err(io::Error::other)?;
            make_missing_dir(root, dir, &lowers)
        };
        fsat::parent_of(&self.root, rel, &mut make).map_err(io)
    }

    fn whiteout(&mut self, path: &Path) -> Result<(), String> {
        match self.target {
            // Nothing to delete when the parent is not there (and nothing is created).
            Target::Flat => match fsat::open_dir(&self.root, path.parent().unwrap_or(Path::new(""))) {
                Ok(dir) => fsat::remove_all(&dir, path.file_name().unwrap_or_default()).map_err(io),
                Err(e) if e.to_string().contains(ESCAPE) => Err(e.to_string()),
                Err(_) => Ok(()),
            },
            Target::Overlay { .. } => {
                let (dir, name) = self.parent(path)?;
                fsat::remove_all(&dir, name).map_err(io)?;
                self.count(Resource::Inodes, 1)?;
                rfs::mknodat(&dir, name, FileType::CharacterDevice, Mode::empty(), rfs::makedev(0, 0))
                    .map_err(|e| format!("overlay whiteout (needs root): {e}"))
            }
        }
    }

    fn opaque(&mut self, dir_rel: &Path) -> Result<(), String> {
        match self.target {
            Target::Flat => {
                let dir = match fsat::open_dir_read(&self.root, dir_rel) {
                    Ok(dir) => dir,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
                    Err(e) => return Err(e.to_string()),
                };
                self.hide_lower(&dir, dir_rel)
            }
            Target::Overlay { .. } => {
                if !dir_rel.as_os_str().is_empty() {
                    let (parent, name) = self.parent(dir_rel)?;
                    if fsat::lstat(&parent, name).map_err(io)?.is_none() {
                        self.count(Resource::Inodes, 1)?;
                        make_missing_dir(&self.root, dir_rel, &[]).map_err(io)?;
                    }
                }
                let dir = fsat::open_dir_read(&self.root, dir_rel).map_err(io)?;
                rfs::fsetxattr(&dir, "trusted.overlay.opaque", b"y", rfs::XattrFlags::empty())
                    .map_err(|e| format!("set trusted.overlay.opaque (needs root): {e}"))?;
                // For overlays mounted with userxattr (user namespaces); not every fs has user xattrs.
                let _ = rfs::fsetxattr(&dir, "user.overlay.opaque", b"y", rfs::XattrFlags::empty());
                Ok(())
            }
        }
    }

    /// Remove everything under `dir` that this layer did not put.
    fn hide_lower(&self, dir: &OwnedFd, dir_rel: &Path) -> Result<(), String> {
        for name in fsat::children(dir).map_err(io)? {
            let rel = dir_rel.join(&name);
            if !self.written.contains(&rel) {
                fsat::remove_all(dir, &name).map_err(io)?;
            } else if fsat::lstat(dir, &name).map_err(io)?.is_some_and(|st| fsat::is_dir(&st)) {
                let sub = fsat::open_dir_read(&self.root, &rel).map_err(io)?;
                self.hide_lower(&sub, &rel)?;
            }
        }
        Ok(())
    }

    fn put<R: Read>(&mut self, rel: &Path, entry: &mut tar::Entry<R>) -> Result<(), String> {
        let header = entry.header().clone();
        let kind = header.entry_type();
        let mode = header.mode().map_err(io)? & 0o7777;
        let (dir, name) = self.parent(rel)?;
        if kind.is_dir() {
            if fsat::lstat(&dir, name).map_err(io)?.is_none_or(|st| !fsat::is_dir(&st)) {
                self.count(Resource::Inodes, 1)?;
            }
            fsat::ensure_dir(&dir, name, 0o700).map_err(io)?;
        } else {
            fsat::remove_all(&dir, name).map_err(io)?;
            if kind != tar::EntryType::Link {
                self.count(Resource::Inodes, 1)?;
            }
        }
        match kind {
            tar::EntryType::Directory => {}
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                // The declared size (a sparse file's full size: it is written out with
                // its holes as zeros) is counted before the first byte is written.
                self.count(Resource::Bytes, entry.size())?;
                let file = rfs::openat(
                    &dir,
                    name,
                    OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o600),
                )
                .map_err(io)?;
                let mut out = std::fs::File::from(file);
                self.guard.in_content.set(true);
                let copied = io::copy(entry, &mut out);
                self.guard.in_content.set(false);
                copied.map_err(io)?;
            }
            tar::EntryType::Symlink => {
                let target = entry.link_name().map_err(io)?.ok_or("symlink without a target")?;
                rfs::symlinkat(target.as_ref(), &dir, name).map_err(io)?;
            }
            tar::EntryType::Link => return self.hard_link(&dir, name, entry),
            tar::EntryType::Fifo => rfs::mknodat(&dir, name, FileType::Fifo, Mode::from_raw_mode(mode), 0).map_err(io)?,
            tar::EntryType::Char | tar::EntryType::Block => {
                if !self.options.allow_devices {
                    return Err("device nodes are refused in image layers".into());
                }
                let dev = rfs::makedev(header.device_major().map_err(io)?.unwrap_or(0), header.device_minor().map_err(io)?.unwrap_or(0));
                let ft = if kind == tar::EntryType::Char { FileType::CharacterDevice } else { FileType::BlockDevice };
                rfs::mknodat(&dir, name, ft, Mode::from_raw_mode(mode), dev).map_err(io)?;
            }
            other => return Err(format!("unsupported tar entry type {other:?}")),
        }
        self.set_metadata(&dir, name, &header, entry, kind == tar::EntryType::Symlink)
    }

    fn hard_link<R: Read>(&self, dir: &OwnedFd, name: &OsStr, entry: &mut tar::Entry<R>) -> Result<(), String> {
        let target = entry.link_name().map_err(io)?.ok_or("hard link without a target")?;
        let target = relative(&target)?;
        let (tdir, tname) = self.parent(&target)?;
        if fsat::lstat(&tdir, tname).map_err(io)?.is_none() {
            let Target::Overlay { lowers } = self.target else {
                return Err(format!("hard link to {}, which no layer so far has", target.display()));
            };
            copy_up(lowers, &target, &tdir, tname, &mut |size| {
                self.count(Resource::Inodes, 1)?;
                self.count(Resource::Bytes, size)
            })?;
        }
        rfs::linkat(&tdir, tname, dir, name, AtFlags::empty()).map_err(|e| format!("hard link to {}: {e}", target.display()))
    }

    fn set_metadata<R: Read>(
        &self,
        dir: &OwnedFd,
        name: &OsStr,
        header: &tar::Header,
        entry: &mut tar::Entry<R>,
        symlink: bool,
    ) -> Result<(), String> {
        if self.options.same_owner {
            let uid = rfs::Uid::from_raw(header.uid().map_err(io)? as u32);
            let gid = rfs::Gid::from_raw(header.gid().map_err(io)? as u32);
            rfs::chownat(dir, name, Some(uid), Some(gid), AtFlags::SYMLINK_NOFOLLOW).map_err(|e| format!("chown: {e}"))?;
        }
        if !symlink {
            let mode = header.mode().map_err(io)? & 0o7777;
            rfs::chmodat(dir, name, Mode::from_raw_mode(mode), AtFlags::empty()).map_err(|e| format!("chmod: {e}"))?;
            apply_xattrs(dir, name, entry);
        }
        let mtime = Timespec { tv_sec: header.mtime().unwrap_or(0) as i64, tv_nsec: 0 };
        let times = Timestamps { last_access: mtime, last_modification: mtime };
        rfs::utimensat(dir, name, &times, AtFlags::SYMLINK_NOFOLLOW).map_err(|e| format!("set mtime: {e}"))
    }
}

/// Extended attributes from PAX `SCHILY.xattr.*` records, filtered by [`xattr::decide`]
/// (no `trusted.*`, `security.capability` only well-formed); best effort, as
/// `tar --xattrs` does: a filesystem without them is no error.
fn apply_xattrs<R: Read>(dir: &OwnedFd, name: &OsStr, entry: &mut tar::Entry<R>) {
    let Ok(Some(exts)) = entry.pax_extensions() else { return };
    let pairs: Vec<(String, Vec<u8>)> = exts
        .filter_map(Result::ok)
        .filter_map(|e| Some((e.key().ok()?.strip_prefix("SCHILY.xattr.")?.to_string(), e.value_bytes().to_vec())))
        .collect();
    if pairs.is_empty() {
        return;
    }
    let Ok(fd) = rfs::openat(dir, name, OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK, Mode::empty()) else {
        return;
    };
    for (key, value) in pairs {
        let value = match xattr::decide(&key, &value) {
            xattr::Decision::Keep(value) => value,
            xattr::Decision::Drop(why) => {
                log::warn!("layer entry {name:?}: xattr {key} dropped: {why}");
                continue;
            }
        };
        if let Err(e) = rfs::fsetxattr(&fd, key.as_str(), &value, rfs::XattrFlags::empty()) {
            log::debug!("xattr {key} on {name:?}: {e}");
        }
    }
}

/// Create a directory the layer did not list: with the mode and owner the same path has
/// in the layers below (so the merged view keeps them), else 0755 root.
fn make_missing_dir(root: &OwnedFd, rel: &Path, lowers: &[PathBuf]) -> io::Result<()> {
    let (mode, owner) = lowers
        .iter()
        .find_map(|lower| lower_dir_stat(lower, rel))
        .map(|st| (st.st_mode & 0o7777, Some((st.st_uid, st.st_gid))))
        .unwrap_or((0o755, None));
    let parent = fsat::open_dir(root, rel.parent().unwrap_or(Path::new("")))?;
    let name = rel.file_name().unwrap_or_default();
    rfs::mkdirat(&parent, name, Mode::from_raw_mode(mode)).map_err(fsat::io_err)?;
    rfs::chmodat(&parent, name, Mode::from_raw_mode(mode), AtFlags::empty()).map_err(fsat::io_err)?;
    if let Some((uid, gid)) = owner {
        let _ = rfs::chownat(&parent, name, Some(rfs::Uid::from_raw(uid)), Some(rfs::Gid::from_raw(gid)), AtFlags::SYMLINK_NOFOLLOW);
    }
    Ok(())
}

/// The stat of directory `rel` in the unpacked layer `lower`, resolved inside it.
fn lower_dir_stat(lower: &Path, rel: &Path) -> Option<rfs::Stat> {
    let root = rfs::open(lower, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty()).ok()?;
    let parent = fsat::open_dir(&root, rel.parent().unwrap_or(Path::new(""))).ok()?;
    fsat::lstat(&parent, rel.file_name()?).ok()?.filter(fsat::is_dir)
}

/// A hard link in an upper layer to a file of a lower one: copy the file into this
/// layer first (overlayfs would do the same copy-up), then link to the copy.
/// `count(size)` is called before the copy is made.
fn copy_up(
    lowers: &[PathBuf],
    target: &Path,
    tdir: &OwnedFd,
    tname: &OsStr,
    count: &mut dyn FnMut(u64) -> Result<(), String>,
) -> Result<(), String> {
    use std::os::unix::fs::MetadataExt;
    for lower in lowers {
        let lower_fd = rfs::open(lower, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty()).map_err(io)?;
        let Ok(ldir) = fsat::open_dir(&lower_fd, target.parent().unwrap_or(Path::new(""))) else { continue };
        let Some(st) = fsat::lstat(&ldir, tname).map_err(io)? else { continue };
        if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
            break;
        }
        let src = rfs::openat(&ldir, tname, OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty()).map_err(io)?;
        let mut src = std::fs::File::from(src);
        let meta = src.metadata().map_err(io)?;
        count(meta.len())?;
        let dst = rfs::openat(
            tdir,
            tname,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map_err(io)?;
        io::copy(&mut src, &mut std::fs::File::from(dst)).map_err(io)?;
        let _ = rfs::chownat(
            tdir,
            tname,
            Some(rfs::Uid::from_raw(meta.uid())),
            Some(rfs::Gid::from_raw(meta.gid())),
            AtFlags::SYMLINK_NOFOLLOW,
        );
        rfs::chmodat(tdir, tname, Mode::from_raw_mode(meta.mode() & 0o7777), AtFlags::empty()).map_err(io)?;
        let mtime = Timespec { tv_sec: meta.mtime(), tv_nsec: meta.mtime_nsec() };
        let times = Timestamps { last_access: mtime, last_modification: mtime };
        rfs::utimensat(tdir, tname, &times, AtFlags::SYMLINK_NOFOLLOW).map_err(io)?;
        return Ok(());
    }
    Err(format!("hard link to {}, which no layer so far has", target.display()))
}

#[cfg(test)]
pub(crate) mod tests;
