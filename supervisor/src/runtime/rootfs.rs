//! Building the container's root inside its new mount namespace (runs in the child).

use super::plan::{LaunchPlan, MountOp, MASKED_PATHS, READONLY_PATHS};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use std::fs;
use std::path::{Path, PathBuf};

/// A failed step, with what was being done.
pub type StepResult = Result<(), String>;

fn nix_err(what: impl std::fmt::Display) -> impl FnOnce(nix::Error) -> String {
    move |e| format!("{what}: {e}")
}

fn io_err(what: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> String {
    move |e| format!("{what}: {e}")
}

/// `inside` (absolute in the container) as a host path under `root`.
pub fn under(root: &Path, inside: &Path) -> PathBuf {
    root.join(inside.strip_prefix("/").unwrap_or(inside))
}

/// Make every mount private, so nothing the container mounts reaches the host.
pub fn make_mounts_private() -> StepResult {
    mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None::<&str>).map_err(nix_err("make / private"))
}

/// The longest mount option string the kernel takes (one page).
const MOUNT_DATA_MAX: usize = 4095;

/// The overlay `lowerdir=` value for `lowers` (top first). When the full paths do not
/// fit in a page and the layers share a directory (the image store's), the names are
/// given relative to it and the caller must chdir there first (returned).
pub fn lowerdir_option(lowers: &[PathBuf], rest: usize) -> Result<(String, Option<PathBuf>), String> {
    let full = lowers.iter().map(|l| l.display().to_string()).collect::<Vec<_>>().join(":");
    if full.len() + rest + "lowerdir=".len() <= MOUNT_DATA_MAX {
        return Ok((full, None));
    }
    let parent = lowers.first().and_then(|l| l.parent()).map(Path::to_path_buf);
    let shared = parent.as_ref().filter(|p| lowers.iter().all(|l| l.parent() == Some(p.as_path())));
    let Some(parent) = shared else { return Err(format!("{} layers: the overlay options do not fit in a page", lowers.len())) };
    let names: Vec<String> = lowers.iter().filter_map(|l| l.file_name()).map(|n| n.to_string_lossy().into_owned()).collect();
    let short = names.join(":");
    if short.len() + rest + "lowerdir=".len() > MOUNT_DATA_MAX {
        return Err(format!("{} layers: the overlay options do not fit in a page even with relative layer names", lowers.len()));
    }
    Ok((short, Some(parent.clone())))
}

/// Mount the root: an overlay (layers below, per-container upper), the layers alone
/// read-only, or a root filesystem directory bound read-only.
pub fn mount_root(plan: &LaunchPlan) -> StepResult {
    let root = &plan.root;
    match (&root.overlay, root.lowers.as_slice()) {
        (None, [dir]) => bind(dir, &root.merged, true),
        (None, _) => {
            let (lowers, chdir) = lowerdir_option(&root.lowers, 0)?;
            if let Some(dir) = chdir {
                std::env::set_current_dir(&dir).map_err(io_err(format!("chdir {}", dir.display())))?;
            }
            let data = format!("lowerdir={lowers}");
            mount(Some("overlay"), &root.merged, Some("overlay"), MsFlags::MS_NODEV | MsFlags::MS_RDONLY, Some(data.as_str()))
                .map_err(nix_err(format!("mount overlay on {}", root.merged.display())))
        }
        (Some((upper, work)), _) => {
            let rest = format!(",upperdir={},workdir={},userxattr", upper.display(), work.display());
            let (lowers, chdir) = lowerdir_option(&root.lowers, rest.len())?;
            if let Some(dir) = chdir {
                std::env::set_current_dir(&dir).map_err(io_err(format!("chdir {}", dir.display())))?;
            }
            let mut data = format!("lowerdir={lowers},upperdir={},workdir={}", upper.display(), work.display());
            if plan.user_namespace.is_some() {
                // trusted.* xattrs are out of reach in a user namespace (Linux 5.11+).
                data.push_str(",userxattr");
            }
            // nodev: a device node made in the container (CAP_MKNOD is in the default set)
            // cannot be opened; the devices it may use are bind-mounted into /dev.
            mount(Some("overlay"), &root.merged, Some("overlay"), MsFlags::MS_NODEV, Some(data.as_str()))
                .map_err(nix_err(format!("mount overlay on {}", root.merged.display())))
        }
    }
}

