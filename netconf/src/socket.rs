//! A synchronous NETLINK_ROUTE socket: send one request and wait for its ACK or error,
//! send several at once (one datagram) and collect every ACK, or run a dump.

use netlink_packet_core::{NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST};
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

impl NetlinkError {
    /// The errno the kernel answered with, when the kernel refused the request.
    pub fn kernel_errno(&self) -> Option<i32> {
        match self {
            NetlinkError::Kernel { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }

    /// True when the kernel refused with EEXIST (the object is already there).
    pub fn is_exists(&self) -> bool {
        self.kernel_errno() == Some(EEXIST)
    }
}

/// errno EEXIST: the link, address or route is already there.
pub const EEXIST: i32 = 17;
/// errno ENODEV: no such network device.
pub const ENODEV: i32 = 19;
/// errno ESRCH: no such process (or no such route/address to delete).
pub const ESRCH: i32 = 3;
/// errno EADDRNOTAVAIL: the address to delete is not on the link.
pub const EADDRNOTAVAIL: i32 = 99;

/// One request of a batch: the message, the netlink flags besides
/// NLM_F_REQUEST | NLM_F_ACK (e.g. NLM_F_CREATE | NLM_F_EXCL), and the operation's name.
#[derive(Debug, Clone)]
pub struct Request {
    /// The message to send.
    pub message: RouteNetlinkMessage,
    /// Extra netlink header flags (NLM_F_REQUEST | NLM_F_ACK are always set).
    pub flags: u16,
    /// The operation, used in errors: e.g. `add address 10.88.0.1/16 to keel0`.
    pub what: String,
}

impl Request {
    /// A request with extra header `flags`, described by `what`.
    pub fn new(message: RouteNetlinkMessage, flags: u16, what: impl Into<String>) -> Self {
        Request { message, flags, what: what.into() }
    }
}

/// How many requests go into one datagram at most: keeps the ACKs well inside the
/// socket's receive buffer.
const BATCH_CHUNK: usize = 64;

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
        // Error replies carry only the refused request's header, not all of it.
        socket.set_cap_ack(true).map_err(sock_err)?;
        Ok(RouteSocket { socket, sequence: 0 })
    }

    /// Send `message` as a request with ACK and wait for the kernel's verdict.
    pub fn request_ack(&mut self, message: RouteNetlinkMessage, what: &str) -> Result<(), NetlinkError> {
        self.request_flags(message, 0, what)
    }

    /// Send `message` with the extra header `flags` (NLM_F_CREATE, NLM_F_EXCL,
    /// NLM_F_REPLACE…) besides NLM_F_REQUEST | NLM_F_ACK, and wait for the verdict.
    pub fn request_flags(&mut self, message: RouteNetlinkMessage, flags: u16, what: &str) -> Result<(), NetlinkError> {
        let mut verdicts = self.batch(vec![Request::new(message, flags, what)])?;
        verdicts.pop().unwrap_or(Ok(()))
    }

    /// Send every request (in datagrams of up to 64 messages, so a whole batch costs a
    /// few system calls) and collect the kernel's verdict on each, in order. The outer
    /// error is a socket failure; the inner ones are the kernel's refusals. The kernel
    /// handles the requests one after the other, so a refused request does not stop
    /// the ones after it.
    pub fn batch(&mut self, requests: Vec<Request>) -> Result<Vec<Result<(), NetlinkError>>, NetlinkError> {
        let mut verdicts = Vec::with_capacity(requests.len());
        let mut requests = requests.into_iter().peekable();
        let mut buffer = vec![0u8; 64 * 1024];
        while requests.peek().is_some() {
            let chunk: Vec<Request> = requests.by_ref().take(BATCH_CHUNK).collect();
            let first = self.sequence.wrapping_add(1);
            let mut bytes = Vec::new();
            let mut names = Vec::with_capacity(chunk.len());
            for request in chunk {
                self.sequence = self.sequence.wrapping_add(1);
                bytes.extend(encode_message(request.message, NLM_F_REQUEST | NLM_F_ACK | request.flags, self.sequence));
                names.push(request.what);
            }
            let sock_err = |source| NetlinkError::Socket { what: names[0].clone(), source };
            self.socket.send(&bytes, 0).map_err(sock_err)?;
            let mut pending: Vec<Option<Result<(), NetlinkError>>> = names.iter().map(|_| None).collect();
            let mut missing = pending.len();
            while missing > 0 {
                let len = self.socket.recv(&mut &mut buffer[..], 0).map_err(sock_err)?;
                for (sequence, code) in acks(&buffer[..len], &names[0])? {
                    let slot = sequence.wrapping_sub(first) as usize;
                    if slot < pending.len() && pending[slot].is_none() {
                        pending[slot] = Some(match code {
                            0 => Ok(()),
                            code => {
                                Err(NetlinkError::Kernel { what: names[slot].clone(), source: std::io::Error::from_raw_os_error(-code) })
                            }
                        });
                        missing -= 1;
                    }
                }
            }
            verdicts.extend(pending.into_iter().flatten());
        }
        Ok(verdicts)
    }

    /// Send `message` with NLM_F_REQUEST and `flags` (none, or NLM_F_DUMP) and gather
    /// every reply message until the kernel is done: one message for a plain
    /// RTM_GET*, all of them for a dump.
    pub fn query(&mut self, message: RouteNetlinkMessage, flags: u16, what: &str) -> Result<Vec<RouteNetlinkMessage>, NetlinkError> {
        self.sequence = self.sequence.wrapping_add(1);
        let sequence = self.sequence;
        let dump = flags & NLM_F_DUMP == NLM_F_DUMP;
        let bytes = encode_message(message, NLM_F_REQUEST | flags, sequence);
        let sock_err = |source| NetlinkError::Socket { what: what.to_string(), source };
        self.socket.send(&bytes, 0).map_err(sock_err)?;
        let mut buffer = vec![0u8; 64 * 1024];
        let mut replies = Vec::new();
        loop {
            let len = self.socket.recv(&mut &mut buffer[..], 0).map_err(sock_err)?;
            if read_replies(&buffer[..len], sequence, dump, what, &mut replies)? {
                return Ok(replies);
            }
        }
    }
}

