//! The DHCP client of the uplink, driven by PID 1's event loop: its socket is one more
//! poll source and its next deadline one more timeout. A bound lease becomes the
//! uplink's address, default route, MTU and resolv.conf, and the firewall learns the
//! uplink's name; a lost lease takes them away. Nothing here blocks.

use super::{write_host_resolv_conf, Shared, UplinkError, UplinkStep};
use keel_netconf::dhcp::{self, Action, Client, DhcpSocket, Lease};
use log::{info, warn};
use std::os::fd::BorrowedFd;
use std::time::Instant;

/// A running DHCP client on one interface.
pub struct DhcpUplink {
    socket: DhcpSocket,
    client: Client,
    index: u32,
    current: Option<Lease>,
    network: Shared,
}

impl DhcpUplink {
    /// Start DHCP on the link `index` called `ifname` with hardware address `mac`.
    pub fn start(ifname: &str, index: u32, mac: [u8; 6], network: Shared, now: Instant) -> Result<Self, UplinkError> {
        keel_netconf::set_up(index).map_err(|source| UplinkError::Link { interface: ifname.into(), step: UplinkStep::Up, source })?;
        let socket = DhcpSocket::open(ifname).map_err(|source| UplinkError::DhcpSocket { interface: ifname.into(), source })?;
        let client = Client::new(mac, dhcp::socket::seed(&mac));
        let mut uplink = DhcpUplink { socket, client, index, current: None, network };
        let actions = uplink.client.on_start(now);
        uplink.perform(actions);
        info!("uplink {ifname}: DHCP started");
        Ok(uplink)
    }

    /// The socket to poll.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.socket.fd()
    }

    /// When [`on_timer`](Self::on_timer) must run next.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.client.next_deadline()
    }

    /// The socket is readable.
    pub fn on_readable(&mut self, now: Instant) {
        while let Some(packet) = self.socket.recv() {
            let actions = self.client.on_packet(&packet, now);
            self.perform(actions);
        }
    }

    /// A deadline passed (or may have).
    pub fn on_timer(&mut self, now: Instant) {
        if self.client.next_deadline().is_some_and(|at| at <= now) {
            let actions = self.client.on_timer(now);
            self.perform(actions);
        }
    }

    fn perform(&mut self, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::Send { .. } => {
                    if let Err(e) = self.socket.send(&action) {
                        warn!("dhcp on {}: send: {e}", self.socket.ifname());
                    }
                }
                Action::Bind(lease) => self.bind(lease),
                Action::Renewed(lease) => {
                    self.network.borrow_mut().set_lease(self.socket.ifname(), &lease);
                    self.current = Some(lease);
                }
                Action::LeaseLost => self.unbind(),
                Action::GaveUpForNow => warn!("dhcp on {}: no server answered; trying again later", self.socket.ifname()),
            }
        }
    }

    fn bind(&mut self, lease: Lease) {
        let ifname = self.socket.ifname().to_string();
        if self.current.as_ref().is_some_and(|old| old.address != lease.address || old.prefix != lease.prefix) {
            self.unbind();
        }
        let result = (|| {
            if let Some(mtu) = lease.mtu {
                keel_netconf::set_mtu(self.index, u32::from(mtu))?;
            }
            match keel_netconf::add_address(self.index, lease.address.into(), lease.prefix) {
                Err(e) if e.to_string().contains("EEXIST") || e.to_string().contains("exists") => {}
                other => other?,
            }
            if let Some(router) = lease.router {
                keel_netconf::add_default_route(router, Some(self.index))?;
            }
            Ok::<(), keel_netconf::NetlinkError>(())
        })();
        match result {
            Ok(()) => info!(
                "uplink {ifname}: {}/{} by DHCP from {} (lease {} s, router {})",
                lease.address,
                lease.prefix,
                lease.server,
                lease.lease_secs,
                lease.router.map_or("none".into(), |r| r.to_string())
            ),
            Err(e) => warn!("uplink {ifname}: applying the lease: {e}"),
        }
        write_host_resolv_conf(&dhcp::resolv_conf(&lease));
        let mut network = self.network.borrow_mut();
        network.set_lease(&ifname, &lease);
        if let Err(e) = network.apply_firewall() {
            warn!("{e}");
        }
        self.current = Some(lease);
    }

    fn unbind(&mut self) {
        if let Some(old) = self.current.take() {
            warn!("uplink {}: lease of {} lost", self.socket.ifname(), old.address);
            let _ = keel_netconf::del_address(self.index, old.address.into(), old.prefix);
        }
    }
}
