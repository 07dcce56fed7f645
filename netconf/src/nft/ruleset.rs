//! From a [`FirewallState`] to the messages of one nf_tables batch (pure, no I/O).
//!
//! The batch always has the same shape, so that applying the same state twice gives the
//! same ruleset: create-or-keep table, delete it, create it again, then the six base
//! chains, the seven named sets/maps with their elements, and the rules.

use super::rules::{rules, Rule};
use super::wire::{self, Writer};
use super::{FirewallState, Proto, TABLE};
use std::net::Ipv4Addr;

/// Set ids: referenced by `NFTA_SET_ID` in the same batch (the names also work).
pub(super) const ID_PUBLISHED: u32 = 1;
pub(super) const ID_PUBLISHED_HOST: u32 = 2;
pub(super) const ID_ALLOW: u32 = 3;
pub(super) const ID_BRIDGES: u32 = 4;
pub(super) const ID_METADATA_BRIDGES: u32 = 5;
pub(super) const ID_METADATA_HOSTS: u32 = 6;
pub(super) const ID_METADATA_HOSTS6: u32 = 7;

/// Set user data as nft 1.0.6 writes it (byte order and typeof hints that only
/// `nft list` reads), so that `nft list table inet keel` prints the declared types.
const UDATA_PUBLISHED: &[u8] = &[
    0x00, 0x04, 0, 0, 0, 0, 0x01, 0x04, 0, 0, 0, 0, 0x03, 0x08, 0x00, 0x04, 0x0d, 0, 0, 0, 0x01, 0x00, 0x04, 0x08, 0x00, 0x04, 0x0d, 0, 0,
    0, 0x01, 0x00, 0x06, 0x04, 0, 0, 0, 0,
];
const UDATA_ALLOW: &[u8] = &[0x00, 0x04, 0, 0, 0, 0, 0x03, 0x08, 0x00, 0x04, 0x0d, 0, 0, 0, 0x01, 0x00];
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
        let m = w.begin_message(wire::MSG_BATCH_BEGIN, wire::F_REQUEST, seq, 0, wire::SUBSYS_NFTABLES);
        w.end_message(m);
        Builder { w, seq: seq.wrapping_add(1), begin_seq: seq, messages: Vec::new() }
    }

    /// Start an nf_tables message described by `what`.
    fn message(&mut self, msg: u16, flags: u16, what: String) -> usize {
        let seq = self.seq;
        self.seq = self.seq.wrapping_add(1);
        self.messages.push((seq, what));
        self.w.begin_message((wire::SUBSYS_NFTABLES << 8) | msg, NFT_FLAGS | flags, seq, wire::NFPROTO_INET, 0)
    }

    fn finish(mut self) -> Batch {
        let m = self.w.begin_message(wire::MSG_BATCH_END, wire::F_REQUEST, self.seq, 0, wire::SUBSYS_NFTABLES);
        self.w.end_message(m);
        Batch { bytes: self.w.into_bytes(), begin_seq: self.begin_seq, messages: self.messages }
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
        let m = self.message(wire::MSG_NEWCHAIN, wire::F_CREATE, format!("add chain {}", chain.name));
        self.w.str(1, TABLE); // NFTA_CHAIN_TABLE
        self.w.str(3, chain.name); // NFTA_CHAIN_NAME
        self.w.str(7, chain.kind); // NFTA_CHAIN_TYPE
        self.w.u32(5, if chain.accept { wire::VERDICT_ACCEPT } else { wire::VERDICT_DROP }); // NFTA_CHAIN_POLICY
        let hook = self.w.begin_nest(4); // NFTA_CHAIN_HOOK
        self.w.u32(1, chain.hook); // NFTA_HOOK_HOOKNUM
        self.w.u32(2, chain.priority as u32); // NFTA_HOOK_PRIORITY
        self.w.end_nest(hook);
        self.w.end_message(m);
    }

    fn set(&mut self, set: &NamedSet) {
        let m = self.message(wire::MSG_NEWSET, wire::F_CREATE, format!("add set {}", set.name));
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
            let m = self.message(wire::MSG_NEWSETELEM, wire::F_CREATE, format!("add elements to {}", set.name));
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
pub(super) fn ifname(name: &str) -> Vec<u8> {
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

fn chains(state: &FirewallState) -> [BaseChain; 6] {
    // Hook numbers are NF_INET_*; priorities NF_IP_PRI_RAW (-300), NAT_DST (-100),
    // NAT_SRC (100), FILTER (0).
    [
        BaseChain { name: "guard", kind: "filter", hook: 0, priority: -300, accept: true },
        BaseChain { name: "prerouting", kind: "nat", hook: 0, priority: -100, accept: true },
        BaseChain { name: "output", kind: "nat", hook: 3, priority: -100, accept: true },
        BaseChain { name: "postrouting", kind: "nat", hook: 4, priority: 100, accept: true },
        BaseChain { name: "forward", kind: "filter", hook: 2, priority: 0, accept: true },
        BaseChain { name: "input", kind: "filter", hook: 1, priority: 0, accept: !state.input_drop },
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
            elements: state.allow.iter().map(|(proto, port)| (proto_port(*proto, *port), None)).collect(),
        },
        NamedSet {
            name: "bridges",
            id: ID_BRIDGES,
            key_type: TYPE_IFNAME,
            key_len: 16,
            data: None,
            udata: UDATA_BRIDGES,
            elements: state.bridges.iter().map(|b| (ifname(&b.name), None)).collect(),
        },
        NamedSet {
            name: "metadata_bridges",
            id: ID_METADATA_BRIDGES,
            key_type: TYPE_IFNAME,
            key_len: 16,
            data: None,
            udata: UDATA_BRIDGES,
            elements: state.bridges.iter().filter(|b| b.metadata).map(|b| (ifname(&b.name), None)).collect(),
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
