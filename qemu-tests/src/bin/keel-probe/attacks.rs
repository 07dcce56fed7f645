//! `keel-probe attack NAME [KEY=VALUE…]`: escapes and attacks on the host, tried from
//! wherever the probe runs (inside a container, or on the host as the negative control).
//!
//! Every attack prints exactly one line, `attack NAME: blocked (REASON)` or
//! `attack NAME: SUCCEEDED (DETAIL)`. An attack that cannot reach a verdict (a missing
//! argument, a crash, a hang) reports `SUCCEEDED (no verdict: …)`: the suite fails
//! closed. `attack all` runs every attack of [`ATTACKS`] in its own child process (a
//! fresh copy of the probe, so one attack's namespaces or signals cannot change the next
//! one's result) and prints their lines in order.
//!
//! Options (all optional, `KEY=VALUE`):
//! - `scratch=DIR`: where device nodes and mount points are made (default `/tmp`; the
//!   host's negative control passes `/dev`, a devtmpfs where nodes work);
//! - `pidns=pid:[N]`: the host's PID namespace (`readlink /proc/1/ns/pid` on the host);
//! - `localnet=PORT`: a TCP port a host service listens on at 127.0.0.1;
//! - `iface=NAME`: the interface crafted frames leave by (default: the default route's);
//! - `hostaddr=IP:PORT`: a host service not published to containers, or `hostport=PORT`
//!   for that port on the default gateway.
//!
//! The raw syscalls go through `libc::syscall` on purpose: the point is to reach the
//! kernel exactly as an attacker's static binary would, whatever the C library does.
#![allow(unsafe_code)]

use std::collections::BTreeMap;
use std::ffi::CString;
use std::fs;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What one attack found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The attack failed, and why (an errno, a missing file, an empty read).
    Blocked(String),
    /// The attack worked, and what it reached.
    Succeeded(String),
}

impl Verdict {
    /// The one line the probe prints for attack `name`.
    pub fn line(&self, name: &str) -> String {
        match self {
            Verdict::Blocked(reason) => format!("attack {name}: blocked ({reason})"),
            Verdict::Succeeded(detail) => format!("attack {name}: SUCCEEDED ({detail})"),
        }
    }
}

/// Parse one line printed by [`Verdict::line`]: the attack's name and whether it was blocked.
pub fn parse_line(line: &str) -> Option<(&str, bool)> {
    let rest = line.strip_prefix("attack ")?;
    let (name, outcome) = rest.split_once(": ")?;
    if outcome.starts_with("blocked (") && outcome.ends_with(')') {
        Some((name, true))
    } else if outcome.starts_with("SUCCEEDED (") && outcome.ends_with(')') {
        Some((name, false))
    } else {
        None
    }
}

/// The `KEY=VALUE` options of an attack.
#[derive(Debug, Clone, Default)]
pub struct Options {
    values: BTreeMap<String, String>,
}

impl Options {
    /// Parse `KEY=VALUE` words; anything else is an error naming the word.
    pub fn parse(words: &[String]) -> Result<Options, String> {
        let mut values = BTreeMap::new();
        for word in words {
            let (key, value) = word.split_once('=').ok_or_else(|| format!("{word:?} is not KEY=VALUE"))?;
            values.insert(key.to_string(), value.to_string());
        }
        Ok(Options { values })
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(String::as_str)
    }

    fn scratch(&self) -> PathBuf {
        PathBuf::from(self.get("scratch").unwrap_or("/tmp"))
    }

    fn words(&self) -> Vec<String> {
        self.values.iter().map(|(k, v)| format!("{k}={v}")).collect()
    }
}

type Attack = fn(&Options) -> Verdict;

/// Every attack `attack all` runs, by name. The names are what the QEMU suite counts.
pub const ATTACKS: &[(&str, Attack)] = &[
    ("mount-tmpfs", mount_tmpfs),
    ("mount-proc", mount_proc),
    ("mount-sysfs", mount_sysfs),
    ("bind-mount-root", bind_mount_root),
    ("remount-proc-sys-rw", remount_proc_sys),
    ("mknod-disk", mknod_disk),
    ("mknod-dev-mem", mknod_dev_mem),
    ("proc-kcore", proc_kcore),
    ("sysrq-trigger", sysrq_trigger),
    ("kmsg-write", kmsg_write),
    ("syslog-read", syslog_read),
    ("init-module", init_module),
    ("finit-module", finit_module),
    ("delete-module", delete_module),
    ("keyctl", keyctl),
    ("add-key", add_key),
    ("bpf-map", bpf_map),
    ("perf-event-open", perf_event_open),
    ("userfaultfd", userfaultfd),
    ("io-uring-setup", io_uring_setup),
    ("unshare-user", unshare_user),
    ("unshare-mnt-net", unshare_mnt_net),
    ("clone-newns", clone_newns),
    ("clone3-newuser", clone3_newuser),
    ("setns-pid1", setns_pid1),
    ("open-by-handle", open_by_handle),
    ("ptrace-pid1", ptrace_pid1),
    ("process-vm-readv-pid1", vm_read_pid1),
    ("host-pid-visible", host_pid_visible),
    ("sys-firmware", sys_firmware),
    ("proc-sys-hostname", proc_sys_hostname),
    ("proc-sys-drop-caches", proc_sys_drop_caches),
    ("proc-sys-core-pattern", proc_sys_core_pattern),
    ("cgroup-mkdir", cgroup_mkdir),
    ("cgroup-release-agent", cgroup_release_agent),
    ("control-socket", control_socket),
    ("fd-leak", fd_leak),
    ("tiocsti-console", tiocsti_console),
    ("raw-localnet", raw_localnet),
    ("unpublished-host-port", unpublished_host_port),
    ("metadata-address", metadata_address),
];

/// Attacks run on their own (not by `attack all`): they need a special setting.
pub const SPECIAL: &[(&str, Attack)] = &[("cwd-escape", cwd_escape), ("reaper-exe", reaper_exe), ("layer-devices", layer_devices)];

/// `keel-probe attack …`: the exit code (0 when every attack was blocked, 1 otherwise, 2 on bad usage).
pub fn main(args: &[String]) -> i32 {
    let Some((name, rest)) = args.split_first() else {
        eprintln!("usage: keel-probe attack all|NAME [KEY=VALUE…] | attack fork-bomb SECS | attack memory-hog MIB");
        return 2;
    };
    match name.as_str() {
        "fork-bomb" => return rest.first().and_then(|s| s.parse().ok()).map(fork_bomb).unwrap_or(2),
        "memory-hog" => return rest.first().and_then(|s| s.parse().ok()).map(memory_hog).unwrap_or(2),
        _ => {}
    }
    let options = match Options::parse(rest) {
        Ok(options) => options,
        Err(e) => {
            eprintln!("keel-probe attack: {e}");
            return 2;
        }
    };
    if name == "all" {
        let mut all_blocked = true;
        for (attack, _) in ATTACKS {
            let line = run_isolated(attack, &options);
            all_blocked &= parse_line(&line).is_some_and(|(_, blocked)| blocked);
            println!("{line}");
        }
        return if all_blocked { 0 } else { 1 };
    }
    let Some((_, attack)) = ATTACKS.iter().chain(SPECIAL).find(|(n, _)| n == name) else {
        eprintln!("keel-probe attack: no attack {name:?}");
        return 2;
    };
    let verdict = attack(&options);
    println!("{}", verdict.line(name));
    i32::from(matches!(verdict, Verdict::Succeeded(_)))
}

