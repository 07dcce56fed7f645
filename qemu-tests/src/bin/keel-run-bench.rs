//! keel-run-bench: `keel run` against crun, one `/bin/true` container at a time.
//!
//! Both runtimes run the same busybox-static root filesystem (built in a temp dir):
//! keel from a declaration `image = ROOTFS`, `command = ["/bin/true"]`, `network = "none"` (crun's equivalent: a network namespace with only lo) and its default
//! isolation (pid, mount, uts, ipc, net and cgroup namespaces, overlay root, seccomp,
//! dropped capabilities); crun from an OCI bundle made by `crun spec` (its default pid,
//! network, ipc, uts and mount namespaces, its default capabilities and masked paths;
//! `process.args = ["/bin/true"]`, no terminal, writable root, `--cgroup-manager=disabled`
//! and no cgroup section or cgroup mount, since this kind of host has no cgroup v2 and
//! keel then runs without a cgroup too).
//!
//! Measures, interleaving keel and crun so that drift hits both alike:
//! (a) start latency: wall time from spawning the runner to its exit, for one
//!     `/bin/true` container (median of RUNS runs each);
//! (b) throughput: total wall time of BATCH sequential `/bin/true` containers (median
//!     of REPS repetitions each).
//! Reports the medians, the ratio keel/crun and whether keel meets the goal of taking
//! at most half of crun's time.
//!
//! On a hybrid cgroup host (cgroup v1 with a cgroup2 mount at /sys/fs/cgroup/unified
//! holding a controller) crun refuses to start even with cgroups disabled ("cgroups in
//! hybrid mode not supported"), so the benchmark first moves itself into a private mount
//! namespace and detaches that one mount there; both runtimes are then run from that
//! namespace. The host's mounts are untouched.
//!
//! The root filesystem and the bundle live in one directory under $TMPDIR (default
//! /tmp). Each runtime keeps its run state where it does by default on a real host,
//! both tmpfs: keel under /run/keel/run (its `keel run` default), crun under /run
//! (here /run/keel-run-bench-crun, so the benchmark never touches crun's own /run/crun).
//!
//! Usage: keel-run-bench [RUNS] [BATCH] [REPS]   (defaults: 30, 100, 3). Needs root,
//! `crun` (apt-get install crun), busybox-static at /bin/busybox, and `keel` built next
//! to this binary (`make bench-run` does all of it).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Instant;

/// The goal: keel takes at most this fraction of crun's time.
const GOAL_RATIO: f64 = 0.5;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize, default: usize| args.get(i).and_then(|n| n.parse().ok()).unwrap_or(default).max(1);
    let (runs, batch, reps) = (arg(0, 30), arg(1, 100), arg(2, 3));
    if !nix::unistd::geteuid().is_root() {
        fail("needs root (namespaces, mounts)");
    }
    let exe_dir = std::env::current_exe().ok().and_then(|p| p.parent().map(Path::to_path_buf)).unwrap_or_default();
    let keel = exe_dir.join("keel");
    if !keel.exists() {
        fail(&format!("{} not found: cargo build --release --workspace --bins", keel.display()));
    }
    let crun_version = Command::new("crun")
        .arg("--version")
        .output()
        .unwrap_or_else(|_| fail("crun is not on PATH: apt-get install crun (scripts/install-deps.sh installs it)"));
    let crun_version = String::from_utf8_lossy(&crun_version.stdout).lines().next().unwrap_or("crun ?").to_string();
    println!("keel: {}", keel.display());
    println!("crun: {crun_version}");

    private_mounts_without_hybrid_cgroup2();
    let dir = std::env::temp_dir().join(format!("keel-run-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let bench = Bench::new(&dir, &keel);
    let result = std::panic::catch_unwind(|| bench.measure(runs, batch, reps));
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&bench.crun_root);
    if result.is_err() {
        std::process::exit(1);
    }
}

fn fail(message: &str) -> ! {
    eprintln!("keel-run-bench: {message}");
    std::process::exit(2)
}

/// Move into a private mount namespace and, on a hybrid cgroup host, detach the
/// cgroup2 mount at /sys/fs/cgroup/unified there (see the module comment).
fn private_mounts_without_hybrid_cgroup2() {
    use nix::mount::{mount, umount2, MntFlags, MsFlags};
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).unwrap_or_else(|e| fail(&format!("unshare(CLONE_NEWNS): {e}")));
    mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>)
        .unwrap_or_else(|e| fail(&format!("make / rprivate: {e}")));
    let unified = Path::new("/sys/fs/cgroup/unified");
    let v2_root = Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    if !v2_root && unified.join("cgroup.controllers").exists() {
        match umount2(unified, MntFlags::MNT_DETACH) {
            Ok(()) => println!("hybrid cgroup host: detached /sys/fs/cgroup/unified in the benchmark's own mount namespace (for crun)"),
            Err(e) => eprintln!("keel-run-bench: warning: umount {}: {e}", unified.display()),
        }
    }
}

