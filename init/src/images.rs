//! Images on the host: the `image_*` control requests PID 1 answers (over the store in
//! /var/lib/keel/images), `keelctl image …` output, and `keel image unpack REF DIR`.

use keel_supervisor::control::{Command, Response};
use keel_supervisor::image::inspect::{self, ImageDetail, ImageSummary};
use keel_supervisor::image::{import, reference, store, ImageSource, Store};
use keel_supervisor::worker::{JobKind, Reporter};
use std::path::{Path, PathBuf};

/// The image requests that run as a job in a worker (they read, verify, decompress or
/// download for as long as the image takes): the job's kind, its target, and whether
/// the client asked for progress lines.
pub fn job_of(command: &Command) -> Option<(JobKind, String, bool)> {
    match command {
        Command::ImagePull { reference, progress } => Some((JobKind::Pull, reference.clone(), *progress)),
        Command::ImageLoad { source, progress } => Some((JobKind::Load, source.clone(), *progress)),
        Command::ImageInspect { reference } => Some((JobKind::Inspect, reference.clone(), false)),
        _ => None,
    }
}

/// The work of an image job, run in its worker: progress from deep in the import goes
/// to `reporter`; the store is held (see [`Store::lock`]) while it is written.
pub fn job_work(command: Command) -> impl FnOnce(&mut Reporter) -> Result<serde_json::Value, String> {
    move |reporter| {
        let _observed = keel_supervisor::image::observe::install(reporter.clone());
        let store = Store::open(store::DEFAULT_ROOT).map_err(|e| explain(e.to_string()))?;
        let _lock = match command {
            Command::ImageInspect { .. } => None,
            _ => Some(hold(&store)?),
        };
        answer(&store, command, &[]).map_err(explain)
    }
}

/// The work of a job that brings a container's image (a boot pull, an import at a
/// first start): wait up to a minute for a registry to answer (the network may still
/// be coming up; PID 1 drives DHCP meanwhile), then pull or import under the store lock.
pub fn need_work(source: ImageSource) -> impl FnOnce(&mut Reporter) -> Result<serde_json::Value, String> {
    move |reporter| {
        let _observed = keel_supervisor::image::observe::install(reporter.clone());
        if let ImageSource::Registry(r) = &source {
            let probe = import::registry_api_url(r);
            if let Ok(url) = keel_netconf::http::parse_url(&probe) {
                let mut client = keel_netconf::http::Client::new();
                // Any answer (even 401 or a certificate error) means the network is up.
                let _ = client.fetch("GET", &url, &probe, &[], std::time::Duration::from_secs(60), &mut std::thread::sleep);
            }
        }
        let store = Store::open(store::DEFAULT_ROOT).map_err(|e| explain(e.to_string()))?;
        let _lock = hold(&store)?;
        let resolved = import::ensure(&store, &source).map_err(|e| explain(format!("{source}: {e}")))?;
        Ok(serde_json::json!({ "manifest": resolved.manifest.to_string(), "layers": resolved.lowers.len() }))
    }
}

/// Take the store for writing (waiting for another import to end), then drop what a
/// worker killed mid-write left in its `tmp/` (an OOM kill or a power cut runs no
/// cleanup; only the lock holder writes there).
fn hold(store: &Store) -> Result<nix::fcntl::Flock<std::fs::File>, String> {
    let lock = store.lock(true).map_err(|e| e.to_string())?;
    let tmp = store.root().join("tmp");
    for entry in std::fs::read_dir(&tmp).map_err(|e| format!("{}: {e}", tmp.display()))?.flatten() {
        let path = entry.path();
        let removed = if path.is_dir() { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) };
        if let Err(e) = removed {
            keel_supervisor::image::observe::log(&format!("{}: cannot remove a leftover: {e}", path.display()));
        }
    }
    Ok(lock)
}

/// A full /var said plainly (with what is free), the cause kept after it.
fn explain(message: String) -> String {
    if !keel_supervisor::image::error::is_no_space(&message) {
        return message;
    }
    let free = nix::sys::statvfs::statvfs(store::DEFAULT_ROOT)
        .map(|s| format!("{} MiB free", s.blocks_available().saturating_mul(s.fragment_size()) >> 20))
        .unwrap_or_else(|_| "free space unknown".into());
    format!("no space left on /var ({free}); nothing of the image was kept: {message}")
}

