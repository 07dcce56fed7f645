//! The set of entries an image holds, keyed by path.
//!
//! A [`Tree`] refuses two entries at one path, and turns into a list sorted by path
//! in which every parent directory exists (missing ones are added with mode 0755)
//! and comes before its children, which is the order an initramfs must be unpacked in.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::names::ImagePath;

/// Mode of directories that are implied by a deeper entry.
pub const IMPLIED_DIR_MODE: u32 = 0o755;
/// Mode of inline files that name none.
pub const DEFAULT_FILE_MODE: u32 = 0o644;

/// Why entries do not form a tree.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TreeError {
    /// Two entries claim one path.
    #[error("{path}: two entries for this path in the image ({first} and {second})")]
    Duplicate {
        /// The path.
        path: ImagePath,
        /// What was there first.
        first: String,
        /// What was added second.
        second: String,
    },
    /// An entry lies below something that is not a directory.
    #[error("{path}: its parent {parent} is not a directory in the image")]
    ParentNotDirectory {
        /// The entry's path.
        path: ImagePath,
        /// The non-directory above it.
        parent: ImagePath,
    },
}

/// Where a regular file's bytes come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Bytes produced by the build itself.
    Inline(Vec<u8>),
    /// A file on the build host, read when the image is written.
    Host(PathBuf),
}

/// What an entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    /// A directory with these permission bits.
    Dir {
        /// Permission bits.
        mode: u32,
    },
    /// A regular file.
    File {
        /// Permission bits; `None` takes those of a host source (0644 for inline data).
        mode: Option<u32>,
        /// Its contents.
        source: Source,
    },
    /// A symbolic link.
    Symlink {
        /// The target, verbatim.
        target: String,
    },
    /// A character device node.
    CharDev {
        /// Permission bits.
        mode: u32,
        /// Major number.
        major: u32,
        /// Minor number.
        minor: u32,
    },
}

impl Node {
    /// A short description for error messages.
    pub fn describe(&self) -> String {
        match self {
            Node::Dir { .. } => "a directory".to_string(),
            Node::File { source: Source::Host(path), .. } => format!("file {}", path.display()),
            Node::File { source: Source::Inline(_), .. } => "a generated file".to_string(),
            Node::Symlink { target } => format!("a symlink to {target}"),
            Node::CharDev { major, minor, .. } => format!("device {major}:{minor}"),
        }
    }
}

/// One entry of the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Where it is in the image.
    pub path: ImagePath,
    /// What it is.
    pub node: Node,
}

/// Entries keyed by path, at most one per path.
#[derive(Debug, Clone, Default)]
pub struct Tree {
    nodes: BTreeMap<ImagePath, Node>,
}

impl Tree {
    /// An empty tree.
    pub fn new() -> Self {
        Tree::default()
    }

    /// Add an entry; a second entry at the same path is an error.
    pub fn insert(&mut self, path: ImagePath, node: Node) -> Result<(), TreeError> {
        if let Some(first) = self.nodes.get(&path) {
            return Err(TreeError::Duplicate { first: first.describe(), second: node.describe(), path });
        }
        self.nodes.insert(path, node);
        Ok(())
    }

    /// Whether some entry has this path.
    pub fn contains(&self, path: &ImagePath) -> bool {
        self.nodes.contains_key(path)
    }

    /// All entries sorted by path, with missing parent directories added.
    pub fn into_entries(mut self) -> Result<Vec<Entry>, TreeError> {
        let paths: Vec<ImagePath> = self.nodes.keys().cloned().collect();
        for path in paths {
            let mut parent = path.parent();
            while let Some(dir) = parent {
                match self.nodes.get(&dir) {
                    Some(Node::Dir { .. }) => {}
                    Some(_) => return Err(TreeError::ParentNotDirectory { path, parent: dir }),
                    None => {
                        self.nodes.insert(dir.clone(), Node::Dir { mode: IMPLIED_DIR_MODE });
                    }
                }
                parent = dir.parent();
            }
        }
        Ok(self.nodes.into_iter().map(|(path, node)| Entry { path, node }).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(s: &str) -> ImagePath {
        ImagePath::try_from(s).expect("valid test path")
    }

    fn link(target: &str) -> Node {
        Node::Symlink { target: target.to_string() }
    }

    #[test]
    fn entries_are_sorted_with_parents_first() {
        let mut tree = Tree::new();
        tree.insert(path("/usr/bin/keel"), link("x")).unwrap();
        tree.insert(path("/tmp"), Node::Dir { mode: 0o1777 }).unwrap();
        tree.insert(path("/lib/modules/6.1/kernel/a.ko"), link("y")).unwrap();
        tree.insert(path("/usr-local"), link("z")).unwrap();
        let entries = tree.into_entries().unwrap();
        let paths: Vec<&str> = entries.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "/lib",
                "/lib/modules",
                "/lib/modules/6.1",
                "/lib/modules/6.1/kernel",
                "/lib/modules/6.1/kernel/a.ko",
                "/tmp",
                "/usr",
                "/usr/bin",
                "/usr/bin/keel",
                "/usr-local",
            ]
        );
        assert_eq!(entries[0].node, Node::Dir { mode: IMPLIED_DIR_MODE });
        assert_eq!(entries[5].node, Node::Dir { mode: 0o1777 }, "explicit modes are kept");
    }

    #[test]
    fn duplicates_are_refused_with_both_sides() {
        let mut tree = Tree::new();
        tree.insert(path("/etc/foo"), link("a")).unwrap();
        let err = tree.insert(path("/etc/foo"), link("b")).unwrap_err();
        assert_eq!(err.to_string(), "/etc/foo: two entries for this path in the image (a symlink to a and a symlink to b)");
        assert!(tree.contains(&path("/etc/foo")));
    }

    #[test]
    fn entries_under_a_non_directory_are_refused() {
        let mut tree = Tree::new();
        tree.insert(path("/etc"), link("x")).unwrap();
        tree.insert(path("/etc/hostname"), link("y")).unwrap();
        let err = tree.into_entries().unwrap_err();
        assert_eq!(err, TreeError::ParentNotDirectory { path: path("/etc/hostname"), parent: path("/etc") });
    }
}
