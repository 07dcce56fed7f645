//! Unit tests of the pure filter builder: the program is run through a small classic-BPF
//! interpreter against hand-made `seccomp_data`, so the verdicts are checked without a kernel.

use super::*;

const RET_ALLOW: u32 = 0x7fff_0000;
const EPERM: u32 = RET_ERRNO | libc::EPERM as u32;
const ENOSYS: u32 = RET_ERRNO | libc::ENOSYS as u32;
const AUDIT_ARCH_I386: u32 = 3 | 0x4000_0000;
const NR_GETPID: u32 = 39;
/// Flags glibc's `pthread_create` passes to `clone`.
const THREAD_FLAGS: u64 = 0x003d_0f00;

/// The fields of `struct seccomp_data` a filter can load.
struct Data {
    nr: u32,
    arch: u32,
    args: [u64; 6],
}

impl Data {
    fn x86_64(nr: u32, arg0: u64) -> Self {
        Data {
            nr,
            arch: AUDIT_ARCH_X86_64,
            args: [arg0, 0, 0, 0, 0, 0],
        }
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

/// Runs `prog` on `data` and returns the seccomp verdict.
fn run(prog: &[sock_filter], data: &Data) -> u32 {
    let (mut pc, mut acc) = (0usize, 0u32);
    loop {
        let insn = &prog[pc];
        pc += 1;
        let cond = |taken: bool| usize::from(if taken { insn.jt } else { insn.jf });
        match insn.code {
            0x20 => acc = data.word(insn.k),
            0x54 => acc &= insn.k,
            0x05 => pc += insn.k as usize,
            0x15 => pc += cond(acc == insn.k),
            0x25 => pc += cond(acc > insn.k),
            0x35 => pc += cond(acc >= insn.k),
            0x45 => pc += cond(acc & insn.k != 0),
            0x06 => return insn.k,
            code => panic!("unexpected BPF opcode {code:#x} at {}", pc - 1),
        }
    }
}

fn verdict(nr: u32, arg0: u64) -> u32 {
    run(&default_filter().unwrap(), &Data::x86_64(nr, arg0))
}

#[test]
fn builds_with_sane_length() {
    let prog = default_filter().unwrap();
    assert!(prog.len() > DENIED_SYSCALLS.len() + guard_prefix().len());
    assert!(
        prog.len() < 512,
        "unexpectedly large program: {}",
        prog.len()
    );
    assert_eq!(&prog[..guard_prefix().len()], &guard_prefix()[..]);
}

#[test]
fn every_denied_syscall_gets_eperm() {
    for &name in DENIED_SYSCALLS {
        let nr = u32::try_from(x86_64_nr(name).unwrap()).unwrap();
        assert_eq!(verdict(nr, 0), EPERM, "{name} ({nr}) not denied");
    }
}

#[test]
fn ordinary_syscalls_are_allowed() {
    // read, write, execve, getpid, personality, fsconfig, seccomp
    for nr in [0, 1, 59, NR_GETPID, 135, 431, 317] {
        assert_eq!(verdict(nr, 0), RET_ALLOW, "syscall {nr} should be allowed");
    }
}

#[test]
fn clone_is_denied_only_with_namespace_flags() {
    let nr = NR_CLONE as u32;
    assert_eq!(verdict(nr, THREAD_FLAGS), RET_ALLOW);
    assert_eq!(verdict(nr, libc::SIGCHLD as u64), RET_ALLOW);
    for bit in 0..32 {
        let flag = 1u64 << bit;
        if CLONE_NAMESPACE_FLAGS & flag != 0 {
            let flags = flag | libc::SIGCHLD as u64;
            assert_eq!(verdict(nr, flags), EPERM, "clone({flags:#x}) not denied");
        }
    }
    assert_eq!(verdict(nr, libc::CLONE_NEWUSER as u64), EPERM);
}

#[test]
fn clone3_gets_enosys_so_libc_falls_back() {
    assert_eq!(verdict(NR_CLONE3, 0), ENOSYS);
}

#[test]
fn x32_numbers_get_eperm() {
    assert_eq!(verdict(X32_SYSCALL_BIT | NR_GETPID, 0), EPERM);
    assert_eq!(verdict(X32_SYSCALL_BIT | 250, 0), EPERM);
}

#[test]
fn foreign_arch_is_killed() {
    let data = Data {
        nr: 20,
        arch: AUDIT_ARCH_I386,
        args: [0; 6],
    };
    assert_eq!(run(&default_filter().unwrap(), &data), RET_KILL_PROCESS);
}

#[test]
fn names_are_unique_and_numbered() {
    let mut names: Vec<_> = DENIED_SYSCALLS.to_vec();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), DENIED_SYSCALLS.len(), "duplicate name");
    let mut nrs: Vec<_> = DENIED_SYSCALLS
        .iter()
        .map(|n| x86_64_nr(n).unwrap())
        .collect();
    nrs.sort_unstable();
    nrs.dedup();
    assert_eq!(nrs.len(), DENIED_SYSCALLS.len(), "duplicate number");
    assert_eq!(x86_64_nr("getpid"), None);
}

