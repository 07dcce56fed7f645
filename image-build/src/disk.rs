//! The data disk that makes a keel host's /var persistent.
//!
//! A data disk is a raw, sparse file holding one ext4 filesystem (no partition
//! table) labelled [`VAR_LABEL`]; keel finds it by that label at boot and mounts it on
//! /var. It is made with `mkfs.ext4` from e2fsprogs at build time (the product never
//! runs mkfs). With a `SOURCE_DATE_EPOCH`, the filesystem UUID, the directory hash seed
//! and every timestamp are derived from it, so the same epoch and size give the same
//! bytes.

use std::fs::OpenOptions;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

/// The ext4 label keel looks for to mount /var (the same as keel-init's `storage::VAR_LABEL`).
pub const VAR_LABEL: &str = keel_init::storage::VAR_LABEL;
/// The size of a data disk when none is asked for: 512 MiB.
pub const DEFAULT_VAR_SIZE: u64 = 512 * MIB;
/// The smallest data disk accepted: ext4 with a journal needs a few MiB.
pub const MIN_VAR_SIZE: u64 = 16 * MIB;
/// The mkfs program (from e2fsprogs).
pub const MKFS: &str = "mkfs.ext4";

const MIB: u64 = 1024 * 1024;
/// Where mkfs.ext4 is looked for besides `$PATH` (/sbin is often not on a user's PATH).
const MKFS_DIRS: &[&str] = &["/usr/sbin", "/sbin"];

/// Why a data disk could not be made.
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    /// A size was not understood.
    #[error("invalid disk size {value:?}: {reason} (expected a number of bytes with an optional K, M, G or T suffix, e.g. 512M)")]
    Size {
        /// The rejected value.
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The label does not fit an ext4 superblock.
    #[error("invalid ext4 label {label:?}: at most 16 bytes, no NUL")]
    Label {
        /// The rejected label.
        label: String,
    },
    /// The image file could not be created or sized.
    #[error("disk image {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// mkfs.ext4 could not be started.
    #[error("cannot run {MKFS}: {source} (install e2fsprogs)")]
    MkfsSpawn {
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// mkfs.ext4 failed.
    #[error("{MKFS} {} failed ({status}): {stderr}", path.display())]
    MkfsFailed {
        /// The image file.
        path: PathBuf,
        /// How mkfs ended.
        status: std::process::ExitStatus,
        /// What it printed on stderr.
        stderr: String,
    },
}

/// How a data disk is made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VarDisk {
    /// Size of the image file in bytes (a multiple of 1 MiB).
    pub size: u64,
    /// The ext4 label.
    pub label: String,
    /// `SOURCE_DATE_EPOCH`: when set, the disk is reproducible from it and the size.
    pub source_date_epoch: Option<u64>,
}

impl Default for VarDisk {
    fn default() -> Self {
        VarDisk { size: DEFAULT_VAR_SIZE, label: VAR_LABEL.to_string(), source_date_epoch: None }
    }
}

impl VarDisk {
    /// The default disk (512 MiB, label `keel-var`) with the epoch of the environment's
    /// `SOURCE_DATE_EPOCH` when it is set and a number.
    pub fn from_env() -> VarDisk {
        let epoch = std::env::var("SOURCE_DATE_EPOCH").ok().and_then(|value| value.trim().parse().ok());
        VarDisk { source_date_epoch: epoch, ..VarDisk::default() }
    }

    /// The mkfs.ext4 arguments that format `path` (pure).
    pub fn mkfs_args(&self, path: &Path) -> Vec<String> {
        let mut args: Vec<String> = ["-q", "-F", "-L", &self.label].iter().map(|s| s.to_string()).collect();
        let mut extended = "root_owner=0:0".to_string();
        if let Some(epoch) = self.source_date_epoch {
            args.push("-U".into());
            args.push(self.derived_uuid(epoch, "uuid"));
            extended.push_str(&format!(",hash_seed={}", self.derived_uuid(epoch, "hash_seed")));
        }
        args.push("-E".into());
        args.push(extended);
        args.push(path.to_string_lossy().into_owned());
        args
    }

    /// The environment mkfs.ext4 runs with: a fixed clock when the disk is reproducible.
    pub fn mkfs_env(&self) -> Vec<(&'static str, String)> {
        match self.source_date_epoch {
            Some(epoch) => vec![("E2FSPROGS_FAKE_TIME", epoch.to_string())],
            None => Vec::new(),
        }
    }

