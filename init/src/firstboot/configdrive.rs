//! A config drive as a first-boot source: a block device whose filesystem label is
//! `config-2` (OpenStack; the config is `openstack/latest/user_data`) or `CIDATA`
//! (cloud-init NoCloud; the config is `user-data`), with a vfat or iso9660 filesystem.
//!
//! The search is the same plain scan as the /var data disk's (see `crate::storage`):
//! every entry of /sys/class/block with a non-zero size is read from offset 0 through
//! /dev/NAME and its label is taken from the FAT boot sector ([`vfat_label`]) or the
//! iso9660 primary volume descriptor ([`iso9660_label`]), both pure. Labels are
//! compared case-insensitively, as cloud-init does (`cidata`, `CONFIG-2`). The drive
//! is mounted read-only on [`MOUNT_DIR`], the file is read and the drive is unmounted.
//!
//! The kernel needs `vfat` (+ `fat`, `nls_cp437`, `nls_ascii`: the codepage and
//! iocharset defaults of Debian's kernel) or `isofs`; keel-build puts them in every
//! image (`BASE_MODULES`). A drive on an emulated CD-ROM (`/dev/sr0`) also needs the
//! image to list the CD-ROM driver modules (e.g. `sr_mod`).

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use log::{info, warn};
use nix::mount::{mount, umount2, MntFlags, MsFlags};

/// The label of an OpenStack config drive.
pub const CONFIG_2_LABEL: &str = "config-2";
/// The label of a cloud-init NoCloud drive.
pub const CIDATA_LABEL: &str = "CIDATA";
/// The config on an OpenStack config drive.
pub const CONFIG_2_USER_DATA: &str = "openstack/latest/user_data";
/// The config on a NoCloud drive.
pub const CIDATA_USER_DATA: &str = "user-data";
/// Where the drive is mounted while its config is read.
pub const MOUNT_DIR: &str = "/run/keel/configdrive";
/// Byte offset of the iso9660 primary volume descriptor (sector 16 of 2048 bytes).
pub const ISO9660_PVD_OFFSET: usize = 32768;
/// How much of each device is read: the boot sector and the primary volume descriptor.
pub const HEAD_LEN: usize = ISO9660_PVD_OFFSET + 2048;

/// The filesystem of a config drive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsType {
    /// FAT12/16/32 (mounted as `vfat`).
    Vfat,
    /// ISO 9660 (mounted as `iso9660`).
    Iso9660,
}

impl FsType {
    /// The filesystem type name mount(2) takes.
    pub fn mount_name(self) -> &'static str {
        match self {
            FsType::Vfat => "vfat",
            FsType::Iso9660 => "iso9660",
        }
    }
}

/// Which kind of config drive a label names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// OpenStack `config-2`.
    Openstack,
    /// cloud-init NoCloud `CIDATA`.
    NoCloud,
}

impl Kind {
    /// The kind of drive labelled `label` (case-insensitive), if any.
    pub fn of_label(label: &str) -> Option<Kind> {
        if label.eq_ignore_ascii_case(CONFIG_2_LABEL) {
            Some(Kind::Openstack)
        } else if label.eq_ignore_ascii_case(CIDATA_LABEL) {
            Some(Kind::NoCloud)
        } else {
            None
        }
    }

    /// The config's path on the drive.
    pub fn user_data_path(self) -> &'static str {
        match self {
            Kind::Openstack => CONFIG_2_USER_DATA,
            Kind::NoCloud => CIDATA_USER_DATA,
        }
    }
}

/// A config drive found by the scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigDrive {
    /// The device node, e.g. `/dev/vdb`.
    pub device: PathBuf,
    /// Its filesystem.
    pub fstype: FsType,
    /// The label as written on the drive (e.g. `CIDATA` or `cidata`).
    pub label: String,
    /// What the label says the drive is.
    pub kind: Kind,
}

impl ConfigDrive {
    /// How first boot names this source: `config drive /dev/vdb (CIDATA)`.
    pub fn source_name(&self) -> String {
        format!("config drive {} ({})", self.device.display(), self.label)
    }
}

