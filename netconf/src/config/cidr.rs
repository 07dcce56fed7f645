//! IPv4 and IPv6 prefixes (`10.88.0.0/16`, `fd00:88::/64`): the few operations keel
//! needs to check declarations and hand out addresses, without an extra crate.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// An IPv4 address with a prefix length, as written in `address = "10.0.2.15/24"` or
/// `subnet = "10.88.0.0/16"`. The address may have host bits set (an interface
/// address); [`Ipv4Net::network`] gives the prefix itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv4Net {
    /// The address as written.
    pub addr: Ipv4Addr,
    /// The prefix length, 0..=32.
    pub prefix: u8,
}

impl Ipv4Net {
    /// A prefix from its parts; `None` when `prefix` is above 32.
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Option<Self> {
        (prefix <= 32).then_some(Ipv4Net { addr, prefix })
    }

    /// Parse `a.b.c.d/n`; the prefix length is required.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (addr, prefix) = text.split_once('/').ok_or_else(|| format!("{text:?}: expected a.b.c.d/prefix"))?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| format!("{text:?}: {addr:?} is not an IPv4 address"))?;
        let prefix = parse_prefix(prefix, 32).map_err(|e| format!("{text:?}: {e}"))?;
        Ok(Ipv4Net { addr, prefix })
    }

    /// The netmask as a number (`/24` → `0xffffff00`).
    pub fn mask(&self) -> u32 {
        u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0)
    }

    /// The network address (host bits cleared).
    pub fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) & self.mask())
    }

    /// The broadcast address (host bits set).
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) | !self.mask())
    }

    /// The same prefix with host bits cleared (`10.0.2.15/24` → `10.0.2.0/24`).
    pub fn trunc(&self) -> Ipv4Net {
        Ipv4Net { addr: self.network(), prefix: self.prefix }
    }

    /// Whether the address as written is the network address itself.
    pub fn is_network_address(&self) -> bool {
        self.addr == self.network()
    }

    /// Whether `addr` lies inside this prefix (network and broadcast included).
    pub fn contains(&self, addr: Ipv4Addr) -> bool {
        u32::from(addr) & self.mask() == u32::from(self.network())
    }

    /// Whether the two prefixes share at least one address.
    pub fn overlaps(&self, other: &Ipv4Net) -> bool {
        self.contains(other.network()) || other.contains(self.network())
    }

    /// The `n`th host address (`n` = 1 is the first after the network address);
    /// `None` for `n` = 0 or when it would reach the broadcast address.
    pub fn nth_host(&self, n: u32) -> Option<Ipv4Addr> {
        let host = u32::from(self.network()).checked_add(n)?;
        (n >= 1 && host < u32::from(self.broadcast())).then(|| Ipv4Addr::from(host))
    }

    /// How many addresses lie between the network and broadcast addresses.
    pub fn host_count(&self) -> u32 {
        (!self.mask()).saturating_sub(1)
    }
}

impl fmt::Display for Ipv4Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromStr for Ipv4Net {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        Ipv4Net::parse(text)
    }
}

/// An IPv6 prefix such as `subnet6 = "fd00:88::/64"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv6Net {
    /// The address as written.
    pub addr: Ipv6Addr,
    /// The prefix length, 0..=128.
    pub prefix: u8,
}

impl Ipv6Net {
    /// Parse `x:y::/n`; the prefix length is required.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (addr, prefix) = text.split_once('/').ok_or_else(|| format!("{text:?}: expected an IPv6 address/prefix"))?;
        let addr: Ipv6Addr = addr.parse().map_err(|_| format!("{text:?}: {addr:?} is not an IPv6 address"))?;
        let prefix = parse_prefix(prefix, 128).map_err(|e| format!("{text:?}: {e}"))?;
        Ok(Ipv6Net { addr, prefix })
    }

    /// The netmask as a number.
    pub fn mask(&self) -> u128 {
        u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0)
    }

    /// The network address (host bits cleared).
    pub fn network(&self) -> Ipv6Addr {
        Ipv6Addr::from(u128::from(self.addr) & self.mask())
    }

    /// Whether the address as written is the network address itself.
    pub fn is_network_address(&self) -> bool {
        self.addr == self.network()
    }

    /// Whether `addr` lies inside this prefix.
    pub fn contains(&self, addr: Ipv6Addr) -> bool {
        u128::from(addr) & self.mask() == u128::from(self.network())
    }

    /// Whether the two prefixes share at least one address.
    pub fn overlaps(&self, other: &Ipv6Net) -> bool {
        self.contains(other.network()) || other.contains(self.network())
    }

    /// The `n`th address after the network address (`n` = 1: the usual gateway).
    pub fn nth_host(&self, n: u128) -> Option<Ipv6Addr> {
        let host_bits = !self.mask();
        (n >= 1 && n <= host_bits).then(|| Ipv6Addr::from(u128::from(self.network()) + n))
    }
}

