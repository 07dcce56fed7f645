//! The remote API end to end: a guest with /etc/keel/api.toml serves the control
//! protocol over TLS 1.3 on port 50000 (QEMU's hostfwd brings it to the test), and
//! `keelctl --host` with certificates made here (rcgen) is let in or refused by its CA,
//! validity, serial and role; the audit log names every request. A guest without
//! api.toml keeps the port closed. The round trip of `keelctl status` over TLS and over
//! the virtio-serial port is measured and printed.

use keel_build::qemu::HostFwd;
use keel_init::api::test_certs::{ca, issue};
use keel_qemu_tests::free_port;
use keel_qemu_tests::output_text as text;
use keel_qemu_tests::{build_image, busybox_host, declare_container, keel_binary, target_dir, BootOptions, Guest, BUSYBOX_IMAGE};
use std::io::Read;
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Output;
use std::time::{Duration, Instant};

const MODULES: &[&str] = &["virtio_pci", "virtio_console", "virtio_net", "button", "evdev"];
const API_PORT: u16 = 50000;

/// `keel ctl --host 127.0.0.1:PORT --fingerprint FP [--cert C --key K] ARGS…`.
fn keelctl_tls(port: u16, fingerprint: &str, cert: Option<&(PathBuf, PathBuf)>, args: &[&str]) -> Output {
    let mut command = std::process::Command::new(keel_binary());
    command.args(["ctl", "--timeout", "60", "--host", &format!("127.0.0.1:{port}"), "--fingerprint", fingerprint]);
    if let Some((cert, key)) = cert {
        command.arg("--cert").arg(cert).arg("--key").arg(key);
    }
    command.args(args).output().unwrap()
}

/// Median wall time of `runs` calls of `f`.
fn median(runs: usize, mut f: impl FnMut()) -> Duration {
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .collect();
    times.sort();
    times[runs / 2]
}

/// The fingerprint `keel api` printed on the console.
fn console_fingerprint(guest: &mut Guest) -> String {
    guest.wait_for("server certificate sha256 ", Duration::from_secs(120));
    let console = guest.console();
    let line = console.lines().find(|l| l.contains("server certificate sha256 ")).unwrap();
    line.rsplit("sha256 ").next().unwrap().trim().to_string()
}

