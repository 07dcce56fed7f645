//! apply, diff, rm and reload on a temp directory with a manager over a fake launcher.

use super::*;
use keel_supervisor::cgroup::CgroupStats;
use keel_supervisor::logs::Stream;
use keel_supervisor::manager::plan::Action;
use keel_supervisor::manager::{LaunchError, Launched, Launcher, LogSink, ProbeError};
use keel_supervisor::runtime::LaunchPlan;
use keel_supervisor::spec::ContainerSpec;
use nix::unistd::Pid;
use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

/// Launches get pids 101, 102, …; every call is logged.
struct Fake(Rc<RefCell<Vec<String>>>, i32);

impl Launcher for Fake {
    fn launch(&mut self, spec: &ContainerSpec) -> Result<Launched, LaunchError> {
        self.1 += 1;
        self.0.borrow_mut().push(format!("launch {} {}", spec.name, 100 + self.1));
        Ok(Launched { pid: Pid::from_raw(100 + self.1), stdout: None, stderr: None })
    }
    fn signal(&mut self, pid: Pid, signal: i32) {
        self.0.borrow_mut().push(format!("signal {pid} {signal}"));
    }
    fn kill_all(&mut self, _: &ContainerName, _: Pid) {}
    fn release(&mut self, _: &ContainerName) -> Option<CgroupStats> {
        None
    }
    fn healthcheck(&mut self, name: &ContainerName, _: Pid, _: &[String], _: Duration) -> Result<Pid, ProbeError> {
        Err(ProbeError::NotRunning { name: name.to_string() })
    }
    fn stats(&self, name: &ContainerName) -> Result<CgroupStats, ProbeError> {
        Err(ProbeError::NotRunning { name: name.to_string() })
    }
    fn cgroup_dir(&self, _: &ContainerName) -> Option<PathBuf> {
        None
    }
    fn plan(&self, _: &ContainerName) -> Option<&LaunchPlan> {
        None
    }
}

struct NoLogs;

impl LogSink for NoLogs {
    fn write(&mut self, _: &ContainerName, _: Stream, _: &[u8]) {}
    fn finish(&mut self, _: &ContainerName) {}
}

const DB: &str = "image = \"/img\"\ncommand = [\"/db\"]\n";
const WEB: &str = "image = \"/img\"\ncommand = [\"/web\"]\ndepends_on = [\"db\"]\n";
const LONE: &str = "image = \"/img\"\ncommand = [\"/lone\"]\n";

/// A directory removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("keel-reconcile-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

struct Host {
    dir: TempDir,
    manager: Manager,
    calls: Rc<RefCell<Vec<String>>>,
}

impl Host {
    /// A host whose directory holds these declarations, loaded and started.
    fn new(files: &[(&str, &str)]) -> Host {
        let dir = TempDir::new();
        for (name, text) in files {
            std::fs::write(dir.path().join(format!("{name}.toml")), text).unwrap();
        }
        let calls = Rc::new(RefCell::new(Vec::new()));
        let mut manager = Manager::new(Box::new(Fake(calls.clone(), 0)), Box::new(NoLogs), "/var/log/keel");
        manager.load(keel_supervisor::manager::load_dir(dir.path()).0);
        manager.tick(Instant::now());
        manager.tick(Instant::now());
        Host { dir, manager, calls }
    }

    fn pid(&self, name: &str) -> Option<i32> {
        self.manager.ps(Instant::now()).into_iter().find(|c| c.name == name).and_then(|c| c.pid)
    }

    fn file(&self, name: &str) -> Option<String> {
        std::fs::read_to_string(self.dir.path().join(format!("{name}.toml"))).ok()
    }

