//! What a container start needs from its image: the layer directories for its overlay
//! and its declaration with the image config's defaults filled in.

use super::{defaults, import, store::Store};
use crate::runtime::LaunchPlan;
use crate::spec::{ContainerSpec, ImageRef};
use std::path::Path;

/// For a declaration with an image reference: import it into the store at `store_root`
/// when it is not there (or its file changed), and return the declaration completed by
/// the image config plus the layers, top first. A root filesystem directory passes through.
pub fn prepare(store_root: &Path, spec: &ContainerSpec) -> Result<(ContainerSpec, Vec<std::path::PathBuf>), String> {
    match &spec.image {
        ImageRef::Rootfs(dir) => Ok((spec.clone(), vec![dir.clone()])),
        ImageRef::Image(source) => {
            let store = Store::open(store_root).map_err(|e| format!("image store: {e}"))?;
            let resolved = import::ensure(&store, source).map_err(|e| format!("image {source}: {e}"))?;
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

/// `runtime::plan` for a declaration whose image may need the store.
pub fn plan(store_root: &Path, spec: &ContainerSpec, state_root: &Path, cgroup2: bool) -> Result<(ContainerSpec, LaunchPlan), String> {
    let (spec, lowers) = prepare(store_root, spec)?;
    let mut plan = crate::runtime::plan(&spec, state_root, cgroup2);
    plan.root.lowers = lowers;
    Ok((spec, plan))
}
