//! `keelctl network reload` (issue 14 point 3, networks): network.toml edited in the
//! running guest and applied live.
//!
//! The guest boots with one network (keel0) and two containers: `first` on keel0 with a
//! published port, and `late` on `net2`, a network not declared yet (its start fails).
//! Then, in order:
//! 1. a bad network.toml is refused naming file:line:key, and nothing changes;
//! 2. an uplink change is refused ("uplink changes need a reboot");
//! 3. net2 is added (`keelctl network reload` in the guest prints it), `late` starts on it and its published port
//!    answers on the QEMU host through hostfwd, while `first` keeps its pid, its veth
//!    (same interface index) and an HTTP connection opened through its published port
//!    before the reload (its conntrack/NAT entry survived the firewall replacement);
//!    and `allow = ["tcp/8081"]` opens a host service to the QEMU host (closed before);
//! 4. changing net2's subnet while `late` uses it is refused naming `late` (negative
//!    control: nothing moved), then allowed with `restart_attached`: `late` is stopped,
//!    net2 rebuilt in the new subnet, `late` started again there (new pid, new address),
//!    its port answers again, and `first` is still untouched.

use keel_build::qemu::HostFwd;
use keel_qemu_tests::free_port;
use keel_qemu_tests::{build_image, busybox_host, declare_container, target_dir, BootOptions, Guest, BUSYBOX_IMAGE};
use keel_supervisor::control::Command;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

const BOOT_TOML: &str = "[[network]]\nname = \"keel0\"\nsubnet = \"10.88.0.0/16\"\n";
/// net2 added, and the host's port 8081 opened on the uplink.
const WITH_NET2: &str = "[[network]]\nname = \"keel0\"\nsubnet = \"10.88.0.0/16\"\n\n[[network]]\nname = \"net2\"\nsubnet = \"10.90.0.0/24\"\n\n[firewall]\nallow = [\"tcp/8081\"]\n";
/// Line 7 has a prefix with host bits set: the error must name it.
const BAD: &str = "[[network]]\nname = \"keel0\"\nsubnet = \"10.88.0.0/16\"\n\n[[network]]\nname = \"net2\"\nsubnet = \"10.90.0.7/24\"\n";
const NET2_MOVED: &str = "[[network]]\nname = \"keel0\"\nsubnet = \"10.88.0.0/16\"\n\n[[network]]\nname = \"net2\"\nsubnet = \"10.91.0.0/24\"\n\n[firewall]\nallow = [\"tcp/8081\"]\n";
/// net3 added too (step 5, through `keelctl reload` with a new container on it).
const WITH_NET3: &str = "[[network]]\nname = \"keel0\"\nsubnet = \"10.88.0.0/16\"\n\n[[network]]\nname = \"net2\"\nsubnet = \"10.91.0.0/24\"\n\n[[network]]\nname = \"net3\"\nsubnet = \"10.92.0.0/24\"\n\n[firewall]\nallow = [\"tcp/8081\"]\n";
const UPLINK: &str = "[[uplink]]\ninterface = \"eth0\"\n\n[[network]]\nname = \"keel0\"\nsubnet = \"10.88.0.0/16\"\n";

const HTTPD: &str = "image = \"@IMAGE@\"\ncommand = [\"/bin/httpd\", \"-f\", \"-p\", \"80\", \"-h\", \"/www\"]\nstop_timeout = \"1s\"\n";

