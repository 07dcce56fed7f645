use super::*;
use std::io::{Read, Write};

fn argv(words: &[&str]) -> Vec<String> {
    words.iter().map(|w| w.to_string()).collect()
}

/// What the client side of a stream saw: the answer line, stdout, stderr, the last frame.
#[derive(Debug, Default)]
struct Seen {
    answer: String,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    end: Option<ServerFrame>,
}

/// Read the answer line and the frames until the last one (or EOF).
fn read_stream(mut client: &UnixStream, until_stdout: Option<&str>) -> Seen {
    let mut seen = Seen::default();
    let mut bytes = Vec::new();
    let mut buf = [0u8; 4096];
    let mut decoder = Decoder::<ServerFrame>::default();
    loop {
        let n = client.read(&mut buf).unwrap();
        if n == 0 {
            return seen;
        }
        let mut chunk = &buf[..n];
        if seen.answer.is_empty() || !seen.answer.ends_with('\n') {
            bytes.extend_from_slice(chunk);
            let Some(end) = bytes.iter().position(|b| *b == b'\n') else { continue };
            seen.answer = String::from_utf8_lossy(&bytes[..=end]).into_owned();
            let rest = bytes.split_off(end + 1);
            bytes = rest;
            chunk = &bytes;
        }
        for frame in decoder.push(chunk).unwrap() {
            match frame {
                ServerFrame::Stdout(d) => seen.stdout.extend(d),
                ServerFrame::Stderr(d) => seen.stderr.extend(d),
                last => {
                    seen.end = Some(last);
                    return seen;
                }
            }
        }
        bytes.clear();
        if until_stdout.is_some_and(|want| String::from_utf8_lossy(&seen.stdout).contains(want)) {
            return seen;
        }
    }
}

fn run_exec(words: &[&str], tty: Option<TerminalSize>, timeout: Option<Duration>) -> (UnixStream, std::thread::JoinHandle<i32>) {
    let (ours, theirs) = UnixStream::pair().unwrap();
    theirs.set_nonblocking(true).unwrap();
    let argv = argv(words);
    let helper = std::thread::spawn(move || exec(9, &theirs, &argv, Target::Host, tty, timeout));
    (ours, helper)
}

#[test]
fn pipes_stream_stdin_and_keep_stdout_and_stderr_apart() {
    let (mut client, helper) = run_exec(&["sh", "-c", "wc -c; echo err >&2; exit 3"], None, None);
    let input = vec![b'x'; 1 << 20];
    client.write_all(&ClientFrame::Stdin(input).encode()).unwrap();
    client.write_all(&ClientFrame::StdinEof.encode()).unwrap();
    let seen = read_stream(&client, None);
    assert_eq!(seen.answer, Response::success(9, STREAM_STARTED).to_line());
    assert_eq!(String::from_utf8_lossy(&seen.stdout).trim(), "1048576");
    assert_eq!(seen.stderr, b"err\n");
    assert_eq!(seen.end, Some(ServerFrame::Exit(3)));
    assert_eq!(helper.join().unwrap(), 0);
}

