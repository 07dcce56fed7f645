//! Container images in a booted host: a multi-layer OCI archive (made by umoci and
//! skopeo from a busybox root filesystem, with deletions, an opaque directory and hard
//! links across layers) is shipped by keel-build's `[[images]] oci-archive`, imported at
//! the container's first start, and run on an overlay of its layers with the image's
//! Entrypoint, Cmd, Env and WorkingDir; a tampered archive is refused with the blob's
//! digest while the other containers keep running; `keelctl image` works on the store.

use keel_qemu_tests::{build_image, target_dir, BootOptions, Guest, TestImage};
use keel_supervisor::control::Command;
use keel_supervisor::image::inspect::{ImageDetail, ImageSummary};
use std::path::Path;
use std::process::Command as Process;
use std::time::Duration;

/// The image archives (good, tampered) made on the build host, and the host image.
fn host_image() -> (TestImage, String) {
    let dir = target_dir().join("qemu-tests").join("images");
    let src = dir.join("src");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/make-test-image.sh");
    let out = Process::new(script).arg(&src).output().expect("run make-test-image.sh");
    assert!(out.status.success(), "make-test-image.sh (needs umoci, skopeo, python3): {}", String::from_utf8_lossy(&out.stderr));
    // The tampered copy: one byte flipped in the middle of the biggest blob.
    let tamper = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/tamper-archive.py");
    let out = Process::new(tamper).arg(src.join("image.oci.tar")).arg(src.join("tampered.tar")).output().unwrap();
    assert!(out.status.success(), "tamper: {}", String::from_utf8_lossy(&out.stderr));
    let tampered_blob = String::from_utf8_lossy(&out.stdout).trim().rsplit('/').next().unwrap_or_default().to_string();
    let declarations = [
        // The image's defaults alone: Entrypoint sh -c, Cmd printing what it sees.
        ("app", "image = \"oci-archive:/usr/share/keel/images/app.tar\"\nnetwork = \"none\"\n"),
        // Cmd replaced, Entrypoint and Env kept; stays up.
        ("svc", "image = \"oci-archive:/usr/share/keel/images/app.tar\"\ncommand = [\"echo $MARKER started in $(pwd); exec sleep 3600\"]\nnetwork = \"none\"\nstop_timeout = \"1s\"\n"),
        ("bad", "image = \"oci-archive:/usr/share/keel/images/bad.tar\"\ncommand = \"/bin/echo should-not-run\"\nnetwork = \"none\"\n"),
    ];
    let mut host = format!(
        r#"
hostname = "keel-img"
busybox = "/bin/busybox"

[kernel]
modules = ["virtio_pci", "virtio_console", "button", "evdev", "overlay"]

[control]
virtio_serial = true
shutdown_grace_secs = 3

[[images]]
name = "app"
oci-archive = "{good}"

[[files]]
source = "{bad}"
path = "/usr/share/keel/images/bad.tar"

[[files]]
source = "{docker}"
path = "/usr/share/keel/images/app.docker.tar"
"#,
        good = src.join("image.oci.tar").display(),
        bad = src.join("tampered.tar").display(),
        docker = src.join("image.docker.tar").display(),
    );
    for (name, text) in declarations {
        let file = dir.join(format!("{name}.toml"));
        std::fs::write(&file, text).unwrap();
        host.push_str(&format!("\n[[files]]\nsource = \"{}\"\npath = \"/etc/keel/containers/{name}.toml\"\n", file.display()));
    }
    (build_image("images", &host, env!("CARGO_BIN_EXE_keel-probe").as_ref()), tampered_blob)
}

fn call(guest: &Guest, command: Command) -> Result<serde_json::Value, String> {
    guest.call(command, Duration::from_secs(120)).map_err(|e| e.to_string())
}

