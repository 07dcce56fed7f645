//! `keel-build disk`: one bootable disk image for cloud VMs (UEFI, GPT).
//!
//! Layout ([`layout`]): an EFI system partition (FAT32) holding the unified kernel image
//! at \EFI\BOOT\BOOTX64.EFI ([`uki`]: EFI stub + kernel + the small boot initramfs of
//! [`crate::boot_initramfs`] + command line with `keel.root=keel-root-a`); `keel-root-a`
//! with the whole OS tree as a read-only erofs; an empty `keel-root-b` slot for updates;
//! `keel-var`, an ext4 for /var that keel grows to fill the disk at boot.
//!
//! Rootless and reproducible: nothing is mounted; every partition is written into one
//! sparse raw file at its offset (mkfs.fat and mkfs.ext4 at an offset, mtools through
//! `image@@offset`, the erofs copied in), the GPT is written by keel-init's `gpt`, and
//! every tool gets the epoch and identifiers derived from it ([`tools`]). qcow2 and vhd
//! are converted from the raw image with qemu-img (the vhd footer's time and UUID are
//! then fixed, [`vhd`]).

pub mod layout;
pub mod pe;
pub mod rootfs;
pub mod tools;
pub mod uki;
pub mod vhd;

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use keel_init::gpt::{GptError, SECTOR};

use crate::build::{kernel_cmdline, plan_image, write_initramfs, BuildError, BuildOptions};
use crate::host::HostSpec;
use crate::image::{fixed, PlanError};
use crate::tree::{Entry, Node, Tree};

/// The default size of a disk image.
pub const DEFAULT_DISK_SIZE: u64 = 4 << 30;
/// Where the unified kernel image goes on the ESP (the removable-media default path).
pub const UKI_PATH: &str = "EFI/BOOT/BOOTX64.EFI";
/// Directories the erofs root needs besides the image's own: mount points of the
/// overlays on /var (see keel-init's `storage::PERSISTENT_TREES`).
const ROOT_EXTRA_DIRS: &[&str] = &["/home", "/opt", "/srv", "/usr/local"];

/// The file format of the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DiskFormat {
    /// A raw (sparse) disk.
    #[default]
    Raw,
    /// QEMU's qcow2.
    Qcow2,
    /// A fixed VHD (Azure, Hyper-V); qemu-img's `vpc`.
    Vhd,
}

impl DiskFormat {
    /// The file extension, also the value of `--format`.
    pub fn name(self) -> &'static str {
        match self {
            DiskFormat::Raw => "raw",
            DiskFormat::Qcow2 => "qcow2",
            DiskFormat::Vhd => "vhd",
        }
    }

    /// The format from a file's first bytes (qcow2 magic) or its name (`.vhd`), for
    /// booting a disk image; raw otherwise.
    pub fn detect(path: &Path) -> DiskFormat {
        let mut magic = [0u8; 4];
        let qcow2 = File::open(path).and_then(|f| f.read_exact_at(&mut magic, 0)).is_ok() && &magic == b"QFI\xfb";
        match (qcow2, path.extension().and_then(|e| e.to_str())) {
            (true, _) => DiskFormat::Qcow2,
            (false, Some("vhd")) => DiskFormat::Vhd,
            _ => DiskFormat::Raw,
        }
    }

    /// QEMU's name for the format.
    pub fn qemu_name(self) -> &'static str {
        match self {
            DiskFormat::Raw => "raw",
            DiskFormat::Qcow2 => "qcow2",
            DiskFormat::Vhd => "vpc",
        }
    }
}

impl FromStr for DiskFormat {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "raw" => Ok(DiskFormat::Raw),
            "qcow2" => Ok(DiskFormat::Qcow2),
            "vhd" => Ok(DiskFormat::Vhd),
            _ => Err(format!("unknown disk format {text:?} (expected raw, qcow2 or vhd)")),
        }
    }
}

