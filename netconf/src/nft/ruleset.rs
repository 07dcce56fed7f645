//! From a [`FirewallState`] to the messages of one nf_tables batch (pure, no I/O).
//!
//! The batch always has the same shape, so that applying the same state twice gives the
//! same ruleset: create-or-keep table, delete it, create it again, then the six base
//! chains, the seven named sets/maps with their elements, and the rules.

use super::wire::{self, base, ct, meta, Expr, Writer};
use super::{FirewallState, Proto, METADATA_V4, METADATA_V6, TABLE};
use std::net::{Ipv4Addr, Ipv6Addr};

/// Set ids: referenced by `NFTA_SET_ID` in the same batch (the names also work).
const ID_PUBLISHED: u32 = 1;
const ID_PUBLISHED_HOST: u32 = 2;
const ID_ALLOW: u32 = 3;
const ID_BRIDGES: u32 = 4;
const ID_METADATA_BRIDGES: u32 = 5;
const ID_METADATA_HOSTS: u32 = 6;
const ID_METADATA_HOSTS6: u32 = 7;

/// Set user data as nft 1.0.6 writes it (byte order and typeof hints that only
/// `nft list` reads), so that `nft list table inet keel` prints the declared types.
const UDATA_PUBLISHED: &[u8] = &[
    0x00, 0x04, 0, 0, 0, 0, 0x01, 0x04, 0, 0, 0, 0, 0x03, 0x08, 0x00, 0x04, 0x0d, 0, 0, 0, 0x01,
    0x00, 0x04, 0x08, 0x00, 0x04, 0x0d, 0, 0, 0, 0x01, 0x00, 0x06, 0x04, 0, 0, 0, 0,
];
const UDATA_ALLOW: &[u8] = &[
    0x00, 0x04, 0, 0, 0, 0, 0x03, 0x08, 0x00, 0x04, 0x0d, 0, 0, 0, 0x01, 0x00,
];
const UDATA_BRIDGES: &[u8] = &[0x00, 0x04, 0x01, 0, 0, 0];
/// Key byte order big endian (addresses).
const UDATA_ADDRESSES: &[u8] = &[0x00, 0x04, 0x02, 0, 0, 0];

/// Largest `NFTA_SET_ELEM_LIST_ELEMENTS` payload before elements go to a new message
/// (attribute lengths are 16 bits).
const MAX_ELEMENTS_BYTES: usize = 60_000;

/// A built batch: its bytes and, for every message the kernel acknowledges, what it does.
pub struct Batch {
    /// The datagram: BATCH_BEGIN, the nf_tables messages, BATCH_END.
    pub bytes: Vec<u8>,
    /// Sequence number of BATCH_BEGIN (errors of the batch as a whole come back on it).
    pub begin_seq: u32,
    /// `(sequence number, description)` of each acknowledged message, in order.
    pub messages: Vec<(u32, String)>,
}

/// Builds a batch message by message, numbering and labelling them.
struct Builder {
    w: Writer,
    seq: u32,
    begin_seq: u32,
    messages: Vec<(u32, String)>,
}

const NFT_FLAGS: u16 = wire::F_REQUEST | wire::F_ACK;

impl Builder {
    fn new(seq: u32) -> Self {
        let mut w = Writer::default();
        let m = w.begin_message(
            wire::MSG_BATCH_BEGIN,
            wire::F_REQUEST,
            seq,
            0,
            wire::SUBSYS_NFTABLES,
        );
        w.end_message(m);
        Builder {
            w,
            seq: seq.wrapping_add(1),
            begin_seq: seq,
            messages: Vec::new(),
        }
    }

    /// Start an nf_tables message described by `what`.
    fn message(&mut self, msg: u16, flags: u16, what: String) -> usize {
        let seq = self.seq;
        self.seq = self.seq.wrapping_add(1);
        self.messages.push((seq, what));
        self.w.begin_message(
            (wire::SUBSYS_NFTABLES << 8) | msg,
            NFT_FLAGS | flags,
            seq,
            wire::NFPROTO_INET,
            0,
        )
    }

    fn finish(mut self) -> Batch {
        let m = self.w.begin_message(
            wire::MSG_BATCH_END,
            wire::F_REQUEST,
            self.seq,
            0,
            wire::SUBSYS_NFTABLES,
        );
        self.w.end_message(m);
        Batch {
            bytes: self.w.into_bytes(),
            begin_seq: self.begin_seq,
            messages: self.messages,
        }
    }

