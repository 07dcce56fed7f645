//! First-boot tests: an Ignition config passed by QEMU fw_cfg, applied once on a host
//! with a persistent /var; an invalid config refused whole; configs and files served
//! over http and https by the test (QEMU user networking maps 10.0.2.2 to the host's 127.0.0.1);
//! an AWS-style metadata service with an IMDSv2 token; and a CIDATA config drive.

use keel_netconf::http::testing::{self, SeenRequest, TestCa, TestServer};
use keel_qemu_tests::{build_image, data_url, target_dir, BootOptions, Guest, TestImage};
use keel_supervisor::control::Command;
use std::path::{Path, PathBuf};
use std::time::Duration;

const HOST: &str = r#"
hostname = "keel-fb"
busybox = "/bin/busybox"

[kernel]
modules = ["virtio_pci", "virtio_console", "virtio_blk", "virtio_net", "qemu_fw_cfg", "button", "evdev"]

[control]
virtio_serial = true
shutdown_grace_secs = 2

[[images]]
name = "busybox"
busybox = "/bin/busybox"
"#;

const CONTAINER: &str = "image = \"/usr/share/keel/images/busybox\"\ncommand = [\"/bin/sh\", \"-c\", \"echo provisioned; exec sleep 3600\"]\nnetwork = \"none\"\n";

fn config_a() -> String {
    format!(
        r#"{{
  "ignition": {{ "version": "3.4.0" }},
  "passwd": {{
    "users": [{{ "name": "ops", "sshAuthorizedKeys": ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKeelTestKey ops@example"] }}]
  }},
  "storage": {{
    "directories": [{{ "path": "/var/lib/app", "mode": 493 }}],
    "files": [
      {{ "path": "/etc/motd", "mode": 416, "user": {{ "name": "ops" }}, "contents": {{ "source": "{motd}" }} }},
      {{ "path": "/var/lib/app/data", "contents": {{ "source": "data:,first" }} }},
      {{ "path": "/etc/keel/containers/hello.toml", "contents": {{ "source": "{container}" }} }}
    ]
  }}
}}"#,
        motd = data_url("welcome to keel\n"),
        container = data_url(CONTAINER),
    )
}

const CONFIG_B: &str = r#"{ "ignition": { "version": "3.4.0" },
  "storage": { "files": [ { "path": "/var/lib/app/data", "overwrite": true, "contents": { "source": "data:,second" } },
                          { "path": "/etc/config-b", "contents": { "source": "data:,b" } } ] } }"#;

/// Errors on lines 3, 4 and 5, and an unsupported section.
const INVALID: &str = r#"{ "ignition": { "version": "3.4.0" },
  "storage": { "files": [
    { "path": "/etc/a", "moed": 420 },
    { "path": "/usr/bin/evil", "contents": { "source": "data:,x" } },
    { "path": "etc/relative" } ] },
  "systemd": { "units": [ { "name": "x.service", "enabled": true } ] } }"#;

/// One image for both tests (built once: they run in parallel).
fn image() -> &'static TestImage {
    static IMAGE: std::sync::OnceLock<TestImage> = std::sync::OnceLock::new();
    IMAGE.get_or_init(|| build_image("firstboot", HOST, env!("CARGO_BIN_EXE_keel-probe").as_ref()))
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn boot(image: &TestImage, name: &str, disk: Option<PathBuf>, config: PathBuf) -> Guest {
    let mut guest = Guest::boot(image, name, BootOptions { disk, config: Some(config), ..Default::default() });
    guest.wait_ready();
    guest
}

fn firstboot(guest: &Guest) -> serde_json::Value {
    guest.call(Command::Firstboot, Duration::from_secs(30)).unwrap_or_else(|e| guest.fail(&e.to_string()))
}

fn power_off(mut guest: Guest) {
    guest.call(Command::Poweroff, Duration::from_secs(20)).unwrap();
    if !guest.wait_exit(Duration::from_secs(60)).is_some_and(|s| s.success()) {
        guest.fail("did not power off");
    }
}

