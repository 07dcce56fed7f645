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
