//! DHCPv4 messages as bytes (RFC 2131 §2 fixed header, RFC 2132 options): pure encoding of
//! what the client sends and strict decoding of what a server answers.
//!
//! Decoding never panics and never trusts a length: every malformed input is a
//! [`PacketError`] naming what was wrong.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use super::{Lease, Mac};

/// The UDP port DHCP servers listen on.
pub const SERVER_PORT: u16 = 67;
/// The UDP port DHCP clients listen on.
pub const CLIENT_PORT: u16 = 68;

/// RFC 2131 §3: the first four octets of the options field.
const MAGIC_COOKIE: [u8; 4] = [99, 130, 83, 99];
/// Size of the fixed BOOTP header before the magic cookie.
const HEADER_LEN: usize = 236;
/// Offset of the options field (after the cookie).
const OPTIONS_AT: usize = HEADER_LEN + 4;
/// RFC 1542 §3.2.1: relays may drop BOOTP messages shorter than 300 octets.
const MIN_MESSAGE_LEN: usize = 300;
const SNAME: std::ops::Range<usize> = 44..108;
const FILE: std::ops::Range<usize> = 108..236;
/// The parameter request list (option 55) keel sends.
const REQUESTED_PARAMETERS: [u8; 8] = [opt::SUBNET_MASK, opt::ROUTER, opt::DNS, opt::DOMAIN, opt::MTU, opt::LEASE_TIME, opt::T1, opt::T2];

/// RFC 2132 option codes keel uses.
mod opt {
    pub const PAD: u8 = 0;
    pub const SUBNET_MASK: u8 = 1;
    pub const ROUTER: u8 = 3;
    pub const DNS: u8 = 6;
    pub const DOMAIN: u8 = 15;
    pub const MTU: u8 = 26;
    pub const REQUESTED_IP: u8 = 50;
    pub const LEASE_TIME: u8 = 51;
    pub const OVERLOAD: u8 = 52;
    pub const MESSAGE_TYPE: u8 = 53;
    pub const SERVER_ID: u8 = 54;
    pub const PARAMETER_LIST: u8 = 55;
    pub const T1: u8 = 58;
    pub const T2: u8 = 59;
    pub const CLIENT_ID: u8 = 61;
    pub const END: u8 = 255;
}

/// DHCP message types (option 53, RFC 2132 §9.6).
mod kind {
    pub const DISCOVER: u8 = 1;
    pub const OFFER: u8 = 2;
    pub const REQUEST: u8 = 3;
    pub const ACK: u8 = 5;
    pub const NAK: u8 = 6;
    pub const RELEASE: u8 = 7;
}

/// Which RFC 2131 §4.3.2 flavour of DHCPREQUEST to build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    /// SELECTING: accept an offer; names the server and the offered address, broadcast flag set.
    Selecting {
        /// The offering server's identifier (option 54).
        server: Ipv4Addr,
        /// The offered address (option 50).
        requested: Ipv4Addr,
    },
    /// INIT-REBOOT: confirm a remembered address; no server id, broadcast flag set.
    InitReboot {
        /// The remembered address (option 50).
        requested: Ipv4Addr,
    },
    /// RENEWING: `ciaddr` set, sent unicast to the leasing server, no broadcast flag.
    Renewing {
        /// The address the client holds.
        ciaddr: Ipv4Addr,
    },
    /// REBINDING: `ciaddr` set, broadcast to any server, no broadcast flag.
    Rebinding {
        /// The address the client holds.
        ciaddr: Ipv4Addr,
    },
}

/// A decoded server answer addressed to this client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// DHCPOFFER with the lease on offer.
    Offer(Lease),
    /// DHCPACK with the lease granted.
    Ack(Lease),
    /// DHCPNAK: the client must stop using the address and restart.
    Nak {
        /// The server identifier, when the NAK carried one.
        server: Option<Ipv4Addr>,
    },
}

