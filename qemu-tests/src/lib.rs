//! keel-qemu-tests: boot real keel images in QEMU and check behaviour end to end.
//!
//! A test builds (once per test binary) an image from a host.toml with
//! [`build_image`], boots it with [`Guest::boot`], waits for console markers, talks
//! to keel over the virtio-serial control channel and drives QEMU through QMP.
//! Every guest is killed when its [`Guest`] is dropped, so a failing test leaves no
//! QEMU behind. The console of each boot is kept in `target/qemu-tests/NAME/`.
//!
//! The images use the newest kernel in /boot and the `keel` binary built next to the
//! test executable (`make test` builds it first).

pub mod boot_timing;
pub mod guest;
pub mod image;

pub use guest::{BootOptions, Guest};
pub use image::{build_image, build_image_from_file, keel_binary, target_dir, ImageError, TestImage};

/// A `data:` URL of `text`, percent-encoded: how the tests inline files in first-boot configs.
pub fn data_url(text: &str) -> String {
    let encoded: String =
        text.bytes().map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") }).collect();
    format!("data:,{encoded}")
}

/// Where the busybox container image lives in test hosts (`@IMAGE@` in declarations).
pub const BUSYBOX_IMAGE: &str = "/usr/share/keel/images/busybox";

/// The host.toml of a container test host: `hostname`, the kernel `modules`, the control
/// channel on virtio-serial with `grace_secs` of shutdown grace, the busybox container
/// image, and keel-probe (`@PROBE@`) on the host and in that image. Tests append their
/// own `[[files]]` and declarations ([`declare_container`]).
pub fn busybox_host(hostname: &str, modules: &[&str], grace_secs: u32) -> String {
    let modules = modules.iter().map(|m| format!("{m:?}")).collect::<Vec<_>>().join(", ");
    format!(
        r#"
hostname = "{hostname}"
busybox = "/bin/busybox"

[kernel]
modules = [{modules}]

[control]
virtio_serial = true
shutdown_grace_secs = {grace_secs}

[[images]]
name = "busybox"
busybox = "/bin/busybox"

[[files]]
source = "@PROBE@"
path = "/usr/bin/keel-probe"
mode = 0o755

[[files]]
source = "@PROBE@"
path = "{BUSYBOX_IMAGE}/usr/bin/keel-probe"
mode = 0o755
"#
    )
}

/// Write the declaration `text` (with `@IMAGE@` standing for [`BUSYBOX_IMAGE`]) as
/// `dir/NAME.toml` and add it to `host` as /etc/keel/containers/NAME.toml.
pub fn declare_container(dir: &std::path::Path, host: &mut String, name: &str, text: &str) {
    let file = dir.join(format!("{name}.toml"));
    std::fs::write(&file, text.replace("@IMAGE@", BUSYBOX_IMAGE)).expect("write declaration");
    host.push_str(&format!("\n[[files]]\nsource = \"{}\"\npath = \"/etc/keel/containers/{name}.toml\"\n", file.display()));
}

/// A port nobody listens on right now, on the machine running QEMU (for a hostfwd).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port").local_addr().expect("its address").port()
}

/// A finished command's exit code, stdout and stderr, for an assertion's message.
pub fn output_text(output: &std::process::Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}
