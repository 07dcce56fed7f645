//! Building the container's root inside its new mount namespace (runs in the child).

use super::inroot::{fd_path, PointKind, Root};
use super::plan::{LaunchPlan, MountOp, MASKED_PATHS, READONLY_PATHS};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use rustix::fs::{FileType, Mode, OFlags, ResolveFlags};
use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

/// A failed step, with what was being done.
pub type StepResult = Result<(), String>;

fn nix_err(what: impl std::fmt::Display) -> impl FnOnce(nix::Error) -> String {
    move |e| format!("{what}: {e}")
}

fn io_err(what: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> String {
    move |e| format!("{what}: {e}")
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

/// Bind `source` onto `target` (recursively), read-only if asked: the container's root
/// filesystem directory onto the mount point, both host paths keel chose.
fn bind(source: &Path, target: &Path, read_only: bool) -> StepResult {
    let what = format!("bind {} on {}", source.display(), target.display());
    mount(Some(source), target, None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>).map_err(nix_err(&what))?;
    remount_bind(target, bind_flags(source, read_only)).map_err(|e| format!("{what} (remount): {e}"))
}

/// The remount flags of a bind: everything but the device nodes keel binds from the
/// host's /dev is nodev; read-only if asked.
fn bind_flags(source: &Path, read_only: bool) -> MsFlags {
    let mut flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT;
    if !source.starts_with("/dev") {
        flags |= MsFlags::MS_NODEV;
    }
    if read_only {
        flags |= MsFlags::MS_RDONLY;
    }
    flags
}

fn remount_bind(target: &Path, flags: MsFlags) -> nix::Result<()> {
    mount(None::<&str>, target, None::<&str>, flags, None::<&str>)
}

/// Bind the host path `source` onto `target` inside the container's root, both through
/// descriptors: the source opened by [`open_bind_source`], the target resolved in the
/// root (and resolved again for the remount, which must reach the new mount on top).
fn bind_in_root(root: &Root, source: &Path, target: &Path, read_only: bool) -> StepResult {
    let what = format!("bind {} on {}", source.display(), target.display());
    let source_fd = open_bind_source(source).map_err(|e| format!("{what}: {e}"))?;
    let is_dir = rustix::fs::fstat(&source_fd).map(|st| FileType::from_raw_mode(st.st_mode) == FileType::Directory).unwrap_or(false);
    let kind = if is_dir { PointKind::Directory } else { PointKind::File };
    let target_fd = root.mount_point(target, kind).map_err(|e| format!("{what}: mount point: {e}"))?;
    mount(Some(&fd_path(source_fd.as_fd())), &fd_path(target_fd.as_fd()), None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>)
        .map_err(nix_err(&what))?;
    let mounted = root.resolve(target).map_err(|e| format!("{what}: {e}"))?;
    remount_bind(&fd_path(mounted.as_fd()), bind_flags(source, read_only)).map_err(nix_err(format!("{what} (remount)")))
}

/// Where containers' state and images live: never a bind source.
pub const KEEL_STATE: &str = "/var/lib/keel";

/// Why a bind source cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum BindSourceError {
    /// The source is keel's own state (other containers' roots, the image store).
    #[error("{0} is under {KEEL_STATE}, keel's own state")]
    KeelState(PathBuf),
    /// The source could not be opened as asked.
    #[error("{path}: {source}")]
    Open {
        /// The source.
        path: PathBuf,
        /// The errno (ELOOP/EXDEV: a symlink leads out of /var).
        source: std::io::Error,
    },
}

/// Open a bind source as an `O_PATH` descriptor. /var is writable and containers may
/// have parts of it bound in, so a source under /var is resolved beneath /var
/// (RESOLVE_BENEATH: no absolute symlink, no `..` out of it) and refused when a symlink
/// leads it into keel's own state; other sources are read-only or keel's own (/dev, /run,
/// the image). Magic links are never followed.
pub fn open_bind_source(source: &Path) -> Result<OwnedFd, BindSourceError> {
    let open_err = |source_path: &Path| {
        let path = source_path.to_path_buf();
        move |e: rustix::io::Errno| BindSourceError::Open { path, source: e.into() }
    };
    let flags = OFlags::PATH | OFlags::CLOEXEC;
    let fd = match source.strip_prefix("/var") {
        Ok(rel) => {
            let var = rustix::fs::open("/var", OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
                .map_err(open_err(Path::new("/var")))?;
            let rel = if rel.as_os_str().is_empty() { Path::new(".") } else { rel };
            rustix::fs::openat2(&var, rel, flags, Mode::empty(), ResolveFlags::BENEATH | ResolveFlags::NO_MAGICLINKS)
                .map_err(open_err(source))?
        }
        Err(_) => {
            rustix::fs::openat2(rustix::fs::CWD, source, flags, Mode::empty(), ResolveFlags::NO_MAGICLINKS).map_err(open_err(source))?
        }
    };
    // The source as the kernel reached it: a symlink inside /var may still lead into
    // keel's state. (A source named under it is keel's own, e.g. a container's
    // resolv.conf: declarations cannot name one, their validation refuses it.)
    let real = std::fs::read_link(fd_path(fd.as_fd())).map_err(|e| BindSourceError::Open { path: source.to_path_buf(), source: e })?;
    if real.starts_with(KEEL_STATE) && !source.starts_with(KEEL_STATE) {
        return Err(BindSourceError::KeelState(real));
    }
    Ok(fd)
}

/// Apply the plan's mounts inside the new root, every target resolved in it.
pub fn apply_mounts(root: &Root, ops: &[MountOp]) -> StepResult {
    for op in ops {
        match op {
            MountOp::Fs { fstype, target, flags, data } => {
                let what = format!("mount {fstype} on {}", target.display());
                let point = root.mount_point(target, PointKind::Directory).map_err(|e| format!("{what}: {e}"))?;
                mount(Some(*fstype), &fd_path(point.as_fd()), Some(*fstype), *flags, Some(data.as_str())).map_err(nix_err(what))?;
            }
            MountOp::Bind { source, target, read_only } => bind_in_root(root, source, target, *read_only)?,
            MountOp::Symlink { target, link } => {
                let what = format!("symlink {}", link.display());
                let name = link.file_name().ok_or_else(|| format!("{what}: no file name"))?;
                let parent = root.mkdir_all(link.parent().unwrap_or(Path::new("/"))).map_err(|e| format!("{what}: {e}"))?;
                let _ = rustix::fs::unlinkat(&parent, name, rustix::fs::AtFlags::empty());
                rustix::fs::symlinkat(*target, &parent, name).map_err(|e| format!("{what}: {e}"))?;
            }
        }
    }
    Ok(())
}

/// Write the declared sysctls through the container's own /proc/sys.
pub fn write_sysctls(root: &Root, sysctls: &[(String, String)]) -> StepResult {
    for (name, value) in sysctls {
        let path = Path::new("/proc/sys").join(name.replace('.', "/"));
        let fd = root.open_in(&path, OFlags::WRONLY | OFlags::NONBLOCK).map_err(|e| format!("sysctl {name}={value}: {e}"))?;
        std::fs::File::from(fd).write_all(value.as_bytes()).map_err(io_err(format!("sysctl {name}={value}")))?;
    }
    Ok(())
}

/// Hide the masked paths (tmpfs over directories, /dev/null over files) and make the
/// read-only paths read-only, each resolved in the root.
pub fn mask_and_protect(root: &Root) -> StepResult {
    for path in MASKED_PATHS {
        let inside = Path::new(path);
        let Ok(Some(kind)) = root.file_type(inside) else { continue };
        let target = root.resolve(inside).map_err(|e| format!("mask {path}: {e}"))?;
        let result = if kind == FileType::Directory {
            mount(Some("tmpfs"), &fd_path(target.as_fd()), Some("tmpfs"), MsFlags::MS_RDONLY, Some("size=0"))
        } else {
            mount(Some("/dev/null"), &fd_path(target.as_fd()), None::<&str>, MsFlags::MS_BIND, None::<&str>)
        };
        result.map_err(nix_err(format!("mask {path}")))?;
    }
    for path in READONLY_PATHS {
        let inside = Path::new(path);
        let Ok(Some(_)) = root.file_type(inside) else { continue };
        let what = format!("read-only {path}");
        let target = root.resolve(inside).map_err(|e| format!("{what}: {e}"))?;
        let target = fd_path(target.as_fd());
        mount(Some(&target), &target, None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>).map_err(nix_err(&what))?;
        let mounted = root.resolve(inside).map_err(|e| format!("{what}: {e}"))?;
        remount_bind(&fd_path(mounted.as_fd()), bind_flags(inside, true)).map_err(nix_err(format!("{what} (remount)")))?;
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
