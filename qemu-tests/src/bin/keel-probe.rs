//! keel-probe: a small static program that the QEMU tests put in images and run in the
//! guest (on the host or, later, inside containers) to report what it sees.
//!
//! Subcommands:
//! - `orphans N`: start N children that each fork a grandchild and exit at once, so the
//!   N grandchildren are orphaned to PID 1 (they exit shortly after).
//! - `zombies`: count the processes in state Z (from /proc) and list them.
//! - `hold-zombie SECS`: detach, and leave one zombie child unreaped for SECS seconds —
//!   the negative control that shows `zombies` does see a zombie.
//! - `fetch IP:PORT [SECS]`: HTTP GET / from IP:PORT (an address, no name lookup) and
//!   print the body; exit 1 with the reason on stderr when it fails (connect timeout
//!   SECS, default 5). busybox-static's wget crashes on a failed connection.
//! - `deny`: try what a container must not be able to do (mount, load a module, reboot,
//!   keyctl, write /proc/sysrq-trigger, read /proc/kcore, list /sys/firmware, open a
//!   block device, reach keel's control socket) and print one `what: outcome` line each;
//!   the outcome is `ok` only when the action succeeded.
//! - `flood SECS`: write numbered lines (`flood N`) to stdout as fast as the pipe takes
//!   them for SECS seconds, then `flood done N` (N lines before it).
//! - `latency SOCKET N`: send N `status` requests, one at a time, over keel's control
//!   socket and print `latency p50 A ms p99 B ms max C ms` (from inside the guest, where
//!   the serial transport's own delay does not count).
//! - `ask SOCKET CMD`: send one `{"cmd":CMD}` request on a new connection to keel's
//!   control socket and print `ask CMD: ok|failed (ERROR) in T ms`; exit 0 when ok.
//! - `hold SOCKET N SECS REPORT`: detach, then for SECS seconds hold N idle connections
//!   to keel's control socket, plus one that sends a byte a second and never ends its
//!   line, plus one that pipelines `ps` requests and never reads the replies; then write
//!   what keel did to each (`idle: …`, `trickle: …`, `nonreader: …`) to the file REPORT.
//! - `tiocsti TEXT`: push TEXT into the input of the terminal on fd 0, 1 or 2 (the first
//!   that is one) with TIOCSTI, as if typed (CVE-2017-5226); prints `tiocsti: ok` or
//!   `tiocsti: ERROR`, exit 0 only when every byte went in.
//! - `seccomp`: try what keel's seccomp allowlist must refuse or answer specially
//!   (io_uring_setup, unshare and clone with CLONE_NEWUSER, a number past the list) and
//!   what it must keep working (a thread, whose clone3 falls back to clone; the
//!   personality query); one `what: outcome` line each, `ok` or the errno name.
//! - `hog SECS MIB`: fork until a fork is refused (the pids limit of a fork bomb beside
//!   it is reached), wait SECS seconds, then allocate and touch MIB MiB and hold them (a
//!   memory hog that starts once the bomb has done its part).
//! - `devcg DIR`: print `device programs: N`, the BPF_CGROUP_DEVICE programs attached to
//!   the cgroup DIR (BPF_PROG_QUERY).
//! - `devices [LEAF]`: join the cgroup LEAF if given, then open /dev/null, /dev/kmsg and
//!   /dev/mem, and mknod c 1:1 at /dev/keel-probe-mem and open it; print one
//!   `what: outcome` line each (run on the host, where /dev is not nodev, so only a
//!   device filter can refuse them).
//! - `attack NAME|all [KEY=VALUE…]`, `attack fork-bomb SECS`, `attack memory-hog MIB`:
//!   the escape suite's attacks, one `attack NAME: blocked (…)` or
//!   `attack NAME: SUCCEEDED (…)` line each (see `keel-probe/attacks.rs`).
//! - `serve IP:PORT SECS`: detach and answer TCP connections on IP:PORT for SECS seconds.
//! - `ns-root PID DEPTH`: what lies at the root of PID's mount namespace beneath DEPTH
//!   mounts (see `keel-probe/nsroot.rs`; the root switch test).

