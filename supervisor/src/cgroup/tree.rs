//! The hierarchy keel manages: `<root>/keel/<NAME>/{main,exec-*}`, with controllers
//! enabled on the parents (`<root>`, `<root>/keel`), the host's reserve written into
//! `<root>/keel`, each container's limits into `<root>/keel/<NAME>`, and its processes
//! in the leaves below that.

use super::container::{ContainerCgroup, MAIN_LEAF};
use super::devices;
use super::error::CgroupError;
use super::fsio;
use super::limits::{self, controllers_needed, limit_writes, reset_writes};
use super::reserve::ParentLimits;
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
    parent: Option<ParentLimits>,
    device_filter: bool,
}

impl CgroupTree {
    /// The hierarchy at `root`; nothing is checked yet. `<root>/keel` gets no limits of
    /// its own unless [`with_parent_limits`](Self::with_parent_limits) says so.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        CgroupTree { root: root.into(), parent: None, device_filter: true }
    }

    /// Do not attach the device filter (tests on plain directories, which are no
    /// cgroups a BPF program can be attached to).
    pub fn without_device_filter(mut self) -> Self {
        self.device_filter = false;
        self
    }

    /// Also write `limits` (the host's reserve, see [`super::reserve`]) into
    /// `<root>/keel` whenever a container cgroup is prepared.
    pub fn with_parent_limits(mut self, limits: ParentLimits) -> Self {
        self.parent = Some(limits);
        self
    }

    /// The limits written into `<root>/keel`, if any.
    pub fn parent_limits(&self) -> Option<ParentLimits> {
        self.parent
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
    /// list every needed controller in `cgroup.controllers`, and the container's path
    /// must not be a non-directory. Then it creates `<root>/keel`, enables the
    /// controllers in `<root>` and `<root>/keel` (never below), writes the parent limits
    /// into `<root>/keel`, creates `<root>/keel/<NAME>` (an existing one from an earlier
    /// run is killed and reused, its stale limits reset and its stale exec cgroups
    /// removed), writes the limits into it, attaches the device filter to it (unless
    /// [`without_device_filter`](Self::without_device_filter)), and creates its `main`
    /// leaf.
    ///
    /// No controller is enabled in `<root>/keel/<NAME>`, so everything its leaves do is
    /// charged to, limited by and counted in `<root>/keel/<NAME>` (memory.events,
    /// pids.events), and cgroup v2's "no internal processes" rule never applies to it.
    pub fn prepare(&self, name: &ContainerName, resources: &Resources) -> Result<ContainerCgroup, CgroupError> {
        self.prepare_with_devices(name, resources, &devices::DEFAULT_RULES)
    }

    /// [`prepare`](Self::prepare) with the device filter made of `rules` instead of the
    /// OCI defaults (a privileged container's [`devices::PRIVILEGED_RULES`]).
    pub fn prepare_with_devices(
        &self,
        name: &ContainerName,
        resources: &Resources,
        rules: &[devices::DeviceRule],
    ) -> Result<ContainerCgroup, CgroupError> {
        let needed = controllers_needed(resources);
        self.check_controllers(&needed)?;
        let cgroup = self.container(name);
        fsio::ensure_not_other(&self.keel_dir())?;
        fsio::ensure_not_other(cgroup.dir())?;

        fsio::mkdir(&self.keel_dir())?;
        self.enable_controllers(&needed)?;
        if let Some(parent) = self.parent {
            for (file, data) in parent.writes() {
                fsio::write(&self.keel_dir().join(file), &data)?;
            }
        }
        if !fsio::mkdir(cgroup.dir())? {
            cgroup.kill()?;
            cgroup.remove_stale_children();
            reset_stale_limits(cgroup.dir(), resources)?;
        }
        for (file, data) in limit_writes(resources) {
            fsio::write(&cgroup.dir().join(file), &data)?;
        }
        if self.device_filter {
            devices::attach_filter(cgroup.dir(), rules)?;
        }
        fsio::mkdir(&cgroup.dir().join(MAIN_LEAF))?;
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
