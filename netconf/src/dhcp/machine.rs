//! The DHCPv4 client state machine (RFC 2131 §4.4, figure 5), pure: the caller passes
//! `now`, feeds received packets and timer expiries in, and carries out the returned
//! [`Action`]s. Nothing here sleeps, reads a clock or touches a socket.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use super::packet::{self, Reply, RequestKind};
use super::{Lease, Mac};

/// The client's state, after RFC 2131 §4.4 figure 5.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// INIT: no lease and no exchange in flight; the next deadline starts a DISCOVER
    /// (right away, or after a pause once the client gave up for now).
    Init,
    /// SELECTING: DHCPDISCOVER broadcast, collecting the first DHCPOFFER.
    Selecting,
    /// REQUESTING: DHCPREQUEST for an offer broadcast, waiting for DHCPACK or DHCPNAK.
    Requesting,
    /// INIT-REBOOT / REBOOTING: DHCPREQUEST for a remembered address broadcast (§4.3.2),
    /// waiting for DHCPACK or DHCPNAK.
    InitReboot,
    /// BOUND: the lease is in use; the next deadline is T1.
    Bound,
    /// RENEWING: past T1, DHCPREQUEST unicast to the leasing server (§4.4.5).
    Renewing,
    /// REBINDING: past T2, DHCPREQUEST broadcast to any server; the lease ends at expiry.
    Rebinding,
}

/// Where a packet goes: both from UDP port 68 to port 67.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination {
    /// 255.255.255.255, out of the client's interface.
    Broadcast,
    /// One server, by address.
    Unicast(Ipv4Addr),
}

/// What the caller must do for the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send this DHCP message.
    Send {
        /// The encoded message.
        packet: Vec<u8>,
        /// Its destination.
        to: Destination,
    },
    /// Configure this lease (a new one, or a different address after renewal: swap the old out).
    Bind(Lease),
    /// The same address was renewed; its times (and maybe options) are refreshed.
    Renewed(Lease),
    /// The lease expired or was refused: remove its address, routes and DNS.
    LeaseLost,
    /// No server answered the configured number of DISCOVERs; the client pauses, then tries again.
    GaveUpForNow,
}

/// Timing knobs; [`Default`] follows RFC 2131, tests shrink `retransmit_base`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// First retransmission delay (RFC 2131 §4.1: 4 s); it doubles per retry. The jitter
    /// is uniform in ±`retransmit_base`/4 (±1 s at the default).
    pub retransmit_base: Duration,
    /// Largest retransmission delay before jitter (RFC 2131 §4.1: 64 s).
    pub retransmit_cap: Duration,
    /// DISCOVERs sent without an offer before [`Action::GaveUpForNow`].
    pub discover_attempts: u32,
    /// REQUESTs sent in REQUESTING or INIT-REBOOT without an answer before starting over.
    pub request_attempts: u32,
    /// Pause in INIT after giving up, before the next round of DISCOVERs.
    pub retry_after: Duration,
    /// Shortest wait between REQUESTs in RENEWING and REBINDING (RFC 2131 §4.4.5: 60 s).
    pub renew_retransmit_min: Duration,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            retransmit_base: Duration::from_secs(4),
            retransmit_cap: Duration::from_secs(64),
            discover_attempts: 5,
            request_attempts: 4,
            retry_after: Duration::from_secs(60),
            renew_retransmit_min: Duration::from_secs(60),
        }
    }
}

/// The lease the client holds and when its timers fire (anchored at the time the
/// REQUEST that obtained it was first sent, as RFC 2131 §4.4.1 asks).
#[derive(Debug, Clone)]
struct Held {
    lease: Lease,
    t1: Option<Instant>,
    t2: Option<Instant>,
    expiry: Option<Instant>,
}

impl Held {
    fn new(lease: Lease, anchor: Instant) -> Self {
        // RFC 2131 §3.3: 0xffffffff is an infinite lease: no timers at all.
        let at = |secs: u32| (lease.lease_secs != u32::MAX).then(|| anchor.checked_add(Duration::from_secs(secs.into()))).flatten();
        Held { t1: at(lease.t1_secs), t2: at(lease.t2_secs), expiry: at(lease.lease_secs), lease }
    }
}

/// A DHCPv4 client for one interface.
#[derive(Debug, Clone)]
pub struct Client {
    mac: Mac,
    config: ClientConfig,
    rng: u64,
    state: State,
    xid: u32,
    /// When the current exchange started (for the `secs` field and lease anchoring).
    exchange_start: Instant,
    /// Messages sent in the current state.
    attempts: u32,
    deadline: Option<Instant>,
    /// The offer being requested (REQUESTING) or the address being confirmed (INIT-REBOOT).
    offer: Option<Lease>,
    held: Option<Held>,
}

