//! Staging: every file and symlink is written to a temp next to its destination,
//! with its final mode and owner, and fsynced; directories and hard links are
//! checked and queued. Nothing at a destination path changes here; on error,
//! [`Stager::rollback`] removes the temps and the parent directories it made.

use std::collections::BTreeSet;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::accounts::{self, AccountFiles, AccountUser};
use super::journal::{remove_if_exists, Journal};
use super::plan::{IdOrName, PlannedDir, PlannedFile, PlannedLink, WritePlan};
use super::safepath::{resolve, set_owner};
use super::write::{ApplyError, ApplyErrorKind as K, ApplyStep};

/// One commit action, in order.
pub(super) enum Op {
    /// Move a staged file or symlink into place.
    Rename { temp: PathBuf, dest: PathBuf },
    /// Make sure a directory exists with this mode and owner (`None`: keep or default).
    Dir { dest: PathBuf, mode: Option<u32>, uid: Option<u32>, gid: Option<u32>, replace: bool },
    /// Hard-link `target` at `temp`, then move it into place.
    HardLink { target: PathBuf, temp: PathBuf, dest: PathBuf },
}

/// Staging state: what was written so far and what the commit must do.
pub(super) struct Stager<'a> {
    root: &'a Path,
    pub(super) journal: Journal,
    pub(super) ops: Vec<Op>,
    temps: Vec<PathBuf>,
    created: Vec<PathBuf>,
    dests: BTreeSet<PathBuf>,
    passwd: String,
    group: String,
}

fn err(step: ApplyStep, path: &Path, kind: impl Into<K>) -> ApplyError {
    ApplyError { step, path: path.to_path_buf(), kind: kind.into(), cleanup: Vec::new() }
}

fn stage_err((path, kind): (PathBuf, K)) -> ApplyError {
    err(ApplyStep::Resolve, &path, kind)
}

/// The temp name used for `dest`: `.keel-firstboot.NAME.tmp` in the same directory.
pub(super) fn temp_for(dest: &Path) -> PathBuf {
    let mut name = std::ffi::OsString::from(".keel-firstboot.");
    name.push(dest.file_name().unwrap_or_default());
    name.push(".tmp");
    dest.with_file_name(name)
}

impl<'a> Stager<'a> {
    pub(super) fn new(root: &'a Path, journal: Journal) -> Self {
        Stager {
            root,
            journal,
            ops: Vec::new(),
            temps: Vec::new(),
            created: Vec::new(),
            dests: BTreeSet::new(),
            passwd: String::new(),
            group: String::new(),
        }
    }

    /// Stages the whole plan: accounts, home directories, files, directories, links.
    pub(super) fn stage_all(&mut self, plan: &WritePlan) -> Result<(), ApplyError> {
        let users = self.stage_accounts(plan)?;
        for (user, planned) in users.iter().zip(&plan.users) {
            self.stage_home(user, &planned.ssh_authorized_keys)?;
        }
        plan.files.iter().try_for_each(|f| self.stage_file(f))?;
        plan.directories.iter().try_for_each(|d| self.stage_dir(d))?;
        plan.links.iter().try_for_each(|l| self.stage_link(l))
    }

    /// Removes every temp and every directory staging made; returns what failed.
    pub(super) fn rollback(&mut self) -> Vec<(PathBuf, io::Error)> {
        let mut failed = Vec::new();
        for t in self.temps.drain(..) {
            if let Err(e) = remove_if_exists(&t) {
                failed.push((t, e));
            }
        }
        for d in self.created.drain(..).rev() {
            if let Err(e) = fs::remove_dir(&d) {
                failed.push((d, e));
            }
        }
        failed
    }

    fn dest(&mut self, path: &str) -> Result<PathBuf, ApplyError> {
        let before = self.created.len();
        let dest = resolve(self.root, path, Some(&mut self.created)).map_err(stage_err)?;
        for d in &self.created[before..] {
            self.journal.note_absent(d);
        }
        Ok(dest)
    }

    /// Records that a temp will be renamed onto `dest`; two onto one path is an error.
    fn claim(&mut self, dest: &Path) -> Result<(), ApplyError> {
        if !self.dests.insert(dest.to_path_buf()) {
            return Err(err(ApplyStep::Stage, dest, K::Duplicate));
        }
        Ok(())
    }