/// A label field: trailing spaces and NULs removed; `None` when nothing is left.
fn trimmed_label(raw: &[u8]) -> Option<String> {
    let end = raw.iter().rposition(|&b| b != b' ' && b != 0)? + 1;
    Some(String::from_utf8_lossy(&raw[..end]).into_owned())
}

/// The volume label in a FAT boot sector (the first 512 bytes of the device): at 0x2B
/// (FAT12/16) or 0x47 (FAT32), 11 bytes, space-padded, present when the extended boot
/// signature (0x29) is. `None` when the bytes are not a FAT boot sector or the volume
/// has no label (`NO NAME`).
pub fn vfat_label(boot_sector: &[u8]) -> Option<String> {
    if boot_sector.get(510..512)? != [0x55, 0xAA] {
        return None;
    }
    let bytes_per_sector = u16::from_le_bytes([boot_sector[11], boot_sector[12]]);
    if !matches!(bytes_per_sector, 512 | 1024 | 2048 | 4096) || boot_sector[13] == 0 {
        return None;
    }
    // A FAT32 BPB has 0 in the 16-bit sectors-per-FAT field (0x16).
    let fat32 = u16::from_le_bytes([boot_sector[0x16], boot_sector[0x17]]) == 0;
    let (signature_at, label_at) = if fat32 { (0x42, 0x47) } else { (0x26, 0x2B) };
    if boot_sector[signature_at] != 0x29 {
        return None;
    }
    let label = trimmed_label(&boot_sector[label_at..label_at + 11])?;
    (label != "NO NAME").then_some(label)
}

/// The volume identifier of an iso9660 primary volume descriptor (the 2048 bytes at
/// [`ISO9660_PVD_OFFSET`]): type 1, `CD001`, identifier at offset 40, 32 bytes,
/// space-padded. `None` when the bytes are not such a descriptor or the identifier is
/// blank.
pub fn iso9660_label(descriptor: &[u8]) -> Option<String> {
    if descriptor.first() != Some(&1) || descriptor.get(1..6)? != b"CD001" {
        return None;
    }
    trimmed_label(descriptor.get(40..72)?)
}

/// The filesystem and label found in the first [`HEAD_LEN`] bytes of a device.
pub fn identify(head: &[u8]) -> Option<(FsType, String)> {
    if let Some(label) = head.get(ISO9660_PVD_OFFSET..).and_then(iso9660_label) {
        return Some((FsType::Iso9660, label));
    }
    vfat_label(head).map(|label| (FsType::Vfat, label))
}

/// Every config drive among the devices of `sys_class_block` (nodes under `dev`), in
/// name order. Devices of size 0 and devices that cannot be read are skipped.
pub fn find(sys_class_block: &Path, dev: &Path) -> Vec<ConfigDrive> {
    crate::storage::device_heads(sys_class_block, dev, HEAD_LEN)
        .into_iter()
        .filter_map(|(device, head)| {
            let (fstype, label) = identify(&head)?;
            let kind = Kind::of_label(&label)?;
            Some(ConfigDrive { device, fstype, label, kind })
        })
        .collect()
}

