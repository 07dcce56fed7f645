//! Network boot test: the uplink by DHCP from QEMU's user network, masquerade out,
//! a published port in through QEMU's hostfwd (and gone when its container stops),
//! two networks one of them isolated, and the default input policy (drop: no
//! `[firewall]` section).

use keel_build::qemu::HostFwd;
use keel_qemu_tests::free_port;
use keel_qemu_tests::{build_image, target_dir, BootOptions, Guest};
use keel_supervisor::control::Command;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

const NETWORK_TOML: &str = r#"
[[network]]
name = "keel0"
subnet = "10.88.0.0/16"

[[network]]
name = "iso1"
subnet = "10.89.0.0/16"
isolated = true
"#;

const WEB: &str = "image = \"/usr/share/keel/images/busybox\"\ncommand = [\"/bin/httpd\", \"-f\", \"-p\", \"80\", \"-h\", \"/www\"]\n";

/// Declarations: web (published 80), peer (same network), loner (isolated network).
fn declarations() -> Vec<(&'static str, String)> {
    vec![
        ("web", format!("{WEB}ports = [\"80:80/tcp\"]\nstop_timeout = \"1s\"\n")),
        ("peer", format!("{WEB}stop_timeout = \"1s\"\n")),
        ("loner", format!("{WEB}network = \"iso1\"\nstop_timeout = \"1s\"\n")),
    ]
}

/// Serve one fixed answer to every HTTP request, on the machine running QEMU.
fn serve_marker() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let mut stream = stream;
            let mut request = [0u8; 1024];
            let _ = stream.read(&mut request);
            let _ = stream.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 19\r\n\r\nfrom-the-qemu-host\n");
        }
    });
    port
}

/// GET / on localhost:`port` of the machine running QEMU; the body, or None.
fn fetch(port: u16) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    stream.write_all(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    answer.split_once("\r\n\r\n").map(|(_, body)| body.to_string()).filter(|b| !b.is_empty())
}

