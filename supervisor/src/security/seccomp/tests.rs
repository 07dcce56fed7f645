//! Unit tests of the pure filter builder: programs run through a small classic-BPF
//! interpreter against hand-made `seccomp_data`, so verdicts are checked without a kernel.
//! `moby` diffs the policy against Docker's profile.

mod moby;

use super::bpf::*;
use super::policy::{cap, RULES};
use super::*;

const AUDIT_ARCH_I386: u32 = 3 | 0x4000_0000;
/// Flags glibc's `pthread_create` passes to `clone`.
const THREAD_FLAGS: u64 = 0x003d_0f00;
/// Docker's default capabilities (see `caps::DOCKER_DEFAULT_CAPS`).
const DEFAULT_CAPS: u64 = crate::security::caps::DOCKER_DEFAULT_CAPS;
const ALL_CAPS: u64 = (1 << 41) - 1;

/// The fields of `struct seccomp_data` a filter can load.
struct Data {
    nr: u32,
    arch: u32,
    args: [u64; 6],
}

impl Data {
    fn x86_64(nr: u32, arg0: u64) -> Self {
        Data { nr, arch: AUDIT_ARCH_X86_64, args: [arg0, 0, 0, 0, 0, 0] }
    }

    /// `BPF_LD | BPF_W | BPF_ABS` at byte offset `off` (little-endian halves of the u64s).
    fn word(&self, off: u32) -> u32 {
        match off {
            0 => self.nr,
            4 => self.arch,
            8 | 12 => 0,
            16..=63 if off.is_multiple_of(4) => {
                let arg = self.args[(off as usize - 16) / 8];
                if off.is_multiple_of(8) {
                    arg as u32
                } else {
                    (arg >> 32) as u32
                }
            }
            _ => panic!("load from bad offset {off}"),
        }
    }
}

/// Runs `prog` on `data` the way the kernel would and returns the seccomp verdict. Jumps
/// only go forward, so every run ends; running off the end is a test failure.
fn run(prog: &[Insn], data: &Data) -> u32 {
    run_counting(prog, data).0
}

/// [`run`], also returning how many instructions ran.
fn run_counting(prog: &[Insn], data: &Data) -> (u32, usize) {
    let (mut pc, mut acc, mut steps) = (0usize, 0u32, 0usize);
    loop {
        let insn = prog.get(pc).unwrap_or_else(|| panic!("ran off the end at {pc}"));
        pc += 1;
        steps += 1;
        let cond = |taken: bool| usize::from(if taken { insn.jt } else { insn.jf });
        match insn.code {
            LD_W_ABS => acc = data.word(insn.k),
            AND_K => acc &= insn.k,
            JA => pc += insn.k as usize,
            JEQ_K => pc += cond(acc == insn.k),
            JGT_K => pc += cond(acc > insn.k),
            JGE_K => pc += cond(acc >= insn.k),
            RET_K => return (insn.k, steps),
            code => panic!("unexpected BPF opcode {code:#x} at {}", pc - 1),
        }
    }
}

fn nr(name: &str) -> u32 {
    syscalls::number(name).unwrap_or_else(|| panic!("{name} is not in the table"))
}

/// The verdict for `name(arg0)` in a container keeping `caps`.
fn verdict_with(caps: u64, name: &str, arg0: u64) -> u32 {
    run(&default_filter(caps).unwrap(), &Data::x86_64(nr(name), arg0))
}

fn verdict(name: &str, arg0: u64) -> u32 {
    verdict_with(DEFAULT_CAPS, name, arg0)
}

