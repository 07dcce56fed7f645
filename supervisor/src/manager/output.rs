//! Container output: the read ends of each container's stdout and stderr pipes, and the
//! sink their bytes go to (log files and the console in PID 1, a list in tests).

use crate::logs::Stream;
use crate::spec::ContainerName;
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

/// Where container output goes.
pub trait LogSink {
    /// Bytes the container wrote on `stream` (any chunking; lines may be split).
    fn write(&mut self, name: &ContainerName, stream: Stream, bytes: &[u8]);
    /// The container's process ended and its pipes are drained: flush partial lines.
    fn finish(&mut self, name: &ContainerName);
}

/// Most bytes copied from one pipe per readiness event, so one chatty container cannot
/// starve the rest of PID 1's event loop: 16 KiB (about a thousand lines to split, log
/// and echo) keeps one event to a few milliseconds even under emulation, which bounds
/// how long a control request waits behind a flood.
const MAX_PER_EVENT: usize = 16 * 1024;

/// The read end of one container output pipe.
pub struct OutputPipe {
    stream: Stream,
    file: File,
}

impl OutputPipe {
    /// Wrap a non-blocking read end.
    pub fn new(stream: Stream, fd: OwnedFd) -> Self {
        OutputPipe { stream, file: File::from(fd) }
    }

    /// The descriptor to poll.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }

    /// Copy what the pipe holds to `sink`. Returns true when the pipe is closed (every
    /// writer is gone) or broken, so the caller stops watching it.
    pub fn pump(&mut self, name: &ContainerName, sink: &mut dyn LogSink) -> bool {
        let mut buffer = [0u8; 16 * 1024];
        let mut copied = 0;
        while copied < MAX_PER_EVENT {
            match self.file.read(&mut buffer) {
                Ok(0) => return true,
                Ok(n) => {
                    sink.write(name, self.stream, &buffer[..n]);
                    copied += n;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    log::warn!("container {name}: reading its output: {e}");
                    return true;
                }
            }
        }
        false
    }
}
