//! A minimal synchronous client for the QEMU Machine Protocol over a unix socket.
//!
//! QMP is line-delimited JSON: a greeting, then one reply per command, with
//! asynchronous `{"event": ...}` messages in between, which this client skips.
//! Limits: no command arguments, no `id`s, one command in flight.

use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;

/// How often `connect` retries while QEMU has not created its socket yet.
const RETRY_INTERVAL: Duration = Duration::from_millis(50);

/// Why a QMP exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum QmpError {
    /// The socket could not be connected to before the timeout.
    #[error("QMP socket {}: cannot connect: {source}", path.display())]
    Connect {
        /// The socket path.
        path: PathBuf,
        /// The last error.
        #[source]
        source: io::Error,
    },
    /// Reading or writing the socket failed (a timeout shows up here too).
    #[error("QMP: {0}")]
    Io(#[from] io::Error),
    /// QEMU closed the connection.
    #[error("QMP: QEMU closed the connection")]
    Closed,
    /// A message is not what QMP sends at this point.
    #[error("QMP: unexpected message {line:?}: {reason}")]
    BadMessage {
        /// The message as received.
        line: String,
        /// What was expected.
        reason: &'static str,
    },
    /// QEMU answered a command with an error.
    #[error("QMP command {command}: {class}: {desc}")]
    Command {
        /// The command.
        command: String,
        /// QEMU's error class.
        class: String,
        /// QEMU's description.
        desc: String,
    },
}

/// One message from QEMU.
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// The greeting sent on connect.
    Greeting(Value),
    /// An asynchronous event.
    Event(Value),
    /// A successful reply.
    Return(Value),
    /// A failed reply.
    Error {
        /// Error class.
        class: String,
        /// Description.
        desc: String,
    },
}

/// Classify one line received from QEMU.
pub fn parse_message(line: &str) -> Result<Message, QmpError> {
    let bad = |reason| QmpError::BadMessage { line: line.trim_end().to_string(), reason };
    let value: Value = serde_json::from_str(line).map_err(|_| bad("not JSON"))?;
    let Value::Object(mut object) = value else {
        return Err(bad("not a JSON object"));
    };
    if let Some(greeting) = object.remove("QMP") {
        return Ok(Message::Greeting(greeting));
    }
    if object.contains_key("event") {
        return Ok(Message::Event(Value::Object(object)));
    }
    if let Some(value) = object.remove("return") {
        return Ok(Message::Return(value));
    }
    if let Some(error) = object.get("error") {
        let text = |key: &str| error.get(key).and_then(Value::as_str).unwrap_or("").to_string();
        return Ok(Message::Error { class: text("class"), desc: text("desc") });
    }
    Err(bad("neither greeting, event, return nor error"))
}

/// A QMP session in command mode.
#[derive(Debug)]
pub struct Qmp {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Qmp {
    /// Connect to `path`, retrying until `timeout` while the socket does not exist yet,
    /// read the greeting and enter command mode. `timeout` also bounds each later read.
    pub fn connect(path: &Path, timeout: Duration) -> Result<Qmp, QmpError> {
        let stream = connect_with_retry(path, timeout)?;
        stream.set_read_timeout(Some(timeout.max(Duration::from_millis(1))))?;
        let writer = stream.try_clone()?;
        let mut qmp = Qmp { reader: BufReader::new(stream), writer };
        match qmp.read_message()? {
            Message::Greeting(_) => {}
            _ => return Err(QmpError::BadMessage { line: String::new(), reason: "expected the QMP greeting" }),
        }
        qmp.execute("qmp_capabilities")?;
        Ok(qmp)
    }

    /// Run `command` (without arguments) and return its `return` value.
    pub fn execute(&mut self, command: &str) -> Result<Value, QmpError> {
        let request = serde_json::json!({ "execute": command });
        self.writer.write_all(format!("{request}\n").as_bytes())?;
        loop {
            match self.read_message()? {
                Message::Event(_) => continue,
                Message::Return(value) => return Ok(value),
                Message::Error { class, desc } => return Err(QmpError::Command { command: command.to_string(), class, desc }),
                Message::Greeting(_) => return Err(QmpError::BadMessage { line: String::new(), reason: "a second greeting" }),
            }
        }
    }

