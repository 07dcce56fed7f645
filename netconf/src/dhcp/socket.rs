//! The DHCP executor: one non-blocking UDP socket on port 68 bound to the uplink, which
//! PID 1's poll loop watches, and a blocking [`acquire`] built on it for tests and tools.
//!
//! A UDP socket (not a packet socket) is enough on Linux: with SO_BINDTODEVICE and
//! SO_BROADCAST, a datagram to 255.255.255.255 leaves through the bound interface from
//! 0.0.0.0 even before the interface has an address, and the server's broadcast replies
//! (the client sets the BROADCAST flag until it has an address) arrive on port 68.

use std::ffi::OsString;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{self, sockopt, AddressFamily, SockFlag, SockProtocol, SockType, SockaddrIn};

use super::machine::{Action, Client, ClientConfig, Destination};
use super::packet::{CLIENT_PORT, SERVER_PORT};
use super::{Lease, Mac};

/// Why [`acquire`] got no lease.
#[derive(Debug, thiserror::Error)]
pub enum DhcpError {
    /// The client socket could not be set up.
    #[error("DHCP on {ifname}: opening the client socket: {source}")]
    Socket {
        /// The interface.
        ifname: String,
        /// The OS error.
        source: io::Error,
    },
    /// A message could not be sent (interface down or gone).
    #[error("DHCP on {ifname}: sending to {to:?}: {source}")]
    Send {
        /// The interface.
        ifname: String,
        /// The destination.
        to: Destination,
        /// The OS error.
        source: io::Error,
    },
    /// Waiting on the socket failed.
    #[error("DHCP on {ifname}: poll: {source}")]
    Poll {
        /// The interface.
        ifname: String,
        /// The OS error.
        source: io::Error,
    },
    /// No server granted a lease in time.
    #[error("DHCP on {ifname}: no lease within {timeout:?}")]
    Timeout {
        /// The interface.
        ifname: String,
        /// How long the client tried.
        timeout: Duration,
    },
}

/// A non-blocking, close-on-exec UDP socket on 0.0.0.0:68, bound to one interface.
#[derive(Debug)]
pub struct DhcpSocket {
    socket: UdpSocket,
    ifname: String,
}

impl DhcpSocket {
    /// Open the client socket on `ifname` (SO_BINDTODEVICE, SO_BROADCAST, SO_REUSEADDR).
    /// Errors name the interface and the step that failed.
    pub fn open(ifname: &str) -> io::Result<Self> {
        let step =
            |what: &str, errno: nix::Error| io::Error::new(io::Error::from(errno).kind(), format!("{ifname}: {what}: {}", errno.desc()));
        let flags = SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC;
        let fd = socket::socket(AddressFamily::Inet, SockType::Datagram, flags, SockProtocol::Udp).map_err(|e| step("socket", e))?;
        socket::setsockopt(&fd, sockopt::ReuseAddr, &true).map_err(|e| step("SO_REUSEADDR", e))?;
        socket::setsockopt(&fd, sockopt::Broadcast, &true).map_err(|e| step("SO_BROADCAST", e))?;
        socket::setsockopt(&fd, sockopt::BindToDevice, &OsString::from(ifname)).map_err(|e| step("SO_BINDTODEVICE", e))?;
        let any = SockaddrIn::from(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, CLIENT_PORT));
        socket::bind(fd.as_raw_fd(), &any).map_err(|e| step("bind 0.0.0.0:68", e))?;
        Ok(DhcpSocket { socket: UdpSocket::from(fd), ifname: ifname.to_string() })
    }

    /// The socket's descriptor, for poll(2): readable means [`DhcpSocket::recv`] has data.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.socket.as_fd()
    }

    /// The interface the socket is bound to.
    pub fn ifname(&self) -> &str {
        &self.ifname
    }

    /// Carry out an [`Action::Send`] (to UDP port 67); other actions are not the socket's
    /// business and succeed without doing anything.
    pub fn send(&self, action: &Action) -> io::Result<()> {
        let Action::Send { packet, to } = action else { return Ok(()) };
        self.socket.send_to(packet, destination_addr(*to)).map(|_| ())
    }

    /// The next datagram from a server port (67), or `None` when nothing (more) is queued.
    /// Never blocks. Receive errors also yield `None`: a UDP socket has none the client
    /// could act on, and the state machine's timers retransmit anyway.
    pub fn recv(&self) -> Option<Vec<u8>> {
        let mut buf = [0u8; 4096];
        loop {
            match self.socket.recv_from(&mut buf) {
                Ok((len, from)) if from.port() == SERVER_PORT => return Some(buf[..len].to_vec()),
                Ok(_) => continue,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return None,
            }
        }
    }
}

