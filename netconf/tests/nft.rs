//! Host tests: keel's table `inet keel` applied in a throwaway network namespace (never the
//! host's ruleset) and checked with `nft -j list ruleset`, an independent tool.

use keel_netconf::nft::{apply, remove, BridgeRule, FirewallState, Proto, Published};
use serde_json::Value;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::process::Command;

/// Run `body` on a thread that first moves into a new network namespace.
fn in_netns<T: Send + 'static>(body: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(move || {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("host tests run as root with netns support");
        body()
    })
    .join()
    .unwrap()
}

fn nft(args: &[&str]) -> String {
    let out = Command::new("nft").args(args).output().expect("run nft (apt-get install nftables)");
    assert!(out.status.success(), "nft {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// `nft -j list ruleset`, without the metainfo entry (it carries nft's version).
fn ruleset() -> Vec<Value> {
    let json: Value = serde_json::from_str(&nft(&["-j", "list", "ruleset"])).expect("nft -j output");
    json["nftables"].as_array().unwrap().iter().filter(|e| e.get("metainfo").is_none()).cloned().collect()
}

fn objects<'a>(ruleset: &'a [Value], kind: &str) -> Vec<&'a Value> {
    ruleset.iter().filter_map(|e| e.get(kind)).collect()
}

fn published(port: u16, dest_last: u8) -> Published {
    Published { proto: Proto::Tcp, host_ip: None, host_port: port, dest: Ipv4Addr::new(10, 88, 0, dest_last), dest_port: 80 }
}

fn sample() -> FirewallState {
    FirewallState {
        uplink: Some("eth0".into()),
        container_subnets: vec![(Ipv4Addr::new(10, 88, 0, 0), 16), (Ipv4Addr::new(10, 89, 0, 0), 16)],
        container_subnets6: Vec::new(),
        bridges: vec![
            BridgeRule { name: "keel0".into(), subnet: (Ipv4Addr::new(10, 88, 0, 0), 16), isolated: false, metadata: false },
            BridgeRule { name: "iso1".into(), subnet: (Ipv4Addr::new(10, 89, 0, 0), 16), isolated: true, metadata: true },
        ],
        published: vec![
            published(8080, 2),
            published(8081, 3),
            Published {
                proto: Proto::Udp,
                host_ip: Some(Ipv4Addr::LOCALHOST),
                host_port: 5353,
                dest: Ipv4Addr::new(10, 88, 0, 4),
                dest_port: 53,
            },
        ],
        input_drop: true,
        allow: vec![(Proto::Tcp, 22)],
        metadata_hosts: vec![Ipv4Addr::new(10, 88, 0, 7)],
        metadata_hosts6: vec![Ipv6Addr::new(0xfd00, 0x88, 0, 0, 0, 0, 0, 7)],
    }
}

/// The elements of a set or map, as nft -j prints them.
fn elements(ruleset: &[Value], name: &str) -> Vec<Value> {
    let set =
        ruleset.iter().find_map(|e| e.get("map").or(e.get("set")).filter(|s| s["name"] == name)).unwrap_or_else(|| panic!("no set {name}"));
    set.get("elem").and_then(|e| e.as_array()).cloned().unwrap_or_default()
}

#[test]
fn applies_table_chains_maps_and_rules() {
    let (rules, text) = in_netns(|| {
        apply(&sample()).expect("apply");
        (ruleset(), nft(&["list", "table", "inet", "keel"]))
    });
    println!("{text}");
    let tables = objects(&rules, "table");
    assert_eq!(tables.len(), 1);
    assert_eq!((tables[0]["family"].as_str(), tables[0]["name"].as_str()), (Some("inet"), Some("keel")));

    let chains = objects(&rules, "chain");
    let chain = |name: &str| *chains.iter().find(|c| c["name"] == name).unwrap_or_else(|| panic!("chain {name}"));
    for (name, kind, hook, prio, policy) in [
        ("guard", "filter", "prerouting", -300, "accept"),
        ("prerouting", "nat", "prerouting", -100, "accept"),
        ("output", "nat", "output", -100, "accept"),
        ("postrouting", "nat", "postrouting", 100, "accept"),
        ("forward", "filter", "forward", 0, "accept"),
        ("input", "filter", "input", 0, "drop"),
    ] {
        let c = chain(name);
        assert_eq!((c["type"].as_str(), c["hook"].as_str()), (Some(kind), Some(hook)), "{c}");
        assert_eq!((c["prio"].as_i64(), c["policy"].as_str()), (Some(prio), Some(policy)), "{c}");
    }

    // One map element per published port, DNAT by one rule through the map.
    assert_eq!(elements(&rules, "published").len(), 2);
    assert_eq!(elements(&rules, "published_host").len(), 1);
    assert!(text.contains("tcp . 8080 : 10.88.0.2 . 80"), "{text}");
    assert!(text.contains("127.0.0.1 . udp . 5353 : 10.88.0.4 . 53"), "{text}");
    assert!(text.contains("fib daddr type local dnat ip to meta l4proto . th dport map @published"), "{text}");
    let prerouting_rules = objects(&rules, "rule").iter().filter(|r| r["chain"] == "prerouting").count();
    assert_eq!(prerouting_rules, 2);
    // Masquerade per subnet through the uplink; isolation drops both ways.
    assert!(text.contains("ip saddr 10.88.0.0/16 oifname \"eth0\" masquerade"), "{text}");
    assert!(text.contains("ip saddr 10.89.0.0/16 oifname \"eth0\" masquerade"), "{text}");
    assert!(text.contains("iifname \"keel0\" oifname \"iso1\" drop"), "{text}");
    assert!(text.contains("iifname \"iso1\" oifname \"keel0\" drop"), "{text}");
    assert!(text.contains("meta l4proto . th dport @allow accept"), "{text}");
    assert!(text.contains("tcp . 22"), "{text}");
}

