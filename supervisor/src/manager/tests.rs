//! Lifecycle rules with a fake launcher and a fake clock.

use super::*;
use crate::cgroup::CgroupStats;
use crate::runtime::LaunchPlan;
use std::cell::RefCell;
use std::path::PathBuf;
use std::rc::Rc;

/// What the fake launcher was asked to do, in order.
#[derive(Default)]
struct Calls {
    log: Vec<String>,
    next_pid: i32,
    failing: BTreeSet<String>,
    oom_on_release: u64,
    /// What the running container's cgroup reports (`stats`).
    current: CgroupStats,
}

struct FakeLauncher(Rc<RefCell<Calls>>);

impl Launcher for FakeLauncher {
    fn launch(&mut self, spec: &ContainerSpec) -> Result<Launched, LaunchError> {
        let mut calls = self.0.borrow_mut();
        calls.log.push(format!("launch {}", spec.name));
        if calls.failing.contains(spec.name.as_str()) {
            let source = std::io::Error::new(std::io::ErrorKind::NotFound, "no such root filesystem directory");
            let cause = crate::runtime::SpawnError::Prepare { name: spec.name.to_string(), what: "image /nope".into(), source };
            return Err(LaunchError::Failed {
                step: LaunchStep::Started,
                cause: Box::new(LaunchCause::Spawn(cause)),
                cleanup: launch_error::CleanupErrors::default(),
            });
        }
        calls.next_pid += 1;
        Ok(Launched { pid: Pid::from_raw(100 + calls.next_pid), stdout: None, stderr: None })
    }
    fn signal(&mut self, pid: Pid, signal: i32) {
        self.0.borrow_mut().log.push(format!("signal {pid} {signal}"));
    }
    fn kill_all(&mut self, name: &ContainerName, _pid: Pid) {
        self.0.borrow_mut().log.push(format!("kill {name}"));
    }
    fn release(&mut self, _name: &ContainerName) -> Option<CgroupStats> {
        let calls = self.0.borrow();
        Some(CgroupStats { oom_kill: calls.oom_on_release, ..calls.current })
    }
    fn healthcheck(&mut self, name: &ContainerName, _pid: Pid, _argv: &[String], _timeout: Duration) -> Result<Pid, ProbeError> {
        let mut calls = self.0.borrow_mut();
        calls.log.push(format!("check {name}"));
        calls.next_pid += 1;
        Ok(Pid::from_raw(100 + calls.next_pid))
    }
    fn stats(&self, _name: &ContainerName) -> Result<CgroupStats, ProbeError> {
        Ok(self.0.borrow().current)
    }
    fn cgroup_dir(&self, _name: &ContainerName) -> Option<PathBuf> {
        None
    }
    fn plan(&self, _name: &ContainerName) -> Option<&LaunchPlan> {
        None
    }
}

struct NoLogs;

impl LogSink for NoLogs {
    fn write(&mut self, _: &ContainerName, _: Stream, _: &[u8]) {}
    fn finish(&mut self, _: &ContainerName) {}
}

fn declaration(name: &str, extra: &str) -> Declaration {
    let text = format!("image = \"/images/busybox\"\ncommand = [\"/bin/sleep\", \"100\"]\n{extra}");
    let file = format!("/etc/keel/containers/{name}.toml");
    Declaration { name: ContainerName::new(name).unwrap(), spec: spec::parse(name, &text, &file).map_err(|e| e.to_string()), file }
}

use crate::spec;

fn manager(declarations: Vec<Declaration>) -> (Manager, Rc<RefCell<Calls>>) {
    let calls = Rc::new(RefCell::new(Calls::default()));
    let mut manager = Manager::new(Box::new(FakeLauncher(calls.clone())), Box::new(NoLogs), "/var/log/keel");
    manager.load(declarations);
    (manager, calls)
}

fn state(manager: &Manager, name: &str, now: Instant) -> ContainerInfo {
    manager.ps(now).into_iter().find(|c| c.name == name).unwrap()
}

fn pid_of(manager: &Manager, name: &str) -> Pid {
    Pid::from_raw(state(manager, name, Instant::now()).pid.expect("running"))
}

