//! The control protocol: one JSON object per line, a request and its response.
//!
//! Every request carries an `id` that its response echoes. A byte stream such as the
//! virtio-serial port can hold a late answer meant for an earlier client, so clients
//! skip answers whose id is not theirs.
//!
//! ```text
//! → {"id":7,"cmd":"exec","argv":["kill","-TERM","1"]}
//! ← {"id":7,"ok":true,"result":{"exit_code":0,"stdout":"","stderr":""}}
//! ```

use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// Where PID 1 serves the control protocol inside the host.
pub const DEFAULT_SOCKET: &str = "/run/keel/control.sock";

/// The name of the virtio-serial port that carries the protocol to the machine running QEMU.
pub const VIRTIO_PORT_NAME: &str = "org.keel.control";

/// Longest request line a server accepts; longer input is refused, not buffered forever.
pub const MAX_LINE: usize = 64 * 1024;

/// What a client asks keel to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Command {
    /// Report the host's boot state.
    Status,
    /// Stop everything and power the machine off.
    Poweroff,
    /// Stop everything and reboot.
    Reboot,
    /// Run a command on the host, or inside a running container, and return its exit
    /// code and output.
    Exec {
        /// Program and arguments; the program is looked up in PATH.
        argv: Vec<String>,
        /// Kill the command after this many seconds (default [`DEFAULT_EXEC_TIMEOUT_SECS`]).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        timeout_secs: Option<u64>,
        /// Run it in this container (its namespaces, cgroup and restrictions).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        container: Option<String>,
    },
    /// Every container with its state.
    Ps,
    /// One container in detail.
    Inspect {
        /// Container name.
        name: String,
    },
    /// Start a container that is not running.
    Start {
        /// Container name.
        name: String,
    },
    /// Stop a container: its stop signal, then SIGKILL after its stop_timeout.
    Stop {
        /// Container name.
        name: String,
    },
    /// Stop a container, then start it again.
    Restart {
        /// Container name.
        name: String,
    },
    /// CPU, memory and pids figures of a running container.
    Stats {
        /// Container name.
        name: String,
    },
    /// What the first-boot config did: applied, skipped, or every problem it had.
    Firstboot,
    /// The container networks.
    NetworkLs,
    /// One network: its bridge, addresses, containers, published ports and the uplink.
    NetworkInspect {
        /// Network name.
        name: String,
    },
    /// Re-read /etc/keel/network.toml and apply the difference live: new networks,
    /// firewall changes; networks in use are changed or removed only with
    /// `restart_attached` (their containers are stopped first and started after).
    NetworkReload {
        /// Stop and start again the containers of networks being changed or removed,
        /// instead of refusing.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        restart_attached: bool,
    },
    /// The images in the store.
    ImageLs,
    /// One image: config defaults and every layer with what it adds, changes, removes.
    ImageInspect {
        /// A name in the store or a manifest digest (or its first 12 hex digits).
        reference: String,
    },
    /// Import an OCI archive, docker archive or OCI layout on the host into the store.
    ImageLoad {
        /// `oci-archive:FILE`, `docker-archive:FILE`, `oci:DIR[:TAG]`, or a plain FILE
        /// (an archive; its kind is found from its contents).
        source: String,
        /// Send [`ProgressLine`]s before the response.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        progress: bool,
    },
    /// Pull a registry image (`REGISTRY/REPO:TAG` or `…@sha256:…`) into the store; a tag
    /// is pulled again (blobs already stored are not downloaded again).
    ImagePull {
        /// The registry reference.
        reference: String,
        /// Send [`ProgressLine`]s before the response.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        progress: bool,
    },
    /// Running and recently finished jobs (pulls, loads, imports, inspects).
    ImageJobs,
    /// Remove an image name (blobs stay until `image_prune`).
    ImageRm {
        /// A name or manifest digest.
        reference: String,
    },
    /// Delete blobs and layers no name and no declared container uses.
    ImagePrune,
    /// A container's log lines: the last `tail` lines, or what follows byte `offset`
    /// of the current log file (for `logs -f`, which asks again with the returned offset).
    Logs {
        /// Container name.
        name: String,
        /// How many of the last lines (default: all).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tail: Option<usize>,
        /// Continue from this position instead (from a previous answer).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        offset: Option<crate::logs::LogOffset>,
    },
    /// Validate these declaration files together with the ones in /etc/keel/containers,
    /// write them there atomically and reconcile: new containers start, changed ones
    /// restart (with their `started`/`healthy` dependents), the others are not touched.
    Apply {
        /// The files, each with the path it was read from (its stem is the container's name).
        files: Vec<crate::manager::desired::DeclarationFile>,
    },
    /// What `apply` would do with these files; nothing is written or touched.
    Diff {
        /// The files.
        files: Vec<crate::manager::desired::DeclarationFile>,
    },
    /// Stop a container and remove its declaration.
    Rm {
        /// Container name.
        name: String,
        /// Delete its state too: logs and state directory.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        purge: bool,
    },
    /// Read /etc/keel/network.toml again and apply it live (as `network_reload`), then
    /// /etc/keel/containers (after an edit by hand), reconciled as `apply` does.
    Reload {
        /// Restart the containers attached to a network the reload changes (the network
        /// half of the reload; refused without it).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        restart_attached: bool,
    },
    /// Host, container and keel figures for monitoring ([`crate::metrics::MetricsSnapshot`]).
    Metrics,
    /// Run a command on the host, or in a container, with its stdin, stdout and stderr
    /// (or a terminal) streamed as frames ([`crate::stream`]) on this connection: `keelctl
    /// exec -i/-t`. Answered `ok` with [`crate::stream::STREAM_STARTED`] once it runs;
    /// the last frame carries its exit code.
    ExecStream {
        /// Program and arguments; the program is looked up in PATH.
        argv: Vec<String>,
        /// Run it in this container (its namespaces, cgroup and restrictions).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        container: Option<String>,
        /// Give it a terminal (a pty from the container's own devpts) of this size.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tty: Option<TerminalSize>,
        /// Kill the command after this many seconds (default: never).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        timeout_secs: Option<u64>,
    },
    /// A container's log lines, the last `tail` of them (all when not given), then every
    /// new line as it is written, pushed as [`crate::stream::ServerFrame::Stdout`] frames
    /// on this connection (`keelctl logs -f`) until the client goes away.
    LogsFollow {
        /// Container name.
        name: String,
        /// How many of the last lines first (default: all).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        tail: Option<usize>,
    },
}

