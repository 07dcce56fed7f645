//! The input of the apply step: plain data, converted from the validated config.
//!
//! Paths are absolute paths as the booted system sees them (`/etc/hosts`); the
//! applier interprets them under its root directory.

/// Everything first boot writes, already fetched, decompressed and hash-checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WritePlan {
    /// Regular files (`storage.files`).
    pub files: Vec<PlannedFile>,
    /// Directories (`storage.directories`).
    pub directories: Vec<PlannedDir>,
    /// Symbolic and hard links (`storage.links`).
    pub links: Vec<PlannedLink>,
    /// Users (`passwd.users`), written to /etc/passwd, /etc/shadow and authorized_keys.
    pub users: Vec<PlannedUser>,
    /// Groups (`passwd.groups`), written to /etc/group.
    pub groups: Vec<PlannedGroup>,
}

/// A user or group given by numeric id or by name (names are resolved against the
/// passwd/group files as they are after this plan): the config's own type.
pub use crate::firstboot::config::IdOrName;

/// One regular file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlannedFile {
    /// Absolute path in the booted system.
    pub path: String,
    /// Full contents (already fetched, decompressed and hash-checked), if a source was given.
    pub contents: Option<Vec<u8>>,
    /// Fragments appended, in order, after the contents (or the existing file).
    pub append: Vec<Vec<u8>>,
    /// Permission bits (default 0644; an append-only file keeps its existing mode).
    pub mode: Option<u32>,
    /// Owner (default root; an append-only file keeps its existing owner).
    pub uid: Option<IdOrName>,
    /// Group (default root; an append-only file keeps its existing group).
    pub gid: Option<IdOrName>,
    /// Whether an existing file at the path may be replaced.
    pub overwrite: bool,
}

/// One directory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlannedDir {
    /// Absolute path in the booted system.
    pub path: String,
    /// Permission bits (default 0755).
    pub mode: Option<u32>,
    /// Owner (default root).
    pub uid: Option<IdOrName>,
    /// Group (default root).
    pub gid: Option<IdOrName>,
    /// Whether an existing non-directory at the path may be replaced.
    pub overwrite: bool,
}

/// One symbolic or hard link.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlannedLink {
    /// Absolute path of the link in the booted system.
    pub path: String,
    /// Symlink target (stored as given) or, for a hard link, the absolute path it links to.
    pub target: String,
    /// A hard link rather than a symbolic one.
    pub hard: bool,
    /// Owner of a symbolic link (default root; ignored for hard links).
    pub uid: Option<IdOrName>,
    /// Group of a symbolic link (default root; ignored for hard links).
    pub gid: Option<IdOrName>,
    /// Whether an existing different node at the path may be replaced.
    pub overwrite: bool,
}

/// One user account (created or updated): the config's own type. Defaults for a new
/// user: uid from 1000 up, shell `/bin/sh`, home `/home/NAME`, password locked (`!`).
pub use crate::firstboot::config::User as PlannedUser;

/// One group (gid from 1000 up when absent; a password hash goes into /etc/group):
/// the config's own type.
pub use crate::firstboot::config::Group as PlannedGroup;
