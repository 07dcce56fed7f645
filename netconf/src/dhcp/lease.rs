//! The lease a server granted, and the resolv.conf it implies.

use std::fmt::Write as _;
use std::net::Ipv4Addr;

/// What a DHCP server granted in an OFFER or ACK (RFC 2132 options decoded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The address offered to the client (`yiaddr`).
    pub address: Ipv4Addr,
    /// Prefix length from the subnet mask (option 1).
    pub prefix: u8,
    /// The first router (option 3), the default gateway.
    pub router: Option<Ipv4Addr>,
    /// DNS servers (option 6), in the server's order.
    pub dns: Vec<Ipv4Addr>,
    /// Domain name (option 15); dropped when it is not printable ASCII without spaces.
    pub domain: Option<String>,
    /// Interface MTU (option 26), at least 68.
    pub mtu: Option<u16>,
    /// The server identifier (option 54), where renewals are unicast to.
    pub server: Ipv4Addr,
    /// Lease time in seconds (option 51); `u32::MAX` means infinite.
    pub lease_secs: u32,
    /// Renewal time T1 in seconds (option 58, default 0.5 × lease).
    pub t1_secs: u32,
    /// Rebinding time T2 in seconds (option 59, default 0.875 × lease).
    pub t2_secs: u32,
}

/// The `/etc/resolv.conf` text for a lease: a `search` line when the lease names a
/// domain, then one `nameserver` line per DNS server (the resolver reads at most three).
pub fn resolv_conf(lease: &Lease) -> String {
    let mut out = String::from("# written by keel from a DHCP lease\n");
    if let Some(domain) = &lease.domain {
        let _ = writeln!(out, "search {domain}");
    }
    for server in &lease.dns {
        let _ = writeln!(out, "nameserver {server}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease() -> Lease {
        Lease {
            address: Ipv4Addr::new(10, 0, 2, 15),
            prefix: 24,
            router: Some(Ipv4Addr::new(10, 0, 2, 2)),
            dns: vec![Ipv4Addr::new(10, 0, 2, 3), Ipv4Addr::new(1, 1, 1, 1)],
            domain: Some("example.internal".into()),
            mtu: None,
            server: Ipv4Addr::new(10, 0, 2, 2),
            lease_secs: 86400,
            t1_secs: 43200,
            t2_secs: 75600,
        }
    }

    #[test]
    fn resolv_conf_lists_search_domain_then_nameservers() {
        assert_eq!(
            resolv_conf(&lease()),
            "# written by keel from a DHCP lease\nsearch example.internal\nnameserver 10.0.2.3\nnameserver 1.1.1.1\n"
        );
    }

    #[test]
    fn resolv_conf_without_domain_or_dns_is_only_the_header() {
        let bare = Lease { domain: None, dns: vec![], ..lease() };
        assert_eq!(resolv_conf(&bare), "# written by keel from a DHCP lease\n");
    }
}
