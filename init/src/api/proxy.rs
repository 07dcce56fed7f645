//! The `keel api` process: accept TCP connections on the API port, finish a TLS 1.3
//! handshake with a client certificate (see [`super::tls`]), then for each request line:
//! parse it as the control protocol, check the certificate's role allows the command,
//! forward the typed request to the local control socket and relay the answer, and audit
//! it. One thread per connection (this is not PID 1), at most `max_connections` at once;
//! handshakes and idle connections time out.

use super::audit::{AuditLog, Entry, Outcome};
use super::config::{ApiConfig, ServerKey, AUDIT_LOG, STATE_DIR};
use super::identity::{parse_certificate, ClientIdentity};
use super::roles::{command_name, role_of, Role};
use super::tls::{self, TlsError};
use keel_supervisor::control::{parse_request, Command, Request, Response, DEFAULT_SOCKET, MAX_LINE};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Why the API process cannot serve.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// Keys, certificates or the TLS configuration.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The port could not be bound.
    #[error("cannot listen on port {port}: {source}")]
    Bind {
        /// The port.
        port: u16,
        /// The OS error.
        source: std::io::Error,
    },
}

/// A running API: its TLS configuration, where it forwards, its audit log and limits.
pub struct Proxy {
    tls: Arc<rustls::ServerConfig>,
    control: PathBuf,
    audit: AuditLog,
    max_connections: usize,
    idle_timeout: Duration,
    handshake_timeout: Duration,
    active: AtomicUsize,
    in_flight: AtomicUsize,
}

/// Serve the API described by `config` until the process is killed.
pub fn serve(config: &ApiConfig) -> Result<(), ProxyError> {
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default().trim().to_string();
    let (chain, key) = match &config.server {
        ServerKey::Generated => tls::ensure_server_key(std::path::Path::new(STATE_DIR), &hostname)?,
        ServerKey::Files { cert, key } => (tls::load_certs(cert)?, tls::load_key(key)?),
    };
    let shown = tls::fingerprint(&chain[0]);
    let cas = tls::load_certs(&config.client_ca)?;
    let server = tls::server_config(cas, config.denied_serials.clone(), chain, key)?;
    let listener = TcpListener::bind(("::", config.port))
        .or_else(|_| TcpListener::bind(("0.0.0.0", config.port)))
        .map_err(|source| ProxyError::Bind { port: config.port, source })?;
    eprintln!("keel api: listening on port {} (TLS 1.3, client certificates); server certificate sha256 {shown}", config.port);
    let proxy = Arc::new(Proxy::new(server, DEFAULT_SOCKET.into(), AuditLog::open(AUDIT_LOG.as_ref(), super::audit::MAX_BYTES), config));
    if let Some(address) = config.metrics_listen {
        let plain = TcpListener::bind(address).map_err(|source| ProxyError::Bind { port: address.port(), source })?;
        eprintln!("keel api: plain metrics on http://{address}/metrics (no TLS, no client certificate)");
        let proxy = proxy.clone();
        std::thread::spawn(move || super::plain_metrics::serve(proxy, plain));
    }
    stop_on_sigterm(proxy.clone());
    proxy.run(listener);
    Ok(())
}

/// How long a SIGTERM waits for the requests in flight (e.g. `poweroff`'s answer, which PID 1
/// writes just before it stops this process) to be relayed.
const DRAIN: Duration = Duration::from_secs(2);

/// SIGTERM (PID 1's stop, or the shutdown's kill of every process): relay the answers
/// in flight, then exit. The signal is blocked before any thread starts and taken by one.
fn stop_on_sigterm(proxy: Arc<Proxy>) {
    use nix::sys::signal::{SigSet, Signal};
    let mut set = SigSet::empty();
    set.add(Signal::SIGTERM);
    if set.thread_block().is_err() {
        return;
    }
    std::thread::spawn(move || {
        while set.wait().is_ok_and(|s| s != Signal::SIGTERM) {}
        let until = std::time::Instant::now() + DRAIN;
        while proxy.in_flight.load(Ordering::SeqCst) > 0 && std::time::Instant::now() < until {
            std::thread::sleep(Duration::from_millis(10));
        }
        std::process::exit(0);
    });
}