/// Answer an image request. `in_use`: the image references of declared containers.
pub fn request(id: u64, command: Command, in_use: &[String]) -> Response {
    let result = Store::open(store::DEFAULT_ROOT).map_err(|e| e.to_string()).and_then(|store| answer(&store, command, in_use));
    match result {
        Ok(value) => Response::success(id, value),
        Err(e) => Response::failure(id, e),
    }
}

fn answer(store: &Store, command: Command, in_use: &[String]) -> Result<serde_json::Value, String> {
    let json = |v: Result<serde_json::Value, serde_json::Error>| v.map_err(|e| e.to_string());
    match command {
        Command::ImageLs => json(serde_json::to_value(inspect::list(store).map_err(|e| e.to_string())?)),
        Command::ImageInspect { reference } => json(serde_json::to_value(inspect::inspect(store, &reference).map_err(|e| e.to_string())?)),
        Command::ImageLoad { source, .. } => {
            let source = load_source(&source).map_err(|e| e.to_string())?;
            let resolved = import::import(store, &source).map_err(|e| format!("{source}: {e}"))?;
            log::info!("image {source} loaded: {} ({} layers)", resolved.manifest, resolved.lowers.len());
            Ok(format!("loaded {source}: {} ({} layers)", resolved.manifest, resolved.lowers.len()).into())
        }
        Command::ImagePull { reference, .. } => {
            let source = match reference::parse(&reference)? {
                source @ ImageSource::Registry(_) => source,
                other => return Err(format!("{other}: not a registry reference; use `keelctl image load` for files")),
            };
            let resolved = import::import(store, &source).map_err(|e| format!("{source}: {e}"))?;
            Ok(format!("pulled {source}: {} ({} layers)", resolved.manifest, resolved.lowers.len()).into())
        }
        Command::ImageRm { reference } => {
            let _lock = store.lock(false).map_err(|e| e.to_string())?;
            let entry = store.lookup(&reference).map_err(|e| e.to_string())?.ok_or_else(|| format!("{reference}: no such image"))?;
            for used in in_use {
                if store.lookup(used).ok().flatten().is_some_and(|e| e.manifest == entry.manifest) {
                    return Err(format!("{reference}: used by a declared container (image = {used:?})"));
                }
            }
            let removed = store.remove(&reference).map_err(|e| e.to_string())?;
            Ok(format!("removed {}", removed.join(", ")).into())
        }
        Command::ImagePrune => {
            let _lock = store.lock(false).map_err(|e| e.to_string())?;
            let keep: Vec<_> = in_use.iter().filter_map(|r| store.lookup(r).ok().flatten()).map(|e| e.manifest).collect();
            let (blobs, layers, bytes) = store.prune(&keep).map_err(|e| e.to_string())?;
            Ok(format!("pruned {blobs} blobs ({bytes} bytes) and {layers} layers").into())
        }
        other => Err(format!("not an image request: {other:?}")),
    }
}

/// `oci-archive:F`, `docker-archive:F`, `oci:DIR[:TAG]`, or a bare archive path.
fn load_source(text: &str) -> Result<ImageSource, String> {
    if text.starts_with('/') {
        return import::detect_archive(Path::new(text)).map_err(|e| e.to_string());
    }
    match reference::parse(text)? {
        ImageSource::Registry(r) => Err(format!("{r}: a registry reference; use `keelctl image pull`")),
        source => Ok(source),
    }
}

/// `keelctl image ls` table.
pub fn print_ls(images: &[ImageSummary]) {
    print!("{}", format_ls(images));
}

fn format_ls(images: &[ImageSummary]) -> String {
    let mut out = format!("{:<14} {:>6} {:>10}  NAMES\n", "IMAGE", "LAYERS", "SIZE");
    for image in images {
        out.push_str(&format!(
            "{:<14} {:>6} {:>10}  {}\n",
            image.manifest.short(),
            image.layers,
            human(image.size),
            image.names.join(", ")
        ));
    }
    out
}

/// `keelctl image inspect`: the defaults, then each layer and its changes.
pub fn print_inspect(detail: &ImageDetail) {
    print!("{}", format_inspect(detail));
}

