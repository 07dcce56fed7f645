//! `keel-probe ns-root PID DEPTH`: what lies at the root of the mount namespace of
//! process PID once the top DEPTH mounts stacked on that root are detached, in a
//! private copy of the namespace (PID's own namespace is left as it is). Run on the
//! host, as root.
//!
//! A process reaches its mount namespace's root with setns(2); the mounts stacked there
//! hide it until they are detached. Beneath a container's root lies whatever the host's
//! root was stacked on when the container was made (keel's root switch puts an empty
//! read-only tmpfs there, over the kernel's rootfs). Prints one line:
//! `ns-root DEPTH: fs=0xMAGIC ro=BOOL entries=NAME,NAME,…` (entries sorted, `.`/`..` left out).

use nix::mount::{umount2, MntFlags};
use nix::sched::{setns, unshare, CloneFlags};
use std::fs::File;
use std::os::fd::AsFd;

/// Why the probe could not look.
#[derive(Debug, thiserror::Error)]
pub enum NsRootError {
    /// A system call failed.
    #[error("{step}: {source}")]
    Sys {
        /// What was being done.
        step: String,
        /// The errno.
        source: nix::Error,
    },
    /// A file could not be opened or read.
    #[error("{step}: {source}")]
    Io {
        /// What was being done.
        step: String,
        /// The cause.
        source: std::io::Error,
    },
}

fn sys(step: impl Into<String>) -> impl FnOnce(nix::Error) -> NsRootError {
    let step = step.into();
    move |source| NsRootError::Sys { step, source }
}

fn io(step: impl Into<String>) -> impl FnOnce(std::io::Error) -> NsRootError {
    let step = step.into();
    move |source| NsRootError::Io { step, source }
}

/// Enter PID's mount namespace, copy it, detach `depth` mounts at its root and
/// describe what is left there.
pub fn look(pid: u32, depth: u32) -> Result<String, NsRootError> {
    // The host's /proc, kept open: after the first setns, "/proc" is the container's.
    let proc = File::open("/proc").map_err(io("open /proc"))?;
    let target = File::open(format!("/proc/{pid}/ns/mnt")).map_err(io(format!("open /proc/{pid}/ns/mnt")))?;
    setns(target.as_fd(), CloneFlags::CLONE_NEWNS).map_err(sys(format!("setns into {pid}'s mount namespace")))?;
    unshare(CloneFlags::CLONE_NEWNS).map_err(sys("unshare a private copy"))?;
    for level in 0..depth {
        umount2("/", MntFlags::MNT_DETACH).map_err(sys(format!("detach the mount at / (level {})", level + 1)))?;
        // setns into the copy again: the root becomes its root, followed down to the
        // topmost mount still there.
        let own = nix::fcntl::openat(
            proc.as_fd(),
            "thread-self/ns/mnt",
            nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .map_err(sys("open thread-self/ns/mnt"))?;
        setns(own.as_fd(), CloneFlags::CLONE_NEWNS).map_err(sys("setns into the copy"))?;
    }
    let stat = nix::sys::statvfs::statvfs("/").map_err(sys("statvfs /"))?;
    let magic = nix::sys::statfs::statfs("/").map_err(sys("statfs /"))?.filesystem_type().0;
    let read_only = stat.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY);
    let mut entries: Vec<String> = std::fs::read_dir("/")
        .map_err(io("read /"))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    entries.sort();
    Ok(format!("ns-root {depth}: fs={magic:#x} ro={read_only} entries={}", entries.join(",")))
}

/// The subcommand: print the line, or the error on stderr (exit 1).
pub fn main(pid: &str, depth: &str) -> i32 {
    let (Ok(pid), Ok(depth)) = (pid.parse(), depth.parse()) else {
        eprintln!("usage: keel-probe ns-root PID DEPTH");
        return 2;
    };
    match look(pid, depth) {
        Ok(line) => {
            println!("{line}");
            0
        }
        Err(e) => {
            eprintln!("keel-probe ns-root: {e}");
            1
        }
    }
}