/// Decrements the active-connection count when a connection ends.
pub(super) struct Slot<'a>(&'a AtomicUsize);

impl<'a> Slot<'a> {
    /// Count one more until the slot is dropped.
    fn take(counter: &'a AtomicUsize) -> Self {
        counter.fetch_add(1, Ordering::SeqCst);
        Slot(counter)
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// How long to wait for PID 1's answer to `command`.
fn answer_timeout(command: &Command) -> Duration {
    match command {
        Command::Exec { timeout_secs, .. } => {
            Duration::from_secs(timeout_secs.unwrap_or(keel_supervisor::control::DEFAULT_EXEC_TIMEOUT_SECS) + 30)
        }
        Command::ImagePull { .. } | Command::ImageLoad { .. } => Duration::from_secs(900),
        _ => Duration::from_secs(120),
    }
}

impl Proxy {
    /// A proxy forwarding to the control socket at `control`, with `config`'s limits.
    pub fn new(tls: Arc<rustls::ServerConfig>, control: PathBuf, audit: AuditLog, config: &ApiConfig) -> Proxy {
        Proxy {
            tls,
            control,
            audit,
            max_connections: config.max_connections,
            idle_timeout: config.idle_timeout,
            handshake_timeout: config.handshake_timeout,
            active: AtomicUsize::new(0),
            in_flight: AtomicUsize::new(0),
        }
    }

    /// Accept connections forever, one thread each.
    pub fn run(self: Arc<Self>, listener: TcpListener) {
        for stream in listener.incoming() {
            let tcp = match stream {
                Ok(tcp) => tcp,
                Err(e) => {
                    eprintln!("keel api: accept: {e}");
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                }
            };
            let peer = tcp.peer_addr().map(|a| a.to_string()).unwrap_or_else(|_| "?".into());
            if self.active.fetch_add(1, Ordering::SeqCst) >= self.max_connections {
                self.active.fetch_sub(1, Ordering::SeqCst);
                let mut entry = Entry::now(&peer, "-", Outcome::Refused);
                entry.detail = Some(format!("more than {} connections", self.max_connections));
                self.audit.write(&entry);
                continue;
            }
            let proxy = self.clone();
            let spawned = std::thread::Builder::new().name("api-conn".into()).spawn(move || {
                let _slot = Slot(&proxy.active);
                proxy.connection(tcp, &peer);
            });
            if let Err(e) = spawned {
                self.active.fetch_sub(1, Ordering::SeqCst);
                eprintln!("keel api: cannot start a connection thread: {e}");
            }
        }
    }

    fn audit(&self, peer: &str, who: Option<&ClientIdentity>, role: Option<Role>, cmd: &str, result: Outcome, detail: Option<String>) {
        let mut entry = Entry::now(peer, cmd, result);
        entry.cn = who.and_then(|w| w.common_name.clone());
        entry.serial = who.map(|w| w.serial.clone());
        entry.role = role.map(Role::name);
        entry.detail = detail.map(|d| d.chars().take(300).collect());
        self.audit.write(&entry);
    }

    /// One client: handshake, then request lines until it goes away or idles out.
    fn connection(&self, mut tcp: TcpStream, peer: &str) {
        let _ = tcp.set_read_timeout(Some(self.handshake_timeout));
        let _ = tcp.set_write_timeout(Some(self.handshake_timeout));
        let _ = tcp.set_nodelay(true);
        let mut conn = match rustls::ServerConnection::new(self.tls.clone()) {
            Ok(conn) => conn,
            Err(e) => return eprintln!("keel api: {e}"),
        };
        while conn.is_handshaking() {
            if let Err(e) = conn.complete_io(&mut tcp) {
                let _ = conn.write_tls(&mut tcp);
                let presented = tls::take_presented();
                self.audit(peer, presented.as_ref(), None, "-", Outcome::Refused, Some(format!("handshake: {e}")));
                return;
            }
        }
        let presented = tls::take_presented();
        let identity = presented.or_else(|| conn.peer_certificates().and_then(|c| c.first()).and_then(|c| parse_certificate(c).ok()));
        let Some(identity) = identity else {
            self.audit(peer, None, None, "-", Outcome::Refused, Some("no client certificate".into()));
            return;
        };
        let role = role_of(&identity.organizations);
        let _ = tcp.set_read_timeout(Some(self.idle_timeout));
        let mut stream = BufReader::new(rustls::StreamOwned::new(conn, tcp));
        let mut control: Option<BufReader<UnixStream>> = None;
        let mut first = true;
        loop {
            let mut line = Vec::new();
            match stream.by_ref().take(MAX_LINE as u64 + 1).read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) if line.len() > MAX_LINE => {
                    let _ = send(&mut stream, &Response::failure(0, "request line too long"));
                    self.audit(peer, Some(&identity), role, "-", Outcome::Refused, Some("request line too long".into()));
                    return;
                }
                Ok(_) => {}
            }
            let text = String::from_utf8_lossy(&line);
            if std::mem::take(&mut first) {
                if let Some(request) = super::http::request_line(&text) {
                    return self.http(&mut stream, &mut control, &request, peer, &identity, role);
                }
            }
            if text.trim().is_empty() {
                continue;
            }
            let _in_flight = Slot::take(&self.in_flight);
            let request = match parse_request(&text) {
                Ok(request) => request,
                Err(response) => {
                    self.audit(peer, Some(&identity), role, "-", Outcome::Error, response.error.clone());
                    if send(&mut stream, &response).is_err() {
                        return;
                    }
                    continue;
                }
            };
            let cmd = command_name(&request.command);
            let response = match role {
                None => {
                    let why = "refused: the client certificate has no keel role (subject O=admin or O=read-only)".to_string();
                    self.audit(peer, Some(&identity), role, &cmd, Outcome::Refused, Some(why.clone()));
                    Response::failure(request.id, why)
                }
                Some(role) if !role.allows(&cmd) => {
                    let why = format!("refused: the {} role may not run `{cmd}`", role.name());
                    self.audit(peer, Some(&identity), Some(role), &cmd, Outcome::Refused, Some(why.clone()));
                    Response::failure(request.id, why)
                }
                Some(role) if request.command.starts_stream() => {
                    return self.stream(stream, &request, peer, &identity, role, &cmd);
                }
                Some(role) => {
                    let response = self.forward(&mut control, &request).unwrap_or_else(|e| {
                        control = None;
                        Response::failure(request.id, format!("keel api: control socket {}: {e}", self.control.display()))
                    });
                    let outcome = if response.ok { Outcome::Ok } else { Outcome::Error };
                    self.audit(peer, Some(&identity), Some(role), &cmd, outcome, response.error.clone());
                    response
                }
            };
            if send(&mut stream, &response).is_err() {
                return;
            }
        }
    }

