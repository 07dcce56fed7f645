//! A synchronous NETLINK_ROUTE socket: send one request, wait for its ACK or error.

use netlink_packet_core::{NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_REQUEST};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

/// Why a netlink request failed, naming what was being done.
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    /// Opening or using the socket failed.
    #[error("{what}: netlink socket: {source}")]
    Socket {
        /// The operation, e.g. `set link lo up`.
        what: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The kernel refused the request.
    #[error("{what}: kernel said: {source}")]
    Kernel {
        /// The operation.
        what: String,
        /// The errno the kernel answered with.
        source: std::io::Error,
    },
    /// The kernel's reply could not be decoded.
    #[error("{what}: undecodable netlink reply: {reason}")]
    BadReply {
        /// The operation.
        what: String,
        /// The decoder's message.
        reason: String,
    },
}

/// A route netlink socket bound to the kernel.
pub struct RouteSocket {
    socket: Socket,
    sequence: u32,
}

impl RouteSocket {
    /// Open and bind a NETLINK_ROUTE socket.
    pub fn open(what: &str) -> Result<Self, NetlinkError> {
        let sock_err = |source| NetlinkError::Socket { what: what.to_string(), source };
        let mut socket = Socket::new(NETLINK_ROUTE).map_err(sock_err)?;
        socket.bind_auto().map_err(sock_err)?;
        socket.connect(&SocketAddr::new(0, 0)).map_err(sock_err)?;
        Ok(RouteSocket { socket, sequence: 0 })
    }

    /// Send `message` as a request with ACK and wait for the kernel's verdict.
    pub fn request_ack(&mut self, message: RouteNetlinkMessage, what: &str) -> Result<(), NetlinkError> {
        self.sequence = self.sequence.wrapping_add(1);
        let bytes = encode_request(message, self.sequence);
        let sock_err = |source| NetlinkError::Socket { what: what.to_string(), source };
        self.socket.send(&bytes, 0).map_err(sock_err)?;
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            let len = self.socket.recv(&mut &mut buffer[..], 0).map_err(sock_err)?;
            if let Some(verdict) = ack_verdict(&buffer[..len], self.sequence, what)? {
                return verdict;
            }
        }
    }
}

/// The bytes of `message` as a netlink request asking for an acknowledgement.
pub fn encode_request(message: RouteNetlinkMessage, sequence: u32) -> Vec<u8> {
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_ACK;
    header.sequence_number = sequence;
    let mut packet = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(message));
    packet.finalize();
    let mut bytes = vec![0u8; packet.buffer_len()];
    packet.serialize(&mut bytes);
    bytes
}

/// Look through a datagram for the ACK of `sequence`: `None` when it is not there yet.
fn ack_verdict(
    datagram: &[u8],
    sequence: u32,
    what: &str,
) -> Result<Option<Result<(), NetlinkError>>, NetlinkError> {
    let mut offset = 0;
    while offset < datagram.len() {
        let reply = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&datagram[offset..])
            .map_err(|e| NetlinkError::BadReply { what: what.to_string(), reason: e.to_string() })?;
        let length = reply.header.length as usize;
        if reply.header.sequence_number == sequence {
            if let NetlinkPayload::Error(error) = reply.payload {
                return Ok(Some(match error.code {
                    None => Ok(()),
                    Some(code) => Err(NetlinkError::Kernel {
                        what: what.to_string(),
                        source: std::io::Error::from_raw_os_error(-code.get()),
                    }),
                }));
            }
        }
        if length == 0 {
            break;
        }
        offset += (length + 3) & !3;
    }
    Ok(None)
}
