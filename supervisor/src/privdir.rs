//! Private directories for keel's state: the image store (`/var/lib/keel/images`) and
//! the container state directories (`/var/lib/keel/containers/NAME`).
//!
//! They hold every image's files, setuid binaries included, and each container's
//! writable layer, so no other host user may list, read or traverse them: they are
//! created 0700, and a directory an earlier version left wider (0755) is narrowed to
//! 0700 when keel opens it. Files with state in them (refs.json) are 0600.
//!
//! One exception, for user namespaces: a user-namespaced container mounts its own
//! overlay as its namespace's root, a host uid such as 100000 that has no rights over
//! host root's directories. The kernel looks up the lower, upper and work directories
//! with that uid, so it needs search (x) permission on every directory above them. For
//! such a container keel opens the path, and only the path, with
//! [`allow_traversal`]: the store root, `layers/` and the containers' root become 0711
//! (others may pass through with an exact name but not list or read), and the
//! container's own directory is owned by its mapped root, mode 0700. Search-only keeps
//! the directories unlistable; a process inside a user namespace cannot gain privileges
//! from a setuid file owned by host root (the kernel ignores set-user-ID to uids not
//! mapped in the caller's namespace). [`ensure`] keeps 0711 once set, so a later start
//! of such a container does not race against the narrowing.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::Path;

/// Mode bits a private directory may have: the owner's, and search for the others.
const DIR_ALLOWED: u32 = 0o711;

/// The mode a private directory should have, given its current mode: unchanged when
/// only the owner (and, for traversal, search by others) has access, else 0700.
pub fn narrowed_dir_mode(mode: u32) -> u32 {
    let mode = mode & 0o7777;
    if mode & !DIR_ALLOWED == 0 && mode & 0o700 == 0o700 {
        mode
    } else {
        0o700
    }
}

/// The mode after [`allow_traversal`]: search added for group and others.
pub fn traversable_dir_mode(mode: u32) -> u32 {
    narrowed_dir_mode(mode) | 0o011
}

/// Create `dir` (and missing parents, with the usual umask) as a 0700 directory, or
/// narrow an existing one to 0700 (see [`narrowed_dir_mode`]).
pub fn ensure(dir: &Path) -> io::Result<()> {
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent)?;
    }
    match fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    set_mode(dir, narrowed_dir_mode)
}

/// Let others search (not list) `dir`: 0711. For paths a user-namespaced container's
/// root must walk to mount its overlay.
pub fn allow_traversal(dir: &Path) -> io::Result<()> {
    set_mode(dir, traversable_dir_mode)
}

/// Narrow an existing file to 0600 (absent is fine).
pub fn restrict_file(file: &Path) -> io::Result<()> {
    match fs::symlink_metadata(file) {
        Ok(meta) if meta.is_file() && meta.mode() & 0o077 != 0 => fs::set_permissions(file, fs::Permissions::from_mode(0o600)),
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Make `dir` a container's state directory: its parent (the containers' root) and
/// itself private, created if missing. With `mapped_root` (a user-namespaced
/// container's root as host ids) the parent becomes traversable and `dir` is owned by
/// that root, 0700, so it can reach its upper, work and rootfs directories.
pub fn container_dir(dir: &Path, mapped_root: Option<(u32, u32)>) -> io::Result<()> {
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        ensure(parent)?;
        if mapped_root.is_some() {
            allow_traversal(parent)?;
        }
    }
    ensure(dir)?;
    if let Some((uid, gid)) = mapped_root {
        std::os::unix::fs::lchown(dir, Some(uid), Some(gid))?;
    }
    Ok(())
}

/// At boot: narrow `dir` (when it exists) and what is directly in it (directories as
/// [`ensure`] does, files to 0600), so state an earlier version left readable (an old
/// container's upper directory, refs.json) is private before anything runs. Keeps
/// going past a failure and returns the first.
pub fn narrow_existing(dir: &Path) -> io::Result<()> {
    match fs::symlink_metadata(dir) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => return Err(io::Error::other(format!("{} is not a directory", dir.display()))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    }
    let mut first = set_mode(dir, narrowed_dir_mode).err();
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        let result = match fs::symlink_metadata(&path) {
            Ok(meta) if meta.is_dir() => set_mode(&path, narrowed_dir_mode),
            Ok(meta) if meta.is_file() => restrict_file(&path),
            Ok(_) => Ok(()),
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            first.get_or_insert(e);
        }
    }
    first.map_or(Ok(()), Err)
}

