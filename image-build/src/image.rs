//! What the initramfs of a host contains: a pure plan from the spec and the facts
//! gathered about the build host (kernel, modules, busybox applets).
//!
//! The layout is a contract with the other crates: keel finds itself at
//! /usr/bin/keel, its settings at /etc/keel/keel.toml, the modules to load in
//! /etc/keel/modules and their files under /lib/modules/<release>.

use std::collections::BTreeSet;

use keel_init::kmod::{ModuleName, ResolveError};

use crate::build::BuildOptions;
use crate::host::{HostSpec, ImageSpec};
use crate::kernel::KernelInfo;
use crate::names::{ImagePath, NameError};
use crate::tree::{Entry, Node, Source, Tree, TreeError};
use std::path::Path;

/// Where keel is installed in the image.
pub const KEEL_PATH: &str = "/usr/bin/keel";
/// The virtio-serial port name the control protocol is served on.
pub const CONTROL_PORT: &str = "org.keel.control";
/// keel's own settings file in the image.
pub const KEEL_CONFIG_PATH: &str = "/etc/keel/keel.toml";
/// The list of modules keel loads at boot.
pub const MODULES_LIST_PATH: &str = "/etc/keel/modules";

/// Directories every image has, with their modes.
const DIRS: &[(&str, u32)] = &[
    ("/bin", 0o755),
    ("/dev", 0o755),
    ("/etc", 0o755),
    ("/etc/keel", 0o755),
    ("/etc/keel/containers", 0o755),
    ("/lib", 0o755),
    ("/lib/modules", 0o755),
    ("/proc", 0o755),
    ("/root", 0o700),
    ("/run", 0o755),
    ("/sbin", 0o755),
    ("/sys", 0o755),
    ("/tmp", 0o1777),
    ("/usr", 0o755),
    ("/usr/bin", 0o755),
    ("/var", 0o755),
];

/// Why the image cannot be planned.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// Requested modules are not modules of this kernel.
    #[error(
        "unknown kernel module(s) {}: not in {}/modules.dep of kernel {release} (is the name right? built-in drivers need no loading)",
        join_names(names), modules_dir.display()
    )]
    UnknownModules {
        /// The names that were not found.
        names: Vec<ModuleName>,
        /// The kernel release.
        release: String,
        /// The module tree searched.
        modules_dir: std::path::PathBuf,
    },
    /// modules.dep names a file that cannot be placed in the image.
    #[error("modules.dep of kernel {release}: module file {file:?}: {source}")]
    ModulePath {
        /// The kernel release.
        release: String,
        /// The path as modules.dep lists it.
        file: String,
        /// Why it is unusable.
        #[source]
        source: NameError,
    },
    /// A busybox applet name does not make a path.
    #[error("busybox applet {name:?}: {source}")]
    Applet {
        /// The applet name.
        name: String,
        /// Why it is unusable.
        #[source]
        source: NameError,
    },
    /// Entries collide or lie below a non-directory.
    #[error(transparent)]
    Tree(#[from] TreeError),
}

fn join_names(names: &[ModuleName]) -> String {
    names.iter().map(ModuleName::as_str).collect::<Vec<_>>().join(", ")
}

/// Every entry of the initramfs for `spec`, sorted by path, parents first.
///
/// `applets` is the busybox applet list (empty when the spec has no busybox);
/// `image_applets` holds the applets of each `[[images]]` entry's busybox, in order.
pub fn plan(
    spec: &HostSpec,
    kernel: &KernelInfo,
    applets: &[String],
    image_applets: &[Vec<String>],
    admin: &crate::admin::AdminFiles,
    options: &BuildOptions,
) -> Result<Vec<Entry>, PlanError> {
    let mut tree = Tree::new();
    add_base_layout(&mut tree, spec, kernel)?;
    add_keel(&mut tree, options)?;
    add_modules(&mut tree, spec, kernel)?;
    add_user_entries(&mut tree, spec)?;
    add_busybox(&mut tree, spec, applets)?;
    for (image, applets) in spec.images.iter().zip(image_applets) {
        add_image(&mut tree, image, applets, admin)?;
    }
    Ok(tree.into_entries()?)
}

/// A path known to be valid: the constants of this module.
pub(crate) fn fixed(path: &str) -> ImagePath {
    ImagePath::try_from(path).unwrap_or_else(|err| panic!("built-in image path: {err}"))
}

pub(crate) fn inline(mode: u32, text: String) -> Node {
    Node::File { mode: Some(mode), source: Source::Inline(text.into_bytes()) }
}

fn symlink(target: &str) -> Node {
    Node::Symlink { target: target.to_string() }
}