    fn new_table(&mut self) {
        let m = self.message(wire::MSG_NEWTABLE, 0, format!("add table inet {TABLE}"));
        self.w.str(1, TABLE); // NFTA_TABLE_NAME
        self.w.u32(2, 0); // NFTA_TABLE_FLAGS
        self.w.end_message(m);
    }

    fn del_table(&mut self) {
        let m = self.message(wire::MSG_DELTABLE, 0, format!("delete table inet {TABLE}"));
        self.w.str(1, TABLE);
        self.w.end_message(m);
    }

    fn chain(&mut self, chain: &BaseChain) {
        let m = self.message(
            wire::MSG_NEWCHAIN,
            wire::F_CREATE,
            format!("add chain {}", chain.name),
        );
        self.w.str(1, TABLE); // NFTA_CHAIN_TABLE
        self.w.str(3, chain.name); // NFTA_CHAIN_NAME
        self.w.str(7, chain.kind); // NFTA_CHAIN_TYPE
        self.w.u32(
            5,
            if chain.accept {
                wire::VERDICT_ACCEPT
            } else {
                wire::VERDICT_DROP
            },
        ); // NFTA_CHAIN_POLICY
        let hook = self.w.begin_nest(4); // NFTA_CHAIN_HOOK
        self.w.u32(1, chain.hook); // NFTA_HOOK_HOOKNUM
        self.w.u32(2, chain.priority as u32); // NFTA_HOOK_PRIORITY
        self.w.end_nest(hook);
        self.w.end_message(m);
    }

    fn set(&mut self, set: &NamedSet) {
        let m = self.message(
            wire::MSG_NEWSET,
            wire::F_CREATE,
            format!("add set {}", set.name),
        );
        self.w.str(1, TABLE); // NFTA_SET_TABLE
        self.w.str(2, set.name); // NFTA_SET_NAME
        self.w.u32(3, if set.data.is_some() { 8 } else { 0 }); // NFTA_SET_FLAGS: NFT_SET_MAP
        self.w.u32(4, set.key_type); // NFTA_SET_KEY_TYPE
        self.w.u32(5, set.key_len); // NFTA_SET_KEY_LEN
        if let Some((data_type, data_len)) = set.data {
            self.w.u32(6, data_type); // NFTA_SET_DATA_TYPE
            self.w.u32(7, data_len); // NFTA_SET_DATA_LEN
        }
        self.w.u32(10, set.id); // NFTA_SET_ID
        self.w.attr(13, set.udata); // NFTA_SET_USERDATA
        self.w.end_message(m);
        let mut remaining = &set.elements[..];
        while !remaining.is_empty() {
            let m = self.message(
                wire::MSG_NEWSETELEM,
                wire::F_CREATE,
                format!("add elements to {}", set.name),
            );
            self.w.str(1, TABLE); // NFTA_SET_ELEM_LIST_TABLE
            self.w.str(2, set.name); // NFTA_SET_ELEM_LIST_SET
            self.w.u32(4, set.id); // NFTA_SET_ELEM_LIST_SET_ID
            let list = self.w.begin_nest(3); // NFTA_SET_ELEM_LIST_ELEMENTS
            let mut index = 0u16;
            while let Some(((key, data), rest)) = remaining.split_first() {
                if self.w.len() - list > MAX_ELEMENTS_BYTES {
                    break;
                }
                // libnftnl numbers the element nests 1, 2, …; the kernel ignores the type.
                index = index.wrapping_add(1);
                let elem = self.w.begin_nest(index);
                self.w.data_value(1, key); // NFTA_SET_ELEM_KEY
                if let Some(data) = data {
                    self.w.data_value(2, data); // NFTA_SET_ELEM_DATA
                }
                self.w.end_nest(elem);
                remaining = rest;
            }
            self.w.end_nest(list);
            self.w.end_message(m);
        }
    }

