//! Fuzz targets for the parsers of PID 1 that read outside input: the Ignition
//! first-boot config (JSON from fw_cfg, a URL or a config drive), the head of a block
//! device looked at for a config drive label, and the kernel command line. [`all`] is
//! every target of keel (these and those of keel-supervisor and keel-netconf), what the
//! `fuzz/` crate and `make fuzz` run. Compiled for tests and with the `fuzzing` feature
//! only.
//!
//! The Ignition target calls only the public entry points ([`config::parse`],
//! [`config::validate`], [`config::merge`], [`config::decode_data_url`]).

use crate::cmdline;
use crate::firstboot::{config, configdrive};
use keel_netconf::fuzzing::Target;

/// The targets of this crate.
pub const TARGETS: &[Target] = &[
    Target { name: "ignition_json", run: ignition_json },
    Target { name: "disk_label", run: disk_label },
    Target { name: "kernel_cmdline", run: kernel_cmdline },
];

/// Every fuzz target of keel, in a stable order.
pub fn all() -> Vec<Target> {
    [keel_netconf::fuzzing::TARGETS, keel_supervisor::fuzzing::TARGETS, TARGETS].concat()
}

/// The target called `name`.
pub fn find(name: &str) -> Option<Target> {
    all().into_iter().find(|t| t.name == name)
}

/// An Ignition config. Properties: what `parse` accepts, `validate` (the check run
/// again after a merge) accepts too; a config merged onto itself is as valid as it;
/// data: URLs in the input decode or fail, never panic.
pub fn ignition_json(data: &[u8]) {
    if let Ok((parsed, report)) = config::parse(data) {
        assert!(report.is_valid());
        let again = config::validate(&parsed);
        assert!(again.is_valid(), "parse accepted what validate refuses: {again}");
        let merged = config::merge(parsed.clone(), parsed);
        let _ = config::validate(&merged);
    }
    let text = String::from_utf8_lossy(data);
    for url in text.split('"').filter(|s| s.starts_with("data:")).take(16) {
        let _ = config::decode_data_url(url);
    }
}

/// The first bytes of a block device, as the config drive search reads them: the
/// labels found are never empty.
pub fn disk_label(data: &[u8]) {
    if let Some((_, label)) = configdrive::identify(data) {
        assert!(!label.is_empty());
    }
    let _ = configdrive::vfat_label(data);
    let _ = configdrive::iso9660_label(data);
}

/// The kernel command line (`keel.*` options from the boot loader or the cloud).
pub fn kernel_cmdline(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let _ = cmdline::split_words(&text);
    let _ = cmdline::parse(&text);
}

#[cfg(test)]
#[path = "fuzzing_tests.rs"]
mod tests;
