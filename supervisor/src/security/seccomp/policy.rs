//! keel's seccomp policy: an allowlist that follows Docker's default profile (moby's
//! `profiles/seccomp/default.json`, v0.2.3 as vendored by Docker Engine 29.7.2, committed at
//! `supervisor/tests/data/moby-seccomp-default.json`), written as data.
//!
//! [`RULES`] has the shape of Docker's profile: each rule names system calls, an action,
//! optional argument tests, and the capability that switches it on (Docker's
//! `includes.caps`) or off (`excludes.caps`). Only x86_64 calls are named. Where keel's
//! grants differ from Docker's, [`DIFFERENCES`] lists each one with its reason; the unit
//! test `tests::moby` fails on any difference that is not listed there, and on a listed one
//! that no longer exists. Differences in how the filter is built (architectures, `ENOSYS`
//! for new calls, 32-bit argument tests) are described in [`super`].

/// Capability numbers (`<linux/capability.h>`) the rules depend on.
pub mod cap {
    /// `CAP_DAC_READ_SEARCH`.
    pub const DAC_READ_SEARCH: u8 = 2;
    /// `CAP_SYS_MODULE`.
    pub const SYS_MODULE: u8 = 16;
    /// `CAP_SYS_RAWIO`.
    pub const SYS_RAWIO: u8 = 17;
    /// `CAP_SYS_CHROOT`.
    pub const SYS_CHROOT: u8 = 18;
    /// `CAP_SYS_PTRACE`.
    pub const SYS_PTRACE: u8 = 19;
    /// `CAP_SYS_PACCT`.
    pub const SYS_PACCT: u8 = 20;
    /// `CAP_SYS_ADMIN`.
    pub const SYS_ADMIN: u8 = 21;
    /// `CAP_SYS_BOOT`.
    pub const SYS_BOOT: u8 = 22;
    /// `CAP_SYS_NICE`.
    pub const SYS_NICE: u8 = 23;
    /// `CAP_SYS_TIME`.
    pub const SYS_TIME: u8 = 25;
    /// `CAP_SYS_TTY_CONFIG`.
    pub const SYS_TTY_CONFIG: u8 = 26;
    /// `CAP_SYSLOG`.
    pub const SYSLOG: u8 = 34;
    /// `CAP_PERFMON`.
    pub const PERFMON: u8 = 38;
    /// `CAP_BPF`.
    pub const BPF: u8 = 39;
}

/// When a rule applies, given the capabilities the container keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum When {
    /// For every container.
    Always,
    /// Only when the capability is kept (Docker's `includes.caps`).
    CapKept(u8),
    /// Only when the capability is dropped (Docker's `excludes.caps`).
    CapDropped(u8),
}

impl When {
    /// Whether the rule applies to a container keeping `kept_caps` (bit n = capability n).
    pub fn holds(self, kept_caps: u64) -> bool {
        let kept = |cap: u8| kept_caps & (1u64 << cap) != 0;
        match self {
            When::Always => true,
            When::CapKept(cap) => kept(cap),
            When::CapDropped(cap) => !kept(cap),
        }
    }
}

/// What a matching call gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Action {
    /// The call runs.
    Allow,
    /// The call fails with this errno.
    Errno(u16),
}

/// A test of an argument's lower 32 bits. The arguments keel tests are all 32-bit to the
/// kernel (`socket`'s `int family`, `personality`'s `unsigned int`, and `clone`'s flags,
/// of which the kernel keeps the lower 32 bits), so the upper half is ignored, as the
/// kernel ignores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Cmp {
    /// `arg == value`.
    Eq(u32),
    /// `arg < value` (unsigned).
    Lt(u32),
    /// `arg > value` (unsigned).
    Gt(u32),
    /// `arg & mask == value`.
    MaskedEq {
        /// Bits tested.
        mask: u32,
        /// Value they must have.
        value: u32,
    },
}

/// One argument test: `args[index]` against `cmp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ArgTest {
    /// Argument number, 0-5.
    pub index: u8,
    /// The comparison.
    pub cmp: Cmp,
}