    fn rule(&mut self, rule: &Rule, index: usize) {
        let what = format!("add rule {} #{index} ({})", rule.chain, rule.text);
        let m = self.message(wire::MSG_NEWRULE, wire::F_CREATE | wire::F_APPEND, what);
        self.w.str(1, TABLE); // NFTA_RULE_TABLE
        self.w.str(2, rule.chain); // NFTA_RULE_CHAIN
        let list = self.w.begin_nest(4); // NFTA_RULE_EXPRESSIONS
        for expr in &rule.exprs {
            expr.write(&mut self.w);
        }
        self.w.end_nest(list);
        self.w.end_message(m);
    }
}

struct BaseChain {
    name: &'static str,
    kind: &'static str,
    hook: u32,
    priority: i32,
    accept: bool,
}

type Element = (Vec<u8>, Option<Vec<u8>>);

struct NamedSet {
    name: &'static str,
    id: u32,
    key_type: u32,
    key_len: u32,
    data: Option<(u32, u32)>,
    udata: &'static [u8],
    elements: Vec<Element>,
}

/// One rule: its chain, how `nft list` shows it, and its expressions.
pub struct Rule {
    /// Chain name.
    pub chain: &'static str,
    /// The rule in nft syntax (for error messages and docs).
    pub text: String,
    /// The expressions, in order.
    pub exprs: Vec<Expr>,
}

/// `NFT_DATATYPE` ids nft uses for keys and data (concatenations shift by 6 bits each).
const TYPE_IPADDR: u32 = 7;
const TYPE_IP6ADDR: u32 = 8;
const TYPE_INET_PROTOCOL: u32 = 12;
const TYPE_INET_SERVICE: u32 = 13;
const TYPE_IFNAME: u32 = 41;

fn proto_number(proto: Proto) -> u8 {
    match proto {
        Proto::Tcp => 6,
        Proto::Udp => 17,
    }
}

/// An interface name as the 16-byte value `meta iifname`/`oifname` loads.
fn ifname(name: &str) -> Vec<u8> {
    let mut bytes = name.as_bytes().to_vec();
    bytes.resize(bytes.len().max(16), 0);
    bytes
}

/// `proto . port` as two 32-bit registers: the protocol byte, then the port in network order.
fn proto_port(proto: Proto, port: u16) -> Vec<u8> {
    let mut key = vec![proto_number(proto), 0, 0, 0];
    key.extend_from_slice(&port.to_be_bytes());
    key.extend_from_slice(&[0, 0]);
    key
}

fn addr_port(addr: Ipv4Addr, port: u16) -> Vec<u8> {
    let mut data = addr.octets().to_vec();
    data.extend_from_slice(&port.to_be_bytes());
    data.extend_from_slice(&[0, 0]);
    data
}

fn nfproto_ipv4() -> [Expr; 2] {
    [
        Expr::Meta {
            key: meta::NFPROTO,
            dreg: wire::REG_1,
        },
        Expr::Cmp {
            sreg: wire::REG_1,
            neq: false,
            data: vec![wire::NFPROTO_IPV4],
        },
    ]
}

/// Offsets of the source and destination addresses in the IPv4 and IPv6 headers.
const IP_SADDR: u32 = 12;
const IP_DADDR: u32 = 16;
const IP6_SADDR: u32 = 8;
const IP6_DADDR: u32 = 24;

/// `ip saddr ADDR/PREFIX`, encoded the way nft does: whole bytes are compared directly,
/// other prefixes load 4 bytes and mask them.
fn ip_saddr(addr: Ipv4Addr, prefix: u8) -> Vec<Expr> {
    let mut exprs = nfproto_ipv4().to_vec();
    exprs.extend(prefix_match(IP_SADDR, &addr.octets(), prefix));
    exprs
}

fn nfproto_ipv6() -> [Expr; 2] {
    [
        Expr::Meta {
            key: meta::NFPROTO,
            dreg: wire::REG_1,
        },
        Expr::Cmp {
            sreg: wire::REG_1,
            neq: false,
            data: vec![wire::NFPROTO_IPV6],
        },
    ]
}

/// `ip6 saddr ADDR/PREFIX`, encoded like [`ip_saddr`] (source address at offset 8 of
/// the IPv6 header; other prefixes load all 16 bytes and mask them).
fn ip6_saddr(addr: Ipv6Addr, prefix: u8) -> Vec<Expr> {
    let mut exprs = nfproto_ipv6().to_vec();
    exprs.extend(prefix_match(IP6_SADDR, &addr.octets(), prefix));
    exprs
}