/// The body of an HTTP/1.0 GET sent on `stream`, or None.
fn get_on(mut stream: TcpStream) -> Option<String> {
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    stream.write_all(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    answer.split_once("\r\n\r\n").map(|(_, body)| body.to_string()).filter(|b| !b.is_empty())
}

/// GET / on localhost:`port`, retried until it answers or `timeout` passes.
fn fetch_until(port: u16, timeout: Duration) -> Option<String> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(body) = TcpStream::connect(("127.0.0.1", port)).ok().and_then(get_on) {
            return Some(body);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// Write network.toml in the guest (through `keelctl exec` on the host).
fn write_network_toml(guest: &Guest, text: &str) {
    let out = guest.exec(&["sh", "-c", &format!("printf '%s' '{text}' > /etc/keel/network.toml")]);
    assert_eq!(out.exit_code, 0, "{out:?}");
}

fn reload(guest: &Guest, restart_attached: bool) -> Result<serde_json::Value, String> {
    guest.call(Command::NetworkReload { restart_attached }, Duration::from_secs(60)).map_err(|e| e.to_string())
}

/// The pid of a running container and the interface index of its veth's host end (`kvPID`).
fn pid_and_veth(guest: &Guest, name: &str) -> (i32, String) {
    let pid = guest.container(name).pid.unwrap_or_else(|| guest.fail(&format!("{name} has no pid")));
    let index = guest.exec(&["cat", &format!("/sys/class/net/kv{pid}/ifindex")]);
    assert_eq!(index.exit_code, 0, "{name}: no veth kv{pid}: {index:?}");
    (pid, index.stdout.trim().to_string())
}

/// The address of `container` on `network`, from `network inspect`.
fn address(guest: &Guest, container: &str, network: &str) -> Option<String> {
    let detail = guest.call(Command::NetworkInspect { name: network.into() }, Duration::from_secs(30)).ok()?;
    let list = detail["attached"].as_array()?.clone();
    list.iter().find(|a| a["container"] == container).and_then(|a| a["address"].as_str()).map(str::to_string)
}

fn network_names(guest: &Guest) -> Vec<String> {
    let list = guest.call(Command::NetworkLs, Duration::from_secs(30)).unwrap();
    list.as_array().unwrap().iter().map(|n| n["name"].as_str().unwrap().to_string()).collect()
}

#[test]
fn reload_adds_a_network_live_and_refuses_to_pull_one_from_under_a_container() {
    let name = "network-reload";
    let dir = target_dir().join("qemu-tests").join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("network.toml"), BOOT_TOML).unwrap();
    std::fs::write(dir.join("index.html"), "from-the-container\n").unwrap();
    let mut host = busybox_host("keel-reload", &["virtio_pci", "virtio_console", "virtio_net", "button", "evdev"], 2);
    host.push_str(&format!(
        "\n[[files]]\nsource = \"{}\"\npath = \"/etc/keel/network.toml\"\n\n[[files]]\nsource = \"{}\"\npath = \"/usr/share/keel/images/busybox/www/index.html\"\n",
        dir.join("network.toml").display(),
        dir.join("index.html").display()
    ));
    declare_container(&dir, &mut host, "first", &format!("{HTTPD}ports = [\"80:80/tcp\"]\n"));
    declare_container(&dir, &mut host, "late", &format!("{HTTPD}network = \"net2\"\nports = [\"8090:80/tcp\"]\nrestart = \"no\"\n"));
    let image = build_image(name, &host, env!("CARGO_BIN_EXE_keel-probe").as_ref());
    let (port_first, port_late, port_host, port_third) = (free_port(), free_port(), free_port(), free_port());
    let hostfwd = vec![
        format!("tcp:{port_third}-:8092").parse::<HostFwd>().unwrap(),
        format!("tcp:{port_first}-:80").parse::<HostFwd>().unwrap(),
        format!("tcp:{port_late}-:8090").parse::<HostFwd>().unwrap(),
        format!("tcp:{port_host}-:8081").parse::<HostFwd>().unwrap(),
    ];
    let mut guest = Guest::boot(&image, name, BootOptions { hostfwd, ..Default::default() });
    guest.wait_ready();
    guest.wait_container("first", Duration::from_secs(60), |c| c.state == "running");
    let late = guest.wait_container("late", Duration::from_secs(60), |c| c.state == "exited" || c.state == "failed");
    assert!(late.detail.as_deref().unwrap_or_default().contains("net2"), "late fails for its network: {late:?}");
    assert_eq!(fetch_until(port_first, Duration::from_secs(20)).as_deref(), Some("from-the-container\n"));
    let (first_pid, first_veth) = pid_and_veth(&guest, "first");
    let first_address = address(&guest, "first", "keel0").expect("first on keel0");

    // 1. A bad file changes nothing and names file:line:key.
    write_network_toml(&guest, BAD);
    let err = reload(&guest, false).unwrap_err();
    assert!(err.contains("/etc/keel/network.toml:7: network[1].subnet: 10.90.0.7/24 has host bits set"), "{err}");
    assert!(err.contains("nothing was changed"), "{err}");
    assert_eq!(network_names(&guest), ["keel0"]);

    // 2. Uplink changes are refused.
    write_network_toml(&guest, UPLINK);
    let err = reload(&guest, false).unwrap_err();
    assert!(err.contains("uplink changes need a reboot"), "{err}");

    // A host service on port 8081: closed by the default input policy until `allow`ed.
    let started = guest.exec(&["httpd", "-p", "8081", "-h", "/usr/share/keel/images/busybox/www"]);
    assert_eq!(started.exit_code, 0, "{started:?}");
    assert_eq!(guest.exec(&["keel-probe", "fetch", "127.0.0.1:8081"]).stdout, "from-the-container\n", "the host service does not run");
    assert_eq!(fetch_until(port_host, Duration::from_secs(2)), None, "negative control: port 8081 is open before the reload");

    // 3. net2 added live; a connection into `first` opened before it survives.
    let held = TcpStream::connect(("127.0.0.1", port_first)).expect("connect to first's published port");
    std::thread::sleep(Duration::from_millis(500));
    write_network_toml(&guest, WITH_NET2);
    // Through keelctl in the guest: what it prints.
    let printed = guest.exec(&["keelctl", "network", "reload"]);
    assert_eq!(printed.exit_code, 0, "{printed:?}");
    assert_eq!(
        printed.stdout, "added network net2 (bridge net2, subnet 10.90.0.0/24)\nfirewall: allow: +tcp/8081\nunchanged: keel0\n",
        "{printed:?}"
    );
    assert_eq!(fetch_until(port_host, Duration::from_secs(20)).as_deref(), Some("from-the-container\n"), "allow tcp/8081 did not apply");
    // Once more: nothing left to do.
    let report = reload(&guest, false).unwrap_or_else(|e| guest.fail(&format!("reload: {e}")));
    assert_eq!(report["added"], serde_json::json!([]), "{report}");
    assert_eq!(report["unchanged"], serde_json::json!(["keel0", "net2"]), "{report}");
    assert_eq!(network_names(&guest), ["keel0", "net2"]);
    assert_eq!(get_on(held).as_deref(), Some("from-the-container\n"), "a connection opened before the reload was cut");
    guest.call(Command::Start { name: "late".into() }, Duration::from_secs(30)).unwrap();
    guest.wait_container("late", Duration::from_secs(30), |c| c.state == "running");
    let late_address = address(&guest, "late", "net2").expect("late on net2");
    assert!(late_address.starts_with("10.90.0."), "{late_address}");
    assert_eq!(fetch_until(port_late, Duration::from_secs(20)).as_deref(), Some("from-the-container\n"), "net2's published port");
    assert_eq!(pid_and_veth(&guest, "first"), (first_pid, first_veth.clone()), "first was disturbed by adding net2");
    assert_eq!(address(&guest, "first", "keel0").as_deref(), Some(first_address.as_str()));

    // 4. Changing net2 while late uses it: refused naming late, then done with restart_attached.
    let (late_pid, _) = pid_and_veth(&guest, "late");
    // Negative control of the held-connection check: one into late, which restarts, is cut.
    let held_late = TcpStream::connect(("127.0.0.1", port_late)).expect("connect to late's published port");
    std::thread::sleep(Duration::from_millis(500));
    write_network_toml(&guest, NET2_MOVED);
    let refused = guest.exec(&["keelctl", "network", "reload"]);
    let err = refused.stderr.clone();
    assert_ne!(refused.exit_code, 0, "{refused:?}");
    assert!(err.contains("network net2 (subnet 10.90.0.0/24 -> 10.91.0.0/24") && err.contains("container(s) late"), "{refused:?}");
    assert_eq!(guest.container("late").pid, Some(late_pid), "a refused reload restarted late");
    assert_eq!(address(&guest, "late", "net2").as_deref(), Some(late_address.as_str()), "a refused reload moved late");
    let report = reload(&guest, true).unwrap_or_else(|e| guest.fail(&format!("reload --restart-attached: {e}")));
    assert_eq!(report["restarted"], serde_json::json!(["late"]), "{report}");
    assert!(report["changed"][0].as_str().unwrap_or_default().starts_with("net2: subnet 10.90.0.0/24 -> 10.91.0.0/24"), "{report}");
    let late_now = guest.wait_container("late", Duration::from_secs(30), |c| c.state == "running");
    assert_eq!(get_on(held_late), None, "negative control: a connection into a restarted container still answers");
    assert_ne!(late_now.pid, Some(late_pid), "late was not restarted");
    let moved = address(&guest, "late", "net2").expect("late on net2 again");
    assert!(moved.starts_with("10.91.0."), "{moved}");
    let net2 = guest.call(Command::NetworkInspect { name: "net2".into() }, Duration::from_secs(30)).unwrap();
    let bridge = net2["bridge_addresses"].to_string();
    assert!(bridge.contains("10.91.0.1/24") && !bridge.contains("10.90.0.1"), "{net2}");
    assert_eq!(fetch_until(port_late, Duration::from_secs(20)).as_deref(), Some("from-the-container\n"), "late's port after the move");
    assert_eq!(pid_and_veth(&guest, "first"), (first_pid, first_veth.clone()), "first was disturbed by the change of net2");
    assert_eq!(fetch_until(port_first, Duration::from_secs(20)).as_deref(), Some("from-the-container\n"));

    // 5. `keelctl reload` (network.toml, then the container declarations) adds net3 and a
    //    new container on it with a published port, live, in one command; first and late
    //    are untouched. Control: the port does not answer before.
    let late_pid = guest.container("late").pid;
    assert_eq!(fetch_until(port_third, Duration::from_secs(2)), None, "negative control: port 8092 answers before the reload");
    write_network_toml(&guest, WITH_NET3);
    let third = format!("{HTTPD}network = \"net3\"\nports = [\"8092:80/tcp\"]\n").replace("@IMAGE@", BUSYBOX_IMAGE);
    let out = guest.exec(&["sh", "-c", &format!("printf '%s' '{third}' > /etc/keel/containers/third.toml")]);
    assert_eq!(out.exit_code, 0, "{out:?}");
    let printed = guest.exec(&["keelctl", "reload"]);
    assert_eq!(printed.exit_code, 0, "{printed:?}");
    assert!(printed.stdout.contains("network.toml: added network net3") && printed.stdout.contains("add third"), "{printed:?}");
    guest.wait_container("third", Duration::from_secs(60), |c| c.state == "running");
    assert!(address(&guest, "third", "net3").is_some_and(|a| a.starts_with("10.92.0.")), "third on net3");
    assert_eq!(fetch_until(port_third, Duration::from_secs(20)).as_deref(), Some("from-the-container\n"), "net3's published port");
    assert_eq!(pid_and_veth(&guest, "first"), (first_pid, first_veth.clone()), "first was disturbed by reload");
    assert_eq!(guest.container("late").pid, late_pid, "late was disturbed by reload");

    // Negative control of the pid/veth check: a restart of first does change them.
    guest.call(Command::Restart { name: "first".into() }, Duration::from_secs(30)).unwrap();
    guest.wait_container("first", Duration::from_secs(30), |c| c.state == "running" && c.pid != Some(first_pid));
    assert_ne!(pid_and_veth(&guest, "first").0, first_pid);

    guest.call(Command::Poweroff, Duration::from_secs(20)).unwrap();
    guest.wait_exit(Duration::from_secs(60));
}
