//! The journal and the marker, both written atomically (temp, fsync, rename, fsync dir).
//!
//! The journal (`MARKER.journal`) is written when the commit starts. It remembers,
//! from the first attempt, which paths did not exist and the original contents of
//! files that get appended to, so an attempt interrupted mid-commit can be redone
//! with the same result. It is honoured only while the marker is absent and
//! removed once the marker is written.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// State from before the first attempt (host paths as strings).
#[derive(Debug, Default, Serialize, Deserialize)]
pub(super) struct Journal {
    absent: BTreeSet<String>,
    originals: BTreeMap<String, Vec<u8>>,
}

fn key(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

impl Journal {
    /// Whether `p` did not exist before the first attempt.
    pub(super) fn was_absent(&self, p: &Path) -> bool {
        self.absent.contains(&key(p))
    }

    /// Records that `p` does not exist (kept from an earlier attempt otherwise).
    pub(super) fn note_absent(&mut self, p: &Path) {
        if !self.originals.contains_key(&key(p)) {
            self.absent.insert(key(p));
        }
    }

    /// Original contents of an appended-to file, if recorded by an earlier attempt.
    pub(super) fn original(&self, p: &Path) -> Option<&Vec<u8>> {
        self.originals.get(&key(p))
    }

    /// Records the original contents of `p` unless an earlier attempt did.
    pub(super) fn note_original(&mut self, p: &Path, data: &[u8]) {
        self.originals.entry(key(p)).or_insert_with(|| data.to_vec());
    }
}

/// Where the journal of `marker` lives.
pub(super) fn journal_path(marker: &Path) -> PathBuf {
    let mut name: OsString = marker.file_name().unwrap_or_default().to_os_string();
    name.push(".journal");
    marker.with_file_name(name)
}

/// The journal left by an interrupted attempt; empty when there is none or the
/// marker exists (then the journal is stale).
pub(super) fn load(marker: &Path) -> io::Result<Journal> {
    if fs::symlink_metadata(marker).is_ok() {
        return Ok(Journal::default());
    }
    match fs::read(journal_path(marker)) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Journal::default()),
        Err(e) => Err(e),
    }
}

/// Serialises the journal.
pub(super) fn encode(journal: &Journal) -> Vec<u8> {
    serde_json::to_vec(journal).expect("journal serialises")
}

/// Marker contents: the time and what was applied.
#[derive(Debug, Serialize)]
pub(super) struct MarkerInfo {
    pub(super) applied_at_unix: u64,
    pub(super) files: usize,
    pub(super) directories: usize,
    pub(super) links: usize,
    pub(super) users: usize,
    pub(super) groups: usize,
}

/// Serialises the marker with a trailing newline.
pub(super) fn encode_marker(info: &MarkerInfo) -> Vec<u8> {
    let mut v = serde_json::to_vec(info).expect("marker serialises");
    v.push(b'\n');
    v
}

/// Writes `path` atomically: parent dirs made if missing, temp file next to it,
/// fsync, `rename` (the caller's, so tests can inject failures), fsync of the dir.
pub(super) fn write_atomic(path: &Path, bytes: &[u8], rename: &mut dyn FnMut(&Path, &Path) -> io::Result<()>) -> io::Result<()> {
    let dir = path.parent().ok_or_else(|| io::Error::other("path has no parent"))?;
    fs::create_dir_all(dir)?;
    let mut tmp_name = OsString::from(".keel-firstboot.");
    tmp_name.push(path.file_name().unwrap_or_default());
    tmp_name.push(".tmp");
    let tmp = dir.join(tmp_name);
    remove_if_exists(&tmp)?;
    let result = (|| {
        let mut f = fs::OpenOptions::new().write(true).create_new(true).mode(0o644).open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        rename(&tmp, path)?;
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = remove_if_exists(&tmp);
    }
    result
}

/// Removes a file or symlink, ignoring "not found".
pub(super) fn remove_if_exists(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// fsyncs a directory so the renames in it are durable.
pub(super) fn sync_dir(dir: &Path) -> io::Result<()> {
    fs::File::open(dir)?.sync_all()
}