/// A terminal's size, as TIOCGWINSZ reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TerminalSize {
    /// Rows.
    pub rows: u16,
    /// Columns.
    pub cols: u16,
}

impl Command {
    /// Whether the answer to this command is followed by frames ([`crate::stream`]).
    pub fn starts_stream(&self) -> bool {
        matches!(self, Command::ExecStream { .. } | Command::LogsFollow { .. })
    }
}

/// The answer to `logs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogsResult {
    /// Log records, one line each, without the newline.
    pub lines: Vec<String>,
    /// Where the next `logs` call with `offset` continues.
    pub offset: crate::logs::LogOffset,
}

/// How long an `exec` may run when the request names no timeout.
pub const DEFAULT_EXEC_TIMEOUT_SECS: u64 = 120;

/// One request line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    /// Chosen by the client, echoed in the response.
    pub id: u64,
    /// What to do.
    #[serde(flatten)]
    pub command: Command,
}

/// One response line: `ok` with a `result`, or not `ok` with an `error`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    /// The id of the request this answers (0 when the request could not be parsed).
    pub id: u64,
    /// Whether the command succeeded.
    pub ok: bool,
    /// The command's result, when ok.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<serde_json::Value>,
    /// What went wrong, when not ok.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Response {
    /// A successful answer carrying `result`.
    pub fn success(id: u64, result: impl Serialize) -> Self {
        match serde_json::to_value(result) {
            Ok(value) => Response { id, ok: true, result: Some(value), error: None },
            Err(err) => Response::failure(id, format!("cannot encode result: {err}")),
        }
    }

    /// A failed answer with its reason.
    pub fn failure(id: u64, error: impl Into<String>) -> Self {
        Response { id, ok: false, result: None, error: Some(error.into()) }
    }

    /// The response as one line, newline included.
    pub fn to_line(&self) -> String {
        let mut line = serde_json::to_string(self).unwrap_or_else(|_| format!("{{\"id\":{},\"ok\":false}}", self.id));
        line.push('\n');
        line
    }
}

