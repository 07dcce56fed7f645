use super::cgroup::{counts_oom_kill, enable_line};
use super::child::{due, PROGRESS_INTERVAL};
use super::parent::{decide, Ending, Interventions, Outcome};
use super::*;
use serde_json::json;
use std::time::{Duration, Instant};

fn limits(deadline: Duration) -> JobLimits {
    JobLimits { memory_max: 64 << 20, deadline }
}

/// Fork a real worker (no cgroup: this host's root is not delegated) and run it to its end.
fn run(
    deadline: Duration,
    work: impl FnOnce(&mut Reporter) -> Result<serde_json::Value, String>,
) -> (Result<serde_json::Value, WorkerError>, Vec<WorkerEvent>) {
    let worker = spawn(JobId(3), JobKind::Pull, "registry.test/busybox:1", limits(deadline), None, work).unwrap();
    let mut events = Vec::new();
    let result = worker.wait(Duration::from_millis(20), &mut |e| events.push(e.clone()), &mut || {});
    (result, events)
}

#[test]
fn done_carries_the_result_after_progress_and_log() {
    let (result, events) = run(Duration::from_secs(20), |r| {
        r.log("starting");
        r.progress(Progress { item: "abc".into(), phase: "download".into(), done: 5, total: Some(10) });
        r.progress(Progress { item: "abc".into(), phase: "download".into(), done: 10, total: Some(10) });
        Ok(json!({"manifest": "sha256:1"}))
    });
    assert_eq!(result.unwrap(), json!({"manifest": "sha256:1"}));
    assert_eq!(events[0], WorkerEvent::Log("starting".into()));
    assert_eq!(events.len(), 4, "{events:?}");
    assert!(matches!(&events[2], WorkerEvent::Progress(p) if p.done == 10));
}

#[test]
fn failed_names_the_job() {
    let (result, _) = run(Duration::from_secs(20), |_| Err("no space left on /var".into()));
    let err = result.unwrap_err();
    assert!(matches!(&err, WorkerError::Failed { message, .. } if message == "no space left on /var"));
    assert_eq!(err.to_string(), "pull registry.test/busybox:1 (job 3): no space left on /var");
}

#[test]
fn a_panic_in_work_is_a_failure_not_a_crash() {
    let (result, _) = run(Duration::from_secs(20), |_| panic!("layer 2 exploded"));
    let err = result.unwrap_err().to_string();
    assert!(err.contains("(job 3): the worker panicked: layer 2 exploded"), "{err}");
}

#[test]
fn past_its_deadline_it_is_killed_and_timed_out() {
    let started = Instant::now();
    let (result, _) = run(Duration::from_millis(300), |_| {
        std::thread::sleep(Duration::from_secs(30));
        Ok(json!(null))
    });
    assert!(started.elapsed() < Duration::from_secs(10));
    let err = result.unwrap_err();
    assert!(matches!(err, WorkerError::TimedOut { .. }), "{err}");
    assert!(err.to_string().contains("(job 3): did not finish within 0s"), "{err}");
}

#[test]
fn killed_is_died_with_the_signal() {
    let worker = spawn(JobId(4), JobKind::Import, "web", limits(Duration::from_secs(60)), None, |_| {
        std::thread::sleep(Duration::from_secs(30));
        Ok(json!(null))
    })
    .unwrap();
    worker.kill();
    let err = worker.wait(Duration::from_millis(20), &mut |_| {}, &mut || {}).unwrap_err();
    assert!(matches!(err, WorkerError::Died { code: 137, oom: false, .. }), "{err:?}");
    assert_eq!(err.to_string(), "import web (job 4): worker was killed by signal 9");
}

#[test]
fn garbage_on_the_pipe_is_a_protocol_error() {
    let (result, _) = run(Duration::from_secs(20), |r| {
        r.raw(b"this is not json\n");
        std::thread::sleep(Duration::from_secs(30));
        Ok(json!(null))
    });
    let err = result.unwrap_err();
    assert!(matches!(err, WorkerError::Protocol { .. }), "{err:?}");
    assert!(err.to_string().contains("not an event line"), "{err}");
}

#[test]
fn an_endless_line_is_a_protocol_error() {
    let (result, _) = run(Duration::from_secs(20), |r| {
        r.raw(&vec![b'x'; MAX_EVENT_LINE + 10]);
        Ok(json!(null))
    });
    let err = result.unwrap_err();
    assert!(err.to_string().contains("longer than 1048576 bytes"), "{err}");
}

#[test]
fn the_worker_holds_no_inherited_descriptor() {
    let leaked = std::fs::File::open("/proc/self/status").unwrap();
    let (result, _) = run(Duration::from_secs(20), |_| {
        let fds: Vec<String> = std::fs::read_dir("/proc/self/fd")
            .map_err(|e| e.to_string())?
            .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
            .collect();
        Ok(json!(fds))
    });
    drop(leaked);
    let fds: Vec<u32> = serde_json::from_value::<Vec<String>>(result.unwrap()).unwrap().iter().map(|s| s.parse().unwrap()).collect();
    // 0, 1, 2, the pipe, and the directory read_dir had open.
    assert_eq!(fds.iter().filter(|&&fd| fd > 2).count(), 2, "{fds:?}");
}