impl Client {
    /// A client for the interface with hardware address `mac`; `xid_seed` seeds the
    /// transaction ids and jitter (fixed in tests, random in the product).
    pub fn new(mac: Mac, xid_seed: u64) -> Self {
        Self::with_config(mac, xid_seed, ClientConfig::default())
    }

    /// Like [`Client::new`] with explicit timing.
    pub fn with_config(mac: Mac, xid_seed: u64, config: ClientConfig) -> Self {
        Client {
            mac,
            config,
            rng: xid_seed,
            state: State::Init,
            xid: 0,
            exchange_start: Instant::now(),
            attempts: 0,
            deadline: None,
            offer: None,
            held: None,
        }
    }

    /// Remember a lease from before a reboot: [`Client::on_start`] then asks to keep its
    /// address (INIT-REBOOT) instead of discovering.
    pub fn with_previous_lease(mut self, lease: Lease) -> Self {
        self.offer = Some(lease);
        self
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// The lease in use (BOUND, RENEWING, REBINDING).
    pub fn lease(&self) -> Option<&Lease> {
        self.held.as_ref().map(|held| &held.lease)
    }

    /// When [`Client::on_timer`] should next be called; `None` when nothing is scheduled.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Start: INIT-REBOOT with a remembered lease, otherwise DISCOVER.
    pub fn on_start(&mut self, now: Instant) -> Vec<Action> {
        match self.offer.clone() {
            Some(previous) => {
                self.begin_exchange(State::InitReboot, now);
                self.offer = Some(previous);
                vec![self.send_current(now)]
            }
            None => self.start_discover(now),
        }
    }

    /// Release the lease held, if any (RFC 2131 §4.4.6), and stop: INIT with nothing scheduled.
    pub fn release(&mut self, now: Instant) -> Vec<Action> {
        let held = self.held.take();
        self.begin_exchange(State::Init, now);
        self.deadline = None;
        match held {
            Some(held) => {
                let packet = packet::release(&self.mac, self.xid, held.lease.address, held.lease.server);
                vec![Action::Send { packet, to: Destination::Unicast(held.lease.server) }]
            }
            None => Vec::new(),
        }
    }

    /// A UDP payload arrived on port 68. Packets for other exchanges or clients, malformed
    /// ones and ones the current state does not expect are ignored (no actions).
    pub fn on_packet(&mut self, bytes: &[u8], now: Instant) -> Vec<Action> {
        let Ok(reply) = packet::decode(bytes, self.xid, &self.mac) else { return Vec::new() };
        match (self.state, reply) {
            (State::Selecting, Reply::Offer(offer)) => {
                self.begin_request(State::Requesting, offer, now);
                vec![self.send_current(now)]
            }
            (State::Requesting | State::InitReboot, Reply::Ack(lease)) => self.bind(lease, Action::Bind),
            (State::Requesting | State::InitReboot, Reply::Nak { .. }) => {
                self.offer = None;
                self.start_discover(now)
            }
            (State::Renewing | State::Rebinding, Reply::Ack(lease)) => {
                let same = self.lease().is_some_and(|held| held.address == lease.address);
                self.bind(lease, if same { Action::Renewed } else { Action::Bind })
            }
            (State::Renewing | State::Rebinding, Reply::Nak { .. }) => self.lose_lease(now),
            _ => Vec::new(),
        }
    }

    /// A deadline passed. Calls before [`Client::next_deadline`] do nothing.
    pub fn on_timer(&mut self, now: Instant) -> Vec<Action> {
        if self.deadline.is_none_or(|deadline| now < deadline) {
            return Vec::new();
        }
        match self.state {
            State::Init => self.start_discover(now),
            State::Selecting if self.attempts >= self.config.discover_attempts => {
                self.begin_exchange(State::Init, now);
                self.deadline = Some(now + self.config.retry_after);
                vec![Action::GaveUpForNow]
            }
            State::Requesting | State::InitReboot if self.attempts >= self.config.request_attempts => {
                self.offer = None;
                self.start_discover(now)
            }
            State::Selecting | State::Requesting | State::InitReboot => vec![self.send_current(now)],
            State::Bound => {
                self.begin_exchange(State::Renewing, now);
                vec![self.send_current(now)]
            }
            State::Renewing if self.held.as_ref().is_some_and(|h| h.t2.is_some_and(|t2| now >= t2)) => {
                self.begin_exchange(State::Rebinding, now);
                vec![self.send_current(now)]
            }
            State::Rebinding if self.held.as_ref().is_some_and(|h| h.expiry.is_some_and(|end| now >= end)) => self.lose_lease(now),
            State::Renewing | State::Rebinding => vec![self.send_current(now)],
        }
    }

    fn start_discover(&mut self, now: Instant) -> Vec<Action> {
        self.begin_exchange(State::Selecting, now);
        vec![self.send_current(now)]
    }

    fn lose_lease(&mut self, now: Instant) -> Vec<Action> {
        self.held = None;
        let mut actions = vec![Action::LeaseLost];
        actions.extend(self.start_discover(now));
        actions
    }

    /// Enter `state` with a fresh transaction id and attempt count.
    fn begin_exchange(&mut self, state: State, now: Instant) {
        self.state = state;
        self.xid = self.random() as u32;
        self.exchange_start = now;
        self.attempts = 0;
        self.offer = None;
    }

    /// REQUESTING keeps the DISCOVER's xid (RFC 2131 §4.4.1) but restarts the count.
    fn begin_request(&mut self, state: State, offer: Lease, now: Instant) {
        self.state = state;
        self.offer = Some(offer);
        self.exchange_start = now;
        self.attempts = 0;
    }

    fn bind(&mut self, lease: Lease, action: fn(Lease) -> Action) -> Vec<Action> {
        let held = Held::new(lease.clone(), self.exchange_start);
        self.deadline = held.t1;
        self.held = Some(held);
        self.state = State::Bound;
        self.offer = None;
        self.attempts = 0;
        vec![action(lease)]
    }

    /// Build (or rebuild) the message of the current state and schedule its retransmission.
    fn send_current(&mut self, now: Instant) -> Action {
        let secs = u16::try_from(now.saturating_duration_since(self.exchange_start).as_secs()).unwrap_or(u16::MAX);
        let held = self.held.as_ref().map(|h| h.lease.address).unwrap_or(Ipv4Addr::UNSPECIFIED);
        let (flavour, to) = match (self.state, &self.offer) {
            (State::Requesting, Some(offer)) => {
                (Some(RequestKind::Selecting { server: offer.server, requested: offer.address }), Destination::Broadcast)
            }
            (State::InitReboot, Some(previous)) => (Some(RequestKind::InitReboot { requested: previous.address }), Destination::Broadcast),
            (State::Renewing, _) => {
                let server = self.lease().map_or(Ipv4Addr::BROADCAST, |l| l.server);
                (Some(RequestKind::Renewing { ciaddr: held }), Destination::Unicast(server))
            }
            (State::Rebinding, _) => (Some(RequestKind::Rebinding { ciaddr: held }), Destination::Broadcast),
            _ => (None, Destination::Broadcast),
        };
        let packet = match flavour {
            Some(flavour) => packet::request(&self.mac, self.xid, secs, flavour),
            None => packet::discover(&self.mac, self.xid, secs),
        };
        self.deadline = Some(self.retransmit_at(now));
        self.attempts += 1;
        Action::Send { packet, to }
    }

    fn retransmit_at(&mut self, now: Instant) -> Instant {
        let renew_until = match self.state {
            State::Renewing => self.held.as_ref().and_then(|h| h.t2),
            State::Rebinding => self.held.as_ref().and_then(|h| h.expiry),
            _ => return now + self.backoff(self.attempts),
        };
        // RFC 2131 §4.4.5: half the time left until T2 (or expiry), at least the minimum.
        let Some(until) = renew_until else { return now + self.config.renew_retransmit_min };
        let half = until.saturating_duration_since(now) / 2;
        (now + half.max(self.config.renew_retransmit_min)).min(until)
    }

    /// base × 2^attempt, capped, ± base/4 jitter.
    fn backoff(&mut self, attempt: u32) -> Duration {
        let base = self.config.retransmit_base;
        let delay = base.saturating_mul(1u32.checked_shl(attempt).unwrap_or(u32::MAX)).min(self.config.retransmit_cap);
        let span = base / 2;
        let span_nanos = u64::try_from(span.as_nanos()).unwrap_or(u64::MAX - 1);
        let jitter = Duration::from_nanos(self.random() % (span_nanos + 1));
        (delay + jitter).saturating_sub(base / 4)
    }

    /// splitmix64: deterministic from the seed.
    fn random(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
#[path = "machine_tests.rs"]
mod tests;