/// Why a received packet is not a usable answer for this client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    /// Shorter than the fixed header plus magic cookie.
    #[error("DHCP packet of {len} bytes is shorter than the 240-byte header")]
    TooShort {
        /// Length received.
        len: usize,
    },
    /// `op` is not BOOTREPLY.
    #[error("DHCP op {op} is not BOOTREPLY (2)")]
    NotAReply {
        /// The op byte.
        op: u8,
    },
    /// Hardware type/length are not Ethernet.
    #[error("DHCP hardware type {htype} length {hlen} is not Ethernet (1, 6)")]
    NotEthernet {
        /// `htype`.
        htype: u8,
        /// `hlen`.
        hlen: u8,
    },
    /// The transaction id belongs to another exchange.
    #[error("DHCP xid {got:#010x} is not ours ({expected:#010x})")]
    WrongXid {
        /// Ours.
        expected: u32,
        /// Received.
        got: u32,
    },
    /// The client hardware address is another client's.
    #[error("DHCP chaddr {got:02x?} is not our MAC {expected:02x?}")]
    WrongChaddr {
        /// Ours.
        expected: Mac,
        /// Received.
        got: Mac,
    },
    /// The options field does not start with 99.130.83.99.
    #[error("DHCP magic cookie {got:?} is not [99, 130, 83, 99]")]
    BadCookie {
        /// Received.
        got: [u8; 4],
    },
    /// An option's length byte or value runs past the end of its field.
    #[error("DHCP option {code} at byte {offset} of the {field} field runs past its end")]
    Truncated {
        /// Option code.
        code: u8,
        /// Offset of the option within the field.
        offset: usize,
        /// `options`, `file` or `sname`.
        field: &'static str,
    },
    /// A field holding options has no end option.
    #[error("DHCP {field} field has no end option (255)")]
    NoEnd {
        /// `options`, `file` or `sname`.
        field: &'static str,
    },
    /// Option 52 (overload) does not say 1, 2 or 3 in one byte.
    #[error("DHCP option overload (52) value {value:?} is not one byte of 1, 2 or 3")]
    BadOverload {
        /// The option's value.
        value: Vec<u8>,
    },
    /// An option has a length its meaning does not allow.
    #[error("DHCP option {code} has {len} bytes; expected {expected}")]
    BadOptionLength {
        /// Option code.
        code: u8,
        /// Its length.
        len: usize,
        /// What it should be.
        expected: &'static str,
    },
    /// A required option is absent.
    #[error("DHCP {message} without option {code} ({name})")]
    MissingOption {
        /// Option code.
        code: u8,
        /// Its name.
        name: &'static str,
        /// `OFFER`, `ACK` or `reply`.
        message: &'static str,
    },
    /// The message type is not one a client accepts.
    #[error("DHCP message type {0} is not OFFER (2), ACK (5) or NAK (6)")]
    UnexpectedType(u8),
    /// The subnet mask is not a run of ones followed by zeros.
    #[error("DHCP subnet mask {0} is not contiguous")]
    BadMask(Ipv4Addr),
    /// The interface MTU is below the IPv4 minimum.
    #[error("DHCP interface MTU {0} is below 68")]
    BadMtu(u16),
    /// `yiaddr` is not a usable host address.
    #[error("DHCP offered address {0} is not a unicast host address")]
    BadAddress(Ipv4Addr),
}

/// A DHCPDISCOVER (RFC 2131 §4.4.1): broadcast flag set, client id and parameter list.
pub fn discover(mac: &Mac, xid: u32, secs: u16) -> Vec<u8> {
    let mut p = header(mac, xid, secs, true, Ipv4Addr::UNSPECIFIED, kind::DISCOVER);
    push_client_options(&mut p, mac);
    finish(p)
}

/// A DHCPREQUEST of the given flavour (RFC 2131 §4.3.2 table 4).
pub fn request(mac: &Mac, xid: u32, secs: u16, flavour: RequestKind) -> Vec<u8> {
    let (broadcast, ciaddr) = match flavour {
        RequestKind::Selecting { .. } | RequestKind::InitReboot { .. } => (true, Ipv4Addr::UNSPECIFIED),
        RequestKind::Renewing { ciaddr } | RequestKind::Rebinding { ciaddr } => (false, ciaddr),
    };
    let mut p = header(mac, xid, secs, broadcast, ciaddr, kind::REQUEST);
    match flavour {
        RequestKind::Selecting { server, requested } => {
            push_option(&mut p, opt::REQUESTED_IP, &requested.octets());
            push_option(&mut p, opt::SERVER_ID, &server.octets());
        }
        RequestKind::InitReboot { requested } => push_option(&mut p, opt::REQUESTED_IP, &requested.octets()),
        RequestKind::Renewing { .. } | RequestKind::Rebinding { .. } => {}
    }
    push_client_options(&mut p, mac);
    finish(p)
}