#[test]
fn dependencies_start_first_and_independent_ones_do_not_wait() {
    let (mut m, calls) = manager(vec![
        declaration("web", "depends_on = { db = \"healthy\" }"),
        declaration("db", "[healthcheck]\ncommand = \"true\"\ninterval = \"1s\""),
        declaration("lone", ""),
    ]);
    let t0 = Instant::now();
    m.tick(t0);
    assert_eq!(calls.borrow().log, ["launch db", "launch lone"]);
    assert_eq!(state(&m, "web", t0).state, "waiting");
    assert_eq!(state(&m, "web", t0).detail.as_deref(), Some("waiting for db to be healthy"));
    // The healthcheck runs after its interval; when it passes, web starts.
    m.tick(t0 + Duration::from_secs(1));
    let check = Pid::from_raw(100 + calls.borrow().next_pid);
    assert_eq!(calls.borrow().log.last().unwrap(), "check db");
    assert!(m.on_exit(check, 0, t0 + Duration::from_secs(1)));
    assert_eq!(state(&m, "db", t0).health.as_deref(), Some("healthy"));
    m.tick(t0 + Duration::from_secs(1));
    assert_eq!(calls.borrow().log.last().unwrap(), "launch web");
}

#[test]
fn completed_condition_waits_for_a_zero_exit() {
    let (mut m, calls) =
        manager(vec![declaration("migrate", "restart = \"no\""), declaration("app", "depends_on = { migrate = \"completed\" }")]);
    let t0 = Instant::now();
    m.tick(t0);
    assert_eq!(calls.borrow().log, ["launch migrate"]);
    m.on_exit(pid_of(&m, "migrate"), 0, t0);
    assert_eq!(state(&m, "migrate", t0).state, "exited");
    m.tick(t0);
    assert_eq!(calls.borrow().log, ["launch migrate", "launch app"]);
}

#[test]
fn restart_backoff_grows_then_gives_up_after_max_retries() {
    let (mut m, calls) = manager(vec![declaration("crashy", "restart = \"on-failure\"\nmax_retries = 2")]);
    let mut now = Instant::now();
    m.tick(now);
    let mut delays = Vec::new();
    for _ in 0..2 {
        m.on_exit(pid_of(&m, "crashy"), 137, now);
        let Phase::Restarting(at) = m.entries[&ContainerName::new("crashy").unwrap()].phase else { panic!("not restarting") };
        delays.push(at - now);
        m.tick(at - Duration::from_millis(1));
        assert_eq!(state(&m, "crashy", now).state, "restarting", "restarted before its backoff ended");
        now = at;
        m.tick(now);
        assert_eq!(state(&m, "crashy", now).state, "running");
    }
    assert_eq!(delays, [Duration::from_millis(500), Duration::from_millis(1000)]);
    m.on_exit(pid_of(&m, "crashy"), 1, now);
    let info = state(&m, "crashy", now);
    assert_eq!((info.state.as_str(), info.restarts, info.last_exit), ("failed", 2, Some(1)));
    assert!(info.detail.unwrap().contains("max_retries"));
    assert_eq!(calls.borrow().log.len(), 3);
}

#[test]
fn restart_no_stays_down_and_on_failure_ignores_success() {
    let (mut m, _) = manager(vec![declaration("once", "restart = \"no\""), declaration("job", "restart = \"on-failure\"")]);
    let now = Instant::now();
    m.tick(now);
    m.on_exit(pid_of(&m, "once"), 137, now);
    m.on_exit(pid_of(&m, "job"), 0, now);
    m.tick(now + Duration::from_secs(60));
    assert_eq!(state(&m, "once", now).state, "exited");
    assert_eq!(state(&m, "once", now).last_exit, Some(137));
    assert_eq!(state(&m, "job", now).state, "exited");
}

#[test]
fn a_start_that_fails_is_retried_with_backoff_and_reported() {
    let (mut m, calls) = manager(vec![declaration("broken", "restart = \"always\"")]);
    calls.borrow_mut().failing.insert("broken".into());
    let now = Instant::now();
    m.tick(now);
    let info = state(&m, "broken", now);
    assert_eq!(info.state, "restarting");
    assert!(info.detail.unwrap().contains("no such root filesystem"));
    assert_eq!(m.next_deadline(), Some(now + Duration::from_millis(500)));
}

#[test]
fn invalid_declarations_and_cycles_are_shown_and_others_run() {
    let (mut m, calls) = manager(vec![
        declaration("bad", "restart = \"sometimes\""),
        declaration("a", "depends_on = { b = \"started\" }"),
        declaration("b", "depends_on = { a = \"started\" }"),
        declaration("good", ""),
    ]);
    m.tick(Instant::now());
    assert_eq!(calls.borrow().log, ["launch good"]);
    let bad = state(&m, "bad", Instant::now());
    assert_eq!(bad.state, "invalid");
    assert!(bad.detail.unwrap().starts_with("/etc/keel/containers/bad.toml:3: restart:"));
    assert!(state(&m, "a", Instant::now()).detail.unwrap().contains("dependency cycle a -> b -> a"));
}