/// Tests 1 and 2: the config writes files (content, mode, owner), a user with an SSH
/// key and a container that runs; a second boot with another config applies nothing
/// and keeps what changed after the first.
#[test]
fn config_is_applied_once_on_a_persistent_var() {
    let image = image();
    let dir = target_dir().join("qemu-tests").join("firstboot");
    let disk = dir.join(format!("var-{}.img", std::process::id()));
    let _ = std::fs::remove_file(&disk);
    keel_build::disk::VarDisk::default().create(&disk).expect("make the data disk");

    let guest = boot(image, "first", Some(disk.clone()), write(&dir, "a.ign", &config_a()));
    let status = firstboot(&guest);
    assert_eq!(status["state"], "applied", "{status}");
    let motd = guest.exec(&["sh", "-c", "cat /etc/motd; stat -c '%a %U' /etc/motd"]);
    assert_eq!(motd.stdout, "welcome to keel\n640 ops\n", "{motd:?}");
    let keys = guest.exec(&[
        "sh",
        "-c",
        "cat /home/ops/.ssh/authorized_keys; stat -c '%a %U' /home/ops/.ssh/authorized_keys; grep ^ops: /etc/passwd",
    ]);
    assert!(keys.stdout.starts_with("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKeelTestKey ops@example\n600 ops\nops:x:1000:1000:"), "{keys:?}");
    guest.wait_container("hello", Duration::from_secs(60), |c| c.state == "running");
    let changed = guest.exec(&["sh", "-c", "echo changed > /var/lib/app/data"]);
    assert_eq!(changed.exit_code, 0);
    power_off(guest);

    let guest = boot(image, "second", Some(disk.clone()), write(&dir, "b.ign", CONFIG_B));
    let status = firstboot(&guest);
    assert_eq!(status["state"], "skipped", "{status}");
    let after = guest.exec(&["sh", "-c", "cat /var/lib/app/data /etc/motd; ls /etc/config-b 2>&1"]);
    assert!(after.stdout.starts_with("changed\nwelcome to keel\n"), "{after:?}");
    assert!(after.stdout.contains("No such file"), "the second config was applied: {after:?}");
    guest.wait_container("hello", Duration::from_secs(60), |c| c.state == "running");
    power_off(guest);
    let _ = std::fs::remove_file(&disk);
}

/// Test 3: an invalid config names every problem on the console and over keelctl,
/// writes nothing, and no container starts; the machine stays up.
#[test]
fn invalid_config_is_refused_whole() {
    let image = image();
    let dir = target_dir().join("qemu-tests").join("firstboot");
    let guest = boot(image, "invalid", None, write(&dir, "invalid.ign", INVALID));
    let console = guest.console();
    for needle in [
        "first-boot config FAILED",
        "storage.files[0].moed (line 3",
        "storage.files[1].path",
        "storage.files[2].path",
        "systemd.units",
        "containers: not started",
    ] {
        assert!(console.contains(needle), "console lacks {needle:?}:\n{console}");
    }
    let status = firstboot(&guest);
    assert_eq!(status["state"], "failed", "{status}");
    assert!(status["problems"].as_array().is_some_and(|p| p.len() >= 4), "{status}");
    let written = guest.exec(&["sh", "-c", "ls /etc/a /var/lib/keel/firstboot.done 2>&1 | grep -c 'No such file'"]);
    assert_eq!(written.stdout.trim(), "2", "something was written: {written:?}");
    let report = guest.exec(&["cat", "/run/keel/firstboot.json"]);
    assert!(report.stdout.contains("\"failed\""), "{report:?}");
    let ps = guest.call(Command::Ps, Duration::from_secs(10));
    assert!(ps.is_err() || ps.as_ref().is_ok_and(|v| v.as_array().is_some_and(|a| a.is_empty())), "containers: {ps:?}");
    power_off(guest);
}

/// An http(s) server on 127.0.0.1 (10.0.2.2 in the guest), answering every request
/// with `answer(port, request) -> (status, body)`.
fn serve_on(tls: Option<&TestCa>, answer: impl Fn(u16, &SeenRequest) -> (u16, String) + Send + 'static) -> TestServer {
    let tls = tls.map(|ca| ca.server_config(&["10.0.2.2"]));
    TestServer::start(
        "127.0.0.1:0",
        tls,
        Box::new(move |request: &SeenRequest| {
            let port = request.header("host").and_then(|h| h.rsplit(':').next()?.parse().ok()).unwrap_or(0);
            let (status, body) = answer(port, request);
            testing::answer(&format!("{status} X"), body.as_bytes())
        }),
    )
}

fn serve(answer: impl Fn(u16, &SeenRequest) -> (u16, String) + Send + 'static) -> TestServer {
    serve_on(None, answer)
}