/// Run one attack in a fresh probe process with a deadline; its line, or a failing one.
fn run_isolated(name: &str, options: &Options) -> String {
    let child = Command::new("/proc/self/exe")
        .arg("attack")
        .arg(name)
        .args(options.words())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(e) => return Verdict::Succeeded(format!("no verdict: cannot start the attack: {e}")).line(name),
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Verdict::Succeeded("no verdict: the attack hung for 15 s".into()).line(name);
            }
        }
    }
    let mut out = String::new();
    if let Some(mut stdout) = child.stdout.take() {
        let _ = stdout.read_to_string(&mut out);
    }
    let prefix = format!("attack {name}: ");
    match out.lines().find(|l| l.starts_with(&prefix) && parse_line(l).is_some()) {
        Some(line) => line.to_string(),
        None => Verdict::Succeeded(format!("no verdict: the attack printed {:?}", out.trim())).line(name),
    }
}

// ---- helpers ------------------------------------------------------------------------

fn errno() -> nix::errno::Errno {
    nix::errno::Errno::last()
}

/// The verdict of a syscall whose success is the attack's success.
fn by_return(ret: i64, done: &str) -> Verdict {
    if ret >= 0 {
        Verdict::Succeeded(done.to_string())
    } else {
        Verdict::Blocked(format!("{:?}", errno()))
    }
}

/// For calls whose permission check comes first (module loading): only a refusal
/// (`EPERM`, `EACCES`, `ENOSYS`) blocks; any other error means the kernel went past the
/// check and tried to do the work with the attacker's input.
pub fn permission_verdict(ret: i64, err: nix::errno::Errno, what: &str) -> Verdict {
    use nix::errno::Errno;
    if ret >= 0 {
        return Verdict::Succeeded(format!("{what} succeeded"));
    }
    match err {
        Errno::EPERM | Errno::EACCES | Errno::ENOSYS => Verdict::Blocked(format!("{err:?}")),
        other => Verdict::Succeeded(format!("{what} passed the permission check ({other:?})")),
    }
}

fn cstr(text: &str) -> CString {
    CString::new(text).unwrap_or_default()
}

fn scratch_path(options: &Options, name: &str) -> PathBuf {
    let path = options.scratch().join(name);
    let _ = fs::remove_file(&path);
    path
}

fn mount_at(options: &Options, source: &str, fstype: Option<&str>, flags: nix::mount::MsFlags) -> Verdict {
    let target = options.scratch().join(format!("keel-attack-{}", fstype.unwrap_or("bind")));
    let _ = fs::create_dir_all(&target);
    let result = nix::mount::mount(Some(source), &target, fstype, flags, None::<&str>);
    match result {
        Ok(()) => {
            let entries = fs::read_dir(&target).map(|d| d.count()).unwrap_or(0);
            let _ = nix::mount::umount2(&target, nix::mount::MntFlags::MNT_DETACH);
            let _ = fs::remove_dir(&target);
            Verdict::Succeeded(format!("mounted {source} on {} ({entries} entries)", target.display()))
        }
        Err(e) => {
            let _ = fs::remove_dir(&target);
            Verdict::Blocked(format!("{e:?}"))
        }
    }
}

/// Make a device node in the scratch directory and read from it.
fn node_and_read(options: &Options, name: &str, kind: nix::sys::stat::SFlag, major: u64, minor: u64, bytes: usize) -> Verdict {
    use nix::sys::stat::{makedev, mknod, Mode};
    let path = scratch_path(options, name);
    if let Err(e) = mknod(&path, kind, Mode::from_bits_truncate(0o600), makedev(major, minor)) {
        return Verdict::Blocked(format!("mknod {major}:{minor}: {e:?}"));
    }
    let result = fs::File::open(&path).and_then(|mut f| {
        let mut buf = vec![0u8; bytes];
        f.read(&mut buf)
    });
    let _ = fs::remove_file(&path);
    match result {
        Ok(n) if n > 0 => Verdict::Succeeded(format!("read {n} bytes from device {major}:{minor}")),
        Ok(_) => Verdict::Blocked(format!("device {major}:{minor} read nothing")),
        Err(e) => Verdict::Blocked(format!("open {major}:{minor}: {:?}", e.kind())),
    }
}

fn write_file(path: &str, data: &[u8]) -> Verdict {
    match fs::OpenOptions::new().write(true).open(path).and_then(|mut f| f.write_all(data)) {
        Ok(()) => Verdict::Succeeded(format!("wrote {} bytes to {path}", data.len())),
        Err(e) => Verdict::Blocked(format!(
            "{path}: {}",
            e.raw_os_error().map_or(e.to_string(), |n| format!("{:?}", nix::errno::Errno::from_raw(n)))
        )),
    }
}

/// Write a /proc/sys file's current value back to it (no change, but the write is the attack).
fn rewrite_sysctl(path: &str) -> Verdict {
    match fs::read(path) {
        Ok(value) => write_file(path, &value),
        Err(e) => Verdict::Blocked(format!("{path}: {e}")),
    }
}

/// In a forked child, run `f` and exit with its result (0 = success); the verdict by exit code.
fn in_child(what: &str, f: impl FnOnce() -> Result<(), nix::errno::Errno>) -> Verdict {
    // SAFETY: the probe's attack processes are single-threaded; the child only makes
    // raw system calls and `_exit`s.
    match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Child) => {
            let code = match f() {
                Ok(()) => 0,
                Err(e) => 100 + (e as i32).min(100),
            };
            // SAFETY: `_exit` ends the forked child without running the parent's handlers.
            unsafe { libc::_exit(code) }
        }
        Ok(nix::unistd::ForkResult::Parent { child }) => match nix::sys::wait::waitpid(child, None) {
            Ok(nix::sys::wait::WaitStatus::Exited(_, 0)) => Verdict::Succeeded(what.to_string()),
            Ok(nix::sys::wait::WaitStatus::Exited(_, code)) if code >= 100 => {
                Verdict::Blocked(format!("{:?}", nix::errno::Errno::from_raw(code - 100)))
            }
            other => Verdict::Succeeded(format!("no verdict: child ended {other:?}")),
        },
        Err(e) => Verdict::Succeeded(format!("no verdict: fork: {e}")),
    }
}

// ---- mounts -------------------------------------------------------------------------

fn mount_tmpfs(options: &Options) -> Verdict {
    mount_at(options, "none", Some("tmpfs"), nix::mount::MsFlags::empty())
}

fn mount_proc(options: &Options) -> Verdict {
    mount_at(options, "proc", Some("proc"), nix::mount::MsFlags::empty())
}