/// The shared root filesystem, keel's declaration and crun's bundle.
struct Bench {
    keel: PathBuf,
    declaration: PathBuf,
    bundle: PathBuf,
    crun_root: PathBuf,
}

/// Which runtime a measurement is of.
#[derive(Clone, Copy)]
enum Runtime {
    Keel,
    Crun,
}

impl Runtime {
    const BOTH: [Runtime; 2] = [Runtime::Keel, Runtime::Crun];

    fn name(self) -> &'static str {
        match self {
            Runtime::Keel => "keel",
            Runtime::Crun => "crun",
        }
    }
}

impl Bench {
    fn new(dir: &Path, keel: &Path) -> Bench {
        let rootfs = dir.join("rootfs");
        for sub in ["bin", "proc", "sys", "dev", "tmp", "etc"] {
            std::fs::create_dir_all(rootfs.join(sub)).unwrap_or_else(|e| fail(&format!("mkdir: {e}")));
        }
        std::fs::copy("/bin/busybox", rootfs.join("bin/busybox"))
            .unwrap_or_else(|e| fail(&format!("copy /bin/busybox (apt-get install busybox-static): {e}")));
        let list = Command::new("/bin/busybox").arg("--list").output().map(|o| o.stdout).unwrap_or_default();
        let mut applets: Vec<String> = String::from_utf8_lossy(&list).lines().map(str::to_string).collect();
        applets.extend(["true".to_string(), "sh".to_string()]);
        applets.sort();
        applets.dedup();
        for applet in applets.iter().filter(|a| a.as_str() != "busybox" && !a.contains('/')) {
            std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet))
                .unwrap_or_else(|e| fail(&format!("symlink {applet}: {e}")));
        }
        std::fs::write(rootfs.join("etc/passwd"), "root:x:0:0::/:/bin/sh\nnobody:x:65534:65534::/:/bin/sh\n").unwrap();
        std::fs::write(rootfs.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n").unwrap();

        let declaration = dir.join("truebench.toml");
        std::fs::write(
            &declaration,
            format!("image = {:?}\ncommand = [\"/bin/true\"]\nnetwork = \"none\"\n", rootfs.display().to_string()),
        )
        .unwrap();

        let bundle = dir.join("bundle");
        std::fs::create_dir_all(&bundle).unwrap();
        let spec = Command::new("crun").arg("spec").arg("--bundle").arg(&bundle).output();
        match spec {
            Ok(out) if out.status.success() => {}
            Ok(out) => fail(&format!("crun spec failed: {}", String::from_utf8_lossy(&out.stderr))),
            Err(e) => fail(&format!("crun spec: {e}")),
        }
        let config_path = bundle.join("config.json");
        let text = std::fs::read_to_string(&config_path).unwrap_or_else(|e| fail(&format!("read {}: {e}", config_path.display())));
        let mut config: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|e| fail(&format!("crun spec output: {e}")));
        config["process"]["args"] = serde_json::json!(["/bin/true"]);
        config["process"]["terminal"] = serde_json::json!(false);
        config["root"] = serde_json::json!({ "path": rootfs, "readonly": false });
        if let Some(linux) = config["linux"].as_object_mut() {
            linux.remove("resources");
            linux.remove("cgroupsPath");
        }
        if let Some(mounts) = config["mounts"].as_array_mut() {
            mounts.retain(|m| m["type"] != "cgroup" && m["type"] != "cgroup2");
        }
        std::fs::write(&config_path, serde_json::to_string_pretty(&config).unwrap()).unwrap();
        let namespaces: Vec<String> = config["linux"]["namespaces"]
            .as_array()
            .map(|ns| ns.iter().filter_map(|n| n["type"].as_str().map(str::to_string)).collect())
            .unwrap_or_default();
        println!("crun namespaces: {}", namespaces.join(", "));

        Bench { keel: keel.to_path_buf(), declaration, bundle, crun_root: PathBuf::from("/run/keel-run-bench-crun") }
    }

    /// One container run by `runtime`: spawn to exit. `id` keeps crun's ids unique.
    fn run(&self, runtime: Runtime, id: usize) -> (f64, Output) {
        let mut command = match runtime {
            Runtime::Keel => {
                let mut c = Command::new(&self.keel);
                c.arg("run").arg(&self.declaration).env_remove("KEEL_STATE_DIR");
                c
            }
            Runtime::Crun => {
                let mut c = Command::new("crun");
                c.arg("--cgroup-manager=disabled")
                    .arg("--root")
                    .arg(&self.crun_root)
                    .arg("run")
                    .arg("-b")
                    .arg(&self.bundle)
                    .arg(format!("bench{id}"));
                c
            }
        };
        command.stdin(Stdio::null());
        let start = Instant::now();
        let output = command.output().unwrap_or_else(|e| fail(&format!("spawn {}: {e}", runtime.name())));
        (start.elapsed().as_secs_f64(), output)
    }

    /// Run once and fail loudly unless the container exited 0.
    fn run_checked(&self, runtime: Runtime, id: usize) -> f64 {
        let (seconds, output) = self.run(runtime, id);
        if !output.status.success() {
            fail(&format!(
                "{} did not run /bin/true successfully ({}): {}{}",
                runtime.name(),
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        seconds
    }

    fn measure(&self, runs: usize, batch: usize, reps: usize) {
        let mut id = 0;
        let mut next_id = || {
            id += 1;
            id
        };
        // Both must really run before anything is timed; the first runs also warm caches.
        for runtime in Runtime::BOTH {
            for _ in 0..3 {
                self.run_checked(runtime, next_id());
            }
            println!("{}: /bin/true container exits 0", runtime.name());
        }

        // (a) start latency: one container, spawn to exit.
        let mut single: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
        for _ in 0..runs {
            for (slot, runtime) in Runtime::BOTH.into_iter().enumerate() {
                single[slot].push(self.run_checked(runtime, next_id()));
            }
        }
        println!();
        println!("(a) one /bin/true container, spawn to exit, {runs} runs each (interleaved):");
        let a: Vec<f64> = Runtime::BOTH
            .iter()
            .zip(&single)
            .map(|(runtime, times)| {
                let s = stats(times);
                println!(
                    "  {:<4}: median {:.2} ms  (min {:.2}, p90 {:.2}, max {:.2})",
                    runtime.name(),
                    s.median * 1e3,
                    s.min * 1e3,
                    s.p90 * 1e3,
                    s.max * 1e3
                );
                s.median
            })
            .collect();
        let ratio_a = a[0] / a[1];
        println!("  ratio keel/crun: {ratio_a:.3}  goal <= {GOAL_RATIO}: {}", verdict(ratio_a));

        // (b) throughput: BATCH sequential containers.
        let mut batches: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
        for rep in 0..reps {
            for (slot, runtime) in Runtime::BOTH.into_iter().enumerate() {
                let start = Instant::now();
                for _ in 0..batch {
                    self.run_checked(runtime, next_id());
                }
                let seconds = start.elapsed().as_secs_f64();
                println!("  rep {}: {:<4} {batch} containers in {seconds:.3} s", rep + 1, runtime.name());
                batches[slot].push(seconds);
            }
        }
        println!("(b) {batch} sequential /bin/true containers, {reps} repetitions each (interleaved):");
        let b: Vec<f64> = Runtime::BOTH
            .iter()
            .zip(&batches)
            .map(|(runtime, times)| {
                let s = stats(times);
                println!(
                    "  {:<4}: median {:.3} s  (min {:.3}, max {:.3}; {:.2} ms per container)",
                    runtime.name(),
                    s.median,
                    s.min,
                    s.max,
                    s.median * 1e3 / batch as f64
                );
                s.median
            })
            .collect();
        let ratio_b = b[0] / b[1];
        println!("  ratio keel/crun: {ratio_b:.3}  goal <= {GOAL_RATIO}: {}", verdict(ratio_b));
        println!();
        println!(
            "summary: start latency keel/crun {ratio_a:.3} ({}), {batch} containers keel/crun {ratio_b:.3} ({})",
            verdict(ratio_a),
            verdict(ratio_b)
        );
    }
}

fn verdict(ratio: f64) -> &'static str {
    if ratio <= GOAL_RATIO {
        "MET"
    } else {
        "NOT MET"
    }
}

struct Stats {
    median: f64,
    min: f64,
    p90: f64,
    max: f64,
}

fn stats(times: &[f64]) -> Stats {
    let mut sorted = times.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    let median = if n % 2 == 1 { sorted[n / 2] } else { (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0 };
    let p90 = sorted[((n as f64 * 0.9).ceil() as usize).clamp(1, n) - 1];
    Stats { median, min: sorted[0], p90, max: sorted[n - 1] }
}
