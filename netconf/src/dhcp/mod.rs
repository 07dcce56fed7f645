//! DHCPv4 client (RFC 2131, RFC 2132) for the uplink.
//!
//! Split the keel way: [`packet`] encodes and decodes messages (pure), [`machine`] is the
//! client state machine with time passed in (pure), and [`socket`] is the one small
//! executor: a non-blocking UDP socket that PID 1's poll loop drives, plus a blocking
//! [`acquire`] for tests and tools.
//!
//! Limitations: IPv4 only; no relay agent support (giaddr is always zero); no DHCPDECLINE
//! (the client does not probe the offered address with ARP); no DHCPINFORM. Applying a
//! lease (address, default route, MTU) is the link code's job; this module only yields the
//! [`Lease`] and renders [`resolv_conf`].

mod lease;
pub mod machine;
pub mod packet;
pub mod socket;

pub use lease::{resolv_conf, Lease};
pub use machine::{Action, Client, ClientConfig, Destination, State};
pub use packet::{PacketError, Reply};
pub use socket::{acquire, acquire_with, DhcpError, DhcpSocket};

/// An Ethernet hardware address, as put in `chaddr` and the client identifier.
pub type Mac = [u8; 6];
