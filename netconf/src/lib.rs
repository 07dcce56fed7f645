//! keel-netconf: keel configures the network itself, over netlink, without `ip` or `nft`.
//!
//! The API is synchronous: PID 1 calls it from its single-threaded event loop.
//! Messages are built as plain values by pure functions (unit-tested byte for byte)
//! and sent through one small socket that waits for the kernel's acknowledgement.
//!
//! Parts: `config` (/etc/keel/network.toml, ports), `ipam` (container addresses kept
//! in /var/lib/keel/ipam), links, addresses, routes, bridges and veth pairs over
//! rtnetlink, `dhcp` (DHCPv4 client: packets, state machine, socket), `nft` (keel's
//! `inet keel` table as one nf_tables batch), and `http` (the HTTP(S) client for
//! first-boot sources and registry pulls).
//!
//! Limitations: IPv4 only for container networks and the uplink (`subnet6` is parsed,
//! not configured); no DHCPv6 or SLAAC handling of its own.
#![forbid(unsafe_code)]

pub mod addr;
pub mod bridge;
pub mod config;
pub mod dhcp;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzzing;
pub mod http;
pub mod ipam;
pub mod link;
pub mod nft;
pub mod route;
pub mod socket;
pub mod veth;

pub use addr::{add_address, del_address, list_addresses, AddressInfo};
pub use bridge::{ensure_bridge, ensure_bridge_dual};
pub use link::{delete_link, first_ethernet, link_index, list_links, set_link_up, set_mtu, set_up, LinkInfo};
pub use route::{
    add_default_route, add_default_route6, del_default_route, list_routes, set_ipv4_forwarding, set_ipv6_forwarding, set_route_localnet,
    RouteInfo,
};
pub use socket::NetlinkError;
pub use veth::{configure_container_interface, configure_container_interface_dual, create_veth_into_netns, NetnsRef};
