//! A TLS connection as a full-duplex [`StreamIo`] for frames: keelctl's side of a stream
//! over `--host`, and the API process's relay of one. One thread drives it with poll(2)
//! on the TCP socket (rustls' `StreamOwned` would block a reader and a writer on each
//! other).

use keel_supervisor::control::StreamIo;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::ops::{Deref, DerefMut};
use std::os::fd::{AsFd, BorrowedFd};

/// A TLS connection (`C` a rustls client or server connection) over a non-blocking socket.
pub struct TlsIo<C> {
    conn: C,
    sock: TcpStream,
}

impl<C, S> TlsIo<C>
where
    C: Deref<Target = rustls::ConnectionCommon<S>> + DerefMut,
    S: rustls::SideData,
{
    /// Take over an established connection; its socket becomes non-blocking.
    pub fn new(conn: C, sock: TcpStream) -> std::io::Result<Self> {
        sock.set_nonblocking(true)?;
        Ok(TlsIo { conn, sock })
    }

    /// Write the TLS records waiting, waiting while the socket is full.
    fn flush_tls(&mut self) -> std::io::Result<()> {
        while self.conn.wants_write() {
            match self.conn.write_tls(&mut self.sock) {
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    let _ = poll(&mut [PollFd::new(self.sock.as_fd(), PollFlags::POLLOUT)], PollTimeout::NONE);
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Send close_notify (best effort).
    pub fn close(&mut self) {
        self.conn.send_close_notify();
        let _ = self.flush_tls();
    }
}

impl<C, S> StreamIo for TlsIo<C>
where
    C: Deref<Target = rustls::ConnectionCommon<S>> + DerefMut + Send,
    S: rustls::SideData,
{
    fn fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }

    fn read_some(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            match self.conn.reader().read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            match self.conn.read_tls(&mut self.sock) {
                Ok(0) => return Ok(0),
                Ok(_) => {
                    let processed = self.conn.process_new_packets();
                    // An alert to send (or a key update) goes out even on error.
                    self.flush_tls()?;
                    processed.map_err(std::io::Error::other)?;
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn send(&mut self, mut bytes: &[u8]) -> std::io::Result<()> {
        while !bytes.is_empty() {
            let n = self.conn.writer().write(bytes)?;
            bytes = &bytes[n..];
            self.flush_tls()?;
        }
        Ok(())
    }
}