/// The address field at `offset` of the network header is not in the set `set`
/// (`ip saddr != @set`; the protocol check comes before, from the rule's other match).
fn addr_not_in(offset: u32, len: u32, set: &str, set_id: u32) -> [Expr; 2] {
    [
        Expr::Payload {
            dreg: wire::REG_1,
            base: base::NETWORK,
            offset,
            len,
        },
        Expr::Lookup {
            sreg: wire::REG_1,
            dreg: None,
            set: set.into(),
            set_id,
            inverted: true,
        },
    ]
}

/// `iifname @set` (or `iifname != @set`).
fn ifname_in(key: u32, set: &str, set_id: u32, inverted: bool) -> [Expr; 2] {
    [
        Expr::Meta {
            key,
            dreg: wire::REG_1,
        },
        Expr::Lookup {
            sreg: wire::REG_1,
            dreg: None,
            set: set.into(),
            set_id,
            inverted,
        },
    ]
}

/// The network-header field at `offset` (an address of `octets.len()` bytes) matches
/// `octets/prefix`: whole bytes compared directly, other prefixes loaded whole and masked.
fn prefix_match(offset: u32, octets: &[u8], prefix: u8) -> Vec<Expr> {
    let mut exprs = Vec::new();
    if prefix > 0 && prefix.is_multiple_of(8) {
        let len = usize::from(prefix / 8).min(octets.len());
        exprs.push(Expr::Payload {
            dreg: wire::REG_1,
            base: base::NETWORK,
            offset,
            len: len as u32,
        });
        exprs.push(Expr::Cmp {
            sreg: wire::REG_1,
            neq: false,
            data: octets[..len].to_vec(),
        });
    } else {
        let mask: Vec<u8> = (0..octets.len())
            .map(|i| {
                let bits = u32::from(prefix).saturating_sub(8 * i as u32).min(8);
                0xffu8.checked_shl(8 - bits).unwrap_or(0)
            })
            .collect();
        let network: Vec<u8> = octets.iter().zip(&mask).map(|(a, m)| a & m).collect();
        exprs.push(Expr::Payload {
            dreg: wire::REG_1,
            base: base::NETWORK,
            offset,
            len: octets.len() as u32,
        });
        exprs.push(Expr::Bitwise {
            reg: wire::REG_1,
            mask,
        });
        exprs.push(Expr::Cmp {
            sreg: wire::REG_1,
            neq: false,
            data: network,
        });
    }
    exprs
}

fn ifname_is(key: u32, name: &str) -> [Expr; 2] {
    [
        Expr::Meta {
            key,
            dreg: wire::REG_1,
        },
        Expr::Cmp {
            sreg: wire::REG_1,
            neq: false,
            data: ifname(name),
        },
    ]
}

/// `ct KEY & BITS != 0`, as nft encodes `ct state established,related` or `ct status dnat`.
fn ct_any(key: u32, bits: u32) -> [Expr; 3] {
    [
        Expr::Ct {
            key,
            dreg: wire::REG_1,
        },
        Expr::Bitwise {
            reg: wire::REG_1,
            mask: bits.to_ne_bytes().to_vec(),
        },
        Expr::Cmp {
            sreg: wire::REG_1,
            neq: true,
            data: vec![0; 4],
        },
    ]
}

fn fib_daddr_local() -> [Expr; 2] {
    [
        Expr::FibDaddrType { dreg: wire::REG_1 },
        Expr::Cmp {
            sreg: wire::REG_1,
            neq: false,
            data: 2u32.to_ne_bytes().to_vec(),
        }, // RTN_LOCAL
    ]
}

fn l4proto(dreg: u32) -> Expr {
    Expr::Meta {
        key: meta::L4PROTO,
        dreg,
    }
}

fn th_dport(dreg: u32) -> Expr {
    Expr::Payload {
        dreg,
        base: base::TRANSPORT,
        offset: 2,
        len: 2,
    }
}

