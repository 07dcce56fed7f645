//! The fuzz targets under proptest, the replay of the committed corpus, and the checks
//! that keep `make fuzz` (scripts/fuzz.sh, the fuzz/ crate) in step with the targets.

use super::*;
use keel_netconf::fuzzing::{corpus_dir, replay};
use proptest::collection::vec;
use proptest::prelude::*;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;

/// JSON shaped like an Ignition config: the keys keel reads, with values of every kind.
fn ignition_like() -> impl Strategy<Value = Value> {
    let key = prop_oneof![
        "ignition",
        "version",
        "config",
        "merge",
        "replace",
        "source",
        "storage",
        "files",
        "directories",
        "links",
        "path",
        "contents",
        "mode",
        "overwrite",
        "user",
        "group",
        "id",
        "name",
        "passwd",
        "users",
        "sshAuthorizedKeys",
        "target",
        "hard",
        "verification",
        "hash",
        "compression",
        "append",
        "security",
        "tls",
        "certificateAuthorities",
        "proxy",
        "httpHeaders",
        "timeouts",
        "systemd",
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        prop_oneof![
            "3\\.[0-6]\\.0",
            "/etc/[a-z/.]{0,12}",
            "data:,[a-z%0-9]{0,12}",
            "data:;base64,[A-Za-z0-9+/=]{0,12}",
            "sha512-[0-9a-f]{0,8}",
            "[a-z]{0,8}",
            "https?://[a-z.]{1,8}/[a-z]{0,6}"
        ]
        .prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            vec(inner.clone(), 0..4).prop_map(Value::Array),
            vec((key.clone(), inner), 0..6).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn no_target_panics_on_arbitrary_bytes(data in vec(any::<u8>(), 0..1024)) {
        for target in TARGETS {
            (target.run)(&data);
        }
    }

    /// Ignition-shaped configs with a valid version reach the walker and the validator.
    #[test]
    fn ignition_target_survives_config_shaped_json(body in ignition_like(), version in "3\\.[0-6]\\.0") {
        let mut config = json!({ "ignition": { "version": version } });
        if let (Value::Object(extra), Value::Object(config)) = (body, &mut config) {
            config.extend(extra.into_iter().filter(|(k, _)| k != "ignition"));
        }
        ignition_json(serde_json::to_string_pretty(&config).unwrap_or_default().as_bytes());
    }

    #[test]
    fn kernel_cmdline_survives_keel_options(words in vec("keel\\.[a-z.]{0,16}(=[a-z0-9:/.\"]{0,12})?|\"[a-z ]{0,8}\"|[a-z=]{0,8}", 0..8)) {
        kernel_cmdline(words.join(" ").as_bytes());
    }
}

#[test]
fn every_target_replays_its_committed_corpus() {
    for target in TARGETS {
        assert!(replay(target) > 0, "{}: no committed corpus in {}", target.name, corpus_dir(target.name).display());
    }
}

/// The top of the repository.
fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Every target has a unique name, a committed corpus, and a libFuzzer binary in the
/// fuzz/ crate; the fuzz/ crate has no binary for a target that does not exist.
#[test]
fn the_fuzz_crate_has_exactly_the_targets() {
    let manifest = std::fs::read_to_string(repo().join("fuzz/Cargo.toml")).unwrap();
    let mut bins: Vec<&str> =
        manifest.lines().filter_map(|l| l.strip_prefix("name = \"")?.strip_suffix('"')).filter(|n| *n != "keel-fuzz").collect();
    bins.sort();
    let mut names: Vec<&str> = all().iter().map(|t| t.name).collect();
    names.sort();
    assert_eq!(bins, names, "fuzz/Cargo.toml's [[bin]]s and the targets differ");
    names.dedup();
    assert_eq!(names.len(), all().len(), "two targets share a name");
    for target in all() {
        assert!(find(target.name).is_some());
        assert!(repo().join(format!("fuzz/fuzz_targets/{}.rs", target.name)).is_file(), "{}: no fuzz/fuzz_targets file", target.name);
        let seeds = std::fs::read_dir(corpus_dir(target.name)).map(|d| d.count()).unwrap_or(0);
        assert!(seeds > 0, "{}: no committed corpus", target.name);
    }
}

/// `make fuzz` runs every target, each for FUZZ_SECS, from its committed corpus into a
/// scratch corpus, with crashes saved under fuzz/artifacts: checked on the runner's dry
/// run (the real run needs cargo-fuzz and an instrumented build, minutes of work).
#[test]
fn make_fuzz_runs_every_target_from_its_corpus() {
    let mut make = Command::new("make");
    // Not the jobserver of a `make test` this may run under, nor a caller's target list.
    for inherited in ["MAKEFLAGS", "MFLAGS", "MAKELEVEL", "FUZZ_TARGETS"] {
        make.env_remove(inherited);
    }
    let out = make.args(["-s", "-C"]).arg(repo()).args(["fuzz", "FUZZ_SECS=7", "FUZZ_DRY_RUN=1"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "make fuzz (dry run) failed: {stdout}{}", String::from_utf8_lossy(&out.stderr));
    let runs: Vec<&str> = stdout.lines().filter(|l| l.contains("cargo fuzz run")).collect();
    assert_eq!(runs.len(), all().len(), "{stdout}");
    for target in all() {
        let line = runs
            .iter()
            .find(|l| l.split_whitespace().any(|w| w == target.name))
            .unwrap_or_else(|| panic!("{} is not run: {stdout}", target.name));
        assert!(line.contains(&format!("fuzz/corpus/{}", target.name)), "{line}");
        assert!(line.contains("-max_total_time=7"), "{line}");
        assert!(line.contains(&format!("-artifact_prefix=fuzz/artifacts/{}/", target.name)), "{line}");
    }
}
