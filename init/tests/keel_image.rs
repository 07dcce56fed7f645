//! Host tests of images against independent tools: a multi-layer image made by umoci
//! (with deletions, an opaque directory, hard links across layers) and archived by
//! skopeo is unpacked by `keel image unpack` and compared, file by file and with its
//! metadata, with what `umoci unpack` gives; the store's per-layer overlay is compared
//! the same way; `keel run` runs the image with its Entrypoint/Env/WorkingDir; a
//! tampered blob is refused naming its digest. Needs root, umoci, skopeo, python3.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

const KEEL: &str = env!("CARGO_BIN_EXE_keel");
/// Flips a byte in the largest file of a tar (scripts/tamper-archive.py).
const TAMPER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/tamper-archive.py");

/// The test image, built once for all tests of this file.
fn image() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        // Under cargo's scratch directory for tests: the next run starts it afresh.
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("keel-image-test");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/make-test-image.sh");
        let out = Command::new(script).arg(&dir).output().expect("run make-test-image.sh");
        assert!(out.status.success(), "make-test-image.sh (needs umoci, skopeo, python3): {}", String::from_utf8_lossy(&out.stderr));
        let reference = dir.join("umoci");
        let out = Command::new("umoci")
            .args(["unpack", "--image"])
            .arg(format!("{}:test", dir.join("layout").display()))
            .arg(&reference)
            .output()
            .unwrap();
        assert!(out.status.success(), "umoci unpack: {}", String::from_utf8_lossy(&out.stderr));
        dir
    })
}

/// What is compared of each path: type, mode, owner, size, content or link target,
/// mtime (not for directories, whose mtime changes as entries are added), and for
/// regular files the set of names sharing its inode.
fn describe(root: &Path, with_links: bool) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut inodes: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    walk(root, root, &mut out, &mut inodes);
    if with_links {
        for names in inodes.values().filter(|n| n.len() > 1) {
            for name in names {
                out.entry(name.clone()).and_modify(|d| d.push_str(&format!(" links={names:?}")));
            }
        }
    }
    out
}

fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>, inodes: &mut BTreeMap<u64, Vec<String>>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    entries.sort();
    for path in entries {
        let rel = path.strip_prefix(root).unwrap().display().to_string();
        let m = std::fs::symlink_metadata(&path).unwrap();
        let common = format!("mode={:o} owner={}:{}", m.mode(), m.uid(), m.gid());
        let text = if m.is_dir() {
            walk(root, &path, out, inodes);
            format!("dir {common}")
        } else if m.file_type().is_symlink() {
            format!("symlink {common} -> {}", std::fs::read_link(&path).unwrap().display())
        } else {
            inodes.entry(m.ino()).or_default().push(rel.clone());
            let content = std::fs::read(&path).unwrap();
            let sum: u64 = content.iter().enumerate().map(|(i, b)| (i as u64 + 1) * *b as u64).sum();
            format!("file {common} size={} sum={sum} mtime={}", m.len(), m.mtime())
        };
        out.insert(rel, text);
    }
}

fn assert_same_tree(ours: &Path, theirs: &Path, with_links: bool) {
    let (a, b) = (describe(ours, with_links), describe(theirs, with_links));
    let mut problems = Vec::new();
    for key in a.keys().chain(b.keys()).collect::<std::collections::BTreeSet<_>>() {
        if a.get(key) != b.get(key) {
            problems.push(format!("{key}:\n  keel:  {:?}\n  umoci: {:?}", a.get(key), b.get(key)));
        }
    }
    assert!(
        problems.is_empty(),
        "{} differences between {} and {}:\n{}",
        problems.len(),
        ours.display(),
        theirs.display(),
        problems.join("\n")
    );
    assert!(a.len() > 20, "the tree is suspiciously small: {a:?}");
}