/// A progress line sent for a request that waits for a job (`image pull`/`load` with
/// `progress`), before its response. It has no `ok`, so a client that does not follow
/// progress skips it like an answer for another id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProgressLine {
    /// The request's id.
    pub id: u64,
    /// The job that moved.
    pub job: crate::worker::JobId,
    /// The item that moved, with its rate (none in the first line, which only names the job).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<crate::worker::ItemInfo>,
}

impl ProgressLine {
    /// The line for request `id` about `item` of `job`.
    pub fn new(id: u64, job: crate::worker::JobId, progress: Option<crate::worker::ItemInfo>) -> Self {
        ProgressLine { id, job, progress }
    }

    /// As one line, newline included.
    pub fn to_line(&self) -> String {
        let mut line = serde_json::to_string(self).unwrap_or_default();
        line.push('\n');
        line
    }
}

/// Parse a request line; on error, the response to send back (naming what is wrong).
pub fn parse_request(line: &str) -> Result<Request, Response> {
    serde_json::from_str(line.trim()).map_err(|err| {
        let id = serde_json::from_str::<serde_json::Value>(line).ok().and_then(|v| v.get("id").and_then(|id| id.as_u64())).unwrap_or(0);
        Response::failure(id, format!("bad request: {err}"))
    })
}

/// The host's state as `status` reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// The host name keel set.
    pub hostname: String,
    /// `booting`, `ready`, `emergency` or `shutting-down`.
    pub state: String,
    /// Seconds since the kernel started.
    pub uptime_secs: f64,
    /// Every boot step that failed, with its cause.
    pub boot_errors: Vec<String>,
    /// Resident memory of PID 1 in KiB.
    pub pid1_rss_kib: u64,
    /// The hardware watchdog PID 1 pets, if it armed one (absent from older hosts).
    #[serde(default)]
    pub watchdog: Option<WatchdogStatus>,
}

/// The hardware watchdog PID 1 armed: a wedged PID 1 resets the machine after `timeout_secs`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchdogStatus {
    /// The device node, e.g. `/dev/watchdog0`.
    pub device: String,
    /// The driver's identity, e.g. `i6300ESB timer`.
    pub identity: String,
    /// The timeout the hardware runs with, in seconds.
    pub timeout_secs: u32,
}

/// The outcome of `exec`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecResult {
    /// Exit code, or 128+signal when the command was killed by a signal.
    pub exit_code: i32,
    /// Everything the command wrote to stdout (lossy UTF-8).
    pub stdout: String,
    /// Everything the command wrote to stderr (lossy UTF-8).
    pub stderr: String,
}

