//! keel's default seccomp filter: a deny-list in the spirit of Docker's default profile.
//!
//! Everything is allowed except:
//! - the system calls in [`DENIED_SYSCALLS`], which fail with `EPERM`;
//! - `clone` asking for a new namespace ([`CLONE_NAMESPACE_FLAGS`]), `EPERM`, because
//!   denying `unshare` alone would leave `clone(CLONE_NEWUSER)` open;
//! - `clone3`, which fails with `ENOSYS` as in Docker: its flags sit behind a pointer that
//!   seccomp cannot read, and glibc falls back to `clone` on `ENOSYS` (not on `EPERM`);
//! - x32 system calls (number has bit 30 set), `EPERM`;
//! - any architecture other than x86_64 (i386 `int 0x80`), which kills the process.
//!
//! [`default_filter`] is pure: it builds the BPF program (the syscall-number part with
//! `seccompiler`, the arch/x32/clone3 guard by hand in `guard_prefix`) and can be
//! inspected on any host. [`install_default_filter`] loads it into the calling thread.
//!
//! Deliberately not denied: `personality` (Docker only restricts its argument), `fsconfig`
//! (useless without an `fsopen` context), `mount_setattr` and `quotactl_fd` (need
//! `CAP_SYS_ADMIN`, which the default capability mask drops).

use std::collections::BTreeMap;
use std::io;

use seccompiler::{
    sock_filter, BackendError, BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp,
    SeccompCondition, SeccompFilter, SeccompRule, TargetArch,
};

/// System calls the default filter makes fail with `EPERM` regardless of arguments.
///
/// `unshare` and `setns` are denied outright (Docker allows them with `CAP_SYS_ADMIN`);
/// `mbind`, `set_mempolicy` and `move_pages` are denied (Docker gates them on
/// `CAP_SYS_NICE`).
pub const DENIED_SYSCALLS: &[&str] = &[
    "kexec_load",
    "kexec_file_load",
    "init_module",
    "finit_module",
    "delete_module",
    "create_module",
    "get_kernel_syms",
    "query_module",
    "keyctl",
    "add_key",
    "request_key",
    "bpf",
    "reboot",
    "swapon",
    "swapoff",
    "mount",
    "umount2",
    "pivot_root",
    "move_mount",
    "open_tree",
    "fsopen",
    "fsmount",
    "fspick",
    "acct",
    "settimeofday",
    "clock_settime",
    "clock_adjtime",
    "adjtimex",
    "iopl",
    "ioperm",
    "nfsservctl",
    "perf_event_open",
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "lookup_dcookie",
    "quotactl",
    "userfaultfd",
    "syslog",
    "vhangup",
    "uselib",
    "unshare",
    "setns",
    "open_by_handle_at",
    "name_to_handle_at",
    "kcmp",
    "_sysctl",
    "mbind",
    "set_mempolicy",
    "move_pages",
];

/// `clone` flags that create namespaces; `clone` with any of them fails with `EPERM`
/// (`CLONE_NEWNS`, `CLONE_NEWCGROUP`, `CLONE_NEWUTS`, `CLONE_NEWIPC`, `CLONE_NEWUSER`,
/// `CLONE_NEWPID`, `CLONE_NEWNET`; the same mask as Docker's profile).
pub const CLONE_NAMESPACE_FLAGS: u64 = 0x7E02_0000;

/// `AUDIT_ARCH_X86_64` from `<linux/audit.h>`: `EM_X86_64 | __AUDIT_ARCH_64BIT | __AUDIT_ARCH_LE`.
pub const AUDIT_ARCH_X86_64: u32 = 62 | 0x8000_0000 | 0x4000_0000;

/// `__X32_SYSCALL_BIT`: x32 system call numbers are offset by this.
pub const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// Longest program the kernel accepts (`BPF_MAXINSNS`).
pub const BPF_MAX_INSNS: usize = 4096;

/// x86_64 numbers of `clone` and `clone3`.
const NR_CLONE: i64 = 56;
const NR_CLONE3: u32 = 435;

/// Offsets in `struct seccomp_data { int nr; u32 arch; u64 ip; u64 args[6]; }`.
const DATA_NR: u32 = 0;
const DATA_ARCH: u32 = 4;

/// Classic BPF opcodes used by `guard_prefix` (`<linux/bpf_common.h>`).
const LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
const JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
const JGE_K: u16 = 0x35; // BPF_JMP | BPF_JGE | BPF_K
const RET_K: u16 = 0x06; // BPF_RET | BPF_K

/// Seccomp return values (`<linux/seccomp.h>`).
const RET_KILL_PROCESS: u32 = 0x8000_0000;
const RET_ERRNO: u32 = 0x0005_0000;