    /// Answer one HTTP request (the scrape of `GET /metrics`), audit it as `metrics`, close.
    #[allow(clippy::too_many_arguments)]
    fn http(
        &self,
        stream: &mut BufReader<rustls::StreamOwned<rustls::ServerConnection, TcpStream>>,
        control: &mut Option<BufReader<UnixStream>>,
        request: &super::http::RequestLine,
        peer: &str,
        identity: &ClientIdentity,
        role: Option<Role>,
    ) {
        let headers_read = super::http::skip_headers(stream);
        let allowed = role.is_some_and(|r| r.allows("metrics"));
        let answer = self.metrics_answer(control, request, headers_read, allowed);
        self.audit(peer, Some(identity), role, "metrics", answer.outcome, answer.detail(request));
        let out = stream.get_mut();
        let _ = out.write_all(&answer.bytes());
        out.conn.send_close_notify();
        let _ = out.flush();
    }

    /// The answer to an HTTP request for the metrics (`allowed`: the client may read them;
    /// `headers_read`: its headers ended within bounds).
    pub(super) fn metrics_answer(
        &self,
        control: &mut Option<BufReader<UnixStream>>,
        request: &super::http::RequestLine,
        headers_read: bool,
        allowed: bool,
    ) -> super::http::Answer {
        use super::http::{Answer, METRICS_PATH};
        if !headers_read {
            return Answer::text(400, "bad request headers", Outcome::Error);
        } else if request.path != METRICS_PATH {
            return Answer::text(404, &format!("only {METRICS_PATH} is served over HTTP"), Outcome::Error);
        } else if request.method != "GET" {
            return Answer::text(405, "only GET", Outcome::Error);
        } else if !allowed {
            return Answer::text(403, "refused: the client certificate's role may not read metrics", Outcome::Refused);
        }
        let _in_flight = Slot::take(&self.in_flight);
        let asked = Request { id: 1, command: Command::Metrics };
        match self.forward(control, &asked) {
            Ok(Response { ok: true, result: Some(value), .. }) => {
                match serde_json::from_value::<keel_supervisor::metrics::MetricsSnapshot>(value) {
                    Ok(snapshot) => Answer::metrics(crate::metrics::render(&snapshot)),
                    Err(e) => Answer::text(503, &format!("keel answered metrics in an unknown form: {e}"), Outcome::Error),
                }
            }
            Ok(answer) => Answer::text(503, &answer.error.unwrap_or_default(), Outcome::Error),
            Err(e) => Answer::text(503, &format!("keel api: control socket {}: {e}", self.control.display()), Outcome::Error),
        }
    }

