//! Growing /var to fill the disk: when a disk image was written to a larger virtual
//! disk, the `keel-var` partition and its ext4 filesystem are grown, by keel itself.
//!
//! Two steps, both idempotent (each boot checks, and does nothing once done):
//! 1. before /var is mounted, [`grow_partition`] rewrites the GPT (backup table moved to
//!    the new end, last partition extended; the math is [`crate::gpt`]) and tells the
//!    kernel the partition's new size with the BLKPG_RESIZE_PARTITION ioctl;
//! 2. once it is mounted, [`grow_ext4`] resizes the filesystem online with
//!    EXT4_IOC_RESIZE_FS to the partition's size.
//!
//! Geometry decisions ([`ext4_geometry`], [`resize_target`]) are pure and unit-tested.

use crate::gpt::{Gpt, GptError, Growth, PRIMARY_BYTES, SECTOR};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Why /var could not be grown (the boot goes on with the old size).
#[derive(Debug, thiserror::Error)]
pub enum GrowError {
    /// A sysfs or device file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The disk's partition table is unusable.
    #[error("{}: {source}", disk.display())]
    Table {
        /// The whole disk.
        disk: PathBuf,
        /// What is wrong.
        #[source]
        source: GptError,
    },
    /// The kernel refused the new partition size.
    #[error("BLKPG_RESIZE_PARTITION {} partition {number}: {source}", disk.display())]
    Blkpg {
        /// The whole disk.
        disk: PathBuf,
        /// The partition number.
        number: usize,
        /// The errno.
        #[source]
        source: nix::Error,
    },
    /// The superblock is not ext4's.
    #[error("{}: no ext4 superblock", device.display())]
    NotExt4 {
        /// The partition.
        device: PathBuf,
    },
    /// The kernel refused to resize the filesystem.
    #[error("EXT4_IOC_RESIZE_FS on {} to {blocks} blocks: {source}", mount.display())]
    Resize {
        /// The mount point.
        mount: PathBuf,
        /// The requested block count.
        blocks: u64,
        /// The errno.
        #[source]
        source: nix::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> GrowError + '_ {
    move |source| GrowError::Io { path: path.to_path_buf(), source }
}

/// A partition of a whole disk, as sysfs describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionOf {
    /// The whole disk's device node, e.g. `/dev/vda`.
    pub disk: PathBuf,
    /// The disk's name in /sys/class/block, e.g. `vda`.
    pub disk_name: String,
    /// The partition number (1-based).
    pub number: usize,
}

/// The disk a partition device belongs to, or `None` when `name` is a whole disk.
pub fn partition_of(sys_class_block: &Path, dev: &Path, name: &str) -> Option<PartitionOf> {
    let entry = sys_class_block.join(name);
    let number: usize = std::fs::read_to_string(entry.join("partition")).ok()?.trim().parse().ok()?;
    let real = std::fs::canonicalize(&entry).ok()?;
    let disk_name = real.parent()?.file_name()?.to_string_lossy().into_owned();
    Some(PartitionOf { disk: dev.join(&disk_name), disk_name, number })
}

/// Size in bytes of a block device, from its sysfs `size` (512-byte sectors).
pub fn sysfs_size(sys_class_block: &Path, name: &str) -> Result<u64, GrowError> {
    let path = sys_class_block.join(name).join("size");
    let text = std::fs::read_to_string(&path).map_err(io_err(&path))?;
    let sectors: u64 = text.trim().parse().map_err(|_| GrowError::Io {
        path: path.clone(),
        source: io::Error::new(io::ErrorKind::InvalidData, format!("not a number: {text:?}")),
    })?;
    Ok(sectors * SECTOR)
}