/// The rules of issue 11's safe-by-default firewall, as nft itself prints them back.
#[test]
fn safe_default_rules_as_nft_sees_them() {
    let (rules, text) = in_netns(|| {
        apply(&sample()).expect("apply");
        (ruleset(), nft(&["list", "table", "inet", "keel"]))
    });
    println!("{text}");
    let chain_rules = |chain: &str| -> Vec<String> {
        let start = text.find(&format!("chain {chain} {{")).unwrap_or_else(|| panic!("chain {chain}: {text}"));
        let body = &text[start..];
        let body = &body[..body.find("\n\t}").unwrap()];
        body.lines().skip(2).map(|l| l.trim().to_string()).collect()
    };
    assert_eq!(
        chain_rules("guard"),
        [
            "iif != \"lo\" ip daddr 127.0.0.0/8 drop",
            "iifname @bridges iifname != @metadata_bridges ip daddr 169.254.169.254 ip saddr != @metadata_hosts drop",
            "iifname @bridges iifname != @metadata_bridges ip6 daddr fd00:ec2::254 ip6 saddr != @metadata_hosts6 drop",
        ],
        "{text}"
    );
    assert_eq!(
        chain_rules("forward"),
        [
            "ct state established,related accept",
            "iifname \"keel0\" oifname \"iso1\" drop",
            "iifname \"iso1\" oifname \"keel0\" drop",
            "iifname @bridges accept",
            "ct status dnat accept",
            "oifname @bridges drop",
        ],
        "{text}"
    );
    let input = chain_rules("input");
    assert!(input.contains(&"iifname \"eth0\" meta l4proto . th dport @allow accept".to_string()), "{text}");
    assert!(input.contains(&"iifname \"eth0\" udp sport 67 udp dport 68 accept".to_string()), "{text}");
    // The switches' sets hold the network with metadata = true and the one container.
    assert_eq!(elements(&rules, "metadata_bridges"), [Value::from("iso1")]);
    assert_eq!(elements(&rules, "metadata_hosts"), [Value::from("10.88.0.7")]);
    assert_eq!(elements(&rules, "metadata_hosts6"), [Value::from("fd00:88::7")]);
    // With no uplink known, allow falls back to "not a container bridge".
    let mut state = sample();
    state.uplink = None;
    let text = in_netns(move || {
        apply(&state).expect("apply");
        nft(&["list", "chain", "inet", "keel", "input"])
    });
    assert!(text.contains("iifname != @bridges meta l4proto . th dport @allow accept"), "{text}");
}

#[test]
fn ipv6_container_subnets_are_masqueraded_out_of_the_uplink() {
    let mut state = sample();
    state.container_subnets6 = vec![(Ipv6Addr::new(0xfd00, 0x88, 0, 0, 0, 0, 0, 0), 64)];
    let (rules, text) = in_netns(move || {
        apply(&state).expect("apply");
        (ruleset(), nft(&["list", "table", "inet", "keel"]))
    });
    assert!(text.contains("ip6 saddr fd00:88::/64 oifname \"eth0\" masquerade"), "{text}");
    // nft -j shows the rule as a match on ip6 saddr with a masquerade.
    let ip6 = objects(&rules, "rule")
        .into_iter()
        .filter(|r| r["chain"] == "postrouting")
        .find(|r| r.to_string().contains("\"ip6\"") && r.to_string().contains("fd00:88::"))
        .unwrap_or_else(|| panic!("no ip6 masquerade rule in {rules:?}"));
    let json = ip6.to_string();
    assert!(json.contains("\"masquerade\""), "{json}");
    assert!(json.contains("\"saddr\""), "{json}");
    assert!(json.contains("\"len\":64"), "{json}");
    // The IPv4 rules are still there.
    assert!(text.contains("ip saddr 10.88.0.0/16 oifname \"eth0\" masquerade"), "{text}");
}

