//! The build-time tools a disk image is made with, each an argument builder (pure)
//! and one runner: mkfs.erofs (erofs-utils), mkfs.fat (dosfstools), mmd/mcopy (mtools),
//! mkfs.ext4 (e2fsprogs), objcopy (binutils), qemu-img (qemu-utils). Each is told
//! the build's epoch and fixed identifiers, so its output depends on its input only.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::DiskImageError;

/// Where tools are looked for besides `$PATH` (/sbin is often not on a user's PATH).
const SBIN_DIRS: &[&str] = &["/usr/sbin", "/sbin"];
/// FAT cannot date files before 1980-01-01; earlier epochs are moved there.
pub const FAT_MIN_EPOCH: u64 = 315_532_800;

/// One tool run: program, arguments, environment, and the Debian package it is from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tool {
    /// The program name.
    pub program: &'static str,
    /// Its arguments.
    pub args: Vec<String>,
    /// Extra environment.
    pub env: Vec<(&'static str, String)>,
    /// The Debian package that has it (for the error message).
    pub package: &'static str,
}

fn s(value: impl AsRef<std::ffi::OsStr>) -> String {
    value.as_ref().to_string_lossy().into_owned()
}

impl Tool {
    /// Run it; a failure names the command and its stderr.
    pub fn run(&self) -> Result<(), DiskImageError> {
        let output = Command::new(find_program(self.program))
            .args(&self.args)
            .envs(self.env.iter().map(|(k, v)| (*k, v.as_str())))
            .output()
            .map_err(|source| DiskImageError::Spawn { program: self.program, package: self.package, source })?;
        if !output.status.success() {
            return Err(DiskImageError::ToolFailed {
                command: format!("{} {}", self.program, self.args.join(" ")),
                status: output.status,
                stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
            });
        }
        Ok(())
    }
}

/// `program` from `$PATH`, else from /usr/sbin or /sbin.
pub fn find_program(program: &str) -> PathBuf {
    let on_path = std::env::var_os("PATH").map(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file())).unwrap_or(false);
    if on_path {
        return PathBuf::from(program);
    }
    SBIN_DIRS.iter().map(|dir| Path::new(dir).join(program)).find(|p| p.is_file()).unwrap_or_else(|| PathBuf::from(program))
}

/// mkfs.erofs: `dir` into `image`, lz4hc-compressed, every file root's with mtime `epoch`.
pub fn mkfs_erofs(image: &Path, dir: &Path, epoch: u64, uuid: &str) -> Tool {
    let args = vec![
        "--quiet".into(),
        "-zlz4hc".into(),
        format!("-T{epoch}"),
        format!("-U{uuid}"),
        "--all-root".into(),
        "-x-1".into(),
        s(image),
        s(dir),
    ];
    Tool { program: "mkfs.erofs", args, env: Vec::new(), package: "erofs-utils" }
}

/// mkfs.fat: a FAT32 filesystem of `size` bytes at byte `offset` of `image`. The
/// cluster size is fixed (one sector): mkfs.fat would otherwise choose it from the size
/// of the whole image file and leave too few clusters for FAT32.
pub fn mkfs_fat(image: &Path, offset: u64, size: u64, volume_id: u32) -> Tool {
    let args = vec![
        "-F".into(),
        "32".into(),
        "-s".into(),
        "1".into(),
        "-n".into(),
        "ESP".into(),
        "-i".into(),
        format!("{volume_id:08X}"),
        "--invariant".into(),
        format!("--offset={}", offset / 512),
        s(image),
        (size / 1024).to_string(),
    ];
    Tool { program: "mkfs.fat", args, env: Vec::new(), package: "dosfstools" }
}

/// mtools' name for the FAT filesystem at byte `offset` of `image`.
fn mtools_image(image: &Path, offset: u64) -> String {
    format!("{}@@{offset}", image.display())
}

fn fat_epoch(epoch: u64) -> (&'static str, String) {
    ("SOURCE_DATE_EPOCH", epoch.max(FAT_MIN_EPOCH).to_string())
}

/// mmd: directories on the FAT filesystem at `offset`.
pub fn mmd(image: &Path, offset: u64, dirs: &[&str], epoch: u64) -> Tool {
    let mut args = vec!["-i".into(), mtools_image(image, offset)];
    args.extend(dirs.iter().map(|d| format!("::{d}")));
    Tool { program: "mmd", args, env: vec![fat_epoch(epoch)], package: "mtools" }
}

