//! The netlink and nf_tables wire format keel needs: a small attribute writer and the
//! expression encodings, each checked against what `nft` (libnftnl) sends.
//!
//! Numbers come from the kernel's uapi headers (`linux/netfilter/nf_tables.h`,
//! `linux/netfilter/nfnetlink.h`); attribute order follows libnftnl so the bytes can be
//! compared with a capture of `nft -f`.

/// `NFNL_SUBSYS_NFTABLES`: the nfnetlink subsystem of nf_tables.
pub const SUBSYS_NFTABLES: u16 = 10;
/// `NFNL_MSG_BATCH_BEGIN`.
pub const MSG_BATCH_BEGIN: u16 = 0x10;
/// `NFNL_MSG_BATCH_END`.
pub const MSG_BATCH_END: u16 = 0x11;
/// `NFT_MSG_NEWTABLE`.
pub const MSG_NEWTABLE: u16 = 0;
/// `NFT_MSG_DELTABLE`.
pub const MSG_DELTABLE: u16 = 2;
/// `NFT_MSG_NEWCHAIN`.
pub const MSG_NEWCHAIN: u16 = 3;
/// `NFT_MSG_NEWRULE`.
pub const MSG_NEWRULE: u16 = 6;
/// `NFT_MSG_NEWSET`.
pub const MSG_NEWSET: u16 = 9;
/// `NFT_MSG_NEWSETELEM`.
pub const MSG_NEWSETELEM: u16 = 12;

/// `NLM_F_REQUEST`.
pub const F_REQUEST: u16 = 0x1;
/// `NLM_F_ACK`.
pub const F_ACK: u16 = 0x4;
/// `NLM_F_CREATE`.
pub const F_CREATE: u16 = 0x400;
/// `NLM_F_APPEND`.
pub const F_APPEND: u16 = 0x800;
/// `NLA_F_NESTED`.
const F_NESTED: u16 = 0x8000;

/// `NFPROTO_INET`: the family of table `inet keel`.
pub const NFPROTO_INET: u8 = 1;
/// `NFPROTO_IPV4`.
pub const NFPROTO_IPV4: u8 = 2;
/// `NFPROTO_IPV6`.
pub const NFPROTO_IPV6: u8 = 10;

/// Registers: `NFT_REG_VERDICT`, `NFT_REG_1` (16 bytes) and the 32-bit registers 8.. .
pub const REG_VERDICT: u32 = 0;
/// `NFT_REG_1`.
pub const REG_1: u32 = 1;
/// `NFT_REG32_01`: the second 32-bit slot of `NFT_REG_1`.
pub const REG32_01: u32 = 9;
/// `NFT_REG32_02`.
pub const REG32_02: u32 = 10;

/// `NF_ACCEPT` as a verdict code.
pub const VERDICT_ACCEPT: u32 = 1;
/// `NF_DROP` as a verdict code.
pub const VERDICT_DROP: u32 = 0;

/// `enum nft_meta_keys` values keel uses.
pub mod meta {
    /// `NFT_META_IIF`.
    pub const IIF: u32 = 4;
    /// `NFT_META_IIFNAME`.
    pub const IIFNAME: u32 = 6;
    /// `NFT_META_OIFNAME`.
    pub const OIFNAME: u32 = 7;
    /// `NFT_META_NFPROTO`.
    pub const NFPROTO: u32 = 15;
    /// `NFT_META_L4PROTO`.
    pub const L4PROTO: u32 = 16;
}

/// `enum nft_ct_keys` values keel uses.
pub mod ct {
    /// `NFT_CT_STATE`.
    pub const STATE: u32 = 0;
    /// `NFT_CT_STATUS`.
    pub const STATUS: u32 = 2;
    /// `NF_CT_STATE_BIT(IP_CT_ESTABLISHED) | NF_CT_STATE_BIT(IP_CT_RELATED)`.
    pub const STATE_ESTABLISHED_RELATED: u32 = 0x6;
    /// `IPS_DST_NAT`.
    pub const STATUS_DNAT: u32 = 0x20;
}

/// `enum nft_payload_bases`.
pub mod base {
    /// `NFT_PAYLOAD_NETWORK_HEADER`.
    pub const NETWORK: u32 = 1;
    /// `NFT_PAYLOAD_TRANSPORT_HEADER`.
    pub const TRANSPORT: u32 = 2;
}

