//! Starting a stream (`exec -i/-t`, `logs -f`): PID 1 checks the request, forks the
//! [`stream_helper`](crate::stream_helper) with the connection and its unwritten
//! replies, and drops the connection from its set. From then on PID 1 neither reads nor
//! writes that client: a stream can never block the loop or interleave with replies.
//! Over the virtio-serial port the helper gets a socketpair instead, carried over the
//! port as one channel among others ([`super::port_streams`]).

use super::EventLoop;
use crate::connections::ConnectionId;
use crate::stream_helper::{self, StreamWork, Target};
use keel_supervisor::control::Command;
use log::debug;
use std::time::Duration;

/// Why a stream could not start (the request's failure answer).
#[derive(Debug, thiserror::Error)]
pub enum StreamStartError {
    /// The connection cannot be handed over (the virtio-serial port is served in the loop).
    #[error("this control connection cannot carry a stream")]
    OverPort,
    /// The connection is gone.
    #[error("control connection {0} is gone")]
    Gone(ConnectionId),
    /// The container cannot be entered.
    #[error("{0}")]
    Target(String),
    /// Duplicating the connection or forking failed.
    #[error("cannot start the stream helper: {0}")]
    Spawn(std::io::Error),
}

impl EventLoop {
    /// A line from the port that belongs to a stream (its bytes, or its end): handled
    /// here, true. Any other line (a request) is not.
    pub(super) fn port_stream_line(&mut self, line: &str, channel: ConnectionId) -> bool {
        let Some(port) = self.port.as_mut().filter(|port| port.id == channel) else { return false };
        let Some(stream_line) = keel_supervisor::stream::PortLine::parse(line) else { return false };
        self.port_streams.on_port_line(&stream_line, port, std::time::Instant::now());
        true
    }

    /// Hand connection `channel` over to a helper serving `command` (a stream-starting one).
    pub(super) fn start_stream(&mut self, id: u64, command: Command, channel: ConnectionId) -> Result<(), StreamStartError> {
        let work = match command {
            Command::ExecStream { argv, container, tty, timeout_secs } => {
                let target = match container {
                    None => Target::Host,
                    Some(name) => {
                        let manager = self.manager.as_ref().ok_or_else(|| StreamStartError::Target("no containers on this host".into()))?;
                        let (pid, plan, cgroup) = manager.exec_target(&name).map_err(StreamStartError::Target)?;
                        Target::Container { pid, plan: Box::new(plan), cgroup }
                    }
                };
                StreamWork::Exec { argv, target, tty, timeout: timeout_secs.map(Duration::from_secs) }
            }
            Command::LogsFollow { name, tail } => StreamWork::Follow { name, tail },
            _ => return Err(StreamStartError::Target("not a stream".into())),
        };
        if self.port.as_ref().is_some_and(|port| port.id == channel) {
            let (ours, theirs) = std::os::unix::net::UnixStream::pair().map_err(StreamStartError::Spawn)?;
            let pid = stream_helper::spawn(id, work, theirs.into(), Vec::new()).map_err(|e| StreamStartError::Spawn(e.into()))?;
            self.port_streams.add(id, ours).map_err(StreamStartError::Spawn)?;
            self.exec_helpers.insert(pid, channel);
            debug!("port stream {id}: served by stream helper {pid}");
            return Ok(());
        }
        let connection = self.connections.get(&channel).ok_or(StreamStartError::Gone(channel))?;
        let (fd, queued) = connection.hand_over().ok_or(StreamStartError::OverPort)?.map_err(StreamStartError::Spawn)?;
        let pid = stream_helper::spawn(id, work, fd, queued).map_err(|e| StreamStartError::Spawn(e.into()))?;
        // The helper owns the client now; PID 1's copy closes without a shutdown (which
        // would end the helper's too).
        self.connections.remove(&channel);
        self.exec_helpers.insert(pid, channel);
        debug!("control connection {channel}: handed over to stream helper {pid}");
        Ok(())
    }
}
