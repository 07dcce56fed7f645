//! keel-build: turns a host.toml into a bootable keel image and boots it in QEMU.
//!
//! A build gathers facts about the build host (the kernel, its modules.dep, the
//! busybox applets), plans the initramfs as a pure function of the spec and those
//! facts ([`image::plan`]), and writes three files atomically: `vmlinuz`, a
//! deterministic gzip'd newc `initramfs.img` and `cmdline`. `keel-build run` then
//! boots them in QEMU and powers the guest down cleanly on Ctrl-C.
//!
//! Current limitations:
//! - Two kinds of image: kernel + initramfs (`build`), and a UEFI/GPT disk image
//!   ([`diskimage`]) with a unified kernel image, a read-only erofs root and an ext4
//!   /var. The data disk for an initramfs image's persistent /var ([`disk`]) is an
//!   empty ext4 filesystem, made with e2fsprogs' mkfs.ext4.
//! - Disk images carry the image's module list, not every module of the kernel.
//! - The kernel release is taken from the kernel's file name (`vmlinuz-RELEASE`) or
//!   the modules directory name, not read from the kernel image.
//! - Module files are shipped as they are on the build host (compressed or not); the
//!   guest kernel must be able to load that form.
//! - x86_64 QEMU only (`-machine q35`).

#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod admin;
pub mod atomic;
pub mod boot_initramfs;
pub mod build;
pub mod busybox;
pub mod cpio;
pub mod declarations;
pub mod disk;
pub mod diskimage;
pub mod host;
pub mod image;
pub mod initramfs;
pub mod kernel;
pub mod names;
pub mod qemu;
pub mod qmp;
pub mod run;
pub mod serial_mux;
pub mod shutdown;
pub mod tree;

pub use build::{build, BuildError, BuildOptions, BuildOutput};
pub use host::{HostError, HostSpec};
