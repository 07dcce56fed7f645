//! Benchmark (not a test): table `inet keel` with 1000 published ports, applied by keel over
//! netlink vs the same ruleset as text with `nft -f`, in a throwaway network namespace.
//! Median of 5 runs each; prints the ratio keel/nft. Run as root:
//! `cargo run --release -p keel-netconf --example nft_bench`.

use keel_netconf::nft::{apply, BridgeRule, FirewallState, Proto, Published};
use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::process::Command;
use std::time::{Duration, Instant};

const PORTS: u16 = 1000;
const RUNS: usize = 5;

fn state() -> FirewallState {
    FirewallState {
        uplink: Some("eth0".into()),
        container_subnets: vec![(Ipv4Addr::new(10, 88, 0, 0), 16)],
        container_subnets6: Vec::new(),
        bridges: vec![BridgeRule { name: "keel0".into(), subnet: (Ipv4Addr::new(10, 88, 0, 0), 16), isolated: false, metadata: false }],
        published: (0..PORTS)
            .map(|i| Published {
                proto: Proto::Tcp,
                host_ip: None,
                host_port: 20_000 + i,
                dest: Ipv4Addr::new(10, 88, (i / 250) as u8, (i % 250) as u8 + 2),
                dest_port: 80,
            })
            .collect(),
        input_drop: true,
        allow: vec![(Proto::Tcp, 22)],
        metadata_hosts: Vec::new(),
        metadata_hosts6: Vec::new(),
    }
}

/// The same ruleset as nft text, replacing the table the same way keel does.
fn as_text(state: &FirewallState) -> String {
    let mut elements = String::new();
    for (i, p) in state.published.iter().enumerate() {
        let sep = if i == 0 { "" } else { ", " };
        let _ = write!(elements, "{sep}tcp . {} : {} . {}", p.host_port, p.dest, p.dest_port);
    }
    let dnat = "fib daddr type local dnat ip to ip daddr . meta l4proto . th dport map @published_host\n    \
                fib daddr type local dnat ip to meta l4proto . th dport map @published";
    format!(
        "table inet keel\ndelete table inet keel\ntable inet keel {{
  map published {{ type inet_proto . inet_service : ipv4_addr . inet_service; elements = {{ {elements} }} }}
  map published_host {{ type ipv4_addr . inet_proto . inet_service : ipv4_addr . inet_service; }}
  set allow {{ type inet_proto . inet_service; elements = {{ tcp . 22 }} }}
  set bridges {{ type ifname; elements = {{ \"keel0\" }} }}
  set metadata_bridges {{ type ifname; }}
  set metadata_hosts {{ type ipv4_addr; }}
  set metadata_hosts6 {{ type ipv6_addr; }}
  chain guard {{ type filter hook prerouting priority raw; policy accept;
    iif != \"lo\" ip daddr 127.0.0.0/8 drop
    iifname @bridges iifname != @metadata_bridges ip daddr 169.254.169.254 ip saddr != @metadata_hosts drop
    iifname @bridges iifname != @metadata_bridges ip6 daddr fd00:ec2::254 ip6 saddr != @metadata_hosts6 drop
  }}
  chain prerouting {{ type nat hook prerouting priority dstnat; policy accept;
    {dnat}
  }}
  chain output {{ type nat hook output priority -100; policy accept;
    {dnat}
  }}
  chain postrouting {{ type nat hook postrouting priority srcnat; policy accept;
    ip saddr 10.88.0.0/16 oifname \"eth0\" masquerade
    oifname \"keel0\" ip saddr 10.88.0.0/16 ct status dnat masquerade
    ip saddr 127.0.0.0/8 ct status dnat masquerade
  }}
  chain forward {{ type filter hook forward priority filter; policy accept;
    ct state established,related accept
    iifname @bridges accept
    ct status dnat accept
    oifname @bridges drop
  }}
  chain input {{ type filter hook input priority filter; policy drop;
    ct state established,related accept
    iif \"lo\" accept
    ct status dnat accept
    iifname \"eth0\" meta l4proto . th dport @allow accept
    meta l4proto icmp accept
    meta l4proto ipv6-icmp accept
    iifname \"eth0\" udp sport 67 udp dport 68 accept
  }}
}}
"
    )
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn main() {
    std::thread::spawn(|| {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("run as root: unshare(CLONE_NEWNET)");
        let state = state();
        let path = std::env::temp_dir().join(format!("keel-nft-bench-{}.nft", std::process::id()));
        std::fs::write(&path, as_text(&state)).expect("write nft text");
        let (mut keel, mut nft) = (Vec::new(), Vec::new());
        for _ in 0..RUNS {
            let start = Instant::now();
            apply(&state).expect("keel apply");
            keel.push(start.elapsed());
            let start = Instant::now();
            let status = Command::new("nft").arg("-f").arg(&path).status().expect("run nft");
            nft.push(start.elapsed());
            assert!(status.success(), "nft -f failed");
        }
        let listed = Command::new("nft").args(["list", "map", "inet", "keel", "published"]).output().expect("nft list");
        let elements = String::from_utf8_lossy(&listed.stdout).matches("tcp . 2").count();
        let _ = std::fs::remove_file(&path);
        let (keel, nft) = (median(keel), median(nft));
        println!("ruleset with {PORTS} published ports ({elements} map elements listed), median of {RUNS}:");
        println!("  keel apply (netlink): {:>8.2} ms", keel.as_secs_f64() * 1e3);
        println!("  nft -f (same text):   {:>8.2} ms", nft.as_secs_f64() * 1e3);
        println!("  ratio keel/nft:       {:>8.3}", keel.as_secs_f64() / nft.as_secs_f64());
    })
    .join()
    .unwrap();
}