    /// Write an audit entry for a client without a certificate (the plain metrics port).
    pub(super) fn audit_anonymous(&self, peer: &str, cmd: &str, result: Outcome, detail: Option<String>) {
        self.audit(peer, None, None, cmd, result, detail);
    }

    /// Reserve a connection slot; None past `max_connections`.
    pub(super) fn take_slot(&self) -> Option<Slot<'_>> {
        let slot = Slot::take(&self.active);
        (self.active.load(Ordering::SeqCst) <= self.max_connections).then_some(slot)
    }

    /// A stream-starting request (allowed for `role`): the connection relays frames
    /// from here on ([`super::proxy_stream`]); audited when it starts and when it ends,
    /// with the command's exit code.
    fn stream(
        &self,
        reader: BufReader<rustls::StreamOwned<rustls::ServerConnection, TcpStream>>,
        request: &Request,
        peer: &str,
        identity: &ClientIdentity,
        role: Role,
        cmd: &str,
    ) {
        let (mut client, early) = match super::proxy_stream::take_over(reader) {
            Ok(taken) => taken,
            Err(e) => return self.audit(peer, Some(identity), Some(role), cmd, Outcome::Error, Some(format!("stream: {e}"))),
        };
        self.audit(peer, Some(identity), Some(role), cmd, Outcome::Ok, Some("stream started".into()));
        let end = super::proxy_stream::relay(&mut client, &early, &self.control, request, answer_timeout(&request.command));
        client.close();
        let (outcome, detail) = match end {
            super::proxy_stream::StreamEnd::Refused(why) => (Outcome::Error, why),
            super::proxy_stream::StreamEnd::Exited(code) => {
                (if code == 0 { Outcome::Ok } else { Outcome::Error }, format!("exit code {code}"))
            }
            super::proxy_stream::StreamEnd::Ended(why) => (Outcome::Ok, format!("stream ended: {why}")),
        };
        self.audit(peer, Some(identity), Some(role), cmd, outcome, Some(detail));
    }

    /// Send the typed request (re-encoded: PID 1 sees exactly what was checked) and
    /// return the answer carrying its id.
    fn forward(&self, control: &mut Option<BufReader<UnixStream>>, request: &Request) -> std::io::Result<Response> {
        if control.is_none() {
            *control = Some(BufReader::new(UnixStream::connect(&self.control)?));
        }
        let Some(channel) = control.as_mut() else { unreachable!("just connected") };
        let mut line = serde_json::to_string(request).map_err(std::io::Error::other)?;
        line.push('\n');
        channel.get_ref().set_read_timeout(Some(answer_timeout(&request.command)))?;
        channel.get_mut().write_all(line.as_bytes())?;
        loop {
            let mut answer = String::new();
            if channel.read_line(&mut answer)? == 0 {
                return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "closed before an answer arrived"));
            }
            if let Ok(response) = serde_json::from_str::<Response>(answer.trim()) {
                if response.id == request.id {
                    return Ok(response);
                }
            }
        }
    }
}

fn send(stream: &mut BufReader<rustls::StreamOwned<rustls::ServerConnection, TcpStream>>, response: &Response) -> std::io::Result<()> {
    let out = stream.get_mut();
    out.write_all(response.to_line().as_bytes())?;
    out.flush()
}

#[cfg(test)]
mod tests;
