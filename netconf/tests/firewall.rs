//! Behavioural host tests of keel's firewall (issue 11, "host firewall safe by default"):
//! real traffic between throwaway network namespaces (never the host's), with keel's
//! ruleset applied by `nft::apply` in the "host" namespace, and each attack also tried
//! without the rule that stops it (the negative control), where it must succeed.
//!
//! The lab: `host` (bridge `keel0` 10.88.0.1/16 + fd00:88::1/64, uplink `up0`
//! 10.0.2.15/24 + fd00:2::15/64, forwarding on), two "containers" `c1` (10.88.0.2,
//! fd00:88::2) and `c2` (10.88.0.3, fd00:88::3) on the bridge, and `outside` (10.0.2.2,
//! fd00:2::2, the host's default gateway, and the cloud metadata addresses on its lo).
//! Traffic comes from `fwprobe.py` (python3) run in a namespace with `ip netns exec`.

use keel_netconf::nft::{apply, BridgeRule, FirewallState, Proto, Published};
use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::AsFd;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const PROBE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fwprobe.py");

/// Namespaces, links and background servers of one test; removed on drop.
struct Lab {
    prefix: String,
    servers: Vec<(Child, Arc<Mutex<String>>)>,
}

fn check(what: &str, out: Output) -> Output {
    assert!(out.status.success(), "{what}: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    out
}

impl Lab {
    fn new() -> Lab {
        static COUNT: AtomicUsize = AtomicUsize::new(0);
        let prefix = format!("kfw{}-{}", std::process::id(), COUNT.fetch_add(1, Ordering::SeqCst));
        let lab = Lab { prefix, servers: Vec::new() };
        for ns in ["host", "c1", "c2", "outside"] {
            check("ip netns add", Command::new("ip").args(["netns", "add", &lab.ns(ns)]).output().expect("run ip"));
            lab.ip(ns, &["link", "set", "lo", "up"]);
        }
        let (host, outside) = (lab.ns("host"), lab.ns("outside"));
        lab.ip("host", &["link", "add", "up0", "type", "veth", "peer", "name", "eth0", "netns", &outside]);
        lab.ip("host", &["link", "add", "keel0", "type", "bridge"]);
        for (ns, dev, v4, v6) in [
            ("host", "up0", "10.0.2.15/24", "fd00:2::15/64"),
            ("host", "keel0", "10.88.0.1/16", "fd00:88::1/64"),
            ("outside", "eth0", "10.0.2.2/24", "fd00:2::2/64"),
        ] {
            lab.ip(ns, &["addr", "add", v4, "dev", dev]);
            lab.ip(ns, &["addr", "add", v6, "dev", dev, "nodad"]);
            lab.ip(ns, &["link", "set", dev, "up"]);
        }
        lab.ip("host", &["route", "add", "default", "via", "10.0.2.2"]);
        lab.ip("host", &["-6", "route", "add", "default", "via", "fd00:2::2"]);
        // The metadata addresses on outside's lo (this kernel has no dummy driver).
        lab.ip("outside", &["addr", "add", "169.254.169.254/32", "dev", "lo"]);
        lab.ip("outside", &["addr", "add", "fd00:ec2::254/128", "dev", "lo", "nodad"]);
        for (ns, veth, last) in [("c1", "kv2", 2), ("c2", "kv3", 3)] {
            let netns = lab.ns(ns);
            lab.ip("host", &["link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", &netns]);
            lab.ip("host", &["link", "set", veth, "master", "keel0", "up"]);
            lab.ip(ns, &["addr", "add", &format!("10.88.0.{last}/16"), "dev", "eth0"]);
            lab.ip(ns, &["addr", "add", &format!("fd00:88::{last}/64"), "dev", "eth0", "nodad"]);
            lab.ip(ns, &["link", "set", "eth0", "up"]);
            lab.ip(ns, &["route", "add", "default", "via", "10.88.0.1"]);
            lab.ip(ns, &["-6", "route", "add", "default", "via", "fd00:88::1"]);
        }
        check(
            "sysctl",
            Command::new("ip")
                .args([
                    "netns",
                    "exec",
                    &host,
                    "sysctl",
                    "-qw",
                    "net.ipv4.ip_forward=1",
                    "net.ipv6.conf.all.forwarding=1",
                    // A new namespace inherits IPv4's `all` from the machine's; keel's boot
                    // starts from the kernel's 0 (and turns an inherited 1 off).
                    "net.ipv4.conf.all.route_localnet=0",
                ])
                .output()
                .unwrap(),
        );
        lab
    }

    fn ns(&self, role: &str) -> String {
        format!("{}-{role}", self.prefix)
    }

    fn ip(&self, ns: &str, args: &[&str]) {
        let out = Command::new("ip").args(["-n", &self.ns(ns)]).args(args).output().expect("run ip");
        check(&format!("ip -n {ns} {args:?}"), out);
    }

    /// Run a command in namespace `ns`.
    fn run(&self, ns: &str, args: &[&str]) -> Output {
        Command::new("ip").args(["netns", "exec", &self.ns(ns)]).args(args).output().expect("run ip netns exec")
    }

    fn probe(&self, ns: &str, args: &[&str]) -> Output {
        let mut all = vec!["python3", PROBE];
        all.extend_from_slice(args);
        self.run(ns, &all)
    }

    /// `fwprobe.py tcp` from `ns`: what the server said, or None.
    fn tcp(&self, ns: &str, addr: &str, port: u16) -> Option<String> {
        let out = self.probe(ns, &["tcp", addr, &port.to_string(), "2"]);
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `fwprobe.py udp` from `ns`: the answer, or None.
    fn udp(&self, ns: &str, addr: &str, port: u16, payload: &str) -> Option<String> {
        let out = self.probe(ns, &["udp", addr, &port.to_string(), payload, "2"]);
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Start a server in `ns`; returns the index of its output log once it says "ready".
    fn serve(&mut self, ns: &str, args: &[&str]) -> usize {
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.ns(ns), "python3", PROBE])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start server");
        let log = Arc::new(Mutex::new(String::new()));
        let stdout = child.stdout.take().unwrap();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                sink.lock().unwrap().push_str(&format!("{line}\n"));
            }
        });
        self.servers.push((child, log));
        let index = self.servers.len() - 1;
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.log(index).contains("ready") {
            assert!(Instant::now() < deadline, "server {args:?} in {ns} did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        index
    }

    fn log(&self, index: usize) -> String {
        self.servers[index].1.lock().unwrap().clone()
    }

    /// Apply keel's ruleset for `state` in the host namespace, and route_localnet exactly
    /// where keel's PID 1 turns it on (`FirewallState::localnet_bridges`).
    fn apply(&self, state: &FirewallState) {
        let path = format!("/run/netns/{}", self.ns("host"));
        let state = state.clone();
        std::thread::spawn(move || {
            let file = std::fs::File::open(&path).expect("open netns");
            nix::sched::setns(file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
            apply(&state).expect("apply keel's ruleset");
            for bridge in &state.bridges {
                let on = state.localnet_bridges().contains(&bridge.name.as_str());
                keel_netconf::set_route_localnet(&bridge.name, on).expect("route_localnet");
            }
        })
        .join()
        .unwrap();
    }

    /// Delete the rule of chain `chain` whose listing contains `text` (a negative control:
    /// keel's ruleset without exactly that rule).
    fn delete_rule(&self, chain: &str, text: &str) {
        let out = check("nft -a list", self.run("host", &["nft", "-a", "list", "chain", "inet", "keel", chain]));
        let listing = String::from_utf8_lossy(&out.stdout).into_owned();
        let line = listing.lines().find(|l| l.contains(text)).unwrap_or_else(|| panic!("no rule {text:?} in {listing}"));
        let handle = line.rsplit("# handle ").next().unwrap().trim();
        check("nft delete rule", self.run("host", &["nft", "delete", "rule", "inet", "keel", chain, "handle", handle]));
    }

    fn bridge_mac(&self) -> String {
        let out = check("ip link", self.run("host", &["ip", "-j", "link", "show", "keel0"]));
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        json[0]["address"].as_str().unwrap().to_string()
    }

    fn sysctl(&self, ns: &str, key: &str) -> String {
        let out = check("sysctl", self.run(ns, &["sysctl", "-n", key]));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for (child, _) in &mut self.servers {
            let _ = child.kill();
            let _ = child.wait();
        }
        for ns in ["host", "c1", "c2", "outside"] {
            let _ = Command::new("ip").args(["netns", "del", &self.ns(ns)]).output();
        }
    }
}

/// keel's state for the lab: keel0 with its IPv6 prefix, tcp/8080 published to c1:80 on
/// every address, udp 127.0.0.1:9090 published to c2:9090 (so keel0 needs route_localnet),
/// input dropped, nothing allowed, no metadata access.
fn state() -> FirewallState {
    FirewallState {
        uplink: Some("up0".into()),
        container_subnets: vec![(Ipv4Addr::new(10, 88, 0, 0), 16)],
        container_subnets6: vec![(Ipv6Addr::new(0xfd00, 0x88, 0, 0, 0, 0, 0, 0), 64)],
        bridges: vec![BridgeRule { name: "keel0".into(), subnet: (Ipv4Addr::new(10, 88, 0, 0), 16), isolated: false, metadata: false }],
        published: vec![
            Published { proto: Proto::Tcp, host_ip: None, host_port: 8080, dest: Ipv4Addr::new(10, 88, 0, 2), dest_port: 80 },
            Published {
                proto: Proto::Udp,
                host_ip: Some(Ipv4Addr::LOCALHOST),
                host_port: 9090,
                dest: Ipv4Addr::new(10, 88, 0, 3),
                dest_port: 9090,
            },
        ],
        input_drop: true,
        allow: Vec::new(),
        metadata_hosts: Vec::new(),
        metadata_hosts6: Vec::new(),
    }
}

/// Wait for a datagram to show up (or not) in a server's log.
fn seen(lab: &Lab, server: usize, marker: &str) -> bool {
    let deadline = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < deadline {
        if lab.log(server).contains(marker) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

#[test]
fn input_drops_unpublished_ports_and_allow_is_bound_to_the_uplink() {
    let mut lab = Lab::new();
    lab.serve("host", &["serve-tcp", "0.0.0.0", "8081", "host-service"]);
    lab.serve("c1", &["serve-tcp", "::", "80", "from-c1"]);
    lab.apply(&state());

    // Default (input dropped): an unpublished host port is closed from the uplink side and
    // from a container; the published port and ping still work.
    assert_eq!(lab.tcp("outside", "10.0.2.15", 8081), None, "unpublished port reachable from outside");
    assert_eq!(lab.tcp("c1", "10.88.0.1", 8081), None, "host service reachable from a container");
    assert_eq!(lab.tcp("outside", "10.0.2.15", 8080).as_deref(), Some("from-c1"), "the published port must work");
    assert!(lab.probe("outside", &["ping", "10.0.2.15"]).status.success(), "ICMP echo must pass");
    assert!(lab.probe("outside", &["ping", "fd00:2::15"]).status.success(), "ICMPv6 (ND, echo) must pass");

    // allow = ["tcp/8081"]: open from the uplink only; a container still gets nothing,
    // neither at its gateway nor at the uplink's address.
    let mut allowed = state();
    allowed.allow = vec![(Proto::Tcp, 8081)];
    lab.apply(&allowed);
    assert_eq!(lab.tcp("outside", "10.0.2.15", 8081).as_deref(), Some("host-service"));
    assert_eq!(lab.tcp("c1", "10.88.0.1", 8081), None, "allow reached through the bridge");
    assert_eq!(lab.tcp("c1", "10.0.2.15", 8081), None, "allow reached through the bridge (uplink address)");

    // Negative control: input = "accept" — the same attempts succeed.
    let mut open = state();
    open.input_drop = false;
    lab.apply(&open);
    assert_eq!(lab.tcp("outside", "10.0.2.15", 8081).as_deref(), Some("host-service"), "control: outside");
    assert_eq!(lab.tcp("c1", "10.88.0.1", 8081).as_deref(), Some("host-service"), "control: container");
}

#[test]
fn crafted_frames_to_127_0_0_1_do_not_reach_the_host_or_localhost_published_ports() {
    let mut lab = Lab::new();
    let host_service = lab.serve("host", &["serve-udp", "127.0.0.1", "9000"]);
    let published = lab.serve("c2", &["serve-udp", "0.0.0.0", "9090"]);
    lab.apply(&state());
    // keel turns route_localnet on for keel0 only (a port is published on 127.0.0.1 to c2).
    assert_eq!(lab.sysctl("host", "net.ipv4.conf.keel0.route_localnet"), "1");
    assert_eq!(lab.sysctl("host", "net.ipv4.conf.all.route_localnet"), "0");
    assert_eq!(lab.sysctl("host", "net.ipv4.conf.up0.route_localnet"), "0");

    // The host itself uses its 127.0.0.1-published port (DNAT out of keel0, replies back).
    assert_eq!(lab.udp("host", "127.0.0.1", 9090, "from-the-host").as_deref(), Some("echo:from-the-host"));

    // c1 (CAP_NET_RAW) sends frames for 127.0.0.1 to the bridge's MAC.
    let mac = lab.bridge_mac();
    let attack = |payload: &str, port: &str| {
        check("frame", lab.probe("c1", &["frame", "eth0", &mac, "10.88.0.2", "127.0.0.1", port, payload]));
    };
    attack("attack-host-1", "9000");
    attack("attack-published-1", "9090");
    assert!(!seen(&lab, host_service, "attack-host-1"), "a container reached 127.0.0.1:9000 on the host: {}", lab.log(host_service));
    assert!(!seen(&lab, published, "attack-published-1"), "a container reached the port published on 127.0.0.1: {}", lab.log(published));

    // route_localnet on `all` (as a machine may have it before keel runs): still stopped.
    check("sysctl", lab.run("host", &["sysctl", "-qw", "net.ipv4.conf.all.route_localnet=1"]));
    attack("attack-host-all", "9000");
    assert!(!seen(&lab, host_service, "attack-host-all"), "route_localnet on all: reached 127.0.0.1:9000: {}", lab.log(host_service));
    check("sysctl", lab.run("host", &["sysctl", "-qw", "net.ipv4.conf.all.route_localnet=0"]));

    // With input = "accept" the guard alone still stops both.
    let mut open = state();
    open.input_drop = false;
    lab.apply(&open);
    attack("attack-host-open", "9000");
    attack("attack-published-open", "9090");
    assert!(!seen(&lab, host_service, "attack-host-open"), "input = accept: reached 127.0.0.1:9000: {}", lab.log(host_service));
    assert!(!seen(&lab, published, "attack-published-open"), "input = accept: reached the localhost port: {}", lab.log(published));

    // Negative control: that ruleset without the guard rule — both attacks get through.
    lab.delete_rule("guard", "127.0.0.0/8");
    attack("attack-host-2", "9000");
    attack("attack-published-2", "9090");
    assert!(seen(&lab, host_service, "attack-host-2"), "control: the frame did not reach the host service: {}", lab.log(host_service));
    assert!(seen(&lab, published, "attack-published-2"), "control: the frame did not reach the published port: {}", lab.log(published));

    // Without any port on 127.0.0.1, keel leaves route_localnet off everywhere.
    let mut no_localhost = state();
    no_localhost.published.retain(|p| p.host_ip.is_none());
    lab.apply(&no_localhost);
    assert_eq!(lab.sysctl("host", "net.ipv4.conf.keel0.route_localnet"), "0");
}

#[test]
fn containers_reach_the_metadata_service_only_when_switched_on() {
    let mut lab = Lab::new();
    lab.serve("outside", &["serve-tcp", "::", "80", "metadata"]);
    lab.apply(&state());
    let reach = |ns: &str| (lab.tcp(ns, "169.254.169.254", 80).is_some(), lab.tcp(ns, "fd00:ec2::254", 80).is_some());

    // Default: no container reaches it (IPv4 and IPv6); the host does.
    assert_eq!(reach("c1"), (false, false), "a container reached the metadata service");
    assert_eq!(reach("host"), (true, true), "the host must keep its access");

    // Per container (metadata_access = true on c1): c1 reaches it, c2 still does not.
    let mut one = state();
    one.metadata_hosts = vec![Ipv4Addr::new(10, 88, 0, 2)];
    one.metadata_hosts6 = vec![Ipv6Addr::new(0xfd00, 0x88, 0, 0, 0, 0, 0, 2)];
    lab.apply(&one);
    assert_eq!(reach("c1"), (true, true), "control: c1 with metadata_access");
    assert_eq!(reach("c2"), (false, false), "c2 reached it through c1's switch");

    // Per network (metadata = true on keel0): every container of it.
    let mut network = state();
    network.bridges[0].metadata = true;
    lab.apply(&network);
    assert_eq!(reach("c2"), (true, true), "control: c2 on a network with metadata = true");

    // The address bound on the host itself (input accepted, so only the guard decides).
    lab.ip("host", &["addr", "add", "169.254.169.254/32", "dev", "lo"]);
    lab.serve("host", &["serve-tcp", "169.254.169.254", "80", "host-local-metadata"]);
    let mut open = state();
    open.input_drop = false;
    lab.apply(&open);
    assert_eq!(lab.tcp("c1", "169.254.169.254", 80), None, "a container reached the host-local metadata address");
    open.metadata_hosts = vec![Ipv4Addr::new(10, 88, 0, 2)];
    lab.apply(&open);
    assert_eq!(lab.tcp("c1", "169.254.169.254", 80).as_deref(), Some("host-local-metadata"), "control");
}

#[test]
fn new_inbound_forwards_to_containers_are_dropped_unless_dnated_ipv4_and_ipv6() {
    let mut lab = Lab::new();
    lab.serve("c1", &["serve-tcp", "::", "80", "from-c1"]);
    lab.serve("outside", &["serve-tcp", "::", "7000", "outside"]);
    // A neighbour on the uplink routes the container subnets via the host.
    lab.ip("outside", &["route", "add", "10.88.0.0/16", "via", "10.0.2.15"]);
    lab.ip("outside", &["-6", "route", "add", "fd00:88::/64", "via", "fd00:2::15"]);
    lab.apply(&state());

    assert_eq!(lab.tcp("outside", "10.88.0.2", 80), None, "reached a container directly over IPv4");
    assert_eq!(lab.tcp("outside", "fd00:88::2", 80), None, "reached a container directly over IPv6");
    // What must keep working: the published port, and containers going out (both families).
    assert_eq!(lab.tcp("outside", "10.0.2.15", 8080).as_deref(), Some("from-c1"));
    assert_eq!(lab.tcp("c1", "10.0.2.2", 7000).as_deref(), Some("outside"));
    assert_eq!(lab.tcp("c1", "fd00:2::2", 7000).as_deref(), Some("outside"));
    // Containers on the same bridge still talk to each other.
    assert_eq!(lab.tcp("c2", "10.88.0.2", 80).as_deref(), Some("from-c1"));

    // Negative control: keel's ruleset without the final drop — both get through.
    lab.delete_rule("forward", "oifname @bridges drop");
    assert_eq!(lab.tcp("outside", "10.88.0.2", 80).as_deref(), Some("from-c1"), "control: IPv4");
    assert_eq!(lab.tcp("outside", "fd00:88::2", 80).as_deref(), Some("from-c1"), "control: IPv6");
}