/// mcopy: `file` to `target` on the FAT filesystem at `offset`, keeping its mtime.
pub fn mcopy(image: &Path, offset: u64, file: &Path, target: &str, epoch: u64) -> Tool {
    let args = vec!["-m".into(), "-i".into(), mtools_image(image, offset), s(file), format!("::{target}")];
    Tool { program: "mcopy", args, env: vec![fat_epoch(epoch)], package: "mtools" }
}

/// mkfs.ext4: the data filesystem, `size` bytes at byte `offset` of `image`, labelled
/// `label`, with fixed UUID, hash seed and clock (e2fsprogs takes a fake time of 0 as
/// "none", so the clock is at least 1).
pub fn mkfs_ext4(image: &Path, offset: u64, size: u64, label: &str, uuid: &str, hash_seed: &str, epoch: u64) -> Tool {
    let args = vec![
        "-q".into(),
        "-F".into(),
        "-L".into(),
        label.into(),
        "-U".into(),
        uuid.into(),
        "-E".into(),
        format!("root_owner=0:0,hash_seed={hash_seed},offset={offset}"),
        s(image),
        format!("{}k", size / 1024),
    ];
    Tool { program: "mkfs.ext4", args, env: vec![("E2FSPROGS_FAKE_TIME", epoch.max(1).to_string())], package: "e2fsprogs" }
}

/// objcopy: the unified kernel image, sections added to the systemd EFI stub.
pub fn objcopy_uki(stub: &Path, sections: &[(&str, &Path, u64)], out: &Path) -> Tool {
    let mut args = Vec::new();
    for (name, file, vma) in sections {
        args.push("--add-section".into());
        args.push(format!("{name}={}", file.display()));
        args.push("--change-section-vma".into());
        args.push(format!("{name}={vma:#x}"));
    }
    args.push(s(stub));
    args.push(s(out));
    Tool { program: "objcopy", args, env: Vec::new(), package: "binutils" }
}

/// qemu-img convert from raw to `format` (qemu-img's name: qcow2 or vpc).
pub fn qemu_img_convert(raw: &Path, format: &str, options: &[&str], out: &Path) -> Tool {
    let mut args = vec!["convert".into(), "-f".into(), "raw".into(), "-O".into(), format.into()];
    for option in options {
        args.push("-o".into());
        args.push(option.to_string());
    }
    args.push(s(raw));
    args.push(s(out));
    Tool { program: "qemu-img", args, env: Vec::new(), package: "qemu-utils" }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tools_get_fixed_identities_and_clocks() {
        let img = Path::new("/o/d.raw");
        let fat = mkfs_fat(img, 1 << 20, 64 << 20, 0xabcd);
        assert_eq!(fat.args.join(" "), "-F 32 -s 1 -n ESP -i 0000ABCD --invariant --offset=2048 /o/d.raw 65536");
        let copy = mcopy(img, 1 << 20, Path::new("/o/uki.efi"), "EFI/BOOT/BOOTX64.EFI", 0);
        assert_eq!(copy.args.join(" "), "-m -i /o/d.raw@@1048576 /o/uki.efi ::EFI/BOOT/BOOTX64.EFI");
        assert_eq!(copy.env, [("SOURCE_DATE_EPOCH", FAT_MIN_EPOCH.to_string())]);
        let ext4 = mkfs_ext4(img, 5 << 20, 8 << 20, "keel-var", "u", "h", 0);
        assert_eq!(ext4.args.join(" "), "-q -F -L keel-var -U u -E root_owner=0:0,hash_seed=h,offset=5242880 /o/d.raw 8192k");
        assert_eq!(ext4.env, [("E2FSPROGS_FAKE_TIME", "1".to_string())]);
        let erofs = mkfs_erofs(Path::new("/o/root.erofs"), Path::new("/o/root"), 7, "u");
        assert_eq!(erofs.args.join(" "), "--quiet -zlz4hc -T7 -Uu --all-root -x-1 /o/root.erofs /o/root");
    }

    #[test]
    fn a_missing_tool_names_its_package() {
        let tool = Tool { program: "keel-no-such-tool", args: vec![], env: vec![], package: "some-package" };
        let err = tool.run().unwrap_err();
        assert!(err.to_string().contains("install some-package"), "{err}");
    }
}