fn fetch_until(port: u16, want: bool, timeout: Duration) -> Option<String> {
    let deadline = Instant::now() + timeout;
    loop {
        let body = fetch(port);
        if body.is_some() == want || Instant::now() > deadline {
            return body;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[test]
fn dhcp_uplink_masquerade_published_ports_isolation_and_input_policy() {
    let name = "network";
    let dir = target_dir().join("qemu-tests").join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("network.toml"), NETWORK_TOML).unwrap();
    std::fs::write(dir.join("index.html"), "from-the-container\n").unwrap();
    let mut host = String::from(
        "hostname = \"keel-net\"\nbusybox = \"/bin/busybox\"\n\n[kernel]\nmodules = [\"virtio_pci\", \"virtio_console\", \"virtio_net\", \"button\", \"evdev\"]\n\n[control]\nvirtio_serial = true\nshutdown_grace_secs = 2\n\n[[images]]\nname = \"busybox\"\nbusybox = \"/bin/busybox\"\n\n[[files]]\nsource = \"network.toml\"\npath = \"/etc/keel/network.toml\"\n\n[[files]]\nsource = \"@PROBE@\"\npath = \"/usr/share/keel/images/busybox/usr/bin/keel-probe\"\nmode = 0o755\n\n[[files]]\nsource = \"@PROBE@\"\npath = \"/usr/bin/keel-probe\"\nmode = 0o755\n\n[[files]]\nsource = \"index.html\"\npath = \"/usr/share/keel/images/busybox/www/index.html\"\n",
    );
    for (container, text) in declarations() {
        std::fs::write(dir.join(format!("{container}.toml")), text).unwrap();
        host.push_str(&format!("\n[[files]]\nsource = \"{container}.toml\"\npath = \"/etc/keel/containers/{container}.toml\"\n"));
    }
    let image = build_image(name, &host, env!("CARGO_BIN_EXE_keel-probe").as_ref());
    let published = free_port();
    let unpublished = free_port();
    let hostfwd =
        vec![format!("tcp:{published}-:80").parse::<HostFwd>().unwrap(), format!("tcp:{unpublished}-:8081").parse::<HostFwd>().unwrap()];
    let mut guest =
        Guest::boot(&image, name, BootOptions { extra_cmdline: String::new(), allow_reboot: false, hostfwd, ..Default::default() });
    guest.wait_ready();
    for container in ["web", "peer", "loner"] {
        guest.wait_container(container, Duration::from_secs(60), |c| c.state == "running");
    }

    // 1. The uplink has its lease from QEMU's DHCP server.
    let keel0 = guest.call(Command::NetworkInspect { name: "keel0".into() }, Duration::from_secs(30)).unwrap();
    let uplink = &keel0["uplink"];
    assert_eq!((uplink["mode"].as_str(), uplink["address"].as_str()), (Some("dhcp"), Some("10.0.2.15/24")), "{keel0}");
    assert_eq!(uplink["gateway"].as_str(), Some("10.0.2.2"), "{keel0}");
    let resolv = guest.exec(&["cat", "/etc/resolv.conf"]);
    assert!(resolv.stdout.contains("nameserver 10.0.2.3"), "{resolv:?}");

    // 1. A container reaches the machine running QEMU through masquerade.
    let marker = serve_marker();
    let out = guest.exec_in(Some("peer"), &["keel-probe", "fetch", &format!("10.0.2.2:{marker}"), "10"]);
    assert_eq!(out.stdout, "from-the-qemu-host\n", "{out:?}");
    let container_resolv = guest.exec_in(Some("peer"), &["cat", "/etc/resolv.conf"]);
    assert!(container_resolv.stdout.contains("nameserver 10.0.2.3"), "{container_resolv:?}");

    // 2. The published port answers from the container, through QEMU's hostfwd.
    assert_eq!(fetch_until(published, true, Duration::from_secs(20)).as_deref(), Some("from-the-container\n"));

    // 3. Two containers on keel0 reach each other; the isolated network reaches neither.
    let address = |container: &str, network: &str| -> String {
        let detail = guest.call(Command::NetworkInspect { name: network.into() }, Duration::from_secs(30)).unwrap();
        detail["attached"]
            .as_array()
            .and_then(|list| list.iter().find(|a| a["container"] == container))
            .and_then(|a| a["address"].as_str())
            .unwrap_or_else(|| guest.fail(&format!("{container} is not attached to {network}: {detail}")))
            .to_string()
    };
    let web_ip = address("web", "keel0");
    let loner_ip = address("loner", "iso1");
    assert!(loner_ip.starts_with("10.89."), "{loner_ip}");
    let same = guest.exec_in(Some("peer"), &["keel-probe", "fetch", &format!("{web_ip}:80")]);
    assert_eq!(same.stdout, "from-the-container\n", "peer cannot reach web on keel0: {same:?}");
    let across = guest.exec_in(Some("loner"), &["keel-probe", "fetch", &format!("{web_ip}:80"), "3"]);
    assert_ne!(across.exit_code, 0, "the isolated network reached keel0: {across:?}");
    let back = guest.exec_in(Some("peer"), &["keel-probe", "fetch", &format!("{loner_ip}:80"), "3"]);
    assert_ne!(back.exit_code, 0, "keel0 reached the isolated network: {back:?}");

    // 4. The default input policy (drop): a host service on an unpublished port is
    // unreachable from outside and from a container (through its bridge).
    let started = guest.exec(&["httpd", "-p", "8081", "-h", "/usr/share/keel/images/busybox/www"]);
    assert_eq!(started.exit_code, 0, "{started:?}");
    let inside = guest.exec(&["keel-probe", "fetch", "127.0.0.1:8081"]);
    assert_eq!(inside.stdout, "from-the-container\n", "the host service does not run: {inside:?}");
    assert_eq!(fetch(unpublished), None, "an unpublished host port is reachable from outside by default");
    let from_container = guest.exec_in(Some("peer"), &["keel-probe", "fetch", "10.88.0.1:8081", "3"]);
    assert_ne!(from_container.exit_code, 0, "a container reached a host service through its bridge: {from_container:?}");
    assert!(fetch(published).is_some(), "the published port stopped answering");
    // No port is published on 127.0.0.1: route_localnet stays off everywhere (CVE-2020-8558).
    let localnet = guest.exec(&["cat", "/proc/sys/net/ipv4/conf/all/route_localnet", "/proc/sys/net/ipv4/conf/keel0/route_localnet"]);
    assert_eq!(localnet.stdout, "0\n0\n", "{localnet:?}");

    // 2. Stopping the container unpublishes its port.
    guest.call(Command::Stop { name: "web".into() }, Duration::from_secs(20)).unwrap();
    guest.wait_container("web", Duration::from_secs(20), |c| c.state == "stopped");
    assert_eq!(fetch_until(published, false, Duration::from_secs(10)), None, "the port still answers after its container stopped");
    let detail = guest.call(Command::NetworkInspect { name: "keel0".into() }, Duration::from_secs(30)).unwrap();
    assert!(!detail.to_string().contains("80 -> "), "web's published port is still listed: {detail}");

    guest.call(Command::Poweroff, Duration::from_secs(20)).unwrap();
    guest.wait_exit(Duration::from_secs(60));
}

/// Test 5: a reboot keeps every container's address. The second boot declares a new
/// container that sorts (and so starts) first: without the allocations kept on /var,
/// it would take the address the first container had.
#[test]
fn reboot_keeps_every_container_address() {
    let name = "network-persist";
    let dir = target_dir().join("qemu-tests").join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("zeta.toml"),
        "image = \"/usr/share/keel/images/busybox\"\ncommand = [\"/bin/sleep\", \"3600\"]\nstop_timeout = \"1s\"\n",
    )
    .unwrap();
    let host = "hostname = \"keel-ipam\"\nbusybox = \"/bin/busybox\"\n\n[kernel]\nmodules = [\"virtio_pci\", \"virtio_console\", \"virtio_net\", \"virtio_blk\", \"button\", \"evdev\"]\n\n[control]\nvirtio_serial = true\nshutdown_grace_secs = 2\n\n[[images]]\nname = \"busybox\"\nbusybox = \"/bin/busybox\"\n\n[[files]]\nsource = \"zeta.toml\"\npath = \"/etc/keel/containers/zeta.toml\"\n";
    let image = build_image(name, host, env!("CARGO_BIN_EXE_keel-probe").as_ref());
    let disk = dir.join(format!("var-{}.img", std::process::id()));
    let _ = std::fs::remove_file(&disk);
    keel_build::disk::VarDisk::default().create(&disk).expect("make the data disk");
    let attached = |guest: &Guest| -> Vec<(String, String)> {
        let detail = guest.call(Command::NetworkInspect { name: "keel0".into() }, Duration::from_secs(30)).unwrap();
        let mut list: Vec<(String, String)> = detail["attached"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| (a["container"].as_str().unwrap().to_string(), a["address"].as_str().unwrap().to_string()))
            .collect();
        list.sort();
        list
    };

    let options = || BootOptions { disk: Some(disk.clone()), ..Default::default() };
    let mut guest = Guest::boot(&image, "persist-1", options());
    guest.wait_ready();
    guest.wait_container("zeta", Duration::from_secs(60), |c| c.state == "running");
    let first = attached(&guest);
    assert_eq!(first, [("zeta".to_string(), "10.88.0.2".to_string())]);
    // /etc is kept on the data disk: declare a container that sorts before zeta.
    let declared = guest.exec(&["cp", "/etc/keel/containers/zeta.toml", "/etc/keel/containers/alpha.toml"]);
    assert_eq!(declared.exit_code, 0, "{declared:?}");
    guest.call(Command::Poweroff, Duration::from_secs(20)).unwrap();
    guest.wait_exit(Duration::from_secs(60));

    let mut guest = Guest::boot(&image, "persist-2", options());
    guest.wait_ready();
    for container in ["alpha", "zeta"] {
        guest.wait_container(container, Duration::from_secs(60), |c| c.state == "running");
    }
    let second = attached(&guest);
    assert_eq!(
        second,
        [("alpha".to_string(), "10.88.0.3".to_string()), ("zeta".to_string(), "10.88.0.2".to_string())],
        "zeta's address moved across the reboot"
    );
    guest.call(Command::Poweroff, Duration::from_secs(20)).unwrap();
    guest.wait_exit(Duration::from_secs(60));
    let _ = std::fs::remove_file(&disk);
}

/// IPv6 on a container network: `subnet6` gives the bridge fd00:88::1 and each container
/// the IPv6 counterpart of its IPv4 address (same host number), a default IPv6 route and
/// an /etc/hosts line; one container fetches a page from the other over IPv6.
#[test]
fn ipv6_subnet_containers_reach_each_other_over_ipv6() {
    let name = "network-ipv6";
    let dir = target_dir().join("qemu-tests").join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("network.toml"), "[[network]]\nname = \"keel0\"\nsubnet = \"10.88.0.0/16\"\nsubnet6 = \"fd00:88::/64\"\n")
        .unwrap();
    std::fs::write(dir.join("index.html"), "from-the-container-over-ipv6\n").unwrap();
    let busybox = "image = \"/usr/share/keel/images/busybox\"\nstop_timeout = \"1s\"\n";
    let declarations = [
        ("web6", format!("{busybox}command = [\"/bin/httpd\", \"-f\", \"-p\", \"[::]:80\", \"-h\", \"/www\"]\n")),
        ("client6", format!("{busybox}command = [\"/bin/sleep\", \"3600\"]\n")),
    ];
    let mut host = String::from(
        "hostname = \"keel-net6\"\nbusybox = \"/bin/busybox\"\n\n[kernel]\nmodules = [\"virtio_pci\", \"virtio_console\", \"virtio_net\", \"button\", \"evdev\"]\n\n[control]\nvirtio_serial = true\nshutdown_grace_secs = 2\n\n[[images]]\nname = \"busybox\"\nbusybox = \"/bin/busybox\"\n\n[[files]]\nsource = \"network.toml\"\npath = \"/etc/keel/network.toml\"\n\n[[files]]\nsource = \"@PROBE@\"\npath = \"/usr/share/keel/images/busybox/usr/bin/keel-probe\"\nmode = 0o755\n\n[[files]]\nsource = \"index.html\"\npath = \"/usr/share/keel/images/busybox/www/index.html\"\n",
    );
    for (container, text) in &declarations {
        std::fs::write(dir.join(format!("{container}.toml")), text).unwrap();
        host.push_str(&format!("\n[[files]]\nsource = \"{container}.toml\"\npath = \"/etc/keel/containers/{container}.toml\"\n"));
    }
    let image = build_image(name, &host, env!("CARGO_BIN_EXE_keel-probe").as_ref());
    let mut guest = Guest::boot(&image, name, BootOptions::default());
    guest.wait_ready();
    for container in ["web6", "client6"] {
        guest.wait_container(container, Duration::from_secs(60), |c| c.state == "running");
    }

    // The network shows its IPv6 prefix and gateway, each container both addresses,
    // the IPv6 one carrying the IPv4 host number.
    let detail = guest.call(Command::NetworkInspect { name: "keel0".into() }, Duration::from_secs(30)).unwrap();
    assert_eq!((detail["subnet6"].as_str(), detail["gateway6"].as_str()), (Some("fd00:88::/64"), Some("fd00:88::1")), "{detail}");
    assert!(detail["bridge_addresses"].to_string().contains("fd00:88::1/64"), "{detail}");
    let addresses = |container: &str| -> (String, String) {
        let found = detail["attached"].as_array().and_then(|list| list.iter().find(|a| a["container"] == container));
        let found = found.unwrap_or_else(|| guest.fail(&format!("{container} is not attached: {detail}")));
        match (found["address"].as_str(), found["address6"].as_str()) {
            (Some(v4), Some(v6)) => (v4.to_string(), v6.to_string()),
            _ => guest.fail(&format!("{container} lacks an address: {detail}")),
        }
    };
    let (web_v4, web_v6) = addresses("web6");
    let host_number = web_v4.rsplit('.').next().unwrap();
    assert_eq!(web_v6, format!("fd00:88::{:x}", host_number.parse::<u8>().unwrap()), "{detail}");

    // Inside the container: the address, the default route via the bridge, /etc/hosts.
    let ip6 = guest.exec_in(Some("client6"), &["cat", "/proc/net/if_inet6", "/proc/net/ipv6_route"]);
    assert!(ip6.stdout.contains("fd000088000000000000000000000001"), "no IPv6 default route via fd00:88::1: {ip6:?}");
    let (_, client_v6) = addresses("client6");
    let hosts = guest.exec_in(Some("client6"), &["cat", "/etc/hosts"]);
    assert!(hosts.stdout.contains(&format!("{client_v6}\t")), "{hosts:?}");

    // client6 fetches web6's page over IPv6.
    let target = format!("[{web_v6}]:80");
    let deadline = Instant::now() + Duration::from_secs(20);
    let out = loop {
        let out = guest.exec_in(Some("client6"), &["keel-probe", "fetch", &target, "5"]);
        if out.exit_code == 0 || Instant::now() > deadline {
            break out;
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    assert_eq!(out.stdout, "from-the-container-over-ipv6\n", "client6 cannot reach web6 at {target}: {out:?}");

    guest.call(Command::Poweroff, Duration::from_secs(20)).unwrap();
    guest.wait_exit(Duration::from_secs(60));
}
