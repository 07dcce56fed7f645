//! `keel-build run`'s control socket: one connection to QEMU's chardev socket of the
//! guest's virtio-serial control port, opened once and kept open, shared by any number
//! of clients. While the host end of the port is closed, the guest sees a hang-up and
//! leaves the port out of its poll set for a while (250 ms), so a connection per
//! request cost that much each time; kept open, a request is answered at once.
//!
//! Clients connect to the socket `keel-build run --control-socket PATH` names, exactly
//! as before. Each request line's `id` is replaced by one unique across clients
//! ([`Demux`]), and each answer goes back to the client that asked, with its own id.
//!
//! Streams (`keelctl exec -i/-t`, `logs -f`): when a stream-starting request is answered
//! `ok`, its client's connection carries frames from then on; the multiplexer carries
//! them on the port as [`PortLine`]s of that request's wire id, one channel per stream,
//! between the lines of other clients. Each client has its own bounded queue of bytes to
//! write ([`CLIENT_QUEUE`] messages): a client that does not read is disconnected (its
//! stream ended), never waited for, so other clients go on.

use keel_supervisor::stream::{ClientFrame, Decoder, PortLine, STREAM_STARTED};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// Messages (answer lines, chunks of stream bytes) queued for one client at most.
pub const CLIENT_QUEUE: usize = 256;

/// Where a line from the guest goes.
#[derive(Debug, PartialEq, Eq)]
pub enum Route {
    /// This line (the client's own id restored) to this client.
    Line(u64, String),
    /// These stream bytes to this client.
    Data(u64, Vec<u8>),
    /// This client's stream is over: close its connection.
    End(u64),
}

/// Request ids in flight and streams running: the id sent to the guest → (client, the
/// client's own id); the stream of each streaming client.
#[derive(Debug, Default)]
pub struct Demux {
    next: u64,
    pending: HashMap<u64, (u64, serde_json::Value, bool)>,
    streams: HashMap<u64, u64>,
}

impl Demux {
    /// A request line from `client`, with its id replaced; `None` when it is not a JSON object.
    pub fn outgoing(&mut self, client: u64, line: &str) -> Option<String> {
        let mut value: serde_json::Value = serde_json::from_str(line).ok()?;
        let object = value.as_object_mut()?;
        let streams = matches!(object.get("cmd").and_then(|c| c.as_str()), Some("exec_stream" | "logs_follow"));
        self.next += 1;
        let original = object.insert("id".into(), self.next.into()).unwrap_or(serde_json::Value::Null);
        self.pending.insert(self.next, (client, original, streams));
        let mut text = serde_json::to_string(&value).ok()?;
        text.push('\n');
        Some(text)
    }

    /// A line from the guest: where it goes. An `ok` answer to a stream-starting request
    /// starts that client's stream.
    pub fn incoming(&mut self, line: &str) -> Option<Route> {
        if let Some(stream) = PortLine::parse(line) {
            let client = *self.streams.get(&stream.id)?;
            if stream.end {
                self.streams.remove(&stream.id);
                return Some(Route::End(client));
            }
            return match stream.bytes() {
                Ok(bytes) => Some(Route::Data(client, bytes)),
                Err(_) => {
                    self.streams.remove(&stream.id);
                    Some(Route::End(client))
                }
            };
        }
        let mut value: serde_json::Value = serde_json::from_str(line).ok()?;
        let id = value.get("id")?.as_u64()?;
        let (client, original, streams) = self.pending.remove(&id)?;
        let started = value.get("ok").and_then(|ok| ok.as_bool()) == Some(true)
            && value.get("result").and_then(|r| r.as_str()) == Some(STREAM_STARTED);
        if streams && started {
            self.streams.insert(id, client);
        }
        value.as_object_mut()?.insert("id".into(), original);
        let mut text = serde_json::to_string(&value).ok()?;
        text.push('\n');
        Some(Route::Line(client, text))
    }

    /// The stream `client` runs (its wire id), if any.
    pub fn stream_of(&self, client: u64) -> Option<u64> {
        self.streams.iter().find(|(_, c)| **c == client).map(|(id, _)| *id)
    }

    /// Forget a client's requests and stream (it went away); the stream's wire id, if any.
    pub fn forget(&mut self, client: u64) -> Option<u64> {
        self.pending.retain(|_, (c, _, _)| *c != client);
        let stream = self.stream_of(client);
        self.streams.retain(|_, c| *c != client);
        stream
    }

    /// Forget every stream (the guest connection broke); their clients.
    pub fn drop_streams(&mut self) -> Vec<u64> {
        self.streams.drain().map(|(_, client)| client).collect()
    }
}

struct Shared {
    demux: Mutex<Demux>,
    clients: Mutex<HashMap<u64, SyncSender<Vec<u8>>>>,
    guest: Mutex<Option<UnixStream>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    /// Queue `bytes` for `client`; a client whose queue is full is disconnected (and its
    /// stream, if any, ended on the guest's side).
    fn to_client(&self, client: u64, bytes: Vec<u8>) {
        let full = match lock(&self.clients).get(&client).map(|tx| tx.try_send(bytes)) {
            Some(Err(TrySendError::Full(_))) => true,
            Some(Err(TrySendError::Disconnected(_))) | Some(Ok(())) | None => false,
        };
        if full {
            self.drop_client(client);
        }
    }