fn set_mode(dir: &Path, new: impl Fn(u32) -> u32) -> io::Result<()> {
    let meta = fs::symlink_metadata(dir)?;
    if !meta.is_dir() {
        return Err(io::Error::other(format!("{} is not a directory", dir.display())));
    }
    let wanted = new(meta.mode());
    if meta.mode() & 0o7777 != wanted {
        fs::set_permissions(dir, fs::Permissions::from_mode(wanted))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        fs::metadata(p).unwrap().mode() & 0o7777
    }

    #[test]
    fn modes() {
        assert_eq!(narrowed_dir_mode(0o40755), 0o700);
        assert_eq!(narrowed_dir_mode(0o700), 0o700);
        assert_eq!(narrowed_dir_mode(0o711), 0o711);
        assert_eq!(narrowed_dir_mode(0o701), 0o701);
        assert_eq!(narrowed_dir_mode(0o770), 0o700);
        assert_eq!(narrowed_dir_mode(0o1777), 0o700);
        assert_eq!(narrowed_dir_mode(0o2711), 0o700);
        assert_eq!(narrowed_dir_mode(0o500), 0o700, "the owner keeps full access");
        assert_eq!(traversable_dir_mode(0o755), 0o711);
        assert_eq!(traversable_dir_mode(0o700), 0o711);
    }

    #[test]
    fn ensure_creates_0700_and_narrows_a_wide_directory() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/b");
        ensure(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        // As an earlier version left it: narrowed.
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        ensure(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        // Opened for traversal: kept.
        allow_traversal(&dir).unwrap();
        assert_eq!(mode(&dir), 0o711);
        ensure(&dir).unwrap();
        assert_eq!(mode(&dir), 0o711);
        // A file in its place is an error, not followed or replaced.
        let file = tmp.path().join("f");
        fs::write(&file, "").unwrap();
        assert!(ensure(&file).is_err());
    }

    #[test]
    fn restrict_file_narrows_to_0600() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("refs.json");
        restrict_file(&file).unwrap();
        fs::write(&file, "{}").unwrap();
        fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).unwrap();
        restrict_file(&file).unwrap();
        assert_eq!(mode(&file), 0o600);
    }

    #[test]
    fn narrow_existing_fixes_what_an_earlier_version_left_wide() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("containers");
        assert!(narrow_existing(&root).is_ok(), "absent is fine");
        assert!(!root.exists(), "and not created");
        for dir in ["", "old", "old/upper", "userns"] {
            fs::create_dir_all(root.join(dir)).unwrap();
            fs::set_permissions(root.join(dir), fs::Permissions::from_mode(0o755)).unwrap();
        }
        fs::set_permissions(root.join("userns"), fs::Permissions::from_mode(0o700)).unwrap();
        fs::write(root.join("refs.json"), "{}").unwrap();
        fs::set_permissions(root.join("refs.json"), fs::Permissions::from_mode(0o644)).unwrap();
        narrow_existing(&root).unwrap();
        assert_eq!(
            (mode(&root), mode(&root.join("old")), mode(&root.join("userns")), mode(&root.join("refs.json"))),
            (0o700, 0o700, 0o700, 0o600)
        );
        // Below the first level the modes are the container's own (its root directory's).
        assert_eq!(mode(&root.join("old/upper")), 0o755);
    }

    #[test]
    fn container_dir_is_private_and_owned_by_the_mapped_root() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("containers");
        fs::create_dir(&root).unwrap();
        fs::set_permissions(&root, fs::Permissions::from_mode(0o755)).unwrap();
        container_dir(&root.join("web"), None).unwrap();
        assert_eq!((mode(&root), mode(&root.join("web"))), (0o700, 0o700));
        if !nix::unistd::geteuid().is_root() {
            eprintln!("SKIP container_dir with a mapped root: needs root to chown");
            return;
        }
        container_dir(&root.join("userns"), Some((100000, 100000))).unwrap();
        let meta = fs::metadata(root.join("userns")).unwrap();
        assert_eq!((meta.uid(), meta.gid(), mode(&root.join("userns"))), (100000, 100000, 0o700));
        assert_eq!(mode(&root), 0o711);
    }
}