#[test]
fn program_is_compact() {
    for caps in [0, DEFAULT_CAPS, ALL_CAPS] {
        let prog = default_filter(caps).unwrap();
        let steps: Vec<usize> = (0..=highest_listed().unwrap()).map(|n| run_counting(&prog, &Data::x86_64(n, 0)).1).collect();
        let worst = steps.iter().max().copied().unwrap_or_default();
        let mean = steps.iter().sum::<usize>() as f64 / steps.len() as f64;
        eprintln!("caps {caps:#x}: {} BPF instructions, {worst} run at most, {mean:.1} on average", prog.len());
        assert!(prog.len() <= BPF_MAX_INSNS);
        assert!(prog.len() < 400, "unexpectedly large program: {}", prog.len());
        assert!(worst <= 30, "binary search too deep: {worst}");
    }
}

#[test]
fn clone_with_namespace_flags_is_denied_without_sys_admin() {
    let clone = |flags: u64| verdict("clone", flags);
    assert_eq!(clone(libc::SIGCHLD as u64), RET_ALLOW, "fork-style clone");
    assert_eq!(clone(THREAD_FLAGS), RET_ALLOW, "pthread_create's clone");
    for bit in 0..32 {
        let flag = 1u64 << bit;
        let want = if u64::from(policy::CLONE_NAMESPACE_FLAGS) & flag != 0 { RET_EPERM } else { RET_ALLOW };
        assert_eq!(clone(flag | libc::SIGCHLD as u64), want, "clone({flag:#x})");
    }
    assert_eq!(clone(libc::CLONE_NEWUSER as u64), RET_EPERM);
    let admin = DEFAULT_CAPS | 1 << cap::SYS_ADMIN;
    assert_eq!(verdict_with(admin, "clone", libc::CLONE_NEWUSER as u64), RET_ALLOW);
}

#[test]
fn clone3_gets_enosys_unless_sys_admin_is_kept() {
    assert_eq!(verdict("clone3", 0), RET_ENOSYS);
    assert_eq!(verdict_with(ALL_CAPS, "clone3", 0), RET_ALLOW);
}

#[test]
fn personality_allows_dockers_values_only() {
    for value in [0, 8, 0x20000, 0x20008, 0xffff_ffff] {
        assert_eq!(verdict("personality", value), RET_ALLOW, "{value:#x}");
    }
    // ADDR_NO_RANDOMIZE, READ_IMPLIES_EXEC, PER_BSD.
    for value in [0x0004_0000, 0x0040_0000, 6] {
        assert_eq!(verdict("personality", value), RET_EPERM, "{value:#x}");
    }
    // The kernel reads an unsigned int: the upper half does not change the answer.
    assert_eq!(verdict("personality", 0x1_ffff_ffff), RET_ALLOW);
    assert_eq!(verdict("personality", 0x1_0004_0000), RET_EPERM);
}

#[test]
fn socket_refuses_af_alg_and_af_vsock() {
    for family in [1, 2, 10, 16, 17, 37, 39, 41, 44, 45] {
        assert_eq!(verdict("socket", family), RET_ALLOW, "family {family}");
    }
    for family in [38, 40] {
        assert_eq!(verdict("socket", family), RET_EPERM, "family {family}");
        // High bits set: the kernel still reads family 38/40 (`int`).
        assert_eq!(verdict("socket", 0x1_0000_0000 | family), RET_EPERM);
    }
}

#[test]
fn io_uring_and_dangerous_calls_get_eperm() {
    let denied = [
        "io_uring_setup",
        "io_uring_enter",
        "io_uring_register",
        "keyctl",
        "add_key",
        "request_key",
        "userfaultfd",
        "kexec_load",
        "init_module",
        "finit_module",
        "bpf",
        "perf_event_open",
        "mount",
        "umount2",
        "unshare",
        "setns",
        "pivot_root",
        "swapon",
        "reboot",
        "ptrace",
        "process_vm_readv",
        "open_by_handle_at",
        "uselib",
        "_sysctl",
        "move_pages",
        "fsopen",
        "open_tree",
        "lsm_set_self_attr",
    ];
    for name in denied {
        assert_eq!(verdict(name, 0), RET_EPERM, "{name}");
    }
}

