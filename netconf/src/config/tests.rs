use super::*;
use std::net::Ipv4Addr;

const FILE: &str = "/etc/keel/network.toml";

/// The errors of `text` as (key, line, message).
fn errors(text: &str) -> Vec<(String, Option<usize>, String)> {
    match parse(text, FILE) {
        Ok(config) => panic!("accepted:\n{text}\n=> {config:?}"),
        Err(ConfigErrors(errors)) => errors.into_iter().map(|e| (e.key, e.line, e.message)).collect(),
    }
}

/// `text` is rejected with exactly one error, on `key` at `line`, whose message contains `fragment`.
#[track_caller]
fn rejects(text: &str, key: &str, line: usize, fragment: &str) {
    let found = errors(text);
    assert_eq!(found.len(), 1, "{text}\n=> {found:?}");
    let (k, l, message) = &found[0];
    assert_eq!((k.as_str(), *l), (key, Some(line)), "{text}\n=> {message}");
    assert!(message.contains(fragment), "{text}\n=> {message:?} lacks {fragment:?}");
}

fn ok(text: &str) -> NetworkConfig {
    parse(text, FILE).unwrap_or_else(|e| panic!("{text}\n=> {e}"))
}

fn net4(text: &str) -> Ipv4Net {
    Ipv4Net::parse(text).unwrap()
}

#[test]
fn default_config_is_dhcp_and_keel0() {
    let config = default_config();
    assert_eq!(config.uplinks, vec![Uplink { select: UplinkSelect::FirstEthernet, mode: UplinkMode::Dhcp, mtu: None }]);
    assert_eq!(
        config.networks,
        vec![Network {
            name: "keel0".into(),
            bridge: "keel0".into(),
            subnet: net4("10.88.0.0/16"),
            subnet6: None,
            gateway: Ipv4Addr::new(10, 88, 0, 1),
            isolated: false,
            metadata: false
        }]
    );
    assert_eq!(config.firewall, Firewall { input: InputPolicy::Drop, allow: vec![] }, "input dropped unless the file says otherwise");
    assert_eq!(ok(""), config, "an empty file means the defaults");
    assert_eq!(ok("# nothing but a comment\n"), config);
}

