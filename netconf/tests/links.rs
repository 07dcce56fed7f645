//! Host tests for links, addresses, routes, bridges and veth pairs: each test runs in
//! throwaway network namespaces (never the host's), and keel's result is checked with
//! `ip -j`, an independent tool, and with real traffic across the veth.

use keel_netconf::{
    add_address, add_default_route, configure_container_interface, configure_container_interface_dual, create_veth_into_netns, del_address,
    del_default_route, delete_link, ensure_bridge, ensure_bridge_dual, first_ethernet, link_index, list_addresses, list_links, list_routes,
    set_mtu, NetnsRef,
};
use serde_json::Value;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, UdpSocket};
use std::os::fd::AsFd;
use std::process::Command;
use std::sync::mpsc;
use std::time::Duration;

/// Run `f` on a thread of its own moved into a fresh network namespace.
fn in_new_netns<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(move || {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("host tests run as root with netns support");
        f()
    })
    .join()
    .expect("test thread panicked")
}

/// `ip -j ARGS` in the calling thread's network namespace.
fn ip_json(args: &[&str]) -> Value {
    let out = Command::new("ip").arg("-j").args(args).output().expect("run ip");
    assert!(out.status.success(), "ip {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("ip -j output")
}

fn flags(link: &Value) -> Vec<String> {
    link["flags"].as_array().expect("flags").iter().map(|f| f.as_str().unwrap_or("").to_string()).collect()
}

fn v4(a: u8, b: u8, c: u8, d: u8) -> Ipv4Addr {
    Ipv4Addr::new(a, b, c, d)
}

#[test]
fn bridge_is_created_once_with_its_address_and_up() {
    in_new_netns(|| {
        assert_eq!(link_index("keel0").unwrap(), None, "negative control: no bridge yet");
        let first = ensure_bridge("keel0", v4(10, 88, 0, 1), 16).expect("create bridge");
        let second = ensure_bridge("keel0", v4(10, 88, 0, 1), 16).expect("bridge again");
        assert_eq!(first, second, "the same bridge is reused");
        assert_eq!(link_index("keel0").unwrap(), Some(first));

        let links = ip_json(&["-d", "link", "show", "keel0"]);
        assert_eq!(links[0]["linkinfo"]["info_kind"], "bridge");
        assert!(flags(&links[0]).contains(&"UP".to_string()), "{links}");
        let addrs = ip_json(&["addr", "show", "keel0"]);
        let infos: Vec<(String, u64)> = addrs[0]["addr_info"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["family"] == "inet")
            .map(|a| (a["local"].as_str().unwrap().to_string(), a["prefixlen"].as_u64().unwrap()))
            .collect();
        assert_eq!(infos, vec![("10.88.0.1".to_string(), 16)], "exactly one gateway address");

        let listed = list_links().unwrap();
        let bridge = listed.iter().find(|l| l.name == "keel0").expect("bridge listed");
        assert_eq!((bridge.index, bridge.kind.as_deref(), bridge.up), (first, Some("bridge"), true));
        assert!(bridge.mac.is_some());
        let lo = listed.iter().find(|l| l.name == "lo").expect("lo listed");
        assert_eq!((lo.kind.as_deref(), lo.mac), (None, None));
        assert_eq!(first_ethernet(), None, "lo and a bridge are no uplink");

        let not_a_bridge = ensure_bridge("lo", v4(10, 89, 0, 1), 16).unwrap_err().to_string();
        assert!(not_a_bridge.contains("create bridge lo: lo exists"), "{not_a_bridge}");
    });
}

#[test]
fn veth_peer_is_born_in_the_container_netns_and_traffic_flows() {
    let (netns_tx, netns_rx) = mpsc::channel::<std::fs::File>();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    // The "container": its own netns, configured from inside once the veth exists.
    let container = std::thread::spawn(move || {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare");
        netns_tx.send(std::fs::File::open("/proc/thread-self/ns/net").unwrap()).unwrap();
        go_rx.recv().unwrap();
        let before = ip_json(&["link", "show", "eth0"]);
        configure_container_interface("eth0", v4(10, 88, 0, 2), 16, v4(10, 88, 0, 1), Some(1400)).expect("configure");
        configure_container_interface("eth0", v4(10, 88, 0, 2), 16, v4(10, 88, 0, 1), Some(1400)).expect("again");
        let link = ip_json(&["link", "show", "eth0"]);
        let lo = ip_json(&["link", "show", "lo"]);
        let addrs = ip_json(&["addr", "show", "eth0"]);
        let routes = ip_json(&["route", "show", "default"]);
        // Real traffic: a datagram to the bridge's address and its answer back.
        let socket = UdpSocket::bind("10.88.0.2:0").unwrap();
        socket.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        socket.send_to(b"ping", "10.88.0.1:7777").unwrap();
        let mut buffer = [0u8; 16];
        let answer = socket.recv(&mut buffer).map(|n| buffer[..n].to_vec());
        (before, link, lo, addrs, routes, answer)
    });

    in_new_netns(move || {
        let bridge = ensure_bridge("keel0", v4(10, 88, 0, 1), 16).unwrap();
        let netns = netns_rx.recv().unwrap();
        create_veth_into_netns("vk1", bridge, "eth0", NetnsRef::Fd(netns.as_fd())).expect("create veth");
        let again = create_veth_into_netns("vk1", bridge, "eth0", NetnsRef::Fd(netns.as_fd())).unwrap_err();
        assert!(again.is_exists() && again.to_string().contains("create veth vk1 on keel0"), "{again}");

        let host = ip_json(&["link", "show", "vk1"]);
        assert_eq!(host[0]["master"], "keel0", "{host}");
        assert!(flags(&host[0]).contains(&"UP".to_string()), "{host}");
        assert_eq!(link_index("eth0").unwrap(), None, "the peer is not in the host netns");
        let vk1 = list_links().unwrap().into_iter().find(|l| l.name == "vk1").unwrap();
        assert_eq!((vk1.master, vk1.kind.as_deref()), (Some(bridge), Some("veth")));

        let server = UdpSocket::bind("10.88.0.1:7777").unwrap();
        server.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        go_tx.send(()).unwrap();
        let mut buffer = [0u8; 16];
        let (n, from) = server.recv_from(&mut buffer).expect("datagram from the container");
        assert_eq!(&buffer[..n], b"ping");
        assert_eq!(from.ip(), IpAddr::V4(v4(10, 88, 0, 2)));
        server.send_to(b"pong", from).unwrap();
    });

    let (before, link, lo, addrs, routes, answer) = container.join().unwrap();
    assert!(!flags(&before[0]).contains(&"UP".to_string()), "negative control: the peer is born down: {before}");
    assert!(flags(&link[0]).contains(&"UP".to_string()), "{link}");
    assert_eq!(link[0]["mtu"], 1400, "{link}");
    assert!(flags(&lo[0]).contains(&"UP".to_string()), "{lo}");
    let inet: Vec<&Value> = addrs[0]["addr_info"].as_array().unwrap().iter().filter(|a| a["family"] == "inet").collect();
    assert_eq!(inet.len(), 1, "{addrs}");
    assert_eq!((inet[0]["local"].as_str(), inet[0]["prefixlen"].as_u64()), (Some("10.88.0.2"), Some(16)));
    assert_eq!(routes.as_array().unwrap().len(), 1, "{routes}");
    assert_eq!((routes[0]["gateway"].as_str(), routes[0]["dev"].as_str()), (Some("10.88.0.1"), Some("eth0")));
    assert_eq!(answer.expect("answer from the bridge side"), b"pong");
}

#[test]
fn dual_stack_bridge_and_container_reach_each_other_over_ipv6_at_once() {
    let gateway6: Ipv6Addr = "fd00:88::1".parse().unwrap();
    let address6: Ipv6Addr = "fd00:88::2".parse().unwrap();
    let (netns_tx, netns_rx) = mpsc::channel::<std::fs::File>();
    let (go_tx, go_rx) = mpsc::channel::<()>();
    let container = std::thread::spawn(move || {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare");
        netns_tx.send(std::fs::File::open("/proc/thread-self/ns/net").unwrap()).unwrap();
        go_rx.recv().unwrap();
        let ipv6 = Some((address6, 64, gateway6));
        configure_container_interface_dual("eth0", v4(10, 88, 0, 2), 16, v4(10, 88, 0, 1), ipv6, None).expect("configure");
        configure_container_interface_dual("eth0", v4(10, 88, 0, 2), 16, v4(10, 88, 0, 1), ipv6, None).expect("again");
        let addrs = ip_json(&["-6", "addr", "show", "eth0"]);
        let routes = ip_json(&["-6", "route", "show", "default"]);
        // No DAD wait: the address is usable right away.
        let socket = UdpSocket::bind((address6, 0)).expect("bind the new address at once");
        socket.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        socket.send_to(b"ping6", (gateway6, 7777)).unwrap();
        let mut buffer = [0u8; 16];
        let answer = socket.recv(&mut buffer).map(|n| buffer[..n].to_vec());
        (addrs, routes, answer)
    });

    in_new_netns(move || {
        let bridge = ensure_bridge_dual("keel0", v4(10, 88, 0, 1), 16, Some((gateway6, 64))).unwrap();
        assert_eq!(ensure_bridge_dual("keel0", v4(10, 88, 0, 1), 16, Some((gateway6, 64))).unwrap(), bridge);
        let addrs = ip_json(&["-6", "addr", "show", "keel0"]);
        let global: Vec<&Value> = addrs[0]["addr_info"].as_array().unwrap().iter().filter(|a| a["scope"] == "global").collect();
        assert_eq!(global.len(), 1, "{addrs}");
        assert_eq!((global[0]["local"].as_str(), global[0]["prefixlen"].as_u64()), (Some("fd00:88::1"), Some(64)));
        let netns = netns_rx.recv().unwrap();
        create_veth_into_netns("vk6", bridge, "eth0", NetnsRef::Fd(netns.as_fd())).expect("create veth");
        let server = UdpSocket::bind((gateway6, 7777)).expect("bind the bridge's address at once");
        server.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        go_tx.send(()).unwrap();
        let mut buffer = [0u8; 16];
        let (n, from) = server.recv_from(&mut buffer).expect("datagram from the container");
        assert_eq!(&buffer[..n], b"ping6");
        assert_eq!(from.ip(), IpAddr::V6(address6));
        server.send_to(b"pong6", from).unwrap();
    });

    let (addrs, routes, answer) = container.join().unwrap();
    let global: Vec<&Value> = addrs[0]["addr_info"].as_array().unwrap().iter().filter(|a| a["scope"] == "global").collect();
    assert_eq!(global.len(), 1, "{addrs}");
    assert_eq!((global[0]["local"].as_str(), global[0]["prefixlen"].as_u64()), (Some("fd00:88::2"), Some(64)));
    assert_eq!(routes.as_array().unwrap().len(), 1, "{routes}");
    assert_eq!((routes[0]["gateway"].as_str(), routes[0]["dev"].as_str()), (Some("fd00:88::1"), Some("eth0")));
    assert_eq!(answer.expect("answer from the bridge side"), b"pong6");
}

#[test]
fn veth_peer_by_pid_lands_in_that_process_netns() {
    // A child process in a netns of its own plays the container's init.
    let mut child = Command::new("unshare").args(["--net", "sleep", "30"]).spawn().expect("unshare --net sleep");
    let pid = child.id() as i32;
    // Wait until the child has switched namespaces.
    let own = std::fs::read_link("/proc/self/ns/net").unwrap();
    while std::fs::read_link(format!("/proc/{pid}/ns/net")).map(|l| l == own).unwrap_or(true) {
        std::thread::sleep(Duration::from_millis(5));
    }
    let in_creator = in_new_netns(move || {
        let bridge = ensure_bridge("kbp", v4(10, 77, 0, 1), 24).unwrap();
        create_veth_into_netns("vkp", bridge, "eth0", NetnsRef::Pid(pid)).expect("create veth");
        link_index("eth0").unwrap()
    });
    let peer = Command::new("nsenter").args(["-t", &pid.to_string(), "-n", "ip", "-j", "link", "show", "eth0"]).output();
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(in_creator, None, "the peer is not in the creating thread's netns");
    let peer = peer.expect("nsenter");
    assert!(peer.status.success(), "eth0 not in the child's netns: {}", String::from_utf8_lossy(&peer.stderr));
    let peer: Value = serde_json::from_slice(&peer.stdout).unwrap();
    assert_eq!(peer[0]["ifname"], "eth0");
}

#[test]
fn default_route_is_replaced_listed_and_deleted() {
    in_new_netns(|| {
        let bridge = ensure_bridge("kb", v4(10, 1, 0, 1), 24).unwrap();
        add_default_route(v4(10, 1, 0, 254), None).expect("first default route");
        add_default_route(v4(10, 1, 0, 253), Some(bridge)).expect("replace it");
        let routes = ip_json(&["route", "show", "default"]);
        assert_eq!(routes.as_array().unwrap().len(), 1, "replaced, not added: {routes}");
        assert_eq!(routes[0]["gateway"], "10.1.0.253");
        let listed: Vec<_> = list_routes().unwrap().into_iter().filter(|r| r.is_default()).collect();
        assert_eq!(listed.len(), 1);
        assert_eq!((listed[0].gateway, listed[0].oif), (Some(IpAddr::V4(v4(10, 1, 0, 253))), Some(bridge)));
        assert!(list_routes().unwrap().iter().any(|r| r.destination == Some(IpAddr::V4(v4(10, 1, 0, 0))) && r.prefix == 24));

        del_default_route().expect("delete default route");
        assert_eq!(ip_json(&["route", "show", "default"]).as_array().unwrap().len(), 0);
        let error = del_default_route().unwrap_err().to_string();
        assert!(error.starts_with("delete default route: kernel said: "), "{error}");
        let unreachable = add_default_route(v4(192, 168, 9, 1), Some(bridge)).unwrap_err().to_string();
        assert!(unreachable.starts_with("set default route via 192.168.9.1 on kb: "), "{unreachable}");
    });
}

#[test]
fn addresses_mtu_and_deletion() {
    in_new_netns(|| {
        let bridge = ensure_bridge("ka", v4(10, 2, 0, 1), 24).unwrap();
        let v6: IpAddr = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1).into();
        add_address(bridge, v4(10, 3, 0, 1).into(), 24).unwrap();
        add_address(bridge, v6, 64).unwrap();
        let duplicate = add_address(bridge, v4(10, 3, 0, 1).into(), 24).unwrap_err();
        assert!(duplicate.is_exists());
        assert!(duplicate.to_string().starts_with("add address 10.3.0.1/24 to ka: kernel said: "), "{duplicate}");
        let mut mine: Vec<_> = list_addresses(Some(bridge))
            .unwrap()
            .into_iter()
            .filter(|a| !matches!(a.address, IpAddr::V6(v6) if v6.segments()[0] == 0xfe80))
            .map(|a| (a.address, a.prefix))
            .collect();
        mine.sort();
        assert_eq!(mine, vec![(v4(10, 2, 0, 1).into(), 24), (v4(10, 3, 0, 1).into(), 24), (v6, 64)]);
        assert!(list_addresses(None).unwrap().iter().any(|a| a.index == bridge && a.address == IpAddr::V4(v4(10, 2, 0, 1))));

        del_address(bridge, v4(10, 3, 0, 1).into(), 24).unwrap();
        let gone = ip_json(&["addr", "show", "ka"]);
        assert!(!gone.to_string().contains("10.3.0.1"), "{gone}");
        let again = del_address(bridge, v4(10, 3, 0, 1).into(), 24).unwrap_err().to_string();
        assert!(again.starts_with("delete address 10.3.0.1/24 from ka: "), "{again}");

        set_mtu(bridge, 1280).unwrap();
        assert_eq!(ip_json(&["link", "show", "ka"])[0]["mtu"], 1280);

        delete_link("ka").unwrap();
        assert_eq!(link_index("ka").unwrap(), None);
    });
}