fn keel(args: &[&str], store: Option<&Path>) -> Output {
    let mut cmd = Command::new(KEEL);
    cmd.args(args);
    if let Some(store) = store {
        cmd.env("KEEL_IMAGE_STORE", store);
    }
    cmd.output().unwrap()
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn keel_unpack_matches_umoci_for_layout_oci_archive_and_docker_archive() {
    let dir = image();
    let reference = dir.join("umoci/rootfs");
    for (name, source) in [
        ("layout", format!("oci:{}:test", dir.join("layout").display())),
        ("oci", format!("oci-archive:{}", dir.join("image.oci.tar").display())),
        ("docker", format!("docker-archive:{}", dir.join("image.docker.tar").display())),
    ] {
        let out_dir = dir.join(format!("unpacked-{name}"));
        ok(&keel(&["image", "unpack", &source, out_dir.to_str().unwrap()], None));
        assert_same_tree(&out_dir, &reference, true);
        // The cases the image was made for are really in it.
        assert!(!out_dir.join("etc/deleted").exists() && !out_dir.join("srv/old").exists());
        assert_eq!(std::fs::read_to_string(out_dir.join("etc/motd")).unwrap(), "two\n");
        assert_eq!(std::fs::read_dir(out_dir.join("var/cache")).unwrap().count(), 1, "opaque /var/cache keeps only c2");
        assert_eq!(
            std::fs::metadata(out_dir.join("data/xlink")).unwrap().ino(),
            std::fs::metadata(out_dir.join("data/orig")).unwrap().ino()
        );
    }
}

#[test]
fn store_layers_mounted_as_an_overlay_match_umoci() {
    use keel_supervisor::image::{import, ImageSource, Store};
    let dir = image();
    let store = Store::open(dir.join("store-overlay")).unwrap();
    let resolved = import::ensure(&store, &ImageSource::OciArchive(dir.join("image.oci.tar"))).unwrap();
    assert!(resolved.lowers.len() >= 3, "{:?}", resolved.lowers);
    let merged = dir.join("merged");
    std::fs::create_dir_all(&merged).unwrap();
    let lowers: Vec<String> = resolved.lowers.iter().map(|l| l.display().to_string()).collect();
    let out = Command::new("mount")
        .args(["-t", "overlay", "overlay", "-o"])
        .arg(format!("ro,lowerdir={}", lowers.join(":")))
        .arg(&merged)
        .output()
        .unwrap();
    assert!(out.status.success(), "mount overlay: {}", String::from_utf8_lossy(&out.stderr));
    let result = std::panic::catch_unwind(|| {
        // Hard-link groups differ by design: a link to a lower file is linked to a copy in its own layer.
        assert_same_tree(&merged, &dir.join("umoci/rootfs"), false);
    });
    let _ = Command::new("umount").arg(&merged).status();
    result.unwrap();
    // A second import of the same image unpacks nothing again.
    let again = import::import(&store, &ImageSource::OciLayout { path: dir.join("layout"), tag: Some("test".into()) }).unwrap();
    assert_eq!(again.lowers, resolved.lowers);
}

#[test]
fn keel_run_uses_the_image_config_and_the_declaration_overrides_it() {
    let dir = image();
    let store = dir.join("store-run");
    let archive = dir.join("image.oci.tar");
    let run = |name: &str, extra: &str| {
        let file = dir.join(format!("{name}.toml"));
        std::fs::write(&file, format!("image = \"oci-archive:{}\"\nnetwork = \"none\"\n{extra}", archive.display())).unwrap();
        let out = Command::new(KEEL)
            .arg("run")
            .arg(&file)
            .env("KEEL_IMAGE_STORE", &store)
            .env("KEEL_STATE_DIR", dir.join("state"))
            .output()
            .unwrap();
        ok(&out)
    };
    assert_eq!(run("defaults", ""), "MARKER=from-image uid=0 pwd=/srv motd=two cache=c2 deleted=absent\n");
    let text = run("over", "env = { MARKER = \"toml\" }\nworkdir = \"/data\"\nuser = \"1000\"\n");
    assert_eq!(text, "MARKER=toml uid=1000 pwd=/data motd=two cache=c2 deleted=absent\n");
    assert_eq!(run("cmd", "command = [\"echo $MARKER; echo x > /etc/motd; cat /etc/motd\"]\n"), "from-image\nx\n");
    // The write went to that container's upper directory, not to the shared layer.
    assert_eq!(run("again", "command = [\"cat /etc/motd\"]\n"), "two\n");
}

#[test]
fn a_tampered_blob_is_refused_naming_the_blob() {
    let dir = image();
    let tampered = dir.join("tampered.oci.tar");
    // One byte flipped inside the largest blob (the busybox layer), the tar kept valid.
    let out = Command::new(TAMPER).arg(dir.join("image.oci.tar")).arg(&tampered).output().unwrap();
    let blob = ok(&out).trim().rsplit('/').next().unwrap().to_string();
    let store = dir.join("store-tampered");
    let out = keel(&["image", "unpack", &format!("oci-archive:{}", tampered.display()), dir.join("t-out").to_str().unwrap()], Some(&store));
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("blob sha256:{blob}")) && err.contains("tampered or corrupt"), "{err}");
    // keel run refuses it too, and the store holds nothing of it.
    let file = dir.join("tampered.toml");
    std::fs::write(&file, format!("image = \"oci-archive:{}\"\nnetwork = \"none\"\n", tampered.display())).unwrap();
    let out =
        Command::new(KEEL).arg("run").arg(&file).env("KEEL_IMAGE_STORE", &store).env("KEEL_STATE_DIR", dir.join("state")).output().unwrap();
    assert_ne!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr).contains(&format!("blob sha256:{blob}")), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(!store.join("blobs/sha256").join(&blob).exists());
    assert!(!store.join("refs.json").exists());
}

