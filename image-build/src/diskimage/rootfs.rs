//! Writing planned entries into a directory, the input of mkfs.erofs.
//!
//! Rootless: ownership is set by mkfs.erofs (--all-root) and character devices are left
//! out (devtmpfs provides /dev at boot). Directory modes are applied last, deepest
//! first, so a read-only directory does not stop its own children being written.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::tree::{Entry, Node, Source, DEFAULT_FILE_MODE};

/// Create every entry under `dir` (which must be empty or missing).
pub fn write_tree(entries: &[Entry], dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut dirs = Vec::new();
    for entry in entries {
        let path = dir.join(entry.path.relative());
        match &entry.node {
            Node::Dir { mode } => {
                std::fs::create_dir_all(&path)?;
                dirs.push((path, *mode));
            }
            Node::File { mode, source } => {
                let mode = match source {
                    Source::Inline(bytes) => {
                        std::fs::write(&path, bytes)?;
                        mode.unwrap_or(DEFAULT_FILE_MODE)
                    }
                    Source::Host(from) => {
                        std::fs::copy(from, &path).map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", from.display())))?;
                        mode.unwrap_or(std::fs::metadata(from)?.permissions().mode() & 0o7777)
                    }
                };
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))?;
            }
            Node::Symlink { target } => std::os::unix::fs::symlink(target, &path)?,
            Node::CharDev { .. } => {}
        }
    }
    for (path, mode) in dirs.iter().rev() {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(*mode))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::names::ImagePath;

    #[test]
    fn entries_become_files_links_and_directories() {
        let out = tempfile::tempdir().unwrap();
        let e = |path: &str, node| Entry { path: ImagePath::try_from(path).unwrap(), node };
        let entries = [
            e("/etc", Node::Dir { mode: 0o555 }),
            e("/etc/hostname", Node::File { mode: Some(0o600), source: Source::Inline(b"h\n".to_vec()) }),
            e("/dev", Node::Dir { mode: 0o755 }),
            e("/dev/console", Node::CharDev { mode: 0o600, major: 5, minor: 1 }),
            e("/init", Node::Symlink { target: "/usr/bin/keel".into() }),
        ];
        write_tree(&entries, out.path()).unwrap();
        let meta = std::fs::metadata(out.path().join("etc/hostname")).unwrap();
        assert_eq!(meta.permissions().mode() & 0o7777, 0o600);
        assert_eq!(std::fs::metadata(out.path().join("etc")).unwrap().permissions().mode() & 0o7777, 0o555);
        assert_eq!(std::fs::read_link(out.path().join("init")).unwrap(), Path::new("/usr/bin/keel"));
        assert!(!out.path().join("dev/console").exists());
    }
}