    fn read_message(&mut self) -> Result<Message, QmpError> {
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Err(QmpError::Closed);
        }
        parse_message(&line)
    }
}

fn connect_with_retry(path: &Path, timeout: Duration) -> Result<UnixStream, QmpError> {
    let deadline = Instant::now() + timeout;
    loop {
        match UnixStream::connect(path) {
            Ok(stream) => return Ok(stream),
            Err(err) => {
                let retryable = matches!(err.kind(), io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused);
                if !retryable || Instant::now() >= deadline {
                    return Err(QmpError::Connect { path: path.to_path_buf(), source: err });
                }
                std::thread::sleep(RETRY_INTERVAL);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::net::UnixListener;

    use super::*;

    const GREETING: &str = r#"{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}}, "capabilities": []}}"#;

    /// A fake QEMU: sends the greeting, then answers each request line with `replies`.
    fn serve(listener: UnixListener, replies: Vec<Vec<&'static str>>) -> std::thread::JoinHandle<Vec<String>> {
        std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut writer = stream.try_clone().unwrap();
            let mut reader = BufReader::new(stream);
            writeln!(writer, "{GREETING}").unwrap();
            let mut requests = Vec::new();
            for reply in replies {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                requests.push(line.trim_end().to_string());
                for message in reply {
                    writeln!(writer, "{message}").unwrap();
                }
            }
            requests
        })
    }

    #[test]
    fn messages_are_classified() {
        assert!(matches!(parse_message(GREETING).unwrap(), Message::Greeting(_)));
        assert_eq!(parse_message(r#"{"return": {}}"#).unwrap(), Message::Return(serde_json::json!({})));
        assert!(matches!(parse_message(r#"{"event": "POWERDOWN", "timestamp": {}}"#).unwrap(), Message::Event(_)));
        assert_eq!(
            parse_message(r#"{"error": {"class": "CommandNotFound", "desc": "no"}}"#).unwrap(),
            Message::Error { class: "CommandNotFound".into(), desc: "no".into() }
        );
        assert!(matches!(parse_message("[1]"), Err(QmpError::BadMessage { .. })));
        assert!(matches!(parse_message("{oops"), Err(QmpError::BadMessage { .. })));
    }

    #[test]
    fn session_skips_events_and_maps_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("qmp.sock");
        let server = {
            let path = path.clone();
            std::thread::spawn(move || {
                // Create the socket late: connect must retry.
                std::thread::sleep(Duration::from_millis(200));
                let listener = UnixListener::bind(&path).unwrap();
                serve(
                    listener,
                    vec![
                        vec![r#"{"return": {}}"#],
                        vec![r#"{"event": "POWERDOWN", "timestamp": {}}"#, r#"{"return": {}}"#],
                        vec![r#"{"error": {"class": "GenericError", "desc": "nope"}}"#],
                    ],
                )
                .join()
                .unwrap()
            })
        };
        let mut qmp = Qmp::connect(&path, Duration::from_secs(5)).unwrap();
        assert_eq!(qmp.execute("system_powerdown").unwrap(), serde_json::json!({}));
        let err = qmp.execute("quit").unwrap_err();
        assert_eq!(err.to_string(), "QMP command quit: GenericError: nope");
        let requests = server.join().unwrap();
        assert_eq!(requests, [r#"{"execute":"qmp_capabilities"}"#, r#"{"execute":"system_powerdown"}"#, r#"{"execute":"quit"}"#]);
    }

    #[test]
    fn connect_gives_up_after_the_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("none.sock");
        let err = Qmp::connect(&path, Duration::from_millis(100)).unwrap_err();
        assert!(err.to_string().contains("none.sock"), "{err}");
    }
}
