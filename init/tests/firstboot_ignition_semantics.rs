//! First boot applies what Ignition's rules accept with Ignition's meaning (issue 13):
//! `"source": ""` is no source (an empty file, which `overwrite` may write over an
//! existing one), `{"id": N, "name": ""}` is uid N, `"mode": -0` is mode 0, and an
//! `HTTP://` source (the scheme is case-insensitive) is fetched with its headers.
//! Each test has a negative control: the neighbouring config Ignition refuses is
//! refused, and writes nothing.

use keel_init::firstboot::run::{run, Fetcher, FirstbootStatus, Sources};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::PathBuf;

struct Root(PathBuf);

impl Root {
    fn new(name: &str) -> Root {
        let dir = std::env::temp_dir().join(format!("keel-ignition-semantics-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("etc")).unwrap();
        std::fs::write(dir.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").unwrap();
        std::fs::write(dir.join("etc/group"), "root:x:0:\n").unwrap();
        Root(dir)
    }

    fn apply(&self, config: &str) -> FirstbootStatus {
        let url = data_url(config);
        let sources = Sources { url: Some(&url), network: true, ..Default::default() };
        let mut fetcher = Fetcher::new(std::time::Duration::from_secs(5), std::thread::sleep);
        run(&self.0, &self.0.join("firstboot.done"), true, &sources, &mut fetcher)
    }
}

impl Drop for Root {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn data_url(text: &str) -> String {
    let encoded: String =
        text.bytes().map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") }).collect();
    format!("data:,{encoded}")
}

fn file_config(file: &str) -> String {
    format!(r#"{{"ignition":{{"version":"3.4.0"}},"storage":{{"files":[{file}]}}}}"#)
}

#[test]
fn an_empty_source_is_no_source_and_overwrite_empties_the_file() {
    let root = Root::new("empty-source");
    std::fs::write(root.0.join("etc/a"), "old").unwrap();
    // Negative control: a null source is no source at all, so overwrite is refused.
    let status = root.apply(&file_config(r#"{"path":"/etc/a","overwrite":true,"contents":{"source":null}}"#));
    assert!(status.failed(), "{status:?}");
    assert_eq!(std::fs::read_to_string(root.0.join("etc/a")).unwrap(), "old");
    let status = root.apply(&file_config(r#"{"path":"/etc/a","overwrite":true,"contents":{"source":""}}"#));
    assert!(!status.failed(), "{status:?}");
    assert_eq!(std::fs::read_to_string(root.0.join("etc/a")).unwrap(), "");
}

#[test]
fn id_with_an_empty_name_is_the_id_and_minus_zero_is_mode_zero() {
    let root = Root::new("owner");
    // Negative control: an id and a non-empty name together are refused.
    let status = root.apply(&file_config(r#"{"path":"/etc/a","user":{"id":4321,"name":"root"}}"#));
    assert!(status.failed(), "{status:?}");
    assert!(!root.0.join("etc/a").exists());
    let status = root.apply(&file_config(r#"{"path":"/etc/a","mode":-0,"user":{"id":4321,"name":""},"group":{"id":4322,"name":""}}"#));
    assert!(!status.failed(), "{status:?}");
    let meta = std::fs::metadata(root.0.join("etc/a")).unwrap();
    assert_eq!((meta.uid(), meta.gid(), meta.permissions().mode() & 0o7777), (4321, 4322, 0));
}

/// Serves one request: returns the request head and answers `body`.
fn serve_once(listener: TcpListener, body: &'static str) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut head = String::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap() == 0 || line == "\r\n" {
                break;
            }
            head.push_str(&line);
        }
        let mut stream = stream;
        write!(stream, "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len()).unwrap();
        let _ = reader.read(&mut [0; 1]);
        head
    })
}

#[test]
fn an_uppercase_http_source_is_fetched_with_its_headers() {
    let root = Root::new("http");
    // Negative control: headers on a data: source are refused.
    let status =
        root.apply(&file_config(r#"{"path":"/etc/a","contents":{"source":"data:,x","httpHeaders":[{"name":"X-Keel","value":"1"}]}}"#));
    assert!(status.failed(), "{status:?}");
    assert!(!root.0.join("etc/a").exists());
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = serve_once(listener, "fetched\n");
    let file = format!(
        r#"{{"path":"/etc/a","contents":{{"source":"HTTP://127.0.0.1:{port}/a","httpHeaders":[{{"name":"X-Keel","value":"yes"}}]}}}}"#
    );
    let status = root.apply(&file_config(&file));
    assert!(!status.failed(), "{status:?}");
    assert_eq!(std::fs::read_to_string(root.0.join("etc/a")).unwrap(), "fetched\n");
    let head = server.join().unwrap();
    assert!(head.starts_with("GET /a HTTP/1.1\r\n") && head.contains("X-Keel: yes\r\n"), "{head}");
}