/// A growing netlink buffer: messages, attributes and nests, 4-byte aligned.
#[derive(Default)]
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    /// The bytes written so far.
    pub fn into_bytes(self) -> Vec<u8> {
        self.buf
    }

    /// Current length in bytes.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Start a netlink message with the nfgenmsg header; finish it with [`Writer::end_message`].
    pub fn begin_message(&mut self, msg_type: u16, flags: u16, seq: u32, family: u8, res_id: u16) -> usize {
        let start = self.buf.len();
        self.buf.extend_from_slice(&0u32.to_ne_bytes()); // nlmsg_len, patched by end()
        self.buf.extend_from_slice(&msg_type.to_ne_bytes());
        self.buf.extend_from_slice(&flags.to_ne_bytes());
        self.buf.extend_from_slice(&seq.to_ne_bytes());
        self.buf.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel
        self.buf.push(family);
        self.buf.push(0); // NFNETLINK_V0
        self.buf.extend_from_slice(&res_id.to_be_bytes());
        start
    }

    /// Patch the length of the message that started at `start`.
    pub fn end_message(&mut self, start: usize) {
        let len = (self.buf.len() - start) as u32;
        self.buf[start..start + 4].copy_from_slice(&len.to_ne_bytes());
    }

    /// An attribute with a raw payload, padded to 4 bytes.
    pub fn attr(&mut self, attr_type: u16, payload: &[u8]) {
        let len = 4 + payload.len();
        self.buf.extend_from_slice(&(len as u16).to_ne_bytes());
        self.buf.extend_from_slice(&attr_type.to_ne_bytes());
        self.buf.extend_from_slice(payload);
        self.pad();
    }

    /// A big-endian u32 attribute (nf_tables sends numbers in network order).
    pub fn u32(&mut self, attr_type: u16, value: u32) {
        self.attr(attr_type, &value.to_be_bytes());
    }

    /// A NUL-terminated string attribute.
    pub fn str(&mut self, attr_type: u16, value: &str) {
        let mut payload = value.as_bytes().to_vec();
        payload.push(0);
        self.attr(attr_type, &payload);
    }

    /// Start a nested attribute; finish it with [`Writer::end_nest`].
    pub fn begin_nest(&mut self, attr_type: u16) -> usize {
        let start = self.buf.len();
        self.buf.extend_from_slice(&0u16.to_ne_bytes());
        self.buf.extend_from_slice(&(attr_type | F_NESTED).to_ne_bytes());
        start
    }

    /// Patch the length of the nest that started at `start`.
    pub fn end_nest(&mut self, start: usize) {
        let len = self.buf.len() - start;
        self.buf[start..start + 2].copy_from_slice(&(len as u16).to_ne_bytes());
    }

    /// `NFTA_DATA_VALUE` inside a nest of type `attr_type`.
    pub fn data_value(&mut self, attr_type: u16, value: &[u8]) {
        let nest = self.begin_nest(attr_type);
        self.attr(1, value);
        self.end_nest(nest);
    }

    fn pad(&mut self) {
        while !self.buf.len().is_multiple_of(4) {
            self.buf.push(0);
        }
    }
}

/// One nf_tables expression, in libnftnl's attribute order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    /// `meta load KEY => reg`.
    Meta { key: u32, dreg: u32 },
    /// `ct load KEY => reg`.
    Ct { key: u32, dreg: u32 },
    /// `payload load LEN @ BASE + OFFSET => reg`.
    Payload { dreg: u32, base: u32, offset: u32, len: u32 },
    /// `cmp eq|neq reg DATA`.
    Cmp { sreg: u32, neq: bool, data: Vec<u8> },
    /// `bitwise reg = (reg & MASK) ^ XOR` (XOR all zero).
    Bitwise { reg: u32, mask: Vec<u8> },
    /// `fib daddr type => reg`.
    FibDaddrType { dreg: u32 },
    /// `lookup reg set NAME [dreg] [inverted]`.
    Lookup { sreg: u32, dreg: Option<u32>, set: String, set_id: u32, inverted: bool },
    /// `nat dnat ip addr_min reg proto_min reg`.
    DnatIp { addr_reg: u32, proto_reg: u32 },
    /// `masq`.
    Masq,
    /// `immediate reg 0 VERDICT`.
    Verdict(u32),
}