#[test]
fn a_terminal_has_the_size_asked_follows_resizes_and_types_ctrl_c() {
    let size = TerminalSize { rows: 33, cols: 77 };
    let (mut client, helper) = run_exec(&["sh", "-c", "stty size; read x; stty size; echo got $x; sleep 30"], Some(size), None);
    let seen = read_stream(&client, Some("33 77"));
    assert!(seen.answer.contains("\"ok\":true"), "{seen:?}");
    client.write_all(&ClientFrame::Resize { rows: 40, cols: 100 }.encode()).unwrap();
    client.write_all(&ClientFrame::Stdin(b"hi\r".to_vec()).encode()).unwrap();
    let mut out = String::new();
    let mut decoder = Decoder::<ServerFrame>::default();
    let mut buf = [0u8; 4096];
    while !out.contains("got hi") {
        let n = client.read(&mut buf).unwrap();
        assert!(n > 0, "closed early: {out}");
        for frame in decoder.push(&buf[..n]).unwrap() {
            if let ServerFrame::Stdout(d) = frame {
                out.push_str(&String::from_utf8_lossy(&d));
            }
        }
    }
    assert!(out.contains("40 100"), "resize reached the terminal: {out:?}");
    // Ctrl-C typed on the terminal interrupts the foreground job (sleep, then sh).
    client.write_all(&ClientFrame::Stdin(vec![3]).encode()).unwrap();
    let end = loop {
        let n = client.read(&mut buf).unwrap();
        assert!(n > 0);
        if let Some(last) = decoder.push(&buf[..n]).unwrap().into_iter().find(|f| matches!(f, ServerFrame::Exit(_) | ServerFrame::Error(_)))
        {
            break last;
        }
    };
    assert_eq!(end, ServerFrame::Exit(130));
    assert_eq!(helper.join().unwrap(), 0);
}

#[test]
fn a_signal_frame_reaches_the_command() {
    let (mut client, helper) = run_exec(&["sleep", "30"], None, None);
    client.write_all(&ClientFrame::Signal(libc::SIGTERM).encode()).unwrap();
    let seen = read_stream(&client, None);
    assert_eq!(seen.end, Some(ServerFrame::Exit(128 + libc::SIGTERM)));
    helper.join().unwrap();
}

#[test]
fn a_bad_frame_ends_the_stream_and_the_command() {
    let (mut client, helper) = run_exec(&["sleep", "30"], None, None);
    let started = Instant::now();
    client.write_all(&[0x7f, 0, 0, 0, 0]).unwrap();
    let seen = read_stream(&client, None);
    assert!(matches!(&seen.end, Some(ServerFrame::Error(e)) if e.contains("unknown frame type 0x7f")), "{seen:?}");
    assert!(started.elapsed() < Duration::from_secs(10), "the command was killed, not waited for");
    helper.join().unwrap();
    // Control: a valid frame in its place leaves the command running until its end.
    let (mut client, helper) = run_exec(&["sh", "-c", "sleep 0.3; exit 5"], None, None);
    client.write_all(&ClientFrame::Resize { rows: 1, cols: 1 }.encode()).unwrap();
    assert_eq!(read_stream(&client, None).end, Some(ServerFrame::Exit(5)));
    helper.join().unwrap();
}

#[test]
fn the_deadline_kills_with_124_and_a_missing_program_is_refused_in_the_answer() {
    let (client, helper) = run_exec(&["sleep", "30"], None, Some(Duration::from_millis(300)));
    assert_eq!(read_stream(&client, None).end, Some(ServerFrame::Exit(TIMED_OUT)));
    helper.join().unwrap();
    let (client, helper) = run_exec(&["/no/such/program"], None, None);
    let seen = read_stream(&client, None);
    assert!(seen.answer.contains("\"ok\":false") && seen.answer.contains("/no/such/program"), "{seen:?}");
    helper.join().unwrap();
}

#[test]
fn a_client_that_goes_away_hangs_up_the_command() {
    let (client, helper) = run_exec(&["sleep", "30"], None, None);
    let mut line = [0u8; 64];
    let _ = (&client).read(&mut line).unwrap();
    let started = Instant::now();
    drop(client);
    helper.join().unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn output_larger_than_the_buffer_arrives_whole_to_a_slow_client() {
    // The command ends long before the client has read its output: all of it still
    // comes, then the exit code (the drain waits for the client, not a fixed time).
    let (client, helper) = run_exec(&["sh", "-c", "head -c 3000000 /dev/zero"], None, None);
    std::thread::sleep(Duration::from_millis(1500));
    let seen = read_stream(&client, None);
    assert_eq!(seen.stdout.len(), 3_000_000);
    assert_eq!(seen.end, Some(ServerFrame::Exit(0)));
    helper.join().unwrap();
}
