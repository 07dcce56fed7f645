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
    /// The container was removed (`keelctl rm`, a reload without its file): let go of
    /// what is kept for it, e.g. its open log file, so a purge deletes the file for good.
    fn forget(&mut self, _name: &ContainerName) {}
    /// Lines the sink's console echo dropped since it was made (for `metrics`).
    fn console_lines_dropped(&self) -> u64 {
        0
    }
    /// The container is starting with these `[logs]` limits: its log files rotate and
    /// keep by them from now on. (A sink without files ignores them.)
    fn limits(&mut self, _name: &ContainerName, _limits: crate::logs::LogLimits) {}
}

/// Most bytes copied from one pipe per readiness event, so one chatty container cannot
/// starve the rest of PID 1's event loop. A control request waits behind at most the
/// rest of one event per flooding pipe, so an event must stay short even on a slow,
/// emulated CPU: 4 KiB (a page, a few hundred short lines to split, log and echo). In a
/// loaded TCG guest, `status` during a flood had a p99 of 116 ms with 16 KiB per event
/// and 70 ms with 4 KiB (qemu-tests/tests/control_bounds.rs). The pipe is polled again at once, so
/// throughput only pays one poll(2) per page.
const MAX_PER_EVENT: usize = 4 * 1024;

/// Most bytes read from a pipe whose container ended: the largest pipe an unprivileged
/// process can make (`/proc/sys/fs/pipe-max-size`, 1 MiB by default), so a full pipe is
/// read whole, while a grandchild that still holds the pipe and keeps writing cannot keep
/// PID 1 reading.
const DRAIN_LIMIT: usize = 1024 * 1024;

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

    /// Copy what the pipe holds to `sink`, at most [`MAX_PER_EVENT`] bytes. Returns true
    /// when the pipe is closed (every writer is gone) or broken, so the caller stops
    /// watching it.
    pub fn pump(&mut self, name: &ContainerName, sink: &mut dyn LogSink) -> bool {
        self.pump_up_to(name, sink, MAX_PER_EVENT)
    }

    /// Copy everything the pipe still holds (its process ended), at most [`DRAIN_LIMIT`]
    /// bytes, so the last lines of a container that wrote up to its exit are not lost.
    pub fn drain(&mut self, name: &ContainerName, sink: &mut dyn LogSink) {
        self.pump_up_to(name, sink, DRAIN_LIMIT);
    }

    fn pump_up_to(&mut self, name: &ContainerName, sink: &mut dyn LogSink, limit: usize) -> bool {
        let mut buffer = [0u8; 4 * 1024];
        let mut copied = 0;
        while copied < limit {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[derive(Default)]
    struct Collect(Vec<u8>);

    impl LogSink for Collect {
        fn write(&mut self, _: &ContainerName, _: Stream, bytes: &[u8]) {
            self.0.extend_from_slice(bytes);
        }
        fn finish(&mut self, _: &ContainerName) {}
    }

    /// A pipe holding `len` bytes whose writer is gone (the container exited).
    fn full_pipe(len: usize) -> OutputPipe {
        let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_NONBLOCK).unwrap();
        let mut writer = File::from(write);
        writer.write_all(&vec![b'x'; len]).unwrap();
        OutputPipe::new(Stream::Stdout, read)
    }

    #[test]
    fn a_pipe_event_copies_at_most_its_share_and_a_drain_copies_the_rest() {
        let name = ContainerName::new("c").unwrap();
        let mut event = Collect::default();
        full_pipe(60 * 1024).pump(&name, &mut event);
        // (the reads are page-sized, so the cap is met exactly)
        assert_eq!(event.0.len(), MAX_PER_EVENT, "one event is bounded (and so loses the rest if used to drain)");
        let mut drained = Collect::default();
        full_pipe(60 * 1024).drain(&name, &mut drained);
        assert_eq!(drained.0.len(), 60 * 1024);
    }
}
