//! The API end to end in one process: a real TLS listener, certificates made here with
//! rcgen, and a stand-in control socket that answers each command with its name.

use super::*;
use crate::api::config;
use crate::api::remote::{self, Context};
use crate::api::test_certs::{ca, issue, TestCa};
use keel_supervisor::control::{Client, ClientError};
use std::os::unix::net::UnixListener;
use std::path::Path;

/// Answers every request with `{"ok":true,"result":"<cmd> done"}`.
fn fake_control(path: &Path) {
    let listener = UnixListener::bind(path).unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut stream = stream;
                let mut line = String::new();
                while reader.read_line(&mut line).unwrap_or(0) > 0 {
                    let request = parse_request(&line).unwrap();
                    if request.command.starts_stream() {
                        return echo_stream(request.id, reader, stream);
                    }
                    let answer = match request.command {
                        Command::Metrics => Response::success(request.id, fake_metrics()),
                        _ => Response::success(request.id, format!("{} done", command_name(&request.command))),
                    };
                    let _ = stream.write_all(answer.to_line().as_bytes());
                    line.clear();
                }
            });
        }
    });
}

/// What the stand-in answers to `metrics`: one running container.
fn fake_metrics() -> keel_supervisor::metrics::MetricsSnapshot {
    keel_supervisor::metrics::MetricsSnapshot {
        containers: vec![keel_supervisor::metrics::ContainerMetrics {
            name: "web".into(),
            state: "running".into(),
            pids: 3,
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// A stand-in stream: stdin frames come back as stdout; at end of stdin, exit code 7.
fn echo_stream(id: u64, mut reader: BufReader<UnixStream>, mut stream: UnixStream) {
    use keel_supervisor::stream::{ClientFrame, Decoder, ServerFrame};
    let _ = stream.write_all(Response::success(id, keel_supervisor::stream::STREAM_STARTED).to_line().as_bytes());
    let mut decoder = Decoder::<ClientFrame>::default();
    let mut buf = [0u8; 4096];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        for frame in decoder.push(&buf[..n]).unwrap() {
            match frame {
                ClientFrame::Stdin(data) => stream.write_all(&ServerFrame::Stdout(data).encode()).unwrap(),
                ClientFrame::StdinEof => {
                    let _ = stream.write_all(&ServerFrame::Exit(7).encode());
                    return;
                }
                _ => {}
            }
        }
    }
}

struct Fixture {
    dir: PathBuf,
    port: u16,
    fingerprint: String,
    audit: PathBuf,
}

fn start(dir: &Path, ca: &TestCa) -> Fixture {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("ca.pem"), ca.cert.pem()).unwrap();
    std::fs::write(dir.join("denied"), "# revoked\n00:66\n").unwrap();
    let control = dir.join("control.sock");
    fake_control(&control);
    let (chain, key) = tls::ensure_server_key(&dir.join("server"), "keel-test").unwrap();
    let fingerprint = tls::fingerprint(&chain[0]);
    let server = tls::server_config(tls::load_certs(&dir.join("ca.pem")).unwrap(), dir.join("denied"), chain, key).unwrap();
    let text = format!("client_ca = \"{}\"\nmax_connections = 4\n", dir.join("ca.pem").display());
    let settings = config::parse(&text, "api.toml").unwrap();
    let audit = dir.join("audit.log");
    let proxy = Arc::new(Proxy::new(server, control, AuditLog::open(&audit, 1 << 20), &settings));
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || proxy.run(listener));
    Fixture { dir: dir.into(), port, fingerprint, audit }
}

impl Fixture {
    fn call(&self, cert: Option<&(PathBuf, PathBuf)>, command: Command) -> Result<serde_json::Value, String> {
        let context = Context {
            host: format!("127.0.0.1:{}", self.port),
            fingerprint: Some(self.fingerprint.clone()),
            cert: cert.map(|c| c.0.clone()),
            key: cert.map(|c| c.1.clone()),
            ..Default::default()
        };
        let mut client: Client = remote::connect(&context, Duration::from_secs(10)).map_err(|e| e.to_string())?;
        client.call(command, Duration::from_secs(10)).map_err(|e: ClientError| e.to_string())
    }

    /// Start a stream with `command`; send `input` as frames; return the raw frames back.
    fn stream(&self, cert: &(PathBuf, PathBuf), command: Command, input: &[u8]) -> Result<Vec<u8>, String> {
        let context = Context {
            host: format!("127.0.0.1:{}", self.port),
            fingerprint: Some(self.fingerprint.clone()),
            cert: Some(cert.0.clone()),
            key: Some(cert.1.clone()),
            ..Default::default()
        };
        let client: Client = remote::connect(&context, Duration::from_secs(10)).map_err(|e| e.to_string())?;
        let (mut io, mut got) = client.start_stream(command, Duration::from_secs(10)).map_err(|e| e.to_string())?;
        io.send(input).map_err(|e| e.to_string())?;
        let mut buf = [0u8; 4096];
        loop {
            let _ = nix::poll::poll(
                &mut [nix::poll::PollFd::new(io.fd(), nix::poll::PollFlags::POLLIN)],
                nix::poll::PollTimeout::from(5000u16),
            );
            match io.read_some(&mut buf) {
                Ok(0) => return Ok(got),
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => return Ok(got),
            }
        }
    }

    fn audit_lines(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(&self.audit).unwrap_or_default().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }
}

fn exec() -> Command {
    Command::Exec { argv: vec!["true".into()], timeout_secs: None, container: None }
}

#[test]
fn roles_certificates_and_audit() {
    let dir = std::env::temp_dir().join(format!("keel-api-proxy-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let ours = ca("keel test CA");
    let other = ca("someone else's CA");
    let f = start(&dir, &ours);
    let admin = issue(&dir, &ours, "admin", "alice", "admin", 0x11, false);
    let reader = issue(&dir, &ours, "reader", "bob", "read-only", 0x22, false);
    let roleless = issue(&dir, &ours, "roleless", "carol", "ops", 0x33, false);
    let foreign = issue(&dir, &other, "foreign", "mallory", "admin", 0x44, false);
    let expired = issue(&dir, &ours, "expired", "dave", "admin", 0x55, true);
    let revoked = issue(&dir, &ours, "revoked", "erin", "admin", 0x66, false);

    // Admin: everything goes through.
    assert_eq!(f.call(Some(&admin), Command::Ps).unwrap(), "ps done");
    assert_eq!(f.call(Some(&admin), exec()).unwrap(), "exec done", "negative control for the refusals below");
    assert_eq!(f.call(Some(&admin), Command::Poweroff).unwrap(), "poweroff done");
    // Read-only: the allowlist, nothing else.
    assert_eq!(f.call(Some(&reader), Command::Ps).unwrap(), "ps done");
    for command in [exec(), Command::Poweroff, Command::Stop { name: "web".into() }] {
        let err = f.call(Some(&reader), command.clone()).unwrap_err();
        assert!(err.contains("refused: the read-only role may not run"), "{command:?}: {err}");
    }
    let err = f.call(Some(&roleless), Command::Ps).unwrap_err();
    assert!(err.contains("no keel role"), "{err}");
    // Refused in the handshake: another CA, no certificate, expired, revoked.
    for (what, cert) in [("other CA", Some(&foreign)), ("no certificate", None), ("expired", Some(&expired)), ("revoked", Some(&revoked))] {
        let err = f.call(cert, Command::Ps).unwrap_err();
        assert!(err.contains("alert") || err.contains("tls") || err.contains("closed"), "{what}: {err}");
    }
    // Negative control for the deny list: remove the serial and the same certificate works.
    std::fs::write(f.dir.join("denied"), "# none\n").unwrap();
    assert_eq!(f.call(Some(&revoked), Command::Ps).unwrap(), "ps done");

    let audit = f.audit_lines();
    let find = |cn: &str, cmd: &str, result: &str| {
        audit.iter().any(|e| e["cn"].as_str() == Some(cn) && e["cmd"].as_str() == Some(cmd) && e["result"].as_str() == Some(result))
    };
    assert!(find("alice", "ps", "ok") && find("alice", "exec", "ok") && find("alice", "poweroff", "ok"), "{audit:#?}");
    assert!(find("bob", "ps", "ok") && find("bob", "exec", "refused") && find("bob", "poweroff", "refused"), "{audit:#?}");
    assert!(find("carol", "ps", "refused"), "{audit:#?}");
    assert!(find("mallory", "-", "refused") && find("dave", "-", "refused") && find("erin", "-", "refused"), "{audit:#?}");
    assert!(find("erin", "ps", "ok"), "{audit:#?}");
    let dave = audit.iter().find(|e| e["cn"] == "dave").unwrap();
    assert!(dave["detail"].as_str().unwrap().to_lowercase().contains("expired"), "{dave}");
    let erin = audit.iter().find(|e| e["cn"] == "erin").unwrap();
    assert!(erin["detail"].as_str().unwrap().to_lowercase().contains("revoked"), "{erin}");
    assert!(audit.iter().any(|e| e["cn"].is_null() && e["result"] == "refused"), "the connection without a certificate: {audit:#?}");
    assert_eq!(audit.iter().find(|e| e["cn"] == "alice").unwrap()["serial"], "11");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `curl` of https://localhost:PORT/PATH with the server's own certificate as the CA and
/// `cert` as the client certificate: (exit code, HTTP status or 0, body).
fn curl(f: &Fixture, cert: Option<&(PathBuf, PathBuf)>, path: &str) -> (i32, u16, String) {
    let mut command = std::process::Command::new("curl");
    command.args(["-sS", "--max-time", "10", "-w", "\n%{http_code}", "--cacert"]).arg(f.dir.join("server/server.pem"));
    if let Some((cert, key)) = cert {
        command.arg("--cert").arg(cert).arg("--key").arg(key);
    }
    let out = command.arg(format!("https://localhost:{}{path}", f.port)).output().expect("curl (scripts/install-deps.sh installs it)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", &text));
    (out.status.code().unwrap_or(-1), status.trim().parse().unwrap_or(0), body.to_string())
}

#[test]
fn metrics_over_https_for_allowed_roles_only() {
    let dir = std::env::temp_dir().join(format!("keel-api-metrics-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let ours = ca("keel test CA");
    let f = start(&dir, &ours);
    let admin = issue(&dir, &ours, "admin", "alice", "admin", 0x11, false);
    let reader = issue(&dir, &ours, "reader", "bob", "read-only", 0x22, false);
    let roleless = issue(&dir, &ours, "roleless", "carol", "ops", 0x33, false);
    for cert in [&admin, &reader] {
        let (code, status, body) = curl(&f, Some(cert), "/metrics");
        assert_eq!((code, status), (0, 200), "{body}");
        assert!(body.contains("keel_container_state{container=\"web\",state=\"running\"} 1\n"), "{body}");
        assert!(body.contains("keel_container_pids{container=\"web\"} 3\n"), "{body}");
    }
    assert_eq!(curl(&f, Some(&roleless), "/metrics").1, 403);
    assert_eq!(curl(&f, Some(&admin), "/other").1, 404);
    // Without a client certificate the handshake fails (the control above shows curl gets through with one).
    let (code, status, _) = curl(&f, None, "/metrics");
    assert!(code != 0 && status == 0, "curl without a certificate: exit {code}, status {status}");
    // The control protocol still works on the same port.
    assert_eq!(f.call(Some(&admin), Command::Ps).unwrap(), "ps done");
    let audit = f.audit_lines();
    let find = |cn: &str, result: &str| audit.iter().any(|e| e["cn"] == cn && e["cmd"] == "metrics" && e["result"] == result);
    assert!(find("alice", "ok") && find("bob", "ok") && find("carol", "refused"), "{audit:#?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn plain_metrics_port_serves_get_metrics_without_tls() {
    let dir = std::env::temp_dir().join(format!("keel-api-plain-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let ours = ca("keel test CA");
    let f = start(&dir, &ours);
    let control = dir.join("control.sock");
    let text = format!("client_ca = \"{}\"\nmetrics_listen = \"127.0.0.1:1\"\n", dir.join("ca.pem").display());
    let settings = config::parse(&text, "api.toml").unwrap();
    let (chain, key) = tls::ensure_server_key(&dir.join("server"), "keel-test").unwrap();
    let server = tls::server_config(tls::load_certs(&dir.join("ca.pem")).unwrap(), dir.join("denied"), chain, key).unwrap();
    let proxy = Arc::new(Proxy::new(server, control, AuditLog::open(&f.audit, 1 << 20), &settings));
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || crate::api::plain_metrics::serve(proxy, listener));
    let curl = |path: &str| {
        let out = std::process::Command::new("curl")
            .args(["-sS", "--max-time", "10", "-w", "\n%{http_code}", &format!("http://127.0.0.1:{port}{path}")])
            .output()
            .expect("curl");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, status) = text.rsplit_once('\n').map(|(b, s)| (b.to_string(), s.to_string())).unwrap_or_default();
        (status, body)
    };
    let (status, body) = curl("/metrics");
    assert_eq!(status, "200", "{body}");
    assert!(body.contains("keel_container_pids{container=\"web\"} 3\n"), "{body}");
    assert_eq!(curl("/").0, "404");
    // Not HTTP at all: a 400, and the port keeps serving.
    let mut raw = TcpStream::connect(("127.0.0.1", port)).unwrap();
    raw.write_all(b"{\"id\":1,\"cmd\":\"poweroff\"}\n").unwrap();
    let mut answer = String::new();
    let _ = raw.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}");
    assert_eq!(curl("/metrics").0, "200");
    let audit = f.audit_lines();
    assert!(audit.iter().any(|e| e["cmd"] == "metrics" && e["result"] == "ok" && e["detail"] == "plain port"), "{audit:#?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn streams_relay_frames_enforce_roles_and_audit_the_exit_code() {
    use keel_supervisor::stream::{ClientFrame, Decoder, ServerFrame};
    let dir = std::env::temp_dir().join(format!("keel-api-stream-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let ours = ca("keel test CA");
    let f = start(&dir, &ours);
    let admin = issue(&dir, &ours, "admin", "alice", "admin", 0x11, false);
    let reader = issue(&dir, &ours, "reader", "bob", "read-only", 0x22, false);
    let exec = Command::ExecStream { argv: vec!["cat".into()], container: Some("web".into()), tty: None, timeout_secs: None };
    let follow = Command::LogsFollow { name: "web".into(), tail: None };
    let mut input = ClientFrame::Stdin(vec![b'z'; 200_000]).encode();
    input.extend(ClientFrame::StdinEof.encode());

    let back = f.stream(&admin, exec.clone(), &input).unwrap();
    let frames = Decoder::<ServerFrame>::default().push(&back).unwrap();
    let echoed: usize = frames.iter().map(|fr| if let ServerFrame::Stdout(d) = fr { d.len() } else { 0 }).sum();
    assert_eq!(echoed, 200_000, "every byte through TLS, the proxy and back");
    assert_eq!(frames.last(), Some(&ServerFrame::Exit(7)));
    // Read-only: logs -f yes (control: the same relay), exec never.
    assert!(f.stream(&reader, follow, &ClientFrame::StdinEof.encode()).is_ok());
    let err = f.stream(&reader, exec.clone(), &input).unwrap_err();
    assert!(err.contains("refused: the read-only role may not run `exec_stream`"), "{err}");
    // A frame of an unknown type is cut off at the proxy: no exit code comes back.
    let back = f.stream(&admin, exec, &[0x7f, 0, 0, 0, 0]).unwrap();
    assert!(Decoder::<ServerFrame>::default().push(&back).unwrap().is_empty(), "{back:?}");

    // The last stream's end is audited just after its client saw the connection close.
    let find = |cn: &str, cmd: &str, detail: &str| {
        f.audit_lines().iter().any(|e| {
            e["cn"].as_str() == Some(cn) && e["cmd"].as_str() == Some(cmd) && e["detail"].as_str().is_some_and(|d| d.contains(detail))
        })
    };
    let waited = std::time::Instant::now();
    while !find("alice", "exec_stream", "unknown frame type 0x7f") && waited.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let audit = f.audit_lines();
    assert!(find("alice", "exec_stream", "exit code 7"), "{audit:#?}");
    assert!(find("bob", "logs_follow", "stream started"), "{audit:#?}");
    assert!(find("bob", "exec_stream", "refused"), "{audit:#?}");
    assert!(find("alice", "exec_stream", "unknown frame type 0x7f"), "{audit:#?}");
    let _ = std::fs::remove_dir_all(&dir);
}
