//! The small initramfs inside a disk image's unified kernel image: keel, the disk and
//! erofs drivers, nothing else. Its only job is the first stage of keel-init's
//! `sysroot`: find the root partition, mount it, switch to it. Everything else (the
//! other modules, busybox, container images, /etc defaults) is in the erofs root.

use keel_init::kmod::{ModuleName, ResolveError};

use crate::build::BuildOptions;
use crate::host::HostSpec;
use crate::image::{add_keel, fixed, inline, keel_config, module_path, modules_list, PlanError, KEEL_CONFIG_PATH, MODULES_LIST_PATH};
use crate::kernel::KernelInfo;
use crate::tree::{Entry, Node, Source, Tree};

/// Drivers for the disks a cloud VM boots from (virtio-blk, virtio-scsi, NVMe) and the
/// root's filesystem; those the kernel has built in are skipped. `crc32c_generic` comes
/// before erofs: erofs needs libcrc32c, whose init fails (ENOENT) without a crc32c
/// algorithm, a soft dependency modules.dep does not order. virtio_console lets a host
/// whose root cannot be mounted still answer on its control port.
pub const BOOT_MODULES: &[&str] =
    &["virtio_pci", "virtio_blk", "virtio_scsi", "sd_mod", "nvme", "crc32c_generic", "erofs", "virtio_console"];

/// Directories of the boot initramfs.
const DIRS: &[&str] = &["/dev", "/etc", "/etc/keel", "/lib", "/lib/modules", "/proc", "/run", "/sys", "/sysroot", "/usr", "/usr/bin"];

/// The boot modules this kernel has as modules.
pub fn boot_modules(kernel: &KernelInfo) -> Vec<ModuleName> {
    BOOT_MODULES
        .iter()
        .map(|name| ModuleName::new(name))
        .filter(|name| kernel.modules_dep.closure(std::slice::from_ref(name)).1.is_empty())
        .collect()
}

/// Every entry of the boot initramfs, sorted, parents first.
pub fn plan(spec: &HostSpec, kernel: &KernelInfo, options: &BuildOptions) -> Result<Vec<Entry>, PlanError> {
    let mut tree = Tree::new();
    for dir in DIRS {
        tree.insert(fixed(dir), Node::Dir { mode: 0o755 })?;
    }
    // The kernel opens /dev/console of the initramfs for PID 1's output.
    tree.insert(fixed("/dev/console"), Node::CharDev { mode: 0o600, major: 5, minor: 1 })?;
    add_keel(&mut tree, options)?;
    // keel's settings, so that a host stuck in the first stage still serves its
    // control port.
    tree.insert(fixed(KEEL_CONFIG_PATH), inline(0o644, keel_config(spec)))?;
    let modules = boot_modules(kernel);
    tree.insert(fixed(MODULES_LIST_PATH), inline(0o644, modules_list(&modules)))?;
    let (files, errors) = kernel.modules_dep.closure(&modules);
    if let Some(ResolveError::BadLine { .. }) = errors.first() {
        return Err(PlanError::UnknownModules { names: modules, release: kernel.release.clone(), modules_dir: kernel.modules_dir.clone() });
    }
    let root = fixed("/lib/modules");
    tree.insert(module_path(&root, &kernel.release, "modules.dep")?, inline(0o644, kernel.modules_dep.render_subset(&files)))?;
    for file in &files {
        let source = Source::Host(kernel.modules_dir.join(file));
        tree.insert(module_path(&root, &kernel.release, file)?, Node::File { mode: Some(0o644), source })?;
    }
    Ok(tree.into_entries()?)
}