fn mount_sysfs(options: &Options) -> Verdict {
    mount_at(options, "sysfs", Some("sysfs"), nix::mount::MsFlags::empty())
}

fn bind_mount_root(options: &Options) -> Verdict {
    mount_at(options, "/", None, nix::mount::MsFlags::MS_BIND | nix::mount::MsFlags::MS_REC)
}

fn remount_proc_sys(_: &Options) -> Verdict {
    use nix::mount::MsFlags;
    // /proc/sys is its own read-only mount in a container; on the host it is part of /proc.
    let mounted =
        fs::read_to_string("/proc/self/mountinfo").unwrap_or_default().lines().any(|l| l.split_whitespace().nth(4) == Some("/proc/sys"));
    let target = if mounted { "/proc/sys" } else { "/proc" };
    let flags = MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    match nix::mount::mount(None::<&str>, target, None::<&str>, flags, None::<&str>) {
        Ok(()) => Verdict::Succeeded(format!("{target} remounted read-write")),
        Err(e) => Verdict::Blocked(format!("{target}: {e:?}")),
    }
}

// ---- devices and kernel interfaces --------------------------------------------------

/// The first disk the kernel lists (virtio, SCSI or IDE), as major:minor.
fn first_disk() -> Option<(String, u64, u64)> {
    let mut names: Vec<String> = fs::read_dir("/sys/block").ok()?.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    let name = names.into_iter().find(|n| n.starts_with("vd") || n.starts_with("sd") || n.starts_with("hd"))?;
    let dev = fs::read_to_string(format!("/sys/block/{name}/dev")).ok()?;
    let (major, minor) = dev.trim().split_once(':')?;
    Some((name, major.parse().ok()?, minor.parse().ok()?))
}

fn mknod_disk(options: &Options) -> Verdict {
    match first_disk() {
        Some((name, major, minor)) => match node_and_read(options, "keel-attack-disk", nix::sys::stat::SFlag::S_IFBLK, major, minor, 512) {
            Verdict::Succeeded(detail) => Verdict::Succeeded(format!("{name}: {detail}")),
            blocked => blocked,
        },
        None => Verdict::Blocked("no disk listed in /sys/block".into()),
    }
}

fn mknod_dev_mem(options: &Options) -> Verdict {
    node_and_read(options, "keel-attack-mem", nix::sys::stat::SFlag::S_IFCHR, 1, 1, 16)
}

fn proc_kcore(_: &Options) -> Verdict {
    let mut head = [0u8; 16];
    match fs::File::open("/proc/kcore").and_then(|mut f| f.read(&mut head)) {
        Ok(n) if n >= 4 && head.starts_with(b"\x7fELF") => Verdict::Succeeded("read the kernel's ELF core header".into()),
        Ok(n) => Verdict::Blocked(format!("read {n} bytes, no ELF header")),
        Err(e) => Verdict::Blocked(e.to_string()),
    }
}

fn sysrq_trigger(_: &Options) -> Verdict {
    // 'h' only prints the sysrq help to the kernel log.
    write_file("/proc/sysrq-trigger", b"h")
}

fn kmsg_write(options: &Options) -> Verdict {
    let line = b"<4>keel-probe: attack kmsg-write reached the host's kernel log\n";
    if Path::new("/dev/kmsg").exists() {
        return write_file("/dev/kmsg", line);
    }
    use nix::sys::stat::{makedev, mknod, Mode, SFlag};
    let path = scratch_path(options, "keel-attack-kmsg");
    if let Err(e) = mknod(&path, SFlag::S_IFCHR, Mode::from_bits_truncate(0o600), makedev(1, 11)) {
        return Verdict::Blocked(format!("no /dev/kmsg; mknod 1:11: {e:?}"));
    }
    let verdict = write_file(&path.display().to_string(), line);
    let _ = fs::remove_file(&path);
    verdict
}

fn syslog_read(_: &Options) -> Verdict {
    let mut buf = vec![0u8; 4096];
    // SAFETY: SYSLOG_ACTION_READ_ALL (3) writes at most `len` bytes into `buf`.
    let n = unsafe { libc::klogctl(3, buf.as_mut_ptr().cast(), buf.len() as libc::c_int) };
    by_return(n.into(), &format!("read {n} bytes of the kernel log"))
}

fn init_module(_: &Options) -> Verdict {
    let image = b"\x7fELF not a module";
    let params = cstr("");
    // SAFETY: init_module reads `len` bytes of `image` and the NUL-terminated params.
    let ret = unsafe { libc::syscall(libc::SYS_init_module, image.as_ptr(), image.len(), params.as_ptr()) };
    permission_verdict(ret, errno(), "init_module")
}

fn finit_module(_: &Options) -> Verdict {
    let Ok(exe) = fs::File::open("/proc/self/exe") else { return Verdict::Blocked("cannot open /proc/self/exe".into()) };
    let params = cstr("");
    // SAFETY: finit_module reads the open file and the NUL-terminated params.
    let ret = unsafe { libc::syscall(libc::SYS_finit_module, exe.as_raw_fd(), params.as_ptr(), 0) };
    permission_verdict(ret, errno(), "finit_module")
}

fn delete_module(_: &Options) -> Verdict {
    let name = cstr("keel_no_such_module");
    // SAFETY: delete_module reads the NUL-terminated name.
    let ret = unsafe { libc::syscall(libc::SYS_delete_module, name.as_ptr(), libc::O_NONBLOCK) };
    permission_verdict(ret, errno(), "delete_module")
}

fn keyctl(_: &Options) -> Verdict {
    // KEYCTL_GET_KEYRING_ID (0) of KEY_SPEC_SESSION_KEYRING (-3), creating it (1).
    // SAFETY: this keyctl operation reads no memory.
    let ret = unsafe { libc::syscall(libc::SYS_keyctl, 0, -3, 1) };
    by_return(ret, &format!("session keyring {ret}"))
}

fn add_key(_: &Options) -> Verdict {
    let (kind, desc, payload) = (cstr("user"), cstr("keel-escape"), b"x");
    // SAFETY: add_key reads the two strings and `payload.len()` bytes; -2 is KEY_SPEC_PROCESS_KEYRING.
    let ret = unsafe { libc::syscall(libc::SYS_add_key, kind.as_ptr(), desc.as_ptr(), payload.as_ptr(), payload.len(), -2) };
    by_return(ret, &format!("key {ret} added"))
}

fn bpf_map(_: &Options) -> Verdict {
    // union bpf_attr for BPF_MAP_CREATE: map_type ARRAY (2), key 4, value 4, 1 entry.
    let mut attr = [0u32; 32];
    attr[..4].copy_from_slice(&[2, 4, 4, 1]);
    // SAFETY: bpf reads `size` bytes of `attr`.
    let ret = unsafe { libc::syscall(libc::SYS_bpf, 0, attr.as_ptr(), std::mem::size_of_val(&attr)) };
    by_return(ret, "created a BPF array map")
}

