//! First-boot test (5): the power is cut (QMP `quit`) while a large config is being
//! applied; the next boot with the same data disk and config is consistent: either the
//! apply ran to completion before the cut (marker present, first boot skipped) or it
//! runs again from the start (marker absent) — every file whole, no temp left behind.

use keel_qemu_tests::{build_image, target_dir, BootOptions, Guest, TestImage};
use keel_supervisor::control::Command;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const HOST: &str = r#"
hostname = "keel-fbp"
busybox = "/bin/busybox"

[kernel]
modules = ["virtio_pci", "virtio_console", "virtio_blk", "qemu_fw_cfg", "button", "evdev"]

[control]
virtio_serial = true
shutdown_grace_secs = 2
"#;

/// Files in the config and the size of each: 128 × 384 KiB = 48 MiB to write. Each
/// file repeats its own 1 KiB block and is gzip-compressed in the config (`compression:
/// gzip`, base64 `data:` URL), so the config stays small: QEMU fw_cfg is read by the
/// kernel a byte at a time, which makes a multi-MiB config take minutes under TCG.
const FILES: usize = 128;
const FILE_SIZE: usize = 384 << 10;

/// The console line keel prints right before the apply starts.
const APPLYING: &str = "firstboot: applying";
/// The console line keel prints when the apply (marker included) is done.
const APPLIED: &str = "firstboot: applied the config";

/// Delays between seeing [`APPLYING`] and cutting the power, one per attempt (the
/// apply takes ≈ 1.8 s under TCG): early in the staging, near the commit, and — only
/// when neither interrupted the apply — at once.
const DELAYS_MS: [u64; 3] = [400, 1500, 0];

/// File `i`'s contents: a pseudo-random 1 KiB block, different for every file, repeated.
fn contents(i: usize) -> Vec<u8> {
    let mut state = 0x9E37_79B9_7F4A_7C15u64 ^ (i as u64 + 1).wrapping_mul(0xD1B5_4A32_D192_ED03);
    let block: Vec<u8> = (0..1024)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect();
    block.iter().copied().cycle().take(FILE_SIZE).collect()
}

fn name(i: usize) -> String {
    format!("f{i:03}")
}

fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for k in 0..4 {
            if k <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * k) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// `path` gzip-compressed, by the host's gzip.
fn gzip(path: &Path) -> Vec<u8> {
    let out = std::process::Command::new("gzip").args(["-c", "-n", "-9"]).arg(path).output().expect("run gzip");
    assert!(out.status.success(), "gzip {}: {out:?}", path.display());
    out.stdout
}

/// The config (written to `dir/bulk.ign`) and each file's expected sha256.
fn bulk_config(dir: &Path) -> (PathBuf, BTreeMap<String, String>) {
    let expected_dir = dir.join("expected");
    let _ = std::fs::remove_dir_all(&expected_dir);
    std::fs::create_dir_all(&expected_dir).unwrap();
    let mut json = String::new();
    json.push_str("{ \"ignition\": { \"version\": \"3.4.0\" },\n  \"storage\": { \"files\": [\n");
    let mut sums = BTreeMap::new();
    for i in 0..FILES {
        let path = expected_dir.join(name(i));
        std::fs::write(&path, contents(i)).unwrap();
        sums.insert(name(i), keel_build::build::sha256_file(&path).unwrap());
        let comma = if i + 1 < FILES { "," } else { "" };
        json.push_str(&format!(
            "    {{ \"path\": \"/var/lib/bulk/{}\", \"mode\": 420, \"contents\": {{ \"compression\": \"gzip\", \"source\": \"data:;base64,{}\" }} }}{comma}\n",
            name(i),
            base64(&gzip(&path))
        ));
    }
    json.push_str("  ] } }\n");
    assert!(json.len() < 1 << 20, "the config ({} bytes) should stay small", json.len());
    let path = dir.join("bulk.ign");
    std::fs::write(&path, json).unwrap();
    (path, sums)
}

