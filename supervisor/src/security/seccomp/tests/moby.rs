//! Diffs keel's policy against Docker's default profile, committed unchanged at
//! `supervisor/tests/data/moby-seccomp-default.json` (see the NOTICE next to it).
//!
//! Both sides are flattened into grants — (call, action, condition, one argument test or
//! none) — restricted to x86_64. Argument filters and errno rules must equal Docker's;
//! plain allow grants may differ only as [`DIFFERENCES`] lists, and every listed
//! difference must still exist.

use std::collections::BTreeSet;

use serde::Deserialize;

use super::super::policy::{Action, ArgTest, Cmp, Profile as Side, When, DIFFERENCES, RULES};
use super::super::syscalls;
use crate::spec::capability::Capability;

const PROFILE: &str = include_str!("../../../../tests/data/moby-seccomp-default.json");

/// Every `minKernel` in the profile must be at or below this: keel itself needs openat2
/// and close_range (Linux 5.9), so on any kernel keel runs on those rules apply.
const KEEL_MIN_KERNEL: (u32, u32) = (5, 9);

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct MobyProfile {
    default_action: String,
    default_errno_ret: u16,
    #[allow(dead_code)]
    arch_map: serde_json::Value,
    syscalls: Vec<Entry>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Entry {
    names: Vec<String>,
    action: String,
    #[serde(default)]
    errno_ret: Option<u16>,
    #[serde(default)]
    args: Option<Vec<Arg>>,
    #[serde(default)]
    includes: Option<Filter>,
    #[serde(default)]
    excludes: Option<Filter>,
    #[serde(default)]
    #[allow(dead_code)]
    comment: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Filter {
    #[serde(default)]
    caps: Vec<String>,
    #[serde(default)]
    arches: Vec<String>,
    #[serde(default)]
    min_kernel: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Arg {
    index: u8,
    value: u64,
    #[serde(default)]
    value_two: u64,
    op: String,
}

/// One flattened grant.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Grant {
    syscall: String,
    action: Action,
    when: When,
    test: Option<ArgTest>,
}

fn cap_number(name: &str) -> u8 {
    Capability::parse(name).unwrap_or_else(|e| panic!("profile capability: {e}")).0
}

/// The entry's condition on x86_64, or `None` when it does not apply to x86_64.
fn condition(entry: &Entry) -> Option<When> {
    let none = Filter::default();
    let includes = entry.includes.as_ref().unwrap_or(&none);
    let excludes = entry.excludes.as_ref().unwrap_or(&none);
    if !includes.arches.is_empty() && !includes.arches.iter().any(|a| a == "amd64") {
        return None;
    }
    if excludes.arches.iter().any(|a| a == "amd64") || excludes.min_kernel.is_some() {
        return None;
    }
    if let Some(version) = &includes.min_kernel {
        let (major, minor) = version.split_once('.').expect("minKernel is MAJOR.MINOR");
        let version = (major.parse().unwrap(), minor.parse().unwrap());
        assert!(version <= KEEL_MIN_KERNEL, "minKernel {version:?} is newer than keel's minimum");
    }
    match (includes.caps.as_slice(), excludes.caps.as_slice()) {
        ([], []) => Some(When::Always),
        ([cap], []) => Some(When::CapKept(cap_number(cap))),
        ([], [cap]) => Some(When::CapDropped(cap_number(cap))),
        other => panic!("condition not modelled by keel's policy: {other:?}"),
    }
}

fn arg_test(arg: &Arg) -> ArgTest {
    let low = |v: u64| u32::try_from(v).expect("argument value beyond 32 bits");
    let cmp = match arg.op.as_str() {
        "SCMP_CMP_EQ" => Cmp::Eq(low(arg.value)),
        "SCMP_CMP_LT" => Cmp::Lt(low(arg.value)),
        "SCMP_CMP_GT" => Cmp::Gt(low(arg.value)),
        "SCMP_CMP_MASKED_EQ" => Cmp::MaskedEq { mask: low(arg.value), value: low(arg.value_two) },
        op => panic!("comparison {op} not modelled by keel's policy"),
    };
    ArgTest { index: arg.index, cmp }
}

/// Docker's grants on x86_64, and the names it lists that x86_64 does not have.
fn moby_grants() -> (BTreeSet<Grant>, BTreeSet<String>) {
    let profile: MobyProfile = serde_json::from_str(PROFILE).expect("parse the moby profile");
    assert_eq!(profile.default_action, "SCMP_ACT_ERRNO");
    assert_eq!(profile.default_errno_ret, libc::EPERM as u16, "keel's default is EPERM");
    let (mut grants, mut foreign) = (BTreeSet::new(), BTreeSet::new());
    for entry in &profile.syscalls {
        let Some(when) = condition(entry) else {
            continue;
        };
        let action = match entry.action.as_str() {
            "SCMP_ACT_ALLOW" => Action::Allow,
            "SCMP_ACT_ERRNO" => Action::Errno(entry.errno_ret.unwrap_or(profile.default_errno_ret)),
            other => panic!("action {other} not modelled by keel's policy"),
        };
        let test = match entry.args.as_deref().unwrap_or_default() {
            [] => None,
            [arg] => Some(arg_test(arg)),
            args => panic!("{} ANDed argument tests not modelled", args.len()),
        };
        for name in &entry.names {
            if syscalls::number(name).is_none() {
                foreign.insert(name.clone());
                continue;
            }
            grants.insert(Grant { syscall: name.clone(), action, when, test });
        }
    }
    (grants, foreign)
}

fn keel_grants() -> BTreeSet<Grant> {
    let mut grants = BTreeSet::new();
    for rule in RULES {
        let tests: Vec<Option<ArgTest>> =
            if rule.any_arg.is_empty() { vec![None] } else { rule.any_arg.iter().copied().map(Some).collect() };
        for name in rule.names {
            for &test in &tests {
                grants.insert(Grant { syscall: name.to_string(), action: rule.action, when: rule.when, test });
            }
        }
    }
    grants
}

#[test]
fn keel_differs_from_dockers_profile_only_as_listed() {
    let (docker, foreign) = moby_grants();
    let keel = keel_grants();
    eprintln!(
        "Docker: {} grants on x86_64 ({} names skipped as not x86_64: {foreign:?}); keel: {}",
        docker.len(),
        foreign.len(),
        keel.len()
    );
    let mut found = Vec::new();
    let sides = [(Side::Docker, &docker, &keel), (Side::Keel, &keel, &docker)];
    for (side, ours, theirs) in sides {
        for grant in ours.difference(theirs) {
            assert!(
                grant.action == Action::Allow && grant.test.is_none(),
                "argument and errno rules must equal Docker's; {side:?} alone has {grant:?}"
            );
            found.push((grant.syscall.clone(), side, grant.when));
        }
    }
    let listed: Vec<(String, Side, When)> = DIFFERENCES.iter().map(|d| (d.syscall.to_string(), d.only_in, d.when)).collect();
    for difference in &found {
        assert!(listed.contains(difference), "unlisted difference from Docker: {difference:?}");
    }
    for difference in &listed {
        assert!(found.contains(difference), "listed difference no longer exists: {difference:?}");
    }
    assert!(DIFFERENCES.iter().all(|d| d.reason.len() > 40), "every difference needs its reason");
}

#[test]
fn docker_unconditional_set_matches_keel_but_for_the_differences() {
    // The headline figure of the diff: calls allowed to every container.
    let always = |set: &BTreeSet<Grant>| -> BTreeSet<String> {
        set.iter().filter(|g| g.when == When::Always && g.action == Action::Allow && g.test.is_none()).map(|g| g.syscall.clone()).collect()
    };
    let (docker, _) = moby_grants();
    let (docker, keel) = (always(&docker), always(&keel_grants()));
    let docker_only: Vec<&String> = docker.difference(&keel).collect();
    let keel_only: Vec<&String> = keel.difference(&docker).collect();
    eprintln!("allowed to every container: Docker {}, keel {}", docker.len(), keel.len());
    assert_eq!(docker_only, ["process_vm_readv", "process_vm_writev", "ptrace"]);
    assert!(keel_only.is_empty(), "{keel_only:?}");
    for name in ["io_uring_setup", "io_uring_enter", "io_uring_register", "keyctl"] {
        assert!(!docker.contains(name) && !keel.contains(name), "{name}");
    }
}
