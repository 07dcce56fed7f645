//! A throwaway CA and a small in-process http/https server, for tests: netconf's own,
//! first boot's, and the QEMU tests that serve configs and images to a guest. Not built
//! into keel (feature `testing`).

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A CA made for one test run.
pub struct TestCa {
    /// The CA certificate, PEM: what a client is told to trust.
    pub pem: String,
    cert: rcgen::Certificate,
    key: rcgen::KeyPair,
}

impl TestCa {
    /// A new CA called `name`.
    pub fn new(name: &str) -> TestCa {
        let key = rcgen::KeyPair::generate().expect("CA key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.distinguished_name.push(rcgen::DnType::CommonName, name);
        let cert = params.self_signed(&key).expect("CA certificate");
        TestCa { pem: cert.pem(), cert, key }
    }

    fn issue(&self, names: &[&str]) -> (rcgen::Certificate, rcgen::KeyPair) {
        let key = rcgen::KeyPair::generate().expect("server key");
        let params = rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).expect("server params");
        (params.signed_by(&key, &self.cert, &self.key).expect("server certificate"), key)
    }

    /// A server certificate for `names` and its private key, both PEM, for servers
    /// outside the test process (e.g. a registry).
    pub fn issue_pem(&self, names: &[&str]) -> (String, String) {
        let (cert, key) = self.issue(names);
        (cert.pem(), key.serialize_pem())
    }

    /// A server configuration with a certificate for `names` (host names or IP
    /// addresses) signed by this CA.
    pub fn server_config(&self, names: &[&str]) -> Arc<rustls::ServerConfig> {
        let (cert, key) = self.issue(names);
        let chain = vec![CertificateDer::from(cert.der().to_vec())];
        let key = PrivateKeyDer::try_from(key.serialize_der()).expect("server key DER");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .expect("server config");
        Arc::new(config)
    }
}

/// A request as the test server saw it.
#[derive(Debug, Clone)]
pub struct SeenRequest {
    /// The request line, e.g. `GET /x HTTP/1.1`.
    pub line: String,
    /// The header lines as sent (`Name: value`).
    pub headers: Vec<String>,
}

impl SeenRequest {
    /// The path of the request line.
    pub fn path(&self) -> &str {
        self.line.split(' ').nth(1).unwrap_or("")
    }

    /// The value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find_map(|h| {
            let (n, v) = h.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}

/// Builds the whole raw answer to a request.
pub type Handler = Box<dyn Fn(&SeenRequest) -> Vec<u8> + Send>;

/// A plain answer with a body.
pub fn answer(status: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len()).into_bytes();
    out.extend_from_slice(body);
    out
}

/// A server running on its own thread until dropped; it answers one request per
/// connection, in turn.
pub struct TestServer {
    /// The port it listens on.
    pub port: u16,
    seen: Arc<Mutex<Vec<SeenRequest>>>,
    stop: Arc<AtomicBool>,
}

impl TestServer {
    /// Serve on `bind` (e.g. `127.0.0.1:0`), over TLS when `tls` is given.
    pub fn start(bind: &str, tls: Option<Arc<rustls::ServerConfig>>, handler: Handler) -> TestServer {
        let listener = TcpListener::bind(bind).expect("bind test server");
        listener.set_nonblocking(true).expect("nonblocking listener");
        let port = listener.local_addr().expect("address").port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (seen_in, stop_in) = (seen.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop_in.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let _ = stream.set_nonblocking(false);
                        let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
                        serve_one(stream, tls.clone(), &handler, &seen_in);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        TestServer { port, seen, stop }
    }

    /// Every request answered so far.
    pub fn requests(&self) -> Vec<SeenRequest> {
        self.seen.lock().expect("seen").clone()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

type Seen = Arc<Mutex<Vec<SeenRequest>>>;

fn serve_one(stream: TcpStream, tls: Option<Arc<rustls::ServerConfig>>, handler: &Handler, seen: &Seen) {
    match tls {
        None => {
            exchange(stream, handler, seen);
        }
        Some(config) => {
            let Ok(conn) = rustls::ServerConnection::new(config) else { return };
            let mut tls = rustls::StreamOwned::new(conn, stream);
            if exchange(&mut tls, handler, seen).is_some() {
                tls.conn.send_close_notify();
                let _ = tls.flush();
            }
        }
    }
}

/// Read one request, record it (before answering, so a client that has its answer
/// finds it recorded), answer it.
fn exchange(mut stream: impl Read + Write, handler: &Handler, seen: &Seen) -> Option<()> {
    let mut reader = BufReader::new(&mut stream);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut headers = Vec::new();
    loop {
        let mut header = String::new();
        reader.read_line(&mut header).ok()?;
        let header = header.trim_end().to_string();
        if header.is_empty() {
            break;
        }
        headers.push(header);
    }
    let request = SeenRequest { line: line.trim_end().to_string(), headers };
    drop(reader);
    let answer = handler(&request);
    seen.lock().expect("seen").push(request);
    stream.write_all(&answer).ok()?;
    stream.flush().ok()
}
