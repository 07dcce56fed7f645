//! Host test of the network reload executor (`network::live::apply`), each case in a
//! throwaway network namespace (this thread only; `ip` and `nft`, run to check, inherit
//! it), never the host's; needs root and nf_tables.
//!
//! A "container" is a veth pair whose host end is enslaved to keel0 (its peer in the
//! namespace stays unconfigured); the checks read the kernel with `ip -j` and `nft`.
//! Cases: a network added (the others untouched), removed (bridge and leases gone; an
//! attached container refuses it), rebuilt (new address), and the undo after a bridge
//! that cannot be made or a firewall batch that is refused (each with its control).

use keel_init::network::live::{self, NetworkReloadError};
use keel_init::network::reload::{plan, AttachedByNetwork};
use keel_init::network::{bring_up_bridges, HostNetwork};
use keel_netconf::config::parse;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Command;

const BOOT: &str = "[[network]]\nname = \"keel0\"\nsubnet = \"10.88.0.0/16\"\n";
const WITH_NET2: &str =
    "[[network]]\nname = \"keel0\"\nsubnet = \"10.88.0.0/16\"\n\n[[network]]\nname = \"net2\"\nsubnet = \"10.90.0.0/24\"\n";

fn in_netns<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(move || {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("host tests run as root with netns support");
        f()
    })
    .join()
    .unwrap()
}

fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(out.status.success(), "{program} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `name`'s ifindex, master and IPv4 addresses, or None when there is no such link.
fn link(name: &str) -> Option<(u64, Option<String>, Vec<String>)> {
    let out = Command::new("ip").args(["-j", "addr", "show", "dev", name]).output().unwrap();
    if !out.status.success() {
        return None;
    }
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let l = &list[0];
    let addresses = l["addr_info"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["family"] == "inet")
        .map(|a| format!("{}/{}", a["local"].as_str().unwrap(), a["prefixlen"]))
        .collect();
    Some((l["ifindex"].as_u64().unwrap(), l["master"].as_str().map(str::to_string), addresses))
}

/// The interface names in keel's `bridges` set.
fn nft_bridges() -> String {
    run("nft", &["list", "set", "inet", "keel", "bridges"])
}

/// A host with `toml`'s networks up and firewall applied, a "container" `web` on keel0
/// (veth `kvweb` enslaved to the bridge) and its lease; plus the IPAM directory.
fn host(toml: &str, name: &str) -> (HostNetwork, PathBuf) {
    let ipam = std::env::temp_dir().join(format!("keel-netreload-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&ipam);
    let mut host = HostNetwork::new(parse(toml, "network.toml").unwrap(), &ipam);
    run("ip", &["link", "set", "lo", "up"]);
    let problems: Vec<String> = bring_up_bridges(&host).iter().map(ToString::to_string).collect();
    assert_eq!(problems, Vec::<String>::new());
    host.apply_firewall().expect("firewall in the test namespace");
    run("ip", &["link", "add", "kvweb", "type", "veth", "peer", "name", "kvweb-c"]);
    run("ip", &["link", "set", "kvweb", "master", "keel0", "up"]);
    let keel0 = host.config.network("keel0").unwrap().clone();
    let address = host.ipam.as_mut().unwrap().allocate(&keel0, "web").unwrap();
    host.attached.insert("web".into(), ("keel0".into(), address));
    (host, ipam)
}

fn attached(host: &HostNetwork) -> AttachedByNetwork {
    live::attached_by_network(host)
}

#[test]
fn adding_a_network_leaves_the_others_alone() {
    in_netns(|| {
        let (mut host, ipam) = host(BOOT, "add");
        let web_before = link("kvweb").unwrap();
        let keel0_before = link("keel0").unwrap();
        assert!(!nft_bridges().contains("net2"), "negative control: net2 is not in the firewall before");
        let new = parse(WITH_NET2, "network.toml").unwrap();
        let plan = plan(&host.config, &attached(&host), &new, false).unwrap();
        let warnings = live::apply(&mut host, &plan, new.clone()).unwrap();
        assert_eq!(warnings, Vec::<String>::new());
        assert_eq!(host.config, new);
        let net2 = link("net2").expect("bridge net2 created");
        assert_eq!(net2.2, ["10.90.0.1/24"]);
        assert!(nft_bridges().contains("\"net2\""), "{}", nft_bridges());
        assert_eq!(link("kvweb").unwrap(), web_before, "web's veth was touched");
        assert_eq!(link("keel0").unwrap(), keel0_before, "keel0 was touched");
        assert_eq!(host.ipam.as_ref().unwrap().lookup("keel0", "web"), Some(Ipv4Addr::new(10, 88, 0, 2)));
        let _ = std::fs::remove_dir_all(ipam);
    });
}

#[test]
fn a_failed_bridge_undoes_the_bridges_made_before_it_and_keeps_the_declaration() {
    in_netns(|| {
        let (mut host, ipam) = host(BOOT, "undo");
        // A veth already called net3: the bridge of net3 cannot be made.
        run("ip", &["link", "add", "net3", "type", "veth", "peer", "name", "net3-peer"]);
        let new = parse(
            &format!("{WITH_NET2}\n[[network]]\nname = \"net3\"\nsubnet = \"10.91.0.0/24\"\n\n[firewall]\nallow = [\"tcp/22\"]\n"),
            "network.toml",
        )
        .unwrap();
        let old = host.config.clone();
        let before = nft_bridges();
        let plan = plan(&host.config, &attached(&host), &new, false).unwrap();
        let err = live::apply(&mut host, &plan, new).unwrap_err();
        assert!(
            matches!(&err, NetworkReloadError::Bridge { network, what: "create", undo, .. } if network == "net3" && undo.is_empty()),
            "{err}"
        );
        assert!(err.to_string().contains("nothing was changed"), "{err}");
        assert_eq!(link("net2"), None, "net2, made before net3 failed, was left behind");
        assert_eq!(host.config, old);
        assert_eq!(nft_bridges(), before, "the firewall changed");
        assert!(!run("nft", &["list", "set", "inet", "keel", "allow"]).contains("22"), "the allow rule went in");
        let _ = std::fs::remove_dir_all(ipam);
    });
}

#[test]
fn removing_a_network_deletes_its_bridge_and_releases_its_leases() {
    in_netns(|| {
        let (mut host, ipam) = host(WITH_NET2, "remove");
        let net2 = host.config.network("net2").unwrap().clone();
        host.ipam.as_mut().unwrap().allocate(&net2, "gone").unwrap();
        let new = parse(BOOT, "network.toml").unwrap();
        // A container still attached refuses the executor too (negative control).
        host.attached.insert("db".into(), ("net2".into(), Ipv4Addr::new(10, 90, 0, 3)));
        let plan_with_db = plan(&host.config, &AttachedByNetwork::new(), &new, false).unwrap();
        let err = live::apply(&mut host, &plan_with_db, new.clone()).unwrap_err();
        assert!(err.to_string().contains("network net2 (still attached) is used by container(s) db"), "{err}");
        assert!(link("net2").is_some(), "a refused apply deleted the bridge");
        host.attached.remove("db");
        let plan = plan(&host.config, &attached(&host), &new, false).unwrap();
        live::apply(&mut host, &plan, new).unwrap();
        assert_eq!(link("net2"), None, "bridge net2 still there");
        assert!(!nft_bridges().contains("net2"), "{}", nft_bridges());
        assert_eq!(host.ipam.as_ref().unwrap().allocations("net2"), []);
        assert_eq!(host.ipam.as_ref().unwrap().lookup("keel0", "web"), Some(Ipv4Addr::new(10, 88, 0, 2)));
        let _ = std::fs::remove_dir_all(ipam);
    });
}

#[test]
fn a_rebuilt_network_gets_its_new_address_and_a_failure_after_it_puts_the_old_one_back() {
    in_netns(|| {
        let (mut host, ipam) = host(WITH_NET2, "rebuild");
        let moved = WITH_NET2.replace("10.90.0.0/24", "10.92.0.0/24");
        // First a failure after the rebuild: net3's name is taken by a veth.
        run("ip", &["link", "add", "net3", "type", "veth", "peer", "name", "net3-peer"]);
        let failing = parse(&format!("{moved}\n[[network]]\nname = \"net3\"\nsubnet = \"10.91.0.0/24\"\n"), "network.toml").unwrap();
        let plan_failing = plan(&host.config, &attached(&host), &failing, false).unwrap();
        let err = live::apply(&mut host, &plan_failing, failing).unwrap_err();
        assert!(matches!(&err, NetworkReloadError::Bridge { network, undo, .. } if network == "net3" && undo.is_empty()), "{err}");
        assert_eq!(link("net2").expect("net2 made again").2, ["10.90.0.1/24"], "the undo did not put net2's old address back");
        // Then the rebuild alone.
        let new = parse(&moved, "network.toml").unwrap();
        let plan = plan(&host.config, &attached(&host), &new, false).unwrap();
        assert!(plan.change[0].rebuild);
        live::apply(&mut host, &plan, new).unwrap();
        assert_eq!(link("net2").expect("net2").2, ["10.92.0.1/24"]);
        assert_eq!(link("kvweb").unwrap().1.as_deref(), Some("keel0"), "web left keel0");
        let _ = std::fs::remove_dir_all(ipam);
    });
}

#[test]
fn a_refused_firewall_batch_undoes_the_bridges_and_keeps_the_declaration() {
    in_netns(|| {
        let (mut host, ipam) = host(BOOT, "firewall");
        let before = nft_bridges();
        let new = parse(WITH_NET2, "network.toml").unwrap();
        let plan = plan(&host.config, &attached(&host), &new, false).unwrap();
        // An uplink name nft refuses to express: the batch is never sent.
        let uplink = |interface: &str| keel_init::network::UplinkStatus {
            interface: interface.into(),
            mode: "static".into(),
            address: None,
            gateway: None,
            dns: Vec::new(),
            lease_secs: None,
            server: None,
        };
        host.uplink = Some(uplink("bad name"));
        let old = host.config.clone();
        let err = live::apply(&mut host, &plan, new.clone()).unwrap_err();
        assert!(matches!(&err, NetworkReloadError::Firewall { undo, .. } if undo.is_empty()), "{err}");
        assert_eq!(link("net2"), None, "net2 was left behind");
        assert_eq!(host.config, old);
        assert_eq!(nft_bridges(), before);
        // Negative control: with a valid uplink name the same plan applies.
        host.uplink = Some(uplink("eth9"));
        live::apply(&mut host, &plan, new).unwrap();
        assert!(link("net2").is_some() && nft_bridges().contains("\"net2\""));
        let _ = std::fs::remove_dir_all(ipam);
    });
}
