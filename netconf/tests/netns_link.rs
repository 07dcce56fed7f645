//! Host test: in a throwaway network namespace (never the host's), keel brings `lo` up
//! and `ip -j` — an independent tool — sees it up.

use std::process::Command;

/// `ip -j link show lo` as seen from this thread's network namespace.
fn lo_flags() -> Vec<String> {
    let out = Command::new("ip").args(["-j", "link", "show", "lo"]).output().expect("run ip");
    assert!(out.status.success(), "ip failed: {}", String::from_utf8_lossy(&out.stderr));
    let links: serde_json::Value = serde_json::from_slice(&out.stdout).expect("ip -j output");
    links[0]["flags"].as_array().expect("flags").iter().map(|f| f.as_str().unwrap_or("").to_string()).collect()
}

#[test]
fn brings_lo_up_in_a_fresh_namespace() {
    // unshare(CLONE_NEWNET) moves only this test's thread; child processes inherit it.
    let handle = std::thread::spawn(|| {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("host tests run as root with netns support");
        let before = lo_flags();
        keel_netconf::set_link_up("lo").expect("set lo up");
        (before, lo_flags())
    });
    let (before, after) = handle.join().unwrap();
    assert!(!before.contains(&"UP".to_string()), "negative control: lo starts down in a new netns: {before:?}");
    assert!(after.contains(&"UP".to_string()), "lo not up after set_link_up: {after:?}");
}

#[test]
fn unknown_link_is_a_kernel_error_naming_the_operation() {
    let handle = std::thread::spawn(|| {
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("host tests run as root with netns support");
        keel_netconf::set_link_up("nosuch0").unwrap_err().to_string()
    });
    let message = handle.join().unwrap();
    assert!(message.starts_with("set link nosuch0 up: kernel said: "), "{message}");
}