/// The two DNAT rules shared by prerouting and output.
fn dnat_rules(chain: &'static str) -> [Rule; 2] {
    let mut host = fib_daddr_local().to_vec();
    host.extend(nfproto_ipv4());
    host.extend([
        Expr::Payload {
            dreg: wire::REG_1,
            base: base::NETWORK,
            offset: 16,
            len: 4,
        },
        l4proto(wire::REG32_01),
        th_dport(wire::REG32_02),
        Expr::Lookup {
            sreg: wire::REG_1,
            dreg: Some(wire::REG_1),
            set: "published_host".into(),
            set_id: ID_PUBLISHED_HOST,
            inverted: false,
        },
        Expr::DnatIp {
            addr_reg: wire::REG_1,
            proto_reg: wire::REG32_01,
        },
    ]);
    let mut any = fib_daddr_local().to_vec();
    any.extend([
        l4proto(wire::REG_1),
        th_dport(wire::REG32_01),
        Expr::Lookup {
            sreg: wire::REG_1,
            dreg: Some(wire::REG_1),
            set: "published".into(),
            set_id: ID_PUBLISHED,
            inverted: false,
        },
        Expr::DnatIp {
            addr_reg: wire::REG_1,
            proto_reg: wire::REG32_01,
        },
    ]);
    [
        Rule {
            chain,
            text: "fib daddr type local dnat ip to ip daddr . meta l4proto . th dport map @published_host".into(),
            exprs: host,
        },
        Rule { chain, text: "fib daddr type local dnat ip to meta l4proto . th dport map @published".into(), exprs: any },
    ]
}

fn accept(mut exprs: Vec<Expr>) -> Vec<Expr> {
    exprs.push(Expr::Verdict(wire::VERDICT_ACCEPT));
    exprs
}

/// Masquerade what `source` matches (a container subnet, IPv4 or IPv6) when it leaves
/// through `uplink`, or through any interface that is not a bridge when there is none.
fn masquerade(mut exprs: Vec<Expr>, source: &str, uplink: Option<&str>) -> Rule {
    let text = match uplink {
        Some(uplink) => {
            exprs.extend(ifname_is(meta::OIFNAME, uplink));
            format!("{source} oifname \"{uplink}\" masquerade")
        }
        None => {
            exprs.push(Expr::Meta {
                key: meta::OIFNAME,
                dreg: wire::REG_1,
            });
            exprs.push(Expr::Lookup {
                sreg: wire::REG_1,
                dreg: None,
                set: "bridges".into(),
                set_id: ID_BRIDGES,
                inverted: true,
            });
            format!("{source} oifname != @bridges masquerade")
        }
    };
    exprs.push(Expr::Masq);
    Rule {
        chain: "postrouting",
        text,
        exprs,
    }
}

/// Every rule of the ruleset, in chain order and then in the order they are matched.
pub fn rules(state: &FirewallState) -> Vec<Rule> {
    let mut rules = guard_rules();
    rules.extend(dnat_rules("prerouting"));
    rules.extend(dnat_rules("output"));

    for (addr, prefix) in &state.container_subnets {
        rules.push(masquerade(ip_saddr(*addr, *prefix), &format!("ip saddr {addr}/{prefix}"), state.uplink.as_deref()));
    }
    for (addr, prefix) in &state.container_subnets6 {
        rules.push(masquerade(ip6_saddr(*addr, *prefix), &format!("ip6 saddr {addr}/{prefix}"), state.uplink.as_deref()));
    }
    for bridge in &state.bridges {
        // Hairpin: a container reaching a port published by a container on its own bridge.
        let (addr, prefix) = bridge.subnet;
        let mut exprs = ifname_is(meta::OIFNAME, &bridge.name).to_vec();
        exprs.extend(ip_saddr(addr, prefix));
        exprs.extend(ct_any(ct::STATUS, ct::STATUS_DNAT));
        exprs.push(Expr::Masq);
        let text = format!(
            "oifname \"{}\" ip saddr {addr}/{prefix} ct status dnat masquerade",
            bridge.name
        );
        rules.push(Rule {
            chain: "postrouting",
            text,
            exprs,
        });
    }
    // The host reaching a published port on 127.0.0.1 (needs route_localnet).
    let mut exprs = ip_saddr(Ipv4Addr::new(127, 0, 0, 0), 8);
    exprs.extend(ct_any(ct::STATUS, ct::STATUS_DNAT));
    exprs.push(Expr::Masq);
    rules.push(Rule {
        chain: "postrouting",
        text: "ip saddr 127.0.0.0/8 ct status dnat masquerade".into(),
        exprs,
    });

    rules.extend(forward_rules(state));
    rules.extend(input_rules(state));
    rules
}

