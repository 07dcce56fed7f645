//! Resolving a path of the booted system to a host path under `root` without ever
//! letting the kernel follow a symlink: every parent component is checked with
//! `symlink_metadata`, symlinks are resolved by hand as if `root` were `/`, and a
//! link whose `..` climbs above the root is refused.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use super::write::ApplyErrorKind;

/// Most symlinks followed while resolving one path (as Linux's MAXSYMLINKS).
const MAX_LINKS: usize = 40;

/// Resolves `path` (absolute, in the booted system) to a host path under `root`
/// whose parent contains no symlinks; the last component itself is not followed.
/// With `created`, missing parent directories are made (0755, root-owned) and
/// recorded there, in creation order. Errors carry the host path concerned.
pub(super) fn resolve(root: &Path, path: &str, mut created: Option<&mut Vec<PathBuf>>) -> Result<PathBuf, (PathBuf, ApplyErrorKind)> {
    let invalid = || (root.join(path.trim_start_matches('/')), ApplyErrorKind::InvalidPath);
    let p = Path::new(path);
    if !p.is_absolute() {
        return Err(invalid());
    }
    let mut comps: Vec<OsString> = Vec::new();
    for c in p.components() {
        match c {
            Component::Normal(n) => comps.push(n.to_os_string()),
            Component::ParentDir => comps.push("..".into()),
            Component::RootDir | Component::CurDir => {}
            Component::Prefix(_) => return Err(invalid()),
        }
    }
    let name = match comps.pop() {
        Some(n) if n != ".." => n,
        _ => return Err(invalid()),
    };
    let parent = resolve_dir(root, comps, &mut created)?;
    Ok(parent.join(name))
}

fn host(root: &Path, stack: &[OsString]) -> PathBuf {
    let mut p = root.to_path_buf();
    p.extend(stack);
    p
}

fn resolve_dir(root: &Path, comps: Vec<OsString>, created: &mut Option<&mut Vec<PathBuf>>) -> Result<PathBuf, (PathBuf, ApplyErrorKind)> {
    let mut queue: VecDeque<OsString> = comps.into();
    let mut stack: Vec<OsString> = Vec::new();
    let mut links = 0;
    let mut last_link: Option<PathBuf> = None;
    while let Some(c) = queue.pop_front() {
        if c == ".." {
            if stack.pop().is_none() {
                let link = last_link.clone().unwrap_or_else(|| root.to_path_buf());
                return Err((link.clone(), ApplyErrorKind::Escape { link }));
            }
            continue;
        }
        stack.push(c);
        let here = host(root, &stack);
        match fs::symlink_metadata(&here) {
            Ok(m) if m.file_type().is_symlink() => {
                links += 1;
                if links > MAX_LINKS {
                    return Err((here, ApplyErrorKind::SymlinkLoop));
                }
                let target = fs::read_link(&here).map_err(|e| (here.clone(), e.into()))?;
                stack.pop();
                if target.is_absolute() {
                    stack.clear();
                }
                for t in target.components().rev() {
                    match t {
                        Component::Normal(n) => queue.push_front(n.to_os_string()),
                        Component::ParentDir => queue.push_front("..".into()),
                        _ => {}
                    }
                }
                last_link = Some(here);
            }
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Err((here, ApplyErrorKind::NotADirectory)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if let Some(list) = created.as_deref_mut() {
                    make_dir(&here).map_err(|e| (here.clone(), e.into()))?;
                    list.push(here);
                }
            }
            Err(e) => return Err((here, e.into())),
        }
    }
    Ok(host(root, &stack))
}

fn make_dir(path: &Path) -> io::Result<()> {
    fs::DirBuilder::new().mode(0o755).create(path)?;
    set_owner(path, 0, 0)?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o755))
}

/// Changes the owner of `path` (not following a final symlink) unless it already matches.
pub(super) fn set_owner(path: &Path, uid: u32, gid: u32) -> io::Result<()> {
    let m = fs::symlink_metadata(path)?;
    if m.uid() != uid || m.gid() != gid {
        std::os::unix::fs::lchown(path, Some(uid), Some(gid))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("keel-safepath-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn plain_paths_resolve_under_root_and_parents_are_created() {
        let root = tmp("plain");
        let mut made = Vec::new();
        let p = resolve(&root, "/etc/keel/x.toml", Some(&mut made)).unwrap();
        assert_eq!(p, root.join("etc/keel/x.toml"));
        assert_eq!(made, vec![root.join("etc"), root.join("etc/keel")]);
        let mode = fs::metadata(root.join("etc/keel")).unwrap().permissions().mode();
        assert_eq!(mode & 0o7777, 0o755);
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn absolute_symlinks_resolve_inside_root() {
        let root = tmp("abs");
        fs::create_dir_all(root.join("run")).unwrap();
        fs::create_dir_all(root.join("var")).unwrap();
        symlink("/run", root.join("var/run")).unwrap();
        let p = resolve(&root, "/var/run/x", None).unwrap();
        assert_eq!(p, root.join("run/x"));
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn relative_symlink_climbing_out_is_refused() {
        let root = tmp("escape");
        fs::create_dir_all(root.join("etc")).unwrap();
        symlink("../../../../../../tmp", root.join("etc/evil")).unwrap();
        let (path, kind) = resolve(&root, "/etc/evil/x", None).unwrap_err();
        assert_eq!(path, root.join("etc/evil"));
        assert!(matches!(kind, ApplyErrorKind::Escape { .. }), "{kind}");
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn loops_and_files_as_dirs_are_errors() {
        let root = tmp("loop");
        symlink("/a", root.join("a")).unwrap();
        let (_, kind) = resolve(&root, "/a/x", None).unwrap_err();
        assert!(matches!(kind, ApplyErrorKind::SymlinkLoop));
        fs::write(root.join("f"), b"").unwrap();
        let (path, kind) = resolve(&root, "/f/x", None).unwrap_err();
        assert_eq!(path, root.join("f"));
        assert!(matches!(kind, ApplyErrorKind::NotADirectory));
        assert!(matches!(resolve(&root, "rel", None), Err((_, ApplyErrorKind::InvalidPath))));
        assert!(matches!(resolve(&root, "/", None), Err((_, ApplyErrorKind::InvalidPath))));
        fs::remove_dir_all(&root).unwrap();
    }
}
