//! keel-boot-bench: boot a host N times under QEMU and report the time from kernel start
//! to `keel: ready` (median, min, max), PID 1's RSS at ready and the image sizes.
//!
//! Usage: keel-boot-bench [HOST.toml] [BOOTS]   (defaults: examples/demo/host.toml, 5)

use keel_qemu_tests::{build_image, BootOptions, Guest};
use keel_supervisor::control::{Command, Status};
use std::time::Duration;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let host = args.first().cloned().unwrap_or_else(|| "examples/demo/host.toml".into());
    let boots: usize = args.get(1).and_then(|n| n.parse().ok()).unwrap_or(5);
    let text = std::fs::read_to_string(&host).unwrap_or_else(|e| panic!("{host}: {e}"));
    let image = build_image("boot-bench", &text, "/nonexistent".as_ref());
    let mut times = Vec::new();
    let mut rss = Vec::new();
    for i in 0..boots {
        let mut guest = Guest::boot(&image, &format!("bench{i}"), BootOptions::default());
        guest.wait_ready();
        let console = guest.console();
        let seconds = ready_seconds(&console).unwrap_or_else(|| guest.fail("no ready time on the console"));
        if let Ok(value) = guest.call(Command::Status, Duration::from_secs(30)) {
            if let Ok(status) = serde_json::from_value::<Status>(value) {
                rss.push(status.pid1_rss_kib);
            }
        }
        guest.qmp("quit");
        println!("boot {}: keel: ready at {seconds:.3} s", i + 1);
        times.push(seconds);
    }
    times.sort_by(f64::total_cmp);
    let size = |p: &std::path::Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    println!("boots: {boots}");
    println!("kernel start -> keel: ready: median {:.3} s, min {:.3} s, max {:.3} s", times[boots / 2], times[0], times[boots - 1]);
    println!("PID 1 RSS at ready (KiB): {rss:?}");
    println!("initramfs.img: {} bytes; vmlinuz: {} bytes", size(&image.initramfs), size(&image.vmlinuz));
}

/// The seconds in `keel: ready (N s since kernel start…)`.
fn ready_seconds(console: &str) -> Option<f64> {
    let line = console.lines().find(|l| l.contains("keel: ready ("))?;
    let after = line.split("keel: ready (").nth(1)?;
    after.split_whitespace().next()?.parse().ok()
}