/// The `guard` chain: loopback addresses from outside lo, and the metadata service from
/// containers that may not reach it (see the module docs of `nft`).
pub fn guard_rules() -> Vec<Rule> {
    let mut localnet = vec![
        Expr::Meta {
            key: meta::IIF,
            dreg: wire::REG_1,
        },
        Expr::Cmp {
            sreg: wire::REG_1,
            neq: true,
            data: 1u32.to_ne_bytes().to_vec(),
        }, // LOOPBACK_IFINDEX
    ];
    localnet.extend(nfproto_ipv4());
    localnet.extend(prefix_match(IP_DADDR, &[127, 0, 0, 0], 8));
    localnet.push(Expr::Verdict(wire::VERDICT_DROP));
    let metadata = |family: [Expr; 2], daddr: (u32, &[u8]), saddr: (u32, &str, u32)| {
        let mut exprs = ifname_in(meta::IIFNAME, "bridges", ID_BRIDGES, false).to_vec();
        exprs.extend(ifname_in(meta::IIFNAME, "metadata_bridges", ID_METADATA_BRIDGES, true));
        exprs.extend(family);
        exprs.extend(prefix_match(daddr.0, daddr.1, 8 * daddr.1.len() as u8));
        exprs.extend(addr_not_in(saddr.0, daddr.1.len() as u32, saddr.1, saddr.2));
        exprs.push(Expr::Verdict(wire::VERDICT_DROP));
        exprs
    };
    let (v4, v6) = (METADATA_V4.octets(), METADATA_V6.octets());
    vec![
        Rule {
            chain: "guard",
            text: "iif != \"lo\" ip daddr 127.0.0.0/8 drop".into(),
            exprs: localnet,
        },
        Rule {
            chain: "guard",
            text: format!("iifname @bridges iifname != @metadata_bridges ip daddr {METADATA_V4} ip saddr != @metadata_hosts drop"),
            exprs: metadata(nfproto_ipv4(), (IP_DADDR, &v4), (IP_SADDR, "metadata_hosts", ID_METADATA_HOSTS)),
        },
        Rule {
            chain: "guard",
            text: format!("iifname @bridges iifname != @metadata_bridges ip6 daddr {METADATA_V6} ip6 saddr != @metadata_hosts6 drop"),
            exprs: metadata(nfproto_ipv6(), (IP6_DADDR, &v6), (IP6_SADDR, "metadata_hosts6", ID_METADATA_HOSTS6)),
        },
    ]
}

/// The `forward` chain: replies, isolation, containers out, published ports in, and
/// nothing else into a container network (IPv4 and IPv6 alike).
fn forward_rules(state: &FirewallState) -> Vec<Rule> {
    let mut rules = vec![Rule {
        chain: "forward",
        text: "ct state established,related accept".into(),
        exprs: accept(ct_any(ct::STATE, ct::STATE_ESTABLISHED_RELATED).to_vec()),
    }];
    for from in &state.bridges {
        for to in &state.bridges {
            if from.name != to.name && (from.isolated || to.isolated) {
                let mut exprs = ifname_is(meta::IIFNAME, &from.name).to_vec();
                exprs.extend(ifname_is(meta::OIFNAME, &to.name));
                exprs.push(Expr::Verdict(wire::VERDICT_DROP));
                let text = format!("iifname \"{}\" oifname \"{}\" drop", from.name, to.name);
                rules.push(Rule {
                    chain: "forward",
                    text,
                    exprs,
                });
            }
        }
    }

    rules.push(Rule {
        chain: "forward",
        text: "iifname @bridges accept".into(),
        exprs: accept(ifname_in(meta::IIFNAME, "bridges", ID_BRIDGES, false).to_vec()),
    });
    rules.push(Rule {
        chain: "forward",
        text: "ct status dnat accept".into(),
        exprs: accept(ct_any(ct::STATUS, ct::STATUS_DNAT).to_vec()),
    });
    let mut inbound = ifname_in(meta::OIFNAME, "bridges", ID_BRIDGES, false).to_vec();
    inbound.push(Expr::Verdict(wire::VERDICT_DROP));
    rules.push(Rule {
        chain: "forward",
        text: "oifname @bridges drop".into(),
        exprs: inbound,
    });
    rules
}