/// Why a disk image could not be built.
#[derive(Debug, thiserror::Error)]
pub enum DiskImageError {
    /// Planning the OS tree or gathering its inputs failed.
    #[error(transparent)]
    Build(#[from] BuildError),
    /// The partitions do not fit.
    #[error(transparent)]
    Layout(#[from] GptError),
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A build tool could not be started.
    #[error("cannot run {program}: {source} (install {package})")]
    Spawn {
        /// The program.
        program: &'static str,
        /// Its Debian package.
        package: &'static str,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A build tool failed.
    #[error("`{command}` failed ({status}): {stderr}")]
    ToolFailed {
        /// The command line.
        command: String,
        /// How it ended.
        status: std::process::ExitStatus,
        /// Its stderr.
        stderr: String,
    },
    /// A needed file from a package is missing.
    #[error("{} is missing (install {package})", path.display())]
    Missing {
        /// The file.
        path: PathBuf,
        /// Its Debian package.
        package: &'static str,
    },
    /// The erofs root is larger than its slot.
    #[error("the erofs root is {size} bytes, more than the {limit}-byte root slot")]
    RootTooBig {
        /// Its size.
        size: u64,
        /// The slot's size.
        limit: u64,
    },
    /// objcopy's output is not the PE image expected.
    #[error("{}: {source}", path.display())]
    Pe {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        #[source]
        source: pe::PeError,
    },
    /// qemu-img's VHD has no footer where expected.
    #[error("{}: {source}", path.display())]
    Vhd {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        #[source]
        source: vhd::VhdError,
    },
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> DiskImageError + '_ {
    move |source| DiskImageError::Io { path: path.to_path_buf(), source }
}

/// What a disk image build produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskOutput {
    /// The image file (`DIR/disk.raw`, `disk.qcow2` or `disk.vhd`).
    pub image: PathBuf,
    /// Its virtual size in bytes.
    pub size: u64,
    /// The erofs root's size in bytes.
    pub root_size: u64,
    /// The unified kernel image's size in bytes.
    pub uki_size: u64,
    /// The kernel command line inside the unified kernel image.
    pub cmdline: String,
}

/// The kernel command line of a disk image: the image's, and where its root is.
pub fn disk_cmdline(spec: &HostSpec) -> String {
    format!("{} {}={}", kernel_cmdline(spec), keel_init::sysroot::ROOT_OPTION, layout::ROOT_A_LABEL)
}

/// The erofs root's tree: the image's entries and the overlay mount points.
fn root_entries(entries: Vec<Entry>) -> Result<Vec<Entry>, PlanError> {
    let mut tree = Tree::new();
    for entry in entries {
        tree.insert(entry.path, entry.node)?;
    }
    for dir in ROOT_EXTRA_DIRS {
        if !tree.contains(&fixed(dir)) {
            tree.insert(fixed(dir), Node::Dir { mode: 0o755 })?;
        }
    }
    Ok(tree.into_entries()?)
}

/// Build the disk image of `spec` into `out` as `format`, `size` bytes large.
pub fn build_disk(
    spec: &HostSpec,
    options: &BuildOptions,
    format: DiskFormat,
    size: u64,
    out: &Path,
) -> Result<DiskOutput, DiskImageError> {
    let epoch = options.source_date_epoch;
    let gpt = layout::plan(size, epoch)?;
    let (kernel, entries) = plan_image(spec, options)?;
    let root = root_entries(entries).map_err(BuildError::from)?;
    let work = out.join("disk-work");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).map_err(io_err(&work))?;

    let erofs = work.join("root.erofs");
    rootfs::write_tree(&root, &work.join("root")).map_err(io_err(&work.join("root")))?;
    let uuid = uuid_text(layout::derived_guid(epoch, "erofs").0);
    tools::mkfs_erofs(&erofs, &work.join("root"), epoch, &uuid).run()?;
    let root_size = std::fs::metadata(&erofs).map_err(io_err(&erofs))?.len();
    if root_size > layout::ROOT_SLOT_SIZE {
        return Err(DiskImageError::RootTooBig { size: root_size, limit: layout::ROOT_SLOT_SIZE });
    }

    let initrd = work.join("initrd.img");
    let boot_entries = crate::boot_initramfs::plan(spec, &kernel, options).map_err(BuildError::from)?;
    write_initramfs(&boot_entries, u32::try_from(epoch).unwrap_or(u32::MAX), &initrd)?;
    let cmdline = disk_cmdline(spec);
    let os_release = format!("NAME=keel\nID=keel\nPRETTY_NAME=\"keel ({})\"\n", spec.hostname);
    let uki_file = work.join("BOOTX64.EFI");
    let inputs = uki::UkiInputs { vmlinuz: &kernel.vmlinuz, initrd: &initrd, cmdline: &cmdline, os_release: &os_release };
    uki::build(&inputs, &work, &uki_file, epoch)?;
    let fat_time = std::time::UNIX_EPOCH + std::time::Duration::from_secs(epoch.max(tools::FAT_MIN_EPOCH));
    File::options().write(true).open(&uki_file).and_then(|f| f.set_modified(fat_time)).map_err(io_err(&uki_file))?;
    let uki_size = std::fs::metadata(&uki_file).map_err(io_err(&uki_file))?.len();

    let raw = work.join("disk.raw");
    write_raw(&raw, &gpt, size, &uki_file, &erofs, epoch)?;
    let image = out.join(format!("disk.{}", format.name()));
    convert(&raw, format, &image, epoch)?;
    let _ = std::fs::remove_dir_all(&work);
    Ok(DiskOutput { image, size, root_size, uki_size, cmdline })
}

fn uuid_text(b: [u8; 16]) -> String {
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &hex[..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..])
}

