//! keel's default seccomp filter: an allowlist anchored on Docker's default profile.
//!
//! The policy ([`policy::RULES`]) follows moby's `default.json` (v0.2.3, Docker Engine
//! 29.7.2) rule for rule: the calls Docker allows to every container, its argument filters
//! (`clone` without namespace flags, the five `personality` values, `socket` without
//! `AF_ALG` and `AF_VSOCK`), `clone3` failing with `ENOSYS` so that glibc falls back to
//! `clone`, and the calls it grants by capability, switched on when the container keeps
//! that capability. `io_uring_*` are not on the list (Docker dropped them in 25.0).
//! The syscall-level differences from Docker are in [`policy::DIFFERENCES`]; the others are
//! in how the filter is built:
//! - only x86_64 calls are allowed: any other architecture (i386's `int 0x80`) kills the
//!   process, and x32 numbers (`__X32_SYSCALL_BIT` set) fail with `EPERM`; Docker allows
//!   both;
//! - a number above the highest the policy names fails with `ENOSYS` (Docker: `EPERM`), so
//!   programs fall back from system calls newer than the policy as they would on an older
//!   kernel; a call keel knows and does not allow fails with `EPERM`, Docker's default;
//! - argument tests compare the lower 32 bits, the part the kernel reads for these
//!   arguments; a 64-bit comparison would let `socket(0x1_0000_0028, ...)` (`AF_VSOCK` with
//!   high bits set) through `> AF_VSOCK`.
//!
//! [`default_filter`] is pure: it resolves the policy for a capability mask into a verdict
//! per system call number and compiles that into a classic-BPF binary search ([`bpf`]).
//! [`install_default_filter`] loads it into the calling thread.

pub mod bpf;
pub mod policy;
pub mod syscalls;

use std::io;

use bpf::{Insn, Verdict, RET_ALLOW, RET_EPERM, RET_ERRNO};
use policy::{Action, ArgTest, RULES};

pub use bpf::{AUDIT_ARCH_X86_64, BPF_MAX_INSNS, X32_SYSCALL_BIT};

/// Errors from building or installing the default filter.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    /// A name in [`policy::RULES`] is not an x86_64 system call (a bug in the policy).
    #[error("the seccomp policy names {name:?}, which is not an x86_64 system call")]
    UnknownSyscall {
        /// The name.
        name: &'static str,
    },
    /// Two rules that apply together give one call an errno and an argument test, or two
    /// different errnos (a bug in the policy).
    #[error("the seccomp policy gives {name:?} conflicting rules")]
    Conflict {
        /// The call.
        name: &'static str,
    },
    /// The policy names no system call at all.
    #[error("the seccomp policy is empty")]
    EmptyPolicy,
    /// An argument test names an argument past the sixth.
    #[error("seccomp argument index {index} is out of range (0-5)")]
    BadArgIndex {
        /// The index.
        index: u8,
    },
    /// One call has too many argument tests for an 8-bit jump.
    #[error("{count} argument tests on one call do not fit in a BPF jump")]
    TooManyArgTests {
        /// Number of tests.
        count: usize,
    },
    /// The program exceeds the kernel's limit.
    #[error("seccomp program has {len} instructions, the kernel accepts at most {BPF_MAX_INSNS}")]
    TooLong {
        /// Number of instructions built.
        len: usize,
    },
    /// The filter is written for x86_64 and would kill every process elsewhere.
    #[error("the default seccomp filter is x86_64-only; this build targets {arch}")]
    UnsupportedArch {
        /// `std::env::consts::ARCH` of this build.
        arch: &'static str,
    },
    /// The kernel refused with `EACCES`: no_new_privs is unset and `CAP_SYS_ADMIN` is missing.
    #[error("installing the seccomp filter needs no_new_privs or CAP_SYS_ADMIN")]
    NotPermitted,
    /// `seccomp(SECCOMP_SET_MODE_FILTER)` failed otherwise.
    #[error("installing the seccomp filter: {0}")]
    Install(#[source] io::Error),
}

