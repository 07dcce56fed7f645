//! `keel-build run`'s control socket: one connection to QEMU's chardev socket of the
//! guest's virtio-serial control port, opened once and kept open, shared by any number
//! of clients. While the host end of the port is closed, the guest sees a hang-up and
//! leaves the port out of its poll set for a while (250 ms), so a connection per
//! request cost that much each time; kept open, a request is answered at once.
//!
//! Clients connect to the socket `keel-build run --control-socket PATH` names, exactly
//! as before. Each request line's `id` is replaced by one unique across clients
//! ([`Demux`]), and each answer goes back to the client that asked, with its own id.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Request ids in flight: the id sent to the guest → (client, the client's own id).
#[derive(Debug, Default)]
pub struct Demux {
    next: u64,
    pending: HashMap<u64, (u64, serde_json::Value)>,
}

impl Demux {
    /// A request line from `client`, with its id replaced; `None` when it is not a JSON object.
    pub fn outgoing(&mut self, client: u64, line: &str) -> Option<String> {
        let mut value: serde_json::Value = serde_json::from_str(line).ok()?;
        let object = value.as_object_mut()?;
        self.next += 1;
        let original = object.insert("id".into(), self.next.into()).unwrap_or(serde_json::Value::Null);
        self.pending.insert(self.next, (client, original));
        let mut text = serde_json::to_string(&value).ok()?;
        text.push('\n');
        Some(text)
    }

    /// An answer from the guest: the client it is for and the line with that client's id.
    pub fn incoming(&mut self, line: &str) -> Option<(u64, String)> {
        let mut value: serde_json::Value = serde_json::from_str(line).ok()?;
        let id = value.get("id")?.as_u64()?;
        let (client, original) = self.pending.remove(&id)?;
        value.as_object_mut()?.insert("id".into(), original);
        let mut text = serde_json::to_string(&value).ok()?;
        text.push('\n');
        Some((client, text))
    }

    /// Forget a client's requests (it went away).
    pub fn forget(&mut self, client: u64) {
        self.pending.retain(|_, (c, _)| *c != client);
    }
}

struct Shared {
    demux: Mutex<Demux>,
    clients: Mutex<HashMap<u64, UnixStream>>,
    guest: Mutex<Option<UnixStream>>,
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
            shared.clients.lock().unwrap_or_else(|e| e.into_inner()).insert(client, writer);
            let shared = shared.clone();
            std::thread::spawn(move || client_reader(client, stream, &shared));
        }
    });
    Ok(())
}

/// Keep one connection to QEMU; route each answer line to its client.
fn guest_reader(qemu: &Path, shared: &Shared) {
    loop {
        let Ok(stream) = UnixStream::connect(qemu) else {
            std::thread::sleep(Duration::from_millis(50));
            continue;
        };
        let Ok(writer) = stream.try_clone() else { continue };
        *shared.guest.lock().unwrap_or_else(|e| e.into_inner()) = Some(writer);
        let mut lines = BufReader::new(stream);
        let mut line = String::new();
        while lines.read_line(&mut line).unwrap_or(0) > 0 {
            let routed = shared.demux.lock().unwrap_or_else(|e| e.into_inner()).incoming(line.trim());
            if let Some((client, text)) = routed {
                if let Some(stream) = shared.clients.lock().unwrap_or_else(|e| e.into_inner()).get_mut(&client) {
                    let _ = stream.write_all(text.as_bytes());
                }
            }
            line.clear();
        }
        *shared.guest.lock().unwrap_or_else(|e| e.into_inner()) = None;
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Forward one client's request lines to the guest, ids made unique.
fn client_reader(client: u64, stream: UnixStream, shared: &Shared) {
    let mut lines = BufReader::new(stream);
    let mut line = String::new();
    while lines.read_line(&mut line).unwrap_or(0) > 0 {
        if !line.trim().is_empty() {
            let original = serde_json::from_str::<serde_json::Value>(line.trim()).ok().and_then(|v| v.get("id").cloned());
            let failure =
                |error: &str| format!("{}\n", serde_json::json!({"id": original.clone().unwrap_or(0.into()), "ok": false, "error": error}));
            let mut guest = shared.guest.lock().unwrap_or_else(|e| e.into_inner());
            let reply = match (guest.as_mut(), shared.demux.lock().unwrap_or_else(|e| e.into_inner()).outgoing(client, line.trim())) {
                (_, None) => Some(failure("bad request: not a JSON object")),
                (None, Some(_)) => Some(failure("the guest's control port is not connected yet")),
                (Some(g), Some(text)) => g.write_all(text.as_bytes()).err().map(|e| failure(&format!("control port: {e}"))),
            };
            drop(guest);
            if let Some(reply) = reply {
                if let Some(stream) = shared.clients.lock().unwrap_or_else(|e| e.into_inner()).get_mut(&client) {
                    let _ = stream.write_all(reply.as_bytes());
                }
            }
        }
        line.clear();
    }
    shared.clients.lock().unwrap_or_else(|e| e.into_inner()).remove(&client);
    shared.demux.lock().unwrap_or_else(|e| e.into_inner()).forget(client);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_on_the_wire_and_restored_for_each_client() {
        let mut demux = Demux::default();
        let a = demux.outgoing(1, r#"{"id":7,"cmd":"status"}"#).unwrap();
        let b = demux.outgoing(2, r#"{"id":7,"cmd":"ps"}"#).unwrap();
        let id = |line: &str| serde_json::from_str::<serde_json::Value>(line).unwrap()["id"].as_u64().unwrap();
        assert_ne!(id(&a), id(&b), "two clients' id 7 differ on the wire");
        let (client, text) = demux.incoming(&format!(r#"{{"id":{},"ok":true}}"#, id(&b))).unwrap();
        assert_eq!((client, id(&text)), (2, 7));
        assert!(demux.incoming(&format!(r#"{{"id":{},"ok":true}}"#, id(&b))).is_none(), "answered once");
        demux.forget(1);
        assert!(demux.incoming(&format!(r#"{{"id":{},"ok":true}}"#, id(&a))).is_none(), "a gone client's answer is dropped");
        assert!(demux.outgoing(1, "not json").is_none());
    }

    #[test]
    fn end_to_end_through_a_fake_guest() {
        let dir = std::env::temp_dir().join(format!("keel-mux-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let qemu = dir.join("qemu.sock");
        let guest = UnixListener::bind(&qemu).unwrap();
        std::thread::spawn(move || {
            let (stream, _) = guest.accept().unwrap();
            let mut out = stream.try_clone().unwrap();
            for line in BufReader::new(stream).lines() {
                let v: serde_json::Value = serde_json::from_str(&line.unwrap()).unwrap();
                let _ = writeln!(out, r#"{{"id":{},"ok":true,"result":{}}}"#, v["id"], v["cmd"]);
            }
        });
        let listen = dir.join("control.sock");
        spawn(qemu, &listen).unwrap();
        for round in 0..3 {
            let stream = UnixStream::connect(&listen).unwrap();
            let mut writer = stream.try_clone().unwrap();
            let mut reader = BufReader::new(stream);
            let mut answer = String::new();
            for _ in 0..100 {
                writeln!(writer, r#"{{"id":{round},"cmd":"status"}}"#).unwrap();
                answer.clear();
                reader.read_line(&mut answer).unwrap();
                if !answer.contains("not connected") {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            assert_eq!(answer.trim(), format!(r#"{{"id":{round},"ok":true,"result":"status"}}"#));
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