#[test]
fn ordinary_calls_are_allowed() {
    let allowed = [
        "read",
        "write",
        "openat",
        "execve",
        "execveat",
        "getpid",
        "wait4",
        "rt_sigaction",
        "mmap",
        "futex",
        "rseq",
        "seccomp",
        "faccessat2",
        "close_range",
        "openat2",
        "chroot",
        "memfd_create",
        "statx",
        "set_robust_list",
        "arch_prctl",
        "uretprobe",
        "mseal",
        "removexattrat",
        "futex_wake",
        "name_to_handle_at",
        "adjtimex",
    ];
    for name in allowed {
        assert_eq!(verdict(name, 0), RET_ALLOW, "{name}");
    }
}

#[test]
fn capabilities_switch_their_calls_on() {
    let cases = [
        ("mount", cap::SYS_ADMIN),
        ("unshare", cap::SYS_ADMIN),
        ("ptrace", cap::SYS_PTRACE),
        ("reboot", cap::SYS_BOOT),
        ("init_module", cap::SYS_MODULE),
        ("settimeofday", cap::SYS_TIME),
        ("syslog", cap::SYSLOG),
        ("bpf", cap::BPF),
        ("perf_event_open", cap::PERFMON),
        ("open_by_handle_at", cap::DAC_READ_SEARCH),
        ("mbind", cap::SYS_NICE),
    ];
    for (name, cap) in cases {
        assert_eq!(verdict_with(0, name, 0), RET_EPERM, "{name} without the capability");
        assert_eq!(verdict_with(1 << cap, name, 0), RET_ALLOW, "{name} with cap {cap}");
    }
    assert_eq!(verdict_with(0, "chroot", 0), RET_EPERM);
    assert_eq!(verdict("chroot", 0), RET_ALLOW, "SYS_CHROOT is a default capability");
}

#[test]
fn numbers_past_the_policy_get_enosys() {
    let highest = highest_listed().unwrap();
    assert_eq!(highest, nr("removexattrat"));
    let at = |n: u32| run(&default_filter(DEFAULT_CAPS).unwrap(), &Data::x86_64(n, 0));
    assert_eq!(at(highest), RET_ALLOW);
    for n in [highest + 1, nr("open_tree_attr"), nr("file_setattr"), 470, 1000, 0x3fff_ffff] {
        assert_eq!(at(n), RET_ENOSYS, "syscall {n}");
    }
    // Known, below the highest, not allowed: EPERM, Docker's default.
    for n in [nr("uprobe"), 400, 423] {
        assert_eq!(at(n), RET_EPERM, "syscall {n}");
    }
}

#[test]
fn x32_numbers_get_eperm() {
    let prog = default_filter(DEFAULT_CAPS).unwrap();
    for n in [nr("getpid"), nr("keyctl"), 512, u32::MAX] {
        let data = Data::x86_64(X32_SYSCALL_BIT | n, 0);
        assert_eq!(run(&prog, &data), RET_EPERM, "x32 syscall {n:#x}");
    }
}

#[test]
fn foreign_arch_is_killed() {
    let data = Data { nr: 20, arch: AUDIT_ARCH_I386, args: [0; 6] };
    assert_eq!(run(&default_filter(DEFAULT_CAPS).unwrap(), &data), RET_KILL_PROCESS);
}

/// What `verdicts` says for `nr` with `arg0`, evaluated directly (the reference the binary
/// search must agree with).
fn reference(table: &[Verdict], nr: u32, arg0: u64) -> u32 {
    let Some(v) = table.get(nr as usize) else {
        return RET_ENOSYS;
    };
    match v {
        Verdict::Ret(ret) => *ret,
        Verdict::Args(tests) => {
            let a = arg0 as u32;
            let holds = tests.iter().any(|t| match t.cmp {
                policy::Cmp::Eq(v) => a == v,
                policy::Cmp::Lt(v) => a < v,
                policy::Cmp::Gt(v) => a > v,
                policy::Cmp::MaskedEq { mask, value } => a & mask == value,
            });
            if holds {
                RET_ALLOW
            } else {
                RET_EPERM
            }
        }
    }
}