/// Block until a server on `ifname` grants a lease, at most `timeout`, with the RFC 2131
/// timing of [`ClientConfig::default`]. The interface must be up; its address is not
/// needed. The lease is not applied.
pub fn acquire(ifname: &str, mac: Mac, timeout: Duration) -> Result<Lease, DhcpError> {
    acquire_with(ifname, mac, timeout, ClientConfig::default())
}

/// [`acquire`] with explicit timing (e.g. a short retransmission base).
pub fn acquire_with(ifname: &str, mac: Mac, timeout: Duration, config: ClientConfig) -> Result<Lease, DhcpError> {
    let name = || ifname.to_string();
    let socket = DhcpSocket::open(ifname).map_err(|source| DhcpError::Socket { ifname: name(), source })?;
    let end = Instant::now() + timeout;
    let mut client = Client::with_config(mac, seed(&mac), config);
    let mut actions = client.on_start(Instant::now());
    loop {
        for action in actions.drain(..) {
            match action {
                Action::Bind(lease) | Action::Renewed(lease) => return Ok(lease),
                Action::Send { to, .. } => socket.send(&action).map_err(|source| DhcpError::Send { ifname: name(), to, source })?,
                Action::LeaseLost | Action::GaveUpForNow => {}
            }
        }
        let now = Instant::now();
        if now >= end {
            return Err(DhcpError::Timeout { ifname: name(), timeout });
        }
        let wake = client.next_deadline().map_or(end, |deadline| deadline.min(end));
        if wait_readable(socket.fd(), wake - now).map_err(|source| DhcpError::Poll { ifname: name(), source })? {
            while let Some(bytes) = socket.recv() {
                actions.extend(client.on_packet(&bytes, Instant::now()));
            }
        }
        actions.extend(client.on_timer(Instant::now()));
    }
}

/// Wait up to `timeout` (rounded up to whole milliseconds) for `fd` to be readable.
fn wait_readable(fd: BorrowedFd<'_>, timeout: Duration) -> io::Result<bool> {
    let millis = timeout.as_micros().div_ceil(1000);
    let timeout = PollTimeout::try_from(millis).unwrap_or(PollTimeout::MAX);
    let mut fds = [PollFd::new(fd, PollFlags::POLLIN)];
    match poll(&mut fds, timeout) {
        Ok(n) => Ok(n > 0),
        Err(nix::Error::EINTR) => Ok(false),
        Err(errno) => Err(errno.into()),
    }
}

/// A seed for transaction ids: differs per boot, process and interface (RFC 2131 §4.1
/// asks only that xids be hard to guess and unlikely to collide).
pub fn seed(mac: &Mac) -> u64 {
    let clock = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    let mac = mac.iter().fold(0u64, |acc, &b| acc << 8 | u64::from(b));
    clock ^ (u64::from(std::process::id()) << 48) ^ mac.rotate_left(17)
}

/// `SocketAddr` of the destination of a [`Destination`], for logs.
pub fn destination_addr(to: Destination) -> SocketAddr {
    let ip = match to {
        Destination::Broadcast => Ipv4Addr::BROADCAST,
        Destination::Unicast(server) => server,
    };
    SocketAddr::V4(SocketAddrV4::new(ip, SERVER_PORT))
}
