//! Host test (issue 12): out of descriptors, accepting on the control socket must not
//! spin PID 1's loop. With RLIMIT_NOFILE lowered and every descriptor taken, a client
//! waits in the backlog and `accept` fails with EMFILE on every try. The loop below is
//! PID 1's shape (poll the listener, accept when readable): with [`AcceptBackoff`] it
//! wakes a few times in a second and warns once; the negative control, the same loop
//! without it, wakes thousands of times.
//!
//! One test in this file: the descriptor limit is per process.

use keel_init::accept_backoff::{AcceptBackoff, ACCEPT_PAUSE};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use std::os::fd::AsFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::{Duration, Instant};

/// Run PID 1's accept loop for `run`; returns (wake-ups, warnings logged).
fn accept_loop(listener: &UnixListener, backoff: Option<&mut AcceptBackoff>, run: Duration) -> (u64, u64) {
    let mut fallback = AcceptBackoff::default();
    let (backoff, use_it) = match backoff {
        Some(b) => (b, true),
        None => (&mut fallback, false),
    };
    let end = Instant::now() + run;
    let (mut wakeups, mut warnings) = (0, 0);
    while Instant::now() < end {
        let now = Instant::now();
        let paused = use_it && backoff.is_paused(now);
        let until = if use_it { backoff.deadline(now).map_or(end, |d| d.min(end)) } else { end };
        // As the event loop does: one millisecond more, so a deadline is never polled for in 0 ms.
        let timeout = PollTimeout::try_from(until.saturating_duration_since(now) + Duration::from_millis(1)).unwrap_or(PollTimeout::MAX);
        let mut fds: Vec<PollFd> = if paused { Vec::new() } else { vec![PollFd::new(listener.as_fd(), PollFlags::POLLIN)] };
        let _ = poll(&mut fds, timeout);
        wakeups += 1;
        if !paused && fds[0].revents().is_some_and(|r| r.contains(PollFlags::POLLIN)) {
            match listener.accept() {
                Ok(_) => panic!("accepted with no descriptor free"),
                Err(e) => {
                    if !use_it || backoff.on_error(&e, Instant::now()).is_some() {
                        warnings += 1;
                    }
                }
            }
        }
    }
    (wakeups, warnings)
}

#[test]
fn out_of_descriptors_the_accept_loop_backs_off_instead_of_spinning() {
    let dir = std::env::temp_dir().join(format!("keel-accept-backoff-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("control.sock");
    let listener = UnixListener::bind(&path).unwrap();
    listener.set_nonblocking(true).unwrap();
    let _client = UnixStream::connect(&path).unwrap();

    // Take every descriptor below a low limit.
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit and setrlimit only read and write the struct on the stack.
    let set = unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        limit.rlim_cur = 64;
        libc::setrlimit(libc::RLIMIT_NOFILE, &limit)
    };
    assert_eq!(set, 0, "setrlimit: {}", std::io::Error::last_os_error());
    let mut held = Vec::new();
    while let Ok(file) = std::fs::File::open("/dev/null") {
        held.push(file);
    }
    let e = listener.accept().expect_err("no descriptor left");
    assert_eq!(e.raw_os_error(), Some(nix::errno::Errno::EMFILE as i32), "{e}");

    let run = Duration::from_secs(1);
    let (spins, spin_warnings) = accept_loop(&listener, None, run);
    let mut backoff = AcceptBackoff::default();
    let (wakeups, warnings) = accept_loop(&listener, Some(&mut backoff), run);
    drop(held);
    eprintln!("without the backoff: {spins} wake-ups, {spin_warnings} warnings; with it: {wakeups} wake-ups, {warnings} warning(s)");
    assert!(spins > 1000, "control: the plain loop woke only {spins} times; the test cannot see a spin");
    let most = 2 * (run.as_millis() / ACCEPT_PAUSE.as_millis()) as u64 + 2;
    assert!(wakeups <= most, "the loop woke {wakeups} times in {run:?} (at most {most} expected)");
    assert_eq!(warnings, 1, "one warning per period");
    // With descriptors back, the waiting client is accepted.
    assert!(listener.accept().is_ok());
    let _ = std::fs::remove_dir_all(&dir);
}
