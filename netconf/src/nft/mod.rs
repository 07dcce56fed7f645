//! keel's firewall: the nftables table `inet keel`, built as nf_tables netlink messages
//! and replaced as one atomic batch per change. keel never touches any other table and
//! never runs `nft`.
//!
//! What the table holds for a [`FirewallState`] (as `nft list table inet keel` shows it),
//! and why each rule is there:
//!
//! - map `published` (`inet_proto . inet_service : ipv4_addr . inet_service`): one element
//!   per published port bound to every host address; map `published_host`
//!   (`ipv4_addr . inet_proto . inet_service : …`) for ports bound to one host address.
//! - set `allow` (`inet_proto . inet_service`): `[firewall] allow`; set `bridges` (`ifname`);
//!   set `metadata_bridges` (`ifname`): bridges of networks with `metadata = true`; sets
//!   `metadata_hosts` (`ipv4_addr`) and `metadata_hosts6` (`ipv6_addr`): the addresses of
//!   containers declared with `metadata_access = true`.
//! - chain `guard` (filter, prerouting, priority raw: before conntrack and DNAT, so it sees
//!   the address a packet was sent to and covers both input and forward):
//!   - `iif != "lo" ip daddr 127.0.0.0/8 drop`: CVE-2020-8558. The bridges of networks
//!     with a port published on 127.0.0.1 need `route_localnet` (see
//!     [`FirewallState::localnet_bridges`]); with it, the kernel would route a container's
//!     crafted frames for 127.0.0.1 to the host's loopback services and to the ports
//!     published on 127.0.0.1 only. Nothing legitimate arrives on another interface for
//!     127.0.0.0/8 before NAT (replies to the host's own 127.0.0.1 connections carry the
//!     bridge address until conntrack undoes the masquerade, after this chain).
//!   - `iifname @bridges iifname != @metadata_bridges ip daddr 169.254.169.254 ip saddr !=
//!     @metadata_hosts drop`, and the same for `ip6 daddr fd00:ec2::254`: containers do not
//!     reach the cloud metadata service (the machine's credentials) unless their network
//!     or their declaration allows it. The host itself is not filtered.
//! - chain `prerouting` (nat, dstnat) and `output` (nat, -100): `fib daddr type local` then
//!   DNAT through `published_host`, then through `published` — one rule each, not one per port.
//! - chain `postrouting` (nat, srcnat): per container subnet `ip saddr S oifname UPLINK
//!   masquerade` (or `oifname != @bridges` without an uplink), and the same per container
//!   IPv6 subnet (`ip6 saddr S oifname UPLINK masquerade`); per bridge a hairpin rule
//!   (`oifname B ip saddr S ct status dnat masquerade`); `ip saddr 127.0.0.0/8 ct status dnat
//!   masquerade` for the host reaching `127.0.0.1`-published ports.
//! - chain `forward` (filter, policy accept; every rule is family-agnostic, so IPv6 container
//!   subnets are filtered exactly like IPv4 ones): established/related accept;
//!   `iifname A oifname B drop` for every ordered pair of distinct bridges of which at least
//!   one is isolated; `iifname @bridges accept` (containers reach the outside and the
//!   networks they are not isolated from); `ct status dnat accept` (published ports);
//!   `oifname @bridges drop` (nothing else enters a container network: a neighbour on the
//!   uplink routing a container's address via the host gets nothing).
//! - chain `input` (filter, policy drop unless `input = "accept"`): established/related,
//!   `iif lo`, `ct status dnat`, ICMP and ICMPv6 (path MTU discovery, ping, IPv6 neighbour
//!   discovery) accept; `@allow` and DHCP replies to the client (`udp sport 67 udp dport 68`)
//!   accept only from the uplink (`iifname UPLINK`, or `iifname != @bridges` while no uplink
//!   is known), so containers do not reach the host's services through their bridge.
//!
//! The batch is: add table (create or keep), delete it, add it again, then chains, sets and
//! elements, then rules. The kernel applies all of it or none of it, and the same state
//! always gives the same ruleset.

