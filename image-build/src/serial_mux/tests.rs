use super::*;
use keel_supervisor::stream::{Decoder, ServerFrame};

#[test]
fn ids_are_unique_on_the_wire_and_restored_for_each_client() {
    let mut demux = Demux::default();
    let a = demux.outgoing(1, r#"{"id":7,"cmd":"status"}"#).unwrap();
    let b = demux.outgoing(2, r#"{"id":7,"cmd":"ps"}"#).unwrap();
    let id = |line: &str| serde_json::from_str::<serde_json::Value>(line).unwrap()["id"].as_u64().unwrap();
    assert_ne!(id(&a), id(&b), "two clients' id 7 differ on the wire");
    let Some(Route::Line(client, text)) = demux.incoming(&format!(r#"{{"id":{},"ok":true}}"#, id(&b))) else { panic!() };
    assert_eq!((client, id(&text)), (2, 7));
    assert!(demux.incoming(&format!(r#"{{"id":{},"ok":true}}"#, id(&b))).is_none(), "answered once");
    demux.forget(1);
    assert!(demux.incoming(&format!(r#"{{"id":{},"ok":true}}"#, id(&a))).is_none(), "a gone client's answer is dropped");
    assert!(demux.outgoing(1, "not json").is_none());
}

#[test]
fn a_stream_starts_only_with_an_ok_answer_to_a_stream_request() {
    let mut demux = Demux::default();
    let wire = |line: &str| serde_json::from_str::<serde_json::Value>(line).unwrap()["id"].as_u64().unwrap();
    let exec = wire(&demux.outgoing(3, r#"{"id":1,"cmd":"exec_stream","argv":["sh"]}"#).unwrap());
    let refused = wire(&demux.outgoing(4, r#"{"id":1,"cmd":"exec_stream","argv":["sh"]}"#).unwrap());
    let plain = wire(&demux.outgoing(5, r#"{"id":1,"cmd":"status"}"#).unwrap());
    demux.incoming(&format!(r#"{{"id":{exec},"ok":true,"result":"stream"}}"#)).unwrap();
    demux.incoming(&format!(r#"{{"id":{refused},"ok":false,"error":"no"}}"#)).unwrap();
    // A status answer that happens to say "stream" starts nothing.
    demux.incoming(&format!(r#"{{"id":{plain},"ok":true,"result":"stream"}}"#)).unwrap();
    assert_eq!(demux.stream_of(3), Some(exec));
    assert_eq!((demux.stream_of(4), demux.stream_of(5)), (None, None));
    assert_eq!(demux.incoming(&PortLine::data(exec, b"hi")[0]), Some(Route::Data(3, b"hi".to_vec())));
    assert_eq!(demux.incoming(&PortLine::data(refused, b"hi")[0]), None, "no stream, nothing routed");
    assert_eq!(demux.incoming(&PortLine::end(exec)), Some(Route::End(3)));
    assert_eq!(demux.stream_of(3), None);
}

/// A stand-in guest: `status` is answered at once; `exec_stream` starts a stream that
/// echoes its bytes back; `logs_follow` starts one that floods its client.
fn fake_guest(qemu: &Path) -> std::sync::mpsc::Receiver<()> {
    let guest = UnixListener::bind(qemu).unwrap();
    let (flooded, flood_done) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let (stream, _) = guest.accept().unwrap();
        let out = Arc::new(Mutex::new(stream.try_clone().unwrap()));
        for line in BufReader::new(stream).lines() {
            let line = line.unwrap();
            if let Some(data) = PortLine::parse(&line) {
                if !data.end {
                    let echo: String = PortLine::data(data.id, &data.bytes().unwrap()).concat();
                    out.lock().unwrap().write_all(echo.as_bytes()).unwrap();
                }
                continue;
            }
            let v: serde_json::Value = serde_json::from_str(&line).unwrap();
            let id = v["id"].as_u64().unwrap();
            let started = matches!(v["cmd"].as_str(), Some("exec_stream" | "logs_follow"));
            let result = if started { STREAM_STARTED.to_string() } else { v["cmd"].as_str().unwrap().to_string() };
            let _ = writeln!(out.lock().unwrap(), r#"{{"id":{id},"ok":true,"result":"{result}"}}"#);
            if v["cmd"] == "logs_follow" {
                let out = out.clone();
                let flooded = flooded.clone();
                std::thread::spawn(move || {
                    let chunk = ServerFrame::Stdout(vec![b'l'; 30_000]).encode();
                    for _ in 0..2000 {
                        let line = PortLine::data(id, &chunk).concat();
                        if out.lock().unwrap().write_all(line.as_bytes()).is_err() {
                            return;
                        }
                    }
                    let _ = flooded.send(());
                });
            }
        }
    });
    flood_done
}

fn request(listen: &Path, line: &str) -> (UnixStream, String) {
    for _ in 0..200 {
        let stream = UnixStream::connect(listen).unwrap();
        (&stream).write_all(line.as_bytes()).unwrap();
        // Byte by byte: what follows the answer line (a stream's frames) stays unread.
        let mut answer = Vec::new();
        let mut byte = [0u8; 1];
        while (&stream).read(&mut byte).unwrap() == 1 && byte[0] != b'\n' {
            answer.push(byte[0]);
        }
        let answer = String::from_utf8(answer).unwrap();
        if !answer.contains("not connected") {
            return (stream, answer);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("the guest never connected");
}

#[test]
fn streams_are_channels_and_a_client_that_does_not_read_blocks_no_one() {
    let dir = std::env::temp_dir().join(format!("keel-mux-streams-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let qemu = dir.join("qemu.sock");
    let flood_done = fake_guest(&qemu);
    let listen = dir.join("control.sock");
    spawn(qemu, &listen).unwrap();

    // An exec stream: frames go out and come back on the client's own channel.
    let (echo, answer) = request(&listen, "{\"id\":4,\"cmd\":\"exec_stream\",\"argv\":[\"cat\"]}\n");
    assert_eq!(answer.trim(), r#"{"id":4,"ok":true,"result":"stream"}"#);
    let sent = ClientFrame::Stdin(vec![b'q'; 100_000]).encode();
    (&echo).write_all(&sent).unwrap();
    let mut back = vec![0u8; sent.len()];
    (&echo).read_exact(&mut back).unwrap();
    assert_eq!(back, sent);
    // A bad frame ends that client's stream at the multiplexer.
    (&echo).write_all(&[0x7f, 0, 0, 0, 0]).unwrap();
    let mut rest = Vec::new();
    let _ = (&echo).read_to_end(&mut rest);
    assert!(rest.is_empty());

    // A follower that never reads while the guest floods it.
    let (stalled, answer) = request(&listen, "{\"id\":5,\"cmd\":\"logs_follow\",\"name\":\"web\"}\n");
    assert!(answer.contains("stream"));
    let started = std::time::Instant::now();
    let mut slowest = Duration::ZERO;
    // Other clients are answered all along the flood.
    let mut i = 0;
    while flood_done.try_recv().is_err() {
        assert!(started.elapsed() < Duration::from_secs(120), "the flood never ended");
        i += 1;
        let asked = std::time::Instant::now();
        let (_, answer) = request(&listen, &format!("{{\"id\":{i},\"cmd\":\"status\"}}\n"));
        slowest = slowest.max(asked.elapsed());
        assert_eq!(answer.trim(), format!(r#"{{"id":{i},"ok":true,"result":"status"}}"#));
    }
    assert!(slowest < Duration::from_secs(1), "another client waited {slowest:?}");
    // The stalled client was cut off: what it can still read ends, bounded.
    stalled.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut got = Vec::new();
    (&stalled).read_to_end(&mut got).unwrap();
    let frames = Decoder::<ServerFrame>::default().push(&got[..got.len() - got.len() % 30_005]).unwrap();
    assert!(frames.len() < 2000, "disconnected before the end of the flood ({} frames)", frames.len());
    eprintln!(
        "stalled follower: {} frames delivered before the cut, other clients' slowest answer {slowest:?}, {:?}",
        frames.len(),
        started.elapsed()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_follower_that_reads_gets_the_whole_flood() {
    // Negative control of the disconnection above: the same flood, read, arrives whole.
    let dir = std::env::temp_dir().join(format!("keel-mux-reader-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let qemu = dir.join("qemu.sock");
    fake_guest(&qemu);
    let listen = dir.join("control.sock");
    spawn(qemu, &listen).unwrap();
    let (reader, answer) = request(&listen, "{\"id\":5,\"cmd\":\"logs_follow\",\"name\":\"web\"}\n");
    assert!(answer.contains("stream"));
    let mut decoder = Decoder::<ServerFrame>::default();
    let mut frames = 0;
    let mut buf = vec![0u8; 65536];
    while frames < 2000 {
        let n = (&reader).read(&mut buf).unwrap();
        assert!(n > 0, "closed after {frames} frames");
        frames += decoder.push(&buf[..n]).unwrap().len();
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn end_to_end_through_a_fake_guest() {
    let dir = std::env::temp_dir().join(format!("keel-mux-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let qemu = dir.join("qemu.sock");
    fake_guest(&qemu);
    let listen = dir.join("control.sock");
    spawn(qemu, &listen).unwrap();
    for round in 0..3 {
        let (_, answer) = request(&listen, &format!("{{\"id\":{round},\"cmd\":\"status\"}}\n"));
        assert_eq!(answer.trim(), format!(r#"{{"id":{round},"ok":true,"result":"status"}}"#));
    }
    let _ = std::fs::remove_dir_all(&dir);
}