#[test]
fn a_tampered_docker_archive_layer_is_refused_naming_the_file() {
    let dir = image();
    let tampered = dir.join("tampered.docker.tar");
    let out = Command::new(TAMPER).arg(dir.join("image.docker.tar")).arg(&tampered).output().unwrap();
    let member = ok(&out).trim().to_string();
    // Even with every layer of the image already in the store.
    let store = dir.join("store-docker");
    let good = format!("docker-archive:{}", dir.join("image.docker.tar").display());
    ok(&keel(&["image", "unpack", &good, dir.join("d-good").to_str().unwrap()], Some(&store)));
    let out =
        keel(&["image", "unpack", &format!("docker-archive:{}", tampered.display()), dir.join("d-out").to_str().unwrap()], Some(&store));
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&member) && err.contains("tampered or corrupt"), "{err}");
}

/// A 512-byte tar header for a regular file `name` of `size` bytes (base-256 size
/// field when it does not fit in octal, as GNU tar writes large files).
fn tar_header(name: &str, size: u64) -> [u8; 512] {
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name.as_bytes());
    h[100..108].copy_from_slice(b"0000644\0");
    h[108..116].copy_from_slice(b"0000000\0");
    h[116..124].copy_from_slice(b"0000000\0");
    if size < 1 << 33 {
        h[124..136].copy_from_slice(format!("{size:011o}\0").as_bytes());
    } else {
        h[124] = 0x80;
        h[128..136].copy_from_slice(&size.to_be_bytes());
    }
    h[136..148].copy_from_slice(b"00000000000\0");
    h[156] = b'0';
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|b| *b as u32).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    h
}

/// A gzip layer of a tar with one file of `size` zero bytes, made of one compressed
/// MiB repeated (gzip members concatenated): about 1 KB per MiB. Unfinished (a bomb)
/// it stops after the data; finished it ends properly and its diff_id is the real one.
fn zero_bomb(size: u64, finish: bool) -> (Vec<u8>, String) {
    use sha2::Digest as _;
    use std::io::Write as _;
    let gz = |bytes: &[u8]| {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    };
    let header = tar_header("bomb", size);
    let mut hasher = sha2::Sha256::new();
    hasher.update(header);
    let mut out = gz(&header);
    let mib = gz(&vec![0; 1 << 20]);
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..size >> 20 {
        out.extend_from_slice(&mib);
        if finish {
            hasher.update(&zeros);
        }
    }
    if finish {
        let tail = vec![0u8; (size % (1 << 20)) as usize + (512 - (size % 512) as usize) % 512 + 1024];
        out.extend_from_slice(&gz(&tail));
        hasher.update(&tail);
    }
    (out, format!("sha256:{:x}", hasher.finalize()))
}

