//! The unified kernel image: systemd's EFI stub with the kernel, the boot initramfs,
//! the command line and an os-release added as PE sections (the layout systemd-stub
//! reads), assembled with objcopy and made reproducible ([`super::pe`]).

use std::path::{Path, PathBuf};

use super::tools;
use super::DiskImageError;

/// The EFI stub (Debian's systemd-boot-efi).
pub const STUB: &str = "/usr/lib/systemd/boot/efi/linuxx64.efi.stub";

/// Section addresses: small sections low, the kernel at 32 MiB, the initrd after it.
const OSREL_VMA: u64 = 0x20000;
const CMDLINE_VMA: u64 = 0x30000;
const LINUX_VMA: u64 = 0x200_0000;

/// What goes into the unified kernel image.
#[derive(Debug, Clone)]
pub struct UkiInputs<'a> {
    /// The kernel (bzImage).
    pub vmlinuz: &'a Path,
    /// The boot initramfs.
    pub initrd: &'a Path,
    /// The kernel command line.
    pub cmdline: &'a str,
    /// The os-release text.
    pub os_release: &'a str,
}

/// Where each section goes: (name, file, address).
pub fn sections<'a>(inputs: &UkiInputs<'a>, cmdline: &'a Path, osrel: &'a Path, linux_len: u64) -> Vec<(&'static str, &'a Path, u64)> {
    let initrd_vma = LINUX_VMA + linux_len.div_ceil(1 << 20) * (1 << 20);
    vec![
        (".osrel", osrel, OSREL_VMA),
        (".cmdline", cmdline, CMDLINE_VMA),
        (".linux", inputs.vmlinuz, LINUX_VMA),
        (".initrd", inputs.initrd, initrd_vma),
    ]
}

/// Assemble the image at `out` (work files go to `work`), stamped with `epoch`.
pub fn build(inputs: &UkiInputs, work: &Path, out: &Path, epoch: u64) -> Result<(), DiskImageError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| DiskImageError::Io { path, source }
    };
    let stub = PathBuf::from(STUB);
    if !stub.is_file() {
        return Err(DiskImageError::Missing { path: stub, package: "systemd-boot-efi" });
    }
    let cmdline = work.join("cmdline.txt");
    std::fs::write(&cmdline, format!("{}\n", inputs.cmdline)).map_err(io(&cmdline))?;
    let osrel = work.join("os-release");
    std::fs::write(&osrel, inputs.os_release).map_err(io(&osrel))?;
    let linux_len = std::fs::metadata(inputs.vmlinuz).map_err(io(inputs.vmlinuz))?.len();
    tools::objcopy_uki(&stub, &sections(inputs, &cmdline, &osrel, linux_len), out).run()?;
    let mut image = std::fs::read(out).map_err(io(out))?;
    super::pe::normalize(&mut image, u32::try_from(epoch).unwrap_or(u32::MAX))
        .map_err(|source| DiskImageError::Pe { path: out.to_path_buf(), source })?;
    std::fs::write(out, &image).map_err(io(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_initrd_follows_the_kernel_on_a_mebibyte() {
        let inputs = UkiInputs { vmlinuz: Path::new("/k"), initrd: Path::new("/i"), cmdline: "", os_release: "" };
        let found = sections(&inputs, Path::new("/c"), Path::new("/o"), 8_247_232);
        let names: Vec<_> = found.iter().map(|(n, _, vma)| (*n, *vma)).collect();
        assert_eq!(names, [(".osrel", 0x20000), (".cmdline", 0x30000), (".linux", 0x200_0000), (".initrd", 0x280_0000)]);
    }
}
