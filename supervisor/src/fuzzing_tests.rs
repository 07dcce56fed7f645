//! The fuzz targets under proptest (arbitrary and structured inputs), the round trips
//! they rely on, and the replay of the committed corpus.

use super::*;
use crate::image::reference::{ImageSource, RegistryRef};
use keel_netconf::fuzzing::{corpus_dir, replay};
use proptest::collection::vec;
use proptest::prelude::*;

/// One entry of a structured test layer: kind (0 dir, 1 file, 2 hard link, 3 symlink,
/// 4 char device), name, link target.
type RawEntry = (u8, String, String);

/// Names and link targets built from parts that matter to an unpacker: `..`, `.`,
/// absolute paths, whiteouts, opaque markers.
fn tar_path() -> impl Strategy<Value = String> {
    vec(prop_oneof!["a", "b", "\\.\\.", "\\.", "", "\\.wh\\.a", "\\.wh\\.\\.wh\\.\\.opq", "outside", "keep"], 1..5)
        .prop_map(|parts| parts.join("/"))
        .prop_flat_map(|path| prop_oneof![Just(path.clone()), Just(format!("/{path}"))])
}

/// A tar with these entries, names written raw into the header (the tar crate's builder
/// refuses `..`, a hostile layer does not).
fn raw_tar(entries: &[RawEntry]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (kind, name, target) in entries {
        let mut header = tar::Header::new_gnu();
        let kind = match kind % 5 {
            0 => tar::EntryType::Directory,
            1 => tar::EntryType::Regular,
            2 => tar::EntryType::Link,
            3 => tar::EntryType::Symlink,
            _ => tar::EntryType::Char,
        };
        header.set_entry_type(kind);
        header.set_mode(0o755);
        let data: &[u8] = if kind == tar::EntryType::Regular { b"data" } else { b"" };
        header.set_size(data.len() as u64);
        let old = header.as_old_mut();
        let (name, target) = (name.as_bytes(), target.as_bytes());
        old.name[..name.len().min(100)].copy_from_slice(&name[..name.len().min(100)]);
        old.linkname[..target.len().min(100)].copy_from_slice(&target[..target.len().min(100)]);
        header.set_cksum();
        builder.append(&header, data).expect("append to a Vec");
    }
    builder.into_inner().expect("finish a Vec")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn no_target_panics_on_arbitrary_bytes(data in vec(any::<u8>(), 0..2048)) {
        for target in TARGETS {
            (target.run)(&data);
        }
    }

    /// Declarations, references and JSON close to real ones, one value per line.
    #[test]
    fn no_target_panics_on_text(lines in vec("[a-z_]{1,12} = (\"[a-z0-9:/.@_-]{0,20}\"|[0-9]{1,20}|\\[\\]|true)|\\[[a-z.]{1,12}\\]|[0-9]{0,21}(ms|s|m|h|K|M|G|T|)|[a-z0-9./:@-]{0,30}|\\{\"[a-zA-Z]{1,12}\": ?(\\[\\]|\\{\\}|\"[a-z0-9:]{0,12}\"|[0-9]{1,4})\\}|Bearer realm=\"[a-z:/.]{0,16}\",service=[a-z.]{0,8}", 0..12)) {
        let text = lines.join("\n");
        for target in TARGETS {
            (target.run)(text.as_bytes());
        }
    }

    /// Hostile layers made of `..`, absolute names, links out of the root and
    /// whiteouts never touch anything outside the root.
    #[test]
    fn layers_stay_in_their_root(entries in vec((0u8..5, tar_path(), tar_path()), 1..8)) {
        layer_tar(&raw_tar(&entries));
    }

    /// Registry references built from parts parse into those parts, and print back.
    #[test]
    fn registry_references_round_trip(
        registry in proptest::option::of("[a-z0-9]{1,8}\\.[a-z]{2,4}(:[0-9]{2,5})?|localhost(:[0-9]{2,5})?"),
        repository in "[a-z0-9]{1,8}([_-][a-z0-9]{1,4})?(/[a-z0-9]{1,8}([._-][a-z0-9]{1,3})?){0,2}",
        tag in proptest::option::of("[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}"),
        digest in proptest::option::of("[0-9a-f]{64}"),
    ) {
        let mut text = registry.clone().map(|r| format!("{r}/")).unwrap_or_default() + &repository;
        if let Some(tag) = &tag {
            text += &format!(":{tag}");
        }
        if let Some(digest) = &digest {
            text += &format!("@sha256:{digest}");
        }
        let parsed = reference::parse(&text).unwrap();
        let ImageSource::Registry(RegistryRef { registry: got_registry, repository: got_repository, tag: got_tag, digest: got_digest }) = &parsed else {
            panic!("{text:?} is not a registry reference: {parsed:?}");
        };
        prop_assert_eq!(got_registry, registry.as_deref().unwrap_or("docker.io"));
        let library = registry.is_none() && !repository.contains('/');
        prop_assert_eq!(got_repository, &if library { format!("library/{repository}") } else { repository });
        let default_tag = if digest.is_none() { Some("latest".to_string()) } else { None };
        prop_assert_eq!(got_tag, &tag.or(default_tag));
        prop_assert_eq!(got_digest.as_ref().map(Digest::hex), digest.as_deref());
        image_reference(text.as_bytes());
    }

    /// Durations written in parts are the sum of their parts, or too large; never more
    /// than the bound, never a panic.
    #[test]
    fn durations_add_up(hours in proptest::option::of(any::<u64>()), minutes in proptest::option::of(0u64..100_000), seconds in proptest::option::of(any::<u32>()), millis in proptest::option::of(0u64..100_000)) {
        let parts = [(hours, "h", 3_600_000u128), (minutes, "m", 60_000), (seconds.map(u64::from), "s", 1_000), (millis, "ms", 1)];
        let text: String = parts.iter().filter_map(|(n, unit, _)| n.map(|n| format!("{n}{unit}"))).collect();
        let total: u128 = parts.iter().map(|(n, _, scale)| u128::from(n.unwrap_or(0)) * scale).sum();
        match units::parse_duration(&text) {
            Ok(duration) => prop_assert_eq!(duration.as_millis(), total),
            Err(units::UnitError::EmptyDuration) => prop_assert!(text.is_empty()),
            Err(units::UnitError::DurationTooLarge(_)) => prop_assert!(total > units::MAX_DURATION.as_millis()),
            Err(other) => prop_assert!(false, "{text:?}: {other}"),
        }
        prop_assert!(units::parse_duration(&text).map_or(true, |d| d <= units::MAX_DURATION));
    }

    /// Sizes with a suffix are the number times its power of 1024, or too large.
    #[test]
    fn sizes_multiply_out(number in any::<u64>(), suffix in 0usize..5) {
        let (name, shift) = [("", 0), ("K", 10), ("M", 20), ("G", 30), ("T", 40)][suffix];
        let expected = number.checked_mul(1u64 << shift);
        match units::parse_bytes(&format!("{number}{name}")) {
            Ok(bytes) => prop_assert_eq!(Some(bytes), expected),
            Err(units::UnitError::SizeTooLarge(_)) => prop_assert_eq!(expected, None),
            Err(other) => prop_assert!(false, "{other}"),
        }
    }
}