fn image() -> &'static TestImage {
    static IMAGE: std::sync::OnceLock<TestImage> = std::sync::OnceLock::new();
    IMAGE.get_or_init(|| build_image("firstboot-power", HOST, env!("CARGO_BIN_EXE_keel-probe").as_ref()))
}

/// What the cut left on the data disk (diagnostic only): a copy, its ext4 journal
/// replayed by e2fsck as the next mount would, listed with debugfs (both from e2fsprogs,
/// which the data disk's mkfs.ext4 needs anyway).
fn disk_state(disk: &Path) -> String {
    let copy = disk.with_extension("cut.img");
    let copied = std::process::Command::new("cp").args(["--sparse=always"]).arg(disk).arg(&copy).status();
    let fsck = std::process::Command::new("e2fsck").args(["-fy"]).arg(&copy).output();
    if !copied.is_ok_and(|s| s.success()) || fsck.is_err() {
        let _ = std::fs::remove_file(&copy);
        return "cp or e2fsck unavailable".into();
    }
    let state = list_disk(&copy);
    let _ = std::fs::remove_file(&copy);
    state
}

fn list_disk(disk: &Path) -> String {
    let ls = |dir: &str| -> Option<Vec<String>> {
        let out = std::process::Command::new("debugfs").args(["-R", &format!("ls {dir}")]).arg(disk).output().ok()?;
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        Some(text.split_whitespace().filter(|w| !w.starts_with('(') && w.parse::<u64>().is_err()).map(str::to_string).collect())
    };
    let (Some(bulk), Some(keel)) = (ls("/lib/bulk"), ls("/lib/keel")) else { return "debugfs unavailable".into() };
    let temps = bulk.iter().filter(|n| n.starts_with(".keel-firstboot.")).count();
    let files = bulk.iter().filter(|n| n.len() == 4 && n.starts_with('f')).count();
    format!(
        "{files} file(s) in place, {temps} temp(s), journal {}, marker {}",
        if keel.iter().any(|n| n == "firstboot.done.journal") { "present" } else { "absent" },
        if keel.iter().any(|n| n == "firstboot.done") { "present" } else { "absent" },
    )
}

fn fresh_disk(dir: &Path, attempt: usize) -> PathBuf {
    let disk = dir.join(format!("var-{}-{attempt}.img", std::process::id()));
    let _ = std::fs::remove_file(&disk);
    keel_build::disk::VarDisk::default().create(&disk).expect("make the data disk");
    disk
}

fn boot(image: &TestImage, name: &str, disk: &Path, config: &Path) -> Guest {
    Guest::boot(image, name, BootOptions { disk: Some(disk.to_path_buf()), config: Some(config.to_path_buf()), ..Default::default() })
}

fn power_off(mut guest: Guest) {
    guest.call(Command::Poweroff, Duration::from_secs(20)).unwrap();
    if !guest.wait_exit(Duration::from_secs(60)).is_some_and(|s| s.success()) {
        guest.fail("did not power off");
    }
}