/// `iifname UPLINK`, or `iifname != @bridges` while no uplink is known: what comes from
/// outside the host, never from a container.
fn from_outside(uplink: Option<&str>) -> (Vec<Expr>, String) {
    match uplink {
        Some(uplink) => (
            ifname_is(meta::IIFNAME, uplink).to_vec(),
            format!("iifname \"{uplink}\""),
        ),
        None => (
            ifname_in(meta::IIFNAME, "bridges", ID_BRIDGES, true).to_vec(),
            "iifname != @bridges".into(),
        ),
    }
}

/// The `input` chain (its policy is `input`'s).
fn input_rules(state: &FirewallState) -> Vec<Rule> {
    let mut rules = Vec::new();
    let input = |text: &str, exprs: Vec<Expr>| Rule {
        chain: "input",
        text: text.into(),
        exprs: accept(exprs),
    };
    let (outside, outside_text) = from_outside(state.uplink.as_deref());
    rules.push(input(
        "ct state established,related accept",
        ct_any(ct::STATE, ct::STATE_ESTABLISHED_RELATED).to_vec(),
    ));
    rules.push(input(
        "iif \"lo\" accept",
        vec![
            Expr::Meta {
                key: meta::IIF,
                dreg: wire::REG_1,
            },
            Expr::Cmp {
                sreg: wire::REG_1,
                neq: false,
                data: 1u32.to_ne_bytes().to_vec(),
            }, // LOOPBACK_IFINDEX
        ],
    ));
    rules.push(input(
        "ct status dnat accept",
        ct_any(ct::STATUS, ct::STATUS_DNAT).to_vec(),
    ));
    let mut allow = outside.clone();
    allow.extend([
            l4proto(wire::REG_1),
            th_dport(wire::REG32_01),
            Expr::Lookup {
                sreg: wire::REG_1,
                dreg: None,
                set: "allow".into(),
                set_id: ID_ALLOW,
                inverted: false,
            },
        ]);
    rules.push(input(
        &format!("{outside_text} meta l4proto . th dport @allow accept"),
        allow,
    ));
    for (text, number) in [
        ("meta l4proto icmp accept", 1u8),
        ("meta l4proto ipv6-icmp accept", 58),
    ] {
        rules.push(input(
            text,
            vec![
                l4proto(wire::REG_1),
                Expr::Cmp {
                    sreg: wire::REG_1,
                    neq: false,
                    data: vec![number],
                },
            ],
        ));
    }
    let mut dhcp = outside;
    dhcp.extend([
            l4proto(wire::REG_1),
            Expr::Cmp {
                sreg: wire::REG_1,
                neq: false,
                data: vec![17],
            },
            Expr::Payload {
                dreg: wire::REG_1,
                base: base::TRANSPORT,
                offset: 0,
                len: 4,
            },
            Expr::Cmp {
                sreg: wire::REG_1,
                neq: false,
                data: vec![0, 67, 0, 68],
            },
        ]);
    rules.push(input(
        &format!("{outside_text} udp sport 67 udp dport 68 accept"),
        dhcp,
    ));
    rules
}

fn chains(state: &FirewallState) -> [BaseChain; 6] {
    // Hook numbers are NF_INET_*; priorities NF_IP_PRI_RAW (-300), NAT_DST (-100),
    // NAT_SRC (100), FILTER (0).
    [
        BaseChain {
            name: "guard",
            kind: "filter",
            hook: 0,
            priority: -300,
            accept: true,
        },
        BaseChain {
            name: "prerouting",
            kind: "nat",
            hook: 0,
            priority: -100,
            accept: true,
        },
        BaseChain {
            name: "output",
            kind: "nat",
            hook: 3,
            priority: -100,
            accept: true,
        },
        BaseChain {
            name: "postrouting",
            kind: "nat",
            hook: 4,
            priority: 100,
            accept: true,
        },
        BaseChain {
            name: "forward",
            kind: "filter",
            hook: 2,
            priority: 0,
            accept: true,
        },
        BaseChain {
            name: "input",
            kind: "filter",
            hook: 1,
            priority: 0,
            accept: !state.input_drop,
        },
    ]
}