#[test]
fn stop_sends_the_stop_signal_then_kills_at_the_timeout() {
    let (mut m, calls) = manager(vec![declaration("web", "stop_signal = \"SIGINT\"\nstop_timeout = \"2s\"")]);
    let now = Instant::now();
    m.tick(now);
    let pid = pid_of(&m, "web");
    m.stop("web", now).unwrap();
    assert_eq!(calls.borrow().log.last().unwrap(), &format!("signal {pid} 2"));
    m.tick(now + Duration::from_millis(1999));
    assert_eq!(state(&m, "web", now).state, "stopping");
    m.tick(now + Duration::from_secs(2));
    assert_eq!(calls.borrow().log.last().unwrap(), "kill web");
    m.on_exit(pid, 137, now + Duration::from_secs(2));
    assert_eq!(state(&m, "web", now).state, "stopped");
    m.tick(now + Duration::from_secs(100));
    assert_eq!(state(&m, "web", now).state, "stopped", "a stopped container is not restarted");
    m.start("web", now).unwrap();
    assert_eq!(state(&m, "web", now).state, "running");
}

#[test]
fn restart_request_stops_then_starts() {
    let (mut m, calls) = manager(vec![declaration("web", "")]);
    let now = Instant::now();
    m.tick(now);
    let pid = pid_of(&m, "web");
    m.restart("web", now).unwrap();
    m.on_exit(pid, 143, now);
    assert_eq!(state(&m, "web", now).state, "running");
    assert_ne!(pid_of(&m, "web"), pid);
    assert_eq!(calls.borrow().log.iter().filter(|l| l.starts_with("launch")).count(), 2);
}

#[test]
fn unknown_names_are_clear_errors() {
    let (mut m, _) = manager(vec![declaration("web", "")]);
    assert_eq!(m.stop("nope", Instant::now()).unwrap_err(), "no container \"nope\" (see keelctl ps)");
    assert!(m.inspect("../etc", Instant::now()).is_err());
}

#[test]
fn oom_kills_are_counted_across_runs() {
    let (mut m, calls) = manager(vec![declaration("hog", "restart = \"always\"")]);
    calls.borrow_mut().oom_on_release = 1;
    let now = Instant::now();
    m.tick(now);
    m.on_exit(pid_of(&m, "hog"), 137, now);
    assert_eq!(m.inspect("hog", now).unwrap().oom_kills, 1);
}

#[test]
fn ps_reports_limits_hit_by_the_running_and_the_ended_runs() {
    let (mut m, calls) = manager(vec![declaration("bomb", "restart = \"always\""), declaration("calm", "")]);
    let now = Instant::now();
    m.tick(now);
    let calm = state(&m, "calm", now);
    assert_eq!((calm.pids_limit_hits, calm.oom_killed, calm.limits_hit()), (0, 0, None));
    // The running bomb's cgroup counts refused forks: ps reads them live.
    calls.borrow_mut().current = CgroupStats { pids_limit_hits: 37, ..CgroupStats::default() };
    let bomb = state(&m, "bomb", now);
    assert_eq!(bomb.limits_hit().as_deref(), Some("pids-limit-hit:37"));
    // It is OOM-killed; the ended run's figures are kept, the next run adds its own.
    calls.borrow_mut().oom_on_release = 3;
    m.on_exit(pid_of(&m, "bomb"), 137, now);
    calls.borrow_mut().current = CgroupStats::default();
    let bomb = state(&m, "bomb", now);
    assert_eq!((bomb.pids_limit_hits, bomb.oom_killed), (37, 3));
    assert_eq!(bomb.limits_hit().as_deref(), Some("pids-limit-hit:37,oom-killed:3"));
    // Negative control: the bystander still shows nothing.
    assert_eq!(state(&m, "calm", now).limits_hit(), None);
}