fn format_inspect(detail: &ImageDetail) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let s = &detail.summary;
    let _ = writeln!(
        out,
        "image:       {}\nnames:       {}\nsize:        {} ({} layers)",
        s.manifest,
        s.names.join(", "),
        human(s.size),
        s.layers
    );
    let c = &detail.config;
    let list = |v: &Option<Vec<String>>| v.as_ref().map(|v| format!("{v:?}")).unwrap_or_else(|| "-".into());
    let _ = writeln!(out, "entrypoint:  {}\ncmd:         {}\nenv:         {}", list(&c.entrypoint), list(&c.cmd), list(&c.env));
    let _ = writeln!(out, "workdir:     {}\nuser:        {}", c.working_dir.as_deref().unwrap_or("-"), c.user.as_deref().unwrap_or("-"));
    let ports: Vec<&String> = c.exposed_ports.iter().flatten().map(|(p, _)| p).collect();
    let _ = writeln!(out, "ports:       {}", if ports.is_empty() { "-".to_string() } else { format!("{ports:?}") });
    for (i, layer) in detail.layers.iter().enumerate() {
        let _ = writeln!(
            out,
            "\nlayer {i}: {}  {} compressed, {} of content: {} added, {} changed, {} removed",
            &layer.digest[..19.min(layer.digest.len())],
            human(layer.size),
            human(layer.content),
            layer.added.len(),
            layer.changed.len(),
            layer.removed.len()
        );
        for (mark, paths) in [("+", &layer.added), ("~", &layer.changed), ("-", &layer.removed)] {
            for path in paths {
                let _ = writeln!(out, "  {mark} /{path}");
            }
        }
    }
    out
}

fn human(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 20 => format!("{:.1}M", b as f64 / (1 << 20) as f64),
        b if b >= 1 << 10 => format!("{:.1}K", b as f64 / 1024.0),
        b => format!("{b}B"),
    }
}

/// `keel image unpack REF DIR`: the image's root filesystem into DIR, flattened, on
/// any Linux host. Blobs are verified into a scratch store (KEEL_IMAGE_STORE to keep one).
pub fn unpack_main(args: &[String]) -> i32 {
    match args {
        [cmd, reference, dir] if cmd == "unpack" => match unpack(reference, Path::new(dir)) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("keel image unpack: {e}");
                1
            }
        },
        _ => {
            eprintln!("usage: keel image unpack REF DIR   (REF: oci:PATH[:TAG], oci-archive:FILE, docker-archive:FILE, REGISTRY/REPO:TAG or @sha256:…)");
            2
        }
    }
}

fn unpack(text: &str, dir: &Path) -> Result<(), String> {
    let source = reference::parse(text)?;
    let (root, scratch) = match std::env::var_os("KEEL_IMAGE_STORE") {
        Some(root) => (PathBuf::from(root), false),
        None => (std::env::temp_dir().join(format!("keel-unpack-{}", std::process::id())), true),
    };
    let result = Store::open(&root).and_then(|store| {
        let fetched = import::fetch(&store, &source)?;
        store.unpack_flat(&fetched.manifest, dir)
    });
    if scratch {
        let _ = std::fs::remove_dir_all(&root);
    }
    result.map_err(|e| format!("{source}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_supervisor::image::inspect::LayerDetail;
    use keel_supervisor::image::oci::ProcessConfig;
    use keel_supervisor::image::Digest;

    #[test]
    fn inspect_shows_the_defaults_and_each_layers_changes() {
        let summary = ImageSummary { manifest: Digest::of(b"m"), names: vec!["oci-archive:/i.tar".into()], layers: 2, size: 3 << 20 };
        let config = ProcessConfig {
            entrypoint: Some(vec!["/bin/sh".into()]),
            exposed_ports: Some([("80/tcp".to_string(), serde_json::json!({}))].into()),
            ..Default::default()
        };
        let layer = |added: &[&str], changed: &[&str], removed: &[&str]| LayerDetail {
            digest: Digest::of(b"l").to_string(),
            added: added.iter().map(|s| s.to_string()).collect(),
            changed: changed.iter().map(|s| s.to_string()).collect(),
            removed: removed.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        };
        let detail = ImageDetail {
            summary: summary.clone(),
            config,
            layers: vec![layer(&["etc", "etc/motd"], &[], &[]), layer(&[], &["etc/motd"], &["etc/old"])],
        };
        let text = format_inspect(&detail);
        assert!(text.contains("size:        3.0M (2 layers)"), "{text}");
        assert!(text.contains("entrypoint:  [\"/bin/sh\"]") && text.contains("ports:       [\"80/tcp\"]"), "{text}");
        assert!(
            text.contains("layer 1: sha256:") && text.contains("0 added, 1 changed, 1 removed\n  ~ /etc/motd\n  - /etc/old\n"),
            "{text}"
        );
        let ls = format_ls(&[summary]);
        assert!(ls.lines().nth(1).unwrap().starts_with(Digest::of(b"m").short()) && ls.contains("oci-archive:/i.tar"), "{ls}");
    }
}