/// Bind `source` onto `target` (recursively), read-only if asked. Everything but the
/// device nodes keel binds from the host's /dev is nodev.
fn bind(source: &Path, target: &Path, read_only: bool) -> StepResult {
    let what = format!("bind {} on {}", source.display(), target.display());
    mount(Some(source), target, None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>).map_err(nix_err(&what))?;
    let mut flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT;
    if !source.starts_with("/dev") {
        flags |= MsFlags::MS_NODEV;
    }
    if read_only {
        flags |= MsFlags::MS_RDONLY;
    }
    mount(None::<&str>, target, None::<&str>, flags, None::<&str>).map_err(nix_err(format!("{what} (remount nodev)")))?;
    Ok(())
}

/// Create the mount point for `source` at `target`: a directory, or an empty file for a file.
fn mount_point(target: &Path, like_file: bool) -> StepResult {
    if like_file {
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent).map_err(io_err(format!("create {}", parent.display())))?;
        }
        if !target.exists() {
            fs::File::create(target).map_err(io_err(format!("create {}", target.display())))?;
        }
        Ok(())
    } else {
        fs::create_dir_all(target).map_err(io_err(format!("create {}", target.display())))
    }
}

/// Apply the plan's mounts inside the new root.
pub fn apply_mounts(root: &Path, ops: &[MountOp]) -> StepResult {
    for op in ops {
        match op {
            MountOp::Fs { fstype, target, flags, data } => {
                let target = under(root, target);
                mount_point(&target, false)?;
                mount(Some(*fstype), &target, Some(*fstype), *flags, Some(data.as_str()))
                    .map_err(nix_err(format!("mount {fstype} on {}", target.display())))?;
            }
            MountOp::Bind { source, target, read_only } => {
                let target = under(root, target);
                mount_point(&target, !source.is_dir())?;
                bind(source, &target, *read_only)?;
            }
            MountOp::Symlink { target, link } => {
                let link = under(root, link);
                let _ = fs::remove_file(&link);
                std::os::unix::fs::symlink(target, &link).map_err(io_err(format!("symlink {}", link.display())))?;
            }
        }
    }
    Ok(())
}

/// Write the declared sysctls through the container's own /proc/sys.
pub fn write_sysctls(root: &Path, sysctls: &[(String, String)]) -> StepResult {
    for (name, value) in sysctls {
        let path = under(root, Path::new("/proc/sys")).join(name.replace('.', "/"));
        fs::write(&path, value).map_err(io_err(format!("sysctl {name}={value}")))?;
    }
    Ok(())
}

/// Hide the masked paths (tmpfs over directories, /dev/null over files) and make the
/// read-only paths read-only.
pub fn mask_and_protect(root: &Path) -> StepResult {
    for path in MASKED_PATHS {
        let target = under(root, Path::new(path));
        let Ok(meta) = fs::metadata(&target) else { continue };
        let result = if meta.is_dir() {
            mount(Some("tmpfs"), &target, Some("tmpfs"), MsFlags::MS_RDONLY, Some("size=0"))
        } else {
            mount(Some("/dev/null"), &target, None::<&str>, MsFlags::MS_BIND, None::<&str>)
        };
        result.map_err(nix_err(format!("mask {path}")))?;
    }
    for path in READONLY_PATHS {
        let target = under(root, Path::new(path));
        if target.exists() {
            bind(&target, &target, true)?;
        }
    }
    Ok(())
}

/// Make `root` the root: pivot_root(".", ".") then detach the old root stacked on it.
pub fn pivot_into(root: &Path) -> StepResult {
    std::env::set_current_dir(root).map_err(io_err(format!("chdir {}", root.display())))?;
    nix::unistd::pivot_root(".", ".").map_err(nix_err("pivot_root"))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(nix_err("detach the old root"))?;
    std::env::set_current_dir("/").map_err(io_err("chdir /"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lowerdir_uses_full_paths_when_they_fit_and_names_relative_to_the_store_when_not() {
        let dir = |i: usize| PathBuf::from(format!("/var/lib/keel/images/layers/{i:064x}"));
        let few: Vec<PathBuf> = (0..3).map(dir).collect();
        let (option, chdir) = lowerdir_option(&few, 100).unwrap();
        assert_eq!(option.split(':').count(), 3);
        assert!(option.starts_with("/var/lib/keel/images/layers/") && chdir.is_none());
        // 50 layers: about 5 KiB of full paths, 3.2 KiB of names.
        let many: Vec<PathBuf> = (0..50).map(dir).collect();
        let (option, chdir) = lowerdir_option(&many, 200).unwrap();
        assert_eq!(chdir.as_deref(), Some(Path::new("/var/lib/keel/images/layers")));
        assert!(option.len() + 200 < MOUNT_DATA_MAX && option.split(':').all(|n| n.len() == 64));
        let too_many: Vec<PathBuf> = (0..70).map(dir).collect();
        assert!(lowerdir_option(&too_many, 200).unwrap_err().contains("70 layers"));
    }
}
