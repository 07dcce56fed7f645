//! `make bench-boot` must keep working: run keel-boot-bench for one boot of the demo
//! host, given by a path relative to this crate (so its `[[files]] source` paths only
//! resolve if the bench builds the host.toml where it lies), and check its result lines.

use std::process::Command;

/// The number of seconds in `… median X s, min Y s, max Z s` lines.
fn medians(stdout: &str, label: &str) -> Vec<f64> {
    stdout
        .lines()
        .filter(|l| l.starts_with(label))
        .filter_map(|l| l.split("median ").nth(1))
        .filter_map(|rest| rest.split(" s").next())
        .filter_map(|n| n.parse().ok())
        .collect()
}

#[test]
fn boot_bench_reports_kernel_and_keel_shares() {
    let output = Command::new(env!("CARGO_BIN_EXE_keel-boot-bench"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["../examples/demo/host.toml", "1"])
        .output()
        .expect("run keel-boot-bench");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "keel-boot-bench failed: {}\nstdout:\n{stdout}\nstderr:\n{stderr}", output.status);
    let kernel = medians(&stdout, "kernel start -> exec of PID 1");
    let keel = medians(&stdout, "exec of PID 1 -> keel: ready");
    let total = medians(&stdout, "kernel start -> keel: ready");
    assert!(kernel.len() == 1 && keel.len() == 1 && total.len() == 1, "result lines missing:\n{stdout}");
    let (kernel, keel, total) = (kernel[0], keel[0], total[0]);
    assert!(kernel > 0.0 && keel > 0.0, "shares must be positive:\n{stdout}");
    assert!((kernel + keel - total).abs() < 0.002, "kernel + keel != total:\n{stdout}");
    assert!(stdout.contains("boots: 1"), "{stdout}");
    assert!(stdout.lines().any(|l| l.starts_with("boot 1: kernel ")), "{stdout}");
    let rss = stdout.lines().find_map(|l| l.strip_prefix("PID 1 RSS at ready (KiB): [")).unwrap_or_else(|| panic!("{stdout}"));
    let rss: u64 = rss.trim_end_matches(']').parse().unwrap_or_else(|_| panic!("one RSS figure expected:\n{stdout}"));
    assert!(rss > 0, "{stdout}");
}
