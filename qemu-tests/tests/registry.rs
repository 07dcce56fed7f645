//! Registry pull in a booted host: Debian's docker-registry, on the QEMU host side with
//! a certificate from a throwaway CA, holds a multi-layer image pushed by skopeo. The
//! first-boot config trusts that CA for the registry (`/etc/keel/certs.d/HOST:PORT/ca.crt`)
//! and declares a container whose image is `10.0.2.2:PORT/keel/app:v1`: keel pulls it at
//! boot (token-less registry, manifest, blobs checked against their digests), and the
//! container runs with the image's Entrypoint, Cmd, Env and WorkingDir. A reference to
//! a tag that does not exist fails with the registry's answer, and nothing else breaks.

use keel_netconf::http::testing::TestCa;
use keel_qemu_tests::free_port;
use keel_qemu_tests::{build_image, data_url, target_dir, BootOptions, Guest};
use keel_supervisor::control::Command;
use keel_supervisor::image::inspect::ImageSummary;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command as Process, Stdio};
use std::time::{Duration, Instant};

const HOST: &str = r#"
hostname = "keel-registry"
busybox = "/bin/busybox"

[kernel]
modules = ["virtio_pci", "virtio_console", "virtio_net", "qemu_fw_cfg", "button", "evdev", "overlay"]

[control]
virtio_serial = true
shutdown_grace_secs = 2
"#;

/// docker-registry, killed when dropped.
struct Registry(Child);

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Start docker-registry over TLS on 127.0.0.1:`port` with storage in `dir`.
fn start_registry(dir: &Path, ca: &TestCa, port: u16) -> Registry {
    let (cert, key) = ca.issue_pem(&["10.0.2.2", "127.0.0.1"]);
    std::fs::write(dir.join("cert.pem"), cert).unwrap();
    std::fs::write(dir.join("key.pem"), key).unwrap();
    let config = format!(
        "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {storage}\nhttp:\n  addr: 127.0.0.1:{port}\n  tls:\n    certificate: {dir}/cert.pem\n    key: {dir}/key.pem\n",
        storage = dir.join("storage").display(),
        dir = dir.display()
    );
    std::fs::write(dir.join("config.yml"), config).unwrap();
    let log = std::fs::File::create(dir.join("registry.log")).unwrap();
    let child = Process::new("docker-registry")
        .arg("serve")
        .arg(dir.join("config.yml"))
        .stdout(Stdio::from(log.try_clone().unwrap()))
        .stderr(Stdio::from(log))
        .spawn()
        .expect("docker-registry (Debian package docker-registry)");
    let registry = Registry(child);
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(start.elapsed() < Duration::from_secs(30), "docker-registry did not listen on {port}");
        std::thread::sleep(Duration::from_millis(100));
    }
    registry
}

/// The multi-layer test image (scripts/make-test-image.sh), pushed with skopeo.
fn push_image(dir: &Path, port: u16) -> PathBuf {
    let src = dir.join("src");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/make-test-image.sh");
    let out = Process::new(script).arg(&src).output().expect("run make-test-image.sh");
    assert!(out.status.success(), "make-test-image.sh: {}", String::from_utf8_lossy(&out.stderr));
    let archive = src.join("image.oci.tar");
    let out = Process::new("skopeo")
        .args(["--insecure-policy", "copy", "--dest-tls-verify=false"])
        .arg(format!("oci-archive:{}", archive.display()))
        .arg(format!("docker://127.0.0.1:{port}/keel/app:v1"))
        .output()
        .expect("skopeo");
    assert!(out.status.success(), "skopeo copy: {}", String::from_utf8_lossy(&out.stderr));
    archive
}

#[test]
fn an_image_pulled_at_boot_from_an_https_registry_runs() {
    let dir = target_dir().join("qemu-tests").join("registry");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let ca = TestCa::new("keel registry test CA");
    let port = free_port();
    let _registry = start_registry(&dir, &ca, port);
    push_image(&dir, port);

    let registry = format!("10.0.2.2:{port}");
    let app = format!("image = \"{registry}/keel/app:v1\"\nnetwork = \"none\"\nrestart = \"on-failure\"\n");
    let missing = format!("image = \"{registry}/keel/app:nope\"\ncommand = \"/bin/true\"\nnetwork = \"none\"\nrestart = \"no\"\n");
    let other = "image = \"/usr/share/keel/images/busybox\"\ncommand = [\"/bin/sh\", \"-c\", \"exec sleep 3600\"]\nnetwork = \"none\"\n";
    let config = format!(
        r#"{{"ignition":{{"version":"3.4.0"}},"storage":{{"files":[
  {{"path":"/etc/keel/certs.d/{registry}/ca.crt","contents":{{"source":"{ca}"}}}},
  {{"path":"/etc/keel/containers/app.toml","contents":{{"source":"{app}"}}}},
  {{"path":"/etc/keel/containers/missing.toml","contents":{{"source":"{missing}"}}}},
  {{"path":"/etc/keel/containers/other.toml","contents":{{"source":"{other}"}}}}]}}}}"#,
        ca = data_url(&ca.pem),
        app = data_url(&app),
        missing = data_url(&missing),
        other = data_url(other),
    );
    std::fs::write(dir.join("config.ign"), config).unwrap();
    let host = format!("{HOST}\n[[images]]\nname = \"busybox\"\nbusybox = \"/bin/busybox\"\n");
    let image = build_image("registry", &host, env!("CARGO_BIN_EXE_keel-probe").as_ref());
    let mut guest = Guest::boot(&image, "registry", BootOptions { config: Some(dir.join("config.ign")), ..Default::default() });
    guest.wait_ready();

    // Pulled over https with the config's CA, run with the image's own defaults.
    guest.wait_container("app", Duration::from_secs(180), |c| c.last_exit.is_some());
    let logs = guest.logs("app").join("\n");
    assert!(logs.contains("MARKER=from-image uid=0 pwd=/srv motd=two cache=c2 deleted=absent"), "app logs: {logs}");
    let images: Vec<ImageSummary> = serde_json::from_value(guest.call(Command::ImageLs, Duration::from_secs(60)).unwrap()).unwrap();
    let pulled =
        images.iter().find(|i| i.names.iter().any(|n| n == &format!("{registry}/keel/app:v1"))).unwrap_or_else(|| panic!("{images:?}"));
    assert_eq!(pulled.layers, 3);
    let console = guest.console();
    assert!(console.contains(&format!("image {registry}/keel/app:v1: pulled sha256:")), "no pull line on the console");

    // An unknown tag: the registry's answer, and the other container runs on.
    let missing = guest.wait_container("missing", Duration::from_secs(120), |c| c.detail.as_deref().is_some_and(|d| d.contains("404")));
    assert!(missing.detail.unwrap_or_default().contains("MANIFEST_UNKNOWN"), "missing: {:?}", guest.container("missing"));
    guest.wait_container("other", Duration::from_secs(60), |c| c.state == "running");

    // `keelctl image pull` again: every blob is already there.
    let again =
        guest.call(Command::ImagePull { reference: format!("{registry}/keel/app:v1"), progress: false }, Duration::from_secs(120)).unwrap();
    assert!(again.as_str().unwrap_or_default().contains("3 layers"), "{again}");
    guest.call(Command::Poweroff, Duration::from_secs(20)).unwrap();
    assert!(guest.wait_exit(Duration::from_secs(60)).is_some_and(|s| s.success()), "did not power off");
}
