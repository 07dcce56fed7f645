//! Paths inside a container's root, resolved by the kernel so that nothing the container
//! controls leads out of that root or blocks the process that follows it.
//!
//! A container's tree is hostile: its image and its persistent upper directory may hold
//! symlinks (absolute ones pointing at host paths, `..` chains), magic links
//! (`/proc/self/fd/N`), FIFOs and device nodes where keel expects directories and small
//! regular files. Everything keel does in that tree before the container runs — creating
//! mount points, mounting over them, reading `/etc/passwd`, finding the program, entering
//! the working directory — goes through [`Root`]: `openat2(2)` with `RESOLVE_IN_ROOT`
//! (symlinks and `..` are resolved as if the root were `/`) and `RESOLVE_NO_MAGICLINKS`,
//! files opened `O_NONBLOCK | O_NOCTTY` and read with a size cap, mounts made through
//! `/proc/self/fd/N` of the resolved descriptor (so the path cannot be swapped between
//! the check and the mount).

use rustix::fs::{self as rfs, FileType, Mode, OFlags, ResolveFlags};
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

/// Why a path inside a container's root could not be used.
#[derive(Debug, thiserror::Error)]
pub enum InRootError {
    /// The kernel refused to resolve or open the path.
    #[error("{path}: {source}")]
    Resolve {
        /// The path, as the container sees it.
        path: PathBuf,
        /// The errno.
        source: std::io::Error,
    },
    /// A path exists but is not the kind of file keel needs there.
    #[error("{path}: is a {found}, not a {wanted}")]
    WrongType {
        /// The path, as the container sees it.
        path: PathBuf,
        /// What was found (directory, FIFO, …).
        found: &'static str,
        /// What keel needs there.
        wanted: &'static str,
    },
    /// A file keel reads is larger than it accepts.
    #[error("{path}: larger than {limit} bytes")]
    TooLarge {
        /// The path, as the container sees it.
        path: PathBuf,
        /// The cap.
        limit: u64,
    },
    /// A path keel was given has components it refuses (not absolute after cleaning).
    #[error("{path}: not a usable path inside the container")]
    BadPath {
        /// The path as given.
        path: PathBuf,
    },
}

/// How the kernel resolves every path under a [`Root`].
const IN_ROOT: ResolveFlags = ResolveFlags::IN_ROOT.union(ResolveFlags::NO_MAGICLINKS);

/// What kind of mount point to create.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PointKind {
    /// A directory (for filesystems and directory binds).
    Directory,
    /// An empty regular file (for binds of files such as /etc/hosts).
    File,
}

/// A container's root directory, held open: every path below is resolved inside it.
#[derive(Debug)]
pub struct Root {
    fd: OwnedFd,
}

fn type_name(file_type: FileType) -> &'static str {
    match file_type {
        FileType::RegularFile => "regular file",
        FileType::Directory => "directory",
        FileType::Symlink => "symlink",
        FileType::Fifo => "FIFO",
        FileType::Socket => "socket",
        FileType::CharacterDevice => "character device",
        FileType::BlockDevice => "block device",
        FileType::Unknown => "file of unknown type",
    }
}

/// `inside` relative to the root: `/etc/hosts` → `etc/hosts`, `/` → `.`.
fn relative(inside: &Path) -> Result<PathBuf, InRootError> {
    let mut rel = PathBuf::new();
    for component in inside.components() {
        match component {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(name) => rel.push(name),
            // `..` is resolved by the kernel inside the root; keep it so the meaning is
            // the container's own.
            Component::ParentDir => rel.push(".."),
            Component::Prefix(_) => return Err(InRootError::BadPath { path: inside.to_path_buf() }),
        }
    }
    if rel.as_os_str().is_empty() {
        rel.push(".");
    }
    Ok(rel)
}

