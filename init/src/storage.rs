//! Persistent /var: find the block device whose ext4 label is [`VAR_LABEL`] and mount
//! it on /var.
//!
//! The search is a plain scan: every entry of /sys/class/block (whole disks and
//! partitions) with a non-zero size is read at offset 0 through /dev/NAME, and the ext4
//! superblock at byte 1024 is checked for its magic and label ([`ext4_label`], pure).
//! Without such a disk /var stays on the tmpfs root, so nothing there survives a
//! reboot and every boot is a first boot; keel says so on the console. The
//! filesystem is made at build time (`keel-build disk-var`); keel never formats.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use log::{debug, info, warn};
use nix::mount::{mount, MsFlags};

/// The ext4 label of the filesystem mounted on /var.
pub const VAR_LABEL: &str = "keel-var";
/// Where the data disk is mounted.
pub const VAR_DIR: &str = "/var";
/// The block devices the kernel knows, one entry each (disks and partitions).
pub const SYS_CLASS_BLOCK: &str = "/sys/class/block";
/// Where devtmpfs puts the device nodes.
pub const DEV_DIR: &str = "/dev";
/// Directories keel needs on /var, created when missing (relative to /var).
pub const VAR_SUBDIRS: &[&str] = &["lib/keel", "log/keel"];
/// The console line of a boot without a data disk.
pub const NOT_PERSISTENT_MESSAGE: &str = "keel: /var is not persistent (no disk labelled keel-var): every boot is a first boot";

/// Byte offset of the ext4 (and ext2/3) superblock on the device.
pub const SUPERBLOCK_OFFSET: usize = 1024;
/// How much of each device is read: everything up to the end of the superblock.
pub const HEAD_LEN: usize = 2048;
/// The ext2/3/4 superblock magic (`s_magic`).
pub const EXT4_MAGIC: u16 = 0xEF53;
/// Offset of `s_magic` (little-endian u16) in the superblock.
const MAGIC_AT: usize = 0x38;
/// Offset of `s_volume_name` (16 bytes, NUL-padded) in the superblock.
const LABEL_AT: usize = 0x78;
/// Length of `s_volume_name`.
const LABEL_LEN: usize = 16;

/// The label of an ext2/3/4 filesystem, given its superblock (the bytes from offset
/// 1024 of the device); `None` when the bytes are not such a superblock. An unlabelled
/// filesystem has the label `""`.
pub fn ext4_label(superblock: &[u8]) -> Option<String> {
    let magic = superblock.get(MAGIC_AT..MAGIC_AT + 2)?;
    if u16::from_le_bytes([magic[0], magic[1]]) != EXT4_MAGIC {
        return None;
    }
    let raw = superblock.get(LABEL_AT..LABEL_AT + LABEL_LEN)?;
    let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
    Some(String::from_utf8_lossy(&raw[..end]).into_owned())
}

/// The ext4 label found in the first [`HEAD_LEN`] bytes of a device, if any.
pub fn label_of_head(head: &[u8]) -> Option<String> {
    ext4_label(head.get(SUPERBLOCK_OFFSET..)?)
}

/// Every device node under `dev` whose ext4 label is `label`, in name order, found
/// through the entries of `sys_class_block` (both are parameters so tests can use a
/// directory of fixtures). Devices of size 0 and devices that cannot be read are
/// skipped.
pub fn find_by_label(sys_class_block: &Path, dev: &Path, label: &str) -> Vec<PathBuf> {
    device_heads(sys_class_block, dev, HEAD_LEN)
        .into_iter()
        .filter(|(_, head)| label_of_head(head).as_deref() == Some(label))
        .map(|(node, _)| node)
        .collect()
}

