//! Applying a [`WritePlan`] under a root directory: stage everything, commit with
//! renames, fsync the directories, then write the marker last.

use std::collections::BTreeSet;
use std::fmt;
use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use super::accounts::AccountsError;
use super::journal::{self, MarkerInfo};
use super::plan::WritePlan;
use super::safepath::set_owner;
use super::stage::{Op, Stager};

/// What a completed apply wrote (counts of plan entries).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ApplyReport {
    /// Planned files written.
    pub files: usize,
    /// Planned directories made or updated.
    pub directories: usize,
    /// Planned links made.
    pub links: usize,
    /// Planned users added or updated.
    pub users: usize,
}

/// The step an [`ApplyError`] happened in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApplyStep {
    /// Resolving a path under the root (symlinks, parent directories).
    Resolve,
    /// Reading or merging /etc/passwd, /etc/group, /etc/shadow.
    Accounts,
    /// Writing a temp file or symlink, or checking a destination.
    Stage,
    /// Writing the journal before the first rename.
    Journal,
    /// Renaming into place, making directories and links, fsyncing directories.
    Commit,
    /// Writing the marker.
    Marker,
}

impl fmt::Display for ApplyStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ApplyStep::Resolve => "resolve",
            ApplyStep::Accounts => "accounts",
            ApplyStep::Stage => "stage",
            ApplyStep::Journal => "journal",
            ApplyStep::Commit => "commit",
            ApplyStep::Marker => "marker",
        })
    }
}

/// What went wrong at the path of an [`ApplyError`].
#[derive(Debug, thiserror::Error)]
pub enum ApplyErrorKind {
    /// An I/O error from the kernel.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// A file or link exists, differs, and `overwrite` is false.
    #[error("exists and overwrite is false")]
    ExistsNoOverwrite,
    /// An append or metadata-only file targets something that is not a regular file.
    #[error("exists and is not a regular file")]
    NotARegularFile,
    /// A file or link targets an existing directory.
    #[error("is a directory")]
    IsADirectory,
    /// A parent component exists and is not a directory.
    #[error("not a directory")]
    NotADirectory,
    /// A symlink in a parent component leads outside the root.
    #[error("symlink {link} leads outside the root")]
    Escape {
        /// The offending symlink (host path).
        link: PathBuf,
    },
    /// More than 40 symlinks while resolving one path.
    #[error("too many levels of symbolic links")]
    SymlinkLoop,
    /// The planned path is not absolute or names no file.
    #[error("not an absolute path to a file")]
    InvalidPath,
    /// An owner name that is in neither the existing nor the planned /etc/passwd.
    #[error("unknown user {0}")]
    UnknownUser(String),
    /// A group name that is in neither the existing nor the planned /etc/group.
    #[error("unknown group {0}")]
    UnknownGroup(String),
    /// A hard link whose target neither exists nor is planned.
    #[error("hard link target {0} does not exist")]
    LinkTargetMissing(String),
    /// Two entries would be written to one path.
    #[error("written twice by the plan")]
    Duplicate,
    /// The account files could not be produced.
    #[error(transparent)]
    Accounts(#[from] AccountsError),
}

/// A failed apply: the step, the host path and the cause, plus anything the
/// cleanup afterwards could not undo (the cause is never hidden by it).
#[derive(Debug)]
pub struct ApplyError {
    /// Where in the apply it failed.
    pub step: ApplyStep,
    /// The host path concerned.
    pub path: PathBuf,
    /// The cause.
    pub kind: ApplyErrorKind,
    /// Temps or directories that could not be removed afterwards.
    pub cleanup: Vec<(PathBuf, io::Error)>,
}

impl fmt::Display for ApplyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "firstboot {} {}: {}", self.step, self.path.display(), self.kind)?;
        for (p, e) in &self.cleanup {
            write!(f, "; cleanup of {} also failed: {e}", p.display())?;
        }
        Ok(())
    }
}

impl std::error::Error for ApplyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.kind)
    }
}

fn fail(step: ApplyStep, path: &Path, e: io::Error) -> ApplyError {
    ApplyError { step, path: path.to_path_buf(), kind: e.into(), cleanup: Vec::new() }
}

/// Applies `plan` under `root` exactly once: stages every file (temp next to the
/// destination, final mode and owner, fsync), then renames everything into place,
/// makes directories and links, fsyncs the directories, and writes `marker` (a host
/// path, not relative to `root`) last. A failure before the commit leaves nothing
/// changed; an interrupted commit leaves no marker, and applying the same plan again
/// gives the same result. Owner names resolve against the passwd/group after the plan.
pub fn apply(root: &Path, plan: &WritePlan, marker: &Path) -> Result<ApplyReport, ApplyError> {
    apply_with(root, plan, marker, None)
}