/// The path through which the kernel reaches what `fd` refers to (for mount(2)).
pub fn fd_path(fd: BorrowedFd<'_>) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

impl Root {
    /// Hold `dir` (a host path keel controls, e.g. the assembled overlay) as a root.
    pub fn open(dir: &Path) -> Result<Root, InRootError> {
        let fd = rfs::open(dir, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
            .map_err(|e| InRootError::Resolve { path: dir.to_path_buf(), source: e.into() })?;
        Ok(Root { fd })
    }

    /// The root's own descriptor.
    pub fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Open `inside` with `flags` (`O_CLOEXEC`, and `O_NOCTTY` unless `O_PATH`, added),
    /// resolved in the root.
    pub fn open_in(&self, inside: &Path, flags: OFlags) -> Result<OwnedFd, InRootError> {
        let rel = relative(inside)?;
        // openat2 refuses O_PATH with any flag but O_CLOEXEC, O_DIRECTORY and O_NOFOLLOW.
        let extra = if flags.contains(OFlags::PATH) { OFlags::CLOEXEC } else { OFlags::CLOEXEC | OFlags::NOCTTY };
        rfs::openat2(&self.fd, &rel, flags | extra, Mode::empty(), IN_ROOT)
            .map_err(|e| InRootError::Resolve { path: inside.to_path_buf(), source: e.into() })
    }

    /// An `O_PATH` descriptor of `inside`, resolved in the root.
    pub fn resolve(&self, inside: &Path) -> Result<OwnedFd, InRootError> {
        self.open_in(inside, OFlags::PATH)
    }

    /// The type of what `inside` resolves to, or None when nothing is there.
    pub fn file_type(&self, inside: &Path) -> Result<Option<FileType>, InRootError> {
        match self.resolve(inside) {
            Ok(fd) => Ok(Some(stat_type(&fd, inside)?)),
            Err(InRootError::Resolve { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `inside` as a directory, creating it and its missing parents (mode 0755). Each
    /// step is resolved in the root, so an existing symlink is followed only inside it.
    pub fn mkdir_all(&self, inside: &Path) -> Result<OwnedFd, InRootError> {
        let rel = relative(inside)?;
        let mut done = PathBuf::from("/");
        for component in rel.components() {
            done.push(component);
            match self.open_in(&done, OFlags::PATH | OFlags::DIRECTORY) {
                Ok(_) => continue,
                Err(InRootError::Resolve { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
            let parent = self.open_in(done.parent().unwrap_or(Path::new("/")), OFlags::PATH | OFlags::DIRECTORY)?;
            let name = done.file_name().ok_or_else(|| InRootError::BadPath { path: inside.to_path_buf() })?;
            match rfs::mkdirat(&parent, name, Mode::from_raw_mode(0o755)) {
                Ok(()) => {}
                // Something is there yet does not resolve: a symlink leading nowhere in
                // the root. keel does not create what it points at.
                Err(rustix::io::Errno::EXIST) => {
                    return Err(InRootError::WrongType { path: done.clone(), found: "dangling symlink", wanted: "directory" })
                }
                Err(e) => return Err(InRootError::Resolve { path: done.clone(), source: e.into() }),
            }
        }
        let fd = self.open_in(inside, OFlags::PATH | OFlags::DIRECTORY)?;
        Ok(fd)
    }

    /// The mount point `inside` of the given kind, created when missing, as an `O_PATH`
    /// descriptor to mount onto (through [`fd_path`]). A dangling symlink in the place of
    /// a file mount point is replaced by an empty file: following it could only create a
    /// file inside the root, and the container's view is the bound file anyway.
    pub fn mount_point(&self, inside: &Path, kind: PointKind) -> Result<OwnedFd, InRootError> {
        if kind == PointKind::Directory {
            return self.mkdir_all(inside);
        }
        let parent_path = inside.parent().unwrap_or(Path::new("/"));
        let name = inside.file_name().ok_or_else(|| InRootError::BadPath { path: inside.to_path_buf() })?;
        let parent = self.mkdir_all(parent_path)?;
        match self.file_type(inside)? {
            Some(FileType::Directory) => {
                return Err(InRootError::WrongType { path: inside.to_path_buf(), found: "directory", wanted: "file" })
            }
            Some(_) => return self.resolve(inside),
            None => {}
        }
        // Nothing resolves there: either no entry, or a symlink leading nowhere in the
        // root. Replace such a symlink, then create the file without following anything.
        let _ = rfs::unlinkat(&parent, name, rfs::AtFlags::empty());
        let flags = OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
        rfs::openat(&parent, name, flags, Mode::from_raw_mode(0o644))
            .map_err(|e| InRootError::Resolve { path: inside.to_path_buf(), source: e.into() })?;
        self.resolve(inside)
    }

    /// The content of the regular file `inside`, at most `limit` bytes; None when it does
    /// not exist. Opened non-blocking, so a FIFO or device there is an error, never a wait.
    pub fn read_small_file(&self, inside: &Path, limit: u64) -> Result<Option<Vec<u8>>, InRootError> {
        let fd = match self.open_in(inside, OFlags::RDONLY | OFlags::NONBLOCK) {
            Ok(fd) => fd,
            Err(InRootError::Resolve { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let found = stat_type(&fd, inside)?;
        if found != FileType::RegularFile {
            return Err(InRootError::WrongType { path: inside.to_path_buf(), found: type_name(found), wanted: "regular file" });
        }
        let mut content = Vec::new();
        std::fs::File::from(fd)
            .take(limit + 1)
            .read_to_end(&mut content)
            .map_err(|source| InRootError::Resolve { path: inside.to_path_buf(), source })?;
        if content.len() as u64 > limit {
            return Err(InRootError::TooLarge { path: inside.to_path_buf(), limit });
        }
        Ok(Some(content))
    }

    /// Whether `inside` is a regular file with an execute bit (PATH lookup).
    pub fn is_executable(&self, inside: &Path) -> bool {
        self.resolve(inside)
            .ok()
            .and_then(|fd| rfs::fstat(&fd).ok())
            .is_some_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::RegularFile && st.st_mode & 0o111 != 0)
    }
}

fn stat_type(fd: &OwnedFd, inside: &Path) -> Result<FileType, InRootError> {
    let st = rfs::fstat(fd).map_err(|e| InRootError::Resolve { path: inside.to_path_buf(), source: e.into() })?;
    Ok(FileType::from_raw_mode(st.st_mode))
}

/// Make `dir` (a directory descriptor) the working directory and check that the kernel
/// sees it inside the current root: a directory reached through a descriptor of another
/// mount namespace's tree reports as unreachable, and a process must never start there.
pub fn enter_dir(dir: BorrowedFd<'_>, shown: &Path) -> Result<(), InRootError> {
    nix::unistd::fchdir(dir).map_err(|e| InRootError::Resolve { path: shown.to_path_buf(), source: e.into() })?;
    match nix::unistd::getcwd() {
        Ok(cwd) if cwd.is_absolute() => Ok(()),
        Ok(_) | Err(nix::Error::ENOENT) => Err(InRootError::Resolve {
            path: shown.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::PermissionDenied, "the working directory is outside the container's root"),
        }),
        Err(e) => Err(InRootError::Resolve { path: shown.to_path_buf(), source: e.into() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn tree() -> (tempfile::TempDir, Root) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("etc")).unwrap();
        let root = Root::open(dir.path()).unwrap();
        (dir, root)
    }

    #[test]
    fn absolute_symlinks_and_dotdot_stay_inside() {
        let (dir, root) = tree();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), "host").unwrap();
        symlink(outside.path().join("secret"), dir.path().join("etc/passwd")).unwrap();
        symlink("../../../../../../..", dir.path().join("up")).unwrap();
        // Control: followed on the host, the link reaches the host file.
        assert_eq!(std::fs::read_to_string(dir.path().join("etc/passwd")).unwrap(), "host");
        assert!(root.read_small_file(Path::new("/etc/passwd"), 100).unwrap().is_none(), "the link must not leave the root");
        let up = root.resolve(Path::new("/up")).unwrap();
        let same = rfs::fstat(&up).unwrap();
        let top = rfs::fstat(root.as_fd()).unwrap();
        assert_eq!((same.st_dev, same.st_ino), (top.st_dev, top.st_ino), "`..` above the root is the root");
    }

    #[test]
    fn magic_links_are_refused() {
        let (dir, root) = tree();
        symlink("/proc/self/fd/3", dir.path().join("fd3")).unwrap();
        std::fs::create_dir_all(dir.path().join("proc/self")).unwrap();
        // In-root, /proc/self/fd/3 is an ordinary missing path in the image, and a
        // procfs magic link never resolves: the kernel refuses it.
        assert!(root.resolve(Path::new("/fd3")).is_err());
        let proc_root = Root::open(Path::new("/")).unwrap();
        let held = std::fs::File::open("/").unwrap();
        let err = proc_root.resolve(&PathBuf::from(format!("/proc/self/fd/{}", held.as_raw_fd()))).unwrap_err();
        assert!(err.to_string().contains("/proc/self/fd/"), "{err}");
        // Control: without RESOLVE_NO_MAGICLINKS the same path opens.
        assert!(std::fs::metadata(format!("/proc/self/fd/{}", held.as_raw_fd())).is_ok());
    }

    #[test]
    fn a_fifo_is_an_error_not_a_wait() {
        let (dir, root) = tree();
        nix::unistd::mkfifo(&dir.path().join("etc/passwd"), nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
        let err = root.read_small_file(Path::new("/etc/passwd"), 1 << 20).unwrap_err();
        assert!(matches!(err, InRootError::WrongType { found: "FIFO", .. }), "{err}");
    }

    #[test]
    fn files_are_read_with_a_cap() {
        let (dir, root) = tree();
        std::fs::write(dir.path().join("etc/passwd"), vec![b'x'; 100]).unwrap();
        assert_eq!(root.read_small_file(Path::new("/etc/passwd"), 100).unwrap().unwrap().len(), 100);
        assert!(matches!(root.read_small_file(Path::new("/etc/passwd"), 99), Err(InRootError::TooLarge { limit: 99, .. })));
    }

    #[test]
    fn mount_points_never_create_outside() {
        let (dir, root) = tree();
        let outside = tempfile::tempdir().unwrap();
        let target = outside.path().join("created-by-keel");
        symlink(&target, dir.path().join("etc/hosts")).unwrap();
        symlink(outside.path(), dir.path().join("data")).unwrap();
        root.mount_point(Path::new("/etc/hosts"), PointKind::File).unwrap();
        // `/data` is an absolute symlink: in the root it leads to a path that does not
        // exist there, which keel refuses rather than creating it anywhere.
        let err = root.mount_point(Path::new("/data/sub/dir"), PointKind::Directory).unwrap_err();
        assert!(matches!(err, InRootError::WrongType { found: "dangling symlink", .. }), "{err}");
        assert!(!target.exists(), "a dangling symlink made keel create a host file");
        assert!(!outside.path().join("sub").exists(), "a symlinked directory made keel create host directories");
        assert!(dir.path().join("etc/hosts").symlink_metadata().unwrap().is_file());
        // Control: the same symlinked directory, followed on the host, is the host's.
        std::fs::create_dir_all(dir.path().join("data/sub")).unwrap();
        assert!(outside.path().join("sub").is_dir());
    }

    #[test]
    fn executables_are_regular_files_with_an_x_bit() {
        let (dir, root) = tree();
        std::fs::create_dir_all(dir.path().join("bin")).unwrap();
        std::fs::write(dir.path().join("bin/app"), "").unwrap();
        assert!(!root.is_executable(Path::new("/bin/app")));
        std::fs::set_permissions(dir.path().join("bin/app"), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        assert!(root.is_executable(Path::new("/bin/app")));
        assert!(!root.is_executable(Path::new("/bin")));
    }
}
