//! The client against the in-process test server: plain http, https with a throwaway
//! CA, redirects, proxies and retries.

use super::testing::{answer, SeenRequest, TestCa, TestServer};
use super::*;
use std::net::TcpListener;

fn url(text: &str) -> Url {
    parse_url(text).unwrap()
}

fn no_wait(_: Duration) {
    panic!("no retry expected")
}

/// A server answering from a list, one answer per request, the last repeated.
fn scripted(tls: Option<Arc<rustls::ServerConfig>>, answers: Vec<Vec<u8>>) -> TestServer {
    let count = std::sync::atomic::AtomicUsize::new(0);
    TestServer::start(
        "127.0.0.1:0",
        tls,
        Box::new(move |_: &SeenRequest| {
            let i = count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            answers[i.min(answers.len() - 1)].clone()
        }),
    )
}

#[test]
fn backoff_doubles_from_100_ms_to_5_s() {
    let schedule: Vec<u64> = (0..10).map(|a| backoff(a).as_millis() as u64).collect();
    assert_eq!(schedule, [100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000, 5000]);
    assert_eq!(backoff(u32::MAX), Duration::from_secs(5));
}

#[test]
fn fetch_retries_server_errors_and_sends_headers() {
    let server = scripted(None, vec![answer("503 Busy", b""), answer("200 OK", b"hi")]);
    let mut waits = Vec::new();
    let got = Client::new()
        .fetch("GET", &url(&format!("http://127.0.0.1:{}/x", server.port)), "u", &[("X-Token", "t")], Duration::from_secs(10), &mut |d| {
            waits.push(d);
            std::thread::sleep(d)
        })
        .unwrap();
    assert!(matches!(got, Fetched::Found(r) if r.body == b"hi"));
    assert_eq!(waits, [Duration::from_millis(100)]);
    let seen = server.requests();
    assert_eq!(seen[1].line, "GET /x HTTP/1.1");
    assert_eq!(seen[1].header("host"), Some(format!("127.0.0.1:{}", server.port).as_str()));
    assert_eq!((seen[1].header("x-token"), seen[1].header("connection")), (Some("t"), Some("close")));
}

#[test]
fn fetch_reports_404_and_refusals() {
    let server = scripted(None, vec![answer("404 Not Found", b""), answer("403 Forbidden", b"")]);
    let u = url(&format!("http://127.0.0.1:{}/x", server.port));
    assert_eq!(Client::new().fetch("GET", &u, "u", &[], Duration::from_secs(5), &mut no_wait).unwrap(), Fetched::NotFound);
    let err = Client::new().fetch("PUT", &u, "the-url", &[], Duration::from_secs(5), &mut no_wait).unwrap_err();
    assert!(matches!(err.root(), HttpError::Status { status: 403, .. }), "{err:?}");
    assert_eq!(err.to_string(), "the-url: HTTP 403 Forbidden");
    assert_eq!(server.requests()[1].header("content-length"), Some("0"));
}

#[test]
fn fetch_gives_up_naming_the_url_and_cause() {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let u = url(&format!("http://127.0.0.1:{port}/x"));
    let err = Client::new().fetch("GET", &u, "http://here", &[], Duration::from_millis(300), &mut std::thread::sleep).unwrap_err();
    assert!(matches!(&err, HttpError::GaveUp { attempts, .. } if *attempts > 1), "{err:?}");
    assert!(matches!(err.root(), HttpError::Connect { .. }), "{err:?}");
    let err = err.to_string();
    assert!(err.contains("http://here") && err.contains("gave up") && err.contains("connect"), "{err}");
}

#[test]
fn https_with_a_configured_ca_works_by_name_and_by_address() {
    let ca = TestCa::new("keel test CA");
    let server = scripted(Some(ca.server_config(&["localhost", "127.0.0.1"])), vec![answer("200 OK", b"secret config")]);
    let mut client = Client::with_trust(TrustStore::empty());
    assert_eq!(client.add_ca_pem(ca.pem.as_bytes()).unwrap(), 1);
    for host in ["127.0.0.1", "localhost"] {
        let r = client.request("GET", &url(&format!("https://{host}:{}/c.ign", server.port)), &[], Duration::from_secs(5)).unwrap();
        assert_eq!((r.status, r.body.as_slice()), (200, &b"secret config"[..]));
    }
    assert_eq!(server.requests()[0].line, "GET /c.ign HTTP/1.1");
}