mod rules;
mod ruleset;
mod wire;

use netlink_sys::{protocols::NETLINK_NETFILTER, Socket, SocketAddr};
use std::net::{Ipv4Addr, Ipv6Addr};

/// The only table keel owns (family `inet`).
pub const TABLE: &str = "keel";

/// A transport protocol of a published port or an allowed port: the one of the
/// network declaration.
pub use crate::config::Proto;

/// A container network's bridge, as the firewall sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeRule {
    /// Bridge interface name (at most 15 bytes).
    pub name: String,
    /// The network's IPv4 subnet: address and prefix length.
    pub subnet: (Ipv4Addr, u8),
    /// When true, nothing is forwarded between this bridge and any other bridge.
    pub isolated: bool,
    /// When true, every container on this bridge reaches the cloud metadata service.
    pub metadata: bool,
}

/// A port published on the host and forwarded to a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Published {
    /// TCP or UDP.
    pub proto: Proto,
    /// Only this host address (e.g. 127.0.0.1); `None` means every local address.
    pub host_ip: Option<Ipv4Addr>,
    /// The port on the host.
    pub host_port: u16,
    /// The container's address.
    pub dest: Ipv4Addr,
    /// The port in the container.
    pub dest_port: u16,
}

/// Everything the firewall depends on: plain data, built from the network declaration
/// and the running containers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FirewallState {
    /// Interface NAT leaves through; `None`: masquerade on any interface that is not a bridge.
    pub uplink: Option<String>,
    /// Subnets masqueraded when leaving through the uplink (not towards each other).
    pub container_subnets: Vec<(Ipv4Addr, u8)>,
    /// IPv6 subnets masqueraded when leaving through the uplink, like `container_subnets`
    /// (`ip6 saddr S oifname UPLINK masquerade`); empty: no IPv6 rules at all.
    pub container_subnets6: Vec<(Ipv6Addr, u8)>,
    /// The container bridges.
    pub bridges: Vec<BridgeRule>,
    /// Published ports.
    pub published: Vec<Published>,
    /// `[firewall] input = "drop"`: policy drop on the input chain.
    pub input_drop: bool,
    /// `[firewall] allow`: ports accepted on input from the uplink.
    pub allow: Vec<(Proto, u16)>,
    /// IPv4 addresses of containers allowed to reach the cloud metadata service
    /// (`metadata_access = true`) on a network that does not allow it as a whole.
    pub metadata_hosts: Vec<Ipv4Addr>,
    /// The IPv6 addresses of those containers.
    pub metadata_hosts6: Vec<Ipv6Addr>,
}

/// The cloud metadata service's IPv4 address (AWS, GCP, Azure, OpenStack…).
pub const METADATA_V4: Ipv4Addr = Ipv4Addr::new(169, 254, 169, 254);

/// The cloud metadata service's IPv6 address (AWS IMDS on Nitro).
pub const METADATA_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x0ec2, 0, 0, 0, 0, 0, 0x0254);

impl FirewallState {
    /// The bridges that need `net.ipv4.conf.BRIDGE.route_localnet = 1`: those with a
    /// container that has a port published on a loopback address. The host's packets to
    /// 127.0.0.1 are DNATed to the container and leave through its bridge with source
    /// 127.0.0.1 (the kernel refuses that without route_localnet on the output device), and
    /// the replies come back on it for 127.0.0.1. Every other interface, and `all`, keeps
    /// it off; the `guard` chain drops what a container sends to 127.0.0.0/8 anyway.
    pub fn localnet_bridges(&self) -> Vec<&str> {
        self.bridges
            .iter()
            .filter(|b| self.published.iter().any(|p| p.host_ip.is_some_and(|ip| ip.is_loopback()) && subnet_contains(b.subnet, p.dest)))
            .map(|b| b.name.as_str())
            .collect()
    }
}

/// Whether `addr` is in `subnet` (address and prefix length).
fn subnet_contains((net, prefix): (Ipv4Addr, u8), addr: Ipv4Addr) -> bool {
    let mask = u32::MAX.checked_shl(32 - u32::from(prefix.min(32))).unwrap_or(0);
    u32::from(net) & mask == u32::from(addr) & mask
}