#[test]
fn errors_on_a_missing_link_name_the_link() {
    in_new_netns(|| {
        let configure = configure_container_interface("nosuch0", v4(10, 0, 0, 2), 24, v4(10, 0, 0, 1), None).unwrap_err().to_string();
        assert!(configure.starts_with("configure nosuch0: no link nosuch0"), "{configure}");
        let delete = delete_link("nosuch0").unwrap_err().to_string();
        assert!(delete.starts_with("delete link nosuch0: kernel said: "), "{delete}");
        let address = add_address(999, v4(10, 0, 0, 2).into(), 24).unwrap_err().to_string();
        assert!(address.starts_with("add address 10.0.0.2/24 to ifindex 999: "), "{address}");
        let mtu = set_mtu(999, 1400).unwrap_err().to_string();
        assert!(mtu.starts_with("set mtu 1400 on ifindex 999: "), "{mtu}");
        let up = keel_netconf::set_up(999).unwrap_err().to_string();
        assert!(up.starts_with("set link ifindex 999 up: "), "{up}");
        let own = std::fs::File::open("/proc/thread-self/ns/net").unwrap();
        let veth = create_veth_into_netns("vk9", 999, "eth0", NetnsRef::Fd(own.as_fd())).unwrap_err().to_string();
        assert!(veth.starts_with("create veth vk9 on ifindex 999 with peer eth0 in the netns of fd "), "{veth}");
    });
}