fn perf_event_open(_: &Options) -> Verdict {
    // struct perf_event_attr: type SOFTWARE (1), size 112, config CPU_CLOCK (0),
    // flags disabled | exclude_kernel | exclude_hv (bits 0, 5, 6).
    let mut attr = [0u8; 128];
    attr[0..4].copy_from_slice(&1u32.to_ne_bytes());
    attr[4..8].copy_from_slice(&112u32.to_ne_bytes());
    attr[40..48].copy_from_slice(&(1u64 | 1 << 5 | 1 << 6).to_ne_bytes());
    // SAFETY: perf_event_open reads the attribute block; pid 0, cpu -1, no group, no flags.
    let ret = unsafe { libc::syscall(libc::SYS_perf_event_open, attr.as_ptr(), 0, -1, -1, 0) };
    by_return(ret, "opened a perf event")
}

fn userfaultfd(_: &Options) -> Verdict {
    // SAFETY: userfaultfd takes flags only.
    let ret = unsafe { libc::syscall(libc::SYS_userfaultfd, libc::O_CLOEXEC | libc::O_NONBLOCK) };
    by_return(ret, "opened a userfaultfd")
}

fn io_uring_setup(_: &Options) -> Verdict {
    let mut params = [0u8; 120];
    // SAFETY: io_uring_setup reads and writes the 120-byte struct io_uring_params.
    let ret = unsafe { libc::syscall(libc::SYS_io_uring_setup, 2, params.as_mut_ptr()) };
    by_return(ret, "created an io_uring")
}

// ---- namespaces ---------------------------------------------------------------------

fn unshare_user(_: &Options) -> Verdict {
    in_child("unshare(CLONE_NEWUSER) worked", || nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWUSER))
}

fn unshare_mnt_net(_: &Options) -> Verdict {
    use nix::sched::CloneFlags;
    in_child("unshare(CLONE_NEWNS | CLONE_NEWNET) worked", || nix::sched::unshare(CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWNET))
}

/// A raw clone(2)/clone3(2) that behaves like fork (no new stack); the child exits at once.
fn raw_clone(what: &str, call: impl FnOnce() -> i64) -> Verdict {
    let pid = call();
    if pid == 0 {
        // SAFETY: in the cloned child: leave at once without touching the parent's state.
        unsafe { libc::_exit(0) }
    }
    if pid < 0 {
        return Verdict::Blocked(format!("{:?}", errno()));
    }
    let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid as i32), None);
    Verdict::Succeeded(what.to_string())
}

fn clone_newns(_: &Options) -> Verdict {
    let flags = (libc::CLONE_NEWNS | libc::CLONE_NEWPID | libc::SIGCHLD) as libc::c_ulong;
    // SAFETY: clone without CLONE_VM or a stack is a fork; the child `_exit`s at once.
    raw_clone("clone(CLONE_NEWNS | CLONE_NEWPID) made a child", || unsafe { libc::syscall(libc::SYS_clone, flags, 0, 0, 0, 0) })
}

fn clone3_newuser(_: &Options) -> Verdict {
    // struct clone_args (CLONE_ARGS_SIZE_VER0, 64 bytes): flags, pidfd, child_tid,
    // parent_tid, exit_signal, stack, stack_size, tls.
    let mut args = [0u64; 8];
    args[0] = libc::CLONE_NEWUSER as u64;
    args[4] = libc::SIGCHLD as u64;
    // SAFETY: clone3 without a stack is a fork; the child `_exit`s at once.
    raw_clone("clone3(CLONE_NEWUSER) made a child", || unsafe {
        libc::syscall(libc::SYS_clone3, args.as_ptr(), std::mem::size_of_val(&args))
    })
}

fn setns_pid1(_: &Options) -> Verdict {
    let mut refused = Vec::new();
    for ns in ["net", "uts", "ipc", "cgroup", "mnt"] {
        let path = format!("/proc/1/ns/{ns}");
        let fd = match nix::fcntl::open(path.as_str(), nix::fcntl::OFlag::O_RDONLY, nix::sys::stat::Mode::empty()) {
            Ok(fd) => fd,
            Err(e) => {
                refused.push(format!("{ns}: open {e:?}"));
                continue;
            }
        };
        // SAFETY: setns on a namespace fd this process opened; nstype 0 = any.
        let ret = unsafe { libc::setns(fd.as_raw_fd(), 0) };
        if ret == 0 {
            return Verdict::Succeeded(format!("joined PID 1's {ns} namespace"));
        }
        refused.push(format!("{ns}: {:?}", errno()));
    }
    Verdict::Blocked(refused.join(", "))
}

fn open_by_handle(_: &Options) -> Verdict {
    // The shocker attack (CVE-2014-3519 class): a file handle opens any inode of the
    // filesystem behind a mount the attacker can reach, bypassing every path check.
    let mut last = String::from("no candidate file");
    for path in ["/etc/resolv.conf", "/etc/hosts", "/dev/null", "/dev/shm", "/tmp"] {
        // struct file_handle: handle_bytes, handle_type, then up to 128 bytes.
        let mut handle = [0u32; 2 + 32];
        handle[0] = 128;
        let mut mount_id: libc::c_int = 0;
        let c_path = cstr(path);
        // SAFETY: name_to_handle_at writes at most handle_bytes into `handle` and the mount id.
        let ret =
            unsafe { libc::syscall(libc::SYS_name_to_handle_at, libc::AT_FDCWD, c_path.as_ptr(), handle.as_mut_ptr(), &mut mount_id, 0) };
        if ret < 0 {
            last = format!("name_to_handle_at {path}: {:?}", errno());
            continue;
        }
        let Ok(mount_fd) = fs::File::open(path) else { continue };
        // SAFETY: open_by_handle_at reads the handle filled in above.
        let fd = unsafe { libc::syscall(libc::SYS_open_by_handle_at, mount_fd.as_raw_fd(), handle.as_ptr(), libc::O_RDONLY) };
        if fd >= 0 {
            // SAFETY: the kernel just returned this new descriptor.
            drop(unsafe { OwnedFd::from_raw_fd(fd as RawFd) });
            return Verdict::Succeeded(format!("opened {path} by file handle"));
        }
        last = format!("open_by_handle_at {path}: {:?}", errno());
    }
    Verdict::Blocked(last)
}

fn ptrace_pid1(_: &Options) -> Verdict {
    // PTRACE_SEIZE does not stop the tracee; the tracer's exit detaches it.
    // SAFETY: ptrace with integer arguments only.
    let ret = unsafe { libc::ptrace(libc::PTRACE_SEIZE, 1, 0, 0) };
    by_return(ret, "seized PID 1 with ptrace")
}

fn vm_read_pid1(_: &Options) -> Verdict {
    let Ok(maps) = fs::read_to_string("/proc/1/maps") else { return Verdict::Blocked("cannot read /proc/1/maps".into()) };
    let Some(start) = maps.lines().find(|l| l.split_whitespace().nth(1).is_some_and(|p| p.starts_with('r'))).and_then(|l| {
        let range = l.split_whitespace().next()?;
        usize::from_str_radix(range.split('-').next()?, 16).ok()
    }) else {
        return Verdict::Blocked("no readable mapping of PID 1".into());
    };
    let mut buf = [0u8; 16];
    let local = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
    let remote = libc::iovec { iov_base: start as *mut libc::c_void, iov_len: buf.len() };
    // SAFETY: one local iovec over `buf`; the remote address is only read by the kernel.
    let n = unsafe { libc::process_vm_readv(1, &local, 1, &remote, 1, 0) };
    by_return(n as i64, &format!("read {n} bytes of PID 1's memory at {start:#x}"))
}

