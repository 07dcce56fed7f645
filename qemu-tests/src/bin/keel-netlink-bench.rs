//! keel-netlink-bench: 100 container network attachments by keel (keel-netconf over
//! rtnetlink, no process spawned) against the same links, addresses and routes done
//! with `ip -batch` (iproute2).
//!
//! Everything happens in a throwaway network namespace that the benchmark moves into
//! first; the containers' namespaces are made beforehand with `ip netns add` (one
//! `ip -batch` of `netns add` lines, names `knb<PID>-…`, not timed) and removed after
//! each round.
//!
//! One attachment = a veth pair whose host side is on the bridge and up and whose peer
//! is born as `eth0` inside the container's netns, then inside that netns: lo up, eth0
//! up, an address in the bridge's /16 and the default route via the bridge.
//! - keel: `ensure_bridge`, then `create_veth_into_netns` per container, then per
//!   container a worker thread `setns`es into the netns and calls
//!   `configure_container_interface`.
//! - ip: one `ip -batch` file for the host side (bridge, address, up, 100
//!   `link add … master … up type veth peer name eth0 netns …`), then per container one
//!   `ip -n NS -batch` file (lo up, eth0 up, addr add, route replace default).
//!   Writing the batch files is not timed.
//!
//! Rounds alternate keel and ip; prints each side's median of ROUNDS and the ratio
//! keel/ip. Usage: keel-netlink-bench [COUNT] [ROUNDS] (defaults 100, 3). Needs root
//! and `ip`.

use keel_netconf::{configure_container_interface, create_veth_into_netns, ensure_bridge, NetnsRef};
use std::fs::File;
use std::net::Ipv4Addr;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn main() {
    let mut args = std::env::args().skip(1);
    let count: usize = args.next().map(|a| a.parse().expect("COUNT")).unwrap_or(100);
    let rounds: usize = args.next().map(|a| a.parse().expect("ROUNDS")).unwrap_or(3);
    assert!((1..=250).contains(&count), "COUNT must be 1..=250");
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("unshare(CLONE_NEWNET): run as root");
    let dir = std::env::temp_dir().join(format!("keel-netlink-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");

    let mut keel_times = Vec::new();
    let mut ip_times = Vec::new();
    for round in 0..rounds {
        let keel = keel_round(count, round);
        let ip = ip_round(count, round, &dir);
        println!("round {}: keel {:8.2} ms   ip -batch {:8.2} ms", round + 1, ms(keel), ms(ip));
        keel_times.push(keel);
        ip_times.push(ip);
    }
    std::fs::remove_dir_all(&dir).ok();
    let keel = median(keel_times);
    let ip = median(ip_times);
    println!(
        "{count} attachments, median of {rounds}: keel {:.2} ms ({:.3} ms each), ip -batch {:.2} ms ({:.3} ms each), keel/ip = {:.3}",
        ms(keel),
        ms(keel) / count as f64,
        ms(ip),
        ms(ip) / count as f64,
        ms(keel) / ms(ip)
    );
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn netns_names(side: &str, count: usize, round: usize) -> Vec<String> {
    (0..count).map(|i| format!("knb{}-{side}{round}-{i}", std::process::id())).collect()
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(out.status.success(), "ip {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

fn ip_batch(file: &Path, lines: &str) {
    std::fs::write(file, lines).expect("write batch file");
    ip(&["-batch", &file.to_string_lossy()]);
}

/// Create the namespaces (one ip process), untimed.
fn make_netns(names: &[String], file: &Path) {
    ip_batch(file, &names.iter().map(|n| format!("netns add {n}\n")).collect::<String>());
}

/// Remove the namespaces and the bridge, untimed; check that the last container got
/// its default route first.
fn teardown(names: &[String], bridge: &str, gateway: &str, file: &Path) {
    let out = Command::new("ip").args(["-n", &names[names.len() - 1], "-j", "route", "show", "default"]).output().unwrap();
    let routes = String::from_utf8_lossy(&out.stdout);
    assert!(routes.contains(gateway), "container has no default route via {gateway}: {routes}");
    ip_batch(file, &names.iter().map(|n| format!("netns del {n}\n")).collect::<String>());
    ip(&["link", "del", bridge]);
}

fn keel_round(count: usize, round: usize) -> Duration {
    let names = netns_names("k", count, round);
    let scratch = std::env::temp_dir().join(format!("keel-netlink-bench-{}-k.batch", std::process::id()));
    make_netns(&names, &scratch);
    let files: Vec<File> = names.iter().map(|n| File::open(Path::new("/run/netns").join(n)).unwrap()).collect();

    let start = Instant::now();
    let bridge = ensure_bridge("kbr", Ipv4Addr::new(10, 88, 0, 1), 16).expect("bridge");
    for (i, netns) in files.iter().enumerate() {
        create_veth_into_netns(&format!("kv{i}"), bridge, "eth0", NetnsRef::Fd(netns.as_fd())).expect("veth");
    }
    let inside = std::thread::spawn(move || {
        for (i, netns) in files.iter().enumerate() {
            nix::sched::setns(netns.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
            let address = Ipv4Addr::new(10, 88, 1, i as u8 + 2);
            configure_container_interface("eth0", address, 16, Ipv4Addr::new(10, 88, 0, 1), None).expect("configure");
        }
    });
    inside.join().expect("configuring thread");
    let elapsed = start.elapsed();

    teardown(&names, "kbr", "10.88.0.1", &scratch);
    std::fs::remove_file(&scratch).ok();
    elapsed
}

fn ip_round(count: usize, round: usize, dir: &Path) -> Duration {
    let names = netns_names("i", count, round);
    let scratch = dir.join("netns.batch");
    make_netns(&names, &scratch);
    let host: PathBuf = dir.join("host.batch");
    let mut lines = String::from("link add ibr type bridge\naddr add 10.89.0.1/16 dev ibr\nlink set ibr up\n");
    for (i, name) in names.iter().enumerate() {
        lines.push_str(&format!("link add iv{i} master ibr up type veth peer name eth0 netns {name}\n"));
    }
    std::fs::write(&host, lines).unwrap();
    let containers: Vec<PathBuf> = (0..count)
        .map(|i| {
            let file = dir.join(format!("c{i}.batch"));
            let lines = format!(
                "link set lo up\nlink set eth0 up\naddr add 10.89.1.{}/16 dev eth0\nroute replace default via 10.89.0.1 dev eth0\n",
                i + 2
            );
            std::fs::write(&file, lines).unwrap();
            file
        })
        .collect();

    let start = Instant::now();
    ip(&["-batch", &host.to_string_lossy()]);
    for (name, file) in names.iter().zip(&containers) {
        ip(&["-n", name, "-batch", &file.to_string_lossy()]);
    }
    let elapsed = start.elapsed();

    teardown(&names, "ibr", "10.89.0.1", &scratch);
    elapsed
}