impl Expr {
    /// Append this expression as an `NFTA_LIST_ELEM` of a rule's expression list.
    pub fn write(&self, w: &mut Writer) {
        let elem = w.begin_nest(1); // NFTA_LIST_ELEM
        let name = match self {
            Expr::Meta { .. } => "meta",
            Expr::Ct { .. } => "ct",
            Expr::Payload { .. } => "payload",
            Expr::Cmp { .. } => "cmp",
            Expr::Bitwise { .. } => "bitwise",
            Expr::FibDaddrType { .. } => "fib",
            Expr::Lookup { .. } => "lookup",
            Expr::DnatIp { .. } => "nat",
            Expr::Masq => "masq",
            Expr::Verdict(_) => "immediate",
        };
        w.str(1, name); // NFTA_EXPR_NAME
        let data = w.begin_nest(2); // NFTA_EXPR_DATA
        match self {
            Expr::Meta { key, dreg } | Expr::Ct { key, dreg } => {
                w.u32(2, *key); // NFTA_META_KEY / NFTA_CT_KEY
                w.u32(1, *dreg); // NFTA_META_DREG / NFTA_CT_DREG
            }
            Expr::Payload { dreg, base, offset, len } => {
                w.u32(1, *dreg);
                w.u32(2, *base);
                w.u32(3, *offset);
                w.u32(4, *len);
            }
            Expr::Cmp { sreg, neq, data } => {
                w.u32(1, *sreg); // NFTA_CMP_SREG
                w.u32(2, u32::from(*neq)); // NFTA_CMP_OP: NFT_CMP_EQ / NFT_CMP_NEQ
                w.data_value(3, data); // NFTA_CMP_DATA
            }
            Expr::Bitwise { reg, mask } => {
                w.u32(1, *reg); // NFTA_BITWISE_SREG
                w.u32(2, *reg); // NFTA_BITWISE_DREG
                w.u32(3, mask.len() as u32); // NFTA_BITWISE_LEN
                w.data_value(4, mask); // NFTA_BITWISE_MASK
                w.data_value(5, &vec![0; mask.len()]); // NFTA_BITWISE_XOR
            }
            Expr::FibDaddrType { dreg } => {
                w.u32(3, 2); // NFTA_FIB_FLAGS = NFTA_FIB_F_DADDR
                w.u32(2, 3); // NFTA_FIB_RESULT = NFT_FIB_RESULT_ADDRTYPE
                w.u32(1, *dreg); // NFTA_FIB_DREG
            }
            Expr::Lookup { sreg, dreg, set, set_id, inverted } => {
                w.u32(2, *sreg); // NFTA_LOOKUP_SREG
                if let Some(dreg) = dreg {
                    w.u32(3, *dreg); // NFTA_LOOKUP_DREG
                }
                w.str(1, set); // NFTA_LOOKUP_SET
                w.u32(4, *set_id); // NFTA_LOOKUP_SET_ID
                if *inverted {
                    w.u32(5, 1); // NFTA_LOOKUP_FLAGS = NFT_LOOKUP_F_INV
                }
            }
            Expr::DnatIp { addr_reg, proto_reg } => {
                w.u32(1, 1); // NFTA_NAT_TYPE = NFT_NAT_DNAT
                w.u32(2, u32::from(NFPROTO_IPV4)); // NFTA_NAT_FAMILY
                w.u32(3, *addr_reg); // NFTA_NAT_REG_ADDR_MIN
                w.u32(5, *proto_reg); // NFTA_NAT_REG_PROTO_MIN
            }
            Expr::Masq => {}
            Expr::Verdict(code) => {
                w.u32(1, REG_VERDICT); // NFTA_IMMEDIATE_DREG
                let data = w.begin_nest(2); // NFTA_IMMEDIATE_DATA
                let verdict = w.begin_nest(2); // NFTA_DATA_VERDICT
                w.u32(1, *code); // NFTA_VERDICT_CODE
                w.end_nest(verdict);
                w.end_nest(data);
            }
        }
        w.end_nest(data);
        w.end_nest(elem);
    }
}