fn host_pid_visible(options: &Options) -> Verdict {
    let Some(host) = options.get("pidns") else { return Verdict::Succeeded("no verdict: pidns= not given".into()) };
    let Ok(entries) = fs::read_dir("/proc") else { return Verdict::Blocked("no /proc".into()) };
    let mut seen = 0;
    for pid in entries.flatten().filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok()) {
        seen += 1;
        if fs::read_link(format!("/proc/{pid}/ns/pid")).is_ok_and(|l| l.to_string_lossy() == host) {
            let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            return Verdict::Succeeded(format!("pid {pid} ({}) is in the host's PID namespace {host}", comm.trim()));
        }
    }
    Verdict::Blocked(format!("none of the {seen} visible processes is in {host}"))
}

// ---- /proc, /sys and cgroups --------------------------------------------------------

fn sys_firmware(_: &Options) -> Verdict {
    match fs::read_dir("/sys/firmware").map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect::<Vec<_>>()) {
        Ok(names) if !names.is_empty() => Verdict::Succeeded(format!("/sys/firmware lists {}", names.join(","))),
        Ok(_) => Verdict::Blocked("/sys/firmware is empty".into()),
        Err(e) => Verdict::Blocked(e.to_string()),
    }
}

fn proc_sys_hostname(_: &Options) -> Verdict {
    rewrite_sysctl("/proc/sys/kernel/hostname")
}

fn proc_sys_drop_caches(_: &Options) -> Verdict {
    write_file("/proc/sys/vm/drop_caches", b"1")
}

fn proc_sys_core_pattern(_: &Options) -> Verdict {
    rewrite_sysctl("/proc/sys/kernel/core_pattern")
}

fn cgroup_mkdir(_: &Options) -> Verdict {
    let dir = Path::new("/sys/fs/cgroup/keel-escape-probe");
    match fs::create_dir(dir) {
        Ok(()) => {
            let _ = fs::remove_dir(dir);
            Verdict::Succeeded(format!("created {}", dir.display()))
        }
        Err(e) => Verdict::Blocked(format!("{}: {e}", dir.display())),
    }
}

fn cgroup_release_agent(options: &Options) -> Verdict {
    // The classic escape: a cgroup v1 hierarchy whose release_agent the kernel runs as
    // host root. Needs a v1 mount (or a writable one).
    let target = options.scratch().join("keel-attack-cgroup");
    let _ = fs::create_dir_all(&target);
    let mounted = nix::mount::mount(Some("cgroup"), &target, Some("cgroup"), nix::mount::MsFlags::empty(), Some("none,name=keelescape"));
    let verdict = match mounted {
        Err(e) => Verdict::Blocked(format!("mount cgroup v1: {e:?}")),
        Ok(()) => {
            let agent = target.join("release_agent");
            let current = fs::read(&agent).unwrap_or_default();
            let written = write_file(&agent.display().to_string(), if current.is_empty() { b"\n" } else { &current });
            let _ = nix::mount::umount2(&target, nix::mount::MntFlags::MNT_DETACH);
            match written {
                Verdict::Succeeded(_) => Verdict::Succeeded("mounted a cgroup v1 hierarchy and wrote its release_agent".into()),
                blocked => blocked,
            }
        }
    };
    let _ = fs::remove_dir(&target);
    verdict
}

fn control_socket(_: &Options) -> Verdict {
    match std::os::unix::net::UnixStream::connect("/run/keel/control.sock") {
        Ok(_) => Verdict::Succeeded("connected to /run/keel/control.sock".into()),
        Err(e) => Verdict::Blocked(format!("{:?}", e.kind())),
    }
}

/// Mount ids listed in this process's mountinfo.
fn own_mount_ids() -> Vec<u64> {
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect()
}

/// Which fds of `pid` (above 2) refer to a file on a mount this process cannot see: an
/// object of another mount namespace, i.e. the host's.
pub fn foreign_fds(fdinfo: &[(u32, Option<u64>, String)], visible_mounts: &[u64]) -> Vec<String> {
    fdinfo
        .iter()
        .filter(|(fd, mnt, _)| *fd > 2 && mnt.is_some_and(|m| !visible_mounts.contains(&m)))
        .map(|(fd, mnt, target)| format!("fd {fd} -> {target} (mount {})", mnt.unwrap_or_default()))
        .collect()
}

fn fd_leak(_: &Options) -> Verdict {
    let visible = own_mount_ids();
    let mut found = Vec::new();
    let mut looked = 0;
    for pid in ["1", "self"] {
        let Ok(entries) = fs::read_dir(format!("/proc/{pid}/fd")) else { continue };
        let mut info = Vec::new();
        for fd in entries.flatten().filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok()) {
            let target = fs::read_link(format!("/proc/{pid}/fd/{fd}")).map(|t| t.display().to_string()).unwrap_or_default();
            let mnt = fs::read_to_string(format!("/proc/{pid}/fdinfo/{fd}"))
                .ok()
                .and_then(|text| text.lines().find_map(|l| l.strip_prefix("mnt_id:")).and_then(|v| v.trim().parse().ok()));
            info.push((fd, mnt, target));
        }
        looked += info.len();
        found.extend(foreign_fds(&info, &visible).into_iter().map(|f| format!("pid {pid}: {f}")));
    }
    if found.is_empty() {
        Verdict::Blocked(format!("{looked} fds of PID 1 and the probe, none on a mount outside this namespace"))
    } else {
        Verdict::Succeeded(found.join("; "))
    }
}

fn tiocsti_console(_: &Options) -> Verdict {
    let mut tried = Vec::new();
    for path in ["/dev/console", "/dev/tty", "/dev/tty0", "/dev/ttyS0"] {
        let file = match fs::OpenOptions::new().read(true).write(true).open(path) {
            Ok(f) => f,
            Err(e) => {
                tried.push(format!("{path}: {:?}", e.kind()));
                continue;
            }
        };
        let byte: u8 = b' ';
        // SAFETY: TIOCSTI reads one byte from the pointer.
        let ret = unsafe { libc::ioctl(file.as_raw_fd(), libc::TIOCSTI, &byte) };
        if ret == 0 {
            return Verdict::Succeeded(format!("pushed a byte into the input of {path}"));
        }
        tried.push(format!("{path}: {:?}", errno()));
    }
    Verdict::Blocked(tried.join(", "))
}

// ---- network ------------------------------------------------------------------------