    /// A version-4-shaped UUID derived from the epoch, size, label and purpose.
    fn derived_uuid(&self, epoch: u64, purpose: &str) -> String {
        let digest =
            Sha256::new().chain_update(format!("keel-build var disk\0{purpose}\0{}\0{}\0{epoch}", self.label, self.size)).finalize();
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&digest[..16]);
        bytes[6] = (bytes[6] & 0x0f) | 0x40;
        bytes[8] = (bytes[8] & 0x3f) | 0x80;
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        format!("{}-{}-{}-{}-{}", &hex[..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..])
    }

    /// Create the disk at `path`: a sparse file of `size` bytes formatted ext4. The file
    /// appears whole or not at all (it is made under a temporary name and renamed);
    /// an existing file at `path` is replaced.
    pub fn create(&self, path: &Path) -> Result<(), DiskError> {
        check_size(self.size, &self.size.to_string())?;
        if self.label.len() > 16 || self.label.contains('\0') {
            return Err(DiskError::Label { label: self.label.clone() });
        }
        let io_error = |source| DiskError::Io { path: path.to_path_buf(), source };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io_error)?;
        }
        let name = path.file_name().ok_or_else(|| io_error(io::Error::new(io::ErrorKind::InvalidInput, "no file name")))?;
        let mut temp_name = std::ffi::OsString::from(".");
        temp_name.push(name);
        temp_name.push(format!(".tmp{}", std::process::id()));
        let temp = path.with_file_name(temp_name);
        let result = self.format(&temp).and_then(|()| std::fs::rename(&temp, path).map_err(io_error));
        if result.is_err() {
            let _ = std::fs::remove_file(&temp);
        }
        result
    }

    fn format(&self, temp: &Path) -> Result<(), DiskError> {
        let io_error = |source| DiskError::Io { path: temp.to_path_buf(), source };
        let file = OpenOptions::new().write(true).create(true).truncate(true).open(temp).map_err(io_error)?;
        file.set_len(self.size).map_err(io_error)?;
        drop(file);
        let mut command = Command::new(mkfs_program());
        command.args(self.mkfs_args(temp));
        command.envs(self.mkfs_env());
        let output = command.output().map_err(|source| DiskError::MkfsSpawn { source })?;
        if !output.status.success() {
            return Err(DiskError::MkfsFailed {
                path: temp.to_path_buf(),
                status: output.status,
                stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
            });
        }
        std::fs::File::open(temp).and_then(|f| f.sync_all()).map_err(io_error)
    }

    /// Create the disk at `path` unless a file is there already; `true` when created.
    pub fn ensure(&self, path: &Path) -> Result<bool, DiskError> {
        match std::fs::symlink_metadata(path) {
            Ok(_) => Ok(false),
            Err(e) if e.kind() == io::ErrorKind::NotFound => self.create(path).map(|()| true),
            Err(source) => Err(DiskError::Io { path: path.to_path_buf(), source }),
        }
    }
}

/// `mkfs.ext4` from `$PATH`, else from /usr/sbin or /sbin.
fn mkfs_program() -> PathBuf {
    let on_path = std::env::var_os("PATH").map(|path| std::env::split_paths(&path).any(|dir| dir.join(MKFS).is_file())).unwrap_or(false);
    if on_path {
        return PathBuf::from(MKFS);
    }
    MKFS_DIRS.iter().map(|dir| Path::new(dir).join(MKFS)).find(|p| p.is_file()).unwrap_or_else(|| PathBuf::from(MKFS))
}

fn check_size(size: u64, text: &str) -> Result<u64, DiskError> {
    let err = |reason| DiskError::Size { value: text.to_string(), reason };
    if size < MIN_VAR_SIZE {
        return Err(err("a data disk needs at least 16 MiB"));
    }
    if !size.is_multiple_of(MIB) {
        return Err(err("the size must be a whole number of MiB"));
    }
    Ok(size)
}

