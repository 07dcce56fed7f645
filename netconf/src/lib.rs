//! keel-netconf: keel configures the network itself, over netlink, without `ip` or `nft`.
//!
//! The API is synchronous: PID 1 calls it from its single-threaded event loop.
//! Messages are built as plain values by pure functions (unit-tested byte for byte)
//! and sent through one small socket that waits for the kernel's acknowledgement.
//!
//! Limitations (current state): only link state changes (bringing a link up) are
//! implemented; addresses, routes, bridges, veth, DHCP and nftables come with the
//! network issue.
#![forbid(unsafe_code)]

pub mod link;
pub mod socket;

pub use link::set_link_up;
pub use socket::NetlinkError;
