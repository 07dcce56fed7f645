//! `keelctl apply | diff | rm | reload` on PID 1's side: the I/O around the pure parts
//! (`keel_supervisor::manager::desired` checks a declaration set, `manager::plan` plans
//! the move). Every request is checked whole before anything is written; files are
//! staged (temp file, fsync) and only then renamed into the directory, which is fsynced;
//! the plan is then handed to the manager, whose state machine stops and starts the
//! containers while the loop goes on. The answer is sent when the plan has been started.
//!
//! The directory is a parameter, so the tests run on a temp dir.

use keel_netconf::config::NetworkConfig;
use keel_supervisor::manager::desired::{self, DeclarationFile, Member, SetErrors};
use keel_supervisor::manager::plan::{self, Plan};
use keel_supervisor::manager::{Declaration, Manager};
use keel_supervisor::spec::ContainerName;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Why a request changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// A file, or the set, is invalid: every problem with its file, line and key.
    #[error("{0}\nnothing was changed")]
    Invalid(#[from] SetErrors),
    /// The declarations directory could not be read.
    #[error("{dir}: {source}")]
    ReadDir {
        /// The directory.
        dir: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// A declaration on the host could not be read.
    #[error("{file}: {source}")]
    Read {
        /// The file.
        file: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// Staging or renaming a declaration failed.
    #[error("writing {path}: {source}; nothing was changed")]
    Write {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// `rm` of a name that has no declaration.
    #[error("no container {name:?} is declared (see keelctl ps)")]
    NotDeclared {
        /// The name asked for.
        name: String,
    },
    /// `apply`/`diff` without a file.
    #[error("no declaration file given")]
    NoFiles,
}

/// The answer to `apply`, `diff`, `rm` and `reload`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReconcileReport {
    /// What was (or, for `diff`, would be) done.
    pub plan: Plan,
    /// The declaration files written (apply) or removed (rm).
    #[serde(default)]
    pub files: Vec<String>,
    /// What the reload did with network.toml, when it is the reload's business.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub networks: Option<String>,
}

/// The containers a network reload restarts (`--restart-attached`), each with the reason
/// shown as its changed key; planned as changes.
pub type NetworkRestarts = BTreeMap<ContainerName, String>;

/// One `*.toml` of the declarations directory (dot files, such as staged temp files, are
/// not declarations), read with the size bound a client's file has.
fn read_dir(dir: &Path) -> Result<Vec<DeclarationFile>, ReconcileError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(ReconcileError::ReadDir { dir: dir.display().to_string(), source }),
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .filter(|p| !p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('.')))
        .collect();
    paths.sort();
    let mut files = Vec::new();
    for path in paths {
        let file = path.display().to_string();
        let read = |source| ReconcileError::Read { file: file.clone(), source };
        let mut text = String::new();
        let opened = std::fs::File::open(&path).map_err(read)?;
        opened.take(desired::MAX_FILE_BYTES as u64 + 1).read_to_string(&mut text).map_err(read)?;
        files.push(DeclarationFile { path: file, text });
    }
    Ok(files)
}

/// The valid members of the files on the host, and the names of the invalid ones (left
/// as they are by `apply`; a `reload` refuses them).
fn lenient(files: &[DeclarationFile]) -> (BTreeMap<ContainerName, Member>, Vec<ContainerName>) {
    let mut valid = BTreeMap::new();
    let mut invalid = Vec::new();
    for file in files {
        match desired::parse_files(std::slice::from_ref(file)) {
            Ok(members) => valid.extend(members),
            Err(_) => invalid.extend(file.container_name().ok()),
        }
    }
    (valid, invalid)
}

