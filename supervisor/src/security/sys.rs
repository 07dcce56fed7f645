//! The one raw system call of the security module: `seccomp(SECCOMP_SET_MODE_FILTER)`.
//!
//! `unsafe` is allowed in this file only. Neither rustix nor nix wraps filter installation,
//! and the crates that do (seccompiler's `apply_filter`) set no_new_privs first, which would
//! take that decision away from the container spec (setuid binaries would stop working).
#![allow(unsafe_code)]

use std::io;

use super::seccomp::bpf::Insn;

/// Installs `program` as a seccomp filter on the calling thread (flags 0: no TSYNC, since the
/// container child is single-threaded). The kernel copies the program before returning.
///
/// Fails with `EACCES` unless no_new_privs is set or the thread has `CAP_SYS_ADMIN`, and with
/// `EINVAL` if the program is empty, longer than 4096 instructions or invalid.
pub(super) fn set_mode_filter(program: &[Insn]) -> io::Result<()> {
    let len = u16::try_from(program.len()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // Copy into libc's identical `repr(C)` layout instead of casting pointers.
    let mut insns: Vec<libc::sock_filter> =
        program.iter().map(|i| libc::sock_filter { code: i.code, jt: i.jt, jf: i.jf, k: i.k }).collect();
    let prog = libc::sock_fprog { len, filter: insns.as_mut_ptr() };
    // SAFETY: `prog` points at `insns`, a live buffer of exactly `len` initialised
    // instructions that outlives the call; the kernel only reads it (copy_from_user) and
    // keeps no pointer after returning. The remaining arguments are plain integers.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::c_ulong::from(libc::SECCOMP_SET_MODE_FILTER),
            0 as libc::c_ulong,
            &prog as *const libc::sock_fprog,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