/// A DHCPRELEASE (RFC 2131 §4.4.6): `ciaddr` = the leased address, unicast to its server.
pub fn release(mac: &Mac, xid: u32, address: Ipv4Addr, server: Ipv4Addr) -> Vec<u8> {
    let mut p = header(mac, xid, 0, false, address, kind::RELEASE);
    push_option(&mut p, opt::SERVER_ID, &server.octets());
    push_option(&mut p, opt::CLIENT_ID, &client_id(mac));
    finish(p)
}

/// The message type (option 53) of an encoded message, for tests and logs.
pub fn message_type(bytes: &[u8]) -> Option<u8> {
    let area = bytes.get(OPTIONS_AT..)?;
    collect_options(area, "options").ok()?.get(&opt::MESSAGE_TYPE)?.first().copied()
}

fn header(mac: &Mac, xid: u32, secs: u16, broadcast: bool, ciaddr: Ipv4Addr, message_type: u8) -> Vec<u8> {
    let mut p = vec![0u8; OPTIONS_AT];
    p[0] = 1; // BOOTREQUEST
    p[1] = 1; // htype Ethernet
    p[2] = 6; // hlen
    p[4..8].copy_from_slice(&xid.to_be_bytes());
    p[8..10].copy_from_slice(&secs.to_be_bytes());
    if broadcast {
        p[10] = 0x80;
    }
    p[12..16].copy_from_slice(&ciaddr.octets());
    p[28..34].copy_from_slice(mac);
    p[HEADER_LEN..OPTIONS_AT].copy_from_slice(&MAGIC_COOKIE);
    push_option(&mut p, opt::MESSAGE_TYPE, &[message_type]);
    p
}

fn client_id(mac: &Mac) -> [u8; 7] {
    let mut id = [1u8; 7]; // type 1 = Ethernet (RFC 2132 §9.14)
    id[1..].copy_from_slice(mac);
    id
}

fn push_client_options(p: &mut Vec<u8>, mac: &Mac) {
    push_option(p, opt::CLIENT_ID, &client_id(mac));
    push_option(p, opt::PARAMETER_LIST, &REQUESTED_PARAMETERS);
}

fn push_option(p: &mut Vec<u8>, code: u8, value: &[u8]) {
    // Every value keel sends is a handful of bytes, far below the 255-byte limit.
    debug_assert!(value.len() <= 255);
    p.push(code);
    p.push(value.len() as u8);
    p.extend_from_slice(value);
}

fn finish(mut p: Vec<u8>) -> Vec<u8> {
    p.push(opt::END);
    if p.len() < MIN_MESSAGE_LEN {
        p.resize(MIN_MESSAGE_LEN, opt::PAD);
    }
    p
}

/// Decode a server's answer and check it is meant for `(xid, mac)`.
pub fn decode(bytes: &[u8], xid: u32, mac: &Mac) -> Result<Reply, PacketError> {
    let options = check_header(bytes, xid, mac)?;
    let message = single_byte(&options, opt::MESSAGE_TYPE)?.ok_or(PacketError::MissingOption {
        code: opt::MESSAGE_TYPE,
        name: "message type",
        message: "reply",
    })?;
    match message {
        kind::OFFER => Ok(Reply::Offer(lease(bytes, &options, "OFFER")?)),
        kind::ACK => Ok(Reply::Ack(lease(bytes, &options, "ACK")?)),
        kind::NAK => Ok(Reply::Nak { server: address(&options, opt::SERVER_ID)? }),
        other => Err(PacketError::UnexpectedType(other)),
    }
}