/// One rule of the policy, in the shape of an entry of Docker's profile.
#[derive(Debug, Clone, Copy)]
pub struct Rule {
    /// The system calls it covers.
    pub names: &'static [&'static str],
    /// What a matching call gets.
    pub action: Action,
    /// Empty: every call matches; otherwise a call matches when any one test holds
    /// (Docker writes each alternative as its own entry).
    pub any_arg: &'static [ArgTest],
    /// When the rule applies.
    pub when: When,
}

/// One grant where keel and Docker's profile differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Difference {
    /// The system call.
    pub syscall: &'static str,
    /// Whose profile allows it (unconditionally, with no argument test, under `when`).
    pub only_in: Profile,
    /// The condition of that grant.
    pub when: When,
    /// Why keel differs.
    pub reason: &'static str,
}

/// One of the two profiles being compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// Docker's default profile.
    Docker,
    /// keel's policy.
    Keel,
}

/// `clone` flags that create namespaces: `CLONE_NEWNS`, `CLONE_NEWCGROUP`, `CLONE_NEWUTS`,
/// `CLONE_NEWIPC`, `CLONE_NEWUSER`, `CLONE_NEWPID`, `CLONE_NEWNET` (Docker's mask).
pub const CLONE_NAMESPACE_FLAGS: u32 = 0x7E02_0000;

/// `personality` values Docker allows: `PER_LINUX`, `PER_LINUX32`, `UNAME26`,
/// `PER_LINUX32 | UNAME26`, and `0xffffffff` (query the current persona).
pub const PERSONALITIES: [u32; 5] = [0, 8, 0x0002_0000, 0x0002_0008, 0xffff_ffff];

/// `AF_ALG` and `AF_VSOCK` (`<linux/socket.h>`): the socket families Docker refuses
/// (kernel crypto API, host-guest sockets); `AF_NFC` (39) between them stays allowed.
pub const AF_ALG: u32 = 38;
/// See [`AF_ALG`].
pub const AF_VSOCK: u32 = 40;

/// `ENOSYS`, for `clone3`: glibc falls back to `clone` on it (not on `EPERM`), and `clone3`'s
/// flags sit behind a pointer that seccomp cannot read.
const ENOSYS: u16 = libc::ENOSYS as u16;