#[test]
fn keelctl_over_tls_roles_refusals_audit_and_round_trips() {
    let name = "remote-api";
    let dir = target_dir().join("qemu-tests").join(name);
    std::fs::create_dir_all(&dir).unwrap();
    let ours = ca("keel test clients CA");
    let other = ca("another CA");
    std::fs::write(dir.join("ca.pem"), ours.cert.pem()).unwrap();
    std::fs::write(dir.join("api.toml"), format!("port = {API_PORT}\nclient_ca = \"/etc/keel/api/ca.pem\"\n")).unwrap();
    std::fs::write(dir.join("denied-serials"), "# revoked client certificates\n66\n").unwrap();
    let admin = issue(&dir, &ours, "admin", "alice", "admin", 0x11, false);
    let reader = issue(&dir, &ours, "reader", "bob", "read-only", 0x22, false);
    let foreign = issue(&dir, &other, "foreign", "mallory", "admin", 0x44, false);
    let expired = issue(&dir, &ours, "expired", "dave", "admin", 0x55, true);
    let revoked = issue(&dir, &ours, "revoked", "erin", "admin", 0x66, false);

    let mut host = busybox_host("keel-api", MODULES, 2);
    for (file, path) in
        [("api.toml", "/etc/keel/api.toml"), ("ca.pem", "/etc/keel/api/ca.pem"), ("denied-serials", "/etc/keel/api/denied-serials")]
    {
        host.push_str(&format!("\n[[files]]\nsource = \"{}\"\npath = \"{path}\"\n", dir.join(file).display()));
    }
    declare_container(&dir, &mut host, "idler", "image = \"@IMAGE@\"\ncommand = [\"/bin/sleep\", \"3600\"]\nstop_timeout = \"1s\"\n");
    let image = build_image(name, &host, env!("CARGO_BIN_EXE_keel-probe").as_ref());
    let port = free_port();
    let hostfwd = vec![format!("tcp:{port}-:{API_PORT}").parse::<HostFwd>().unwrap()];
    let mut guest = Guest::boot(&image, name, BootOptions { hostfwd, ..Default::default() });
    guest.wait_ready();
    let fp = console_fingerprint(&mut guest);
    guest.wait_container("idler", Duration::from_secs(60), |c| c.state == "running");

    // Admin: ps and status over TLS (the API may still be starting: retry a while).
    let deadline = Instant::now() + Duration::from_secs(60);
    let ps = loop {
        let out = keelctl_tls(port, &fp, Some(&admin), &["ps"]);
        if out.status.success() || Instant::now() > deadline {
            break out;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    assert!(ps.status.success() && String::from_utf8_lossy(&ps.stdout).contains("idler"), "{}", text(&ps));
    // The API process runs in its own cgroup with its memory and pids caps (issue 12).
    let cgroup = guest.exec(&[
        "sh",
        "-c",
        "cd /sys/fs/cgroup/keel-api && cat memory.max pids.max memory.swap.max && \
         for p in $(cat cgroup.procs); do tr '\\0' ' ' < /proc/$p/cmdline; echo; done",
    ]);
    assert!(cgroup.stdout.starts_with("67108864\n64\n0\nkeel api "), "the API process is not in keel-api with its caps: {cgroup:?}");
    let status = keelctl_tls(port, &fp, Some(&admin), &["status"]);
    assert!(status.status.success() && String::from_utf8_lossy(&status.stdout).contains("keel-api"), "{}", text(&status));
    // A wrong pinned fingerprint is refused by keelctl (negative control: the right one above works).
    let wrong = keelctl_tls(port, &format!("{}AB", "AB:".repeat(31)), Some(&admin), &["status"]);
    assert!(!wrong.status.success() && text(&wrong).contains("fingerprint"), "{}", text(&wrong));

    // Read-only: ps yes; exec and poweroff refused, while admin's exec works (negative control).
    let out = keelctl_tls(port, &fp, Some(&reader), &["ps"]);
    assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).contains("idler"), "{}", text(&out));
    let admin_exec = keelctl_tls(port, &fp, Some(&admin), &["exec", "--", "echo", "hello-from-exec"]);
    assert!(
        admin_exec.status.success() && String::from_utf8_lossy(&admin_exec.stdout).contains("hello-from-exec"),
        "{}",
        text(&admin_exec)
    );
    for args in [&["exec", "--", "echo", "hello-from-exec"][..], &["poweroff"][..]] {
        let out = keelctl_tls(port, &fp, Some(&reader), args);
        assert!(!out.status.success() && text(&out).contains("refused: the read-only role may not run"), "{args:?}: {}", text(&out));
    }

    // apply and rm over TLS: refused to the read-only role (nothing written), done for admin.
    let extra = dir.join("extra.toml");
    let declaration = format!("image = \"{BUSYBOX_IMAGE}\"\ncommand = [\"/bin/sleep\", \"3601\"]\nstop_timeout = \"1s\"\n");
    std::fs::write(&extra, declaration).unwrap();
    let extra_arg = extra.display().to_string();
    let out = keelctl_tls(port, &fp, Some(&reader), &["apply", &extra_arg]);
    assert!(!out.status.success() && text(&out).contains("refused: the read-only role may not run"), "{}", text(&out));
    assert_ne!(guest.exec(&["test", "-e", "/etc/keel/containers/extra.toml"]).exit_code, 0, "a refused apply wrote its file");
    let out = keelctl_tls(port, &fp, Some(&admin), &["apply", &extra_arg]);
    assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).contains("add extra"), "{}", text(&out));
    guest.wait_container("extra", Duration::from_secs(60), |c| c.state == "running");
    let out = keelctl_tls(port, &fp, Some(&admin), &["rm", "extra"]);
    assert!(out.status.success(), "{}", text(&out));
    let deadline = Instant::now() + Duration::from_secs(30);
    while guest.ps().iter().any(|c| c.name == "extra") {
        assert!(Instant::now() < deadline, "extra still listed after rm");
        std::thread::sleep(Duration::from_millis(300));
    }
    assert_ne!(guest.exec(&["test", "-e", "/etc/keel/containers/extra.toml"]).exit_code, 0, "rm left the declaration");

    // Refused in the handshake: another CA, no certificate, expired, revoked.
    for (what, cert, why) in [
        ("other CA", Some(&foreign), "alert"),
        ("no certificate", None, "alert"),
        ("expired", Some(&expired), "alert"),
        ("revoked", Some(&revoked), "alert"),
    ] {
        let out = keelctl_tls(port, &fp, cert, &["ps"]);
        assert!(!out.status.success() && text(&out).to_lowercase().contains(why), "{what}: {}", text(&out));
    }
    // Negative control of the deny list: with the serial removed, the same certificate gets in.
    let cleared = guest.exec(&["sh", "-c", "echo '# none' > /etc/keel/api/denied-serials"]);
    assert_eq!(cleared.exit_code, 0, "{cleared:?}");
    let out = keelctl_tls(port, &fp, Some(&revoked), &["ps"]);
    assert!(out.status.success(), "{}", text(&out));

    // The audit log names each request: who, what, result.
    let audit = guest.exec(&["cat", "/var/log/keel/audit.log"]).stdout;
    let entries: Vec<serde_json::Value> = audit.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let has = |cn: Option<&str>, cmd: &str, result: &str, detail: &str| {
        entries.iter().any(|e| {
            e["cn"].as_str() == cn
                && e["cmd"] == cmd
                && e["result"] == result
                && e["detail"].as_str().unwrap_or("").to_lowercase().contains(detail)
                && e["time"].as_str().is_some_and(|t| t.ends_with('Z'))
        })
    };
    assert!(
        has(Some("alice"), "ps", "ok", "")
            && has(Some("alice"), "status", "ok", "")
            && has(Some("alice"), "exec", "ok", "")
            && has(Some("alice"), "apply", "ok", "")
            && has(Some("alice"), "rm", "ok", "")
            && has(Some("bob"), "apply", "refused", "read-only"),
        "{audit}"
    );
    assert!(
        has(Some("bob"), "ps", "ok", "") && has(Some("bob"), "exec", "refused", "read-only") && has(Some("bob"), "poweroff", "refused", ""),
        "{audit}"
    );
    assert!(has(Some("mallory"), "-", "refused", "handshake"), "{audit}");
    assert!(has(None, "-", "refused", "handshake"), "no certificate: {audit}");
    assert!(has(Some("dave"), "-", "refused", "expired"), "{audit}");
    assert!(has(Some("erin"), "-", "refused", "revoked") && has(Some("erin"), "ps", "ok", ""), "{audit}");

    // Round trips of `keelctl status`: a new keelctl process each time (TLS: a new handshake too).
    let serial_socket = guest.control_socket().to_path_buf();
    let over_tls = median(9, || assert!(keelctl_tls(port, &fp, Some(&admin), &["status"]).status.success()));
    let over_serial = median(9, || {
        let out = std::process::Command::new(keel_binary()).arg("ctl").arg("--socket").arg(&serial_socket).arg("status").output().unwrap();
        assert!(out.status.success(), "{}", text(&out));
    });
    // The same over keel-build run's multiplexer, which keeps QEMU's end of the port open
    // (from here on the guest's own helpers, which connect directly, are not used).
    let mux = dir.join("mux.sock");
    keel_build::serial_mux::spawn(serial_socket.clone(), &mux).unwrap();
    let ready = Instant::now() + Duration::from_secs(20);
    while !std::process::Command::new(keel_binary()).arg("ctl").arg("--socket").arg(&mux).arg("status").output().unwrap().status.success() {
        assert!(Instant::now() < ready, "the multiplexer never reached the guest");
        std::thread::sleep(Duration::from_millis(100));
    }
    let over_mux = median(9, || {
        let out = std::process::Command::new(keel_binary()).arg("ctl").arg("--socket").arg(&mux).arg("status").output().unwrap();
        assert!(out.status.success(), "{}", text(&out));
    });
    println!(
        "ROUND TRIP keelctl status (median of 9, a keelctl process each): TLS {over_tls:?}, virtio-serial direct {over_serial:?}, virtio-serial kept open and multiplexed {over_mux:?}"
    );

    // Poweroff over TLS.
    let out = keelctl_tls(port, &fp, Some(&admin), &["poweroff"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(guest.wait_exit(Duration::from_secs(60)).is_some(), "the guest did not power off");
}

/// Connect through the hostfwd and read what the guest sends (None: nothing in 3 s).
fn probe(port: u16) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    let mut text = String::new();
    let _ = stream.read_to_string(&mut text);
    (!text.is_empty()).then_some(text)
}