/// The first `len` bytes of every block device listed in `sys_class_block` (node
/// under `dev`), in name order: what finding a filesystem by its label needs. Devices
/// of size 0 (empty drives) and devices that cannot be read are skipped.
pub fn device_heads(sys_class_block: &Path, dev: &Path, len: usize) -> Vec<(PathBuf, Vec<u8>)> {
    let mut names: Vec<String> = match std::fs::read_dir(sys_class_block) {
        Ok(entries) => entries.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect(),
        Err(e) => {
            debug!("cannot list {}: {e}", sys_class_block.display());
            return Vec::new();
        }
    };
    names.sort();
    let mut heads = Vec::new();
    for name in names {
        let size = std::fs::read_to_string(sys_class_block.join(&name).join("size"));
        if size.is_ok_and(|size| size.trim() == "0") {
            continue;
        }
        let node = dev.join(&name);
        match read_head(&node, len) {
            Ok(head) => heads.push((node, head)),
            Err(e) => debug!("cannot read {}: {e}", node.display()),
        }
    }
    heads
}

/// Up to `len` bytes from the start of `path`.
pub fn read_head(path: &Path, len: usize) -> io::Result<Vec<u8>> {
    let mut head = Vec::with_capacity(len);
    File::open(path)?.take(len as u64).read_to_end(&mut head)?;
    Ok(head)
}

/// The device mounted on /var according to a /proc/mounts text, when /var is a
/// mount of its own that is not a tmpfs (that is: /var is persistent).
pub fn persistent_var_device(proc_mounts: &str) -> Option<String> {
    proc_mounts
        .lines()
        .rev()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            Some((fields.next()?, fields.next()?, fields.next()?))
        })
        .find(|(_, target, _)| *target == VAR_DIR)
        .filter(|(_, _, fstype)| !matches!(*fstype, "tmpfs" | "ramfs" | "rootfs"))
        .map(|(source, _, _)| source.to_string())
}

/// Whether /var is on a data disk now (read from /proc/mounts).
pub fn var_is_persistent() -> bool {
    std::fs::read_to_string("/proc/mounts").map(|text| persistent_var_device(&text).is_some()).unwrap_or(false)
}

/// What the storage step did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VarStorage {
    /// The data disk at this device node is mounted on /var.
    Persistent {
        /// The device node, e.g. `/dev/vda`.
        device: PathBuf,
    },
    /// No data disk: /var is part of the tmpfs root.
    Volatile,
}

/// Why /var could not be made persistent (it stays on the tmpfs root).
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// mount(2) refused the data disk.
    #[error("mount {} (label {VAR_LABEL}) on {VAR_DIR} as ext4: {source}; /var stays on the tmpfs root (not persistent)", device.display())]
    Mount {
        /// The device node.
        device: PathBuf,
        /// The errno.
        #[source]
        source: nix::Error,
    },
    /// A tmpfs needed on a read-only root could not be mounted.
    #[error("mount a tmpfs on {target} (the root is read-only): {source}")]
    Tmpfs {
        /// The mount point.
        target: String,
        /// The errno.
        #[source]
        source: nix::Error,
    },
    /// A directory keel needs on /var could not be created.
    #[error("create {}: {source}", path.display())]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

/// The mount flags of the data disk: no device nodes, no setuid, no atime writes.
pub fn var_mount_flags() -> MsFlags {
    MsFlags::MS_NODEV | MsFlags::MS_NOSUID | MsFlags::MS_NOATIME
}

