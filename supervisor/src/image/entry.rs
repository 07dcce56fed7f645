//! What one tar entry of a layer means, decided from its name alone (pure): a path
//! inside the layer root, a whiteout that deletes a lower path, or an opaque marker that
//! hides a lower directory's contents (OCI image-spec, layer.md "Whiteouts").

use std::path::{Component, Path, PathBuf};

/// The prefix of a whiteout file: `.wh.NAME` deletes NAME from the layers below.
pub const WHITEOUT_PREFIX: &str = ".wh.";

/// The opaque marker: `DIR/.wh..wh..opq` hides everything below DIR in lower layers.
pub const OPAQUE_MARKER: &str = ".wh..wh..opq";

/// What an entry does to the tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Create or replace the entry at this relative path (empty: the root itself).
    Put(PathBuf),
    /// Delete this relative path (and what is below it) from lower layers.
    Whiteout(PathBuf),
    /// Hide the lower contents of this relative directory (empty: the root).
    Opaque(PathBuf),
}

/// Turn a tar path into a path relative to the layer root: a leading `/` or `./` is
/// dropped (the spec treats absolute entries as relative to the root), `.` parts are
/// ignored, and `..` is refused because it could name something outside the layer.
pub fn relative(name: &Path) -> Result<PathBuf, String> {
    let mut out = PathBuf::new();
    for part in name.components() {
        match part {
            Component::Normal(p) => out.push(p),
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir => return Err(format!("{}: '..' would leave the layer root", name.display())),
            Component::Prefix(_) => return Err(format!("{}: not a Unix path", name.display())),
        }
    }
    Ok(out)
}

/// Classify the entry named `name`.
pub fn classify(name: &Path) -> Result<Change, String> {
    let rel = relative(name)?;
    let Some(base) = rel.file_name().and_then(|b| b.to_str()) else { return Ok(Change::Put(rel)) };
    let dir = rel.parent().map(Path::to_path_buf).unwrap_or_default();
    if base == OPAQUE_MARKER {
        return Ok(Change::Opaque(dir));
    }
    if let Some(target) = base.strip_prefix(WHITEOUT_PREFIX) {
        if target.is_empty() || target == "." || target == ".." || target.starts_with(WHITEOUT_PREFIX) {
            return Err(format!("{}: not a valid whiteout", name.display()));
        }
        return Ok(Change::Whiteout(dir.join(target)));
    }
    Ok(Change::Put(rel))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_made_relative_and_dotdot_is_refused() {
        assert_eq!(relative(Path::new("./etc/passwd")).unwrap(), Path::new("etc/passwd"));
        assert_eq!(relative(Path::new("/etc/./passwd")).unwrap(), Path::new("etc/passwd"));
        assert_eq!(relative(Path::new("./")).unwrap(), Path::new(""));
        assert!(relative(Path::new("a/../../etc/shadow")).unwrap_err().contains("'..' would leave the layer root"));
        assert!(relative(Path::new("../x")).is_err());
    }

    #[test]
    fn whiteouts_and_opaque_markers() {
        assert_eq!(classify(Path::new("etc/.wh.motd")).unwrap(), Change::Whiteout("etc/motd".into()));
        assert_eq!(classify(Path::new(".wh.opt")).unwrap(), Change::Whiteout("opt".into()));
        assert_eq!(classify(Path::new("./var/.wh..wh..opq")).unwrap(), Change::Opaque("var".into()));
        assert_eq!(classify(Path::new(".wh..wh..opq")).unwrap(), Change::Opaque("".into()));
        assert_eq!(classify(Path::new("usr/bin/sh")).unwrap(), Change::Put("usr/bin/sh".into()));
        assert!(classify(Path::new("a/.wh.")).is_err());
        assert!(classify(Path::new("a/.wh...")).is_err());
        assert!(classify(Path::new("a/.wh..wh.plnk")).is_err());
        assert!(classify(Path::new("a/.wh.../../x")).is_err());
    }
}