#[test]
fn binary_search_agrees_with_the_table_for_every_number() {
    let args = [0, 8, 38, 40, 0xffff_ffff, libc::CLONE_NEWNET as u64, libc::SIGCHLD as u64];
    for caps in [0, DEFAULT_CAPS, ALL_CAPS, 1 << cap::SYS_PTRACE] {
        let table = verdicts(caps).unwrap();
        let prog = default_filter(caps).unwrap();
        for n in 0..600 {
            for arg0 in args {
                let want = reference(&table, n, arg0);
                assert_eq!(run(&prog, &Data::x86_64(n, arg0)), want, "nr {n} arg {arg0:#x}");
            }
        }
    }
}

#[test]
fn long_subtrees_use_far_jumps() {
    // 1500 alternating verdicts: left subtrees far beyond an 8-bit jump.
    let table: Vec<Verdict> = (0..1500).map(|n| Verdict::Ret(if n % 2 == 0 { RET_ALLOW } else { RET_EPERM })).collect();
    let prog = bpf::program(&table).unwrap();
    assert!(prog.iter().any(|i| i.code == JA), "expected a far jump");
    for n in 0..1510u32 {
        let want = reference(&table, n, 0);
        assert_eq!(run(&prog, &Data::x86_64(n, 0)), want, "nr {n}");
    }
    let too_long: Vec<Verdict> = (0..5000u32).map(Verdict::Ret).collect();
    assert!(matches!(bpf::program(&too_long), Err(SeccompError::TooLong { .. })));
    assert!(matches!(bpf::program(&[]), Err(SeccompError::EmptyPolicy)));
}

#[test]
fn syscall_table_is_complete_and_unique() {
    let numbers: Vec<i64> = syscalls::X86_64.iter().map(|&(_, n)| n).collect();
    let expected: Vec<i64> = (0..=336).chain(424..=469).collect();
    assert_eq!(numbers, expected, "numbers in order, without gaps or duplicates");
    let mut names: Vec<&str> = syscalls::X86_64.iter().map(|&(n, _)| n).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), syscalls::X86_64.len(), "duplicate name");
    assert!(names.iter().all(|n| !n.starts_with("SYS_") && !n.is_empty()));
    assert_eq!(syscalls::number("clone3"), Some(435));
    assert_eq!(syscalls::number("removexattrat"), Some(466));
    assert_eq!(syscalls::number("_llseek"), None);
}

#[test]
fn every_rule_names_known_calls_once() {
    for rule in RULES {
        let mut names = rule.names.to_vec();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), rule.names.len(), "duplicate in a rule: {:?}", rule.names);
        for name in rule.names {
            assert!(syscalls::number(name).is_some(), "{name} is not x86_64");
        }
    }
}

#[test]
fn capability_numbers_match_their_names() {
    use crate::spec::capability::Capability;
    let named = [
        ("DAC_READ_SEARCH", cap::DAC_READ_SEARCH),
        ("SYS_MODULE", cap::SYS_MODULE),
        ("SYS_RAWIO", cap::SYS_RAWIO),
        ("SYS_CHROOT", cap::SYS_CHROOT),
        ("SYS_PTRACE", cap::SYS_PTRACE),
        ("SYS_PACCT", cap::SYS_PACCT),
        ("SYS_ADMIN", cap::SYS_ADMIN),
        ("SYS_BOOT", cap::SYS_BOOT),
        ("SYS_NICE", cap::SYS_NICE),
        ("SYS_TIME", cap::SYS_TIME),
        ("SYS_TTY_CONFIG", cap::SYS_TTY_CONFIG),
        ("SYSLOG", cap::SYSLOG),
        ("PERFMON", cap::PERFMON),
        ("BPF", cap::BPF),
    ];
    for (name, number) in named {
        assert_eq!(Capability::parse(name), Ok(Capability(number)), "{name}");
    }
}