fn boot_with(name: &str, cmdline: String) -> Guest {
    let mut guest = Guest::boot(image(), name, BootOptions { extra_cmdline: cmdline, ..Default::default() });
    guest.wait_ready();
    guest
}

/// Test 4: `keel.config.url=http://…` with a file whose source is http too: applied;
/// and a file source with a wrong sha512: refused with "mismatch", nothing written.
#[test]
fn http_config_and_http_files() {
    let server = serve(|port, request| match request.path() {
        "/config.ign" => (
            200,
            format!(
                r#"{{"ignition":{{"version":"3.4.0"}},"storage":{{"files":[{{"path":"/etc/from-http","contents":{{"source":"http://10.0.2.2:{port}/blob"}}}}]}}}}"#
            ),
        ),
        "/bad.ign" => (
            200,
            format!(
                r#"{{"ignition":{{"version":"3.4.0"}},"storage":{{"files":[{{"path":"/etc/ok","contents":{{"source":"data:,fine"}}}},{{"path":"/etc/bad","contents":{{"source":"http://10.0.2.2:{port}/blob","verification":{{"hash":"sha512-{}"}}}}}}]}}}}"#,
                "0".repeat(128)
            ),
        ),
        "/blob" => (200, "from the host\n".to_string()),
        _ => (404, String::new()),
    });
    let port = server.port;
    let guest = boot_with("http", format!("keel.config.url=http://10.0.2.2:{port}/config.ign keel.config.timeout=60"));
    let status = firstboot(&guest);
    assert_eq!(status["state"], "applied", "{status}; requests: {:?}", server.requests());
    let file = guest.exec(&["cat", "/etc/from-http"]);
    assert_eq!(file.stdout, "from the host\n", "{file:?}");
    power_off(guest);

    let guest = boot_with("http-bad-hash", format!("keel.config.url=http://10.0.2.2:{port}/bad.ign"));
    let status = firstboot(&guest);
    assert_eq!(status["state"], "failed", "{status}");
    assert!(status["problems"].to_string().contains("mismatch"), "{status}");
    let written = guest.exec(&["sh", "-c", "ls /etc/ok /etc/bad /var/lib/keel/firstboot.done 2>&1 | grep -c 'No such file'"]);
    assert_eq!(written.stdout.trim(), "3", "something was written: {written:?}");
    power_off(guest);
}

/// https sources: the config (by fw_cfg) trusts a CA of its own
/// (`ignition.security.tls.certificateAuthorities`), merges a config served over https
/// and writes a file fetched over https with an `Authorization` header.
#[test]
fn https_sources_with_the_configs_ca_and_headers() {
    let ca = TestCa::new("keel QEMU test CA");
    let server = serve_on(Some(&ca), |port, request| match (request.path(), request.header("authorization")) {
        ("/child.ign", _) => (
            200,
            format!(
                r#"{{"ignition":{{"version":"3.4.0"}},"storage":{{"files":[{{"path":"/etc/from-child","contents":{{"source":"https://10.0.2.2:{port}/blob"}}}}]}}}}"#
            ),
        ),
        ("/blob", _) => (200, "over tls\n".to_string()),
        ("/secret", Some("Bearer keel-test")) => (200, "s3cret".to_string()),
        ("/secret", _) => (401, String::new()),
        _ => (404, String::new()),
    });
    let base = format!("https://10.0.2.2:{}", server.port);
    let config = format!(
        r#"{{"ignition":{{"version":"3.4.0","security":{{"tls":{{"certificateAuthorities":[{{"source":"{ca}"}}]}}}},"config":{{"merge":[{{"source":"{base}/child.ign"}}]}}}},
  "storage":{{"files":[{{"path":"/etc/secret","mode":384,"contents":{{"source":"{base}/secret","httpHeaders":[{{"name":"Authorization","value":"Bearer keel-test"}}]}}}}]}}}}"#,
        ca = data_url(&ca.pem)
    );
    let dir = target_dir().join("qemu-tests").join("firstboot-https");
    std::fs::create_dir_all(&dir).unwrap();
    let guest = boot(image(), "https", None, write(&dir, "config.ign", &config));
    let status = firstboot(&guest);
    assert_eq!(status["state"], "applied", "{status}; requests: {:?}", server.requests());
    let files = guest.exec(&["cat", "/etc/from-child", "/etc/secret", "/etc/ssl/certs/ca-certificates.crt"]);
    assert!(files.stdout.starts_with("over tls\ns3cret-----BEGIN CERTIFICATE-----"), "{:?}", &files.stdout[..files.stdout.len().min(200)]);
    power_off(guest);
}