/// Checks the fixed header and returns all options, overloaded fields included.
fn check_header(bytes: &[u8], xid: u32, mac: &Mac) -> Result<BTreeMap<u8, Vec<u8>>, PacketError> {
    if bytes.len() < OPTIONS_AT {
        return Err(PacketError::TooShort { len: bytes.len() });
    }
    if bytes[0] != 2 {
        return Err(PacketError::NotAReply { op: bytes[0] });
    }
    if bytes[1] != 1 || bytes[2] != 6 {
        return Err(PacketError::NotEthernet { htype: bytes[1], hlen: bytes[2] });
    }
    let got = u32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
    if got != xid {
        return Err(PacketError::WrongXid { expected: xid, got });
    }
    let chaddr: Mac = [bytes[28], bytes[29], bytes[30], bytes[31], bytes[32], bytes[33]];
    if &chaddr != mac {
        return Err(PacketError::WrongChaddr { expected: *mac, got: chaddr });
    }
    let cookie = [bytes[236], bytes[237], bytes[238], bytes[239]];
    if cookie != MAGIC_COOKIE {
        return Err(PacketError::BadCookie { got: cookie });
    }
    let mut options = collect_options(&bytes[OPTIONS_AT..], "options")?;
    // RFC 2131 §4.1 / RFC 3396: with option 52, `file` then `sname` carry more options.
    if let Some(value) = options.remove(&opt::OVERLOAD) {
        let overload = match value.as_slice() {
            [v @ 1..=3] => *v,
            _ => return Err(PacketError::BadOverload { value }),
        };
        let mut extra = Vec::new();
        if overload & 1 != 0 {
            extra.push(collect_options(&bytes[FILE], "file")?);
        }
        if overload & 2 != 0 {
            extra.push(collect_options(&bytes[SNAME], "sname")?);
        }
        for (code, value) in extra.into_iter().flatten() {
            options.entry(code).or_default().extend(value);
        }
    }
    Ok(options)
}

/// Splits one field into options; a repeated option is concatenated (RFC 3396).
fn collect_options(area: &[u8], field: &'static str) -> Result<BTreeMap<u8, Vec<u8>>, PacketError> {
    let mut options: BTreeMap<u8, Vec<u8>> = BTreeMap::new();
    let mut at = 0;
    while let Some(&code) = area.get(at) {
        match code {
            opt::PAD => at += 1,
            opt::END => return Ok(options),
            _ => {
                let truncated = PacketError::Truncated { code, offset: at, field };
                let len = usize::from(*area.get(at + 1).ok_or(truncated.clone())?);
                let value = area.get(at + 2..at + 2 + len).ok_or(truncated)?;
                options.entry(code).or_default().extend_from_slice(value);
                at += 2 + len;
            }
        }
    }
    Err(PacketError::NoEnd { field })
}

fn lease(bytes: &[u8], options: &BTreeMap<u8, Vec<u8>>, message: &'static str) -> Result<Lease, PacketError> {
    let missing = |code, name| PacketError::MissingOption { code, name, message };
    let yiaddr = Ipv4Addr::new(bytes[16], bytes[17], bytes[18], bytes[19]);
    if yiaddr.is_unspecified() || yiaddr.is_broadcast() || yiaddr.is_multicast() || yiaddr.is_loopback() {
        return Err(PacketError::BadAddress(yiaddr));
    }
    let siaddr = Ipv4Addr::new(bytes[20], bytes[21], bytes[22], bytes[23]);
    let mask = address(options, opt::SUBNET_MASK)?.ok_or(missing(opt::SUBNET_MASK, "subnet mask"))?;
    let prefix = u32::from(mask).leading_ones();
    if u32::from(mask).checked_shl(prefix).unwrap_or(0) != 0 {
        return Err(PacketError::BadMask(mask));
    }
    let server = match address(options, opt::SERVER_ID)? {
        Some(server) => server,
        None if !siaddr.is_unspecified() => siaddr,
        None => return Err(missing(opt::SERVER_ID, "server identifier")),
    };
    let lease_secs = seconds(options, opt::LEASE_TIME)?.ok_or(missing(opt::LEASE_TIME, "lease time"))?;
    let (t1_secs, t2_secs) = renewal_times(lease_secs, seconds(options, opt::T1)?, seconds(options, opt::T2)?);
    Ok(Lease {
        address: yiaddr,
        prefix: prefix as u8,
        router: addresses(options, opt::ROUTER)?.first().copied(),
        dns: addresses(options, opt::DNS)?,
        domain: options.get(&opt::DOMAIN).and_then(|v| domain(v)),
        mtu: mtu(options)?,
        server,
        lease_secs,
        t1_secs,
        t2_secs,
    })
}