/// Calls Docker allows for every container on x86_64 (its first entry, restricted to names
/// that exist on x86_64; `io_uring_*` have not been on it since Docker 25).
#[rustfmt::skip]
const ALLOWED: &[&str] = &[
    "accept", "accept4", "access", "adjtimex", "alarm", "bind", "brk", "cachestat", "capget",
    "capset", "chdir", "chmod", "chown", "clock_adjtime", "clock_getres", "clock_gettime",
    "clock_nanosleep", "close", "close_range", "connect", "copy_file_range", "creat", "dup",
    "dup2", "dup3", "epoll_create", "epoll_create1", "epoll_ctl", "epoll_ctl_old", "epoll_pwait",
    "epoll_pwait2", "epoll_wait", "epoll_wait_old", "eventfd", "eventfd2", "execve", "execveat",
    "exit", "exit_group", "faccessat", "faccessat2", "fadvise64", "fallocate", "fanotify_mark",
    "fchdir", "fchmod", "fchmodat", "fchmodat2", "fchown", "fchownat", "fcntl", "fdatasync",
    "fgetxattr", "flistxattr", "flock", "fork", "fremovexattr", "fsetxattr", "fstat", "fstatfs",
    "fsync", "ftruncate", "futex", "futex_requeue", "futex_wait", "futex_waitv", "futex_wake",
    "futimesat", "getcpu", "getcwd", "getdents", "getdents64", "getegid", "geteuid", "getgid",
    "getgroups", "getitimer", "getpeername", "getpgid", "getpgrp", "getpid", "getppid",
    "getpriority", "getrandom", "getresgid", "getresuid", "getrlimit", "get_robust_list",
    "getrusage", "getsid", "getsockname", "getsockopt", "get_thread_area", "gettid",
    "gettimeofday", "getuid", "getxattr", "getxattrat", "inotify_add_watch", "inotify_init",
    "inotify_init1", "inotify_rm_watch", "io_cancel", "ioctl", "io_destroy", "io_getevents",
    "io_pgetevents", "ioprio_get", "ioprio_set", "io_setup", "io_submit", "kill",
    "landlock_add_rule", "landlock_create_ruleset", "landlock_restrict_self", "lchown",
    "lgetxattr", "link", "linkat", "listen", "listmount", "listxattr", "listxattrat", "llistxattr",
    "lremovexattr", "lseek", "lsetxattr", "lstat", "madvise", "map_shadow_stack", "membarrier",
    "memfd_create", "memfd_secret", "mincore", "mkdir", "mkdirat", "mknod", "mknodat", "mlock",
    "mlock2", "mlockall", "mmap", "mprotect", "mq_getsetattr", "mq_notify", "mq_open",
    "mq_timedreceive", "mq_timedsend", "mq_unlink", "mremap", "mseal", "msgctl", "msgget",
    "msgrcv", "msgsnd", "msync", "munlock", "munlockall", "munmap", "name_to_handle_at",
    "nanosleep", "newfstatat", "open", "openat", "openat2", "pause", "pidfd_open",
    "pidfd_send_signal", "pipe", "pipe2", "pkey_alloc", "pkey_free", "pkey_mprotect", "poll",
    "ppoll", "prctl", "pread64", "preadv", "preadv2", "prlimit64", "process_mrelease", "pselect6",
    "pwrite64", "pwritev", "pwritev2", "read", "readahead", "readlink", "readlinkat", "readv",
    "recvfrom", "recvmmsg", "recvmsg", "remap_file_pages", "removexattr", "removexattrat",
    "rename", "renameat", "renameat2", "restart_syscall", "rmdir", "rseq", "rt_sigaction",
    "rt_sigpending", "rt_sigprocmask", "rt_sigqueueinfo", "rt_sigreturn", "rt_sigsuspend",
    "rt_sigtimedwait", "rt_tgsigqueueinfo", "sched_getaffinity", "sched_getattr", "sched_getparam",
    "sched_get_priority_max", "sched_get_priority_min", "sched_getscheduler",
    "sched_rr_get_interval", "sched_setaffinity", "sched_setattr", "sched_setparam",
    "sched_setscheduler", "sched_yield", "seccomp", "select", "semctl", "semget", "semop",
    "semtimedop", "sendfile", "sendmmsg", "sendmsg", "sendto", "setfsgid", "setfsuid", "setgid",
    "setgroups", "setitimer", "setpgid", "setpriority", "setregid", "setresgid", "setresuid",
    "setreuid", "setrlimit", "set_robust_list", "setsid", "setsockopt", "set_thread_area",
    "set_tid_address", "setuid", "setxattr", "setxattrat", "shmat", "shmctl", "shmdt", "shmget",
    "shutdown", "sigaltstack", "signalfd", "signalfd4", "socketpair", "splice", "stat", "statfs",
    "statmount", "statx", "symlink", "symlinkat", "sync", "sync_file_range", "syncfs", "sysinfo",
    "tee", "tgkill", "time", "timer_create", "timer_delete", "timer_getoverrun", "timer_gettime",
    "timer_settime", "timerfd_create", "timerfd_gettime", "timerfd_settime", "times", "tkill",
    "truncate", "umask", "uname", "unlink", "unlinkat", "uretprobe", "utime", "utimensat",
    "utimes", "vfork", "vmsplice", "wait4", "waitid", "write", "writev",
];