/// Test 6: `keel.platform=aws` reads the user data with an IMDSv2 token.
#[test]
fn aws_metadata_config_is_applied() {
    let server = serve(|_, request| match (request.line.split(' ').next().unwrap_or(""), request.path()) {
        ("PUT", "/latest/api/token") if request.header("X-aws-ec2-metadata-token-ttl-seconds") == Some("21600") => {
            (200, "test-token".to_string())
        }
        ("GET", "/latest/user-data") if request.header("X-aws-ec2-metadata-token") == Some("test-token") => (
            200,
            r#"{"ignition":{"version":"3.4.0"},"storage":{"files":[{"path":"/etc/from-aws","contents":{"source":"data:,aws"}}]}}"#
                .to_string(),
        ),
        ("GET", "/latest/user-data") => (401, String::new()),
        _ => (404, String::new()),
    });
    let guest = boot_with("aws", format!("keel.platform=aws keel.metadata.url=http://10.0.2.2:{}", server.port));
    let status = firstboot(&guest);
    assert_eq!(status["state"], "applied", "{status}; requests: {:?}", server.requests());
    let file = guest.exec(&["cat", "/etc/from-aws"]);
    assert_eq!(file.stdout, "aws", "{file:?}");
    power_off(guest);
}

/// A config drive: a vfat image labelled CIDATA holding `user-data`, made with
/// `mkfs.vfat` (dosfstools) and `mcopy` (mtools), both build-time tools.
fn cidata_drive(dir: &Path, user_data: &str) -> PathBuf {
    let image = dir.join(format!("cidata-{}.img", std::process::id()));
    let _ = std::fs::remove_file(&image);
    let user_data = write(dir, "user-data", user_data);
    let run = |program: &str, args: &[&std::ffi::OsStr]| {
        let output = std::process::Command::new(program)
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("{program}: {e} (scripts/install-deps.sh installs it)"));
        assert!(output.status.success(), "{program} {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    };
    let mkfs = if Path::new("/usr/sbin/mkfs.vfat").exists() { "/usr/sbin/mkfs.vfat" } else { "mkfs.vfat" };
    run(mkfs, &["-n".as_ref(), "CIDATA".as_ref(), "-C".as_ref(), image.as_os_str(), "2048".as_ref()]);
    run("mcopy", &["-i".as_ref(), image.as_os_str(), user_data.as_os_str(), "::user-data".as_ref()]);
    image
}

/// Test 7: no fw_cfg config, no keel.config.url: the config on a CIDATA config drive
/// (the second virtio disk, after the data disk) is applied, and the drive is unmounted.
#[test]
fn config_drive_config_is_applied() {
    let image = image();
    let dir = target_dir().join("qemu-tests").join("firstboot");
    let disk = dir.join(format!("var-cidata-{}.img", std::process::id()));
    let _ = std::fs::remove_file(&disk);
    keel_build::disk::VarDisk::default().create(&disk).expect("make the data disk");
    let drive = cidata_drive(
        &dir,
        r#"{"ignition":{"version":"3.4.0"},"storage":{"files":[{"path":"/etc/from-cidata","contents":{"source":"data:,cidata"}}]}}"#,
    );
    let options = BootOptions { disk: Some(disk.clone()), extra_disks: vec![drive.clone()], ..Default::default() };
    let mut guest = Guest::boot(image, "config-drive", options);
    guest.wait_ready();
    let status = firstboot(&guest);
    assert_eq!(status["state"], "applied", "{status}");
    assert_eq!(status["source"], "config drive /dev/vdb (CIDATA)", "{status}");
    let file = guest.exec(&["cat", "/etc/from-cidata"]);
    assert_eq!(file.stdout, "cidata", "{file:?}");
    let mounts = guest.exec(&["sh", "-c", "grep -c /dev/vdb /proc/mounts"]);
    assert_eq!(mounts.stdout.trim(), "0", "the config drive is still mounted: {mounts:?}");
    power_off(guest);
    let _ = std::fs::remove_file(&disk);
    let _ = std::fs::remove_file(&drive);
}