#[test]
fn full_declaration() {
    let config = ok(r#"
[[uplink]]
interface = "eth0"
dhcp = true
mtu = 9000

[[uplink]]
mac = "52:54:00:AB:cd:56"
address = "192.168.1.10/24"
gateway = "192.168.1.1"
dns = ["192.168.1.1", "2001:4860:4860::8888"]

[[network]]
name = "keel0"
subnet = "10.88.0.0/16"
subnet6 = "fd00:88::/64"

[[network]]
name = "db-net"
bridge = "kbr-db"
subnet = "10.90.0.0/24"
gateway = "10.90.0.254"
isolated = true
metadata = true

[firewall]
input = "drop"
allow = ["tcp/22", "udp/53"]
"#);
    assert_eq!(
        config.uplinks,
        vec![
            Uplink { select: UplinkSelect::Name("eth0".into()), mode: UplinkMode::Dhcp, mtu: Some(9000) },
            Uplink {
                select: UplinkSelect::Mac([0x52, 0x54, 0x00, 0xab, 0xcd, 0x56]),
                mode: UplinkMode::Static {
                    address: net4("192.168.1.10/24"),
                    gateway: Some(Ipv4Addr::new(192, 168, 1, 1)),
                    dns: vec!["192.168.1.1".parse().unwrap(), "2001:4860:4860::8888".parse().unwrap()],
                },
                mtu: None,
            },
        ]
    );
    assert_eq!(config.networks.len(), 2);
    assert_eq!(config.networks[0].bridge, "keel0");
    assert_eq!(config.networks[0].gateway, Ipv4Addr::new(10, 88, 0, 1), "default gateway: first host");
    assert_eq!(config.networks[0].subnet6, Some(Ipv6Net::parse("fd00:88::/64").unwrap()));
    assert_eq!(
        config.networks[1],
        Network {
            name: "db-net".into(),
            bridge: "kbr-db".into(),
            subnet: net4("10.90.0.0/24"),
            subnet6: None,
            gateway: Ipv4Addr::new(10, 90, 0, 254),
            isolated: true,
            metadata: true
        }
    );
    assert_eq!(config.network("db-net").map(|n| n.subnet), Some(net4("10.90.0.0/24")));
    assert_eq!(config.firewall, Firewall { input: InputPolicy::Drop, allow: vec![(Proto::Tcp, 22), (Proto::Udp, 53)] });
}

fn config_metadata(config: &NetworkConfig) -> bool {
    config.networks.iter().any(|n| n.metadata)
}

#[test]
fn missing_sections_get_defaults() {
    let only_network = ok("[[network]]\nname = \"web\"\nsubnet = \"10.50.0.0/24\"\n");
    assert_eq!(only_network.uplinks, default_config().uplinks, "no [[uplink]]: DHCP on the first ethernet");
    assert_eq!(only_network.networks.iter().map(|n| n.name.as_str()).collect::<Vec<_>>(), ["web"], "declared networks replace keel0");
    let only_uplink = ok("[[uplink]]\ninterface = \"ens3\"\n");
    assert_eq!(only_uplink.networks, default_config().networks, "no [[network]]: keel0");
    assert_eq!(only_uplink.uplinks[0].mode, UplinkMode::Dhcp, "neither dhcp nor address: DHCP");
    assert!(!config_metadata(&only_network), "metadata is off unless a network turns it on");
    let firewall_only = ok("[firewall]\ninput = \"drop\"\n");
    assert_eq!(firewall_only.firewall.allow, vec![]);
    let allow_only = ok("[firewall]\nallow = [\"tcp/22\"]\n");
    assert_eq!(allow_only.firewall, Firewall { input: InputPolicy::Drop, allow: vec![(Proto::Tcp, 22)] }, "no input key: drop");
    let open = ok("[firewall]\ninput = \"accept\"\n");
    assert_eq!(open.firewall.input, InputPolicy::Accept, "accept stays an explicit choice");
    assert_eq!(firewall_only.uplinks, default_config().uplinks);
    let static_implied = ok("[[uplink]]\naddress = \"10.0.2.15/24\"\n");
    assert_eq!(static_implied.uplinks[0].mode, UplinkMode::Static { address: net4("10.0.2.15/24"), gateway: None, dns: vec![] });
}

#[test]
fn syntax_and_unknown_keys() {
    rejects("[[network]]\nname = \"a\"\nsubnet = \"10.1.0.0/16\"\nbogus = 1\n", "network[0].bogus", 4, "unknown field `bogus`");
    rejects("color = \"red\"\n", "color", 1, "unknown field `color`");
    rejects("[[uplink]]\nname = \"eth0\"\n", "uplink[0].name", 2, "unknown field `name`");
    rejects("[firewall]\nallow = \"tcp/22\"\n", "firewall.allow", 2, "expected a sequence");
    rejects("[[uplink]]\n\ndhcp = \"yes\"\n", "uplink[0].dhcp", 3, "expected a boolean");
    rejects("[firewall]\ninput = [\n", "firewall.input", 2, "");
}

#[test]
fn bad_cidrs() {
    rejects("[[network]]\nname = \"a\"\nsubnet = \"10.88.0.0/33\"\n", "network[0].subnet", 3, "prefix length \"33\"");
    rejects("[[network]]\nname = \"a\"\nsubnet = \"10.88.0.0\"\n", "network[0].subnet", 3, "expected a.b.c.d/prefix");
    rejects("[[network]]\nname = \"a\"\nsubnet = \"10.88.0.300/16\"\n", "network[0].subnet", 3, "not an IPv4 address");
    rejects("[[network]]\nname = \"a\"\nsubnet = \"10.88.0.1/16\"\n", "network[0].subnet", 3, "host bits set: the prefix is 10.88.0.0/16");
    rejects("[[network]]\nname = \"a\"\nsubnet = \"10.88.0.0/31\"\n", "network[0].subnet", 3, "at most /30");
    rejects("[[network]]\nname = \"a\"\nsubnet = \"10.88.0.0/16\"\nsubnet6 = \"fd00::1/64\"\n", "network[0].subnet6", 4, "host bits set");
    rejects(
        "[[network]]\nname = \"a\"\nsubnet = \"10.88.0.0/16\"\nsubnet6 = \"10.0.0.0/8\"\n",
        "network[0].subnet6",
        4,
        "not an IPv6 address",
    );
    rejects("[[uplink]]\naddress = \"10.0.2.15\"\n", "uplink[0].address", 2, "expected a.b.c.d/prefix");
    rejects("[[uplink]]\naddress = \"10.0.2.0/24\"\n", "uplink[0].address", 2, "network address");
    rejects("[[uplink]]\naddress = \"10.0.2.255/24\"\n", "uplink[0].address", 2, "broadcast address");
    assert_eq!(ok("[[network]]\nname = \"a\"\nsubnet = \"10.88.0.0/30\"\n").networks[0].gateway, Ipv4Addr::new(10, 88, 0, 1));
}

#[test]
fn gateway_must_be_a_host_of_the_subnet() {
    rejects(
        "[[network]]\nname = \"a\"\nsubnet = \"10.88.0.0/16\"\ngateway = \"10.89.0.1\"\n",
        "network[0].gateway",
        4,
        "outside the subnet 10.88.0.0/16",
    );
    rejects("[[network]]\nname = \"a\"\nsubnet = \"10.88.0.0/16\"\ngateway = \"10.88.255.255\"\n", "network[0].gateway", 4, "broadcast");
    rejects(
        "[[network]]\nname = \"a\"\nsubnet = \"10.88.0.0/16\"\ngateway = \"10.88.0.0\"\n",
        "network[0].gateway",
        4,
        "network or broadcast",
    );
    rejects("[[network]]\nname = \"a\"\nsubnet = \"10.88.0.0/16\"\ngateway = \"gw\"\n", "network[0].gateway", 4, "not an IPv4 address");
    rejects("[[uplink]]\naddress = \"10.0.2.15/24\"\ngateway = \"10.0.2.15\"\n", "uplink[0].gateway", 3, "own address");
}

#[test]
fn overlapping_and_duplicate_networks_name_both() {
    let text = "[[network]]\nname = \"keel0\"\nsubnet = \"10.88.0.0/16\"\n\n[[network]]\nname = \"web\"\nsubnet = \"10.88.5.0/24\"\n";
    rejects(
        text,
        "network[1].subnet",
        7,
        "subnet 10.88.5.0/24 of network \"web\" overlaps subnet 10.88.0.0/16 of network \"keel0\" (network[0])",
    );
    let text =
        "[[network]]\nname = \"a\"\nsubnet = \"10.1.0.0/16\"\n[[network]]\nname = \"a\"\nbridge = \"br-a\"\nsubnet = \"10.2.0.0/16\"\n";
    rejects(text, "network[1].name", 5, "network \"a\" is declared twice (network[0] and network[1])");
    let text = "[[network]]\nname = \"a\"\nbridge = \"br0\"\nsubnet = \"10.1.0.0/16\"\n[[network]]\nname = \"b\"\nbridge = \"br0\"\nsubnet = \"10.2.0.0/16\"\n";
    rejects(text, "network[1].bridge", 7, "bridge \"br0\" of network \"b\" is already the bridge of network \"a\" (network[0])");
    // The default bridge is the name: a bridge named like another network clashes too.
    let text = "[[network]]\nname = \"a\"\nsubnet = \"10.1.0.0/16\"\n[[network]]\nname = \"b\"\nbridge = \"a\"\nsubnet = \"10.2.0.0/16\"\n";
    rejects(text, "network[1].bridge", 6, "already the bridge of network \"a\"");
    let text = "[[network]]\nname = \"a\"\nsubnet = \"10.1.0.0/16\"\nsubnet6 = \"fd00::/48\"\n[[network]]\nname = \"b\"\nsubnet = \"10.2.0.0/16\"\nsubnet6 = \"fd00:0:0:1::/64\"\n";
    rejects(text, "network[1].subnet6", 8, "overlaps subnet6 fd00::/48 of network \"a\"");
}

#[test]
fn names_and_bridges() {
    rejects("[[network]]\nname = \"Keel\"\nsubnet = \"10.1.0.0/16\"\n", "network[0].name", 2, "[a-z0-9][a-z0-9_-]*");
    rejects("[[network]]\nname = \"abcdefghijklmnop\"\nsubnet = \"10.1.0.0/16\"\n", "network[0].name", 2, "at most 15");
    rejects("[[network]]\nname = \"-a\"\nsubnet = \"10.1.0.0/16\"\n", "network[0].name", 2, "[a-z0-9]");
    rejects("[[network]]\nname = \"host\"\nsubnet = \"10.1.0.0/16\"\n", "network[0].name", 2, "reserved");
    rejects("[[network]]\nsubnet = \"10.1.0.0/16\"\n", "network[0].name", 1, "required");
    rejects("[[network]]\nname = \"a\"\n", "network[0].subnet", 1, "required");
    rejects(
        "[[network]]\nname = \"a\"\nbridge = \"br/0\"\nsubnet = \"10.1.0.0/16\"\n",
        "network[0].bridge",
        3,
        "not a valid interface name",
    );
    rejects(
        "[[network]]\nname = \"a\"\nbridge = \"br 0\"\nsubnet = \"10.1.0.0/16\"\n",
        "network[0].bridge",
        3,
        "not a valid interface name",
    );
    rejects(
        "[[network]]\nname = \"a\"\nbridge = \"abcdefghijklmnop\"\nsubnet = \"10.1.0.0/16\"\n",
        "network[0].bridge",
        3,
        "1 to 15 bytes",
    );
    assert_eq!(ok("[[network]]\nname = \"a\"\nbridge = \"Br.0-x\"\nsubnet = \"10.1.0.0/16\"\n").networks[0].bridge, "Br.0-x");
    rejects("[[uplink]]\ninterface = \"\"\n", "uplink[0].interface", 2, "not a valid interface name");
}

#[test]
fn uplink_modes() {
    rejects("[[uplink]]\ndhcp = false\n", "uplink[0].address", 2, "required for a static uplink");
    rejects("[[uplink]]\ngateway = \"10.0.2.2\"\n", "uplink[0].address", 1, "required for a static uplink");
    rejects(
        "[[uplink]]\ndhcp = true\naddress = \"10.0.2.15/24\"\n",
        "uplink[0].address",
        3,
        "dhcp = true and a static address exclude each other",
    );
    rejects("[[uplink]]\ndhcp = true\ndns = [\"1.1.1.1\"]\n", "uplink[0].dns", 3, "exclude each other");
    rejects(
        "[[uplink]]\naddress = \"10.0.2.15/24\"\ndns = [\"1.1.1.1\", \"dns.google\"]\n",
        "uplink[0].dns[1]",
        3,
        "\"dns.google\" is not an IP address",
    );
    rejects("[[uplink]]\ninterface = \"eth0\"\nmac = \"52:54:00:12:34:56\"\n", "uplink[0].mac", 3, "interface and mac exclude each other");
    for bad in ["52:54:00:12:34", "52:54:00:12:34:5g", "52-54-00-12-34-56", "52:54:00:12:34:567", "+2:54:00:12:34:56"] {
        rejects(&format!("[[uplink]]\nmac = \"{bad}\"\n"), "uplink[0].mac", 2, "is not a MAC address");
    }
    for bad in [67, 65536, -1, 0] {
        rejects(&format!("[[uplink]]\n\nmtu = {bad}\n"), "uplink[0].mtu", 3, "must be from 68 to 65535");
    }
    assert_eq!(ok("[[uplink]]\nmtu = 68\n").uplinks[0].mtu, Some(68));
    assert_eq!(ok("[[uplink]]\nmtu = 65535\n").uplinks[0].mtu, Some(65535));
    rejects(
        "[[uplink]]\ninterface = \"eth0\"\n[[uplink]]\ninterface = \"eth0\"\naddress = \"10.0.2.15/24\"\n",
        "uplink[1].interface",
        4,
        "interface \"eth0\" is already uplink[0]",
    );
    rejects("[[uplink]]\n[[uplink]]\ndhcp = true\n", "uplink[1]", 2, "the first ethernet interface is already uplink[0]");
}

#[test]
fn networks_against_uplinks() {
    rejects(
        "[[uplink]]\ninterface = \"br0\"\n[[network]]\nname = \"a\"\nbridge = \"br0\"\nsubnet = \"10.1.0.0/16\"\n",
        "network[0].bridge",
        5,
        "also the interface of uplink[0]",
    );
    rejects(
        "[[uplink]]\naddress = \"10.1.2.3/24\"\n[[network]]\nname = \"a\"\nsubnet = \"10.1.0.0/16\"\n",
        "network[0].subnet",
        5,
        "overlaps the address 10.1.2.3/24 of uplink[0]",
    );
    let found = errors("[[uplink]]\naddress = \"10.88.2.3/24\"\n");
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!((found[0].0.as_str(), found[0].1), ("network.subnet", None));
    assert!(found[0].2.contains("the default network \"keel0\"") && found[0].2.contains("declare a [[network]]"), "{found:?}");
}

#[test]
fn network_metadata_must_be_a_boolean() {
    rejects("[[network]]\nname = \"a\"\nsubnet = \"10.1.0.0/24\"\nmetadata = \"yes\"\n", "network[0].metadata", 4, "expected a boolean");
}

#[test]
fn firewall_entries() {
    rejects("[firewall]\ninput = \"reject\"\n", "firewall.input", 2, "expected \"accept\" or \"drop\"");
    rejects("[firewall]\nallow = [\"tcp/22\", \"icmp/8\"]\n", "firewall.allow[1]", 2, "protocol \"icmp\"");
    rejects("[firewall]\nallow = [\n  \"tcp/22\",\n  \"22\",\n]\n", "firewall.allow[1]", 4, "expected \"tcp/PORT\" or \"udp/PORT\"");
    rejects("[firewall]\nallow = [\"tcp/0\"]\n", "firewall.allow[0]", 2, "from 1 to 65535");
    rejects("[firewall]\nallow = [\"udp/65536\"]\n", "firewall.allow[0]", 2, "from 1 to 65535");
    rejects("[firewall]\nallow = [\"tcp/22\", \"tcp/22\"]\n", "firewall.allow[1]", 2, "listed twice");
}

#[test]
fn every_problem_is_reported_with_file_line_and_key() {
    let text =
        "[[uplink]]\nmtu = 1\n\n[[network]]\nname = \"a\"\nsubnet = \"10.1.0.0/99\"\ngateway = \"x\"\n\n[firewall]\ninput = \"maybe\"\n";
    let err = parse(text, FILE).unwrap_err();
    let keys: Vec<&str> = err.0.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(keys, ["uplink[0].mtu", "network[0].subnet", "network[0].gateway", "firewall.input"]);
    assert_eq!(err.0[0].to_string(), "/etc/keel/network.toml:2: uplink[0].mtu: 1 must be from 68 to 65535");
    assert_eq!(err.0[3].to_string(), "/etc/keel/network.toml:10: firewall.input: \"maybe\": expected \"accept\" or \"drop\"");
    assert!(err.to_string().contains("; /etc/keel/network.toml:6: network[0].subnet: "), "{err}");
}

#[test]
fn parse_port_forms() {
    let tcp = |host_ip, host_port, container_port| PortMapping { host_ip, host_port, container_port, proto: Proto::Tcp };
    assert_eq!(parse_port("8080:80/tcp"), Ok(tcp(None, 8080, 80)));
    assert_eq!(parse_port("8080:80"), Ok(tcp(None, 8080, 80)));
    assert_eq!(parse_port("80"), Ok(tcp(None, 80, 80)));
    assert_eq!(parse_port("0.0.0.0:80:8000"), Ok(tcp(None, 80, 8000)));
    assert_eq!(
        parse_port("127.0.0.1:5353:53/udp"),
        Ok(PortMapping { host_ip: Some(Ipv4Addr::LOCALHOST), host_port: 5353, container_port: 53, proto: Proto::Udp })
    );
    assert_eq!(parse_port("53/udp").map(|p| (p.host_port, p.container_port, p.proto)), Ok((53, 53, Proto::Udp)));
    assert_eq!(parse_port("127.0.0.1:5353:53/udp").unwrap().to_string(), "127.0.0.1:5353:53/udp");
    for (bad, fragment) in [
        ("0", "from 1 to 65535"),
        ("65536:80", "from 1 to 65535"),
        ("8080:0", "from 1 to 65535"),
        ("8080:80/sctp", "protocol \"sctp\""),
        ("8080:80/", "protocol \"\""),
        ("", "from 1 to 65535"),
        ("http", "from 1 to 65535"),
        ("+80", "from 1 to 65535"),
        ("1.2.3:80:80", "not an IPv4 address"),
        ("::1:80:80", "expected [IP:]HOST_PORT"),
        ("8000-8010:80", "from 1 to 65535"),
    ] {
        let err = parse_port(bad).expect_err(bad);
        assert!(err.contains(fragment), "{bad}: {err}");
    }
}

#[test]
fn check_ports_finds_unknown_networks_and_conflicts() {
    let config = default_config();
    let ports = |list: &[&str]| list.iter().map(|p| parse_port(p).unwrap()).collect::<Vec<_>>();
    let entry = |c: &str, n: &str, list: &[&str]| (c.to_string(), n.to_string(), ports(list));
    let fine = [
        entry("web", "keel0", &["8080:80", "8080:80/udp"]),
        entry("api", "keel0", &["127.0.0.1:9000:80", "127.0.0.2:9000:80"]),
        entry("idle", "keel0", &[]),
    ];
    assert_eq!(check_ports(&fine, &config), Vec::<String>::new());

    let errors = check_ports(&[entry("web", "prod", &["80"])], &config);
    assert_eq!(errors, ["container web: network \"prod\" is not declared (declared: keel0)"]);

    let errors = check_ports(&[entry("web", "keel0", &["8080:80"]), entry("api", "keel0", &["127.0.0.1:8080:9000/tcp"])], &config);
    assert_eq!(
        errors,
        ["host port 8080/tcp on 127.0.0.1 is published by both container web (8080:80/tcp) and container api (127.0.0.1:8080:9000/tcp)"]
    );

    let errors = check_ports(&[entry("a", "keel0", &["127.0.0.1:53:53/udp"]), entry("b", "keel0", &["127.0.0.1:53:5353/udp"])], &config);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].contains("container a") && errors[0].contains("container b"), "{errors:?}");

    let errors = check_ports(&[entry("web", "keel0", &["80", "0.0.0.0:80:8080"])], &config);
    assert_eq!(errors, ["container web: host port 80/tcp on every address is published twice (80:80/tcp and 80:8080/tcp)"]);
}

#[test]
fn ipv6_gateway_and_container_addresses_follow_the_ipv4_host_number() {
    let mut network = Network::default_keel0();
    assert_eq!((network.gateway6(), network.address6_for(Ipv4Addr::new(10, 88, 0, 5))), (None, None));
    network.subnet6 = Some(Ipv6Net::parse("fd00:88::/64").unwrap());
    assert_eq!(network.gateway6(), Some("fd00:88::1".parse().unwrap()));
    assert_eq!(network.address6_for(Ipv4Addr::new(10, 88, 0, 5)), Some("fd00:88::5".parse().unwrap()));
    assert_eq!(network.address6_for(Ipv4Addr::new(10, 88, 1, 5)), Some("fd00:88::105".parse().unwrap()));
    assert_eq!(network.address6_for(Ipv4Addr::new(10, 89, 0, 5)), None);
    network.subnet6 = Some(Ipv6Net::parse("fd00:88::/120").unwrap());
    assert_eq!(network.address6_for(Ipv4Addr::new(10, 88, 0, 200)), Some("fd00:88::c8".parse().unwrap()));
    assert_eq!(network.address6_for(Ipv4Addr::new(10, 88, 1, 5)), None);
}
