//! Host tests (root): keel's DHCP client against dnsmasq, across a veth pair joining two
//! throwaway network namespaces (never the host's). dnsmasq's own log is the independent
//! witness of what the server saw; for the silent server, a plain UDP socket on port 67
//! records what reached the wire.
//!
//! Needs `ip` (iproute2) and `dnsmasq` (dnsmasq-base; scripts/install-deps.sh installs it).
//! A missing tool fails the test with that message rather than skipping silently.

use std::fs::File;
use std::net::{Ipv4Addr, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use keel_netconf::dhcp::{self, Action, Client, ClientConfig, Destination, DhcpSocket, Lease, Mac, State};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sched::{setns, CloneFlags};

const MAC: Mac = [0x02, 0x6b, 0x65, 0x65, 0x6c, 0x01];
const SERVER: Ipv4Addr = Ipv4Addr::new(192, 168, 77, 1);
const CLIENT_IF: &str = "cli0";

/// Two namespaces joined by srv0 <-> cli0, and maybe dnsmasq on srv0. Dropping it (also
/// while a failed assertion unwinds) kills dnsmasq and deletes both namespaces.
struct Lab {
    server_ns: String,
    client_ns: String,
    dnsmasq: Option<Child>,
    log: PathBuf,
}

fn run(args: &[&str]) {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap_or_else(|e| panic!("{}: {e}", args[0]));
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

impl Lab {
    fn new(with_dnsmasq: bool) -> Lab {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let id = format!("{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        let mut lab = Lab {
            server_ns: format!("kd-srv-{id}"),
            client_ns: format!("kd-cli-{id}"),
            dnsmasq: None,
            log: std::env::temp_dir().join(format!("kd-dnsmasq-{id}.log")),
        };
        let (srv, cli) = (lab.server_ns.clone(), lab.client_ns.clone());
        run(&["ip", "netns", "add", &srv]);
        run(&["ip", "netns", "add", &cli]);
        run(&["ip", "-n", &srv, "link", "add", "srv0", "type", "veth", "peer", "name", CLIENT_IF, "netns", &cli]);
        run(&["ip", "-n", &cli, "link", "set", CLIENT_IF, "address", "02:6b:65:65:6c:01", "up"]);
        run(&["ip", "-n", &srv, "addr", "add", "192.168.77.1/24", "dev", "srv0"]);
        run(&["ip", "-n", &srv, "link", "set", "srv0", "up"]);
        if with_dnsmasq {
            lab.start_dnsmasq();
        }
        lab
    }

    fn start_dnsmasq(&mut self) {
        let log = File::create(&self.log).expect("dnsmasq log file");
        let child = Command::new("ip")
            .args(["netns", "exec", &self.server_ns, "dnsmasq", "--no-daemon", "--conf-file=/dev/null"])
            .args(["--interface=srv0", "--bind-interfaces", "--port=0", "--leasefile-ro", "--pid-file="])
            .args(["--dhcp-range=192.168.77.10,192.168.77.20,255.255.255.0,2m"])
            .args(["--dhcp-option=option:router,192.168.77.1", "--dhcp-option=option:dns-server,192.168.77.1"])
            .args(["--dhcp-option=option:T1,5", "--dhcp-option=option:T2,8", "--log-dhcp", "--log-facility=-"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn `ip netns exec dnsmasq`");
        self.dnsmasq = Some(child);
        let end = Instant::now() + Duration::from_secs(10);
        while !self.dnsmasq_log().contains("sockets bound exclusively") {
            assert!(Instant::now() < end, "dnsmasq did not start (install dnsmasq-base):\n{}", self.dnsmasq_log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn dnsmasq_log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Run `f` on a thread inside the client namespace (setns moves only that thread).
    fn in_client<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        in_netns(&self.client_ns, f)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(mut child) = self.dnsmasq.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        for ns in [&self.server_ns, &self.client_ns] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
        let _ = std::fs::remove_file(&self.log);
    }
}

fn in_netns<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|scope| {
        let handle = scope.spawn(|| {
            let file = File::open(format!("/run/netns/{ns}")).expect("netns file");
            setns(file, CloneFlags::CLONE_NEWNET).expect("setns (host tests run as root)");
            f()
        });
        handle.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    })
}

/// One line per action, without packet bytes, for failure messages.
fn describe(log: &[(Instant, Action)]) -> Vec<String> {
    log.iter()
        .map(|(_, action)| match action {
            Action::Send { packet, to } => format!("send type {:?} to {to:?}", dhcp::packet::message_type(packet)),
            other => format!("{other:?}"),
        })
        .collect()
}

/// The poll loop PID 1 runs, reduced to one client: carries out `pending`, then waits on
/// the socket or the next deadline, until `stop` accepts an action. Returns every action
/// with the time it was carried out.
fn drive(
    socket: &DhcpSocket,
    client: &mut Client,
    mut pending: Vec<Action>,
    timeout: Duration,
    mut stop: impl FnMut(&Action) -> bool,
) -> Vec<(Instant, Action)> {
    let end = Instant::now() + timeout;
    let mut log = Vec::new();
    loop {
        for action in pending.drain(..) {
            socket.send(&action).expect("send");
            let done = stop(&action);
            log.push((Instant::now(), action));
            if done {
                return log;
            }
        }
        let now = Instant::now();
        assert!(now < end, "timed out after {timeout:?}: {:?}", describe(&log));
        let wake = client.next_deadline().map_or(end, |deadline| deadline.min(end));
        let millis = (wake.saturating_duration_since(now).as_micros().div_ceil(1000)) as u64;
        let mut fds = [PollFd::new(socket.fd(), PollFlags::POLLIN)];
        poll(&mut fds, PollTimeout::try_from(millis).unwrap()).expect("poll");
        while let Some(bytes) = socket.recv() {
            pending.extend(client.on_packet(&bytes, Instant::now()));
        }
        pending.extend(client.on_timer(Instant::now()));
    }
}

fn assert_dnsmasq_lease(lease: &Lease) {
    let range = Ipv4Addr::new(192, 168, 77, 10)..=Ipv4Addr::new(192, 168, 77, 20);
    assert!(range.contains(&lease.address), "{lease:?}");
    assert_eq!((lease.prefix, lease.router, lease.server), (24, Some(SERVER), SERVER), "{lease:?}");
    assert_eq!(lease.dns, vec![SERVER]);
    assert_eq!((lease.lease_secs, lease.t1_secs, lease.t2_secs), (120, 5, 8));
}

#[test]
fn acquire_gets_a_lease_before_the_interface_has_an_address() {
    let lab = Lab::new(true);
    let lease = lab.in_client(|| dhcp::acquire(CLIENT_IF, MAC, Duration::from_secs(20)));
    let lease = lease.unwrap_or_else(|e| panic!("{e}\ndnsmasq:\n{}", lab.dnsmasq_log()));
    assert_dnsmasq_lease(&lease);
    let log = lab.dnsmasq_log();
    assert!(log.contains(&format!("DHCPACK(srv0) {} 02:6b:65:65:6c:01", lease.address)), "{log}");
}

#[test]
fn binds_then_renews_by_unicast_at_t1() {
    let lab = Lab::new(true);
    let (bound, renewal) = lab.in_client(|| {
        let socket = DhcpSocket::open(CLIENT_IF).expect("open DHCP socket");
        let config = ClientConfig { retransmit_base: Duration::from_millis(500), ..ClientConfig::default() };
        let mut client = Client::with_config(MAC, 77, config);
        let start = client.on_start(Instant::now());
        let bound = drive(&socket, &mut client, start, Duration::from_secs(15), |a| matches!(a, Action::Bind(_)));
        let Some((bound_at, Action::Bind(lease))) = bound.last().cloned() else { unreachable!() };
        // Applying the lease is the link code's job; the test does it with `ip`.
        let cidr = format!("{}/{}", lease.address, lease.prefix);
        run(&["ip", "-n", &lab.client_ns, "addr", "add", &cidr, "dev", CLIENT_IF]);
        let renewal =
            drive(&socket, &mut client, Vec::new(), Duration::from_secs(15), |a| matches!(a, Action::Renewed(_) | Action::Bind(_)));
        assert_eq!(client.state(), State::Bound);
        (lease, (bound_at, renewal))
    });
    assert_dnsmasq_lease(&bound);
    let (bound_at, renewal) = renewal;
    let sends: Vec<_> = renewal.iter().filter(|(_, a)| matches!(a, Action::Send { .. })).collect();
    assert_eq!(sends.len(), 1, "one renewal REQUEST: {:?}", describe(&renewal));
    let (sent_at, Action::Send { packet, to }) = sends[0] else { unreachable!() };
    assert_eq!(*to, Destination::Unicast(SERVER), "renewal goes unicast to the server");
    assert_eq!(dhcp::packet::message_type(packet), Some(3));
    assert_eq!(&packet[12..16], &bound.address.octets(), "ciaddr is the bound address");
    let t1 = *sent_at - bound_at;
    assert!(t1 >= Duration::from_millis(4500) && t1 <= Duration::from_millis(5500), "renewed after {t1:?}, T1 is 5 s");
    assert_eq!(renewal.last().unwrap().1, Action::Renewed(bound.clone()), "same address renewed");
    let log = lab.dnsmasq_log();
    let acks = log.matches(&format!("DHCPACK(srv0) {}", bound.address)).count();
    assert_eq!(acks, 2, "dnsmasq acked the first request and the renewal:\n{log}");
}

/// Receives on port 67 in the server namespace for `window`, answering nothing.
fn silent_server(ns: &str, window: Duration) -> Vec<(Instant, Vec<u8>, std::net::SocketAddr)> {
    in_netns(ns, || {
        let socket = UdpSocket::bind("0.0.0.0:67").expect("bind :67");
        socket.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        let end = Instant::now() + window;
        let mut seen = Vec::new();
        let mut buf = [0u8; 1500];
        while Instant::now() < end {
            if let Ok((len, from)) = socket.recv_from(&mut buf) {
                seen.push((Instant::now(), buf[..len].to_vec(), from));
            }
        }
        seen
    })
}

#[test]
fn silent_server_backoff_grows_then_client_gives_up_without_blocking() {
    let lab = Lab::new(false);
    let base = Duration::from_millis(100);
    let config = ClientConfig { retransmit_base: base, discover_attempts: 4, ..ClientConfig::default() };
    let (seen, (log, state, longest_step)) = std::thread::scope(|scope| {
        let server = scope.spawn(|| silent_server(&lab.server_ns, Duration::from_secs(3)));
        std::thread::sleep(Duration::from_millis(200)); // the listener binds first
        let client = lab.in_client(|| {
            let socket = DhcpSocket::open(CLIENT_IF).expect("open DHCP socket");
            let mut client = Client::with_config(MAC, 5, config);
            let started = Instant::now();
            let start = client.on_start(started);
            let longest_step = started.elapsed();
            let log = drive(&socket, &mut client, start, Duration::from_secs(5), |a| *a == Action::GaveUpForNow);
            (log, client.state(), longest_step)
        });
        (server.join().unwrap(), client)
    });
    assert_eq!(state, State::Init);
    assert!(longest_step < Duration::from_millis(50), "on_start blocked for {longest_step:?}");
    let sends: Vec<Instant> = log.iter().filter(|(_, a)| matches!(a, Action::Send { .. })).map(|(t, _)| *t).collect();
    assert_eq!(sends.len(), 4, "{:?}", describe(&log));
    let gaps: Vec<Duration> = sends.windows(2).map(|w| w[1] - w[0]).collect();
    for (gap, nominal_ms) in gaps.iter().zip([100u64, 200, 400]) {
        let nominal = Duration::from_millis(nominal_ms);
        assert!(*gap >= nominal - base / 4 && *gap <= nominal + base / 4 + Duration::from_millis(40), "{gaps:?}");
    }
    let gave_up_after = log.last().unwrap().0 - sends[3];
    assert!(gave_up_after >= Duration::from_millis(700), "waited for the last DISCOVER: {gave_up_after:?}");
    // What reached the wire: four broadcast DISCOVERs from 0.0.0.0:68 with the BROADCAST flag.
    assert_eq!(seen.len(), 4, "DISCOVERs seen by the silent server");
    for (_, packet, from) in &seen {
        assert_eq!(from.to_string(), "0.0.0.0:68");
        assert_eq!((dhcp::packet::message_type(packet), packet[10] & 0x80), (Some(1), 0x80));
    }
    let wire_gaps: Vec<Duration> = seen.windows(2).map(|w| w[1].0 - w[0].0).collect();
    assert!(wire_gaps.windows(2).all(|w| w[1] > w[0]), "growing on the wire too: {wire_gaps:?}");
}