    /// Disconnect `client` (its writer flushes what it has, then closes the socket).
    fn drop_client(&self, client: u64) {
        lock(&self.clients).remove(&client);
        if let Some(stream) = lock(&self.demux).forget(client) {
            let _ = self.to_guest(PortLine::end(stream).as_bytes());
        }
    }

    fn to_guest(&self, bytes: &[u8]) -> Result<(), String> {
        match lock(&self.guest).as_mut() {
            None => Err("the guest's control port is not connected yet".into()),
            Some(guest) => guest.write_all(bytes).map_err(|e| format!("control port: {e}")),
        }
    }
}

/// Serve `listen` for clients, multiplexed over one kept-open connection to QEMU's
/// chardev socket `qemu` (connected, and reconnected, as soon as QEMU offers it).
pub fn spawn(qemu: PathBuf, listen: &Path) -> std::io::Result<()> {
    let _ = std::fs::remove_file(listen);
    let listener = UnixListener::bind(listen)?;
    let shared = Arc::new(Shared { demux: Mutex::default(), clients: Mutex::default(), guest: Mutex::new(None) });
    let reader = shared.clone();
    std::thread::spawn(move || guest_reader(&qemu, &reader));
    std::thread::spawn(move || {
        for (client, stream) in (1u64..).zip(listener.incoming()) {
            let Ok(stream) = stream else { continue };
            let Ok(writer) = stream.try_clone() else { continue };
            let (tx, rx) = sync_channel::<Vec<u8>>(CLIENT_QUEUE);
            lock(&shared.clients).insert(client, tx);
            std::thread::spawn(move || client_writer(writer, rx));
            let shared = shared.clone();
            std::thread::spawn(move || client_reader(client, stream, &shared));
        }
    });
    Ok(())
}

/// Write what is queued for one client; when the queue closes (or the client breaks),
/// close its connection.
fn client_writer(mut stream: UnixStream, queue: std::sync::mpsc::Receiver<Vec<u8>>) {
    for bytes in queue {
        if stream.write_all(&bytes).is_err() {
            break;
        }
    }
    let _ = stream.shutdown(std::net::Shutdown::Both);
}

/// Keep one connection to QEMU; route each line to its client.
fn guest_reader(qemu: &Path, shared: &Shared) {
    loop {
        let Ok(stream) = UnixStream::connect(qemu) else {
            std::thread::sleep(Duration::from_millis(50));
            continue;
        };
        let Ok(writer) = stream.try_clone() else { continue };
        *lock(&shared.guest) = Some(writer);
        let mut lines = BufReader::new(stream);
        let mut line = String::new();
        while lines.read_line(&mut line).unwrap_or(0) > 0 {
            let routed = lock(&shared.demux).incoming(line.trim());
            match routed {
                Some(Route::Line(client, text)) => shared.to_client(client, text.into_bytes()),
                Some(Route::Data(client, bytes)) => shared.to_client(client, bytes),
                Some(Route::End(client)) => {
                    lock(&shared.clients).remove(&client);
                }
                None => {}
            }
            line.clear();
        }
        *lock(&shared.guest) = None;
        for client in lock(&shared.demux).drop_streams() {
            lock(&shared.clients).remove(&client);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Forward one client's request lines to the guest, ids made unique; once its stream
/// started, its bytes (checked to be frames) as stream lines.
fn client_reader(client: u64, mut stream: UnixStream, shared: &Shared) {
    let mut pending = Vec::new();
    let mut frames = Decoder::<ClientFrame>::default();
    let mut buf = vec![0u8; keel_supervisor::stream::PORT_CHUNK];
    loop {
        let n = match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let streaming = lock(&shared.demux).stream_of(client);
        if let Some(wire) = streaming {
            if frames.push(&buf[..n]).is_err() {
                break;
            }
            let lines: String = PortLine::data(wire, &buf[..n]).concat();
            if shared.to_guest(lines.as_bytes()).is_err() {
                break;
            }
            continue;
        }
        pending.extend_from_slice(&buf[..n]);
        while let Some(end) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            forward_line(client, String::from_utf8_lossy(&line).trim(), shared);
        }
        if pending.len() > keel_supervisor::control::MAX_LINE {
            break;
        }
    }
    shared.drop_client(client);
}

/// One request line of a client to the guest (or its refusal back to the client).
fn forward_line(client: u64, line: &str, shared: &Shared) {
    if line.is_empty() {
        return;
    }
    let original = serde_json::from_str::<serde_json::Value>(line).ok().and_then(|v| v.get("id").cloned());
    let failure =
        |error: &str| format!("{}\n", serde_json::json!({"id": original.clone().unwrap_or(0.into()), "ok": false, "error": error}));
    let outgoing = lock(&shared.demux).outgoing(client, line);
    let reply = match outgoing {
        None => Some(failure("bad request: not a JSON object")),
        Some(text) => shared.to_guest(text.as_bytes()).err().map(|e| failure(&e)),
    };
    if let Some(reply) = reply {
        shared.to_client(client, reply.into_bytes());
    }
}

#[cfg(test)]
mod tests;