/// Boot 2 checks: every file whole, no temp, no journal, `keelctl firstboot` applied or
/// skipped. Returns the state.
fn check_consistent(guest: &Guest, sums: &BTreeMap<String, String>) -> String {
    let status = guest.call(Command::Firstboot, Duration::from_secs(30)).unwrap_or_else(|e| guest.fail(&e.to_string()));
    let state = status["state"].as_str().unwrap_or_default().to_string();
    if state != "applied" && state != "skipped" {
        guest.fail(&format!("keelctl firstboot after the power cut: {status}"));
    }
    let listing = guest.exec(&["sh", "-c", "cd /var/lib/bulk && sha256sum f*"]);
    let mut seen = BTreeMap::new();
    for line in listing.stdout.lines() {
        let mut words = line.split_whitespace();
        if let (Some(sum), Some(file)) = (words.next(), words.next()) {
            seen.insert(file.to_string(), sum.to_string());
        }
    }
    let bad: Vec<String> = sums
        .iter()
        .filter(|(file, sum)| seen.get(*file) != Some(*sum))
        .map(|(file, sum)| format!("{file}: expected {sum}, found {:?}", seen.get(file)))
        .collect();
    let extra: Vec<&String> = seen.keys().filter(|f| !sums.contains_key(*f)).collect();
    if !bad.is_empty() || !extra.is_empty() {
        guest.fail(&format!(
            "state {state}: {} file(s) missing or wrong after the power cut (first: {:?}); unexpected files {extra:?}\n{listing:?}",
            bad.len(),
            bad.iter().take(5).collect::<Vec<_>>()
        ));
    }
    let leftovers =
        guest.exec(&["sh", "-c", "find /var/lib/bulk /var/lib/keel -name '.keel-firstboot.*'; ls /var/lib/keel/firstboot.done"]);
    assert_eq!(leftovers.stdout.trim(), "/var/lib/keel/firstboot.done", "[{state}] temps left, or no marker: {leftovers:?}");
    // A journal may survive a cut between the marker and its removal (it is ignored once
    // the marker exists); after a whole apply in this boot it must be gone.
    let journal = guest.exec(&["sh", "-c", "ls /var/lib/keel/firstboot.done.journal 2>/dev/null"]);
    if !journal.stdout.trim().is_empty() {
        assert_eq!(state, "skipped", "the journal is left after a complete apply: {journal:?}");
        eprintln!("note: a stale journal survived the cut (marker present, so it is ignored)");
    }
    state
}

/// Test 5: cut the power during the apply; the next boot is consistent. At least one
/// attempt must really interrupt the apply (no marker after the cut), else it proves nothing.
#[test]
fn power_cut_during_apply_then_consistent_reboot() {
    let started = Instant::now();
    let image = image();
    let dir = target_dir().join("qemu-tests").join("firstboot-power");
    let (config, sums) = bulk_config(&dir);
    let mut outcomes = Vec::new();
    for (attempt, delay) in DELAYS_MS.iter().enumerate() {
        let disk = fresh_disk(&dir, attempt);
        let mut guest = boot(image, &format!("cut{attempt}"), &disk, &config);
        guest.wait_for(APPLYING, Duration::from_secs(90));
        let seen_at = Instant::now();
        std::thread::sleep(Duration::from_millis(*delay));
        let completed_before_cut = guest.console().contains(APPLIED);
        guest.qmp("quit");
        if guest.wait_exit(Duration::from_secs(30)).is_none() {
            guest.fail("QEMU did not quit");
        }
        let cut_after = seen_at.elapsed();
        drop(guest);
        eprintln!("attempt {attempt}: after the cut the disk holds: {}", disk_state(&disk));

        let guest = {
            let mut g = boot(image, &format!("after{attempt}"), &disk, &config);
            g.wait_ready();
            g
        };
        let state = check_consistent(&guest, &sums);
        for line in guest.console().lines().filter(|l| l.contains(APPLYING) || l.contains(APPLIED)) {
            eprintln!("attempt {attempt} boot 2 console: {line}");
        }
        let interrupted = state == "applied";
        if interrupted && completed_before_cut {
            guest.fail("boot 1 printed that the config was applied, yet boot 2 applied it again (marker lost)");
        }
        eprintln!(
            "attempt {attempt}: power cut {cut_after:?} after {APPLYING:?} (delay {delay} ms) → boot 2 state {state} ({})",
            if interrupted { "apply was interrupted, re-applied whole" } else { "apply had completed" }
        );
        outcomes.push((delay, cut_after, state));
        power_off(guest);
        let _ = std::fs::remove_file(&disk);
        if attempt >= 1 && outcomes.iter().any(|(_, _, state)| state == "applied") {
            break;
        }
    }
    eprintln!("outcomes: {outcomes:?}; total {:?}", started.elapsed());
    assert!(
        outcomes.iter().any(|(_, _, state)| state == "applied"),
        "no attempt cut the power during the apply (every boot 2 found the marker): {outcomes:?}; \
         the apply is too fast for these delays — make the config larger or the delays shorter"
    );
}