/// An OCI layout at `dir` with the one layer `blob` (gzip) of `diff_id`.
fn layout_of(dir: &Path, blob: &[u8], diff_id: &str) -> String {
    use sha2::Digest as _;
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |bytes: &[u8]| {
        let hex = format!("{:x}", sha2::Sha256::digest(bytes));
        std::fs::write(blobs.join(&hex), bytes).unwrap();
        format!("sha256:{hex}")
    };
    let layer = put(blob);
    let config = serde_json::to_vec(
        &serde_json::json!({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": [diff_id]}}),
    )
    .unwrap();
    let config_d = put(&config);
    let manifest = serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_d, "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer, "size": blob.len()}]}))
    .unwrap();
    let manifest_d = put(&manifest);
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": manifest_d, "size": manifest.len()}]});
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    layer
}

/// The per-layer decompressed limit the bomb test runs under (the default is 16 GiB;
/// a debug build hashes too slowly to reach it in a test).
const BOMB_LIMIT: u64 = 256 << 20;

/// In a process of its own (so its peak memory is its own): import the layout `case`
/// under `dir` and print what happened on one line.
fn bomb_child(dir: &Path, case: &str) {
    use keel_supervisor::image::{import, limits::ImageLimits, ImageSource, Store};
    let mut limits = ImageLimits::default();
    limits.layer.decompressed = BOMB_LIMIT;
    let store = Store::open_with(dir.join(format!("store-{case}")), limits).unwrap();
    let started = std::time::Instant::now();
    let result = import::import(&store, &ImageSource::OciLayout { path: dir.join(case), tag: None });
    let elapsed = started.elapsed().as_millis();
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let hwm = status.lines().find_map(|l| l.strip_prefix("VmHWM:")).unwrap().trim().trim_end_matches(" kB").to_string();
    let outcome = match result {
        Ok(r) => format!("ok {}", std::fs::metadata(r.lowers[0].join("bomb")).unwrap().len()),
        Err(e) => format!("error {e}"),
    };
    println!("KEEL-BOMB elapsed_ms={elapsed} hwm_kb={hwm} {outcome}");
}

/// Run [`bomb_child`] for `case` in a fresh process of this test binary.
fn run_bomb_child(dir: &Path, case: &str) -> (u128, u64, String) {
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "a_gzip_bomb_import_fails_fast_with_bounded_memory_and_leaves_the_store_clean",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("KEEL_BOMB_CHILD", format!("{}:{case}", dir.display()))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find_map(|l| l.split_once("KEEL-BOMB ").map(|(_, rest)| rest))
        .unwrap_or_else(|| panic!("child: {stdout}\n{}", String::from_utf8_lossy(&out.stderr)));
    let mut words = line.splitn(3, ' ');
    let elapsed = words.next().unwrap().trim_start_matches("elapsed_ms=").parse().unwrap();
    let hwm = words.next().unwrap().trim_start_matches("hwm_kb=").parse().unwrap();
    (elapsed, hwm, words.next().unwrap().to_string())
}

#[test]
fn a_gzip_bomb_import_fails_fast_with_bounded_memory_and_leaves_the_store_clean() {
    if let Ok(arg) = std::env::var("KEEL_BOMB_CHILD") {
        let (dir, case) = arg.rsplit_once(':').unwrap();
        return bomb_child(Path::new(dir), case);
    }
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("keel-bomb-test");
    let _ = std::fs::remove_dir_all(&dir);
    // 15 GiB of zeros (under the 16 GiB content limit) in about 15 MB of gzip.
    let (bomb, diff_id) = zero_bomb(15 << 30, false);
    let layer = layout_of(&dir.join("bomb"), &bomb, &diff_id);
    let (elapsed, hwm_kb, outcome) = run_bomb_child(&dir, "bomb");
    eprintln!("bomb: {} bytes of gzip, refused after {elapsed} ms, peak RSS {hwm_kb} kB: {outcome}", bomb.len());
    assert!(outcome.starts_with("error ") && outcome.contains(&layer), "{outcome}");
    assert!(outcome.contains(&format!("more than {BOMB_LIMIT} decompressed bytes")), "{outcome}");
    assert!(elapsed < 60_000, "{elapsed} ms");
    assert!(hwm_kb < 64 << 10, "peak RSS {hwm_kb} kB");
    let store = dir.join("store-bomb");
    for sub in ["blobs/sha256", "layers", "tmp"] {
        assert_eq!(std::fs::read_dir(store.join(sub)).unwrap().count(), 0, "{sub} is not empty");
    }
    assert!(!store.join("refs.json").exists());
    // Control: a finished 64 MiB layer made the same way is taken under the same limits,
    // in as little memory: the bomb was refused for its size, not for its form.
    let (ok, diff_id) = zero_bomb(64 << 20, true);
    layout_of(&dir.join("control"), &ok, &diff_id);
    let (elapsed, hwm_kb, outcome) = run_bomb_child(&dir, "control");
    eprintln!("control: {} bytes of gzip, taken in {elapsed} ms, peak RSS {hwm_kb} kB: {outcome}", ok.len());
    assert_eq!(outcome, format!("ok {}", 64u64 << 20));
    assert!(hwm_kb < 64 << 10, "peak RSS {hwm_kb} kB");
}

#[test]
fn the_store_and_state_dirs_are_private_and_a_user_namespaced_container_still_mounts_its_layers() {
    use std::os::unix::fs::PermissionsExt;
    let dir = image();
    let base = dir.join("userns");
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(&base).unwrap();
    let (store, state) = (base.join("store"), base.join("state"));
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    let run = |name: &str, extra: &str| {
        let file = base.join(format!("{name}.toml"));
        let toml = format!(
            "image = \"oci-archive:{}\"\nnetwork = \"none\"\ncommand = [\"id -u; cat /etc/motd\"]\n{extra}",
            dir.join("image.oci.tar").display()
        );
        std::fs::write(&file, toml).unwrap();
        Command::new(KEEL).arg("run").arg(&file).env("KEEL_IMAGE_STORE", &store).env("KEEL_STATE_DIR", &state).output().unwrap()
    };
    // Without a user namespace everything stays 0700.
    assert_eq!(ok(&run("plain", "")), "0\ntwo\n");
    for (path, want) in
        [(&store, 0o700), (&store.join("layers"), 0o700), (&store.join("blobs"), 0o700), (&state, 0o700), (&store.join("refs.json"), 0o600)]
    {
        assert_eq!(mode(path), want, "{}", path.display());
    }
    // The namespace's root (host uid 100000) mounts the overlay: the path is opened to search.
    let userns = "[user_namespace]\nuid_map = \"0:100000:65536\"\ngid_map = \"0:100000:65536\"\n";
    assert_eq!(ok(&run("userns", userns)), "0\ntwo\n");
    for (path, want) in [(&store, 0o711), (&store.join("layers"), 0o711), (&store.join("blobs"), 0o700), (&state, 0o711)] {
        assert_eq!(mode(path), want, "{}", path.display());
    }
    // Negative control: a directory above that the mapped root cannot search breaks the
    // mount, so the 0711 above is what lets it through.
    std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o700)).unwrap();
    let out = run("userns-blocked", userns);
    std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o755)).unwrap();
    assert_ne!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("mount overlay") && err.contains("EACCES"), "{err}");
}