#[path = "keel-probe/attacks.rs"]
mod attacks;
#[path = "keel-probe/nsroot.rs"]
mod nsroot;

use nix::sys::wait::waitpid;
use nix::unistd::{fork, ForkResult};
use std::time::Duration;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().is_some_and(|a| a == "attack") {
        std::process::exit(attacks::main(&args[1..]));
    }
    let code = match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["orphans", n] => n.parse().map(orphans).unwrap_or_else(|_| usage()),
        ["zombies"] => zombies(),
        ["hold-zombie", secs] => secs.parse().map(hold_zombie).unwrap_or_else(|_| usage()),
        ["deny"] => deny(),
        ["tiocsti", text] => tiocsti(text),
        ["flood", secs] => secs.parse().map(flood).unwrap_or_else(|_| usage()),
        ["flood-log", dir] => flood_log(dir),
        ["latency", socket, n] => n.parse().map(|n| latency(socket, n)).unwrap_or_else(|_| usage()),
        ["ask", socket, cmd] => ask(socket, cmd),
        ["hold", socket, n, secs, report] => match (n.parse(), secs.parse()) {
            (Ok(n), Ok(secs)) => hold(socket, n, secs, report),
            _ => usage(),
        },
        ["seccomp"] => seccomp_probe(),
        ["serve", address, secs] => secs.parse().map(|s| attacks::serve(address, s)).unwrap_or_else(|_| usage()),
        ["fetch", address] => fetch(address, 5),
        ["fetch", address, secs] => secs.parse().map(|s| fetch(address, s)).unwrap_or_else(|_| usage()),
        ["hog", secs, mib] => match (secs.parse(), mib.parse()) {
            (Ok(secs), Ok(mib)) => hog(secs, mib),
            _ => usage(),
        },
        ["devcg", dir] => devcg(dir),
        ["ns-root", pid, depth] => nsroot::main(pid, depth),
        ["devices"] => devices(None),
        ["devices", leaf] => devices(Some(leaf)),
        _ => usage(),
    };
    std::process::exit(code);
}