#[test]
fn api_port_closed_when_not_configured() {
    let name = "remote-api-off";
    let dir = target_dir().join("qemu-tests").join(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("network.toml"), "[firewall]\nallow = [\"tcp/50001\"]\n").unwrap();
    let mut host = busybox_host("keel-api-off", MODULES, 2);
    host.push_str(&format!("\n[[files]]\nsource = \"{}\"\npath = \"/etc/keel/network.toml\"\n", dir.join("network.toml").display()));
    let image = build_image(name, &host, env!("CARGO_BIN_EXE_keel-probe").as_ref());
    let (api, allowed) = (free_port(), free_port());
    let hostfwd =
        vec![format!("tcp:{api}-:{API_PORT}").parse::<HostFwd>().unwrap(), format!("tcp:{allowed}-:50001").parse::<HostFwd>().unwrap()];
    let mut guest = Guest::boot(&image, name, BootOptions { hostfwd, ..Default::default() });
    guest.wait_ready();
    // The firewall is applied once the modules loading after ready are in.
    guest.wait_for("bridges and firewall up", Duration::from_secs(60));
    // Something listens on the API port, but without api.toml the firewall drops it.
    for port in [API_PORT, 50001] {
        let out = guest.exec(&["keel-probe", "serve", &format!("0.0.0.0:{port}"), "120"]);
        assert_eq!(out.exit_code, 0, "{out:?}");
    }
    // Negative control: the same probe reaches a port the firewall allows.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut reached = None;
    while reached.is_none() && Instant::now() < deadline {
        reached = probe(allowed);
    }
    assert!(reached.is_some(), "the allowed port never answered: the probe cannot tell");
    assert_eq!(probe(api), None, "port {API_PORT} answered though the API is not configured");
    assert!(!guest.console().contains("keel api: listening"), "no API process without api.toml");
}
