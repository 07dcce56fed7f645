//! Host test: a start failing at each of its steps (test option `fail_launches`, the
//! library side of `keel.test.fail_launch`) leaves no IPAM lease, veth or state
//! directory behind; with the cleanup skipped (negative control) the same checks see
//! all three. Runs in a throwaway network namespace with its own bridge, never the
//! host's; needs root. cgroup v2 does not work on this host: the cgroup part is the
//! QEMU test `containers::a_failed_launch_leaves_no_cgroup_behind`.

mod common;

use common::Fixture;
use keel_init::network::{attach::ContainerNetworks, HostNetwork};
use keel_netconf::config::{default_config, Network};
use keel_supervisor::cgroup::CgroupTree;
use keel_supervisor::manager::{LaunchError, LaunchFault, LaunchStep, Launcher, SystemLauncher};
use keel_supervisor::spec::{self, ContainerName};
use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::rc::Rc;

/// What a start may leave behind, as seen from outside the launcher.
#[derive(Debug, PartialEq, Eq)]
struct Leftovers {
    /// The container's line in the network's IPAM file on disk.
    lease: bool,
    /// Host ends of veths (`kv…`) in the namespace.
    veths: Vec<String>,
    /// The container's state directory.
    state_dir: bool,
}

impl Leftovers {
    const NONE: Leftovers = Leftovers { lease: false, veths: Vec::new(), state_dir: false };
}

fn leftovers(ipam_dir: &Path, state_dir: &Path, container: &str) -> Leftovers {
    let table = std::fs::read_to_string(ipam_dir.join("keel0.json")).unwrap_or_default();
    let table: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&table).unwrap_or_default();
    let veths = keel_netconf::list_links().expect("list links").into_iter().map(|l| l.name).filter(|n| n.starts_with("kv")).collect();
    Leftovers { lease: table.contains_key(container), veths, state_dir: state_dir.exists() }
}

struct Setup {
    fx: Fixture,
    launcher: SystemLauncher,
    ipam_dir: PathBuf,
    state_root: PathBuf,
}

/// A launcher attaching to `keel0` (bridge up in this thread's namespace), no cgroup.
fn setup(name: &str) -> Setup {
    let fx = Fixture::new(name);
    let ipam_dir = fx.dir.join("ipam");
    let state_root = fx.dir.join("state");
    let mut config = default_config();
    config.networks = vec![Network::default_keel0()];
    let net = &config.networks[0];
    keel_netconf::ensure_bridge_dual(&net.bridge, net.gateway, net.subnet.prefix, None).expect("bridge in the test namespace");
    let host = HostNetwork::new(config, &ipam_dir);
    let attacher = ContainerNetworks::new(Rc::new(RefCell::new(host)));
    // No cgroup2 at this path: the launcher runs without cgroups, as on this host.
    let tree = CgroupTree::new(fx.dir.join("no-cgroup"));
    let launcher = SystemLauncher::new(state_root.clone(), tree, Box::new(attacher)).with_image_root(fx.dir.join("images"));
    Setup { fx, launcher, ipam_dir, state_root }
}

fn declaration(fx: &Fixture, name: &str) -> spec::ContainerSpec {
    let text = format!("image = \"{}\"\ncommand = [\"/bin/busybox\", \"sleep\", \"100\"]\nnetwork = \"keel0\"\n", fx.rootfs().display());
    spec::parse(name, &text, &format!("{name}.toml")).expect("valid declaration")
}

/// In a fresh network namespace (this thread only; children inherit it).
fn in_netns<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(move || {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("host tests run as root with netns support");
        f()
    })
    .join()
    .unwrap()
}

#[test]
fn a_launch_failing_at_each_step_leaves_no_lease_veth_or_state_dir() {
    in_netns(|| {
        let mut s = setup("launch-cleanup");
        for (i, step) in LaunchStep::ALL.into_iter().enumerate() {
            let name = format!("c{i}");
            let spec = declaration(&s.fx, &name);
            s.launcher.fail_launches([(ContainerName::new(&name).unwrap(), LaunchFault { after: step, leak: false })]);
            let error = s.launcher.launch(&spec).expect_err("the injected failure");
            assert_eq!(error.step(), Some(step), "{error}");
            assert!(error.cleanup().is_empty(), "step {step}: cleanup failed: {error}");
            let left = leftovers(&s.ipam_dir, &s.state_root.join(&name), &name);
            assert_eq!(left, Leftovers::NONE, "a start failing after step {step} left this behind ({error})");
        }
        // Positive control: a start that succeeds takes all three, and the checks see them.
        let spec = declaration(&s.fx, "ok");
        let launched = s.launcher.launch(&spec).expect("an unfailed start");
        let left = leftovers(&s.ipam_dir, &s.state_root.join("ok"), "ok");
        assert!(left.lease && left.veths == [format!("kv{}", launched.pid)] && left.state_dir, "{left:?}");
        s.launcher.kill_all(&spec.name, launched.pid);
        let _ = nix::sys::wait::waitpid(launched.pid, None);
        s.launcher.release(&spec.name);
        // The kernel drops the ended container's network namespace, and with it the
        // veth pair, in a work queue: wait for that before looking for leftovers.
        let gone_by = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !leftovers(&s.ipam_dir, &s.state_root.join("ok"), "ok").veths.is_empty() && std::time::Instant::now() < gone_by {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        // What the container had before a failed start stays its own: its address and
        // its state directory (its writable layer) survive the failure.
        std::fs::write(s.state_root.join("ok/upper/kept"), "written by the first run").unwrap();
        for step in [LaunchStep::Network, LaunchStep::Hooks] {
            s.launcher.fail_launches([(spec.name.clone(), LaunchFault { after: step, leak: false })]);
            let error = s.launcher.launch(&spec).expect_err("the injected failure");
            assert!(error.cleanup().is_empty(), "{error}");
            let left = leftovers(&s.ipam_dir, &s.state_root.join("ok"), "ok");
            assert_eq!(left, Leftovers { lease: true, veths: Vec::new(), state_dir: true }, "after {step}");
            assert!(s.state_root.join("ok/upper/kept").exists(), "the writable layer went with a failed start after {step}");
        }
    });
}

#[test]
fn a_start_that_keeps_what_it_took_is_seen_leaking() {
    in_netns(|| {
        let mut s = setup("launch-leak");
        // Negative control: the same failure as above, with the cleanup skipped.
        let spec = declaration(&s.fx, "leaky");
        s.launcher.fail_launches([(spec.name.clone(), LaunchFault { after: LaunchStep::Started, leak: true })]);
        let error = s.launcher.launch(&spec).expect_err("the injected failure");
        assert!(matches!(error, LaunchError::Failed { step: LaunchStep::Started, .. }), "{error}");
        let left = leftovers(&s.ipam_dir, &s.state_root.join("leaky"), "leaky");
        assert!(left.lease, "the leaked lease is not seen: {left:?}");
        assert_eq!(left.veths.len(), 1, "the leaked veth is not seen: {left:?}");
        assert!(left.state_dir, "the leaked state directory is not seen: {left:?}");
        // The leaked process: its pid is in the veth's name.
        let pid: i32 = left.veths[0].trim_start_matches("kv").parse().unwrap();
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
    });
}