/// Why the firewall could not be applied; every variant says which part failed.
#[derive(Debug, thiserror::Error)]
pub enum NftError {
    /// The state cannot be expressed (nothing was sent to the kernel).
    #[error("invalid firewall state: {field}: {reason}")]
    Invalid {
        /// Which field, e.g. `bridges[1].name`.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Opening or using the NETLINK_NETFILTER socket failed.
    #[error("{what}: netlink socket: {source}")]
    Socket {
        /// The step, e.g. `send batch for table inet keel`.
        what: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The kernel refused a message; the whole batch was rolled back.
    #[error("{what}: {source}")]
    Kernel {
        /// The message, e.g. `add rule forward #2 (iifname "a" oifname "b" drop)`.
        what: String,
        /// The errno the kernel answered with.
        source: std::io::Error,
    },
    /// The kernel's answer was not what a batch gets (undecodable or incomplete).
    #[error("batch for table inet keel: {0}")]
    BadReply(String),
}

/// Check what the kernel cannot be trusted to reject clearly: interface names and prefixes.
pub fn validate(state: &FirewallState) -> Result<(), NftError> {
    let invalid = |field: String, reason: String| Err(NftError::Invalid { field, reason });
    let check_name = |field: String, name: &str| {
        if name.is_empty() || name.len() > 15 {
            return invalid(field, format!("interface name {name:?} must be 1 to 15 bytes long"));
        }
        if name.bytes().any(|b| b == 0 || b == b'/' || b.is_ascii_whitespace()) {
            return invalid(field, format!("interface name {name:?} contains NUL, '/' or whitespace"));
        }
        Ok(())
    };
    let check_prefix_of = |field: String, prefix: u8, max: u8| {
        if prefix > max {
            return invalid(field, format!("prefix length {prefix} is more than {max}"));
        }
        Ok(())
    };
    let check_prefix = |field: String, prefix: u8| check_prefix_of(field, prefix, 32);
    if let Some(uplink) = &state.uplink {
        check_name("uplink".into(), uplink)?;
    }
    for (i, (_, prefix)) in state.container_subnets.iter().enumerate() {
        check_prefix(format!("container_subnets[{i}]"), *prefix)?;
    }
    for (i, (_, prefix)) in state.container_subnets6.iter().enumerate() {
        check_prefix_of(format!("container_subnets6[{i}]"), *prefix, 128)?;
    }
    for (i, bridge) in state.bridges.iter().enumerate() {
        check_name(format!("bridges[{i}].name"), &bridge.name)?;
        check_prefix(format!("bridges[{i}].subnet"), bridge.subnet.1)?;
    }
    Ok(())
}

/// The bytes of the batch that replaces table `inet keel` with the ruleset for `state`:
/// BATCH_BEGIN with sequence number `seq`, then one message per table/chain/set/rule step
/// (`seq + 1`, …, each asking for an ACK), then BATCH_END. Pure; see the module docs for
/// the ruleset. Names are not validated here: use [`validate`] (as [`apply`] does).
pub fn ruleset_batch(state: &FirewallState, seq: u32) -> Vec<u8> {
    ruleset::build(state, seq).bytes
}

/// Replace table `inet keel` with the ruleset for `state`, atomically, in the caller's
/// network namespace. Every message's ACK is checked; on error nothing changed and the
/// error names the message that failed (e.g. `add elements to published: File exists`).
pub fn apply(state: &FirewallState) -> Result<(), NftError> {
    validate(state)?;
    send(&ruleset::build(state, 1))
}

/// Delete table `inet keel` if it exists (and nothing else).
pub fn remove() -> Result<(), NftError> {
    send(&ruleset::build_remove(1))
}

/// `NLMSG_ERROR`: an ACK (error 0) or an error, with the sequence number it answers.
const NLMSG_ERROR: u16 = 2;

/// Send a batch and check the kernel's answer to each of its messages.
fn send(batch: &ruleset::Batch) -> Result<(), NftError> {
    let what = "send batch for table inet keel";
    let sock_err = |source| NftError::Socket { what: what.to_string(), source };
    let mut socket = Socket::new(NETLINK_NETFILTER).map_err(sock_err)?;
    socket.bind_auto().map_err(sock_err)?;
    socket.connect(&SocketAddr::new(0, 0)).map_err(sock_err)?;
    // Errors need not echo the whole request; room for one ACK per message.
    socket.set_cap_ack(true).map_err(sock_err)?;
    let _ = socket.set_rx_buf_sz(1usize << 20); // best effort: capped by net.core.rmem_max
    let sent = socket.send(&batch.bytes, 0).map_err(|e| {
        if e.raw_os_error() == Some(90) {
            // EMSGSIZE: larger than the socket's send buffer (net.core.wmem_default).
            NftError::Socket { what: format!("{what} ({} bytes)", batch.bytes.len()), source: e }
        } else {
            sock_err(e)
        }
    })?;
    if sent != batch.bytes.len() {
        return Err(NftError::BadReply(format!("sent {sent} of {} bytes", batch.bytes.len())));
    }
    // The kernel processes the batch inside sendmsg: every answer is queued by now, so
    // read without blocking (PID 1 must never hang on a lost reply).
    socket.set_non_blocking(true).map_err(sock_err)?;
    let mut answers: Vec<(u32, i32)> = Vec::new();
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        match socket.recv(&mut &mut buffer[..], 0) {
            Ok(len) => answers.extend(parse_answers(&buffer[..len])?),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) => return Err(sock_err(e)),
        }
    }
    verdict(batch, &answers)
}