#[test]
fn every_target_replays_its_committed_corpus() {
    for target in TARGETS {
        assert!(replay(target) > 0, "{}: no committed corpus in {}", target.name, corpus_dir(target.name).display());
    }
}

/// Negative control: the confinement check sees a file written outside the roots.
#[test]
#[should_panic(expected = "the layer wrote outside its root")]
fn confinement_check_sees_a_write_outside() {
    let scratch = std::env::temp_dir().join(format!("keel-fuzz-negative-{}", std::process::id()));
    let _guard = ScratchDir(scratch.clone());
    for dir in ["flat", "overlay", "outside"] {
        std::fs::create_dir_all(scratch.join(dir)).unwrap();
    }
    std::fs::write(scratch.join("outside/keep"), b"keep").unwrap();
    std::fs::write(scratch.join("outside/escaped"), b"").unwrap();
    check_confined(&scratch);
}

/// Negative control: the layers the structured strategy makes do reach the unpacker
/// (an entry lands in the root), so the confinement property is tested on real writes.
#[test]
fn structured_layers_are_unpacked() {
    let scratch = std::env::temp_dir().join(format!("keel-fuzz-unpacked-{}", std::process::id()));
    let _guard = ScratchDir(scratch.clone());
    std::fs::create_dir_all(&scratch).unwrap();
    let tar = raw_tar(&[(0, "a".into(), String::new()), (1, "a/b".into(), String::new()), (3, "a/l".into(), "../../outside".into())]);
    let meter = RefCell::new(Meter::new(ImageLimits::default()));
    layer::extract(&tar[..], &scratch, LayerTarget::Flat, Options { allow_devices: false, same_owner: false }, &meter).unwrap();
    assert_eq!(std::fs::read(scratch.join("a/b")).unwrap(), b"data");
    assert_eq!(std::fs::read_link(scratch.join("a/l")).unwrap(), Path::new("../../outside"));
}