/// The default route's interface and gateway (from /proc/net/route).
fn default_route() -> Option<(String, Ipv4Addr)> {
    let text = fs::read_to_string("/proc/net/route").ok()?;
    text.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.len() > 2 && f[1] == "00000000")
            .then(|| Some((f[0].to_string(), Ipv4Addr::from(u32::from_str_radix(f[2], 16).ok()?.swap_bytes()))))?
    })
}

fn tcp_fetch(addr: SocketAddr, secs: u64) -> Verdict {
    let result = (|| -> std::io::Result<String> {
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(secs))?;
        stream.set_read_timeout(Some(Duration::from_secs(secs)))?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer)?;
        Ok(answer)
    })();
    match result {
        Ok(answer) => Verdict::Succeeded(format!("{addr} answered {:?}", answer.trim())),
        Err(e) => Verdict::Blocked(format!("{addr}: {}", e.kind())),
    }
}

fn unpublished_host_port(options: &Options) -> Verdict {
    let addr = match options.get("hostaddr") {
        Some(text) => text.parse().ok(),
        None => match (default_route(), options.get("hostport").and_then(|p| p.parse::<u16>().ok())) {
            (Some((_, gateway)), Some(port)) => Some(SocketAddr::from((gateway, port))),
            _ => None,
        },
    };
    match addr {
        Some(addr) => tcp_fetch(addr, 3),
        None => Verdict::Succeeded("no verdict: no hostaddr=, nor hostport= with a default route".into()),
    }
}

fn metadata_address(_: &Options) -> Verdict {
    tcp_fetch(SocketAddr::from(([169, 254, 169, 254], 80)), 3)
}

/// Internet checksum (RFC 1071) over `parts`.
pub fn checksum(parts: &[&[u8]]) -> u16 {
    let mut sum: u32 = 0;
    let bytes: Vec<u8> = parts.concat();
    for pair in bytes.chunks(2) {
        let word = u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]);
        sum += u32::from(word);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An Ethernet frame carrying a TCP SYN from `src:sport` to `dst:dport`.
pub fn syn_frame(dst_mac: [u8; 6], src_mac: [u8; 6], src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16) -> Vec<u8> {
    let mut tcp = vec![0u8; 20];
    tcp[0..2].copy_from_slice(&sport.to_be_bytes());
    tcp[2..4].copy_from_slice(&dport.to_be_bytes());
    tcp[4..8].copy_from_slice(&0x4b45_454cu32.to_be_bytes());
    tcp[12] = 5 << 4;
    tcp[13] = 0x02; // SYN
    tcp[14..16].copy_from_slice(&64240u16.to_be_bytes());
    let pseudo = [&src.octets()[..], &dst.octets()[..], &[0, 6], &20u16.to_be_bytes()[..]].concat();
    let sum = checksum(&[&pseudo, &tcp]);
    tcp[16..18].copy_from_slice(&sum.to_be_bytes());
    let mut ip = vec![0u8; 20];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&40u16.to_be_bytes());
    ip[6] = 0x40; // don't fragment
    ip[8] = 64;
    ip[9] = 6;
    ip[12..16].copy_from_slice(&src.octets());
    ip[16..20].copy_from_slice(&dst.octets());
    let sum = checksum(&[&ip]);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    [&dst_mac[..], &src_mac[..], &[0x08, 0x00], &ip, &tcp].concat()
}

/// The TCP flags of a frame answering [`syn_frame`]: from `from:from_port` to our `port`.
pub fn answer_flags(frame: &[u8], from: Ipv4Addr, from_port: u16, port: u16) -> Option<u8> {
    let ip = frame.get(14..)?;
    if frame.get(12..14)? != [0x08, 0x00] || ip.first()? >> 4 != 4 || *ip.get(9)? != 6 || ip.get(12..16)? != from.octets() {
        return None;
    }
    let tcp = ip.get(usize::from(ip[0] & 0x0f) * 4..)?;
    let sport = u16::from_be_bytes([*tcp.first()?, *tcp.get(1)?]);
    let dport = u16::from_be_bytes([*tcp.get(2)?, *tcp.get(3)?]);
    (sport == from_port && dport == port).then(|| tcp.get(13).copied())?
}

fn mac_of(text: &str) -> Option<[u8; 6]> {
    let bytes: Vec<u8> = text.trim().split(':').filter_map(|b| u8::from_str_radix(b, 16).ok()).collect();
    bytes.try_into().ok()
}

fn raw_localnet(options: &Options) -> Verdict {
    // CVE-2020-8558: frames addressed to 127.0.0.1 sent to the host's bridge reach host
    // services bound to loopback when route_localnet is on without a drop rule.
    let Some(port) = options.get("localnet").and_then(|p| p.parse::<u16>().ok()) else {
        return Verdict::Succeeded("no verdict: localnet= not given".into());
    };
    let route = default_route();
    let iface = match options.get("iface").map(str::to_string).or_else(|| route.as_ref().map(|r| r.0.clone())) {
        Some(iface) => iface,
        None => return Verdict::Blocked("no interface: no default route".into()),
    };
    let loopback = iface == "lo";
    let (src, dst_mac) = if loopback {
        (Ipv4Addr::LOCALHOST, [0u8; 6])
    } else {
        let Some((_, gateway)) = route else { return Verdict::Blocked("no default gateway".into()) };
        // Learn our address and the gateway's MAC: one datagram makes the kernel resolve it.
        let own = UdpSocket::bind("0.0.0.0:0").and_then(|s| {
            s.connect((gateway, 9))?;
            let _ = s.send(b"x");
            s.local_addr()
        });
        let Ok(SocketAddr::V4(own)) = own else { return Verdict::Blocked(format!("no address toward {gateway}")) };
        std::thread::sleep(Duration::from_millis(300));
        let arp = fs::read_to_string("/proc/net/arp").unwrap_or_default();
        let mac = arp
            .lines()
            .find(|l| l.split_whitespace().next() == Some(&gateway.to_string()))
            .and_then(|l| mac_of(l.split_whitespace().nth(3)?));
        match mac {
            Some(mac) => (*own.ip(), mac),
            None => return Verdict::Blocked(format!("gateway {gateway} has no MAC in /proc/net/arp")),
        }
    };
    let src_mac = mac_of(&fs::read_to_string(format!("/sys/class/net/{iface}/address")).unwrap_or_default()).unwrap_or([0; 6]);
    let Ok(index) = nix::net::if_::if_nametoindex(iface.as_str()) else { return Verdict::Blocked(format!("no interface {iface}")) };
    // SAFETY: a packet socket for IPv4 frames; checked below.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, i32::from((libc::ETH_P_IP as u16).to_be())) };
    if fd < 0 {
        return Verdict::Blocked(format!("packet socket: {:?}", errno()));
    }
    // SAFETY: the kernel just returned this descriptor.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: sockaddr_ll is plain data; zeroed then filled.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as u16;
    addr.sll_protocol = (libc::ETH_P_IP as u16).to_be();
    addr.sll_ifindex = index as i32;
    addr.sll_halen = 6;
    addr.sll_addr[..6].copy_from_slice(&dst_mac);
    let addr_ptr = (&addr as *const libc::sockaddr_ll).cast::<libc::sockaddr>();
    let addr_len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
    // SAFETY: bind to the interface with the address built above.
    if unsafe { libc::bind(socket.as_raw_fd(), addr_ptr, addr_len) } < 0 {
        return Verdict::Blocked(format!("bind to {iface}: {:?}", errno()));
    }
    let sport = 40000 + (std::process::id() % 20000) as u16;
    let frame = syn_frame(dst_mac, src_mac, src, Ipv4Addr::LOCALHOST, sport, port);
    // SAFETY: send `frame` to the address built above.
    let sent = unsafe { libc::sendto(socket.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0, addr_ptr, addr_len) };
    if sent < 0 {
        return Verdict::Blocked(format!("send on {iface}: {:?}", errno()));
    }
    let timeout = libc::timeval { tv_sec: 0, tv_usec: 200_000 };
    // SAFETY: SO_RCVTIMEO with a timeval.
    unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&timeout as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as u32,
        )
    };
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut buf = [0u8; 2048];
    while Instant::now() < deadline {
        // SAFETY: recv into `buf`.
        let n = unsafe { libc::recv(socket.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n <= 0 {
            continue;
        }
        match answer_flags(&buf[..n as usize], Ipv4Addr::LOCALHOST, port, sport) {
            Some(flags) if flags & 0x12 == 0x12 => return Verdict::Succeeded(format!("SYN-ACK from 127.0.0.1:{port} through {iface}")),
            Some(flags) if flags & 0x04 != 0 => {
                return Verdict::Succeeded(format!("the host's stack answered RST from 127.0.0.1:{port} through {iface}"))
            }
            _ => {}
        }
    }
    Verdict::Blocked(format!("no answer from 127.0.0.1:{port} through {iface} in 3 s"))
}

// ---- special settings: cwd, the reaper ----------------------------------------------

/// Walk up from the working directory (and from `/proc/self/cwd`) looking for the host's
/// `/etc/keel/containers`, which no container root has.
fn cwd_escape(_: &Options) -> Verdict {
    let cwd = std::env::current_dir().map(|p| p.display().to_string()).unwrap_or_else(|e| format!("({e})"));
    let mut dir = PathBuf::from(".");
    for depth in 0..24 {
        if dir.join("etc/keel/containers").is_dir() {
            let names: Vec<String> = fs::read_dir(dir.join("etc/keel/containers"))
                .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).take(3).collect())
                .unwrap_or_default();
            return Verdict::Succeeded(format!("cwd {cwd}: {depth} levels up lists the host's /etc/keel/containers ({})", names.join(",")));
        }
        dir.push("..");
    }
    Verdict::Blocked(format!("cwd {cwd}: no /etc/keel/containers above it"))
}

