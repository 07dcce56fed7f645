//! The hierarchy keel manages: `<root>/keel/<NAME>`, with controllers enabled on the
//! parents and limits written into each container's leaf.

use super::container::ContainerCgroup;
use super::error::CgroupError;
use super::fsio;
use super::limits::{self, controllers_needed, limit_writes, reset_writes};
use crate::spec::{ContainerName, Resources};
use std::path::{Path, PathBuf};

/// Where cgroup2 is mounted on a keel host.
pub const DEFAULT_ROOT: &str = "/sys/fs/cgroup";
/// The cgroup under the root that holds every container's cgroup.
pub const KEEL_GROUP: &str = "keel";

/// A cgroup v2 hierarchy rooted at `root` (normally [`DEFAULT_ROOT`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupTree {
    root: PathBuf,
}

impl CgroupTree {
    /// The hierarchy at `root`; nothing is checked yet.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        CgroupTree { root: root.into() }
    }

    /// The hierarchy root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Whether `root` is a cgroup v2 hierarchy (it has `cgroup.controllers`).
    pub fn is_v2(&self) -> bool {
        self.root.join("cgroup.controllers").is_file()
    }

    /// `<root>/keel`.
    pub fn keel_dir(&self) -> PathBuf {
        self.root.join(KEEL_GROUP)
    }

    /// A handle on `name`'s cgroup, whether or not it exists (e.g. to kill or remove it).
    pub fn container(&self, name: &ContainerName) -> ContainerCgroup {
        ContainerCgroup::at(self.keel_dir().join(name.as_str()))
    }

    /// Create (or reuse) `name`'s cgroup with `resources` applied.
    ///
    /// Validates first, writing nothing if anything is wrong: the root must be cgroup v2,
    /// list every needed controller in `cgroup.controllers`, and the leaf path must not
    /// be a non-directory. Then it creates `<root>/keel`, enables the controllers in
    /// `<root>` and `<root>/keel` (never in the leaf), creates the leaf (an existing one
    /// from an earlier run is killed and reused, its stale limits reset), and writes the
    /// limits into the leaf.
    pub fn prepare(
        &self,
        name: &ContainerName,
        resources: &Resources,
    ) -> Result<ContainerCgroup, CgroupError> {
        let needed = controllers_needed(resources);
        self.check_controllers(&needed)?;
        let cgroup = self.container(name);
        fsio::ensure_not_other(&self.keel_dir())?;
        fsio::ensure_not_other(cgroup.dir())?;

        fsio::mkdir(&self.keel_dir())?;
        self.enable_controllers(&needed)?;
        if !fsio::mkdir(cgroup.dir())? {
            cgroup.kill()?;
            reset_stale_limits(cgroup.dir(), resources)?;
        }
        for (file, data) in limit_writes(resources) {
            fsio::write(&cgroup.dir().join(file), &data)?;
        }
        Ok(cgroup)
    }

    /// Fail unless the root is cgroup v2 and offers every controller of `needed`.
    fn check_controllers(&self, needed: &[&'static str]) -> Result<(), CgroupError> {
        if !self.is_v2() {
            return Err(CgroupError::NotV2 { root: self.root.clone() });
        }
        let path = self.root.join("cgroup.controllers");
        let text = fsio::read(&path)?;
        let missing = limits::missing_controllers(needed, &text);
        if missing.is_empty() {
            return Ok(());
        }
        let available = limits::parse_controllers(&text);
        Err(CgroupError::ControllersUnavailable { path, missing, available })
    }

    /// Enable `needed` in `<root>/cgroup.subtree_control`, then in
    /// `<root>/keel/cgroup.subtree_control` (which only offers what its parent enabled).
    fn enable_controllers(&self, needed: &[&'static str]) -> Result<(), CgroupError> {
        if needed.is_empty() {
            return Ok(());
        }
        let line = limits::subtree_control_line(needed);
        for dir in [self.root.clone(), self.keel_dir()] {
            fsio::write(&dir.join("cgroup.subtree_control"), &line)?;
        }
        Ok(())
    }
}

/// Return limits the new declaration leaves unset to their defaults, in the files that
/// exist (a controller not enabled for the leaf has none).
fn reset_stale_limits(dir: &Path, resources: &Resources) -> Result<(), CgroupError> {
    for (file, data) in reset_writes(resources) {
        fsio::write_existing(&dir.join(file), &data)?;
    }
    Ok(())
}