/// Why a config drive's config could not be read; each names the drive.
#[derive(Debug, thiserror::Error)]
pub enum ConfigDriveError {
    /// The mount point could not be made.
    #[error("{drive}: create {}: {source}", dir.display())]
    MountPoint {
        /// The drive (`config drive /dev/vdb (config-2)`).
        drive: String,
        /// The mount point.
        dir: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The drive would not mount.
    #[error("{drive}: mount as {fstype}: {source} (is the {fstype} module in the image?)")]
    Mount {
        /// The drive.
        drive: String,
        /// The filesystem tried.
        fstype: &'static str,
        /// The errno.
        #[source]
        source: nix::Error,
    },
    /// The config file on it could not be opened or read (or is too large).
    #[error("{drive}: {op} {file}: {source}")]
    File {
        /// The drive.
        drive: String,
        /// `open` or `read`.
        op: &'static str,
        /// The file, relative to the drive's root.
        file: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

/// The mount flags of a config drive: read-only, no devices, no setuid, no exec.
pub fn mount_flags() -> MsFlags {
    MsFlags::MS_RDONLY | MsFlags::MS_NODEV | MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC
}

/// Mount `drive` read-only on `dir`, read its config and unmount it. `Ok(None)`: the
/// drive holds no config file.
pub fn read_user_data(drive: &ConfigDrive, dir: &Path) -> Result<Option<Vec<u8>>, ConfigDriveError> {
    let name = drive.source_name();
    std::fs::create_dir_all(dir).map_err(|source| ConfigDriveError::MountPoint { drive: name.clone(), dir: dir.to_path_buf(), source })?;
    let fstype = drive.fstype.mount_name();
    // The boot loads filesystem modules when first needed, not before ready.
    if let Err(e) = crate::modload::load_for_fs(fstype) {
        warn!("{name}: {e}");
    }
    mount(Some(drive.device.as_path()), dir, Some(fstype), mount_flags(), None::<&str>).map_err(|source| ConfigDriveError::Mount {
        drive: name.clone(),
        fstype,
        source,
    })?;
    let file = drive.kind.user_data_path();
    let failed = |op, source| ConfigDriveError::File { drive: name.clone(), op, file, source };
    let result = match File::open(dir.join(file)) {
        Ok(mut opened) => {
            crate::fwcfg::read_limited(&mut opened, crate::fwcfg::MAX_CONFIG_BYTES).map(Some).map_err(|source| failed("read", source))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(failed("open", source)),
    };
    if let Err(e) = umount2(dir, MntFlags::empty()) {
        warn!("{name}: unmount {}: {e}; detaching it", dir.display());
        let _ = umount2(dir, MntFlags::MNT_DETACH);
    }
    let _ = std::fs::remove_dir(dir);
    result
}

/// The config on the first config drive of the machine (/sys/class/block, /dev),
/// with its source name. `Ok(None)`: no config drive, or one without a config file.
pub fn read_config() -> Result<Option<(Vec<u8>, String)>, ConfigDriveError> {
    let drives = find(Path::new(crate::storage::SYS_CLASS_BLOCK), Path::new(crate::storage::DEV_DIR));
    let Some(drive) = drives.first() else {
        return Ok(None);
    };
    if drives.len() > 1 {
        let others: Vec<String> = drives[1..].iter().map(ConfigDrive::source_name).collect();
        warn!("several config drives; using {}, ignoring {}", drive.source_name(), others.join(", "));
    }
    match read_user_data(drive, Path::new(MOUNT_DIR))? {
        Some(bytes) => Ok(Some((bytes, drive.source_name()))),
        None => {
            info!("{} has no {}: no config there", drive.source_name(), drive.kind.user_data_path());
            Ok(None)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_drive_and_the_step() {
        let drive = "config drive /dev/vdb (config-2)".to_string();
        let mount = ConfigDriveError::Mount { drive: drive.clone(), fstype: "iso9660", source: nix::Error::ENODEV };
        assert_eq!(
            mount.to_string(),
            "config drive /dev/vdb (config-2): mount as iso9660: ENODEV: No such device (is the iso9660 module in the image?)"
        );
        let read = ConfigDriveError::File { drive, op: "read", file: CONFIG_2_USER_DATA, source: io::Error::from_raw_os_error(5) };
        assert!(read.to_string().starts_with(&format!("config drive /dev/vdb (config-2): read {CONFIG_2_USER_DATA}: ")), "{read}");
    }

    /// A FAT12/16 (or FAT32) boot sector with `label` (11 bytes, space-padded).
    fn fat_boot_sector(fat32: bool, label: &[u8]) -> Vec<u8> {
        let mut bs = vec![0u8; 512];
        bs[0..3].copy_from_slice(&[0xEB, 0x3C, 0x90]);
        bs[3..11].copy_from_slice(b"mkfs.fat");
        bs[11..13].copy_from_slice(&512u16.to_le_bytes());
        bs[13] = 4;
        let (sig, at, fs) = if fat32 { (0x42, 0x47, 0x52) } else { (0x26, 0x2B, 0x36) };
        if !fat32 {
            bs[0x16..0x18].copy_from_slice(&2u16.to_le_bytes());
        }
        bs[sig] = 0x29;
        let mut padded = [b' '; 11];
        padded[..label.len()].copy_from_slice(label);
        bs[at..at + 11].copy_from_slice(&padded);
        bs[fs..fs + 8].copy_from_slice(if fat32 { b"FAT32   " } else { b"FAT16   " });
        bs[510..512].copy_from_slice(&[0x55, 0xAA]);
        bs
    }

    /// An iso9660 primary volume descriptor with `label` (32 bytes, space-padded).
    fn pvd(label: &[u8]) -> Vec<u8> {
        let mut d = vec![0u8; 2048];
        d[0] = 1;
        d[1..6].copy_from_slice(b"CD001");
        d[6] = 1;
        d[8..40].fill(b' ');
        d[40..72].fill(b' ');
        d[40..40 + label.len()].copy_from_slice(label);
        d
    }

    fn iso_head(label: &[u8]) -> Vec<u8> {
        let mut head = vec![0u8; ISO9660_PVD_OFFSET];
        head.extend(pvd(label));
        head
    }

    #[test]
    fn fat_labels_are_read_from_the_boot_sector() {
        assert_eq!(vfat_label(&fat_boot_sector(false, b"CIDATA")).as_deref(), Some("CIDATA"));
        assert_eq!(vfat_label(&fat_boot_sector(true, b"config-2")).as_deref(), Some("config-2"));
        assert_eq!(vfat_label(&fat_boot_sector(false, b"ELEVENCHARS")).as_deref(), Some("ELEVENCHARS"));
        assert_eq!(vfat_label(&fat_boot_sector(false, b"NO NAME")), None, "mkfs.fat's 'no label'");
        assert_eq!(vfat_label(&fat_boot_sector(false, b"")), None);
    }

    #[test]
    fn other_bytes_are_not_fat() {
        let good = fat_boot_sector(false, b"CIDATA");
        assert_eq!(vfat_label(&good[..511]), None, "truncated");
        let mut no_signature = good.clone();
        no_signature[510] = 0;
        assert_eq!(vfat_label(&no_signature), None);
        let mut bad_sector_size = good.clone();
        bad_sector_size[11..13].copy_from_slice(&100u16.to_le_bytes());
        assert_eq!(vfat_label(&bad_sector_size), None);
        let mut no_ext_signature = good.clone();
        no_ext_signature[0x26] = 0x28;
        assert_eq!(vfat_label(&no_ext_signature), None, "0x28: no label field");
        // FAT32's label is at 0x47, not 0x2B.
        let mut fat32 = fat_boot_sector(true, b"CIDATA");
        fat32[0x2B..0x2B + 6].copy_from_slice(b"OTHER!");
        assert_eq!(vfat_label(&fat32).as_deref(), Some("CIDATA"));
        assert_eq!(vfat_label(&[0u8; 512]), None);
    }

    #[test]
    fn iso9660_labels_are_read_from_the_primary_volume_descriptor() {
        assert_eq!(iso9660_label(&pvd(b"config-2")).as_deref(), Some("config-2"));
        assert_eq!(iso9660_label(&pvd(b"cidata")).as_deref(), Some("cidata"));
        assert_eq!(iso9660_label(&pvd(&[b'X'; 32])).as_deref(), Some("X".repeat(32).as_str()));
        assert_eq!(iso9660_label(&pvd(b"")), None, "blank identifier");
        let mut supplementary = pvd(b"config-2");
        supplementary[0] = 2;
        assert_eq!(iso9660_label(&supplementary), None, "not the primary descriptor");
        let mut not_cd = pvd(b"config-2");
        not_cd[1..6].copy_from_slice(b"BEA01");
        assert_eq!(iso9660_label(&not_cd), None);
        assert_eq!(iso9660_label(&pvd(b"config-2")[..50]), None, "truncated");
    }

    #[test]
    fn heads_are_identified() {
        assert_eq!(identify(&iso_head(b"config-2")), Some((FsType::Iso9660, "config-2".into())));
        let mut fat = fat_boot_sector(false, b"CIDATA");
        fat.resize(HEAD_LEN, 0);
        assert_eq!(identify(&fat), Some((FsType::Vfat, "CIDATA".into())));
        assert_eq!(identify(&fat[..512]), Some((FsType::Vfat, "CIDATA".into())), "a device smaller than the PVD offset");
        assert_eq!(identify(&[0u8; HEAD_LEN]), None);
    }

    #[test]
    fn labels_name_the_kind_case_insensitively() {
        assert_eq!(Kind::of_label("CIDATA"), Some(Kind::NoCloud));
        assert_eq!(Kind::of_label("cidata"), Some(Kind::NoCloud));
        assert_eq!(Kind::of_label("config-2"), Some(Kind::Openstack));
        assert_eq!(Kind::of_label("CONFIG-2"), Some(Kind::Openstack));
        assert_eq!(Kind::of_label("keel-var"), None);
        assert_eq!(Kind::NoCloud.user_data_path(), "user-data");
        assert_eq!(Kind::Openstack.user_data_path(), "openstack/latest/user_data");
        assert_eq!(FsType::Vfat.mount_name(), "vfat");
        assert_eq!(FsType::Iso9660.mount_name(), "iso9660");
        assert!(mount_flags().contains(MsFlags::MS_RDONLY));
    }

    use crate::scratch::TempDir;

    #[test]
    fn drives_are_found_among_other_devices() {
        let root = TempDir::new("scan");
        let (sys, dev) = (root.0.join("sys"), root.0.join("dev"));
        std::fs::create_dir_all(&dev).unwrap();
        let devices: &[(&str, &str, Option<Vec<u8>>)] = &[
            ("sr0", "0", Some(iso_head(b"config-2"))),  // size 0: skipped
            ("vda", "2048", Some(vec![0u8; HEAD_LEN])), // nothing recognisable
            ("vdb", "2048", Some(fat_boot_sector(false, b"cidata"))),
            ("vdc", "2048", Some(iso_head(b"config-2"))),
            ("vdd", "2048", Some(fat_boot_sector(true, b"OTHER"))),
            ("vde", "2048", None), // no device node
        ];
        for (name, size, content) in devices {
            std::fs::create_dir_all(sys.join(name)).unwrap();
            std::fs::write(sys.join(name).join("size"), format!("{size}\n")).unwrap();
            if let Some(bytes) = content {
                std::fs::write(dev.join(name), bytes).unwrap();
            }
        }
        let found = find(&sys, &dev);
        assert_eq!(
            found,
            [
                ConfigDrive { device: dev.join("vdb"), fstype: FsType::Vfat, label: "cidata".into(), kind: Kind::NoCloud },
                ConfigDrive { device: dev.join("vdc"), fstype: FsType::Iso9660, label: "config-2".into(), kind: Kind::Openstack },
            ]
        );
        assert_eq!(found[0].source_name(), format!("config drive {} (cidata)", dev.join("vdb").display()));
        assert!(find(&root.0.join("missing"), &dev).is_empty());
    }

    #[test]
    fn a_real_mkfs_vfat_label_is_recognised() {
        // mkfs.vfat (dosfstools) is a build-time tool; skip where it is missing.
        let dir = TempDir::new("mkfs");
        let image = dir.0.join("cidata.img");
        let made = ["mkfs.vfat", "/usr/sbin/mkfs.vfat", "/sbin/mkfs.vfat"]
            .into_iter()
            .find_map(|p| std::process::Command::new(p).args(["-n", "CIDATA", "-C"]).arg(&image).arg("2048").output().ok());
        if !made.is_some_and(|o| o.status.success()) {
            eprintln!("SKIP: mkfs.vfat not available");
            return;
        }
        let head = crate::storage::read_head(&image, HEAD_LEN).unwrap();
        assert_eq!(identify(&head), Some((FsType::Vfat, "CIDATA".into())));
    }
}
