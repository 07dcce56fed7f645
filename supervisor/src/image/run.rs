//! What a container start needs from its image: the layer directories for its overlay
//! and its declaration with the image config's defaults filled in.

use super::{defaults, import, store::Store};
use crate::runtime::LaunchPlan;
use crate::spec::{ContainerSpec, ImageRef};
use std::path::Path;

/// For a declaration with an image reference: find it in the store at `store_root`
/// (imported and unpacked by a job before, see [`need`]; "not in the store" otherwise),
/// and return the declaration completed by
/// the image config plus the layers, top first. A root filesystem directory passes through.
pub fn prepare(store_root: &Path, spec: &ContainerSpec) -> Result<(ContainerSpec, Vec<std::path::PathBuf>), String> {
    match &spec.image {
        ImageRef::Rootfs(dir) => Ok((spec.clone(), vec![dir.clone()])),
        ImageRef::Image(source) => {
            let store = Store::open(store_root).map_err(|e| format!("image store: {e}"))?;
            // Importing can take minutes: it is a job in a worker (see `need`), never done here.
            let resolved = import::ready(&store, source).map_err(|e| format!("image {source}: {e}"))?;
            if spec.user_namespace.is_some() {
                // Its root mounts the overlay and must walk to the layers (see crate::privdir).
                store.allow_traversal().map_err(|e| format!("image store: {e}"))?;
            }
            let process = resolved.config.config.clone().unwrap_or_default();
            let merged = defaults::apply(spec, &process).map_err(|e| format!("image {source}: {e}"))?;
            Ok((merged, resolved.lowers))
        }
    }
}

/// What `spec`'s image needs before a start, if anything: a pull (a registry image not
/// in the store) or an import (a file source not imported or changed, or layers not
/// unpacked). Only reads the store's small files; None when the store cannot be read
/// (the start then says why).
pub fn need(store_root: &Path, spec: &ContainerSpec) -> Option<crate::manager::ImageNeed> {
    use crate::image::ImageSource;
    use crate::worker::JobKind;
    let ImageRef::Image(source) = &spec.image else { return None };
    let store = Store::open(store_root).ok()?;
    let kind = if matches!(source, ImageSource::Registry(_)) { JobKind::Pull } else { JobKind::Import };
    let need = || Some(crate::manager::ImageNeed { kind, source: source.clone() });
    let Ok(Some(entry)) = store.lookup(&source.to_string()) else { return need() };
    if !matches!(source, ImageSource::Registry(_)) && entry.stamp != import::stamp(source) {
        return need();
    }
    match store.unpacked(&entry.manifest) {
        Ok(true) => None,
        Ok(false) => Some(crate::manager::ImageNeed { kind: JobKind::Import, source: source.clone() }),
        Err(_) => None,
    }
}

/// `runtime::plan` for a declaration whose image may need the store.
pub fn plan(store_root: &Path, spec: &ContainerSpec, state_root: &Path, cgroup2: bool) -> Result<(ContainerSpec, LaunchPlan), String> {
    let (spec, lowers) = prepare(store_root, spec)?;
    let mut plan = crate::runtime::plan(&spec, state_root, cgroup2);
    plan.root.lowers = lowers;
    Ok((spec, plan))
}