    fn read_text(&self, path: &str) -> Result<String, ApplyError> {
        let host = resolve(self.root, path, None).map_err(stage_err)?;
        match fs::read(&host) {
            Ok(b) => Ok(String::from_utf8_lossy(&b).into_owned()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(String::new()),
            Err(e) => Err(err(ApplyStep::Accounts, &host, e)),
        }
    }

    fn stage_accounts(&mut self, plan: &WritePlan) -> Result<Vec<AccountUser>, ApplyError> {
        self.passwd = self.read_text("/etc/passwd")?;
        self.group = self.read_text("/etc/group")?;
        if plan.users.is_empty() && plan.groups.is_empty() {
            return Ok(Vec::new());
        }
        let existing = AccountFiles { passwd: self.passwd.clone(), group: self.group.clone(), shadow: self.read_text("/etc/shadow")? };
        let update = accounts::merge_accounts(&existing, &plan.users, &plan.groups)
            .map_err(|e| err(ApplyStep::Accounts, &self.root.join("etc/passwd"), e))?;
        for (path, text, mode) in [
            ("/etc/passwd", &update.files.passwd, 0o644),
            ("/etc/group", &update.files.group, 0o644),
            ("/etc/shadow", &update.files.shadow, 0o600),
        ] {
            let dest = self.dest(path)?;
            let (mode, uid, gid) = match fs::symlink_metadata(&dest) {
                Ok(m) if m.is_file() => (m.mode() & 0o7777, m.uid(), m.gid()),
                _ => (mode, 0, 0),
            };
            self.write_temp(&dest, text.as_bytes(), mode, uid, gid)?;
        }
        self.passwd = update.files.passwd;
        self.group = update.files.group;
        Ok(update.users)
    }

    fn stage_home(&mut self, user: &AccountUser, keys: &[String]) -> Result<(), ApplyError> {
        let owned = |path: String, mode| PlannedDir {
            path,
            mode: Some(mode),
            uid: Some(IdOrName::Id(user.uid)),
            gid: Some(IdOrName::Id(user.gid)),
            overwrite: false,
        };
        let home = resolve(self.root, &user.home, None).map_err(stage_err)?;
        if fs::symlink_metadata(&home).is_err() || self.journal.was_absent(&home) {
            self.stage_dir(&owned(user.home.clone(), 0o700))?;
        }
        if keys.is_empty() {
            return Ok(());
        }
        let ssh = format!("{}/.ssh", user.home.trim_end_matches('/'));
        self.stage_dir(&owned(ssh.clone(), 0o700))?;
        let mut contents = keys.join("\n").into_bytes();
        contents.push(b'\n');
        self.stage_file(&PlannedFile {
            path: format!("{ssh}/authorized_keys"),
            contents: Some(contents),
            mode: Some(0o600),
            uid: Some(IdOrName::Id(user.uid)),
            gid: Some(IdOrName::Id(user.gid)),
            overwrite: true,
            ..Default::default()
        })
    }

    fn uid(&self, v: &Option<IdOrName>, at: &Path) -> Result<Option<u32>, ApplyError> {
        match v {
            None => Ok(None),
            Some(IdOrName::Id(id)) => Ok(Some(*id)),
            Some(IdOrName::Name(n)) => {
                accounts::user_id(&self.passwd, n).map(Some).ok_or_else(|| err(ApplyStep::Stage, at, K::UnknownUser(n.clone())))
            }
        }
    }

    fn gid(&self, v: &Option<IdOrName>, at: &Path) -> Result<Option<u32>, ApplyError> {
        match v {
            None => Ok(None),
            Some(IdOrName::Id(id)) => Ok(Some(*id)),
            Some(IdOrName::Name(n)) => {
                accounts::group_id(&self.group, n).map(Some).ok_or_else(|| err(ApplyStep::Stage, at, K::UnknownGroup(n.clone())))
            }
        }
    }

    fn stage_file(&mut self, f: &PlannedFile) -> Result<(), ApplyError> {
        let dest = self.dest(&f.path)?;
        let fail = |kind: K| err(ApplyStep::Stage, &dest, kind);
        let meta = fs::symlink_metadata(&dest).ok();
        if meta.is_none() {
            self.journal.note_absent(&dest);
        }
        let existed = meta.is_some() && !self.journal.was_absent(&dest);
        if meta.as_ref().is_some_and(|m| m.is_dir()) {
            return Err(fail(K::IsADirectory));
        }
        let regular = meta.as_ref().is_some_and(|m| m.is_file());
        let mut data = match &f.contents {
            Some(c) => c.clone(),
            None if existed && !regular => return Err(fail(K::NotARegularFile)),
            None if existed => self.original(&dest, !f.append.is_empty())?,
            None => Vec::new(),
        };
        f.append.iter().for_each(|a| data.extend_from_slice(a));
        if f.contents.is_some() && existed && !f.overwrite {
            let same = regular && fs::read(&dest).map_err(|e| fail(e.into()))? == data;
            if !same {
                return Err(fail(K::ExistsNoOverwrite));
            }
        }
        let keep = f.contents.is_none() && existed;
        let old = meta.filter(|_| keep);
        let mode = f.mode.or(old.as_ref().map(|m| m.mode() & 0o7777)).unwrap_or(0o644);
        let uid = self.uid(&f.uid, &dest)?.or(old.as_ref().map(|m| m.uid())).unwrap_or(0);
        let gid = self.gid(&f.gid, &dest)?.or(old.as_ref().map(|m| m.gid())).unwrap_or(0);
        self.write_temp(&dest, &data, mode, uid, gid)
    }

    fn original(&mut self, dest: &Path, record: bool) -> Result<Vec<u8>, ApplyError> {
        if let Some(o) = self.journal.original(dest) {
            return Ok(o.clone());
        }
        let data = fs::read(dest).map_err(|e| err(ApplyStep::Stage, dest, e))?;
        if record {
            self.journal.note_original(dest, &data);
        }
        Ok(data)
    }

    fn write_temp(&mut self, dest: &Path, data: &[u8], mode: u32, uid: u32, gid: u32) -> Result<(), ApplyError> {
        self.claim(dest)?;
        let temp = temp_for(dest);
        let io = |e: io::Error| err(ApplyStep::Stage, &temp, e);
        remove_if_exists(&temp).map_err(io)?;
        self.temps.push(temp.clone());
        let mut file = fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&temp).map_err(io)?;
        file.write_all(data).map_err(io)?;
        set_owner(&temp, uid, gid).map_err(io)?;
        file.set_permissions(fs::Permissions::from_mode(mode)).map_err(io)?;
        file.sync_all().map_err(io)?;
        self.ops.push(Op::Rename { temp, dest: dest.to_path_buf() });
        Ok(())
    }