/// Errors from building or installing the default filter.
#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    /// A name in [`DENIED_SYSCALLS`] has no x86_64 number in [`x86_64_nr`] (a bug here).
    #[error("no x86_64 syscall number for {name:?}")]
    UnknownSyscall {
        /// The name without a number.
        name: &'static str,
    },
    /// `seccompiler` rejected the rules.
    #[error("compiling the seccomp filter: {0}")]
    Compile(#[source] BackendError),
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

/// x86_64 system call number of every name in [`DENIED_SYSCALLS`]
/// (`arch/x86/entry/syscalls/syscall_64.tbl`), independent of the build target.
pub fn x86_64_nr(name: &str) -> Option<i64> {
    let nr = match name {
        "ptrace" => 101,
        "syslog" => 103,
        "uselib" => 134,
        "vhangup" => 153,
        "pivot_root" => 155,
        "_sysctl" => 156,
        "adjtimex" => 159,
        "acct" => 163,
        "settimeofday" => 164,
        "mount" => 165,
        "umount2" => 166,
        "swapon" => 167,
        "swapoff" => 168,
        "reboot" => 169,
        "iopl" => 172,
        "ioperm" => 173,
        "create_module" => 174,
        "init_module" => 175,
        "delete_module" => 176,
        "get_kernel_syms" => 177,
        "query_module" => 178,
        "quotactl" => 179,
        "nfsservctl" => 180,
        "lookup_dcookie" => 212,
        "clock_settime" => 227,
        "mbind" => 237,
        "set_mempolicy" => 238,
        "kexec_load" => 246,
        "add_key" => 248,
        "request_key" => 249,
        "keyctl" => 250,
        "unshare" => 272,
        "move_pages" => 279,
        "perf_event_open" => 298,
        "name_to_handle_at" => 303,
        "open_by_handle_at" => 304,
        "clock_adjtime" => 305,
        "setns" => 308,
        "process_vm_readv" => 310,
        "process_vm_writev" => 311,
        "kcmp" => 312,
        "finit_module" => 313,
        "kexec_file_load" => 320,
        "bpf" => 321,
        "userfaultfd" => 323,
        "open_tree" => 428,
        "move_mount" => 429,
        "fsopen" => 430,
        "fsmount" => 432,
        "fspick" => 433,
        _ => return None,
    };
    Some(nr)
}

/// Builds the default filter for x86_64 (pure; works on any build host).
pub fn default_filter() -> Result<BpfProgram, SeccompError> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for &name in DENIED_SYSCALLS {
        let nr = x86_64_nr(name).ok_or(SeccompError::UnknownSyscall { name })?;
        rules.insert(nr, Vec::new());
    }
    rules.insert(NR_CLONE, clone_namespace_rules()?);
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        TargetArch::x86_64,
    )
    .map_err(SeccompError::Compile)?;
    let body = BpfProgram::try_from(filter).map_err(SeccompError::Compile)?;
    let mut program = guard_prefix();
    program.extend(body);
    if program.len() > BPF_MAX_INSNS {
        return Err(SeccompError::TooLong { len: program.len() });
    }
    Ok(program)
}

/// Builds [`default_filter`] and installs it on the calling thread.
///
/// Requires no_new_privs ([`super::caps::set_no_new_privs`]) or `CAP_SYS_ADMIN` in the
/// effective set. Irreversible; inherited by children and kept across `execve`.
pub fn install_default_filter() -> Result<(), SeccompError> {
    if !cfg!(target_arch = "x86_64") {
        return Err(SeccompError::UnsupportedArch {
            arch: std::env::consts::ARCH,
        });
    }
    let program = default_filter()?;
    super::sys::set_mode_filter(&program).map_err(|e| match e.raw_os_error() {
        Some(libc::EACCES) => SeccompError::NotPermitted,
        _ => SeccompError::Install(e),
    })
}

/// One rule per namespace flag: `(arg0 & flag) == flag` (seccompiler rules are OR-ed, and it
/// has no "masked not-equal" comparison).
fn clone_namespace_rules() -> Result<Vec<SeccompRule>, SeccompError> {
    (0..64)
        .map(|bit| 1u64 << bit)
        .filter(|flag| CLONE_NAMESPACE_FLAGS & flag != 0)
        .map(|flag| {
            let cond = SeccompCondition::new(
                0,
                SeccompCmpArgLen::Dword,
                SeccompCmpOp::MaskedEq(flag),
                flag,
            )?;
            SeccompRule::new(vec![cond])
        })
        .collect::<Result<_, _>>()
        .map_err(SeccompError::Compile)
}

/// Hand-written head of the program, run before seccompiler's part:
/// kill on a foreign architecture, `EPERM` for x32 numbers, `ENOSYS` for `clone3`.
/// It only falls through (to the next instruction) so the jumps inside the seccompiler
/// body are unaffected.
fn guard_prefix() -> BpfProgram {
    let stmt = |code, k| sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    };
    let jump = |code, k, jt, jf| sock_filter { code, jt, jf, k };
    vec![
        stmt(LD_W_ABS, DATA_ARCH),
        jump(JEQ_K, AUDIT_ARCH_X86_64, 1, 0),
        stmt(RET_K, RET_KILL_PROCESS),
        stmt(LD_W_ABS, DATA_NR),
        jump(JGE_K, X32_SYSCALL_BIT, 0, 1),
        stmt(RET_K, RET_ERRNO | libc::EPERM as u32),
        jump(JEQ_K, NR_CLONE3, 0, 1),
        stmt(RET_K, RET_ERRNO | libc::ENOSYS as u32),
    ]
}

#[cfg(test)]
mod tests;