/// Why a client call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The socket could not be reached.
    #[error("cannot connect to {path}: {source}")]
    Connect {
        /// Socket path.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// Reading or writing the socket failed (or timed out).
    #[error("control channel {path}: {source}")]
    Io {
        /// Socket path.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The peer closed the connection before answering.
    #[error("control channel {path}: closed before an answer arrived")]
    Closed {
        /// Socket path.
        path: String,
    },
    /// keel answered, but the command failed.
    #[error("{0}")]
    Remote(String),
}

/// A byte stream a [`Client`] talks over: a unix socket, or the remote API's TLS
/// connection (keelctl `--host`), so every transport shares one client.
pub trait Transport: Read + Write + Send {
    /// Bound the wait of the next reads.
    fn set_read_timeout(&self, timeout: Option<Duration>) -> std::io::Result<()>;

    /// The transport as a full-duplex stream for frames (after a stream-starting request).
    fn into_stream(self: Box<Self>) -> std::io::Result<Box<dyn StreamIo>>;
}

/// A connection carrying frames both ways, driven by poll(2) on [`StreamIo::fd`]:
/// reading never waits, writing may (the peer's back-pressure).
pub trait StreamIo: Send {
    /// The descriptor to poll for input.
    fn fd(&self) -> std::os::fd::BorrowedFd<'_>;
    /// Read what has arrived: `Ok(0)` at the end, `WouldBlock` when nothing waits (then
    /// nothing is buffered inside either: poll [`StreamIo::fd`]).
    fn read_some(&mut self, buf: &mut [u8]) -> std::io::Result<usize>;
    /// Write all of `bytes`, waiting while the peer does not read.
    fn send(&mut self, bytes: &[u8]) -> std::io::Result<()>;
}

impl Transport for UnixStream {
    fn set_read_timeout(&self, timeout: Option<Duration>) -> std::io::Result<()> {
        UnixStream::set_read_timeout(self, timeout)
    }

    fn into_stream(self: Box<Self>) -> std::io::Result<Box<dyn StreamIo>> {
        self.set_nonblocking(true)?;
        Ok(self)
    }
}

impl StreamIo for UnixStream {
    fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        std::os::fd::AsFd::as_fd(self)
    }

    fn read_some(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        Read::read(self, buf)
    }

    fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        write_waiting(std::os::fd::AsFd::as_fd(self), bytes)
    }
}