#[test]
fn unhealthy_after_retries_but_not_during_start_period() {
    let (mut m, calls) =
        manager(vec![declaration("db", "[healthcheck]\ncommand = \"false\"\ninterval = \"1s\"\nretries = 2\nstart_period = \"3s\"")]);
    let t0 = Instant::now();
    m.tick(t0);
    let run_check = |m: &mut Manager, at: Instant| {
        m.tick(at);
        let pid = Pid::from_raw(100 + calls.borrow().next_pid);
        assert!(m.on_exit(pid, 1, at));
    };
    run_check(&mut m, t0 + Duration::from_secs(1));
    run_check(&mut m, t0 + Duration::from_secs(2));
    assert_eq!(state(&m, "db", t0).health.as_deref(), Some("starting"));
    run_check(&mut m, t0 + Duration::from_secs(3));
    run_check(&mut m, t0 + Duration::from_secs(4));
    assert_eq!(state(&m, "db", t0).health.as_deref(), Some("unhealthy"));
}

#[test]
fn stop_order_is_reverse_dependency_order() {
    let (m, _) = manager(vec![
        declaration("web", "depends_on = { api = \"started\" }"),
        declaration("api", "depends_on = { db = \"started\" }"),
        declaration("db", ""),
    ]);
    let order: Vec<String> = m.stop_order().iter().map(ToString::to_string).collect();
    assert_eq!(order, ["web", "api", "db"]);
}

#[test]
fn shutdown_stops_dependents_first_and_independent_ones_together() {
    let (mut m, calls) = manager(vec![
        declaration("web", "depends_on = { db = \"started\" }\nstop_timeout = \"5s\""),
        declaration("db", "stop_timeout = \"5s\""),
        declaration("lone", "stop_timeout = \"5s\""),
    ]);
    m.tick(Instant::now());
    let pids: BTreeMap<String, Pid> = ["web", "db", "lone"].iter().map(|n| (n.to_string(), pid_of(&m, n))).collect();
    // Every container exits as soon as it has its stop signal.
    let log = calls.clone();
    let mut reap = move || {
        let signalled: Vec<(Pid, i32)> = log
            .borrow()
            .log
            .iter()
            .filter_map(|l| l.strip_prefix("signal "))
            .filter_map(|l| l.split(' ').next()?.parse().ok())
            .map(|pid| (Pid::from_raw(pid), 143))
            .collect();
        log.borrow_mut().log.retain(|l| !l.starts_with("signal "));
        log.borrow_mut().log.extend(signalled.iter().map(|(pid, _)| format!("exited {pid}")));
        signalled
    };
    let started = Instant::now();
    m.stop_all(&mut reap);
    assert!(started.elapsed() < Duration::from_secs(2), "stop waited for a timeout");
    let exits: Vec<String> = calls.borrow().log.iter().filter(|l| l.starts_with("exited")).cloned().collect();
    let web = exits.iter().position(|l| *l == format!("exited {}", pids["web"])).unwrap();
    let db = exits.iter().position(|l| *l == format!("exited {}", pids["db"])).unwrap();
    let lone = exits.iter().position(|l| *l == format!("exited {}", pids["lone"])).unwrap();
    assert!(web < db, "db stopped before web: {exits:?}");
    assert!(lone < db, "lone waited for an unrelated container: {exits:?}");
    for name in ["web", "db", "lone"] {
        assert_eq!(state(&m, name, Instant::now()).state, "stopped");
    }
}

/// An image check saying the image of the containers named in `missing` needs a pull.
struct MissingImages(Rc<RefCell<BTreeSet<String>>>);

impl ImageCheck for MissingImages {
    fn need(&self, spec: &ContainerSpec) -> Option<ImageNeed> {
        self.0.borrow().contains(spec.name.as_str()).then(|| ImageNeed {
            kind: crate::worker::JobKind::Pull,
            source: crate::image::reference::parse("registry.test/app:1").unwrap(),
        })
    }
}

#[test]
fn a_container_whose_image_is_missing_waits_for_the_job_then_starts() {
    let (mut m, calls) = manager(vec![declaration("web", ""), declaration("api", ""), declaration("db", "")]);
    let missing = Rc::new(RefCell::new(BTreeSet::from(["web".to_string(), "api".to_string()])));
    m.set_image_check(Box::new(MissingImages(missing.clone())));
    let t0 = Instant::now();
    m.tick(t0);
    assert_eq!(calls.borrow().log, vec!["launch db"], "no launch while the image is missing");
    let needs = m.take_image_needs();
    assert_eq!(needs.len(), 1, "one need per reference: {needs:?}");
    let reference = needs[0].reference();
    m.image_job_started(&reference, crate::worker::JobKind::Pull, crate::worker::JobId(3));
    let web = m.ps(t0).into_iter().find(|c| c.name == "web").unwrap();
    assert_eq!((web.state.as_str(), web.detail.as_deref()), ("waiting", Some("waiting for image pull (job 3)")));
    m.tick(t0 + Duration::from_secs(1));
    assert!(m.take_image_needs().is_empty(), "waiting containers do not ask again");
    missing.borrow_mut().clear();
    m.image_done(&reference, Ok(()), t0 + Duration::from_secs(2));
    m.tick(t0 + Duration::from_secs(2));
    assert_eq!(calls.borrow().log, vec!["launch db", "launch api", "launch web"]);
}

