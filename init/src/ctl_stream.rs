//! keelctl's side of streams: `exec -i/-t` (and exec with piped stdin) and `logs -f`.
//!
//! After the request's `ok` answer, one thread polls the connection, stdin and a
//! signalfd: stdin goes out as frames, frames coming in go to stdout and stderr, SIGWINCH
//! sends the terminal's new size and SIGINT, SIGTERM, SIGHUP, SIGQUIT are passed on to
//! the command. With `-t` the local terminal is in raw mode while the stream lasts (so
//! Ctrl-C is typed to the remote terminal), restored on every way out.

use keel_supervisor::control::{Client, Command, StreamIo, TerminalSize};
use keel_supervisor::stream::{ClientFrame, Decoder, ServerFrame, MAX_PAYLOAD};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg, Termios};
use std::io::{ErrorKind, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::time::Duration;

/// Signals keelctl passes on to the command (besides SIGWINCH, which becomes a resize).
const PASSED_ON: [Signal; 4] = [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP, Signal::SIGQUIT];

/// Why a stream failed on keelctl's side.
#[derive(Debug, thiserror::Error)]
pub enum StreamClientError {
    /// The request was refused, or the connection failed before the answer.
    #[error(transparent)]
    Start(#[from] keel_supervisor::control::ClientError),
    /// The connection failed during the stream.
    #[error("stream: {0}")]
    Io(#[from] std::io::Error),
    /// The connection ended without the command's exit code.
    #[error("stream: the connection closed before the command's exit code arrived")]
    Closed,
    /// The server sent frames that are not valid.
    #[error("stream: {0}")]
    Frame(#[from] keel_supervisor::stream::FrameError),
    /// The server ended the stream with an error.
    #[error("{0}")]
    Remote(String),
    /// The local terminal or signals could not be set up.
    #[error("terminal: {0}")]
    Terminal(nix::Error),
}

/// The terminal settings to put back when keelctl leaves raw mode.
struct RawMode {
    saved: Termios,
}

impl RawMode {
    fn enter(fd: BorrowedFd<'_>) -> Result<RawMode, nix::Error> {
        let saved = tcgetattr(fd)?;
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        tcsetattr(fd, SetArg::TCSADRAIN, &raw)?;
        Ok(RawMode { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = tcsetattr(std::io::stdin().as_fd(), SetArg::TCSADRAIN, &self.saved);
    }
}

/// The size of the terminal on `fd`, if it is one.
pub fn terminal_size(fd: BorrowedFd<'_>) -> Option<TerminalSize> {
    let mut size = libc::winsize { ws_row: 0, ws_col: 0, ws_xpixel: 0, ws_ypixel: 0 };
    #[allow(unsafe_code)]
    // SAFETY: TIOCGWINSZ writes one winsize into the pointer, which lives across the call.
    let ret = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCGWINSZ, &mut size) };
    (ret == 0 && size.ws_row > 0).then_some(TerminalSize { rows: size.ws_row, cols: size.ws_col })
}

/// Whether stdin is something to stream without `-i`: a pipe, a file or a socket (not a
/// terminal, /dev/null or nothing).
pub fn stdin_is_data() -> bool {
    nix::sys::stat::fstat(std::io::stdin().as_fd()).is_ok_and(|st| {
        let kind = st.st_mode & libc::S_IFMT;
        kind == libc::S_IFIFO || kind == libc::S_IFREG || kind == libc::S_IFSOCK
    })
}

/// `keelctl exec` with streams: returns the command's exit code. With `tty`, the local
/// terminal goes raw and its size travels with the request; with `send_stdin` false,
/// the command's stdin ends at once.
pub fn exec(
    client: Client,
    argv: Vec<String>,
    container: Option<String>,
    tty: bool,
    send_stdin: bool,
    timeout_secs: Option<u64>,
    wait: Duration,
) -> Result<i32, StreamClientError> {
    let stdin = std::io::stdin();
    let size = tty.then(|| terminal_size(stdin.as_fd()).or_else(|| terminal_size(std::io::stdout().as_fd()))).flatten();
    let tty_size = tty.then(|| size.unwrap_or(TerminalSize { rows: 24, cols: 80 }));
    let (mut io, early) = client.start_stream(Command::ExecStream { argv, container, tty: tty_size, timeout_secs }, wait)?;
    // From here on signals are passed on (before, Ctrl-C simply ends keelctl).
    let signals = block_signals().map_err(StreamClientError::Terminal)?;
    let _raw = if tty && nix::unistd::isatty(stdin.as_fd()).unwrap_or(false) {
        Some(RawMode::enter(stdin.as_fd()).map_err(StreamClientError::Terminal)?)
    } else {
        None
    };
    let mut decoder = Decoder::<ServerFrame>::default();
    if let Some(code) = deliver(decoder.push(&early)?)? {
        return Ok(code);
    }
    let mut stdin_open = send_stdin;
    if !send_stdin {
        io.send(&ClientFrame::StdinEof.encode())?;
    }
    let mut buf = vec![0u8; MAX_PAYLOAD];
    loop {
        let (io_ready, stdin_ready, signal_ready) = {
            let mut fds = vec![PollFd::new(io.fd(), PollFlags::POLLIN), PollFd::new(signals.as_fd(), PollFlags::POLLIN)];
            if stdin_open {
                fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLIN));
            }
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) | Err(nix::Error::EINTR) => {}
                Err(e) => return Err(StreamClientError::Io(e.into())),
            }
            let ready = |i: usize| fds.get(i).and_then(PollFd::revents).is_some_and(|r| !r.is_empty());
            (ready(0), ready(2), ready(1))
        };
        if io_ready {
            if let Some(code) = read_frames(io.as_mut(), &mut decoder, &mut buf)? {
                return Ok(code);
            }
        }
        if stdin_ready {
            match nix::unistd::read(stdin.as_fd(), &mut buf) {
                Ok(0) | Err(nix::Error::EIO) => {
                    stdin_open = false;
                    io.send(&ClientFrame::StdinEof.encode())?;
                }
                Ok(n) => io.send(&ClientFrame::Stdin(buf[..n].to_vec()).encode())?,
                Err(nix::Error::EINTR | nix::Error::EAGAIN) => {}
                Err(e) => return Err(StreamClientError::Io(e.into())),
            }
        }
        if signal_ready {
            while let Ok(Some(info)) = signals.read_signal() {
                let frame = match Signal::try_from(info.ssi_signo as i32) {
                    Ok(Signal::SIGWINCH) => terminal_size(stdin.as_fd()).map(|s| ClientFrame::Resize { rows: s.rows, cols: s.cols }),
                    Ok(signal) => Some(ClientFrame::Signal(signal as i32)),
                    Err(_) => None,
                };
                if let Some(frame) = frame {
                    io.send(&frame.encode())?;
                }
            }
        }
    }
}