#[test]
fn reapplying_the_same_state_gives_the_same_ruleset() {
    let (first, second) = in_netns(|| {
        apply(&sample()).expect("apply");
        let first = ruleset();
        apply(&sample()).expect("apply again");
        (first, ruleset())
    });
    // Handles are reallocated by the replace; everything else must be identical.
    assert!(!first.is_empty());
    let strip = |v: &[Value]| strip_handles(serde_json::to_string(v).unwrap());
    assert_eq!(strip(&first), strip(&second));
}

/// Replace every `"handle":N` in `s` with `"handle":0`.
fn strip_handles(s: String) -> String {
    let mut out = String::new();
    let mut rest = s.as_str();
    while let Some(i) = rest.find("\"handle\":") {
        out.push_str(&rest[..i]);
        out.push_str("\"handle\":0");
        let after = &rest[i + 9..];
        let end = after.find([',', '}']).unwrap_or(after.len());
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

#[test]
fn one_port_fewer_removes_exactly_that_element() {
    let (before, after) = in_netns(|| {
        apply(&sample()).expect("apply");
        let before = elements(&ruleset(), "published");
        let mut state = sample();
        state.published.retain(|p| p.host_port != 8081);
        apply(&state).expect("apply with one port fewer");
        (before, elements(&ruleset(), "published"))
    });
    assert_eq!(before.len(), 2);
    assert_eq!(after.len(), 1);
    assert!(before.contains(&after[0]), "{after:?} not in {before:?}");
    assert!(serde_json::to_string(&after).unwrap().contains("8080"), "{after:?}");
}

#[test]
fn other_tables_are_untouched_and_remove_deletes_only_keel() {
    let (with_keel, without_keel, removed_twice) = in_netns(|| {
        nft(&["add", "table", "ip", "other"]);
        nft(&["add", "chain", "ip", "other", "c", "{ type filter hook input priority 0; policy accept; }"]);
        nft(&["add", "rule", "ip", "other", "c", "tcp", "dport", "1234", "accept"]);
        let other_before = nft(&["list", "table", "ip", "other"]);
        apply(&sample()).expect("apply");
        apply(&sample()).expect("apply again");
        let with_keel = (other_before.clone(), nft(&["list", "table", "ip", "other"]));
        remove().expect("remove");
        let without_keel = (nft(&["list", "tables"]), nft(&["list", "table", "ip", "other"]), other_before);
        (with_keel, without_keel, remove().is_ok())
    });
    assert_eq!(with_keel.0, with_keel.1);
    assert_eq!(without_keel.0.trim(), "table ip other");
    assert_eq!(without_keel.1, without_keel.2);
    assert!(removed_twice, "remove() when the table is absent must succeed");
}

#[test]
fn invalid_state_fails_clearly_and_keeps_the_previous_ruleset() {
    let (previous, validation, after_validation, kernel, after_kernel) = in_netns(|| {
        apply(&sample()).expect("apply");
        let previous = ruleset();
        // Rejected before anything is sent.
        let mut too_long = sample();
        too_long.bridges[0].name = "much-too-long-bridge-name".into();
        let validation = apply(&too_long).unwrap_err().to_string();
        let after_validation = ruleset();
        // Rejected by the kernel in the middle of the batch: the same host port published to
        // two containers. The whole batch, including the table delete, must roll back.
        let mut twice = sample();
        twice.published.push(published(8080, 9));
        let kernel = apply(&twice).unwrap_err().to_string();
        (previous, validation, after_validation, kernel, ruleset())
    });
    assert_eq!(
        validation,
        "invalid firewall state: bridges[0].name: interface name \"much-too-long-bridge-name\" must be 1 to 15 bytes long"
    );
    assert_eq!(previous, after_validation);
    assert!(kernel.starts_with("add elements to published: File exists"), "{kernel}");
    assert_eq!(previous, after_kernel, "a failed batch changed the ruleset");
}
