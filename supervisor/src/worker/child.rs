//! The worker's side: what `work` reports through, and the body of the forked child
//! (join the cgroup, drop PID 1's privileges over the OOM killer and its descriptors,
//! run the work, write the last line, exit).
#![allow(unsafe_code)]

use super::{Progress, WorkerCgroup, WorkerEvent};
use std::cell::RefCell;
use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use std::rc::Rc;
use std::time::{Duration, Instant};

/// Least time between two progress lines of one item (≤ 5 a second).
pub const PROGRESS_INTERVAL: Duration = Duration::from_millis(200);

/// Whether a progress line for an item is worth sending now: the first one, a new
/// phase, the item's end, or enough time since the last one sent.
pub(super) fn due(last: Option<&(Instant, String)>, now: Instant, progress: &Progress) -> bool {
    match last {
        None => true,
        Some((_, phase)) if *phase != progress.phase => true,
        _ if progress.total == Some(progress.done) => true,
        Some((at, _)) => now.duration_since(*at) >= PROGRESS_INTERVAL,
    }
}

struct Pipe {
    file: Option<File>,
    sent: HashMap<String, (Instant, String)>,
}

/// The child's handle on its event pipe: `work` reports progress and log lines here.
/// Clones share the pipe and the rate limits (one can be handed to
/// [`crate::image::observe`] while `work` holds another).
#[derive(Clone)]
pub struct Reporter {
    pipe: Rc<RefCell<Pipe>>,
}

impl Reporter {
    /// A reporter writing to `pipe` (in a worker, the event pipe's write end).
    pub fn new(pipe: File) -> Self {
        Reporter { pipe: Rc::new(RefCell::new(Pipe { file: Some(pipe), sent: HashMap::new() })) }
    }

    /// A reporter that drops everything (to run a job's work in-process, e.g. in tests
    /// or in `keel image unpack`).
    pub fn discard() -> Self {
        Reporter { pipe: Rc::new(RefCell::new(Pipe { file: None, sent: HashMap::new() })) }
    }

    /// Report how far an item is; rate-limited per item.
    pub fn progress(&mut self, progress: Progress) {
        let now = Instant::now();
        {
            let mut pipe = self.pipe.borrow_mut();
            if !due(pipe.sent.get(&progress.item), now, &progress) {
                return;
            }
            pipe.sent.insert(progress.item.clone(), (now, progress.phase.clone()));
        }
        self.send(&WorkerEvent::Progress(progress));
    }

    /// A line for PID 1's log (the worker itself logs nothing: PID 1's logger is off in it).
    pub fn log(&mut self, message: &str) {
        self.send(&WorkerEvent::Log(message.to_string()));
    }

    pub(super) fn send(&mut self, event: &WorkerEvent) {
        let mut pipe = self.pipe.borrow_mut();
        let Some(file) = pipe.file.as_mut() else { return };
        let Ok(mut line) = serde_json::to_string(event) else { return };
        line.push('\n');
        if file.write_all(line.as_bytes()).is_err() {
            // PID 1 stopped listening (it cancelled the job); nothing more to say.
            pipe.file = None;
        }
    }
}

/// Close every descriptor above stderr except `keep`.
fn close_inherited(keep: i32) {
    let ranges = [(3, keep - 1), (keep + 1, i32::MAX)];
    for (first, last) in ranges {
        if first > last {
            continue;
        }
        // SAFETY: close_range only closes descriptors; this single-threaded child owns
        // every descriptor it inherited and uses none of them after this point.
        let done = unsafe { libc::syscall(libc::SYS_close_range, first as libc::c_uint, last as libc::c_uint, 0 as libc::c_uint) };
        if done != 0 {
            for fd in first..last.min(4096) {
                // SAFETY: as above; closing an fd that is not open is EBADF, harmless.
                unsafe { libc::close(fd) };
            }
        }
    }
}

fn panic_text(payload: &Box<dyn std::any::Any + Send>) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

/// The forked child: returns its exit code (0: Done written, 1: Failed written).
pub(super) fn run_child(
    write_end: OwnedFd,
    cgroup: Option<&WorkerCgroup>,
    work: impl FnOnce(&mut Reporter) -> Result<serde_json::Value, String>,
) -> i32 {
    // PID 1's logger writes to descriptors closed below; a record written after
    // that could land in a file the work opened. The work reports through the pipe.
    log::set_max_level(log::LevelFilter::Off);
    close_inherited(write_end.as_raw_fd());
    let mut reporter = Reporter::new(File::from(write_end));
    if let Some(cgroup) = cgroup {
        if let Err((path, e)) = cgroup.join_self() {
            reporter.send(&WorkerEvent::Failed(format!("cannot enter the worker cgroup {}: {e}", path.display())));
            return 1;
        }
    }
    // PID 1 is exempt from the OOM killer and its forks inherit that; a worker must be
    // the first thing its cgroup's OOM killer picks, never unkillable.
    let _ = crate::cgroup::oom::set_oom_score_adj(None, 0);
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(&mut reporter)));
    let (event, code) = match outcome {
        Ok(Ok(value)) => (WorkerEvent::Done(value), 0),
        Ok(Err(message)) => (WorkerEvent::Failed(message), 1),
        Err(payload) => (WorkerEvent::Failed(format!("the worker panicked: {}", panic_text(&payload))), 1),
    };
    reporter.send(&event);
    code
}

#[cfg(test)]
impl Reporter {
    /// Write raw bytes on the pipe (tests of the parent's protocol checks).
    pub(super) fn raw(&mut self, bytes: &[u8]) {
        if let Some(file) = self.pipe.borrow_mut().file.as_mut() {
            let _ = file.write_all(bytes);
        }
    }
}