fn usage() -> i32 {
    eprintln!("usage: keel-probe orphans N | zombies | hold-zombie SECS | deny | seccomp | tiocsti TEXT | flood SECS | latency SOCKET N | ask SOCKET CMD | hold SOCKET N SECS REPORT | fetch IP:PORT [SECS] | hog SECS MIB | devcg DIR | devices [LEAF] | ns-root PID DEPTH | attack … | serve IP:PORT SECS");
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

/// Point stdin, stdout and stderr at /dev/null, so a process left running in the
/// background does not hold the exec helper's pipes open (the helper then sees EOF).
fn stdio_to_null() {
    if let Ok(null) = std::fs::OpenOptions::new().read(true).write(true).open("/dev/null") {
        use std::os::fd::AsRawFd;
        for fd in 0..3 {
            // SAFETY: dup2 onto the standard descriptors, which this process owns.
            unsafe { libc::dup2(null.as_raw_fd(), fd) };
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
    stdio_to_null();
    if fork_or_die().is_none() {
        exit_now(0);
    }
    std::thread::sleep(Duration::from_secs(secs));
    exit_now(0)
}

/// `ok`, or the errno name of a failed attempt.
fn outcome<T>(result: nix::Result<T>) -> String {
    match result {
        Ok(_) => "ok".into(),
        Err(errno) => format!("{errno:?}"),
    }
}

fn deny() -> i32 {
    use nix::fcntl::OFlag;
    use nix::sys::stat::Mode;
    let mut report = Vec::new();
    let _ = std::fs::create_dir_all("/tmp/probe-mnt");
    let mount = nix::mount::mount(Some("none"), "/tmp/probe-mnt", Some("tmpfs"), nix::mount::MsFlags::empty(), None::<&str>);
    report.push(("mount", outcome(mount)));
    let null = std::fs::File::open("/dev/null").expect("open /dev/null");
    report.push(("module", outcome(nix::kmod::finit_module(&null, c"", nix::kmod::ModuleInitFlags::empty()))));
    report.push(("reboot", outcome(nix::sys::reboot::set_cad_enabled(false))));
    // SAFETY: keyctl(KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 0) reads no memory.
    let keyctl = unsafe { libc::syscall(libc::SYS_keyctl, 0, -3, 0) };
    report.push(("keyctl", if keyctl < 0 { format!("{:?}", nix::errno::Errno::last()) } else { "ok".into() }));
    let sysrq = nix::fcntl::open("/proc/sysrq-trigger", OFlag::O_WRONLY, Mode::empty()).and_then(|fd| nix::unistd::write(&fd, b"h"));
    report.push(("sysrq", outcome(sysrq)));
    let kcore = std::fs::read("/proc/kcore").map(|b| b.len()).unwrap_or(0);
    report.push(("kcore", if kcore > 0 { "ok".into() } else { "empty".into() }));
    let firmware = std::fs::read_dir("/sys/firmware").map(|d| d.count()).unwrap_or(0);
    report.push(("firmware", if firmware > 0 { "ok".into() } else { "empty".into() }));
    let node = "/tmp/probe-blk";
    let _ = std::fs::remove_file(node);
    let blockdev =
        nix::sys::stat::mknod(node, nix::sys::stat::SFlag::S_IFBLK, Mode::from_bits_truncate(0o600), nix::sys::stat::makedev(1, 0))
            .and_then(|()| nix::fcntl::open(node, OFlag::O_RDONLY, Mode::empty()));
    report.push(("blockdev", outcome(blockdev)));
    let control = std::os::unix::net::UnixStream::connect("/run/keel/control.sock");
    report.push(("control", control.map(|_| "ok".to_string()).unwrap_or_else(|e| format!("{:?}", e.kind()))));
    for (what, result) in report {
        println!("{what}: {result}");
    }
    0
}

fn fetch(address: &str, secs: u64) -> i32 {
    use std::io::{Read, Write};
    let timeout = Duration::from_secs(secs);
    let result = (|| -> std::io::Result<String> {
        let addr: std::net::SocketAddr =
            address.parse().map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{address}: {e}")))?;
        let mut stream = std::net::TcpStream::connect_timeout(&addr, timeout)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.write_all(b"GET / HTTP/1.0\r\n\r\n")?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer)?;
        Ok(answer.split_once("\r\n\r\n").map(|(_, body)| body.to_string()).unwrap_or(answer))
    })();
    match result {
        Ok(body) => {
            print!("{body}");
            0
        }
        Err(e) => {
            eprintln!("keel-probe: fetch {address}: {e}");
            1
        }
    }
}

fn tiocsti(text: &str) -> i32 {
    // SAFETY: isatty only inspects the descriptor.
    let Some(fd) = (0..3).find(|fd| unsafe { libc::isatty(*fd) } == 1) else {
        println!("tiocsti: no terminal on fds 0-2");
        return 1;
    };
    for byte in text.bytes() {
        // SAFETY: TIOCSTI reads one byte from the pointer, which points at `byte`.
        if unsafe { libc::ioctl(fd, libc::TIOCSTI, &byte as *const u8) } < 0 {
            println!("tiocsti: {}", std::io::Error::last_os_error());
            return 1;
        }
    }
    println!("tiocsti: ok");
    0
}

// --- seccomp probe (issue 11, point 4: seccomp as an allowlist) ---

/// `syscall(nr, args...)` as a nix result.
fn raw_syscall(nr: libc::c_long, args: [libc::c_long; 3]) -> nix::Result<libc::c_long> {
    // SAFETY: every caller passes integers or NULL, chosen so that the call has no effect
    // beyond this process (or a child that exits at once).
    let rc = unsafe { libc::syscall(nr, args[0], args[1], args[2]) };
    nix::errno::Errno::result(rc)
}

fn seccomp_probe() -> i32 {
    let mut report = Vec::new();
    // io_uring_setup(1, NULL): EFAULT from the kernel, EPERM from the filter.
    report.push(("io_uring_setup", outcome(raw_syscall(libc::SYS_io_uring_setup, [1, 0, 0]))));
    // clone first: after a successful unshare the unmapped caller could not nest another.
    let newuser = libc::CLONE_NEWUSER as libc::c_long;
    let flags = newuser | libc::SIGCHLD as libc::c_long;
    let clone = raw_syscall(libc::SYS_clone, [flags, 0, 0]);
    if clone == Ok(0) {
        exit_now(0);
    }
    if let Ok(pid) = clone {
        let _ = waitpid(nix::unistd::Pid::from_raw(pid as i32), None);
    }
    report.push(("clone_newuser", outcome(clone)));
    report.push(("unshare_newuser", outcome(raw_syscall(libc::SYS_unshare, [newuser, 0, 0]))));
    report.push(("syscall_1000", outcome(raw_syscall(1000, [0, 0, 0]))));
    report.push(("personality_query", outcome(raw_syscall(libc::SYS_personality, [0xffff_ffff, 0, 0]))));
    let thread = std::thread::Builder::new().spawn(|| 7).map(|t| t.join());
    let thread = match thread {
        Ok(Ok(7)) => "ok".to_string(),
        Ok(_) => "join failed".to_string(),
        Err(e) => format!("{:?}", e.raw_os_error().map(nix::errno::Errno::from_raw)),
    };
    report.push(("thread", thread));
    for (what, result) in report {
        println!("{what}: {result}");
    }
    0
}

fn hog(secs: u64, mib: usize) -> i32 {
    // Wait for the fork bomb: a fork refused means its pids limit is reached.
    loop {
        // SAFETY: the child only calls _exit.
        match unsafe { fork() } {
            Ok(ForkResult::Child) => exit_now(0),
            Ok(ForkResult::Parent { child }) => {
                let _ = waitpid(child, None);
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(nix::errno::Errno::EAGAIN) => break,
            Err(e) => {
                eprintln!("keel-probe: fork: {e}");
                return 1;
            }
        }
    }
    println!("hog: fork refused; allocating {mib} MiB in {secs} s");
    std::thread::sleep(Duration::from_secs(secs));
    let mut held: Vec<Vec<u8>> = Vec::new();
    for _ in 0..mib {
        held.push(vec![1u8; 1 << 20]);
    }
    println!("hog: holding {} MiB", held.len());
    std::thread::sleep(Duration::from_secs(3600));
    0
}

fn devcg(dir: &str) -> i32 {
    match keel_supervisor::cgroup::devices::attached_programs(std::path::Path::new(dir)) {
        Ok(ids) => {
            println!("device programs: {}", ids.len());
            0
        }
        Err(e) => {
            eprintln!("keel-probe: {e}");
            1
        }
    }
}

fn devices(leaf: Option<&str>) -> i32 {
    use nix::fcntl::OFlag;
    use nix::sys::stat::{makedev, mknod, Mode, SFlag};
    if let Some(leaf) = leaf {
        if let Err(e) = std::fs::write(format!("{leaf}/cgroup.procs"), std::process::id().to_string()) {
            eprintln!("keel-probe: join {leaf}: {e}");
            return 1;
        }
    }
    let open = |path: &str| outcome(nix::fcntl::open(path, OFlag::O_RDONLY | OFlag::O_NONBLOCK, Mode::empty()));
    let node = "/dev/keel-probe-mem";
    let _ = std::fs::remove_file(node);
    let made = mknod(node, SFlag::S_IFCHR, Mode::from_bits_truncate(0o600), makedev(1, 1));
    let report = [
        ("null", open("/dev/null")),
        ("kmsg", open("/dev/kmsg")),
        ("mem", open("/dev/mem")),
        ("mknod-mem", outcome(made)),
        ("open-mknod-mem", open(node)),
    ];
    let _ = std::fs::remove_file(node);
    for (what, result) in report {
        println!("{what}: {result}");
    }
    0
}

fn flood(secs: u64) -> i32 {
    use std::io::Write;
    let end = std::time::Instant::now() + Duration::from_secs(secs);
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut n: u64 = 0;
    while std::time::Instant::now() < end {
        for _ in 0..256 {
            let _ = writeln!(out, "flood {n}");
            n += 1;
        }
    }
    let _ = writeln!(out, "flood done {n}");
    let _ = out.flush();
    0
}

/// Read back what `flood` wrote from the log files in `dir` (`flood.log.31` … `flood.log.1`,
/// then `flood.log`, oldest first) and print `FIRST LAST COUNT GAPS BYTES` of its numbered
/// lines (a gap: a line that is not the one after the line before it), then the
/// `flood done N` record. In Rust rather than awk: under TCG busybox awk takes minutes
/// over the ~70 MB a flood leaves.
fn flood_log(dir: &str) -> i32 {
    use std::io::BufRead;
    let (mut first, mut last, mut count, mut gaps, mut bytes) = (None::<u64>, 0u64, 0u64, 0u64, 0u64);
    let mut done = None;
    let files = (1..=31).rev().map(|k| format!("{dir}/flood.log.{k}")).chain([format!("{dir}/flood.log")]);
    for path in files {
        let Ok(file) = std::fs::File::open(&path) else { continue };
        for line in std::io::BufReader::with_capacity(1 << 20, file).lines() {
            let Ok(line) = line else { return 1 };
            bytes += line.len() as u64 + 1;
            if line.contains(" stdout flood done ") {
                done = Some(line);
                continue;
            }
            let Some(n) = line.split_once(" stdout flood ").and_then(|(_, n)| n.parse::<u64>().ok()) else { continue };
            if count > 0 && n != last + 1 {
                gaps += 1;
            }
            first.get_or_insert(n);
            last = n;
            count += 1;
        }
    }
    println!("{} {last} {count} {gaps} {bytes}", first.unwrap_or(0));
    println!("{}", done.unwrap_or_default());
    0
}

fn latency(socket: &str, n: usize) -> i32 {
    use std::io::{BufRead, Write};
    let stream = match std::os::unix::net::UnixStream::connect(socket) {
        Ok(stream) => stream,
        Err(e) => {
            eprintln!("keel-probe: connect {socket}: {e}");
            return 1;
        }
    };
    let mut reader = std::io::BufReader::new(stream.try_clone().expect("clone the socket"));
    let mut writer = stream;
    let mut times = Vec::with_capacity(n);
    for id in 1..=n {
        let started = std::time::Instant::now();
        let mut line = String::new();
        if writeln!(writer, "{{\"id\":{id},\"cmd\":\"status\"}}").is_err() || reader.read_line(&mut line).unwrap_or(0) == 0 {
            eprintln!("keel-probe: request {id}: no answer");
            return 1;
        }
        times.push(started.elapsed());
    }
    times.sort();
    let at = |q: f64| times[((times.len() as f64 * q).ceil() as usize).clamp(1, times.len()) - 1].as_secs_f64() * 1000.0;
    println!("latency p50 {:.1} ms p99 {:.1} ms max {:.1} ms", at(0.5), at(0.99), at(1.0));
    0
}

fn ask(socket: &str, cmd: &str) -> i32 {
    use std::io::{BufRead, Write};
    let started = std::time::Instant::now();
    let answer = (|| -> std::io::Result<String> {
        let stream = std::os::unix::net::UnixStream::connect(socket)?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        let mut reader = std::io::BufReader::new(stream.try_clone()?);
        let mut writer = stream;
        writeln!(writer, "{{\"id\":1,\"cmd\":\"{cmd}\"}}")?;
        let mut line = String::new();
        reader.read_line(&mut line)?;
        Ok(line)
    })();
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    match answer {
        Ok(line) if line.contains("\"ok\":true") => {
            println!("ask {cmd}: ok in {ms:.1} ms");
            0
        }
        Ok(line) => {
            println!("ask {cmd}: failed ({}) in {ms:.1} ms", line.trim());
            1
        }
        Err(e) => {
            println!("ask {cmd}: failed ({e}) in {ms:.1} ms");
            1
        }
    }
}

/// Whether keel closed `stream`: a read sees EOF or an error (the probe never sends on
/// these, so any byte that arrives is an answer and does not count).
fn closed_by_peer(stream: &mut std::os::unix::net::UnixStream) -> bool {
    use std::io::Read;
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return false,
            Err(_) => return true,
        }
    }
}

fn hold(socket: &str, count: usize, secs: u64, report: &str) -> i32 {
    use std::io::Write;
    use std::os::unix::net::UnixStream;
    if fork_or_die().is_some() {
        return 0;
    }
    let _ = nix::unistd::setsid();
    stdio_to_null();
    let mut idle: Vec<(UnixStream, bool)> = Vec::new();
    let mut refused = 0;
    for _ in 0..count {
        match UnixStream::connect(socket) {
            Ok(stream) => {
                let _ = stream.set_nonblocking(true);
                idle.push((stream, false));
            }
            Err(_) => refused += 1,
        }
    }
    let started = std::time::Instant::now();
    let mut trickle = UnixStream::connect(socket).ok();
    let mut trickle_closed: Option<Duration> = None;
    let partial = b"{\"id\":1,\"cmd\":\"ps\"                                                                        ";
    let mut nonreader = UnixStream::connect(socket).ok();
    if let Some(stream) = &nonreader {
        let _ = stream.set_nonblocking(true);
    }
    let mut sent = 0u64;
    let mut nonreader_closed: Option<Duration> = None;
    let mut tick = 0usize;
    while started.elapsed() < Duration::from_secs(secs) {
        if let (Some(stream), None) = (trickle.as_mut(), trickle_closed) {
            let byte = partial[tick % partial.len()];
            if stream.write_all(&[byte]).is_err() {
                trickle_closed = Some(started.elapsed());
            }
        }
        if let (Some(stream), None) = (nonreader.as_mut(), nonreader_closed) {
            loop {
                let request = format!("{{\"id\":{sent},\"cmd\":\"ps\"}}\n");
                match stream.write(request.as_bytes()) {
                    Ok(n) if n == request.len() => sent += 1,
                    // A part went: finish the line blocking-free later; count it sent.
                    Ok(_) => {
                        sent += 1;
                        break;
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(_) => {
                        nonreader_closed = Some(started.elapsed());
                        break;
                    }
                }
            }
        }
        for (stream, closed) in idle.iter_mut().filter(|(_, closed)| !*closed) {
            *closed = closed_by_peer(stream);
        }
        tick += 1;
        std::thread::sleep(Duration::from_secs(1));
    }
    let closed = idle.iter().filter(|(_, closed)| *closed).count();
    let mut text = format!("idle: {} opened, {closed} closed by keel, {refused} refused\n", idle.len());
    text += &match (trickle.is_some(), trickle_closed) {
        (false, _) => "trickle: could not connect\n".to_string(),
        (true, Some(after)) => format!("trickle: closed by keel after {} s\n", after.as_secs()),
        (true, None) => format!("trickle: open after {secs} s\n"),
    };
    text += &match (nonreader.is_some(), nonreader_closed) {
        (false, _) => "nonreader: could not connect\n".to_string(),
        (true, Some(after)) => format!("nonreader: closed by keel after {sent} requests, {} s\n", after.as_secs()),
        (true, None) => format!("nonreader: open after {sent} requests\n"),
    };
    let _ = std::fs::write(format!("{report}.tmp"), text);
    let _ = std::fs::rename(format!("{report}.tmp"), report);
    exit_now(0)
}