/// With `init = true`, PID 1 of the container is keel's reaper: try to change the file
/// `/proc/1/exe` leads to (CVE-2019-5736 class). Each change is undone at once; the host
/// checks its own file's ctime.
fn reaper_exe(_: &Options) -> Verdict {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let link = fs::read_link("/proc/1/exe").map(|p| p.display().to_string()).unwrap_or_else(|e| format!("({e})"));
    let meta = match fs::metadata("/proc/1/exe") {
        Ok(meta) => meta,
        Err(e) => return Verdict::Blocked(format!("/proc/1/exe -> {link}: {e}")),
    };
    let mut changed = Vec::new();
    let mut refused = Vec::new();
    let mode = meta.permissions().mode() & 0o7777;
    match fs::set_permissions("/proc/1/exe", fs::Permissions::from_mode(mode | 0o4002)) {
        Ok(()) => {
            changed.push("chmod u+s,o+w");
            let _ = fs::set_permissions("/proc/1/exe", fs::Permissions::from_mode(mode));
        }
        Err(e) => refused.push(format!("chmod: {e}")),
    }
    match std::os::unix::fs::chown("/proc/1/exe", Some(meta.uid()), Some(meta.gid())) {
        Ok(()) => changed.push("chown"),
        Err(e) => refused.push(format!("chown: {e}")),
    }
    let (path, name, value) = (cstr("/proc/1/exe"), cstr("user.keel-escape"), b"1");
    // SAFETY: setxattr reads the two strings and `value`.
    if unsafe { libc::setxattr(path.as_ptr(), name.as_ptr(), value.as_ptr().cast(), value.len(), 0) } == 0 {
        changed.push("setxattr");
        // SAFETY: removexattr reads the two strings.
        unsafe { libc::removexattr(path.as_ptr(), name.as_ptr()) };
    } else {
        refused.push(format!("setxattr: {:?}", errno()));
    }
    match fs::OpenOptions::new().write(true).open("/proc/1/exe") {
        Ok(_) => changed.push("open for writing"),
        Err(e) => refused.push(format!("open for writing: {e}")),
    }
    if changed.is_empty() || link.starts_with("/memfd:") {
        Verdict::Blocked(format!(
            "/proc/1/exe -> {link}: {}",
            if changed.is_empty() { refused.join(", ") } else { format!("only a memfd copy changed ({})", changed.join(", ")) }
        ))
    } else {
        Verdict::Succeeded(format!("/proc/1/exe -> {link}: {}", changed.join(", ")))
    }
}

/// Device nodes an image layer carried (scripts/make-hostile-images.py): read them.
fn layer_devices(_: &Options) -> Verdict {
    let mut refused = Vec::new();
    for path in ["/layer-mem", "/layer-disk"] {
        let mut buf = [0u8; 16];
        match fs::File::open(path).and_then(|mut f| f.read(&mut buf)) {
            Ok(n) if n > 0 => return Verdict::Succeeded(format!("read {n} bytes from the layer's {path}")),
            Ok(_) => refused.push(format!("{path}: empty")),
            Err(e) => refused.push(format!("{path}: {:?}", e.kind())),
        }
    }
    Verdict::Blocked(refused.join(", "))
}

// ---- resource attacks (judged by the host) -------------------------------------------

/// A task bomb: a detached leader process starts threads (tasks, as `pids.max` and
/// `kernel.threads-max` count them; cheaper to make than processes, so the bomb reaches
/// the limit in seconds even under TCG) until the kernel refuses, reports how many it got,
/// and keeps grabbing any task slot that frees up until `secs` have passed since the
/// start. The probe itself returns after the report, so the host can be checked while
/// the bomb holds.
fn fork_bomb(secs: u64) -> i32 {
    let until = Instant::now() + Duration::from_secs(secs);
    let (read_end, write_end) = match nix::unistd::pipe() {
        Ok(pair) => pair,
        Err(e) => {
            println!("fork-bomb: pipe: {e}");
            return 1;
        }
    };
    // SAFETY: single-threaded until here; the leader child only makes threads and exits.
    match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Parent { .. }) => {
            drop(write_end);
            let mut report = String::new();
            let _ = fs::File::from(read_end).read_to_string(&mut report);
            println!("fork-bomb: {}", if report.is_empty() { "the leader died before reporting" } else { report.trim() });
            0
        }
        Ok(nix::unistd::ForkResult::Child) => {
            drop(read_end);
            super::stdio_to_null();
            let mut report = Some(fs::File::from(write_end));
            let hold = move || {
                while Instant::now() < until {
                    std::thread::sleep(Duration::from_millis(500));
                }
            };
            let mut count = 1u32;
            while Instant::now() < until {
                match std::thread::Builder::new().stack_size(64 * 1024).spawn(hold) {
                    Ok(_) => count += 1,
                    Err(e) => {
                        if let Some(mut pipe) = report.take() {
                            let _ = writeln!(pipe, "{count} tasks, then {e}");
                        }
                        std::thread::sleep(Duration::from_millis(20));
                    }
                }
                if count >= 200_000 {
                    break;
                }
            }
            if let Some(mut pipe) = report.take() {
                let _ = writeln!(pipe, "{count} tasks, never refused");
            }
            // SAFETY: end the leader (and its threads) without the parent's handlers.
            unsafe { libc::_exit(0) }
        }
        Err(e) => {
            println!("fork-bomb: fork: {e}");
            1
        }
    }
}