fn add_base_layout(tree: &mut Tree, spec: &HostSpec, kernel: &KernelInfo) -> Result<(), TreeError> {
    for (path, mode) in DIRS {
        tree.insert(fixed(path), Node::Dir { mode: *mode })?;
    }
    tree.insert(fixed("/dev/console"), Node::CharDev { mode: 0o600, major: 5, minor: 1 })?;
    tree.insert(fixed("/dev/null"), Node::CharDev { mode: 0o666, major: 1, minor: 3 })?;
    tree.insert(fixed("/etc/hostname"), inline(0o644, format!("{}\n", spec.hostname)))?;
    let with_admin = spec.images.iter().any(|image| image.admin);
    let (passwd, group) = crate::admin::host_accounts(with_admin);
    if with_admin {
        // The admin container binds the host's /home, which must exist without users too.
        tree.insert(fixed("/home"), Node::Dir { mode: 0o755 })?;
    }
    tree.insert(fixed("/etc/passwd"), inline(0o644, passwd))?;
    tree.insert(fixed("/etc/group"), inline(0o644, group))?;
    tree.insert(fixed(KEEL_CONFIG_PATH), inline(0o644, keel_config(spec)))?;
    tree.insert(fixed(MODULES_LIST_PATH), inline(0o644, modules_list(&image_modules(spec, kernel))))?;
    Ok(())
}

pub(crate) fn add_keel(tree: &mut Tree, options: &BuildOptions) -> Result<(), TreeError> {
    let keel = Node::File { mode: Some(0o755), source: Source::Host(options.keel_binary.clone()) };
    tree.insert(fixed(KEEL_PATH), keel)?;
    tree.insert(fixed("/init"), symlink(KEEL_PATH))?;
    tree.insert(fixed("/sbin/init"), symlink(KEEL_PATH))?;
    tree.insert(fixed("/usr/bin/keelctl"), symlink("keel"))?;
    if let Some(bundle) = &options.ca_bundle {
        tree.insert(fixed("/etc/ssl"), Node::Dir { mode: 0o755 })?;
        tree.insert(fixed("/etc/ssl/certs"), Node::Dir { mode: 0o755 })?;
        let file = Node::File { mode: Some(0o644), source: Source::Host(bundle.clone()) };
        tree.insert(fixed("/etc/ssl/certs/ca-certificates.crt"), file)?;
    }
    Ok(())
}

/// The text of /etc/keel/keel.toml.
pub fn keel_config(spec: &HostSpec) -> String {
    let mut text = String::new();
    if spec.control.virtio_serial {
        text.push_str(&format!("control_port = \"{CONTROL_PORT}\"\n"));
    }
    text.push_str(&format!("shutdown_grace_secs = {}\n", spec.control.shutdown_grace_secs));
    if let Some(secs) = spec.control.watchdog_secs {
        text.push_str(&format!("watchdog_secs = {secs}\n"));
    }
    if let Some(reserved) = &spec.reserved {
        text.push_str(&format!("\n[reserved]\nmemory = \"{}\"\npids = {}\n", reserved.memory, reserved.pids));
    }
    text
}

/// Modules every keel image loads, for what keel itself does: overlay roots for
/// containers, bridges and veth pairs for their networks, and the nf_tables pieces of
/// keel's firewall table (NAT chains, masquerade, DNAT, conntrack state, fib), ext4
/// for the data disk mounted on /var, i6300esb for QEMU's hardware watchdog (which
/// PID 1 arms and pets), and vfat (with the nls tables of the kernel's
/// default codepage 437 and iocharset ascii) and isofs for a first-boot config drive
/// (a few small modules: they do not slow the boot noticeably).
/// `crc32c_generic` comes first: nf_tables needs libcrc32c, and ext4 and jbd2 need the
/// crc32c algorithm for metadata checksums, but only as a soft dependency
/// (modules.softdep), which modules.dep does not order.
pub const BASE_MODULES: &[&str] = &[
    "overlay",
    "bridge",
    "veth",
    "crc32c_generic",
    "ext4",
    "fat",
    "vfat",
    "nls_cp437",
    "nls_ascii",
    "isofs",
    "nf_tables",
    "nft_chain_nat",
    "nft_nat",
    "nft_masq",
    "nft_ct",
    "nft_fib_inet",
    "i6300esb",
];

/// The image's modules: those of the base set the kernel has as modules (a built-in
/// one is not in modules.dep and needs no loading), then the host's own list.
pub fn image_modules(spec: &HostSpec, kernel: &KernelInfo) -> Vec<ModuleName> {
    let base = BASE_MODULES
        .iter()
        .map(|name| ModuleName::new(name))
        .filter(|name| kernel.modules_dep.closure(std::slice::from_ref(name)).1.is_empty());
    base.chain(spec.kernel.modules.iter().cloned()).collect()
}

/// The text of /etc/keel/modules: one canonical name per line, in the given order, once.
pub fn modules_list(modules: &[ModuleName]) -> String {
    let mut seen = BTreeSet::new();
    let mut text = String::new();
    for name in modules.iter().filter(|name| seen.insert(*name)) {
        text.push_str(name.as_str());
        text.push('\n');
    }
    text
}