/// Find the data disk and mount it on /var, then create [`VAR_SUBDIRS`] on it. Without
/// a disk, print [`NOT_PERSISTENT_MESSAGE`] and return [`VarStorage::Volatile`]. With
/// several, the first in name order is used and the others are named in a warning.
///
/// On a read-only root (a disk image's erofs), /tmp gets a tmpfs; a `keel-var` GPT
/// partition is first grown to the end of its disk (`grow`), and without a data disk
/// /var becomes a tmpfs so that it and the overlays on /etc, … are still writable.
pub fn mount_var() -> Result<VarStorage, StorageError> {
    let read_only_root = root_is_read_only();
    if read_only_root {
        mount_tmpfs("/tmp", "mode=1777")?;
    }
    let found = find_by_label(Path::new(SYS_CLASS_BLOCK), Path::new(DEV_DIR), VAR_LABEL);
    let Some(device) = found.first().cloned() else {
        crate::logger::marker(NOT_PERSISTENT_MESSAGE);
        if read_only_root {
            mount_tmpfs(VAR_DIR, "mode=0755")?;
            create_subdirs(Path::new(VAR_DIR))?;
            persist_writable_trees(Path::new(VAR_DIR));
        }
        return Ok(VarStorage::Volatile);
    };
    if found.len() > 1 {
        let others: Vec<String> = found[1..].iter().map(|p| p.display().to_string()).collect();
        warn!("several disks are labelled {VAR_LABEL}; using {}, ignoring {}", device.display(), others.join(", "));
    }
    let name = device.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let partition = crate::grow::partition_of(Path::new(SYS_CLASS_BLOCK), Path::new(DEV_DIR), &name);
    if let Some(partition) = &partition {
        grow_partition(partition);
    }
    let _ = std::fs::create_dir_all(VAR_DIR);
    load_fs_modules("ext4");
    mount(Some(&device), VAR_DIR, Some("ext4"), var_mount_flags(), None::<&str>)
        .map_err(|source| StorageError::Mount { device: device.clone(), source })?;
    info!("mounted {} (ext4, label {VAR_LABEL}) on {VAR_DIR}: /var is persistent", device.display());
    if partition.is_some() {
        grow_filesystem(&device);
    }
    create_subdirs(Path::new(VAR_DIR))?;
    persist_writable_trees(Path::new(VAR_DIR));
    Ok(VarStorage::Persistent { device })
}

/// Grow the `keel-var` partition to the end of its disk when the disk grew; a failure
/// is logged and /var keeps its size.
fn grow_partition(partition: &crate::grow::PartitionOf) {
    match crate::grow::grow_partition(Path::new(SYS_CLASS_BLOCK), partition, VAR_LABEL) {
        Ok(Some(g)) => crate::logger::marker(&format!(
            "keel: grew partition {} ({VAR_LABEL}) of {} from {} to {} MiB",
            partition.number,
            partition.disk.display(),
            (g.old_last + 1 - g.first_lba) / 2048,
            (g.new_last + 1 - g.first_lba) / 2048
        )),
        Ok(None) => debug!("{VAR_LABEL}: the partition already fills {}", partition.disk.display()),
        Err(e) => log::error!("growing {VAR_LABEL}: {e}; /var keeps its size"),
    }
}

/// Grow the mounted ext4 on `device` to fill its partition (online).
fn grow_filesystem(device: &Path) {
    match crate::grow::grow_ext4(Path::new(SYS_CLASS_BLOCK), device, Path::new(VAR_DIR)) {
        Ok(Some((old, new))) => {
            crate::logger::marker(&format!("keel: grew the ext4 filesystem on {VAR_DIR} from {} to {} MiB", old >> 20, new >> 20))
        }
        Ok(None) => debug!("the filesystem on {VAR_DIR} already fills {}", device.display()),
        Err(e) => log::error!("growing the filesystem on {VAR_DIR}: {e}; it keeps its size"),
    }
}

/// Whether `/` is mounted read-only (a disk image's erofs root).
pub fn root_is_read_only() -> bool {
    nix::sys::statvfs::statvfs("/").is_ok_and(|s| s.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY))
}

/// A tmpfs on `target` (nosuid, nodev).
fn mount_tmpfs(target: &str, data: &str) -> Result<(), StorageError> {
    mount(Some("tmpfs"), target, Some("tmpfs"), MsFlags::MS_NOSUID | MsFlags::MS_NODEV, Some(data))
        .map_err(|source| StorageError::Tmpfs { target: target.to_string(), source })?;
    info!("mounted a tmpfs on {target} (the root is read-only)");
    Ok(())
}

/// Trees besides /var that the operator (and the first-boot config) may change, kept
/// across reboots by an overlay whose upper layer is on the data disk: the image's
/// files below, the changes on /var/lib/keel/overlay/TREE.
pub const PERSISTENT_TREES: [&str; 6] = ["/etc", "/home", "/root", "/opt", "/srv", "/usr/local"];