/// keel's policy.
pub const RULES: &[Rule] = &[
    always(ALLOWED),
    // Docker lists these for amd64 only.
    always(&["arch_prctl", "modify_ldt"]),
    Rule {
        names: &["socket"],
        action: Action::Allow,
        any_arg: &[arg0(Cmp::Lt(AF_ALG)), arg0(Cmp::Eq(AF_ALG + 1)), arg0(Cmp::Gt(AF_VSOCK))],
        when: When::Always,
    },
    Rule {
        names: &["personality"],
        action: Action::Allow,
        any_arg: &[
            arg0(Cmp::Eq(PERSONALITIES[0])),
            arg0(Cmp::Eq(PERSONALITIES[1])),
            arg0(Cmp::Eq(PERSONALITIES[2])),
            arg0(Cmp::Eq(PERSONALITIES[3])),
            arg0(Cmp::Eq(PERSONALITIES[4])),
        ],
        when: When::Always,
    },
    with_cap(cap::DAC_READ_SEARCH, &["open_by_handle_at"]),
    with_cap(
        cap::SYS_ADMIN,
        &[
            "bpf",
            "clone",
            "clone3",
            "fanotify_init",
            "fsconfig",
            "fsmount",
            "fsopen",
            "fspick",
            "lookup_dcookie",
            "lsm_get_self_attr",
            "lsm_list_modules",
            "lsm_set_self_attr",
            "mount",
            "mount_setattr",
            "move_mount",
            "open_tree",
            "perf_event_open",
            "quotactl",
            "quotactl_fd",
            "setdomainname",
            "sethostname",
            "setns",
            "syslog",
            "umount2",
            "unshare",
        ],
    ),
    Rule {
        names: &["clone"],
        action: Action::Allow,
        any_arg: &[arg0(Cmp::MaskedEq { mask: CLONE_NAMESPACE_FLAGS, value: 0 })],
        when: When::CapDropped(cap::SYS_ADMIN),
    },
    Rule { names: &["clone3"], action: Action::Errno(ENOSYS), any_arg: &[], when: When::CapDropped(cap::SYS_ADMIN) },
    with_cap(cap::SYS_BOOT, &["reboot"]),
    with_cap(cap::SYS_CHROOT, &["chroot"]),
    with_cap(cap::SYS_MODULE, &["delete_module", "init_module", "finit_module"]),
    with_cap(cap::SYS_PACCT, &["acct"]),
    with_cap(cap::SYS_PTRACE, &["kcmp", "pidfd_getfd", "process_madvise", "process_vm_readv", "process_vm_writev", "ptrace"]),
    with_cap(cap::SYS_RAWIO, &["iopl", "ioperm"]),
    with_cap(cap::SYS_TIME, &["settimeofday", "clock_settime"]),
    with_cap(cap::SYS_TTY_CONFIG, &["vhangup"]),
    with_cap(cap::SYS_NICE, &["get_mempolicy", "mbind", "set_mempolicy", "set_mempolicy_home_node"]),
    with_cap(cap::SYSLOG, &["syslog"]),
    with_cap(cap::BPF, &["bpf"]),
    with_cap(cap::PERFMON, &["perf_event_open"]),
];

/// Why keel does not follow Docker in allowing the `ptrace` family to every container.
const PTRACE_REASON: &str = "Docker allows ptrace, process_vm_readv and process_vm_writev to \
every container on kernels >= 4.8 (where ptrace can no longer bypass seccomp). keel keeps them \
behind CAP_SYS_PTRACE, Docker's rule for older kernels: reading and writing another process's \
memory is what an attacker inside a container wants, not what a service needs, and ptrace has a \
history of kernel privilege escalations (e.g. CVE-2019-13272). Add SYS_PTRACE to a container \
that runs a debugger or strace.";

/// Every grant that differs from Docker's profile, with its reason (see the module doc).
pub const DIFFERENCES: &[Difference] = &[
    docker_only("ptrace", PTRACE_REASON),
    docker_only("process_vm_readv", PTRACE_REASON),
    docker_only("process_vm_writev", PTRACE_REASON),
];

/// Every call in `names`, for every container.
const fn always(names: &'static [&'static str]) -> Rule {
    Rule { names, action: Action::Allow, any_arg: &[], when: When::Always }
}

/// Every call in `names`, when `cap` is kept.
const fn with_cap(cap: u8, names: &'static [&'static str]) -> Rule {
    Rule { names, action: Action::Allow, any_arg: &[], when: When::CapKept(cap) }
}

/// A test of the first argument.
const fn arg0(cmp: Cmp) -> ArgTest {
    ArgTest { index: 0, cmp }
}

/// A call Docker allows to every container and keel does not.
const fn docker_only(syscall: &'static str, reason: &'static str) -> Difference {
    Difference { syscall, only_in: Profile::Docker, when: When::Always, reason }
}