#[test]
fn https_refuses_unknown_cas_and_wrong_names_without_retrying() {
    let ca = TestCa::new("keel test CA");
    let server = scripted(Some(ca.server_config(&["other.example"])), vec![answer("200 OK", b"x")]);
    let u = url(&format!("https://127.0.0.1:{}/c.ign", server.port));
    let other = TestCa::new("another CA");
    let mut client = Client::with_trust(TrustStore::empty());
    client.add_ca_pem(other.pem.as_bytes()).unwrap();
    let err = client.fetch("GET", &u, "https://shown", &[], Duration::from_secs(5), &mut no_wait).unwrap_err();
    assert!(err.is_certificate_error() && matches!(err, HttpError::Fetch { .. }), "not retried: {err:?}");
    let err = err.to_string();
    assert!(err.contains("https://shown") && err.contains("not signed by a trusted CA"), "{err}");
    let mut client = Client::with_trust(TrustStore::empty());
    client.add_ca_pem(ca.pem.as_bytes()).unwrap();
    let err = client.fetch("GET", &u, "https://shown", &[], Duration::from_secs(5), &mut no_wait).unwrap_err().to_string();
    assert!(err.contains("issued for another name") && err.contains("other.example"), "{err}");
    let err = Client::with_trust(TrustStore::empty()).request("GET", &u, &[], Duration::from_secs(5)).unwrap_err();
    assert!(matches!(err.root(), HttpError::Tls(TlsError::NoTrustedCa { .. })), "{err:?}");
    assert!(server.requests().is_empty());
}

#[test]
fn bad_pem_is_refused() {
    let mut client = Client::new();
    assert!(matches!(client.add_ca_pem(b"hello"), Err(TlsError::NoCertificate)));
    let broken = "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n";
    assert!(client.add_ca_pem(broken.as_bytes()).is_err());
}

#[test]
fn redirects_are_followed_and_credentials_stay_on_their_host() {
    let ca = TestCa::new("keel test CA");
    let target = scripted(Some(ca.server_config(&["127.0.0.1"])), vec![answer("200 OK", b"blob")]);
    let location = format!("https://127.0.0.1:{}/storage/blob?sig=1", target.port);
    let origin =
        scripted(None, vec![format!("HTTP/1.1 307 Temporary Redirect\r\nLocation: {location}\r\nContent-Length: 0\r\n\r\n").into_bytes()]);
    let mut client = Client::with_trust(TrustStore::empty());
    client.add_ca_pem(ca.pem.as_bytes()).unwrap();
    let mut sink = Vec::new();
    let u = url(&format!("http://127.0.0.1:{}/v2/x/blobs/sha256:1", origin.port));
    let r = client.request_into("GET", &u, &[("Authorization", "Bearer t")], Duration::from_secs(5), &mut sink, 100).unwrap();
    assert_eq!((r.status, sink.as_slice()), (200, &b"blob"[..]));
    assert_eq!(origin.requests()[0].header("authorization"), Some("Bearer t"));
    let seen = target.requests();
    assert_eq!((seen[0].path(), seen[0].header("authorization")), ("/storage/blob?sig=1", None));
}

#[test]
fn redirect_loops_end() {
    let server = scripted(None, vec![b"HTTP/1.1 302 Found\r\nLocation: /again\r\nContent-Length: 0\r\n\r\n".to_vec()]);
    let err = Client::new().request("GET", &url(&format!("http://127.0.0.1:{}/", server.port)), &[], Duration::from_secs(5)).unwrap_err();
    assert!(matches!(err.root(), HttpError::TooManyRedirects { limit: MAX_REDIRECTS }), "{err:?}");
}