fn sets(state: &FirewallState) -> [NamedSet; 7] {
    let concat = |types: &[u32]| types.iter().fold(0, |acc, t| (acc << 6) | t);
    let published = |host: bool| -> Vec<Element> {
        state
            .published
            .iter()
            .filter(|p| p.host_ip.is_some() == host)
            .map(|p| {
                let mut key = p.host_ip.map(|ip| ip.octets().to_vec()).unwrap_or_default();
                key.extend(proto_port(p.proto, p.host_port));
                (key, Some(addr_port(p.dest, p.dest_port)))
            })
            .collect()
    };
    let target = (concat(&[TYPE_IPADDR, TYPE_INET_SERVICE]), 8);
    [
        NamedSet {
            name: "published",
            id: ID_PUBLISHED,
            key_type: concat(&[TYPE_INET_PROTOCOL, TYPE_INET_SERVICE]),
            key_len: 8,
            data: Some(target),
            udata: UDATA_PUBLISHED,
            elements: published(false),
        },
        NamedSet {
            name: "published_host",
            id: ID_PUBLISHED_HOST,
            key_type: concat(&[TYPE_IPADDR, TYPE_INET_PROTOCOL, TYPE_INET_SERVICE]),
            key_len: 12,
            data: Some(target),
            udata: UDATA_PUBLISHED,
            elements: published(true),
        },
        NamedSet {
            name: "allow",
            id: ID_ALLOW,
            key_type: concat(&[TYPE_INET_PROTOCOL, TYPE_INET_SERVICE]),
            key_len: 8,
            data: None,
            udata: UDATA_ALLOW,
            elements: state
                .allow
                .iter()
                .map(|(proto, port)| (proto_port(*proto, *port), None))
                .collect(),
        },
        NamedSet {
            name: "bridges",
            id: ID_BRIDGES,
            key_type: TYPE_IFNAME,
            key_len: 16,
            data: None,
            udata: UDATA_BRIDGES,
            elements: state
                .bridges
                .iter()
                .map(|b| (ifname(&b.name), None))
                .collect(),
        },
        NamedSet {
            name: "metadata_bridges",
            id: ID_METADATA_BRIDGES,
            key_type: TYPE_IFNAME,
            key_len: 16,
            data: None,
            udata: UDATA_BRIDGES,
            elements: state
                .bridges
                .iter()
                .filter(|b| b.metadata)
                .map(|b| (ifname(&b.name), None))
                .collect(),
        },
        NamedSet {
            name: "metadata_hosts",
            id: ID_METADATA_HOSTS,
            key_type: TYPE_IPADDR,
            key_len: 4,
            data: None,
            udata: UDATA_ADDRESSES,
            elements: unique(state.metadata_hosts.iter().map(|a| a.octets().to_vec())),
        },
        NamedSet {
            name: "metadata_hosts6",
            id: ID_METADATA_HOSTS6,
            key_type: TYPE_IP6ADDR,
            key_len: 16,
            data: None,
            udata: UDATA_ADDRESSES,
            elements: unique(state.metadata_hosts6.iter().map(|a| a.octets().to_vec())),
        },
    ]
}

/// Set elements without duplicates (the kernel refuses an element added twice).
fn unique(keys: impl Iterator<Item = Vec<u8>>) -> Vec<Element> {
    let mut seen: Vec<Vec<u8>> = Vec::new();
    for key in keys {
        if !seen.contains(&key) {
            seen.push(key);
        }
    }
    seen.into_iter().map(|key| (key, None)).collect()
}

/// The whole replace-the-table batch for `state`, starting at sequence number `seq`.
pub fn build(state: &FirewallState, seq: u32) -> Batch {
    let mut b = Builder::new(seq);
    b.new_table();
    b.del_table();
    b.new_table();
    for chain in &chains(state) {
        b.chain(chain);
    }
    for set in &sets(state) {
        b.set(set);
    }
    let mut previous = "";
    let mut index = 0;
    for rule in rules(state) {
        index = if rule.chain == previous { index + 1 } else { 1 };
        previous = rule.chain;
        b.rule(&rule, index);
    }
    b.finish()
}

/// The batch that deletes table `inet keel` whether or not it exists.
pub fn build_remove(seq: u32) -> Batch {
    let mut b = Builder::new(seq);
    b.new_table();
    b.del_table();
    b.finish()
}