/// `(sequence, error)` of every NLMSG_ERROR in a datagram.
pub(crate) fn parse_answers(datagram: &[u8]) -> Result<Vec<(u32, i32)>, NftError> {
    let mut answers = Vec::new();
    let mut offset = 0;
    while offset + 16 <= datagram.len() {
        let field = |at: usize, n: usize| &datagram[offset + at..offset + at + n];
        let len = u32::from_ne_bytes(field(0, 4).try_into().unwrap_or_default()) as usize;
        let kind = u16::from_ne_bytes(field(4, 2).try_into().unwrap_or_default());
        let seq = u32::from_ne_bytes(field(8, 4).try_into().unwrap_or_default());
        if len < 16 || offset + len > datagram.len() {
            return Err(NftError::BadReply(format!("truncated netlink message of length {len}")));
        }
        if kind == NLMSG_ERROR {
            if len < 20 {
                return Err(NftError::BadReply("short NLMSG_ERROR".into()));
            }
            answers.push((seq, i32::from_ne_bytes(field(16, 4).try_into().unwrap_or_default())));
        }
        offset += (len + 3) & !3;
    }
    Ok(answers)
}

/// The outcome of a batch from the kernel's answers: the first error in message order
/// (an error on BATCH_BEGIN's sequence means the batch as a whole, e.g. its commit, failed),
/// otherwise every message must have been acknowledged.
fn verdict(batch: &ruleset::Batch, answers: &[(u32, i32)]) -> Result<(), NftError> {
    let label = |seq: u32| {
        if seq == batch.begin_seq {
            return "commit batch for table inet keel".to_string();
        }
        let found = batch.messages.iter().find(|(s, _)| *s == seq);
        found.map_or_else(|| format!("unknown message (sequence {seq})"), |(_, what)| what.clone())
    };
    let first_error = answers.iter().filter(|(_, code)| *code != 0).min_by_key(|(seq, _)| seq.wrapping_sub(batch.begin_seq));
    if let Some((seq, code)) = first_error {
        return Err(NftError::Kernel { what: label(*seq), source: std::io::Error::from_raw_os_error(-code) });
    }
    let missing: Vec<&str> =
        batch.messages.iter().filter(|(seq, _)| !answers.iter().any(|(s, _)| s == seq)).map(|(_, what)| what.as_str()).collect();
    if !missing.is_empty() {
        return Err(NftError::BadReply(format!("no acknowledgement for: {}", missing.join("; "))));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