#[test]
fn http_goes_through_the_proxy_in_absolute_form() {
    let proxy = scripted(None, vec![answer("200 OK", b"via proxy")]);
    let mut client = Client::new();
    client.set_proxy(Proxy::new(Some(&format!("http://127.0.0.1:{}", proxy.port)), None, vec!["direct.example".into()]).unwrap());
    let r = client.request("GET", &url("http://config.example:8080/a.ign"), &[], Duration::from_secs(5)).unwrap();
    assert_eq!(r.body, b"via proxy");
    let seen = proxy.requests();
    assert_eq!(seen[0].line, "GET http://config.example:8080/a.ign HTTP/1.1");
    assert_eq!(seen[0].header("host"), Some("config.example:8080"));
}

#[test]
fn https_tunnels_through_the_proxy_with_connect() {
    let ca = TestCa::new("keel test CA");
    let origin = scripted(Some(ca.server_config(&["secure.example"])), vec![answer("200 OK", b"tunnelled")]);
    let origin_port = origin.port;
    // A CONNECT proxy that sends every tunnel to the origin server.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let proxy_port = listener.local_addr().unwrap().port();
    let proxy = std::thread::spawn(move || {
        let (client, _) = listener.accept().unwrap();
        let mut reader = BufReader::new(client.try_clone().unwrap());
        let mut line = String::new();
        std::io::BufRead::read_line(&mut reader, &mut line).unwrap();
        loop {
            let mut header = String::new();
            std::io::BufRead::read_line(&mut reader, &mut header).unwrap();
            if header.trim().is_empty() {
                break;
            }
        }
        let upstream = TcpStream::connect(("127.0.0.1", origin_port)).unwrap();
        (&client).write_all(b"HTTP/1.1 200 Connection established\r\n\r\n").unwrap();
        let (mut c_in, mut u_out) = (client.try_clone().unwrap(), upstream.try_clone().unwrap());
        let pump = std::thread::spawn(move || {
            let _ = std::io::copy(&mut c_in, &mut u_out);
        });
        let _ = std::io::copy(&mut &upstream, &mut &client);
        drop(pump);
        line
    });
    let mut client = Client::with_trust(TrustStore::empty());
    client.add_ca_pem(ca.pem.as_bytes()).unwrap();
    client.set_proxy(Proxy::new(None, Some(&format!("http://127.0.0.1:{proxy_port}")), vec![]).unwrap());
    let r = client.request("GET", &url(&format!("https://secure.example:{origin_port}/x")), &[], Duration::from_secs(5)).unwrap();
    assert_eq!(r.body, b"tunnelled");
    assert_eq!(proxy.join().unwrap().trim_end(), format!("CONNECT secure.example:{origin_port} HTTP/1.1"));
    assert_eq!(origin.requests()[0].header("host"), Some(format!("secure.example:{origin_port}").as_str()));
}

#[test]
fn a_refused_tunnel_is_reported() {
    let proxy = scripted(None, vec![answer("403 Forbidden", b"")]);
    let mut client = Client::new();
    client.set_proxy(Proxy::new(None, Some(&format!("http://127.0.0.1:{}", proxy.port)), vec![]).unwrap());
    let err = client.request("GET", &url("https://secure.example/x"), &[], Duration::from_secs(5)).unwrap_err();
    assert!(matches!(err.root(), HttpError::ProxyRefused { status: 403, .. }), "{err:?}");
    assert!(err.to_string().contains("refused the tunnel"), "{err}");
}

#[test]
fn a_server_that_never_answers_is_a_timeout() {
    // Connections land in the listener's backlog and are never answered.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let u = url(&format!("http://127.0.0.1:{}/x", listener.local_addr().unwrap().port()));
    let mut client = Client::new();
    client.set_read_timeout(Duration::from_millis(200));
    let err = client.request("GET", &u, &[], Duration::from_secs(5)).unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    assert!(matches!(err.root(), HttpError::Timeout { after, .. } if *after == Duration::from_millis(200)), "{err:?}");
    // Negative control: a server that answers is no timeout.
    let server = scripted(None, vec![answer("200 OK", b"x")]);
    let ok = client.request("GET", &url(&format!("http://127.0.0.1:{}/", server.port)), &[], Duration::from_secs(5));
    assert_eq!(ok.unwrap().status, 200);
}