#[test]
fn multi_layer_oci_archive_runs_with_its_config_and_a_tampered_one_is_refused() {
    let (image, tampered_blob) = host_image();
    let mut guest = Guest::boot(&image, "images", BootOptions::default());
    guest.wait_ready();

    // The image's Entrypoint/Cmd/Env/WorkingDir, its deletions and its opaque directory.
    guest.wait_container("app", Duration::from_secs(120), |c| c.state == "exited" || c.last_exit.is_some());
    let logs = guest.logs("app").join("\n");
    assert!(logs.contains("MARKER=from-image uid=0 pwd=/srv motd=two cache=c2 deleted=absent"), "app logs: {logs}");
    assert_eq!(guest.container("app").last_exit, Some(0));

    let svc = guest.wait_container("svc", Duration::from_secs(60), |c| c.state == "running");
    assert!(guest.logs("svc").join("\n").contains("from-image started in /srv"), "svc logs: {:?}", guest.logs("svc"));
    // Its root is an overlay of the store's layers with its own upper in /var.
    let mounts = guest.exec(&["cat", &format!("/proc/{}/mounts", svc.pid.unwrap())]);
    let root = mounts.stdout.lines().find(|l| l.split_whitespace().nth(1) == Some("/")).unwrap_or_default().to_string();
    assert!(
        root.starts_with("overlay / overlay")
            && root.contains("/var/lib/keel/images/layers/")
            && root.contains("upperdir=/var/lib/keel/containers/svc/upper"),
        "root mount: {root}"
    );
    let write = guest.exec_in(Some("svc"), &["/bin/sh", "-c", "echo changed > /etc/motd && cat /etc/motd"]);
    assert_eq!(write.stdout, "changed\n");
    let layers = guest.exec(&["/bin/sh", "-c", "cat /var/lib/keel/images/layers/*/etc/motd"]);
    assert!(layers.stdout.contains("two") && !layers.stdout.contains("changed"), "layers were written: {layers:?}");

    // The tampered archive: a clear error naming the blob; nothing else broke.
    let bad = guest.wait_container("bad", Duration::from_secs(60), |c| c.detail.as_deref().is_some_and(|d| d.contains("blob")));
    let detail = bad.detail.unwrap_or_default();
    assert!(detail.contains(&format!("blob sha256:{tampered_blob}")) && detail.contains("tampered or corrupt"), "bad: {detail}");
    assert_eq!(guest.container("svc").state, "running");

    // keelctl image ls / inspect.
    let images: Vec<ImageSummary> = serde_json::from_value(call(&guest, Command::ImageLs).unwrap()).unwrap();
    let app = images
        .iter()
        .find(|i| i.names.iter().any(|n| n == "oci-archive:/usr/share/keel/images/app.tar"))
        .unwrap_or_else(|| panic!("{images:?}"));
    assert_eq!(app.layers, 3);
    assert!(!images.iter().any(|i| i.names.iter().any(|n| n.contains("bad.tar"))), "{images:?}");
    let detail: ImageDetail =
        serde_json::from_value(call(&guest, Command::ImageInspect { reference: app.manifest.short().into() }).unwrap()).unwrap();
    assert!(
        detail.layers[1].removed.iter().any(|p| p == "etc/deleted") && detail.layers[1].changed.iter().any(|p| p == "etc/motd"),
        "{:?}",
        detail.layers[1]
    );
    assert!(detail.layers[2].removed.iter().any(|p| p == "var/cache/c1"), "{:?}", detail.layers[2]);

    // keelctl image load: a docker archive shares every layer with the OCI one; a
    // tampered archive is refused and PID 1 carries on.
    let loaded = call(&guest, Command::ImageLoad { source: "/usr/share/keel/images/app.docker.tar".into(), progress: false }).unwrap();
    assert!(loaded.as_str().unwrap_or_default().contains("3 layers"), "{loaded}");
    let count = guest.exec(&["/bin/sh", "-c", "ls /var/lib/keel/images/layers | wc -l"]);
    assert_eq!(count.stdout.trim(), "3", "layers are stored once");
    let err =
        call(&guest, Command::ImageLoad { source: "oci-archive:/usr/share/keel/images/bad.tar".into(), progress: false }).unwrap_err();
    assert!(err.contains(&format!("blob sha256:{tampered_blob}")), "{err}");

    // rm refuses an image a declaration uses; rm + prune drop the rest.
    let err = call(&guest, Command::ImageRm { reference: "oci-archive:/usr/share/keel/images/app.tar".into() }).unwrap_err();
    assert!(err.contains("used by a declared container"), "{err}");
    call(&guest, Command::ImageRm { reference: "docker.io/keel/test:latest".into() }).unwrap();
    call(&guest, Command::ImageRm { reference: "docker-archive:/usr/share/keel/images/app.docker.tar".into() }).unwrap();
    let pruned = call(&guest, Command::ImagePrune).unwrap();
    assert!(pruned.as_str().unwrap_or_default().contains("and 0 layers"), "{pruned}");
    assert_eq!(guest.container("svc").state, "running");
    let status = call(&guest, Command::Status).unwrap();
    assert!(status.to_string().contains("ready") || status.is_object(), "{status}");

    guest.qmp("system_powerdown");
    assert!(guest.wait_exit(Duration::from_secs(60)).is_some(), "no clean poweroff");
}