    fn stage_dir(&mut self, d: &PlannedDir) -> Result<(), ApplyError> {
        let dest = self.dest(&d.path)?;
        let meta = fs::symlink_metadata(&dest).ok();
        let replace = match &meta {
            None => {
                self.journal.note_absent(&dest);
                false
            }
            Some(m) if m.is_dir() => false,
            Some(_) if d.overwrite => true,
            Some(_) => return Err(err(ApplyStep::Stage, &dest, K::ExistsNoOverwrite)),
        };
        let fresh = meta.is_none() || replace || self.journal.was_absent(&dest);
        let (mode, uid, gid) = (d.mode, self.uid(&d.uid, &dest)?, self.gid(&d.gid, &dest)?);
        let (mode, uid, gid) =
            if fresh { (Some(mode.unwrap_or(0o755)), Some(uid.unwrap_or(0)), Some(gid.unwrap_or(0))) } else { (mode, uid, gid) };
        self.ops.push(Op::Dir { dest, mode, uid, gid, replace });
        Ok(())
    }

    fn stage_link(&mut self, l: &PlannedLink) -> Result<(), ApplyError> {
        let dest = self.dest(&l.path)?;
        let meta = fs::symlink_metadata(&dest).ok();
        if meta.is_none() {
            self.journal.note_absent(&dest);
        }
        let existed = meta.is_some() && !self.journal.was_absent(&dest);
        if meta.as_ref().is_some_and(|m| m.is_dir()) {
            return Err(err(ApplyStep::Stage, &dest, K::IsADirectory));
        }
        if l.hard {
            return self.stage_hard_link(l, dest, meta, existed);
        }
        let same = fs::read_link(&dest).is_ok_and(|t| t == Path::new(&l.target));
        if existed && !l.overwrite && !same {
            return Err(err(ApplyStep::Stage, &dest, K::ExistsNoOverwrite));
        }
        let uid = self.uid(&l.uid, &dest)?.unwrap_or(0);
        let gid = self.gid(&l.gid, &dest)?.unwrap_or(0);
        self.claim(&dest)?;
        let temp = temp_for(&dest);
        let io = |e: io::Error| err(ApplyStep::Stage, &temp, e);
        remove_if_exists(&temp).map_err(io)?;
        self.temps.push(temp.clone());
        std::os::unix::fs::symlink(&l.target, &temp).map_err(io)?;
        set_owner(&temp, uid, gid).map_err(io)?;
        self.ops.push(Op::Rename { temp, dest });
        Ok(())
    }

    fn stage_hard_link(&mut self, l: &PlannedLink, dest: PathBuf, meta: Option<fs::Metadata>, existed: bool) -> Result<(), ApplyError> {
        let target = resolve(self.root, &l.target, None).map_err(stage_err)?;
        let target_meta = fs::symlink_metadata(&target).ok();
        if target_meta.is_none() && !self.dests.contains(&target) {
            return Err(err(ApplyStep::Stage, &dest, K::LinkTargetMissing(l.target.clone())));
        }
        let same = match (&meta, &target_meta) {
            (Some(a), Some(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
            _ => false,
        };
        if existed && !l.overwrite && !same {
            return Err(err(ApplyStep::Stage, &dest, K::ExistsNoOverwrite));
        }
        self.claim(&dest)?;
        let temp = temp_for(&dest);
        self.ops.push(Op::HardLink { target, temp, dest });
        Ok(())
    }
}