/// The plan from what `manager` runs to `members` (each with its image's digest now),
/// leaving out the containers named in `untouched`.
fn plan_for(manager: &Manager, members: &BTreeMap<ContainerName, Member>, untouched: &[ContainerName], forced: &NetworkRestarts) -> Plan {
    let mut current = manager.current();
    current.retain(|name, _| !untouched.contains(name));
    let wanted = members
        .iter()
        .map(|(name, m)| (name.clone(), plan::Wanted { spec: m.spec.clone(), digest: manager.image_digest(&m.spec) }))
        .collect();
    plan::plan(&current, &wanted, forced)
}

/// The declarations the manager takes for the plan's additions and changes.
fn declarations(members: BTreeMap<ContainerName, Member>, dir: &Path) -> BTreeMap<ContainerName, Declaration> {
    members
        .into_iter()
        .map(|(name, m)| {
            let file = dir.join(format!("{name}.toml")).display().to_string();
            (name.clone(), Declaration { name, file, spec: Ok(m.spec) })
        })
        .collect()
}

/// `apply` (or, with `dry_run`, `diff`): `files` over the declarations in `dir`.
/// Untouched declarations on the host that are invalid stay as they are.
pub fn apply(
    manager: &mut Manager,
    dir: &Path,
    files: &[DeclarationFile],
    network: Option<&NetworkConfig>,
    dry_run: bool,
    now: Instant,
) -> Result<ReconcileReport, ReconcileError> {
    if files.is_empty() {
        return Err(ReconcileError::NoFiles);
    }
    let given = desired::parse_files(files)?;
    let (old, mut untouched) = lenient(&read_dir(dir)?);
    untouched.retain(|name| !given.contains_key(name));
    let mut new = old.clone();
    new.extend(given.clone());
    let problems = desired::new_problems(&new, &old, network);
    if !problems.is_empty() {
        return Err(SetErrors(problems).into());
    }
    let plan = plan_for(manager, &new, &untouched, &NetworkRestarts::new());
    let targets: Vec<(PathBuf, &DeclarationFile)> =
        files.iter().filter_map(|f| Some((dir.join(format!("{}.toml", f.container_name().ok()?)), f))).collect();
    let written: Vec<String> = targets.iter().map(|(path, _)| path.display().to_string()).collect();
    if dry_run {
        return Ok(ReconcileReport { plan, files: Vec::new(), networks: None });
    }
    let contents: Vec<(PathBuf, &[u8])> = targets.iter().map(|(path, f)| (path.clone(), f.text.as_bytes())).collect();
    write_all_atomically(dir, &contents)?;
    manager.apply_plan(&plan, declarations(new, dir), false, now);
    Ok(ReconcileReport { plan, files: written, networks: None })
}

/// `rm NAME [--purge]`: no other declaration may depend on it; its file goes first.
pub fn remove(manager: &mut Manager, dir: &Path, name: &str, purge: bool, now: Instant) -> Result<ReconcileReport, ReconcileError> {
    let not_declared = || ReconcileError::NotDeclared { name: name.to_string() };
    let container = ContainerName::new(name).map_err(|_| not_declared())?;
    let path = dir.join(format!("{container}.toml"));
    let known = manager.current();
    if !path.exists() && !known.contains_key(&container) {
        return Err(not_declared());
    }
    let (old, _) = lenient(&read_dir(dir)?);
    let mut new = old.clone();
    new.remove(&container);
    let problems = desired::new_problems(&new, &old, None);
    if !problems.is_empty() {
        return Err(SetErrors(problems).into());
    }
    let mut files = Vec::new();
    if path.exists() {
        std::fs::remove_file(&path).map_err(|source| ReconcileError::Write { path: path.display().to_string(), source })?;
        sync_dir(dir)?;
        files.push(path.display().to_string());
    }
    let current: BTreeMap<ContainerName, plan::Current> = known.into_iter().filter(|(n, _)| *n == container).collect();
    let plan = plan::plan(&current, &BTreeMap::new(), &NetworkRestarts::new());
    manager.apply_plan(&plan, BTreeMap::new(), purge, now);
    Ok(ReconcileReport { plan, files, networks: None })
}