/// Builds the filter for a container keeping `kept_caps` (bit n = capability n), for
/// x86_64 (pure; works on any build host).
pub fn default_filter(kept_caps: u64) -> Result<Vec<Insn>, SeccompError> {
    bpf::program(&verdicts(kept_caps)?)
}

/// Builds [`default_filter`] for `kept_caps` and installs it on the calling thread.
///
/// Requires no_new_privs ([`super::caps::set_no_new_privs`]) or `CAP_SYS_ADMIN` in the
/// effective set. Irreversible; inherited by children and kept across `execve`.
pub fn install_default_filter(kept_caps: u64) -> Result<(), SeccompError> {
    if !cfg!(target_arch = "x86_64") {
        return Err(SeccompError::UnsupportedArch { arch: std::env::consts::ARCH });
    }
    let program = default_filter(kept_caps)?;
    super::sys::set_mode_filter(&program).map_err(|e| match e.raw_os_error() {
        Some(libc::EACCES) => SeccompError::NotPermitted,
        _ => SeccompError::Install(e),
    })
}

/// The highest system call number the policy names, under any capability mask: numbers
/// above it fail with `ENOSYS`.
pub fn highest_listed() -> Result<u32, SeccompError> {
    let mut highest = None;
    for rule in RULES {
        for &name in rule.names {
            let nr = syscalls::number(name).ok_or(SeccompError::UnknownSyscall { name })?;
            highest = highest.max(Some(nr));
        }
    }
    highest.ok_or(SeccompError::EmptyPolicy)
}

/// The verdict for every number from 0 to [`highest_listed`] for a container keeping
/// `kept_caps`. Of the rules that apply to a call, an unconditional allow wins, then the
/// union of the argument tests, then an errno; a call no rule covers gets `EPERM`.
pub fn verdicts(kept_caps: u64) -> Result<Vec<Verdict>, SeccompError> {
    // Numbers come from the x86_64 table, all below 1000.
    let size = highest_listed()? as usize + 1;
    let mut grants: Vec<Grants> = vec![Grants::default(); size];
    for rule in RULES.iter().filter(|r| r.when.holds(kept_caps)) {
        for &name in rule.names {
            let nr = syscalls::number(name).ok_or(SeccompError::UnknownSyscall { name })?;
            let slot = usize::try_from(nr).ok().and_then(|i| grants.get_mut(i));
            let slot = slot.ok_or(SeccompError::UnknownSyscall { name })?;
            slot.add(name, rule.action, rule.any_arg)?;
        }
    }
    grants.into_iter().map(Grants::verdict).collect()
}

/// What the applicable rules grant one call.
#[derive(Debug, Clone, Default)]
struct Grants {
    name: Option<&'static str>,
    always: bool,
    tests: Vec<ArgTest>,
    errno: Option<u16>,
}

impl Grants {
    fn add(&mut self, name: &'static str, action: Action, any_arg: &[ArgTest]) -> Result<(), SeccompError> {
        self.name = Some(name);
        match (action, any_arg.is_empty()) {
            (Action::Allow, true) => self.always = true,
            (Action::Allow, false) => self.tests.extend_from_slice(any_arg),
            (Action::Errno(e), true) if self.errno.is_none_or(|prev| prev == e) => self.errno = Some(e),
            (Action::Errno(_), _) => return Err(SeccompError::Conflict { name }),
        }
        Ok(())
    }

    fn verdict(self) -> Result<Verdict, SeccompError> {
        if self.always {
            return Ok(Verdict::Ret(RET_ALLOW));
        }
        match (self.tests.is_empty(), self.errno, self.name) {
            (false, Some(_), Some(name)) => Err(SeccompError::Conflict { name }),
            (false, _, _) => Ok(Verdict::Args(self.tests)),
            (true, Some(e), _) => Ok(Verdict::Ret(RET_ERRNO | u32::from(e))),
            (true, None, _) => Ok(Verdict::Ret(RET_EPERM)),
        }
    }
}

#[cfg(test)]
mod tests;