/// The boot defers filesystem modules (see `modload::Stage`); load one's now, before
/// its mount. A failure is only logged: the mount then says what is wrong.
fn load_fs_modules(fstype: &str) {
    if let Err(e) = crate::modload::load_for_fs(fstype) {
        warn!("{fstype}: {e}");
    }
}

/// Where the overlay layers of `tree` go on the data disk: (upper, work).
pub fn overlay_dirs(var: &Path, tree: &str) -> (PathBuf, PathBuf) {
    let base = var.join("lib/keel/overlay").join(tree.trim_start_matches('/').replace('/', "_"));
    (base.join("upper"), base.join("work"))
}

/// Mount each of [`PERSISTENT_TREES`] as an overlay with its upper layer on `var`. A
/// tree that fails stays as it is (logged): the host still boots.
pub fn persist_writable_trees(var: &Path) {
    load_fs_modules("overlay");
    for tree in PERSISTENT_TREES {
        let (upper, work) = overlay_dirs(var, tree);
        let result = (|| -> Result<(), String> {
            std::fs::create_dir_all(tree).map_err(|e| format!("create {tree}: {e}"))?;
            for dir in [&upper, &work] {
                std::fs::create_dir_all(dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
            }
            let data = format!("lowerdir={tree},upperdir={},workdir={}", upper.display(), work.display());
            mount(Some("overlay"), tree, Some("overlay"), MsFlags::empty(), Some(data.as_str()))
                .map_err(|e| format!("mount overlay on {tree}: {e}"))
        })();
        match result {
            Ok(()) => info!("{tree} is persistent (changes kept in {})", upper.display()),
            Err(e) => warn!("{tree} stays as in the image: {e}"),
        }
    }
}

/// Create [`VAR_SUBDIRS`] under `var` when missing (mode 0755).
pub fn create_subdirs(var: &Path) -> Result<(), StorageError> {
    for sub in VAR_SUBDIRS {
        let path = var.join(sub);
        std::fs::create_dir_all(&path).map_err(|source| StorageError::CreateDir { path, source })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A superblock with the ext magic and `label`.
    fn superblock(label: &[u8]) -> Vec<u8> {
        let mut sb = vec![0u8; 1024];
        sb[MAGIC_AT..MAGIC_AT + 2].copy_from_slice(&EXT4_MAGIC.to_le_bytes());
        sb[LABEL_AT..LABEL_AT + label.len()].copy_from_slice(label);
        sb
    }

    fn head(label: &[u8]) -> Vec<u8> {
        let mut bytes = vec![0u8; SUPERBLOCK_OFFSET];
        bytes.extend(superblock(label));
        bytes
    }

    #[test]
    fn labels_are_read_from_ext_superblocks() {
        assert_eq!(ext4_label(&superblock(b"keel-var")).as_deref(), Some("keel-var"));
        assert_eq!(ext4_label(&superblock(b"")).as_deref(), Some(""));
        // 16 bytes fill the field with no NUL at the end.
        assert_eq!(ext4_label(&superblock(b"0123456789abcdef")).as_deref(), Some("0123456789abcdef"));
        assert_eq!(label_of_head(&head(b"keel-var")).as_deref(), Some("keel-var"));
    }

    #[test]
    fn other_bytes_have_no_label() {
        assert_eq!(ext4_label(&[0u8; 1024]), None);
        let mut swapped = superblock(b"keel-var");
        swapped[MAGIC_AT..MAGIC_AT + 2].copy_from_slice(&EXT4_MAGIC.to_be_bytes());
        assert_eq!(ext4_label(&swapped), None, "the magic is little-endian");
        assert_eq!(ext4_label(&superblock(b"keel-var")[..LABEL_AT + 4]), None, "truncated");
        assert_eq!(ext4_label(&[]), None);
        assert_eq!(label_of_head(&[0u8; 1000]), None);
        // The superblock at offset 0 (not 1024) is not recognised.
        assert_eq!(label_of_head(&superblock(b"keel-var")), None);
    }

    #[test]
    fn a_real_mkfs_superblock_is_recognised() {
        // mkfs.ext4 is a build-time tool; skip where it is missing.
        let dir = TempDir::new("mkfs");
        let image = dir.0.join("disk.img");
        File::create(&image).unwrap().set_len(16 << 20).unwrap();
        let mkfs = ["mkfs.ext4", "/usr/sbin/mkfs.ext4", "/sbin/mkfs.ext4"]
            .into_iter()
            .find_map(|p| std::process::Command::new(p).args(["-q", "-F", "-L", VAR_LABEL]).arg(&image).status().ok());
        match mkfs {
            Some(status) if status.success() => {}
            _ => {
                eprintln!("SKIP: mkfs.ext4 not available");
                return;
            }
        }
        assert_eq!(label_of_head(&read_head(&image, HEAD_LEN).unwrap()).as_deref(), Some(VAR_LABEL));
    }

    use crate::scratch::TempDir;

    #[test]
    fn the_labelled_device_is_found_among_others() {
        let root = TempDir::new("scan");
        let (sys, dev) = (root.0.join("sys"), root.0.join("dev"));
        std::fs::create_dir_all(&dev).unwrap();
        let devices: &[(&str, &str, Option<Vec<u8>>)] = &[
            ("vda", "1048576", Some(vec![0u8; 4096])), // a disk with a partition table
            ("vda1", "1000", Some(head(b"keel-var"))), // the data partition
            ("vdb", "2048", Some(head(b"other"))),     // ext4, another label
            ("vdc", "0", Some(head(b"keel-var"))),     // size 0: skipped, never opened
            ("vdd", "2048", None),                     // no device node
            ("vde", "2048", Some(vec![1u8; 100])),     // short read
            ("vdf", "2048", Some(head(b"keel-var"))),  // a second match
        ];
        for (name, size, content) in devices {
            std::fs::create_dir_all(sys.join(name)).unwrap();
            std::fs::write(sys.join(name).join("size"), format!("{size}\n")).unwrap();
            if let Some(bytes) = content {
                std::fs::write(dev.join(name), bytes).unwrap();
            }
        }
        assert_eq!(find_by_label(&sys, &dev, VAR_LABEL), [dev.join("vda1"), dev.join("vdf")]);
        assert_eq!(find_by_label(&sys, &dev, "other"), [dev.join("vdb")]);
        assert!(find_by_label(&sys, &dev, "none").is_empty());
        assert!(find_by_label(&root.0.join("missing"), &dev, VAR_LABEL).is_empty());
    }

    #[test]
    fn persistence_is_read_from_proc_mounts() {
        let tmpfs_root = "none / tmpfs rw 0 0\nproc /proc proc rw 0 0\n";
        assert_eq!(persistent_var_device(tmpfs_root), None);
        let disk = format!("{tmpfs_root}/dev/vda /var ext4 rw,nosuid,nodev,noatime 0 0\n");
        assert_eq!(persistent_var_device(&disk).as_deref(), Some("/dev/vda"));
        let shadowed = format!("{disk}tmpfs /var tmpfs rw 0 0\n");
        assert_eq!(persistent_var_device(&shadowed), None, "the last mount on /var counts");
        assert_eq!(persistent_var_device("/dev/vda /var/lib ext4 rw 0 0\n"), None);
    }

    #[test]
    fn keel_directories_are_created_on_var() {
        let var = TempDir::new("subdirs");
        create_subdirs(&var.0).unwrap();
        create_subdirs(&var.0).unwrap();
        assert!(var.0.join("lib/keel").is_dir());
        assert!(var.0.join("log/keel").is_dir());
    }

    #[test]
    fn the_data_disk_is_mounted_without_devices_or_setuid() {
        let flags = var_mount_flags();
        assert!(flags.contains(MsFlags::MS_NODEV | MsFlags::MS_NOSUID));
        assert!(!flags.contains(MsFlags::MS_NOEXEC), "containers may run from /var");
        assert!(!flags.contains(MsFlags::MS_RDONLY));
    }
}
