//! The API process's side of a stream (`exec -i/-t`, `logs -f` over `--host`): after the
//! role check, the request goes to PID 1 on a control connection of its own; its answer
//! is relayed, and when it is `ok` the connection switches to relaying frames both ways
//! until either side ends. Frames from the client are checked on the way
//! ([`Decoder`]: bounded, known types only) so a hostile client is cut off here; the
//! command's exit code is read from the last frame for the audit log.

use super::tls_io::TlsIo;
use keel_supervisor::control::{write_waiting, Request, Response, StreamIo};
use keel_supervisor::stream::{ClientFrame, Decoder, ServerFrame, MAX_PAYLOAD};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// How a relayed stream ended, for the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamEnd {
    /// PID 1 refused the request (its error).
    Refused(String),
    /// The command exited with this code.
    Exited(i32),
    /// The stream ended another way (the client left, logs -f ended, a bad frame).
    Ended(String),
}

/// Forward `request` on a new connection to the control socket `control`, relay its
/// answer to `client`, then frames both ways. `early` are bytes the client sent after
/// its request line and that were already read.
pub fn relay(client: &mut dyn StreamIo, early: &[u8], control: &Path, request: &Request, wait: Duration) -> StreamEnd {
    let (pid1, answer, pending) = match open(control, request, wait) {
        Ok(opened) => opened,
        Err(e) => {
            let why = format!("keel api: control socket {}: {e}", control.display());
            let _ = client.send(Response::failure(request.id, why.clone()).to_line().as_bytes());
            return StreamEnd::Refused(why);
        }
    };
    if client.send(answer.to_line().as_bytes()).is_err() {
        return StreamEnd::Ended("the client went away".into());
    }
    if !answer.ok {
        return StreamEnd::Refused(answer.error.unwrap_or_default());
    }
    let end = pump(client, early, &pid1, &pending);
    let _ = pid1.shutdown(std::net::Shutdown::Both);
    end
}

/// Connect, send the request, read its answer; also the bytes read past the answer.
fn open(control: &Path, request: &Request, wait: Duration) -> std::io::Result<(UnixStream, Response, Vec<u8>)> {
    let pid1 = UnixStream::connect(control)?;
    let mut line = serde_json::to_string(request).map_err(std::io::Error::other)?;
    line.push('\n');
    (&pid1).write_all(line.as_bytes())?;
    pid1.set_read_timeout(Some(wait))?;
    let mut reader = BufReader::new(pid1.try_clone()?);
    loop {
        let mut text = String::new();
        if reader.by_ref().take(keel_supervisor::control::MAX_LINE as u64).read_line(&mut text)? == 0 {
            return Err(std::io::Error::new(ErrorKind::UnexpectedEof, "closed before an answer arrived"));
        }
        if let Ok(response) = serde_json::from_str::<Response>(text.trim()) {
            if response.id == request.id {
                let pending = reader.buffer().to_vec();
                pid1.set_read_timeout(None)?;
                pid1.set_nonblocking(true)?;
                return Ok((pid1, response, pending));
            }
        }
    }
}

/// Relay frames until one side ends.
fn pump(client: &mut dyn StreamIo, early: &[u8], pid1: &UnixStream, pending: &[u8]) -> StreamEnd {
    let mut upstream = Decoder::<ClientFrame>::default();
    let mut downstream = Decoder::<ServerFrame>::default();
    let mut exit = None;
    if let Err(end) = up(&mut upstream, pid1, early).and_then(|()| down(&mut downstream, client, pending, &mut exit)) {
        return end;
    }
    let mut buf = vec![0u8; MAX_PAYLOAD];
    loop {
        if let Some(code) = exit {
            return StreamEnd::Exited(code);
        }
        let (from_client, from_pid1) = {
            let mut fds = [PollFd::new(client.fd(), PollFlags::POLLIN), PollFd::new(pid1.as_fd(), PollFlags::POLLIN)];
            if let Err(e) = poll(&mut fds, PollTimeout::NONE) {
                if e != nix::Error::EINTR {
                    return StreamEnd::Ended(format!("poll: {e}"));
                }
            }
            let ready = |fd: &PollFd| fd.revents().is_some_and(|r| !r.is_empty());
            (ready(&fds[0]), ready(&fds[1]))
        };
        if from_client {
            loop {
                match client.read_some(&mut buf) {
                    Ok(0) => return StreamEnd::Ended("the client closed the stream".into()),
                    Ok(n) => {
                        if let Err(end) = up(&mut upstream, pid1, &buf[..n]) {
                            return end;
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(e) => return StreamEnd::Ended(format!("the client's connection: {e}")),
                }
            }
        }
        if from_pid1 {
            match nix::unistd::read(pid1.as_fd(), &mut buf) {
                Ok(0) => return StreamEnd::Ended("the stream ended".into()),
                Ok(n) => {
                    if let Err(end) = down(&mut downstream, client, &buf[..n], &mut exit) {
                        return end;
                    }
                }
                Err(nix::Error::EAGAIN | nix::Error::EINTR) => {}
                Err(e) => return StreamEnd::Ended(format!("the control connection: {e}")),
            }
        }
    }
}

/// Client → PID 1: only valid frames pass.
fn up(decoder: &mut Decoder<ClientFrame>, pid1: &UnixStream, bytes: &[u8]) -> Result<(), StreamEnd> {
    if bytes.is_empty() {
        return Ok(());
    }
    decoder.push(bytes).map_err(|e| StreamEnd::Ended(format!("refused a frame from the client: {e}")))?;
    write_waiting(pid1.as_fd(), bytes).map_err(|e| StreamEnd::Ended(format!("the control connection: {e}")))
}

/// PID 1 → client, noting the exit code.
fn down(decoder: &mut Decoder<ServerFrame>, client: &mut dyn StreamIo, bytes: &[u8], exit: &mut Option<i32>) -> Result<(), StreamEnd> {
    if bytes.is_empty() {
        return Ok(());
    }
    for frame in decoder.push(bytes).map_err(|e| StreamEnd::Ended(format!("bad frame from PID 1: {e}")))? {
        match frame {
            ServerFrame::Exit(code) => *exit = Some(code),
            ServerFrame::Error(message) => {
                client.send(bytes).map_err(|e| StreamEnd::Ended(format!("the client's connection: {e}")))?;
                return Err(StreamEnd::Ended(message));
            }
            _ => {}
        }
    }
    client.send(bytes).map_err(|e| StreamEnd::Ended(format!("the client's connection: {e}")))
}

/// The client's TLS connection as a stream, with the bytes its line reader had read ahead.
pub fn take_over(
    reader: BufReader<rustls::StreamOwned<rustls::ServerConnection, std::net::TcpStream>>,
) -> std::io::Result<(TlsIo<rustls::ServerConnection>, Vec<u8>)> {
    let early = reader.buffer().to_vec();
    let rustls::StreamOwned { conn, sock } = reader.into_inner();
    Ok((TlsIo::new(conn, sock)?, early))
}