/// Cross-checks the hand-written table against libc (which lacks the three
/// `*_module` calls removed in Linux 2.6).
#[cfg(target_arch = "x86_64")]
#[test]
fn numbers_match_libc() {
    use libc::*;
    let known: &[(&str, c_long)] = &[
        ("kexec_load", SYS_kexec_load),
        ("kexec_file_load", SYS_kexec_file_load),
        ("init_module", SYS_init_module),
        ("finit_module", SYS_finit_module),
        ("delete_module", SYS_delete_module),
        ("keyctl", SYS_keyctl),
        ("add_key", SYS_add_key),
        ("request_key", SYS_request_key),
        ("bpf", SYS_bpf),
        ("reboot", SYS_reboot),
        ("swapon", SYS_swapon),
        ("swapoff", SYS_swapoff),
        ("mount", SYS_mount),
        ("umount2", SYS_umount2),
        ("pivot_root", SYS_pivot_root),
        ("move_mount", SYS_move_mount),
        ("open_tree", SYS_open_tree),
        ("fsopen", SYS_fsopen),
        ("fsmount", SYS_fsmount),
        ("fspick", SYS_fspick),
        ("acct", SYS_acct),
        ("settimeofday", SYS_settimeofday),
        ("clock_settime", SYS_clock_settime),
        ("clock_adjtime", SYS_clock_adjtime),
        ("adjtimex", SYS_adjtimex),
        ("iopl", SYS_iopl),
        ("ioperm", SYS_ioperm),
        ("nfsservctl", SYS_nfsservctl),
        ("perf_event_open", SYS_perf_event_open),
        ("ptrace", SYS_ptrace),
        ("process_vm_readv", SYS_process_vm_readv),
        ("process_vm_writev", SYS_process_vm_writev),
        ("lookup_dcookie", SYS_lookup_dcookie),
        ("quotactl", SYS_quotactl),
        ("userfaultfd", SYS_userfaultfd),
        ("syslog", SYS_syslog),
        ("vhangup", SYS_vhangup),
        ("uselib", SYS_uselib),
        ("unshare", SYS_unshare),
        ("setns", SYS_setns),
        ("open_by_handle_at", SYS_open_by_handle_at),
        ("name_to_handle_at", SYS_name_to_handle_at),
        ("kcmp", SYS_kcmp),
        ("_sysctl", SYS__sysctl),
        ("mbind", SYS_mbind),
        ("set_mempolicy", SYS_set_mempolicy),
        ("move_pages", SYS_move_pages),
    ];
    for &(name, nr) in known {
        assert_eq!(x86_64_nr(name), Some(nr), "{name}");
    }
    assert_eq!(known.len() + 3, DENIED_SYSCALLS.len());
    assert_eq!((NR_CLONE, c_long::from(NR_CLONE3)), (SYS_clone, SYS_clone3));
}
