//! keel-image-bench: importing a 10-layer OCI image with keel against `umoci unpack`.
//!
//! The image is made by `scripts/make-test-image.sh` (umoci + skopeo from a busybox
//! root filesystem): 10 layers, 7 of them 2 MiB of random data plus small files, with
//! deletions, an opaque directory and hard links across layers. Measured, interleaving
//! keel and umoci so that drift hits both alike (median of REPS runs each):
//!
//! (a) keel store import (what a container start or `keelctl image load` does: every blob
//!     verified and copied into the store, each layer unpacked once into its own overlay
//!     lower directory) vs `umoci unpack --image LAYOUT:test BUNDLE`;
//! (b) `keel image unpack oci:LAYOUT:test DIR` (blobs verified into a scratch store,
//!     then the layers flattened into DIR) vs the same `umoci unpack`.
//!
//! Disk use is counted in allocated blocks (hard links once): the store (blobs and
//! layers) for (a), DIR for (b), the umoci bundle (rootfs and its mtree) for both.
//!
//! Usage: keel-image-bench [REPS] (default 5). Needs root, umoci, skopeo, python3,
//! busybox-static, and `keel` built next to this binary (`make bench-image` does it).

use keel_supervisor::image::{import, ImageSource, Store};
use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

fn main() {
    let reps: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(5);
    let work = std::env::temp_dir().join(format!("keel-image-bench-{}", std::process::id()));
    let src = work.join("src");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/make-test-image.sh");
    run(Command::new(script).arg(&src).args(["7", "2048"]));
    let layout = src.join("layout");
    let reference = format!("oci:{}:test", layout.display());
    let keel = std::env::current_exe().unwrap().with_file_name("keel");
    let (mut import_t, mut unpack_t, mut umoci_t) = (Vec::new(), Vec::new(), Vec::new());
    let (mut import_disk, mut layers_disk, mut unpack_disk, mut umoci_disk) = (0, 0, 0, 0);
    let mut layer_count = 0;
    for rep in 0..reps {
        let store_dir = work.join(format!("store-{rep}"));
        let start = Instant::now();
        let store = Store::open(&store_dir).unwrap();
        let resolved = import::import(&store, &ImageSource::OciLayout { path: layout.clone(), tag: Some("test".into()) }).unwrap();
        import_t.push(start.elapsed().as_secs_f64());
        layer_count = resolved.lowers.len();
        import_disk = disk_use(&store_dir);
        layers_disk = disk_use(&store_dir.join("layers"));

        let bundle = work.join(format!("umoci-{rep}"));
        let start = Instant::now();
        run(Command::new("umoci").args(["unpack", "--image"]).arg(format!("{}:test", layout.display())).arg(&bundle));
        umoci_t.push(start.elapsed().as_secs_f64());
        umoci_disk = disk_use(&bundle);

        let dir = work.join(format!("unpack-{rep}"));
        let start = Instant::now();
        run(Command::new(&keel).args(["image", "unpack", &reference]).arg(&dir));
        unpack_t.push(start.elapsed().as_secs_f64());
        unpack_disk = disk_use(&dir);
        for path in [store_dir, bundle, dir] {
            let _ = std::fs::remove_dir_all(path);
        }
    }
    let _ = std::fs::remove_dir_all(&work);
    let (import_m, unpack_m, umoci_m) = (median(&mut import_t), median(&mut unpack_t), median(&mut umoci_t));
    let mib = |b: u64| b as f64 / 1048576.0;
    println!("image: {layer_count} layers, medians of {reps} runs");
    println!("umoci unpack:              {:.3} s, {:.1} MiB (bundle: rootfs + mtree)", umoci_m, mib(umoci_disk));
    println!(
        "keel store import:         {:.3} s, {:.1} MiB (blobs + layers; layers alone {:.1} MiB)",
        import_m,
        mib(import_disk),
        mib(layers_disk)
    );
    println!("keel image unpack:         {:.3} s, {:.1} MiB (flattened root)", unpack_m, mib(unpack_disk));
    println!("ratio keel import / umoci: time {:.2}, disk {:.2}", import_m / umoci_m, import_disk as f64 / umoci_disk as f64);
    println!("ratio keel unpack / umoci: time {:.2}, disk {:.2}", unpack_m / umoci_m, unpack_disk as f64 / umoci_disk as f64);
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values[values.len() / 2]
}

/// Allocated bytes under `path`, each inode once (what `du` reports).
fn disk_use(path: &Path) -> u64 {
    let mut seen = HashSet::new();
    let mut total = 0;
    let mut stack: Vec<PathBuf> = vec![path.to_path_buf()];
    while let Some(p) = stack.pop() {
        let Ok(m) = std::fs::symlink_metadata(&p) else { continue };
        if seen.insert((m.dev(), m.ino())) {
            total += m.blocks() * 512;
        }
        if m.is_dir() {
            stack.extend(std::fs::read_dir(&p).unwrap().filter_map(Result::ok).map(|e| e.path()));
        }
    }
    total
}
