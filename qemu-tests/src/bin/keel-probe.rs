//! keel-probe: a small static program that the QEMU tests put in images and run in the
//! guest (on the host or, later, inside containers) to report what it sees.
//!
//! Subcommands:
//! - `orphans N`: start N children that each fork a grandchild and exit at once, so the
//!   N grandchildren are orphaned to PID 1 (they exit shortly after).
//! - `zombies`: count the processes in state Z (from /proc) and list them.
//! - `hold-zombie SECS`: detach, and leave one zombie child unreaped for SECS seconds —
//!   the negative control that shows `zombies` does see a zombie.

use nix::sys::wait::waitpid;
use nix::unistd::{fork, ForkResult};
use std::time::Duration;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let code = match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["orphans", n] => n.parse().map(orphans).unwrap_or_else(|_| usage()),
        ["zombies"] => zombies(),
        ["hold-zombie", secs] => secs.parse().map(hold_zombie).unwrap_or_else(|_| usage()),
        _ => usage(),
    };
    std::process::exit(code);
}

fn usage() -> i32 {
    eprintln!("usage: keel-probe orphans N | zombies | hold-zombie SECS");
    2
}

/// Fork, returning in the child; the parent returns its child's pid.
fn fork_or_die() -> Option<nix::unistd::Pid> {
    // SAFETY: the probe is single-threaded; the children only sleep and `_exit`.
    match unsafe { fork() } {
        Ok(ForkResult::Parent { child }) => Some(child),
        Ok(ForkResult::Child) => None,
        Err(e) => {
            eprintln!("keel-probe: fork: {e}");
            std::process::exit(1)
        }
    }
}

fn exit_now(code: i32) -> ! {
    // SAFETY: `_exit` ends a forked child without running the parent's exit handlers.
    unsafe { libc::_exit(code) }
}

fn orphans(count: usize) -> i32 {
    let mut children = Vec::with_capacity(count);
    for _ in 0..count {
        match fork_or_die() {
            Some(child) => children.push(child),
            None => {
                if fork_or_die().is_none() {
                    std::thread::sleep(Duration::from_millis(100));
                    exit_now(0);
                }
                exit_now(0);
            }
        }
    }
    for child in &children {
        let _ = waitpid(*child, None);
    }
    println!("orphaned {count} grandchildren");
    0
}

/// (pid, ppid) of every process in state Z.
fn zombie_list() -> Vec<(u32, u32)> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let after_name = &stat[stat.rfind(')')? + 2..];
            let mut fields = after_name.split_whitespace();
            let state = fields.next()?;
            let ppid = fields.next()?.parse().ok()?;
            (state == "Z").then_some((pid, ppid))
        })
        .collect()
}

fn zombies() -> i32 {
    let list = zombie_list();
    println!("zombies: {}", list.len());
    for (pid, ppid) in list {
        println!("zombie pid={pid} ppid={ppid}");
    }
    0
}

fn hold_zombie(secs: u64) -> i32 {
    if fork_or_die().is_some() {
        return 0;
    }
    let _ = nix::unistd::setsid();
    if let Ok(null) = std::fs::OpenOptions::new().read(true).write(true).open("/dev/null") {
        use std::os::fd::AsRawFd;
        for fd in 0..3 {
            // SAFETY: dup2 onto the standard descriptors, so the exec helper sees EOF.
            unsafe { libc::dup2(null.as_raw_fd(), fd) };
        }
    }
    if fork_or_die().is_none() {
        exit_now(0);
    }
    std::thread::sleep(Duration::from_secs(secs));
    exit_now(0)
}