/// Allocate and touch up to `mib` MiB, reporting progress every 16 MiB.
fn memory_hog(mib: usize) -> i32 {
    let mut chunks: Vec<Vec<u8>> = Vec::new();
    for i in 0..mib {
        chunks.push(vec![1u8; 1 << 20]);
        if i % 16 == 15 {
            println!("memory-hog: {} MiB", i + 1);
        }
    }
    println!("memory-hog: held {mib} MiB");
    0
}

/// `keel-probe serve IP:PORT SECS`: detach and answer every TCP connection on IP:PORT
/// with one line naming the address, for SECS seconds: the host service the network
/// attacks try to reach (started on the host by the suite).
pub fn serve(address: &str, secs: u64) -> i32 {
    let listener = match std::net::TcpListener::bind(address) {
        Ok(listener) => listener,
        Err(e) => {
            eprintln!("keel-probe: serve {address}: {e}");
            return 1;
        }
    };
    // SAFETY: single-threaded; the child only accepts connections and `_exit`s.
    match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Parent { child }) => {
            println!("serving {address} pid {child}");
            return 0;
        }
        Ok(nix::unistd::ForkResult::Child) => {}
        Err(e) => {
            eprintln!("keel-probe: serve: fork: {e}");
            return 1;
        }
    }
    let _ = nix::unistd::setsid();
    super::stdio_to_null();
    let _ = listener.set_nonblocking(true);
    let until = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < until {
        match listener.accept() {
            Ok((mut stream, _)) => {
                // Read what the client sent first: closing with unread data resets the connection.
                let _ = stream.set_nonblocking(false);
                let _ = stream.set_read_timeout(Some(Duration::from_millis(300)));
                let _ = stream.read(&mut [0u8; 512]);
                let _ = stream.write_all(format!("keel-escape host service at {address}\n").as_bytes());
            }
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
    // SAFETY: end the detached child without the parent's handlers.
    unsafe { libc::_exit(0) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_parse_back_and_only_blocked_counts_as_blocked() {
        let blocked = Verdict::Blocked("EPERM".into()).line("mount-proc");
        assert_eq!(blocked, "attack mount-proc: blocked (EPERM)");
        assert_eq!(parse_line(&blocked), Some(("mount-proc", true)));
        let worked = Verdict::Succeeded("mounted".into()).line("mount-proc");
        assert_eq!(parse_line(&worked), Some(("mount-proc", false)));
        assert_eq!(parse_line("attack x: maybe"), None);
        assert_eq!(parse_line("mount: EPERM"), None);
    }

    #[test]
    fn attack_names_are_unique() {
        let mut names: Vec<&str> = ATTACKS.iter().chain(SPECIAL).map(|(n, _)| *n).collect();
        let count = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), count);
        assert!(ATTACKS.len() >= 30);
    }

    #[test]
    fn module_calls_are_blocked_only_by_a_refusal() {
        use nix::errno::Errno;
        assert!(matches!(permission_verdict(-1, Errno::EPERM, "x"), Verdict::Blocked(_)));
        assert!(matches!(permission_verdict(-1, Errno::ENOSYS, "x"), Verdict::Blocked(_)));
        assert!(matches!(permission_verdict(-1, Errno::ENOEXEC, "x"), Verdict::Succeeded(_)));
        assert!(matches!(permission_verdict(-1, Errno::ENOENT, "x"), Verdict::Succeeded(_)));
        assert!(matches!(permission_verdict(0, Errno::UnknownErrno, "x"), Verdict::Succeeded(_)));
    }

    #[test]
    fn options_are_key_value_words() {
        let options = Options::parse(&["scratch=/dev".into(), "localnet=7777".into()]).unwrap();
        assert_eq!(options.scratch(), Path::new("/dev"));
        assert_eq!(options.words(), ["localnet=7777", "scratch=/dev"]);
        assert!(Options::parse(&["oops".into()]).unwrap_err().contains("oops"));
        assert_eq!(Options::default().scratch(), Path::new("/tmp"));
    }

    #[test]
    fn fds_on_unseen_mounts_are_foreign() {
        let info = vec![
            (0, Some(1), "/dev/null".to_string()),
            (3, Some(20), "/".to_string()),
            (4, Some(99), "/sys/fs/cgroup/keel/web".to_string()),
            (5, None, "pipe:[1]".to_string()),
        ];
        let foreign = foreign_fds(&info, &[1, 20]);
        assert_eq!(foreign, ["fd 4 -> /sys/fs/cgroup/keel/web (mount 99)"]);
    }

    #[test]
    fn syn_frame_has_valid_checksums_and_its_answer_is_recognised() {
        let src = Ipv4Addr::new(10, 88, 0, 2);
        let frame = syn_frame([1; 6], [2; 6], src, Ipv4Addr::LOCALHOST, 40000, 7777);
        assert_eq!(frame.len(), 54);
        assert_eq!(checksum(&[&frame[14..34]]), 0, "IPv4 header checksum");
        let pseudo = [&src.octets()[..], &[127, 0, 0, 1], &[0, 6], &20u16.to_be_bytes()[..]].concat();
        assert_eq!(checksum(&[&pseudo, &frame[34..]]), 0, "TCP checksum");
        // The same frame, turned around, is the answer to it.
        let mut answer = syn_frame([2; 6], [1; 6], Ipv4Addr::LOCALHOST, src, 7777, 40000);
        answer[34 + 13] = 0x12;
        assert_eq!(answer_flags(&answer, Ipv4Addr::LOCALHOST, 7777, 40000), Some(0x12));
        assert_eq!(answer_flags(&answer, Ipv4Addr::LOCALHOST, 7777, 40001), None);
        assert_eq!(answer_flags(&frame, Ipv4Addr::LOCALHOST, 7777, 40000), None);
    }

    #[test]
    fn checksum_matches_rfc1071_example() {
        // RFC 1071 section 3: 0001 f203 f4f5 f6f7 sums to ddf2 (checksum 220d).
        assert_eq!(checksum(&[&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]]), 0x220d);
    }
}
