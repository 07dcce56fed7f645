//! Work PID 1 must not wait for (a healthcheck, a `keelctl exec`) runs in a forked copy
//! of PID 1 that does it and exits; PID 1 only reaps it.
#![allow(unsafe_code)]

use nix::sys::signal::{sigprocmask, SigSet, SigmaskHow};
use nix::unistd::{fork, ForkResult, Pid};

/// Fork a helper that runs `work` and exits with the code it returns. Returns the
/// helper's pid. The caller must be single-threaded (PID 1 is), so the copy holds no
/// lock another thread could own.
pub fn run_forked(work: impl FnOnce() -> i32) -> nix::Result<Pid> {
    // SAFETY: the caller is single-threaded, so the child is a complete copy with no
    // lock held by another thread; the child ends in `_exit` and never returns.
    match unsafe { fork() }? {
        ForkResult::Parent { child } => Ok(child),
        ForkResult::Child => {
            let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
            let code = std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)).unwrap_or(70);
            // SAFETY: `_exit` ends the helper without running the parent's atexit
            // handlers or unwinding into PID 1's stack, which this copy must not do.
            unsafe { libc::_exit(code) }
        }
    }
}