/// Grow the GPT partition named `label` (which must be the last on its disk) to the end
/// of `part.disk`, and tell the kernel. `None` when the disk has not grown.
pub fn grow_partition(sys_class_block: &Path, part: &PartitionOf, label: &str) -> Result<Option<Growth>, GrowError> {
    let disk_bytes = sysfs_size(sys_class_block, &part.disk_name)?;
    let disk_sectors = disk_bytes / SECTOR;
    let file = OpenOptions::new().read(true).write(true).open(&part.disk).map_err(io_err(&part.disk))?;
    let mut primary = vec![0u8; PRIMARY_BYTES];
    file.read_exact_at(&mut primary, 0).map_err(io_err(&part.disk))?;
    let table_err = |source| GrowError::Table { disk: part.disk.clone(), source };
    let (mut gpt, _) = Gpt::parse(&primary).map_err(table_err)?;
    let Some(growth) = gpt.grow_last(disk_sectors, label).map_err(table_err)? else {
        return Ok(None);
    };
    if growth.slot + 1 != part.number {
        let message = format!("{label} is partition {} in the table, but the kernel calls it partition {}", growth.slot + 1, part.number);
        return Err(table_err(GptError::Layout(message)));
    }
    let (primary, backup) = gpt.to_bytes(disk_sectors);
    // Backup first: until the primary header is rewritten, the old table stays valid.
    file.write_all_at(&backup, disk_bytes - backup.len() as u64).map_err(io_err(&part.disk))?;
    file.sync_data().map_err(io_err(&part.disk))?;
    file.write_all_at(&primary, 0).map_err(io_err(&part.disk))?;
    file.sync_data().map_err(io_err(&part.disk))?;
    let start = growth.first_lba * SECTOR;
    let length = (growth.new_last + 1 - growth.first_lba) * SECTOR;
    blkpg_resize(&file, part.number, start, length).map_err(|source| GrowError::Blkpg {
        disk: part.disk.clone(),
        number: part.number,
        source,
    })?;
    Ok(Some(growth))
}

/// `struct blkpg_partition` of <linux/blkpg.h>.
#[repr(C)]
struct BlkpgPartition {
    start: i64,
    length: i64,
    pno: libc::c_int,
    devname: [libc::c_char; 64],
    volname: [libc::c_char; 64],
}

/// `struct blkpg_ioctl_arg` of <linux/blkpg.h>.
#[repr(C)]
struct BlkpgIoctlArg {
    op: libc::c_int,
    flags: libc::c_int,
    datalen: libc::c_int,
    data: *mut libc::c_void,
}

const BLKPG: libc::c_ulong = 0x1269; // _IO(0x12, 105)
const BLKPG_RESIZE_PARTITION: libc::c_int = 3;
nix::ioctl_write_ptr_bad!(blkpg_ioctl, BLKPG, BlkpgIoctlArg);
nix::ioctl_write_ptr!(ext4_resize_fs, b'f', 16, u64);

fn blkpg_resize(disk: &File, number: usize, start: u64, length: u64) -> Result<(), nix::Error> {
    let mut partition = BlkpgPartition {
        start: i64::try_from(start).map_err(|_| nix::Error::EOVERFLOW)?,
        length: i64::try_from(length).map_err(|_| nix::Error::EOVERFLOW)?,
        pno: libc::c_int::try_from(number).map_err(|_| nix::Error::EOVERFLOW)?,
        devname: [0; 64],
        volname: [0; 64],
    };
    let arg = BlkpgIoctlArg {
        op: BLKPG_RESIZE_PARTITION,
        flags: 0,
        datalen: std::mem::size_of::<BlkpgPartition>() as libc::c_int,
        data: (&mut partition as *mut BlkpgPartition).cast(),
    };
    // SAFETY: `arg` and the `partition` it points to are valid, initialised, repr(C)
    // structs laid out as <linux/blkpg.h> declares them, alive for the whole call; the
    // kernel only reads them.
    unsafe { blkpg_ioctl(disk.as_raw_fd(), &arg) }.map(drop)
}

/// An ext4 filesystem's block size and block count, from its superblock (the bytes at
/// offset 1024 of the device); `None` when it is not an ext2/3/4 superblock.
pub fn ext4_geometry(superblock: &[u8]) -> Option<(u64, u64)> {
    let field = |at: usize| -> Option<u32> { Some(u32::from_le_bytes(superblock.get(at..at + 4)?.try_into().ok()?)) };
    let magic = u16::from_le_bytes(superblock.get(0x38..0x3a)?.try_into().ok()?);
    if magic != crate::storage::EXT4_MAGIC {
        return None;
    }
    let log = field(0x18)?;
    if log > 6 {
        return None;
    }
    let block_size = 1024u64 << log;
    let incompat_64bit = field(0x60)? & 0x80 != 0;
    let hi = if incompat_64bit { u64::from(field(0x150)?) } else { 0 };
    Some((block_size, (hi << 32) | u64::from(field(0x04)?)))
}

/// The block count to resize to: the whole partition, when that is more than now.
pub fn resize_target(partition_bytes: u64, block_size: u64, blocks: u64) -> Option<u64> {
    let fit = partition_bytes / block_size;
    (fit > blocks).then_some(fit)
}