/// The raw image: GPT at both ends, then each partition at its offset.
fn write_raw(raw: &Path, gpt: &keel_init::gpt::Gpt, size: u64, uki_file: &Path, erofs: &Path, epoch: u64) -> Result<(), DiskImageError> {
    let file = OpenOptions::new().read(true).write(true).create(true).truncate(true).open(raw).map_err(io_err(raw))?;
    file.set_len(size).map_err(io_err(raw))?;
    let (primary, backup) = gpt.to_bytes(size / SECTOR);
    file.write_all_at(&primary, 0).map_err(io_err(raw))?;
    file.write_all_at(&backup, size - backup.len() as u64).map_err(io_err(raw))?;
    let part = |name| {
        gpt.find(name).map(|(_, p)| (p.first_lba * SECTOR, p.size_bytes())).ok_or_else(|| GptError::Layout(format!("no {name} partition")))
    };

    let (esp_at, esp_size) = part(layout::ESP_LABEL)?;
    let volume_id = u32::from_le_bytes(layout::derived_guid(epoch, "esp-volume").0[..4].try_into().unwrap_or_default());
    tools::mkfs_fat(raw, esp_at, esp_size, volume_id).run()?;
    tools::mmd(raw, esp_at, &["EFI", "EFI/BOOT"], epoch).run()?;
    tools::mcopy(raw, esp_at, uki_file, UKI_PATH, epoch).run()?;

    let (root_at, _) = part(layout::ROOT_A_LABEL)?;
    let bytes = std::fs::read(erofs).map_err(io_err(erofs))?;
    file.write_all_at(&bytes, root_at).map_err(io_err(raw))?;

    let (var_at, var_size) = part(layout::VAR_LABEL)?;
    let uuid = uuid_text(layout::derived_guid(epoch, "var-uuid").0);
    let seed = uuid_text(layout::derived_guid(epoch, "var-hash-seed").0);
    tools::mkfs_ext4(raw, var_at, var_size, layout::VAR_LABEL, &uuid, &seed, epoch).run()?;
    file.sync_all().map_err(io_err(raw))
}

/// Move or convert the raw image to `image` in `format`.
fn convert(raw: &Path, format: DiskFormat, image: &Path, epoch: u64) -> Result<(), DiskImageError> {
    let temp = image.with_extension(format!("{}.tmp", format.name()));
    let _ = std::fs::remove_file(&temp);
    match format {
        DiskFormat::Raw => std::fs::rename(raw, &temp).map_err(io_err(raw))?,
        DiskFormat::Qcow2 => tools::qemu_img_convert(raw, "qcow2", &[], &temp).run()?,
        DiskFormat::Vhd => {
            tools::qemu_img_convert(raw, "vpc", &["subformat=fixed,force_size=on"], &temp).run()?;
            fix_vhd_footer(&temp, epoch)?;
        }
    }
    std::fs::rename(&temp, image).map_err(io_err(image))
}

fn fix_vhd_footer(path: &Path, epoch: u64) -> Result<(), DiskImageError> {
    let file = OpenOptions::new().read(true).write(true).open(path).map_err(io_err(path))?;
    let len = file.metadata().map_err(io_err(path))?.len();
    let at = len.checked_sub(vhd::FOOTER_LEN as u64).ok_or(DiskImageError::Vhd { path: path.to_path_buf(), source: vhd::VhdError })?;
    let mut footer = [0u8; vhd::FOOTER_LEN];
    file.read_exact_at(&mut footer, at).map_err(io_err(path))?;
    vhd::normalize_footer(&mut footer, epoch, layout::derived_guid(epoch, "vhd").0)
        .map_err(|source| DiskImageError::Vhd { path: path.to_path_buf(), source })?;
    file.write_all_at(&footer, at).map_err(io_err(path))?;
    file.sync_all().map_err(io_err(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_parse_and_detect() {
        assert_eq!("qcow2".parse::<DiskFormat>(), Ok(DiskFormat::Qcow2));
        assert_eq!("vhd".parse::<DiskFormat>().map(DiskFormat::qemu_name), Ok("vpc"));
        assert!("vmdk".parse::<DiskFormat>().unwrap_err().contains("expected raw, qcow2 or vhd"));
        let dir = tempfile::tempdir().unwrap();
        let q = dir.path().join("a.img");
        std::fs::write(&q, b"QFI\xfb\0\0\0\x03").unwrap();
        assert_eq!(DiskFormat::detect(&q), DiskFormat::Qcow2);
        let r = dir.path().join("a.raw");
        std::fs::write(&r, [0u8; 512]).unwrap();
        assert_eq!(DiskFormat::detect(&r), DiskFormat::Raw);
        assert_eq!(DiskFormat::detect(&dir.path().join("x.vhd")), DiskFormat::Vhd);
    }

    #[test]
    fn the_disk_command_line_names_the_root_slot() {
        let spec = HostSpec::parse("hostname = \"h\"\n", Path::new("h.toml")).unwrap();
        assert_eq!(disk_cmdline(&spec), "console=ttyS0 quiet panic=-1 keel.root=keel-root-a");
    }
}