/// Decode one datagram of answers to the query with `sequence`: the messages it
/// answers with are appended to `replies`; true when the query is done (its one
/// reply, NLMSG_DONE at the end of a `dump`, or an ACK), a kernel error when it was
/// refused. Messages of other sequence numbers are skipped. Pure, so the decoding of
/// kernel replies is tested (and fuzzed) on byte strings.
pub(crate) fn read_replies(
    datagram: &[u8],
    sequence: u32,
    dump: bool,
    what: &str,
    replies: &mut Vec<RouteNetlinkMessage>,
) -> Result<bool, NetlinkError> {
    let bad = |reason: String| NetlinkError::BadReply { what: what.to_string(), reason };
    let len = datagram.len();
    let mut offset = 0;
    while offset + 16 <= len {
        let rest = &datagram[offset..];
        let length = u32::from_ne_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        if length < 16 || length > rest.len() {
            return Err(bad(format!("message length {length} out of bounds")));
        }
        let reply = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&rest[..length]).map_err(|e| bad(e.to_string()))?;
        offset += (length + 3) & !3;
        if reply.header.sequence_number != sequence {
            continue;
        }
        match reply.payload {
            NetlinkPayload::InnerMessage(inner) => {
                replies.push(inner);
                if !dump {
                    return Ok(true);
                }
            }
            NetlinkPayload::Done(_) => return Ok(true),
            NetlinkPayload::Error(error) => {
                return match error.code {
                    None => Ok(true),
                    Some(code) => {
                        Err(NetlinkError::Kernel { what: what.to_string(), source: std::io::Error::from_raw_os_error(-code.get()) })
                    }
                }
            }
            _ => {}
        }
    }
    Ok(false)
}

/// The bytes of `message` as a netlink request asking for an acknowledgement.
pub fn encode_request(message: RouteNetlinkMessage, sequence: u32) -> Vec<u8> {
    encode_message(message, NLM_F_REQUEST | NLM_F_ACK, sequence)
}

/// The bytes of `message` with the netlink header `flags` and `sequence` (port 0).
pub fn encode_message(message: RouteNetlinkMessage, flags: u16, sequence: u32) -> Vec<u8> {
    let mut header = NetlinkHeader::default();
    header.flags = flags;
    header.sequence_number = sequence;
    let mut packet = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(message));
    packet.finalize();
    let mut bytes = vec![0u8; packet.buffer_len()];
    packet.serialize(&mut bytes);
    bytes
}

/// The (sequence, error code) of every NLMSG_ERROR (ACK when the code is 0) in a datagram.
/// Only the headers are read: an error message echoes the refused request, which
/// need not be decodable.
pub(crate) fn acks(datagram: &[u8], what: &str) -> Result<Vec<(u32, i32)>, NetlinkError> {
    const NLMSG_ERROR: u16 = 2;
    let bad = |reason: String| NetlinkError::BadReply { what: what.to_string(), reason };
    let mut found = Vec::new();
    let mut offset = 0;
    while offset + 16 <= datagram.len() {
        let rest = &datagram[offset..];
        let length = u32::from_ne_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        if length < 16 || length > rest.len() {
            return Err(bad(format!("message length {length} out of bounds")));
        }
        let kind = u16::from_ne_bytes([rest[4], rest[5]]);
        let sequence = u32::from_ne_bytes([rest[8], rest[9], rest[10], rest[11]]);
        if kind == NLMSG_ERROR {
            if length < 20 {
                return Err(bad("truncated NLMSG_ERROR".to_string()));
            }
            found.push((sequence, i32::from_ne_bytes([rest[16], rest[17], rest[18], rest[19]])));
        }
        offset += (length + 3) & !3;
    }
    Ok(found)
}

/// Bytes captured from iproute2 6.1 (`strace -e trace=sendmsg -e write=3` in a throwaway
/// netns, keel0 = index 2), written as hex, with the sequence number replaced by 1 so
/// they compare with keel's own messages.
#[cfg(test)]
pub(crate) fn ip_bytes(hex: &str) -> Vec<u8> {
    let mut bytes: Vec<u8> = hex.split_whitespace().map(|b| u8::from_str_radix(b, 16).expect("hex byte")).collect();
    bytes[8..12].copy_from_slice(&1u32.to_ne_bytes());
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acks_reads_every_error_message_of_a_datagram() {
        // Two NLMSG_ERROR replies (capped: code + the request's 16-byte header): an ACK
        // for sequence 7 and EEXIST for sequence 8.
        let mut datagram = Vec::new();
        for (sequence, code) in [(7u32, 0i32), (8, -EEXIST)] {
            datagram.extend(36u32.to_ne_bytes());
            datagram.extend(2u16.to_ne_bytes());
            datagram.extend(0x100u16.to_ne_bytes());
            datagram.extend(sequence.to_ne_bytes());
            datagram.extend(0u32.to_ne_bytes());
            datagram.extend(code.to_ne_bytes());
            datagram.extend([0u8; 16]);
        }
        assert_eq!(acks(&datagram, "test").unwrap(), vec![(7, 0), (8, -EEXIST)]);
        datagram[0] = 200;
        assert!(acks(&datagram, "test").is_err(), "a length past the end is refused");
    }
}
