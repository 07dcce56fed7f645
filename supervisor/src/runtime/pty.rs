//! Terminals for `keelctl exec -t NAME`: a pty from the container's own devpts instance
//! (the one mounted at its /dev/pts with `newinstance`), so the command sees a terminal
//! that exists in its /dev/pts, numbered in the container's namespace, and nothing of
//! the host's.
//!
//! The master is opened from the host side through `/proc/PID/root`, resolved in the
//! container's root (the container controls its /dev: a link out of it, or something
//! else than a ptmx in its place, is refused), and the peer is taken from the master
//! with TIOCGPTPEER, never looked up by path.
#![allow(unsafe_code)]

use super::inroot::{InRootError, Root};
use nix::unistd::Pid;
use rustix::fs::OFlags;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The character device of every ptmx (`/dev/ptmx` and each devpts' `ptmx`): major 5, minor 2.
const PTMX: (u32, u32) = (5, 2);

/// Why a terminal could not be made.
#[derive(Debug, thiserror::Error)]
pub enum PtyError {
    /// The container's `dev/pts/ptmx` could not be opened.
    #[error("open the container's dev/pts/ptmx: {0}")]
    Open(#[from] InRootError),
    /// What is there is not a ptmx.
    #[error("{path}: not a pty multiplexer (device {major}:{minor})")]
    NotPtmx {
        /// Where it was opened.
        path: PathBuf,
        /// Its device major.
        major: u32,
        /// Its device minor.
        minor: u32,
    },
    /// An ioctl or stat on the pty failed.
    #[error("{what}: {source}")]
    Sys {
        /// What was done.
        what: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
}

/// A pty: the master (for the helper that relays it) and its peer (the command's terminal).
pub struct Pty {
    /// The master side.
    pub master: OwnedFd,
    /// The terminal the command gets as fds 0, 1, 2.
    pub peer: OwnedFd,
}

/// Open a pty in the devpts of the container whose PID 1 is `pid` (as the host sees it).
pub fn open_in_container(pid: Pid) -> Result<Pty, PtyError> {
    let root = Root::open(&PathBuf::from(format!("/proc/{pid}/root")))?;
    let inside = Path::new("/dev/pts/ptmx");
    let master = root.open_in(inside, OFlags::RDWR | OFlags::NOCTTY)?;
    let stat = rustix::fs::fstat(&master).map_err(|e| PtyError::Sys { what: "fstat ptmx", source: e.into() })?;
    let (major, minor) = (rustix::fs::major(stat.st_rdev), rustix::fs::minor(stat.st_rdev));
    let is_char = rustix::fs::FileType::from_raw_mode(stat.st_mode) == rustix::fs::FileType::CharacterDevice;
    if !is_char || (major, minor) != PTMX {
        return Err(PtyError::NotPtmx { path: inside.into(), major, minor });
    }
    let peer = peer_of(&master)?;
    Ok(Pty { master, peer })
}

/// Unlock the master's terminal and open it (TIOCSPTLCK, TIOCGPTPEER).
pub fn peer_of(master: &OwnedFd) -> Result<OwnedFd, PtyError> {
    let unlock: libc::c_int = 0;
    // SAFETY: TIOCSPTLCK reads one int from the pointer, which lives across the call.
    if unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &unlock) } < 0 {
        return Err(PtyError::Sys { what: "TIOCSPTLCK", source: std::io::Error::last_os_error() });
    }
    // SAFETY: TIOCGPTPEER takes open flags by value and returns a new descriptor or -1.
    let fd = unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCGPTPEER, libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(PtyError::Sys { what: "TIOCGPTPEER", source: std::io::Error::last_os_error() });
    }
    // SAFETY: the kernel just made this descriptor for us; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Set the terminal's size (the command's foreground process group gets SIGWINCH).
pub fn resize(master: &OwnedFd, rows: u16, cols: u16) -> Result<(), PtyError> {
    let size = libc::winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCSWINSZ reads one winsize from the pointer, which lives across the call.
    if unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &size) } < 0 {
        return Err(PtyError::Sys { what: "TIOCSWINSZ", source: std::io::Error::last_os_error() });
    }
    Ok(())
}

/// Open a pty on the host's own devpts (`keelctl exec -t` without a container).
pub fn open_on_host() -> Result<Pty, PtyError> {
    let master: OwnedFd = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOCTTY | libc::O_CLOEXEC)
        .open("/dev/ptmx")
        .map_err(|source| PtyError::Sys { what: "open /dev/ptmx", source })?
        .into();
    let peer = peer_of(&master)?;
    Ok(Pty { master, peer })
}

/// Start `argv` on the host: with `terminal`, in a new session whose controlling
/// terminal it is (fds 0, 1, 2); without, with its three streams piped. Job-control and
/// termination signals are back to their default actions.
pub fn host_command(argv: &[String], terminal: Option<&OwnedFd>) -> std::io::Result<std::process::Child> {
    use std::os::unix::process::CommandExt;
    use std::process::{Command, Stdio};
    let (program, args) = argv.split_first().ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "no command given"))?;
    let mut command = Command::new(program);
    command.args(args);
    // SAFETY: the closure runs in the forked child before execve and only calls
    // signal(2), which is async-signal-safe: signals an operator sends (or types) must
    // reach the command even if whoever started PID 1's copy ignored them.
    unsafe {
        command.pre_exec(|| {
            for signal in
                [libc::SIGINT, libc::SIGQUIT, libc::SIGHUP, libc::SIGTERM, libc::SIGPIPE, libc::SIGTSTP, libc::SIGTTIN, libc::SIGTTOU]
            {
                libc::signal(signal, libc::SIG_DFL);
            }
            Ok(())
        });
    }
    match terminal {
        None => {
            command.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        }
        Some(peer) => {
            command.stdin(Stdio::from(peer.try_clone()?)).stdout(Stdio::from(peer.try_clone()?)).stderr(Stdio::from(peer.try_clone()?));
            // SAFETY: the closure runs in the forked child before execve and only makes
            // two syscalls (setsid, ioctl), which are async-signal-safe.
            unsafe {
                command.pre_exec(|| {
                    if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
    }
    command.spawn()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_container_side_must_be_a_ptmx() {
        // Our own root stands in for a container's: its /dev/pts/ptmx is a real one
        // when devpts is mounted (skip visibly when not).
        let me = Pid::this();
        match open_in_container(me) {
            Ok(pty) => {
                resize(&pty.master, 33, 99).unwrap();
                let mut size = libc::winsize { ws_row: 0, ws_col: 0, ws_xpixel: 0, ws_ypixel: 0 };
                // SAFETY: TIOCGWINSZ writes one winsize into the pointer.
                assert_eq!(unsafe { libc::ioctl(pty.peer.as_raw_fd(), libc::TIOCGWINSZ, &mut size) }, 0);
                assert_eq!((size.ws_row, size.ws_col), (33, 99), "the peer sees the size set on the master");
            }
            Err(e) => eprintln!("SKIP: no usable /dev/pts/ptmx here: {e}"),
        }
    }

    #[test]
    fn a_regular_file_in_place_of_ptmx_is_refused() {
        // Negative control of the check: a file that is not a device is not taken.
        let master: OwnedFd = std::fs::File::open("/proc/self/status").unwrap().into();
        let stat = rustix::fs::fstat(&master).unwrap();
        assert_ne!((rustix::fs::major(stat.st_rdev), rustix::fs::minor(stat.st_rdev)), PTMX);
        assert!(peer_of(&master).is_err(), "TIOCGPTPEER refuses what is not a pty master");
    }
}