/// Grow the ext4 filesystem of `device` (mounted on `mount`) to fill the partition.
/// Returns (old, new) sizes in bytes when it grew.
pub fn grow_ext4(sys_class_block: &Path, device: &Path, mount: &Path) -> Result<Option<(u64, u64)>, GrowError> {
    let name = device.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let partition_bytes = sysfs_size(sys_class_block, &name)?;
    let head = crate::storage::read_head(device, crate::storage::HEAD_LEN).map_err(io_err(device))?;
    let superblock = head.get(crate::storage::SUPERBLOCK_OFFSET..).unwrap_or_default();
    let (block_size, blocks) = ext4_geometry(superblock).ok_or_else(|| GrowError::NotExt4 { device: device.to_path_buf() })?;
    let Some(target) = resize_target(partition_bytes, block_size, blocks) else {
        return Ok(None);
    };
    let dir = File::open(mount).map_err(io_err(mount))?;
    // SAFETY: `target` is a live u64 the kernel reads (EXT4_IOC_RESIZE_FS takes a
    // pointer to the new block count); `dir` is an open descriptor on the mount.
    unsafe { ext4_resize_fs(dir.as_raw_fd(), &target) }.map_err(|source| GrowError::Resize {
        mount: mount.to_path_buf(),
        blocks: target,
        source,
    })?;
    Ok(Some((blocks * block_size, target * block_size)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn superblock(log: u32, lo: u32, hi: u32, bit64: bool) -> Vec<u8> {
        let mut sb = vec![0u8; 1024];
        sb[0x38..0x3a].copy_from_slice(&crate::storage::EXT4_MAGIC.to_le_bytes());
        sb[0x18..0x1c].copy_from_slice(&log.to_le_bytes());
        sb[0x04..0x08].copy_from_slice(&lo.to_le_bytes());
        sb[0x150..0x154].copy_from_slice(&hi.to_le_bytes());
        if bit64 {
            sb[0x60] |= 0x80;
        }
        sb
    }

    #[test]
    fn geometry_is_read_from_the_superblock() {
        assert_eq!(ext4_geometry(&superblock(2, 1000, 0, false)), Some((4096, 1000)));
        assert_eq!(ext4_geometry(&superblock(0, 5, 1, true)), Some((1024, (1 << 32) + 5)));
        assert_eq!(ext4_geometry(&superblock(0, 5, 1, false)), Some((1024, 5)), "hi word only with 64bit");
        assert_eq!(ext4_geometry(&[0u8; 1024]), None);
        assert_eq!(ext4_geometry(&superblock(9, 1, 0, false)), None, "absurd block size");
    }

    #[test]
    fn resize_only_grows() {
        assert_eq!(resize_target(8 << 30, 4096, 1 << 20), Some(2 << 20));
        assert_eq!(resize_target(4 << 30, 4096, 1 << 20), None);
        assert_eq!(resize_target((4 << 30) + 4095, 4096, 1 << 20), None, "partial blocks do not count");
    }

    #[test]
    fn a_real_mkfs_superblock_gives_its_geometry() {
        let dir = crate::scratch::TempDir::new("grow");
        let image = dir.0.join("fs.img");
        File::create(&image).unwrap().set_len(64 << 20).unwrap();
        let ok = ["mkfs.ext4", "/usr/sbin/mkfs.ext4", "/sbin/mkfs.ext4"]
            .into_iter()
            .find_map(|p| std::process::Command::new(p).args(["-q", "-F", "-b", "4096"]).arg(&image).status().ok());
        if !ok.is_some_and(|s| s.success()) {
            eprintln!("SKIP: mkfs.ext4 not available");
            return;
        }
        let head = crate::storage::read_head(&image, 2048).unwrap();
        assert_eq!(ext4_geometry(&head[1024..]), Some((4096, 16384)));
    }

    #[test]
    fn partitions_are_told_from_whole_disks() {
        let root = crate::scratch::TempDir::new("partof");
        let devices = root.0.join("devices/vda");
        std::fs::create_dir_all(devices.join("vda4")).unwrap();
        std::fs::write(devices.join("vda4/partition"), "4\n").unwrap();
        let class = root.0.join("class");
        std::fs::create_dir_all(&class).unwrap();
        std::os::unix::fs::symlink(&devices, class.join("vda")).unwrap();
        std::os::unix::fs::symlink(devices.join("vda4"), class.join("vda4")).unwrap();
        let found = partition_of(&class, Path::new("/dev"), "vda4").unwrap();
        assert_eq!(found, PartitionOf { disk: "/dev/vda".into(), disk_name: "vda".into(), number: 4 });
        assert_eq!(partition_of(&class, Path::new("/dev"), "vda"), None);
    }
}