/// Parse a disk size: bytes, or a number with a binary suffix `K`, `M`, `G`, `T`
/// (also `KiB`…, case-insensitive). At least 16 MiB, a whole number of MiB.
pub fn parse_size(text: &str) -> Result<u64, DiskError> {
    let err = |reason| DiskError::Size { value: text.to_string(), reason };
    let trimmed = text.trim();
    let digits_end = trimmed.find(|c: char| !c.is_ascii_digit()).unwrap_or(trimmed.len());
    let (number, suffix) = trimmed.split_at(digits_end);
    if number.is_empty() {
        return Err(err("missing number"));
    }
    let number: u64 = number.parse().map_err(|_| err("number too large"))?;
    let shift = match suffix.to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kib" => 10,
        "m" | "mib" => 20,
        "g" | "gib" => 30,
        "t" | "tib" => 40,
        _ => return Err(err("unknown suffix")),
    };
    let size = number.checked_mul(1u64 << shift).ok_or_else(|| err("number too large"))?;
    check_size(size, text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("512M").unwrap(), 512 * MIB);
        assert_eq!(parse_size("1G").unwrap(), 1024 * MIB);
        assert_eq!(parse_size("1gib").unwrap(), 1024 * MIB);
        assert_eq!(parse_size("16777216").unwrap(), 16 * MIB);
        assert_eq!(parse_size("65536K").unwrap(), 64 * MIB);
        for (bad, reason) in [
            ("", "missing number"),
            ("M", "missing number"),
            ("512X", "unknown suffix"),
            ("8M", "a data disk needs at least 16 MiB"),
            ("16777217", "the size must be a whole number of MiB"),
            ("99999999999999999999", "number too large"),
            ("99999999T", "number too large"),
        ] {
            match parse_size(bad) {
                Err(DiskError::Size { value, reason: got }) => {
                    assert_eq!((value.as_str(), got), (bad, reason))
                }
                other => panic!("{bad}: {other:?}"),
            }
        }
    }

    #[test]
    fn mkfs_arguments() {
        let disk = VarDisk::default();
        assert_eq!(disk.mkfs_args(Path::new("/o/var.img")), ["-q", "-F", "-L", "keel-var", "-E", "root_owner=0:0", "/o/var.img"]);
        assert!(disk.mkfs_env().is_empty());
        let reproducible = VarDisk { source_date_epoch: Some(1_700_000_000), ..VarDisk::default() };
        let args = reproducible.mkfs_args(Path::new("/o/var.img"));
        assert_eq!(args[4], "-U");
        let uuid = &args[5];
        assert_eq!(uuid.len(), 36);
        assert_eq!(&uuid[14..15], "4", "{uuid}");
        assert!(args[7].starts_with("root_owner=0:0,hash_seed="), "{}", args[7]);
        assert_ne!(&args[7]["root_owner=0:0,hash_seed=".len()..], uuid.as_str());
        assert_eq!(reproducible.mkfs_args(Path::new("/o/var.img")), args);
        let other = VarDisk { source_date_epoch: Some(1_700_000_001), ..VarDisk::default() };
        assert_ne!(other.mkfs_args(Path::new("/o/var.img"))[5], *uuid);
        assert_eq!(reproducible.mkfs_env(), [("E2FSPROGS_FAKE_TIME", "1700000000".to_string())]);
    }

    fn mkfs_available() -> bool {
        let found = mkfs_program();
        found.is_absolute() || Command::new(&found).arg("-V").output().is_ok()
    }

    #[test]
    fn creates_a_labelled_sparse_ext4_disk_reproducibly() {
        if !mkfs_available() {
            eprintln!("SKIP: {MKFS} not installed (e2fsprogs)");
            return;
        }
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let disk = VarDisk { size: 32 * MIB, source_date_epoch: Some(1_000), ..VarDisk::default() };
        let a = dir.path().join("sub/a.img");
        assert!(disk.ensure(&a).unwrap());
        assert!(!disk.ensure(&a).unwrap(), "an existing disk is kept");
        let meta = std::fs::metadata(&a).unwrap();
        assert_eq!(meta.len(), 32 * MIB);
        assert!(meta.blocks() * 512 < meta.len() / 2, "not sparse: {} blocks", meta.blocks());
        let bytes = std::fs::read(&a).unwrap();
        let label = keel_init::storage::ext4_label(&bytes[1024..2048]);
        assert_eq!(label.as_deref(), Some(VAR_LABEL));
        let b = dir.path().join("b.img");
        disk.create(&b).unwrap();
        assert!(std::fs::read(&b).unwrap() == bytes, "same epoch, same bytes");
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|n| n.to_string_lossy().starts_with('.'))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[test]
    fn labels_longer_than_ext4_allows_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let disk = VarDisk { label: "a label far too long for ext4".into(), ..VarDisk::default() };
        let path = dir.path().join("bad.img");
        let err = disk.create(&path).unwrap_err();
        assert!(matches!(err, DiskError::Label { .. }), "{err}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