fn add_modules(tree: &mut Tree, spec: &HostSpec, kernel: &KernelInfo) -> Result<(), PlanError> {
    let (files, errors) = kernel.modules_dep.closure(&image_modules(spec, kernel));
    let names: Vec<ModuleName> = errors
        .into_iter()
        .filter_map(|err| match err {
            ResolveError::NotFound(name) => Some(name),
            ResolveError::BadLine { .. } => None,
        })
        .collect();
    if !names.is_empty() {
        return Err(PlanError::UnknownModules { names, release: kernel.release.clone(), modules_dir: kernel.modules_dir.clone() });
    }
    let root = fixed("/lib/modules");
    let dep = inline(0o644, kernel.modules_dep.render_subset(&files));
    tree.insert(module_path(&root, &kernel.release, "modules.dep")?, dep)?;
    for file in &files {
        let path = module_path(&root, &kernel.release, file)?;
        let source = Source::Host(kernel.modules_dir.join(file));
        tree.insert(path, Node::File { mode: Some(0o644), source })?;
    }
    Ok(())
}

/// `/lib/modules/<release>/<file>` in the image.
pub(crate) fn module_path(root: &ImagePath, release: &str, file: &str) -> Result<ImagePath, PlanError> {
    root.join(&format!("{release}/{file}")).map_err(|source| PlanError::ModulePath {
        release: release.to_string(),
        file: file.to_string(),
        source,
    })
}

fn add_user_entries(tree: &mut Tree, spec: &HostSpec) -> Result<(), TreeError> {
    for file in &spec.files {
        let node = Node::File { mode: file.mode.map(|mode| mode.bits()), source: Source::Host(file.source.clone()) };
        tree.insert(file.path.clone(), node)?;
    }
    for link in &spec.symlinks {
        tree.insert(link.path.clone(), symlink(link.target.as_str()))?;
    }
    Ok(())
}

/// Where `[[images]]` root filesystems go in the host image.
pub const IMAGES_DIR: &str = "/usr/share/keel/images";

/// Directories every container root filesystem has (mount points included).
const IMAGE_DIRS: &[(&str, u32)] = &[
    ("bin", 0o755),
    ("dev", 0o755),
    ("etc", 0o755),
    ("proc", 0o755),
    ("root", 0o700),
    ("run", 0o755),
    ("sys", 0o755),
    ("tmp", 0o1777),
    ("usr", 0o755),
    ("usr/bin", 0o755),
    ("var", 0o755),
];

/// A container root filesystem at IMAGES_DIR/NAME, made of a static busybox.
fn add_image(tree: &mut Tree, image: &ImageSpec, applets: &[String], admin: &crate::admin::AdminFiles) -> Result<(), PlanError> {
    let (busybox, archive) = (&image.busybox, &image.oci_archive);
    if let (None, Some(archive)) = (busybox, archive) {
        let path = fixed(IMAGES_DIR)
            .join(&format!("{}.tar", image.name.as_str()))
            .map_err(|source| PlanError::Applet { name: image.name.to_string(), source })?;
        tree.insert(path, Node::File { mode: Some(0o644), source: Source::Host(archive.clone()) })?;
        return Ok(());
    }
    let Some(busybox) = busybox else { return Ok(()) };
    let root = fixed(IMAGES_DIR).join(image.name.as_str()).map_err(|source| PlanError::Applet { name: image.name.to_string(), source })?;
    let at = |path: &str| root.join(path).map_err(|source| PlanError::Applet { name: path.to_string(), source });
    tree.insert(root.clone(), Node::Dir { mode: 0o755 })?;
    for (path, mode) in IMAGE_DIRS {
        tree.insert(at(path)?, Node::Dir { mode: *mode })?;
    }
    if image.admin {
        crate::admin::add_admin(tree, &root, admin)?;
    } else {
        tree.insert(at("etc/passwd")?, inline(0o644, "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n".into()))?;
        tree.insert(at("etc/group")?, inline(0o644, "root:x:0:\nnogroup:x:65534:\n".into()))?;
    }
    install_busybox(tree, root.as_str(), busybox, applets)
}

/// busybox at /bin/busybox and a symlink per applet, where nothing else is already.
fn add_busybox(tree: &mut Tree, spec: &HostSpec, applets: &[String]) -> Result<(), PlanError> {
    let Some(busybox) = &spec.busybox else {
        return Ok(());
    };
    install_busybox(tree, "", busybox, applets)
}

/// `ROOT/bin/busybox` from `busybox` on the build host, and `ROOT/bin/APPLET` links
/// (`root` is "" for the host itself).
fn install_busybox(tree: &mut Tree, root: &str, busybox: &Path, applets: &[String]) -> Result<(), PlanError> {
    let binary = Node::File { mode: Some(0o755), source: Source::Host(busybox.to_path_buf()) };
    let bin = fixed(&format!("{root}/bin"));
    let path = bin.join("busybox").map_err(|source| PlanError::Applet { name: "busybox".into(), source })?;
    tree.insert(path, binary)?;
    for name in applets {
        let path = bin.join(name).map_err(|source| PlanError::Applet { name: name.clone(), source })?;
        if path.parent().as_ref() != Some(&bin) {
            let source = NameError::ImagePath { value: path.to_string(), reason: "not directly in /bin" };
            return Err(PlanError::Applet { name: name.clone(), source });
        }
        if !tree.contains(&path) {
            tree.insert(path, symlink("busybox"))?;
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "image_tests.rs"]
mod tests;
