//! clone3(2): start a process in new namespaces (and, optionally, straight into its
//! cgroup), with fork-like semantics.
//!
//! keel calls clone3 directly because neither std nor nix offer it, and only clone3
//! can place the child into its cgroup atomically (CLONE_INTO_CGROUP), so that no
//! process of a container ever runs outside its limits. Callers are single-threaded
//! (PID 1's loop, `keel run`), so the child is a full copy holding no lock.
#![allow(unsafe_code)]

use nix::sched::CloneFlags;
use nix::unistd::Pid;
use std::os::fd::{AsRawFd, BorrowedFd};

const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// `struct clone_args` (linux/sched.h), version 2 (with `cgroup`).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// Which side of the clone this is.
pub enum Cloned {
    /// The parent, with the child's pid.
    Parent(Pid),
    /// The child.
    Child,
}

/// clone3 with `flags`, SIGCHLD on exit, and the child placed in `cgroup` if given.
pub fn clone3(flags: CloneFlags, cgroup: Option<BorrowedFd<'_>>) -> nix::Result<Cloned> {
    let mut args = CloneArgs { flags: flags.bits() as u64, exit_signal: libc::SIGCHLD as u64, ..Default::default() };
    if let Some(fd) = cgroup {
        args.flags |= CLONE_INTO_CGROUP;
        args.cgroup = fd.as_raw_fd() as u64;
    }
    // SAFETY: `args` is a valid, fully initialised clone_args of the size passed; with
    // no stack given the child continues on a copy of this stack, like fork(2). The
    // caller is single-threaded, so the child holds no lock of another thread.
    let ret = unsafe { libc::syscall(libc::SYS_clone3, &mut args as *mut CloneArgs, std::mem::size_of::<CloneArgs>()) };
    match ret {
        -1 => Err(nix::Error::last()),
        0 => Ok(Cloned::Child),
        pid => Ok(Cloned::Parent(Pid::from_raw(pid as i32))),
    }
}

/// End a cloned child at once, without running the parent's exit handlers.
pub fn exit_child(code: i32) -> ! {
    // SAFETY: `_exit` is async-signal-safe and never returns; the child must not run
    // atexit handlers or unwind into the parent's copied stack.
    unsafe { libc::_exit(code) }
}