/// `keelctl logs -f`: print the records pushed until the connection ends (or Ctrl-C).
pub fn follow_logs(client: Client, name: String, tail: Option<usize>, wait: Duration) -> Result<i32, StreamClientError> {
    let (mut io, early) = client.start_stream(Command::LogsFollow { name, tail }, wait)?;
    let mut decoder = Decoder::<ServerFrame>::default();
    if let Some(code) = deliver(decoder.push(&early)?)? {
        return Ok(code);
    }
    let mut buf = vec![0u8; MAX_PAYLOAD];
    loop {
        let mut fds = [PollFd::new(io.fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) | Err(nix::Error::EINTR) => {}
            Err(e) => return Err(StreamClientError::Io(e.into())),
        }
        match read_frames(io.as_mut(), &mut decoder, &mut buf) {
            Ok(Some(code)) => return Ok(code),
            Ok(None) => {}
            // The server ends a follow by closing.
            Err(StreamClientError::Closed) => return Ok(0),
            Err(e) => return Err(e),
        }
    }
}

fn block_signals() -> Result<SignalFd, nix::Error> {
    let mut set = SigSet::empty();
    set.add(Signal::SIGWINCH);
    PASSED_ON.iter().for_each(|s| set.add(*s));
    set.thread_block()?;
    SignalFd::with_flags(&set, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
}

/// Read what the connection has; deliver its frames. `Some(code)` at the end.
fn read_frames(io: &mut dyn StreamIo, decoder: &mut Decoder<ServerFrame>, buf: &mut [u8]) -> Result<Option<i32>, StreamClientError> {
    loop {
        match io.read_some(buf) {
            Ok(0) => return Err(StreamClientError::Closed),
            Ok(n) => {
                if let Some(code) = deliver(decoder.push(&buf[..n])?)? {
                    return Ok(Some(code));
                }
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(None),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if e.kind() == ErrorKind::UnexpectedEof => return Err(StreamClientError::Closed),
            Err(e) => return Err(e.into()),
        }
    }
}

/// Write frames' data to stdout and stderr; `Some(code)` for the exit frame.
fn deliver(frames: Vec<ServerFrame>) -> Result<Option<i32>, StreamClientError> {
    for frame in frames {
        match frame {
            ServerFrame::Stdout(data) => {
                let mut out = std::io::stdout().lock();
                out.write_all(&data)?;
                out.flush()?;
            }
            ServerFrame::Stderr(data) => {
                let mut err = std::io::stderr().lock();
                err.write_all(&data)?;
                err.flush()?;
            }
            ServerFrame::Exit(code) => return Ok(Some(code)),
            ServerFrame::Error(message) => return Err(StreamClientError::Remote(message)),
        }
    }
    Ok(None)
}
