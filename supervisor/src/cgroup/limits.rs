//! Pure translation of [`Resources`] into cgroup v2 controller names and file writes.
//!
//! Every container gets two limits whether or not it declares any: `pids.max`
//! ([`DEFAULT_PIDS_MAX`] unless `[resources] pids_max` says otherwise) and
//! `memory.oom.group = 1`, so that the OOM killer takes a runaway container down as a
//! whole instead of leaving it half-killed. The memory and pids controllers are
//! therefore always needed.

use crate::spec::Resources;

/// The period cgroup v2 uses when `cpu.max` is reset (its kernel default), in µs.
pub const DEFAULT_CPU_PERIOD_USEC: u64 = 100_000;

/// `pids.max` of a container that declares no `pids_max`: podman's default
/// (containers.conf `pids_limit`), enough for any ordinary service and far below what a
/// fork bomb needs to starve the host.
pub const DEFAULT_PIDS_MAX: u64 = 2048;

/// The controllers the limits need, in the order memory, cpu, pids, io. memory and
/// pids are always there (the defaults above use them).
pub fn controllers_needed(resources: &Resources) -> Vec<&'static str> {
    let mut needed = vec!["memory"];
    if resources.cpu_max.is_some() {
        needed.push("cpu");
    }
    needed.push("pids");
    if resources.io_weight.is_some() {
        needed.push("io");
    }
    needed
}

/// The files to write into the container's leaf cgroup, with their content.
pub fn limit_writes(resources: &Resources) -> Vec<(&'static str, String)> {
    let mut writes = Vec::new();
    if let Some(bytes) = resources.memory_max {
        writes.push(("memory.max", bytes.to_string()));
    }
    if let Some(bytes) = resources.memory_swap_max {
        writes.push(("memory.swap.max", bytes.to_string()));
    }
    if let Some((quota, period)) = resources.cpu_max {
        writes.push(("cpu.max", cpu_max(quota, period)));
    }
    writes.push(("pids.max", resources.pids_max.unwrap_or(DEFAULT_PIDS_MAX).to_string()));
    if let Some(weight) = resources.io_weight {
        writes.push(("io.weight", format!("default {weight}")));
    }
    writes.push(("memory.oom.group", "1".to_string()));
    writes
}

/// The writes that return every limit *not* set in `resources` to the kernel default.
/// Applied to a reused cgroup so limits from an earlier declaration do not linger.
/// `pids.max` and `memory.oom.group` are always written by [`limit_writes`].
pub fn reset_writes(resources: &Resources) -> Vec<(&'static str, String)> {
    let mut writes = Vec::new();
    if resources.memory_max.is_none() {
        writes.push(("memory.max", "max".to_string()));
    }
    if resources.memory_swap_max.is_none() {
        writes.push(("memory.swap.max", "max".to_string()));
    }
    if resources.cpu_max.is_none() {
        writes.push(("cpu.max", cpu_max(None, DEFAULT_CPU_PERIOD_USEC)));
    }
    if resources.io_weight.is_none() {
        writes.push(("io.weight", "default 100".to_string()));
    }
    writes
}

/// `cpu.max` content: `"$QUOTA $PERIOD"`, with `max` for no quota.
fn cpu_max(quota: Option<u64>, period: u64) -> String {
    match quota {
        Some(quota) => format!("{quota} {period}"),
        None => format!("max {period}"),
    }
}

/// The line enabling `controllers` in a `cgroup.subtree_control` file: `"+memory +cpu"`.
pub fn subtree_control_line(controllers: &[&str]) -> String {
    let words: Vec<String> = controllers.iter().map(|c| format!("+{c}")).collect();
    words.join(" ")
}

/// The controllers listed in a `cgroup.controllers` file (space separated).
pub fn parse_controllers(text: &str) -> Vec<String> {
    text.split_whitespace().map(str::to_string).collect()
}

/// The controllers of `needed` that `available` (a `cgroup.controllers` text) lacks.
pub fn missing_controllers(needed: &[&'static str], available: &str) -> Vec<&'static str> {
    let available = parse_controllers(available);
    needed.iter().copied().filter(|c| !available.iter().any(|a| a == c)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> Resources {
        Resources {
            memory_max: Some(268_435_456),
            memory_swap_max: Some(0),
            cpu_max: Some((Some(50_000), 100_000)),
            pids_max: Some(512),
            io_weight: Some(200),
        }
    }

    fn owned(writes: &[(&'static str, &str)]) -> Vec<(&'static str, String)> {
        writes.iter().map(|(f, v)| (*f, v.to_string())).collect()
    }

    #[test]
    fn no_limits_still_get_the_default_pids_max_and_oom_group() {
        assert_eq!(controllers_needed(&Resources::default()), ["memory", "pids"]);
        assert_eq!(limit_writes(&Resources::default()), owned(&[("pids.max", "2048"), ("memory.oom.group", "1")]));
    }

    #[test]
    fn declared_pids_max_replaces_the_default() {
        let r = Resources { pids_max: Some(10_000), ..Resources::default() };
        assert_eq!(limit_writes(&r), owned(&[("pids.max", "10000"), ("memory.oom.group", "1")]));
    }

    #[test]
    fn every_limit_maps_to_its_file() {
        assert_eq!(controllers_needed(&all()), ["memory", "cpu", "pids", "io"]);
        assert_eq!(
            limit_writes(&all()),
            owned(&[
                ("memory.max", "268435456"),
                ("memory.swap.max", "0"),
                ("cpu.max", "50000 100000"),
                ("pids.max", "512"),
                ("io.weight", "default 200"),
                ("memory.oom.group", "1"),
            ])
        );
        assert!(reset_writes(&all()).is_empty());
    }

    #[test]
    fn cpu_without_quota_is_max() {
        let r = Resources { cpu_max: Some((None, 100_000)), ..Resources::default() };
        assert_eq!(limit_writes(&r)[0], ("cpu.max", "max 100000".to_string()));
        assert_eq!(controllers_needed(&r), ["memory", "cpu", "pids"]);
    }

    #[test]
    fn swap_alone_is_written() {
        let r = Resources { memory_swap_max: Some(1024), ..Resources::default() };
        assert_eq!(controllers_needed(&r), ["memory", "pids"]);
        assert_eq!(limit_writes(&r)[0], ("memory.swap.max", "1024".to_string()));
    }

    #[test]
    fn resets_cover_exactly_the_unset_limits() {
        let r = Resources { pids_max: Some(10), ..Resources::default() };
        assert_eq!(
            reset_writes(&r),
            owned(&[("memory.max", "max"), ("memory.swap.max", "max"), ("cpu.max", "max 100000"), ("io.weight", "default 100"),])
        );
    }

    #[test]
    fn subtree_line_prefixes_each_controller() {
        assert_eq!(subtree_control_line(&["memory", "pids"]), "+memory +pids");
        assert_eq!(subtree_control_line(&[]), "");
    }

    #[test]
    fn missing_controllers_are_listed_in_order() {
        let needed = ["memory", "cpu", "pids", "io"];
        let kernel = "cpuset cpu io memory hugetlb pids rdma misc\n";
        assert_eq!(missing_controllers(&needed, kernel), Vec::<&str>::new());
        assert_eq!(missing_controllers(&needed, "cpu memory\n"), ["pids", "io"]);
        assert_eq!(missing_controllers(&needed, ""), needed);
        // "cpuset" must not satisfy "cpu".
        assert_eq!(missing_controllers(&["cpu"], "cpuset"), ["cpu"]);
    }
}