/// `reload`: the declarations in `dir` are the whole wanted set; any invalid file or
/// set problem refuses the reload. `forced` are the network reload's restarts.
pub fn reload(
    manager: &mut Manager,
    dir: &Path,
    network: Option<&NetworkConfig>,
    forced: &NetworkRestarts,
    now: Instant,
) -> Result<ReconcileReport, ReconcileError> {
    let members = desired::parse_files(&read_dir(dir)?)?;
    let problems = desired::check_set(&members, network);
    if !problems.is_empty() {
        return Err(SetErrors(problems).into());
    }
    let plan = plan_for(manager, &members, &[], forced);
    manager.apply_plan(&plan, declarations(members, dir), false, now);
    Ok(ReconcileReport { plan, files: Vec::new(), networks: None })
}

/// Write every file of `contents` into `dir` so that either all or none replace what was
/// there: each is staged as a dot file and fsynced first, then all are renamed and the
/// directory is fsynced. A failed stage removes the staged files.
pub fn write_all_atomically(dir: &Path, contents: &[(PathBuf, &[u8])]) -> Result<(), ReconcileError> {
    std::fs::create_dir_all(dir).map_err(|source| ReconcileError::Write { path: dir.display().to_string(), source })?;
    let mut staged: Vec<(PathBuf, PathBuf)> = Vec::new();
    let stage = |path: &Path, bytes: &[u8]| -> Result<PathBuf, std::io::Error> {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("declaration");
        let tmp = dir.join(format!(".{name}.keel-tmp"));
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        Ok(tmp)
    };
    for (path, bytes) in contents {
        match stage(path, bytes) {
            Ok(tmp) => staged.push((tmp, path.clone())),
            Err(source) => {
                for (tmp, _) in &staged {
                    let _ = std::fs::remove_file(tmp);
                }
                let _ = std::fs::remove_file(dir.join(format!(".{}.keel-tmp", path.file_name().and_then(|n| n.to_str()).unwrap_or(""))));
                return Err(ReconcileError::Write { path: path.display().to_string(), source });
            }
        }
    }
    for (tmp, path) in &staged {
        std::fs::rename(tmp, path).map_err(|source| ReconcileError::Write { path: path.display().to_string(), source })?;
    }
    sync_dir(dir)
}

/// The work of a purge job (`rm --purge`, in a worker: a large writable layer takes long
/// to delete): the container's state directory under `state_root` and its log files
/// (`NAME.log` and the rotated ones) in `log_dir`. Bind-mounted host paths are the
/// operator's and stay. Answers what it deleted.
pub fn purge_work(
    name: ContainerName,
    state_root: PathBuf,
    log_dir: PathBuf,
) -> impl FnOnce(&mut keel_supervisor::worker::Reporter) -> Result<serde_json::Value, String> {
    move |_| purge(&name, &state_root, &log_dir).map(|gone| serde_json::json!({ "deleted": gone }))
}

/// What [`purge_work`] does; every path is tried, the first failure is returned.
pub fn purge(name: &ContainerName, state_root: &Path, log_dir: &Path) -> Result<Vec<String>, String> {
    let mut gone = Vec::new();
    let mut failure = None;
    let state = keel_supervisor::runtime::plan::state_dir(state_root, name.as_str());
    let logs = (0..=keel_supervisor::logs::DEFAULT_KEEP).map(|k| keel_supervisor::logs::rotated_path(log_dir, name, k));
    for (path, is_dir) in std::iter::once((state, true)).chain(logs.map(|p| (p, false))) {
        let result = if is_dir { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) };
        match result {
            Ok(()) => gone.push(path.display().to_string()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                failure.get_or_insert(format!("{}: {e}", path.display()));
            }
        }
    }
    match failure {
        None => Ok(gone),
        Some(failure) => Err(failure),
    }
}

fn sync_dir(dir: &Path) -> Result<(), ReconcileError> {
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(|source| ReconcileError::Write { path: dir.display().to_string(), source })
}

#[cfg(test)]
mod tests;
