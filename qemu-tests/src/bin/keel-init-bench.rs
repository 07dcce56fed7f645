//! keel-init-bench: `keel init` against Debian's tini, reaping orphans in a pid namespace.
//!
//! For each init, RUNS times (alternating keel and tini, so drift hits both alike):
//! `unshare -fp --mount-proc INIT -- sh -c SCRIPT`, where the script runs
//! `keel-probe orphans N` (N grandchildren orphaned to PID 1, each exiting ~100 ms
//! later) and then waits until only PID 1 and itself are left in the namespace —
//! zombies still have a /proc entry, so that is the moment the init has reaped them
//! all. Reports the median wall time of each init, the ratio keel/tini, and the
//! init's peak RSS (VmHWM of PID 1, read by the script just before it exits).
//! The wait loop polls /proc every 10 ms, the resolution of the figures.
//!
//! Usage: keel-init-bench [ORPHANS] [RUNS]   (defaults: 1000, 5). Needs root, util-linux
//! `unshare`, Debian's `tini`, and `keel` and `keel-probe` built next to this binary
//! (`make bench-init` does all of it).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// Runs inside the namespace: $0 is keel-probe, $1 the orphan count.
const SCRIPT: &str = r#"
"$0" orphans "$1" >/dev/null || exit 1
while set -- /proc/[0-9]*; [ $# -gt 2 ]; do sleep 0.01; done
while read -r key value _; do [ "$key" = VmHWM: ] && echo "$value"; done < /proc/1/status
exit 0
"#;

/// One measured run: wall time and the init's peak RSS.
struct Run {
    seconds: f64,
    hwm_kib: u64,
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let orphans: usize = args.first().and_then(|n| n.parse().ok()).unwrap_or(1000);
    let runs: usize = args.get(1).and_then(|n| n.parse().ok()).unwrap_or(5).max(1);
    let dir = std::env::current_exe().ok().and_then(|p| p.parent().map(Path::to_path_buf)).unwrap_or_default();
    let keel = sibling(&dir, "keel");
    let probe = sibling(&dir, "keel-probe");
    if Command::new("tini").arg("--version").output().is_err() {
        fail("tini is not on PATH: apt-get install tini (scripts/install-deps.sh installs it)");
    }
    let inits: [(&str, Vec<String>); 2] =
        [("keel init", vec![keel.display().to_string(), "init".into(), "--".into()]), ("tini", vec!["tini".into(), "--".into()])];
    let mut results: [Vec<Run>; 2] = [Vec::new(), Vec::new()];
    for i in 0..runs {
        for (slot, (name, init)) in inits.iter().enumerate() {
            let run = measure(init, &probe, orphans);
            println!("run {}: {name:<9} {:.3} s, PID 1 VmHWM {} KiB", i + 1, run.seconds, run.hwm_kib);
            results[slot].push(run);
        }
    }
    println!("orphans per run: {orphans}; runs per init: {runs}");
    let medians: Vec<f64> = inits.iter().zip(&results).map(|((name, _), runs)| summary(name, runs)).collect();
    println!("ratio keel/tini (median wall time): {:.3}", medians[0] / medians[1]);
}

/// A binary built next to this one.
fn sibling(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    if !path.exists() {
        fail(&format!("{} not found: cargo build --release -p keel-init -p keel-qemu-tests --bins", path.display()));
    }
    path
}

fn fail(message: &str) -> ! {
    eprintln!("keel-init-bench: {message}");
    std::process::exit(2)
}

/// One run of `init` over the orphan script in a fresh pid namespace.
fn measure(init: &[String], probe: &Path, orphans: usize) -> Run {
    let start = Instant::now();
    let output = Command::new("unshare")
        .args(["-fp", "--mount-proc"])
        .args(init)
        .args(["sh", "-c", SCRIPT])
        .arg(probe)
        .arg(orphans.to_string())
        .output()
        .unwrap_or_else(|e| fail(&format!("unshare: {e}")));
    let seconds = start.elapsed().as_secs_f64();
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        fail(&format!("{} failed ({}): {stdout}{}", init[0], output.status, String::from_utf8_lossy(&output.stderr)));
    }
    let hwm_kib = stdout.trim().parse().unwrap_or(0);
    Run { seconds, hwm_kib }
}

/// Print median/min/max of one init's runs; returns the median wall time.
fn summary(name: &str, runs: &[Run]) -> f64 {
    let mut times: Vec<f64> = runs.iter().map(|r| r.seconds).collect();
    times.sort_by(f64::total_cmp);
    let mut hwm: Vec<u64> = runs.iter().map(|r| r.hwm_kib).collect();
    hwm.sort_unstable();
    let median = times[times.len() / 2];
    println!(
        "{name:<9}: median {median:.3} s, min {:.3} s, max {:.3} s; PID 1 peak RSS (VmHWM) median {} KiB",
        times[0],
        times[times.len() - 1],
        hwm[hwm.len() / 2]
    );
    median
}
