//! The plain metrics port: `GET /metrics` over HTTP without TLS on the address api.toml
//! names (`metrics_listen = "127.0.0.1:9100"`), for a scraper that cannot present a
//! client certificate. Off unless configured, and unauthenticated: bind it where only
//! the scraper reaches (loopback, or a management address); the input firewall opens its
//! port only when it is configured on an address other than loopback. Each scrape is
//! audited like the API's, without a name. Connections share the API's cap.

use super::audit::Outcome;
use super::http::{request_line, skip_headers, Answer, MAX_HEADER_LINE};
use super::proxy::Proxy;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

/// How long a client has to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Accept scrapes on `listener` forever, one thread each (within the API's connection cap).
pub fn serve(proxy: Arc<Proxy>, listener: TcpListener) {
    for stream in listener.incoming() {
        let Ok(tcp) = stream else {
            std::thread::sleep(Duration::from_millis(100));
            continue;
        };
        let proxy = proxy.clone();
        let spawned = std::thread::Builder::new().name("api-metrics".into()).spawn(move || {
            let peer = tcp.peer_addr().map(|a| a.to_string()).unwrap_or_else(|_| "?".into());
            match proxy.take_slot() {
                Some(_slot) => scrape(&proxy, tcp, &peer),
                None => proxy.audit_anonymous(&peer, "metrics", Outcome::Refused, Some("plain port: too many connections".into())),
            }
        });
        if let Err(e) = spawned {
            eprintln!("keel api: cannot start a metrics connection thread: {e}");
        }
    }
}

/// One plain HTTP request.
fn scrape(proxy: &Proxy, tcp: TcpStream, peer: &str) {
    let _ = tcp.set_read_timeout(Some(REQUEST_TIMEOUT));
    let _ = tcp.set_write_timeout(Some(REQUEST_TIMEOUT));
    let Ok(writer) = tcp.try_clone() else { return };
    let mut reader = BufReader::new(tcp);
    let mut line = Vec::new();
    let read = reader.by_ref().take(MAX_HEADER_LINE as u64).read_until(b'\n', &mut line);
    let text = String::from_utf8_lossy(&line);
    let answer = match (read, request_line(&text)) {
        (Ok(_), Some(request)) => {
            let headers_read = skip_headers(&mut reader);
            let answer = proxy.metrics_answer(&mut None, &request, headers_read, true);
            let detail = answer.detail(&request).unwrap_or_else(|| "plain port".into());
            proxy.audit_anonymous(peer, "metrics", answer.outcome, Some(detail));
            answer
        }
        _ => {
            proxy.audit_anonymous(peer, "-", Outcome::Error, Some("plain port: not an HTTP request".into()));
            Answer::text(400, "send GET /metrics HTTP/1.1", Outcome::Error)
        }
    };
    let mut writer = writer;
    let _ = writer.write_all(&answer.bytes());
    let _ = writer.flush();
}