impl fmt::Display for Ipv6Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl FromStr for Ipv6Net {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        Ipv6Net::parse(text)
    }
}

fn parse_prefix(text: &str, max: u8) -> Result<u8, String> {
    let digits_only = !text.is_empty() && text.len() <= 3 && text.bytes().all(|b| b.is_ascii_digit());
    match text.parse::<u8>() {
        Ok(prefix) if digits_only && prefix <= max => Ok(prefix),
        _ => Err(format!("prefix length {text:?} must be a number from 0 to {max}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v4(text: &str) -> Ipv4Net {
        Ipv4Net::parse(text).unwrap()
    }

    #[test]
    fn ipv4_parse_and_arithmetic() {
        let net = v4("10.0.2.15/24");
        assert_eq!(net.network(), Ipv4Addr::new(10, 0, 2, 0));
        assert_eq!(net.broadcast(), Ipv4Addr::new(10, 0, 2, 255));
        assert!(!net.is_network_address());
        assert_eq!(net.trunc(), v4("10.0.2.0/24"));
        assert!(net.contains(Ipv4Addr::new(10, 0, 2, 2)));
        assert!(!net.contains(Ipv4Addr::new(10, 0, 3, 2)));
        assert_eq!(net.nth_host(1), Some(Ipv4Addr::new(10, 0, 2, 1)));
        assert_eq!(net.nth_host(254), Some(Ipv4Addr::new(10, 0, 2, 254)));
        assert_eq!(net.nth_host(255), None);
        assert_eq!(net.nth_host(0), None);
        assert_eq!(net.host_count(), 254);
        assert_eq!(v4("10.88.0.0/30").host_count(), 2);
        assert_eq!(v4("0.0.0.0/0").network(), Ipv4Addr::UNSPECIFIED);
        assert_eq!(v4("1.2.3.4/32").broadcast(), Ipv4Addr::new(1, 2, 3, 4));
        assert_eq!(net.to_string(), "10.0.2.15/24");
    }

    #[test]
    fn ipv4_overlaps() {
        assert!(v4("10.88.0.0/16").overlaps(&v4("10.88.5.0/24")));
        assert!(v4("10.88.5.0/24").overlaps(&v4("10.88.0.0/16")));
        assert!(!v4("10.88.0.0/16").overlaps(&v4("10.89.0.0/16")));
        assert!(v4("0.0.0.0/0").overlaps(&v4("192.168.1.0/24")));
    }

    #[test]
    fn ipv4_rejects_bad_text() {
        for bad in ["10.0.0.0", "10.0.0/8", "10.0.0.0/33", "10.0.0.0/", "10.0.0.0/+8", "x/8", "10.0.0.0/8/8"] {
            assert!(Ipv4Net::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ipv6_parse_and_arithmetic() {
        let net = Ipv6Net::parse("fd00:88::/64").unwrap();
        assert!(net.is_network_address());
        assert!(net.contains("fd00:88::5".parse().unwrap()));
        assert!(!net.contains("fd00:89::5".parse().unwrap()));
        assert_eq!(net.nth_host(1), Some("fd00:88::1".parse().unwrap()));
        assert!(net.overlaps(&Ipv6Net::parse("fd00:88::/48").unwrap()));
        assert!(!net.overlaps(&Ipv6Net::parse("fd00:89::/64").unwrap()));
        assert!(!Ipv6Net::parse("fd00:88::1/64").unwrap().is_network_address());
        assert!(Ipv6Net::parse("fd00::/129").is_err());
        assert!(Ipv6Net::parse("10.0.0.0/8").is_err());
    }
}