#[test]
fn exit_without_a_result_is_died() {
    let (result, _) = run(Duration::from_secs(20), |_| std::process::exit(0));
    let err = result.unwrap_err();
    assert_eq!(err.to_string(), "pull registry.test/busybox:1 (job 3): worker exited with code 0 without a result");
}

#[test]
fn decide_orders_the_causes() {
    let l = limits(Duration::from_secs(60));
    let job = || "pull x (job 1)".to_string();
    let none = Interventions::default();
    let done = Some(Outcome::Done(json!(1)));
    assert_eq!(
        decide(job(), Ending { outcome: done.clone(), protocol: None, done: none, code: 0, oom: false }, &l, None).unwrap(),
        json!(1)
    );
    let oom = decide(job(), Ending { outcome: None, protocol: None, done: none, code: 137, oom: true }, &l, Some(16 << 20)).unwrap_err();
    assert_eq!(oom.to_string(), "pull x (job 1): worker was killed by the OOM killer (memory.max 16 MiB)");
    let failed_then_oom = decide(
        job(),
        Ending { outcome: Some(Outcome::Failed("x".into())), protocol: None, done: none, code: 137, oom: true },
        &l,
        Some(1 << 20),
    )
    .unwrap_err();
    assert!(matches!(failed_then_oom, WorkerError::Died { oom: true, .. }));
    let cancelled = Interventions { cancelled: true, ..none };
    assert!(matches!(
        decide(job(), Ending { outcome: done.clone(), protocol: None, done: cancelled, code: 0, oom: false }, &l, None),
        Err(WorkerError::Cancelled { .. })
    ));
    let protocol =
        decide(job(), Ending { outcome: done, protocol: Some("bad".into()), done: none, code: 0, oom: false }, &l, None).unwrap_err();
    assert!(matches!(protocol, WorkerError::Protocol { .. }));
    let timed = Interventions { timed_out: true, ..none };
    assert!(matches!(
        decide(job(), Ending { outcome: None, protocol: None, done: timed, code: 137, oom: false }, &l, None),
        Err(WorkerError::TimedOut { .. })
    ));
}

#[test]
fn line_buffer_splits_and_bounds() {
    let mut buffer = LineBuffer::new(8);
    assert_eq!(buffer.push(b"ab\ncd").unwrap(), vec!["ab".to_string()]);
    assert_eq!(buffer.push(b"e\n\n").unwrap(), vec!["cde".to_string(), String::new()]);
    assert_eq!(buffer.push(b"12345678").unwrap(), Vec::<String>::new());
    assert_eq!(buffer.push(b"9"), Err(LineError::TooLong { limit: 8 }));
    let mut buffer = LineBuffer::new(4);
    assert!(buffer.push(b"123456\n").is_err());
}

#[test]
fn cgroup_text_helpers() {
    assert_eq!(enable_line("cpuset cpu io memory hugetlb pids rdma misc"), "+memory +pids");
    assert_eq!(enable_line("cpu io"), "");
    assert!(counts_oom_kill("low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\noom_group_kill 0\n"));
    assert!(!counts_oom_kill("low 0\nhigh 0\nmax 12\noom 1\noom_kill 0\n"));
    assert_eq!(
        WorkerCgroup::path(std::path::Path::new("/sys/fs/cgroup"), JobKind::Load, JobId(7)).to_str(),
        Some("/sys/fs/cgroup/workers/load-7")
    );
}

#[test]
fn progress_is_rate_limited_per_item() {
    let now = Instant::now();
    let p = |done, phase: &str| Progress { item: "a".into(), phase: phase.into(), done, total: Some(100) };
    let last = (now, "download".to_string());
    assert!(due(None, now, &p(1, "download")));
    assert!(!due(Some(&last), now + Duration::from_millis(10), &p(2, "download")));
    assert!(due(Some(&last), now + PROGRESS_INTERVAL, &p(2, "download")));
    assert!(due(Some(&last), now, &p(100, "download")), "the end is always sent");
    assert!(due(Some(&last), now, &p(0, "unpack")), "a new phase is always sent");
}

#[test]
fn kinds_and_ids_read_as_words() {
    assert_eq!(serde_json::to_string(&JobKind::Firstboot).unwrap(), "\"firstboot\"");
    assert_eq!(job_label(JobId(3), JobKind::Pull, "docker.io/library/busybox:1.36"), "pull docker.io/library/busybox:1.36 (job 3)");
    assert_eq!(JobLimits::for_kind(JobKind::Inspect).memory_max, 256 << 20);
    let line = serde_json::to_string(&WorkerEvent::Failed("x".into())).unwrap();
    assert_eq!(line, r#"{"failed":"x"}"#);
}