#[test]
fn a_failed_image_job_is_a_failed_start_under_the_restart_policy() {
    let (mut m, calls) = manager(vec![declaration("web", "restart = \"on-failure\"")]);
    let missing = Rc::new(RefCell::new(BTreeSet::from(["web".to_string()])));
    m.set_image_check(Box::new(MissingImages(missing)));
    let t0 = Instant::now();
    m.tick(t0);
    let reference = m.take_image_needs()[0].reference();
    m.image_done(&reference, Err("pull registry.test/app:1 (job 1): worker was killed by the OOM killer".into()), t0);
    let web = m.ps(t0).pop().unwrap();
    assert_eq!(web.state, "restarting");
    assert!(web.detail.unwrap().contains("OOM killer"));
    assert!(calls.borrow().log.is_empty());
    m.tick(t0 + Duration::from_secs(600));
    assert_eq!(m.take_image_needs().len(), 1, "the retry asks for a new job");
}

/// Reconcile: `wanted` declarations against the manager, planned and carried out.
fn reconcile(m: &mut Manager, wanted: Vec<Declaration>, purge: bool, now: Instant) -> plan::Plan {
    let want: BTreeMap<ContainerName, plan::Wanted> =
        wanted.iter().map(|d| (d.name.clone(), plan::Wanted { spec: d.spec.clone().unwrap(), digest: None })).collect();
    let planned = plan::plan(&m.current(), &want, &BTreeMap::new());
    m.apply_plan(&planned, wanted.into_iter().map(|d| (d.name.clone(), d)).collect(), purge, now);
    planned
}

#[test]
fn a_reconcile_restarts_the_changed_container_and_its_followers_dependents_first() {
    let set = || vec![declaration("db", ""), declaration("web", "depends_on = [\"db\"]"), declaration("lone", "")];
    let (mut m, calls) = manager(set());
    let t0 = Instant::now();
    m.tick(t0);
    m.tick(t0);
    let (db, web, lone) = (pid_of(&m, "db"), pid_of(&m, "web"), pid_of(&m, "lone"));
    // The same set, written differently: nothing is touched.
    calls.borrow_mut().log.clear();
    assert!(reconcile(&mut m, set(), false, t0).is_noop());
    m.tick(t0);
    assert!(calls.borrow().log.is_empty(), "{:?}", calls.borrow().log);
    // db changes: web (started) is signalled first, db only once web has ended.
    let mut changed = set();
    changed[0] = declaration("db", "env = { V = \"2\" }");
    let planned = reconcile(&mut m, changed, false, t0);
    assert_eq!(planned.names(plan::Action::Change), ["db"]);
    assert_eq!(planned.names(plan::Action::RestartDependent), ["web"]);
    assert_eq!(calls.borrow().log, [format!("signal {web} 15")]);
    m.tick(t0);
    assert_eq!(calls.borrow().log.len(), 1, "db is not stopped while web runs");
    m.on_exit(web, 143, t0);
    m.tick(t0);
    assert_eq!(calls.borrow().log[1], format!("signal {db} 15"));
    assert_eq!(state(&m, "web", t0).state, "waiting", "web waits for the new db");
    m.on_exit(db, 143, t0);
    m.tick(t0);
    assert_eq!(calls.borrow().log[2..], ["launch db", "launch web"]);
    assert_eq!(pid_of(&m, "lone"), lone, "an unchanged container keeps its process");
    let env = &m.entries[&ContainerName::new("db").unwrap()].spec.as_ref().unwrap().env;
    assert!(env.contains(&("V".to_string(), "2".to_string())), "{env:?}");
    assert_eq!(state(&m, "db", t0).restarts, 0);
}