/// Write all of `bytes` to a non-blocking descriptor, waiting in poll(2) while it is full.
pub fn write_waiting(fd: std::os::fd::BorrowedFd<'_>, mut bytes: &[u8]) -> std::io::Result<()> {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    while !bytes.is_empty() {
        match nix::unistd::write(fd, bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(nix::Error::EAGAIN) => {
                let _ = poll(&mut [PollFd::new(fd, PollFlags::POLLOUT)], PollTimeout::NONE);
            }
            Err(nix::Error::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// A connection to a keel control channel (the guest socket or QEMU's chardev socket).
pub struct Client {
    path: String,
    stream: BufReader<Box<dyn Transport>>,
}

impl Client {
    /// Connect to the control socket at `path`.
    pub fn connect(path: &Path) -> Result<Self, ClientError> {
        let name = path.display().to_string();
        let stream = UnixStream::connect(path).map_err(|source| ClientError::Connect { path: name.clone(), source })?;
        Ok(Client::over(name, Box::new(stream)))
    }

    /// A client over an established `transport`; `name` names it in errors.
    pub fn over(name: String, transport: Box<dyn Transport>) -> Self {
        Client { path: name, stream: BufReader::new(transport) }
    }

    /// Send `command` and wait up to `timeout` for its answer; a failed command is an error.
    pub fn call(&mut self, command: Command, timeout: Duration) -> Result<serde_json::Value, ClientError> {
        let response = self.request(command, timeout)?;
        if response.ok {
            Ok(response.result.unwrap_or(serde_json::Value::Null))
        } else {
            Err(ClientError::Remote(response.error.unwrap_or_else(|| "failed".into())))
        }
    }

    /// Send `command` and return the raw response that carries our id.
    pub fn request(&mut self, command: Command, timeout: Duration) -> Result<Response, ClientError> {
        self.request_with_progress(command, timeout, &mut |_| {})
    }

    /// Send `command` and return its response; each [`ProgressLine`] for it before that
    /// goes to `on_progress`. `timeout` bounds each wait for a line, not the whole call.
    pub fn request_with_progress(
        &mut self,
        command: Command,
        timeout: Duration,
        on_progress: &mut dyn FnMut(ProgressLine),
    ) -> Result<Response, ClientError> {
        let id = fresh_id();
        let mut line =
            serde_json::to_string(&Request { id, command }).map_err(|e| ClientError::Remote(format!("cannot encode request: {e}")))?;
        line.push('\n');
        let io = |source| ClientError::Io { path: self.path.clone(), source };
        self.stream.get_ref().set_read_timeout(Some(timeout)).map_err(io)?;
        self.stream.get_mut().write_all(line.as_bytes()).map_err(io)?;
        loop {
            let mut answer = String::new();
            let read = self.stream.read_line(&mut answer).map_err(io)?;
            if read == 0 {
                return Err(ClientError::Closed { path: self.path.clone() });
            }
            if let Ok(response) = serde_json::from_str::<Response>(answer.trim()) {
                // Id 0 and not ok: the server refused the request or the connection
                // (e.g. too many connections) before it could read our id.
                if response.id == id || (response.id == 0 && !response.ok) {
                    return Ok(response);
                }
            } else if let Ok(progress) = serde_json::from_str::<ProgressLine>(answer.trim()) {
                if progress.id == id {
                    on_progress(progress);
                }
            }
        }
    }
}

impl Client {
    /// Send a stream-starting `command` and wait up to `timeout` for its answer; when it
    /// is `ok`, the connection for the frames that follow, with the bytes of them already
    /// read. A refused command is [`ClientError::Remote`].
    pub fn start_stream(self, command: Command, timeout: Duration) -> Result<(Box<dyn StreamIo>, Vec<u8>), ClientError> {
        let mut client = self;
        let response = client.request(command, timeout)?;
        if !response.ok {
            return Err(ClientError::Remote(response.error.unwrap_or_else(|| "failed".into())));
        }
        let early = client.stream.buffer().to_vec();
        let path = client.path.clone();
        let io = client.stream.into_inner().into_stream().map_err(|source| ClientError::Io { path, source })?;
        Ok((io, early))
    }
}

/// A request id unlikely to match a stale answer: time and pid mixed.
fn fresh_id() -> u64 {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0);
    (nanos ^ (u64::from(std::process::id()) << 40)) | 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_request_round_trips() {
        let line = r#"{"id":7,"cmd":"exec","argv":["kill","-TERM","1"]}"#;
        let request = parse_request(line).unwrap();
        assert_eq!(
            request,
            Request {
                id: 7,
                command: Command::Exec { argv: vec!["kill".into(), "-TERM".into(), "1".into()], timeout_secs: None, container: None }
            }
        );
        assert_eq!(serde_json::to_string(&request).unwrap(), line);
    }

    #[test]
    fn unknown_command_names_the_problem_and_keeps_the_id() {
        let response = parse_request(r#"{"id":9,"cmd":"explode"}"#).unwrap_err();
        assert_eq!(response.id, 9);
        assert!(!response.ok);
        assert!(response.error.unwrap().contains("unknown variant `explode`"));
    }

    #[test]
    fn garbage_gets_id_zero() {
        let response = parse_request("not json").unwrap_err();
        assert_eq!(response.id, 0);
        assert!(response.error.unwrap().starts_with("bad request"));
    }

    #[test]
    fn response_is_one_line() {
        let line = Response::success(3, ExecResult { exit_code: 1, stdout: "a\nb".into(), stderr: String::new() }).to_line();
        assert!(line.ends_with('\n'));
        assert_eq!(line.matches('\n').count(), 1);
    }

    #[test]
    fn client_skips_answers_for_other_ids() {
        use std::os::unix::net::UnixListener;
        let dir = std::env::temp_dir().join(format!("keel-ctl-test-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("s.sock");
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).unwrap();
        let server = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream);
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            let request = parse_request(&line).unwrap();
            let stale = Response::success(request.id + 1, "stale").to_line();
            let right = Response::success(request.id, "fresh").to_line();
            reader.get_mut().write_all(stale.as_bytes()).unwrap();
            reader.get_mut().write_all(right.as_bytes()).unwrap();
        });
        let mut client = Client::connect(&path).unwrap();
        let result = client.call(Command::Status, Duration::from_secs(5)).unwrap();
        assert_eq!(result, serde_json::json!("fresh"));
        server.join().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
