//! PID 1's bounded queue of syslog frames: lines are offered as whole frames, kept in
//! order up to a byte capacity, and written to the forwarder's pipe as far as it takes
//! them without waiting. When the queue is full a new frame is dropped and counted (the
//! ones already queued keep their order); nothing ever waits. Pure apart from the
//! `write` callback, so the bounds are unit-tested.

use std::collections::VecDeque;
use std::io;

/// Frames waiting for the forwarder, at most `capacity` bytes.
#[derive(Debug)]
pub struct FrameQueue {
    frames: VecDeque<Vec<u8>>,
    bytes: usize,
    capacity: usize,
    /// Bytes of the front frame already written.
    front_written: usize,
    dropped: u64,
    sent: u64,
}

impl FrameQueue {
    /// An empty queue holding at most `capacity` bytes.
    pub fn new(capacity: usize) -> Self {
        FrameQueue { frames: VecDeque::new(), bytes: 0, capacity, front_written: 0, dropped: 0, sent: 0 }
    }

    /// Queue `frame`, or drop and count it when it does not fit. Whether it was queued.
    pub fn offer(&mut self, frame: Vec<u8>) -> bool {
        if self.bytes + frame.len() > self.capacity {
            self.dropped += 1;
            return false;
        }
        self.bytes += frame.len();
        self.frames.push_back(frame);
        true
    }

    /// Count `n` lines dropped before they reached the queue.
    pub fn count_dropped(&mut self, n: u64) {
        self.dropped += n;
    }

    /// Write frames in order with `write` (a non-blocking write: `WouldBlock` when full)
    /// until it takes no more or the queue is empty. A partly written frame is finished
    /// by the next call. Errors other than `WouldBlock` are returned.
    pub fn pump(&mut self, write: &mut dyn FnMut(&[u8]) -> io::Result<usize>) -> io::Result<()> {
        while let Some(front) = self.frames.front() {
            match write(&front[self.front_written..]) {
                Ok(0) => return Ok(()),
                Ok(n) => {
                    self.front_written += n;
                    if self.front_written == front.len() {
                        self.bytes -= front.len();
                        self.frames.pop_front();
                        self.front_written = 0;
                        self.sent += 1;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// The pipe was replaced (the forwarder restarted): a frame it got only part of is
    /// dropped and counted, so the new pipe starts on a frame boundary.
    pub fn restart_stream(&mut self) {
        if self.front_written > 0 {
            if let Some(front) = self.frames.pop_front() {
                self.bytes -= front.len();
                self.dropped += 1;
            }
            self.front_written = 0;
        }
    }

    /// Bytes queued.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Frames dropped so far.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Frames written whole so far.
    pub fn sent(&self) -> u64 {
        self.sent
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(range: std::ops::Range<u32>) -> Vec<Vec<u8>> {
        range.map(|i| crate::syslog::rfc5424::frame(&format!("line {i:04}"))).collect()
    }

    #[test]
    fn the_queue_never_holds_more_than_its_capacity_and_counts_what_it_drops() {
        let mut queue = FrameQueue::new(100);
        let offered = frames(0..20); // "9 line 0000": 11 bytes each
        let queued = offered.iter().filter(|f| queue.offer((*f).clone())).count();
        assert_eq!(queued, 9);
        assert_eq!(queue.bytes(), 99);
        assert_eq!(queue.dropped(), 11);
        // Room again after a pump: the next line is taken.
        let mut out = Vec::new();
        queue
            .pump(&mut |b| {
                out.extend_from_slice(b);
                Ok(b.len())
            })
            .unwrap();
        assert_eq!(out, offered[..9].concat(), "the first nine, in order");
        assert!(queue.offer(offered[19].clone()));
        assert_eq!(queue.sent(), 9);
    }

    #[test]
    fn a_full_pipe_is_not_waited_for_and_partial_frames_finish_in_order() {
        let mut queue = FrameQueue::new(1 << 20);
        for f in frames(0..10) {
            queue.offer(f);
        }
        let mut out = Vec::new();
        // A pipe that takes 5 bytes, then is full.
        let mut room = 5;
        let mut pipe = |b: &[u8]| {
            if room == 0 {
                return Err(io::Error::from(io::ErrorKind::WouldBlock));
            }
            let n = b.len().min(room);
            room -= n;
            out.extend_from_slice(&b[..n]);
            Ok(n)
        };
        queue.pump(&mut pipe).unwrap();
        assert_eq!(queue.sent(), 0);
        let mut rest = |b: &[u8]| {
            out.extend_from_slice(b);
            Ok(b.len())
        };
        queue.pump(&mut rest).unwrap();
        assert_eq!(out, frames(0..10).concat());
        assert!(queue.is_empty() && queue.bytes() == 0 && queue.sent() == 10);
    }

    #[test]
    fn a_new_pipe_starts_on_a_frame_boundary() {
        let mut queue = FrameQueue::new(1 << 20);
        for f in frames(0..3) {
            queue.offer(f);
        }
        let mut taken = false;
        let mut once = |b: &[u8]| {
            if std::mem::replace(&mut taken, true) {
                Err(io::Error::from(io::ErrorKind::WouldBlock))
            } else {
                Ok(b.len().min(4))
            }
        };
        queue.pump(&mut once).unwrap();
        queue.restart_stream();
        assert_eq!(queue.dropped(), 1, "the frame cut in half");
        let mut out = Vec::new();
        queue
            .pump(&mut |b| {
                out.extend_from_slice(b);
                Ok(b.len())
            })
            .unwrap();
        assert_eq!(out, frames(1..3).concat());
        // A broken pipe is an error for the caller (the forwarder is gone).
        queue.offer(frames(5..6).remove(0));
        assert!(queue.pump(&mut |_| Err(io::Error::from(io::ErrorKind::BrokenPipe))).is_err());
    }
}
