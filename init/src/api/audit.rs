//! The audit log: one JSON line per remote request (and per refused connection) —
//! who (certificate CN and serial, peer address), what (the command), when, and the
//! result (`ok`, `error` or `refused`). Bounded: past [`MAX_BYTES`] the file becomes
//! `audit.log.1` (the previous one is dropped) and a new one starts.

use serde::Serialize;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

/// Size at which the audit log is rotated.
pub const MAX_BYTES: u64 = 1 << 20;

/// What became of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Forwarded and answered ok.
    Ok,
    /// Forwarded and answered with an error (or not answered).
    Error,
    /// Not forwarded: the certificate, its role or the connection was refused.
    Refused,
}

/// One audit record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry {
    /// RFC 3339 UTC time.
    pub time: String,
    /// The client's address and port.
    pub peer: String,
    /// Certificate subject CN, when a certificate was presented.
    pub cn: Option<String>,
    /// Certificate serial (hex), when a certificate was presented.
    pub serial: Option<String>,
    /// The role, once known.
    pub role: Option<&'static str>,
    /// The command (`cmd` name), `-` for the connection itself.
    pub cmd: String,
    /// The result.
    pub result: Outcome,
    /// Why it was refused or failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl Entry {
    /// An entry stamped now.
    pub fn now(peer: &str, cmd: &str, result: Outcome) -> Entry {
        Entry {
            time: keel_supervisor::logs::format_timestamp(SystemTime::now()),
            peer: peer.into(),
            cn: None,
            serial: None,
            role: None,
            cmd: cmd.into(),
            result,
            detail: None,
        }
    }
}

/// Whether writing `incoming` more bytes to a file of `current` bytes needs a rotation first.
pub fn needs_rotation(current: u64, incoming: u64, max: u64) -> bool {
    current > 0 && current + incoming > max
}

/// The audit log file, shared by the connection threads.
pub struct AuditLog {
    path: PathBuf,
    max: u64,
    file: Mutex<Option<File>>,
}

impl AuditLog {
    /// The log at `path` (its directory is made when missing), rotated past `max` bytes.
    pub fn open(path: &Path, max: u64) -> AuditLog {
        if let Some(parent) = path.parent() {
            let _ = std::fs::create_dir_all(parent);
        }
        AuditLog { path: path.into(), max, file: Mutex::new(None) }
    }

    /// Append one record; a failure is reported on stderr (the console), never fatal.
    pub fn write(&self, entry: &Entry) {
        let mut line = serde_json::to_string(entry).unwrap_or_default();
        line.push('\n');
        let mut guard = self.file.lock().unwrap_or_else(|e| e.into_inner());
        let current = std::fs::metadata(&self.path).map(|m| m.len()).unwrap_or(0);
        if needs_rotation(current, line.len() as u64, self.max) {
            *guard = None;
            let _ = std::fs::rename(&self.path, rotated(&self.path));
        }
        if guard.is_none() {
            match OpenOptions::new().create(true).append(true).open(&self.path) {
                Ok(file) => *guard = Some(file),
                Err(e) => return eprintln!("keel api: audit log {}: {e}", self.path.display()),
            }
        }
        if let Some(file) = guard.as_mut() {
            if let Err(e) = file.write_all(line.as_bytes()) {
                eprintln!("keel api: audit log {}: {e}", self.path.display());
                *guard = None;
            }
        }
    }
}

/// `audit.log` → `audit.log.1`.
fn rotated(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".1");
    name.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_rule() {
        assert!(!needs_rotation(0, 5000, 100), "an empty file takes any record");
        assert!(!needs_rotation(50, 50, 100));
        assert!(needs_rotation(51, 50, 100));
    }

    #[test]
    fn writes_json_lines_and_rotates() {
        let dir = std::env::temp_dir().join(format!("keel-audit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("audit.log");
        let log = AuditLog::open(&path, 300);
        let mut entry = Entry::now("10.0.2.2:4000", "ps", Outcome::Ok);
        entry.cn = Some("alice".into());
        entry.serial = Some("1f".into());
        entry.role = Some("admin");
        for _ in 0..3 {
            log.write(&entry);
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!((first["cn"].as_str(), first["cmd"].as_str(), first["result"].as_str()), (Some("alice"), Some("ps"), Some("ok")));
        assert!(std::fs::metadata(&path).unwrap().len() <= 300);
        assert!(rotated(&path).exists(), "past 300 bytes the log rotated");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
