//! What `keelctl image ls` and `keelctl image inspect` show: each image with its names
//! and size, and each layer with what it adds, changes and removes (the view people use
//! `dive` for). The diff of layers is pure ([`diff_layers`]); reading tars is apart.

use super::digest::Digest;
use super::entry::{classify, Change};
use super::error::ImageError;
use super::limits::{Meter, MeteredReader, Resource};
use super::oci::ProcessConfig;
use super::store::{open_layer, Store};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

/// One line of `keelctl image ls`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageSummary {
    /// The manifest digest.
    pub manifest: Digest,
    /// Every name of it in the store.
    pub names: Vec<String>,
    /// Number of layers.
    pub layers: usize,
    /// Bytes of its blobs (compressed layers, config, manifest).
    pub size: u64,
}

/// `keelctl image inspect`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageDetail {
    /// The summary.
    pub summary: ImageSummary,
    /// The process defaults from the image config.
    pub config: ProcessConfig,
    /// Layers, bottom first.
    pub layers: Vec<LayerDetail>,
}

/// One layer and its changes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerDetail {
    /// The blob.
    pub digest: String,
    /// The uncompressed tar's digest.
    pub diff_id: String,
    /// Compressed size.
    pub size: u64,
    /// Bytes of file content in it.
    pub content: u64,
    /// Paths it adds.
    pub added: Vec<String>,
    /// Paths it replaces (present below).
    pub changed: Vec<String>,
    /// Paths it removes (whiteouts, opaque directories), with what was below them.
    pub removed: Vec<String>,
}

/// Diff each layer's entries against the tree the layers below it make.
/// `layers` are bottom first; each entry is its change and its content size.
pub fn diff_layers(layers: &[Vec<(Change, u64)>]) -> Vec<LayerDetail> {
    let mut tree: BTreeSet<PathBuf> = BTreeSet::new();
    let mut out = Vec::new();
    for entries in layers {
        let mut detail = LayerDetail::default();
        let puts: BTreeSet<PathBuf> =
            entries.iter().filter_map(|(c, _)| if let Change::Put(p) = c { Some(p.clone()) } else { None }).collect();
        for (change, size) in entries {
            match change {
                Change::Put(p) if p.as_os_str().is_empty() => {}
                Change::Put(p) => {
                    detail.content += size;
                    let list = if tree.contains(p) { &mut detail.changed } else { &mut detail.added };
                    list.push(p.display().to_string());
                }
                Change::Whiteout(p) => {
                    let gone: Vec<PathBuf> = tree.iter().filter(|t| t.starts_with(p)).cloned().collect();
                    detail.removed.extend(gone.iter().map(|g| g.display().to_string()));
                    gone.iter().for_each(|g| {
                        tree.remove(g);
                    });
                }
                Change::Opaque(d) => {
                    let gone: Vec<PathBuf> = tree.iter().filter(|t| t.starts_with(d) && *t != d && !puts.contains(*t)).cloned().collect();
                    detail.removed.extend(gone.iter().map(|g| g.display().to_string()));
                    gone.iter().for_each(|g| {
                        tree.remove(g);
                    });
                }
            }
        }
        tree.extend(puts);
        out.push(detail);
    }
    out
}

/// Every image in the store, one per manifest.
pub fn list(store: &Store) -> Result<Vec<ImageSummary>, ImageError> {
    let mut by_manifest: BTreeMap<Digest, Vec<String>> = BTreeMap::new();
    for (name, entry) in store.refs()? {
        by_manifest.entry(entry.manifest).or_default().push(name);
    }
    let mut out = Vec::new();
    for (manifest, names) in by_manifest {
        let (layers, size) = match store.manifest_and_config(&manifest) {
            Ok((m, _)) => (m.layers.len(), m.config.size + m.layers.iter().map(|l| l.size).sum::<u64>()),
            Err(_) => (0, 0),
        };
        out.push(ImageSummary { manifest, names, layers, size });
    }
    Ok(out)
}

/// One image in detail.
pub fn inspect(store: &Store, name: &str) -> Result<ImageDetail, ImageError> {
    let entry = store.lookup(name)?.ok_or_else(|| ImageError::invalid(name, "no such image in the store"))?;
    let (manifest, config) = store.manifest_and_config(&entry.manifest)?;
    let mut entries = Vec::new();
    for desc in &manifest.layers {
        entries.push(layer_entries(store, &desc.digest)?);
    }
    let mut layers = diff_layers(&entries);
    for ((detail, desc), diff_id) in layers.iter_mut().zip(&manifest.layers).zip(&config.rootfs.diff_ids) {
        detail.digest = desc.digest.to_string();
        detail.diff_id = diff_id.to_string();
        detail.size = desc.size;
    }
    let summary = list(store)?.into_iter().find(|s| s.manifest == entry.manifest).ok_or_else(|| ImageError::invalid(name, "vanished"))?;
    Ok(ImageDetail { summary, config: config.config.unwrap_or_default(), layers })
}

/// The entries of one layer, read within the store's per-layer limits (entries and
/// decompressed bytes): an image imported by an older keel may not have been checked.
fn layer_entries(store: &Store, blob: &Digest) -> Result<Vec<(Change, u64)>, ImageError> {
    let meter = std::rc::Rc::new(std::cell::RefCell::new(Meter::new(*store.limits())));
    let over = |meter: &std::cell::RefCell<Meter>| {
        meter.borrow().exceeded().map(|limit| ImageError::LayerLimit { blob: blob.clone(), entry: "(tar)".into(), limit })
    };
    let tar_err = |e| over(&meter).unwrap_or_else(|| ImageError::Io { what: "read layer", path: store.blob_path(blob), source: e });
    let mut archive = tar::Archive::new(MeteredReader::new(open_layer(store, blob)?, meter.clone()));
    let mut out = Vec::new();
    for entry in archive.entries().map_err(tar_err)? {
        let entry = entry.map_err(tar_err)?;
        if let Err(limit) = meter.borrow_mut().add(Resource::Entries, 1) {
            return Err(ImageError::LayerLimit { blob: blob.clone(), entry: "(tar)".into(), limit });
        }
        let path = entry.path().map_err(tar_err)?.into_owned();
        let size = if entry.header().entry_type().is_file() { entry.size() } else { 0 };
        let change = classify(&path).map_err(|e| ImageError::invalid(blob, e))?;
        out.push((change, size));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(p: &str, n: u64) -> (Change, u64) {
        (Change::Put(p.into()), n)
    }

    #[test]
    fn adds_changes_and_removes_per_layer() {
        let layers = vec![
            vec![put("etc", 0), put("etc/a", 3), put("etc/b", 4), put("var", 0), put("var/x", 1)],
            vec![put("etc/a", 5), (Change::Whiteout("etc/b".into()), 0), put("var", 0), (Change::Opaque("var".into()), 0), put("var/y", 2)],
        ];
        let d = diff_layers(&layers);
        assert_eq!(d[0].added, ["etc", "etc/a", "etc/b", "var", "var/x"]);
        assert_eq!(d[0].content, 8);
        assert_eq!(d[1].changed, ["etc/a", "var"]);
        assert_eq!(d[1].added, ["var/y"]);
        assert_eq!(d[1].removed, ["etc/b", "var/x"]);
    }
}
