//! keel-boot-bench: boot a host N times under QEMU and report, as median, min and max,
//! the kernel's share of the boot (kernel start → exec of PID 1), keel's own share
//! (exec of PID 1 → `keel: ready`) and their sum, plus PID 1's RSS at ready and the
//! image sizes. The marks come from the console's timestamps (see `boot_timing`).
//!
//! Usage: keel-boot-bench [HOST.toml] [BOOTS]   (defaults: examples/demo/host.toml, 5)
//! The host.toml is built where it lies, so its relative `[[files]] source` paths resolve.

use keel_qemu_tests::boot_timing::{self, BootTiming};
use keel_qemu_tests::{build_image_from_file, BootOptions, Guest};
use keel_supervisor::control::{Command, Status};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let host = PathBuf::from(args.first().map(String::as_str).unwrap_or("examples/demo/host.toml"));
    let boots: usize = match args.get(1).map(|n| n.parse()) {
        None => 5,
        Some(Ok(n)) if n > 0 => n,
        _ => {
            eprintln!("keel-boot-bench: BOOTS must be a positive number\nusage: keel-boot-bench [HOST.toml] [BOOTS]");
            return ExitCode::from(2);
        }
    };
    let image = match build_image_from_file("boot-bench", &host) {
        Ok(image) => image,
        Err(e) => {
            eprintln!("keel-boot-bench: {}: {e}", host.display());
            return ExitCode::FAILURE;
        }
    };
    let mut timings: Vec<BootTiming> = Vec::new();
    let mut rss = Vec::new();
    for i in 0..boots {
        let mut guest = Guest::boot(&image, &format!("bench{i}"), BootOptions::default());
        guest.wait_ready();
        let timing = boot_timing::parse(&guest.console()).unwrap_or_else(|e| guest.fail(&e.to_string()));
        if let Ok(value) = guest.call(Command::Status, Duration::from_secs(30)) {
            if let Ok(status) = serde_json::from_value::<Status>(value) {
                rss.push(status.pid1_rss_kib);
            }
        }
        guest.qmp("quit");
        println!(
            "boot {}: kernel {:.3} s + keel {:.3} s = keel: ready at {:.3} s",
            i + 1,
            timing.kernel_share(),
            timing.keel_share(),
            timing.ready
        );
        timings.push(timing);
    }
    println!("boots: {boots}");
    report("kernel start -> exec of PID 1 (kernel)", timings.iter().map(BootTiming::kernel_share));
    report("exec of PID 1 -> keel: ready (keel)", timings.iter().map(BootTiming::keel_share));
    report("kernel start -> keel: ready (total)", timings.iter().map(|t| t.ready));
    println!("PID 1 RSS at ready (KiB): {rss:?}");
    let size = |p: &std::path::Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    println!("initramfs.img: {} bytes; vmlinuz: {} bytes", size(&image.initramfs), size(&image.vmlinuz));
    ExitCode::SUCCESS
}

/// Print `label: median X s, min Y s, max Z s` for a non-empty series of seconds.
fn report(label: &str, values: impl Iterator<Item = f64>) {
    let values: Vec<f64> = values.collect();
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let median = boot_timing::median(&values).unwrap_or(f64::NAN);
    println!("{label}: median {median:.3} s, min {min:.3} s, max {max:.3} s");
}