#[test]
fn a_reconcile_adds_and_removes() {
    let (mut m, calls) = manager(vec![declaration("db", ""), declaration("old", "")]);
    let t0 = Instant::now();
    m.tick(t0);
    let old = pid_of(&m, "old");
    let planned = reconcile(&mut m, vec![declaration("db", ""), declaration("new", "depends_on = [\"db\"]")], true, t0);
    assert_eq!(planned.names(plan::Action::Remove), ["old"]);
    assert_eq!(planned.names(plan::Action::Add), ["new"]);
    assert_eq!(calls.borrow().log.last().unwrap(), &format!("signal {old} 15"));
    assert_eq!(state(&m, "old", t0).state, "stopping");
    assert!(m.take_removed().is_empty(), "removed only once its process ended");
    m.tick(t0);
    assert_eq!(calls.borrow().log.last().unwrap(), "launch new");
    m.on_exit(old, 143, t0);
    assert_eq!(m.take_removed(), [Removed { name: ContainerName::new("old").unwrap(), purge: true }]);
    assert!(m.ps(t0).iter().all(|c| c.name != "old"));
}

/// An image check whose store names the digest in the shared cell for every image.
struct Digests(Rc<RefCell<String>>);

impl ImageCheck for Digests {
    fn need(&self, _: &ContainerSpec) -> Option<ImageNeed> {
        None
    }
    fn digest(&self, _: &ContainerSpec) -> Option<String> {
        Some(self.0.borrow().clone())
    }
}

/// A sink that records the `[logs]` limits it is given.
struct LimitsSeen(Rc<RefCell<Vec<(String, crate::logs::LogLimits)>>>);

impl LogSink for LimitsSeen {
    fn write(&mut self, _: &ContainerName, _: Stream, _: &[u8]) {}
    fn finish(&mut self, _: &ContainerName) {}
    fn limits(&mut self, name: &ContainerName, limits: crate::logs::LogLimits) {
        self.0.borrow_mut().push((name.to_string(), limits));
    }
}

#[test]
fn a_new_digest_under_the_same_reference_restarts_the_container() {
    let (mut m, calls) = manager(vec![declaration("app", ""), declaration("other", "")]);
    let store = Rc::new(RefCell::new("sha256:aaaa".to_string()));
    m.set_image_check(Box::new(Digests(store.clone())));
    let t0 = Instant::now();
    m.tick(t0);
    let (app, other) = (pid_of(&m, "app"), pid_of(&m, "other"));
    let wanted = |m: &Manager| -> BTreeMap<ContainerName, plan::Wanted> {
        m.current()
            .into_iter()
            .map(|(n, c)| {
                let spec = c.spec.unwrap();
                let digest = if n.as_str() == "app" { m.image_digest(&spec) } else { c.digest };
                (n, plan::Wanted { spec, digest })
            })
            .collect()
    };
    // Same digest in the store: nothing to do (the control).
    assert!(plan::plan(&m.current(), &wanted(&m), &BTreeMap::new()).is_noop());
    *store.borrow_mut() = "sha256:bbbb".into();
    let planned = plan::plan(&m.current(), &wanted(&m), &BTreeMap::new());
    assert_eq!(planned.steps[0], plan::Step { name: "app".into(), action: plan::Action::Change, keys: vec![plan::DIGEST_KEY.into()] });
    m.apply_plan(&planned, BTreeMap::new(), false, t0);
    assert_eq!(calls.borrow().log.last().unwrap(), &format!("signal {app} 15"));
    m.on_exit(app, 143, t0);
    m.tick(t0);
    assert_eq!(calls.borrow().log.last().unwrap(), "launch app");
    assert_eq!(m.current()[&ContainerName::new("app").unwrap()].digest.as_deref(), Some("sha256:bbbb"));
    assert_eq!(pid_of(&m, "other"), other);
}

#[test]
fn a_started_container_hands_its_log_limits_to_the_sink() {
    let calls = Rc::new(RefCell::new(Calls::default()));
    calls.borrow_mut().failing.insert("broken".into());
    let seen = Rc::new(RefCell::new(Vec::new()));
    let mut m = Manager::new(Box::new(FakeLauncher(calls.clone())), Box::new(LimitsSeen(seen.clone())), "/var/log/keel");
    m.load(vec![
        declaration("big", "[logs]\nmax_size = \"64M\"\nmax_files = 6"),
        declaration("plain", ""),
        declaration("broken", "[logs]\nmax_files = 2"),
    ]);
    m.tick(Instant::now());
    let seen: Vec<(String, u64, u32)> = seen.borrow().iter().map(|(n, l)| (n.clone(), l.max_bytes(), l.files())).collect();
    // A launch that failed set nothing.
    assert_eq!(seen, [("big".to_string(), 64 << 20, 6), ("plain".to_string(), 10 << 20, 4)]);
}