/// T1/T2 from the server when they are ordered `T1 ≤ T2 ≤ lease`, else RFC 2131 §4.4.5
/// defaults: T1 = 0.5 × lease, T2 = 0.875 × lease.
fn renewal_times(lease: u32, t1: Option<u32>, t2: Option<u32>) -> (u32, u32) {
    let default_t2 = (u64::from(lease) * 7 / 8) as u32;
    let t2 = t2.filter(|&t2| t2 <= lease).unwrap_or(default_t2);
    let t1 = t1.filter(|&t1| t1 <= t2).unwrap_or((lease / 2).min(t2));
    (t1, t2)
}

fn single_byte(options: &BTreeMap<u8, Vec<u8>>, code: u8) -> Result<Option<u8>, PacketError> {
    match options.get(&code).map(Vec::as_slice) {
        None => Ok(None),
        Some([b]) => Ok(Some(*b)),
        Some(v) => Err(PacketError::BadOptionLength { code, len: v.len(), expected: "exactly 1" }),
    }
}

fn address(options: &BTreeMap<u8, Vec<u8>>, code: u8) -> Result<Option<Ipv4Addr>, PacketError> {
    match options.get(&code).map(Vec::as_slice) {
        None => Ok(None),
        Some(&[a, b, c, d]) => Ok(Some(Ipv4Addr::new(a, b, c, d))),
        Some(v) => Err(PacketError::BadOptionLength { code, len: v.len(), expected: "exactly 4" }),
    }
}

fn addresses(options: &BTreeMap<u8, Vec<u8>>, code: u8) -> Result<Vec<Ipv4Addr>, PacketError> {
    let Some(v) = options.get(&code) else { return Ok(Vec::new()) };
    if v.is_empty() || v.len() % 4 != 0 {
        return Err(PacketError::BadOptionLength { code, len: v.len(), expected: "a non-zero multiple of 4" });
    }
    Ok(v.chunks_exact(4).map(|c| Ipv4Addr::new(c[0], c[1], c[2], c[3])).collect())
}

fn seconds(options: &BTreeMap<u8, Vec<u8>>, code: u8) -> Result<Option<u32>, PacketError> {
    Ok(address(options, code)?.map(u32::from))
}

fn mtu(options: &BTreeMap<u8, Vec<u8>>) -> Result<Option<u16>, PacketError> {
    match options.get(&opt::MTU).map(Vec::as_slice) {
        None => Ok(None),
        Some(&[hi, lo]) if u16::from_be_bytes([hi, lo]) >= 68 => Ok(Some(u16::from_be_bytes([hi, lo]))),
        Some(&[hi, lo]) => Err(PacketError::BadMtu(u16::from_be_bytes([hi, lo]))),
        Some(v) => Err(PacketError::BadOptionLength { code: opt::MTU, len: v.len(), expected: "exactly 2" }),
    }
}

/// A domain is kept only when it is printable ASCII without spaces (so it cannot inject
/// lines into resolv.conf); trailing NULs, which some servers send, are dropped.
fn domain(value: &[u8]) -> Option<String> {
    let end = value.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    let value = &value[..end];
    let printable = !value.is_empty() && value.iter().all(|b| b.is_ascii_graphic());
    printable.then(|| String::from_utf8_lossy(value).into_owned())
}

#[cfg(test)]
#[path = "packet_tests.rs"]
mod tests;

/// Builds server replies for unit tests of this module and of the state machine.
#[cfg(test)]
#[path = "fake_server.rs"]
pub(crate) mod fake_server;