/// [`apply`] with a test hook: the `fail_rename`-th rename (1-based, marker included,
/// journal excluded) fails.
pub(super) fn apply_with(root: &Path, plan: &WritePlan, marker: &Path, fail_rename: Option<usize>) -> Result<ApplyReport, ApplyError> {
    let journal = journal::load(marker).map_err(|e| fail(ApplyStep::Journal, &journal::journal_path(marker), e))?;
    let mut stager = Stager::new(root, journal);
    if let Err(mut e) = stager.stage_all(plan) {
        e.cleanup = stager.rollback();
        return Err(e);
    }
    let report =
        ApplyReport { files: plan.files.len(), directories: plan.directories.len(), links: plan.links.len(), users: plan.users.len() };
    let mut renamer = Renamer { count: 0, fail_at: fail_rename };
    let jpath = journal::journal_path(marker);
    let jbytes = journal::encode(&stager.journal);
    if let Err(e) = journal::write_atomic(&jpath, &jbytes, &mut |a, b| fs::rename(a, b)) {
        let mut err = fail(ApplyStep::Journal, &jpath, e);
        err.cleanup = stager.rollback();
        return Err(err);
    }
    commit(&stager.ops, &mut renamer)?;
    let info = MarkerInfo {
        applied_at_unix: SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
        files: report.files,
        directories: report.directories,
        links: report.links,
        users: report.users,
        groups: plan.groups.len(),
    };
    journal::write_atomic(marker, &journal::encode_marker(&info), &mut |a, b| renamer.rename(a, b))
        .map_err(|e| fail(ApplyStep::Marker, marker, e))?;
    if let Err(e) = journal::remove_if_exists(&jpath) {
        log::warn!("firstboot: marker written, but removing {} failed: {e}", jpath.display());
    }
    Ok(report)
}

/// Counts renames so a test can make the n-th one fail.
struct Renamer {
    count: usize,
    fail_at: Option<usize>,
}

impl Renamer {
    fn rename(&mut self, from: &Path, to: &Path) -> io::Result<()> {
        self.count += 1;
        if self.fail_at == Some(self.count) {
            return Err(io::Error::other(format!("injected failure at rename {}", self.count)));
        }
        fs::rename(from, to)
    }
}

/// Runs the commit ops in order, then fsyncs every touched directory. On failure
/// the temps not yet moved are removed (the marker stays absent).
fn commit(ops: &[Op], renamer: &mut Renamer) -> Result<(), ApplyError> {
    let mut dirs = BTreeSet::new();
    for (i, op) in ops.iter().enumerate() {
        let dest = match op {
            Op::Rename { dest, .. } | Op::Dir { dest, .. } | Op::HardLink { dest, .. } => dest,
        };
        if let Err(e) = commit_op(op, renamer) {
            let mut err = fail(ApplyStep::Commit, dest, e);
            err.cleanup = remove_pending(&ops[i..]);
            return Err(err);
        }
        if let Some(parent) = dest.parent() {
            dirs.insert(parent.to_path_buf());
        }
    }
    for d in dirs {
        journal::sync_dir(&d).map_err(|e| fail(ApplyStep::Commit, &d, e))?;
    }
    Ok(())
}

fn commit_op(op: &Op, renamer: &mut Renamer) -> io::Result<()> {
    match op {
        Op::Rename { temp, dest } => renamer.rename(temp, dest),
        Op::Dir { dest, mode, uid, gid, replace } => commit_dir(dest, *mode, *uid, *gid, *replace),
        Op::HardLink { target, temp, dest } => {
            let t = fs::symlink_metadata(target)?;
            if let Ok(d) = fs::symlink_metadata(dest) {
                if d.dev() == t.dev() && d.ino() == t.ino() {
                    return Ok(());
                }
            }
            journal::remove_if_exists(temp)?;
            fs::hard_link(target, temp)?;
            renamer.rename(temp, dest)
        }
    }
}

fn commit_dir(dest: &Path, mode: Option<u32>, uid: Option<u32>, gid: Option<u32>, replace: bool) -> io::Result<()> {
    if replace {
        journal::remove_if_exists(dest)?;
    }
    match fs::create_dir(dest) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e),
        _ => {}
    }
    let m = fs::symlink_metadata(dest)?;
    if !m.is_dir() {
        return Err(io::Error::other("exists and is not a directory"));
    }
    set_owner(dest, uid.unwrap_or(m.uid()), gid.unwrap_or(m.gid()))?;
    let mode = mode.unwrap_or(m.mode() & 0o7777);
    fs::set_permissions(dest, fs::Permissions::from_mode(mode))
}

fn remove_pending(ops: &[Op]) -> Vec<(PathBuf, io::Error)> {
    let mut failed = Vec::new();
    for op in ops {
        if let Op::Rename { temp, .. } | Op::HardLink { temp, .. } = op {
            if let Err(e) = journal::remove_if_exists(temp) {
                failed.push((temp.clone(), e));
            }
        }
    }
    failed
}