    fn listing(&self) -> Vec<String> {
        let mut names: Vec<String> =
            std::fs::read_dir(self.dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        names
    }

    fn apply(&mut self, files: &[(&str, &str)], dry_run: bool) -> Result<ReconcileReport, ReconcileError> {
        let files: Vec<DeclarationFile> = files.iter().map(|(p, t)| DeclarationFile { path: p.to_string(), text: t.to_string() }).collect();
        apply(&mut self.manager, self.dir.path(), &files, None, dry_run, Instant::now())
    }

    /// End the process of `name` as if reaped, then tick.
    fn exit(&mut self, name: &str) {
        let pid = self.pid(name).expect("running");
        self.manager.on_exit(Pid::from_raw(pid), 143, Instant::now());
        self.manager.tick(Instant::now());
    }
}

#[test]
fn diff_and_apply_add_a_container_and_write_its_file() {
    let mut host = Host::new(&[("db", DB)]);
    let report = host.apply(&[("conf/lone.toml", LONE)], true).unwrap();
    assert_eq!(report.plan.to_text(), "unchanged db\nadd lone\n");
    assert_eq!(host.file("lone"), None, "diff writes nothing");
    let report = host.apply(&[("conf/lone.toml", LONE)], false).unwrap();
    assert_eq!(report.plan.names(Action::Add), ["lone"]);
    assert_eq!(host.file("lone").as_deref(), Some(LONE));
    assert_eq!(host.listing(), ["db.toml", "lone.toml"], "no staged file is left");
    host.manager.tick(Instant::now());
    assert!(host.pid("lone").is_some());
}

#[test]
fn a_comment_only_edit_touches_nothing_but_is_written() {
    let mut host = Host::new(&[("db", DB), ("web", WEB)]);
    let before = host.calls.borrow().len();
    let commented = format!("# the web front\n{WEB}");
    let report = host.apply(&[("web.toml", &commented)], false).unwrap();
    assert!(report.plan.is_noop(), "{report:?}");
    assert_eq!(host.calls.borrow().len(), before);
    assert_eq!(host.file("web").as_deref(), Some(commented.as_str()));
}

#[test]
fn a_change_restarts_it_and_its_dependent_only() {
    let mut host = Host::new(&[("db", DB), ("web", WEB), ("lone", LONE)]);
    let (db, web, lone) = (host.pid("db").unwrap(), host.pid("web").unwrap(), host.pid("lone").unwrap());
    let report = host.apply(&[("db.toml", &format!("{DB}env = {{ A = \"1\" }}\n"))], false).unwrap();
    assert_eq!(report.plan.to_text(), "change db: env\nunchanged lone\nrestart-dependent web (after db)\n");
    host.exit("web");
    host.exit("db");
    let (db2, web2) = (host.pid("db").unwrap(), host.pid("web").unwrap());
    assert!(db2 != db && web2 != web);
    assert_eq!(host.pid("lone"), Some(lone));
}

#[test]
fn a_bad_file_changes_nothing_and_is_named() {
    let mut host = Host::new(&[("db", DB)]);
    let before = host.calls.borrow().clone();
    let bad = "image = \"/img\"\ncommand = [\"/x\"]\n\nstop_timeout = \"soon\"\n";
    let error = host.apply(&[("new/lone.toml", LONE), ("new/bad.toml", bad)], false).unwrap_err();
    assert!(error.to_string().starts_with("new/bad.toml:4: stop_timeout: "), "{error}");
    assert_eq!(host.listing(), ["db.toml"], "the good file of the request is not written either");
    assert_eq!(*host.calls.borrow(), before);
    let dangling = host.apply(&[("web.toml", &WEB.replace("db", "ghost"))], false).unwrap_err();
    assert_eq!(dangling.to_string(), "web.toml:3: depends_on.ghost: no container ghost is declared\nnothing was changed");
}

#[test]
fn rm_refuses_a_dependency_then_removes_and_reports_for_purge() {
    let mut host = Host::new(&[("db", DB), ("web", WEB)]);
    let error = remove(&mut host.manager, host.dir.path(), "db", false, Instant::now()).unwrap_err();
    let web_file = host.dir.path().join("web.toml").display().to_string();
    assert_eq!(error.to_string(), format!("{web_file}:3: depends_on.db: no container db is declared\nnothing was changed"));
    assert!(host.file("db").is_some());
    let report = remove(&mut host.manager, host.dir.path(), "web", true, Instant::now()).unwrap();
    assert_eq!(report.plan.names(Action::Remove), ["web"]);
    assert_eq!(host.file("web"), None);
    assert!(host.manager.take_removed().is_empty());
    host.exit("web");
    let removed = host.manager.take_removed();
    assert_eq!((removed[0].name.as_str(), removed[0].purge), ("web", true));
    assert!(matches!(remove(&mut host.manager, host.dir.path(), "web", false, Instant::now()), Err(ReconcileError::NotDeclared { .. })));
}

#[test]
fn reload_follows_hand_edits_and_refuses_a_bad_directory() {
    let mut host = Host::new(&[("db", DB), ("lone", LONE)]);
    let lone = host.pid("lone").unwrap();
    std::fs::write(host.dir.path().join("web.toml"), WEB).unwrap();
    std::fs::write(host.dir.path().join("db.toml"), format!("# edited by hand\n{DB}")).unwrap();
    let report = reload(&mut host.manager, host.dir.path(), None, &NetworkRestarts::new(), Instant::now()).unwrap();
    assert_eq!(report.plan.to_text(), "unchanged db\nunchanged lone\nadd web\n");
    std::fs::write(host.dir.path().join("lone.toml"), "image = 5\n").unwrap();
    let error = reload(&mut host.manager, host.dir.path(), None, &NetworkRestarts::new(), Instant::now()).unwrap_err();
    assert!(error.to_string().contains("lone.toml:1: image: "), "{error}");
    assert_eq!(host.pid("lone"), Some(lone));
    std::fs::remove_file(host.dir.path().join("lone.toml")).unwrap();
    let forced: NetworkRestarts = [(ContainerName::new("db").unwrap(), "network".to_string())].into();
    let report = reload(&mut host.manager, host.dir.path(), None, &forced, Instant::now()).unwrap();
    assert_eq!(report.plan.to_text(), "remove lone\nchange db: network\nrestart-dependent web (after db)\n");
}

#[test]
fn purge_deletes_the_state_dir_and_every_log_of_that_container_only() {
    let root = TempDir::new();
    let (state, logs) = (root.path().join("state"), root.path().join("logs"));
    std::fs::create_dir_all(state.join("web/upper/deep")).unwrap();
    std::fs::create_dir_all(state.join("webby")).unwrap();
    std::fs::create_dir_all(&logs).unwrap();
    for file in ["web.log", "web.log.1", "web.log.3", "webby.log"] {
        std::fs::write(logs.join(file), "x").unwrap();
    }
    let web = ContainerName::new("web").unwrap();
    let gone = purge(&web, &state, &logs).unwrap();
    assert_eq!(gone.len(), 4, "{gone:?}");
    assert!(!state.join("web").exists() && state.join("webby").exists());
    let mut left: Vec<String> = std::fs::read_dir(&logs).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    left.sort();
    assert_eq!(left, ["webby.log"]);
    assert!(purge(&web, &state, &logs).unwrap().is_empty(), "a second purge finds nothing");
}
