//! Kernel module resolution: which files to load, in which order.
//!
//! keel has no modprobe. The image lists module names; this module reads the kernel's
//! `modules.dep` and turns each name into the ordered list of files to hand to
//! `finit_module`, dependencies first. The parsing and ordering are pure so that
//! `keel-build` can use the very same rules to pick the files it puts in an image.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// A module name in canonical form (`-` folded to `_`, as the kernel does).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ModuleName(String);

impl ModuleName {
    /// Canonicalise a user-written module name (`virtio-net` and `virtio_net` are one module).
    pub fn new(name: &str) -> Self {
        ModuleName(name.trim().replace('-', "_"))
    }

    /// The name derived from a module file path such as `kernel/net/bridge/bridge.ko.xz`.
    pub fn from_path(path: &str) -> Self {
        let file = path.rsplit('/').next().unwrap_or(path);
        let stem = file.split(".ko").next().unwrap_or(file);
        ModuleName::new(stem)
    }

    /// The canonical name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ModuleName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One module's file and its direct dependencies, as modules.dep lists them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleEntry {
    /// Path of the module file, relative to the modules directory.
    pub path: String,
    /// Files of the modules it needs, relative paths, as listed.
    pub deps: Vec<String>,
}

/// Why a module could not be resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    /// The name is not in modules.dep: a typo, or a driver that is built in or absent.
    #[error("module {0}: not found in modules.dep (is the name right? built-in drivers need no loading)")]
    NotFound(ModuleName),
    /// A line of modules.dep could not be read.
    #[error("modules.dep line {line}: {reason}")]
    BadLine {
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// The parsed `modules.dep` of one kernel.
#[derive(Debug, Clone, Default)]
pub struct ModulesDep {
    by_name: BTreeMap<ModuleName, ModuleEntry>,
}

impl ModulesDep {
    /// Parse the text of a `modules.dep` file (`path: dep dep ...` per line).
    pub fn parse(text: &str) -> Result<Self, ResolveError> {
        let mut by_name = BTreeMap::new();
        for (index, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (path, deps) =
                line.split_once(':').ok_or(ResolveError::BadLine { line: index + 1, reason: "missing ':' after the module path" })?;
            let path = path.trim();
            if path.is_empty() {
                return Err(ResolveError::BadLine { line: index + 1, reason: "empty module path" });
            }
            let entry = ModuleEntry { path: path.to_string(), deps: deps.split_whitespace().map(str::to_string).collect() };
            by_name.insert(ModuleName::from_path(path), entry);
        }
        Ok(ModulesDep { by_name })
    }

    /// The entry of one module, if the kernel has it as a loadable module.
    pub fn get(&self, name: &ModuleName) -> Option<&ModuleEntry> {
        self.by_name.get(name)
    }

    /// Module files to load for `name`, dependencies first, each file once.
    ///
    /// modules.dep already lists the full transitive closure, deepest dependency
    /// last, so loading the list reversed and then the module itself is a valid order.
    pub fn load_order(&self, name: &ModuleName) -> Result<Vec<String>, ResolveError> {
        let entry = self.get(name).ok_or_else(|| ResolveError::NotFound(name.clone()))?;
        let mut order: Vec<String> = Vec::new();
        for dep in entry.deps.iter().rev() {
            if !order.contains(dep) {
                order.push(dep.clone());
            }
        }
        order.push(entry.path.clone());
        Ok(order)
    }

    /// The set of module files needed by all `names` (for building an image), plus the
    /// names that could not be found.
    pub fn closure<'a>(&self, names: impl IntoIterator<Item = &'a ModuleName>) -> (BTreeSet<String>, Vec<ResolveError>) {
        let mut files = BTreeSet::new();
        let mut missing = Vec::new();
        for name in names {
            match self.load_order(name) {
                Ok(order) => files.extend(order),
                Err(err) => missing.push(err),
            }
        }
        (files, missing)
    }

    /// A modules.dep text restricted to `files` (what an image ships), sorted, so that
    /// the guest sees only the modules it actually has.
    pub fn render_subset(&self, files: &BTreeSet<String>) -> String {
        let mut out = String::new();
        let mut entries: Vec<&ModuleEntry> = self.by_name.values().filter(|e| files.contains(&e.path)).collect();
        entries.sort_by(|a, b| a.path.cmp(&b.path));
        for entry in entries {
            out.push_str(&entry.path);
            out.push(':');
            for dep in &entry.deps {
                out.push(' ');
                out.push_str(dep);
            }
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEP: &str = "kernel/net/bridge/bridge.ko: kernel/net/802/stp.ko kernel/net/llc/llc.ko\n\
kernel/net/802/stp.ko: kernel/net/llc/llc.ko\n\
kernel/net/llc/llc.ko:\n\
kernel/drivers/net/virtio_net.ko: kernel/net/core/failover.ko kernel/drivers/net/net_failover.ko\n";

    #[test]
    fn dependencies_come_first_and_once() {
        let dep = ModulesDep::parse(DEP).unwrap();
        let order = dep.load_order(&ModuleName::new("bridge")).unwrap();
        assert_eq!(order, ["kernel/net/llc/llc.ko", "kernel/net/802/stp.ko", "kernel/net/bridge/bridge.ko"]);
    }

    #[test]
    fn dashes_and_underscores_are_one_name() {
        let dep = ModulesDep::parse(DEP).unwrap();
        assert!(dep.load_order(&ModuleName::new("virtio-net")).is_ok());
        assert_eq!(ModuleName::from_path("kernel/x/foo-bar.ko.xz").as_str(), "foo_bar");
    }

    #[test]
    fn missing_module_is_named() {
        let dep = ModulesDep::parse(DEP).unwrap();
        let err = dep.load_order(&ModuleName::new("nosuch")).unwrap_err();
        assert_eq!(err, ResolveError::NotFound(ModuleName::new("nosuch")));
        assert!(err.to_string().contains("module nosuch: not found"));
    }

    #[test]
    fn bad_line_is_reported_with_its_number() {
        let err = ModulesDep::parse("ok.ko:\nbroken line\n").unwrap_err();
        assert_eq!(err, ResolveError::BadLine { line: 2, reason: "missing ':' after the module path" });
    }

    #[test]
    fn subset_keeps_only_shipped_files() {
        let dep = ModulesDep::parse(DEP).unwrap();
        let (files, missing) = dep.closure([&ModuleName::new("stp"), &ModuleName::new("zz")]);
        assert_eq!(missing.len(), 1);
        assert_eq!(dep.render_subset(&files), "kernel/net/802/stp.ko: kernel/net/llc/llc.ko\nkernel/net/llc/llc.ko:\n");
    }
}
