//! `keelctl logs -f` on the host side: push a container's new log records as they are
//! written, without the client asking again. Runs in a forked helper (it waits).
//!
//! The helper watches the log directory with inotify (a record appended, a file
//! created or renamed by a rotation) and reads on from its [`LogOffset`] with
//! [`read_from`], which follows `NAME.log` across rotations. Without inotify it looks
//! every [`FALLBACK_INTERVAL`].

use super::error::LogError;
use super::read::{read_from, tail, LogOffset};
use crate::spec::ContainerName;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use rustix::fs::inotify;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::time::Duration;

/// How often the log is read when inotify is unavailable, and the longest a follower
/// waits between two looks even with it (a missed event costs at most this).
pub const FALLBACK_INTERVAL: Duration = Duration::from_secs(1);

/// Why following stopped.
#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    /// The log could not be read.
    #[error(transparent)]
    Log(#[from] LogError),
    /// The records could not be delivered (the client went away or does not read).
    #[error("sending log lines: {0}")]
    Send(std::io::Error),
}

/// Wakes a follower when the log directory changes.
struct DirWatch {
    fd: OwnedFd,
}

impl DirWatch {
    fn new(dir: &Path) -> Option<DirWatch> {
        let fd = inotify::init(inotify::CreateFlags::CLOEXEC | inotify::CreateFlags::NONBLOCK).ok()?;
        let mask = inotify::WatchFlags::MODIFY | inotify::WatchFlags::CREATE | inotify::WatchFlags::MOVED_TO;
        inotify::add_watch(&fd, dir, mask).ok()?;
        Some(DirWatch { fd })
    }

    /// Read the pending events away (which file changed is not needed: the follower
    /// reads on from its offset, and nothing new is cheap).
    fn drain(&self) {
        let mut buf = [0u8; 4096];
        while matches!(rustix::io::read(&self.fd, &mut buf), Ok(n) if n > 0) {}
    }
}

/// Send the last `tail_lines` records of `name` (all when `None`), then every record
/// appended, to `send`, until `hangup` (the client's connection) becomes readable or
/// hangs up, or `send` fails.
pub fn follow(
    dir: &Path,
    name: &ContainerName,
    tail_lines: Option<usize>,
    hangup: BorrowedFd<'_>,
    send: &mut dyn FnMut(&[String]) -> std::io::Result<()>,
) -> Result<(), FollowError> {
    let watch = DirWatch::new(dir);
    let (lines, mut offset): (Vec<String>, LogOffset) = tail(dir, name, tail_lines.unwrap_or(usize::MAX))?;
    send(&lines).map_err(FollowError::Send)?;
    loop {
        let (lines, next) = read_from(dir, name, offset)?;
        offset = next;
        if !lines.is_empty() {
            send(&lines).map_err(FollowError::Send)?;
            // More may wait (a read takes a bounded amount): look again at once.
            continue;
        }
        let mut fds = vec![PollFd::new(hangup, PollFlags::POLLIN)];
        if let Some(watch) = &watch {
            fds.push(PollFd::new(watch.fd.as_fd(), PollFlags::POLLIN));
        }
        let timeout = PollTimeout::try_from(FALLBACK_INTERVAL).unwrap_or(PollTimeout::MAX);
        match poll(&mut fds, timeout) {
            Ok(_) | Err(nix::Error::EINTR) => {}
            Err(e) => return Err(FollowError::Send(e.into())),
        }
        if fds[0].revents().is_some_and(|r| !r.is_empty()) {
            // The client sent something (it must not) or went away.
            return Ok(());
        }
        if let Some(watch) = &watch {
            watch.drain();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::LogFile;
    use std::os::unix::net::UnixStream;
    use std::time::Instant;

    #[test]
    fn new_records_are_pushed_as_written_and_across_a_rotation() {
        let dir = std::env::temp_dir().join(format!("keel-follow-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let name = ContainerName::new("web").unwrap();
        let path = crate::logs::log_path(&dir, &name);
        std::fs::write(&path, "old 1\nold 2\n").unwrap();
        let (client, server) = UnixStream::pair().unwrap();
        let (tx, rx) = std::sync::mpsc::channel::<(Instant, Vec<String>)>();
        let follower = {
            let dir = dir.clone();
            let name = name.clone();
            std::thread::spawn(move || {
                let mut send = |lines: &[String]| tx.send((Instant::now(), lines.to_vec())).map_err(|_| std::io::Error::other("gone"));
                follow(&dir, &name, Some(1), server.as_fd(), &mut send)
            })
        };
        assert_eq!(rx.recv().unwrap().1, vec!["old 2".to_string()], "the tail first");
        std::thread::sleep(Duration::from_millis(50));
        let written = Instant::now();
        std::fs::OpenOptions::new().append(true).open(&path).map(|mut f| std::io::Write::write_all(&mut f, b"new 1\n")).unwrap().unwrap();
        let (at, lines) = rx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert_eq!(lines, vec!["new 1".to_string()]);
        // inotify, not the fallback look: well under FALLBACK_INTERVAL.
        assert!(at.duration_since(written) < Duration::from_millis(500), "took {:?}", at.duration_since(written));
        // A rotation: NAME.log moves to NAME.log.1 with a last line, a new NAME.log begins.
        // The file holds 24 bytes: with a 30-byte bound the first record fits, the second rotates.
        let mut log = LogFile::open(&dir, &name, 30, 2).unwrap();
        log.write_record("rotated 1\n").unwrap();
        log.write_record("rotated 2\n").unwrap();
        assert!(crate::logs::rotated_path(&dir, &name, 1).exists(), "the test rotated");
        let mut got = Vec::new();
        while got.len() < 2 {
            got.extend(rx.recv_timeout(Duration::from_secs(5)).unwrap().1);
        }
        assert_eq!(got, vec!["rotated 1".to_string(), "rotated 2".to_string()]);
        drop(client);
        follower.join().unwrap().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
