//! Capability sets as 64-bit masks (bit n = capability number n, see `capabilities(7)`).
//!
//! [`apply_capabilities`] is the one entry point that changes the kernel state; the
//! helpers that decide *what* to change ([`bounding_drops`], [`parse_last_cap`],
//! [`parse_status_caps`]) are pure and unit-tested. The system calls go through rustix's
//! safe wrappers (`capget`/`capset` with `_LINUX_CAPABILITY_VERSION_3`, and `prctl`), so this
//! module contains no `unsafe`.

use std::io;
use std::path::{Path, PathBuf};

use rustix::io::Errno;
use rustix::thread::{self as rthread, CapabilitySet, CapabilitySets};

/// Docker's default capability set: CHOWN, DAC_OVERRIDE, FOWNER, FSETID, KILL, SETGID,
/// SETUID, SETPCAP, NET_BIND_SERVICE, SYS_CHROOT, MKNOD, AUDIT_WRITE, SETFCAP.
pub const DOCKER_DEFAULT_CAPS: u64 = 0x0000_0000_a804_25fb;

/// Highest capability number assumed when `/proc/sys/kernel/cap_last_cap` is unreadable
/// (`CAP_CHECKPOINT_RESTORE`, Linux 5.9+).
pub const FALLBACK_LAST_CAP: u32 = 40;

/// Where the kernel publishes the highest capability number it knows.
const CAP_LAST_CAP_PATH: &str = "/proc/sys/kernel/cap_last_cap";

/// Where the kernel reports the calling process's capability sets.
const STATUS_PATH: &str = "/proc/self/status";

/// Errors from reading or changing capability sets; each names the step that failed.
#[derive(Debug, thiserror::Error)]
pub enum CapsError {
    /// `prctl(PR_CAPBSET_DROP, cap)` failed with something other than `EINVAL`.
    #[error("dropping capability {cap} from the bounding set: {source}")]
    BoundingDrop {
        /// Capability number being dropped.
        cap: u32,
        /// Kernel error.
        source: io::Error,
    },
    /// `prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)` failed.
    #[error("clearing the ambient capability set: {0}")]
    ClearAmbient(#[source] io::Error),
    /// `capget` failed.
    #[error("reading capability sets with capget: {0}")]
    Capget(#[source] io::Error),
    /// `capset` failed (typically `EPERM`: the mask asks for a capability not permitted).
    #[error("capset effective={effective:#x} permitted={permitted:#x}: {source}")]
    Capset {
        /// Requested effective set.
        effective: u64,
        /// Requested permitted set.
        permitted: u64,
        /// Kernel error.
        source: io::Error,
    },
    /// `prctl(PR_SET_NO_NEW_PRIVS, 1)` failed.
    #[error("setting no_new_privs: {0}")]
    NoNewPrivs(#[source] io::Error),
    /// `prctl(PR_SET_KEEPCAPS, 1)` failed.
    #[error("setting keepcaps: {0}")]
    KeepCaps(#[source] io::Error),
    /// A `/proc` file could not be read.
    #[error("reading {path}: {source}", path = path.display())]
    ReadProc {
        /// File that was read.
        path: PathBuf,
        /// I/O error.
        source: io::Error,
    },
    /// A `Cap*:` line is missing from `/proc/self/status`.
    #[error("/proc/self/status has no {field} line")]
    MissingField {
        /// Field name, e.g. `CapEff`.
        field: &'static str,
    },
    /// A `Cap*:` line of `/proc/self/status` is not a hexadecimal mask.
    #[error("/proc/self/status field {field} is not a hex mask: {value:?}")]
    BadField {
        /// Field name, e.g. `CapEff`.
        field: &'static str,
        /// The text found after the colon.
        value: String,
    },
}

/// The five capability sets of a thread, as masks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CapSets {
    /// `CapEff`: what the thread may use now.
    pub effective: u64,
    /// `CapPrm`: upper bound of the effective set.
    pub permitted: u64,
    /// `CapInh`: what may be passed to file-capability programs across `execve`.
    pub inheritable: u64,
    /// `CapBnd`: upper bound of what `execve` can ever grant.
    pub bounding: u64,
    /// `CapAmb`: kept across `execve` of unprivileged programs.
    pub ambient: u64,
}

/// Mask of every capability number from 0 to `last_cap` (clamped to 63).
pub fn valid_cap_mask(last_cap: u32) -> u64 {
    let last = last_cap.min(63);
    u64::MAX >> (63 - last)
}

/// Parses the content of `/proc/sys/kernel/cap_last_cap` (a decimal number and a newline).
pub fn parse_last_cap(text: &str) -> Option<u32> {
    text.trim().parse().ok()
}

/// Capability numbers `0..=last_cap` that are not in `keep_mask`, in ascending order:
/// the `PR_CAPBSET_DROP` calls [`apply_capabilities`] makes.
pub fn bounding_drops(keep_mask: u64, last_cap: u32) -> Vec<u32> {
    (0..=last_cap.min(63)).filter(|cap| keep_mask & (1u64 << cap) == 0).collect()
}

/// Parses the `CapInh`, `CapPrm`, `CapEff`, `CapBnd` and `CapAmb` lines of a
/// `/proc/<pid>/status` text. Every one of the five lines must be present.
pub fn parse_status_caps(text: &str) -> Result<CapSets, CapsError> {
    let field = |name: &'static str| -> Result<u64, CapsError> {
        let value =
            text.lines().find_map(|line| line.strip_prefix(name)?.strip_prefix(':')).ok_or(CapsError::MissingField { field: name })?.trim();
        u64::from_str_radix(value, 16).map_err(|_| CapsError::BadField { field: name, value: value.to_owned() })
    };
    Ok(CapSets {
        effective: field("CapEff")?,
        permitted: field("CapPrm")?,
        inheritable: field("CapInh")?,
        bounding: field("CapBnd")?,
        ambient: field("CapAmb")?,
    })
}

/// Reads the calling process's capability sets from `/proc/self/status`
/// (used by tests and the in-container probe).
pub fn read_own_capabilities() -> Result<CapSets, CapsError> {
    parse_status_caps(&read_proc(Path::new(STATUS_PATH))?)
}

/// Highest capability number the running kernel knows, or [`FALLBACK_LAST_CAP`] when
/// `/proc/sys/kernel/cap_last_cap` cannot be read or parsed (e.g. `/proc` not mounted).
pub fn kernel_last_cap() -> u32 {
    read_proc(Path::new(CAP_LAST_CAP_PATH)).ok().and_then(|text| parse_last_cap(&text)).unwrap_or(FALLBACK_LAST_CAP)
}

/// Reduces the calling thread to `keep_mask`: bounding set = keep, ambient = empty,
/// effective = permitted = keep, inheritable = empty.
///
/// The inheritable set stays empty (as in runc and crun since CVE-2022-24769): a
/// non-empty one would let a program with inheritable file capabilities gain them at
/// `execve` even after the container dropped to a non-root user.
///
/// Bits above the kernel's last capability are ignored (they cannot be held anyway).
/// For a non-root workload, switch uid/gid *before* calling this, after
/// [`keep_caps_across_setuid`]: the effective set the uid change cleared is first raised
/// back to the permitted set, because dropping from the bounding set needs `CAP_SETPCAP`.
pub fn apply_capabilities(keep_mask: u64) -> Result<(), CapsError> {
    let last_cap = kernel_last_cap();
    let keep = keep_mask & valid_cap_mask(last_cap);
    raise_effective_to_permitted()?;
    for cap in bounding_drops(keep, last_cap) {
        drop_bounding(cap)?;
    }
    rthread::clear_ambient_capability_set().map_err(|e| CapsError::ClearAmbient(e.into()))?;
    set_sets(keep, keep, 0)
}

/// Sets `PR_SET_NO_NEW_PRIVS`: `execve` can no longer grant privileges (setuid bits and
/// file capabilities are ignored) and a seccomp filter can be installed without
/// `CAP_SYS_ADMIN`. Irreversible for this process and its children.
pub fn set_no_new_privs() -> Result<(), CapsError> {
    rthread::set_no_new_privs(true).map_err(|e| CapsError::NoNewPrivs(e.into()))
}

/// Sets `PR_SET_KEEPCAPS` so a following `setresuid` from root to non-root keeps the
/// permitted set (the kernel still clears the effective set, which
/// [`apply_capabilities`] restores). The flag is reset by `execve`.
pub fn keep_caps_across_setuid() -> Result<(), CapsError> {
    rthread::set_keep_capabilities(true).map_err(|e| CapsError::KeepCaps(e.into()))
}

/// Makes effective = permitted so `CAP_SETPCAP` is usable even after a uid change.
fn raise_effective_to_permitted() -> Result<(), CapsError> {
    let now = rthread::capabilities(None).map_err(|e| CapsError::Capget(e.into()))?;
    if now.effective == now.permitted {
        return Ok(());
    }
    set_sets(now.permitted.bits(), now.permitted.bits(), now.inheritable.bits())
}

/// Drops one capability from the bounding set; `EINVAL` (unknown to this kernel) is ignored.
fn drop_bounding(cap: u32) -> Result<(), CapsError> {
    match rthread::remove_capability_from_bounding_set(CapabilitySet::from_bits_retain(1 << cap)) {
        Ok(()) | Err(Errno::INVAL) => Ok(()),
        Err(e) => Err(CapsError::BoundingDrop { cap, source: e.into() }),
    }
}

/// `capset` for the calling thread.
fn set_sets(effective: u64, permitted: u64, inheritable: u64) -> Result<(), CapsError> {
    let sets = CapabilitySets {
        effective: CapabilitySet::from_bits_retain(effective),
        permitted: CapabilitySet::from_bits_retain(permitted),
        inheritable: CapabilitySet::from_bits_retain(inheritable),
    };
    rthread::set_capabilities(None, sets).map_err(|e| CapsError::Capset { effective, permitted, source: e.into() })
}

/// Reads a small `/proc` file, attaching the path to the error.
fn read_proc(path: &Path) -> Result<String, CapsError> {
    std::fs::read_to_string(path).map_err(|source| CapsError::ReadProc { path: path.to_owned(), source })
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATUS: &str = "Name:\tcat\nUmask:\t0022\nCapInh:\t0000000000000000\n\
        CapPrm:\t000001fffeffffff\nCapEff:\t00000000a80425fb\nCapBnd:\t000001ffffffffff\n\
        CapAmb:\t0000000000000400\nNoNewPrivs:\t0\n";

    #[test]
    fn parses_all_five_sets() {
        let sets = parse_status_caps(STATUS).unwrap();
        assert_eq!(
            sets,
            CapSets { effective: DOCKER_DEFAULT_CAPS, permitted: 0x1fffeffffff, inheritable: 0, bounding: 0x1ffffffffff, ambient: 0x400 }
        );
    }

    #[test]
    fn missing_line_names_the_field() {
        let text = STATUS.replace("CapAmb", "Other");
        match parse_status_caps(&text) {
            Err(CapsError::MissingField { field }) => assert_eq!(field, "CapAmb"),
            other => panic!("expected MissingField, got {other:?}"),
        }
    }

    #[test]
    fn bad_hex_names_the_field_and_value() {
        let text = STATUS.replace("000001ffffffffff", "zz");
        match parse_status_caps(&text) {
            Err(CapsError::BadField { field, value }) => {
                assert_eq!((field, value.as_str()), ("CapBnd", "zz"));
            }
            other => panic!("expected BadField, got {other:?}"),
        }
    }

    #[test]
    fn last_cap_parses_and_rejects_garbage() {
        assert_eq!(parse_last_cap("40\n"), Some(40));
        assert_eq!(parse_last_cap(""), None);
        assert_eq!(parse_last_cap("forty"), None);
    }

    #[test]
    fn valid_mask_covers_zero_to_last() {
        assert_eq!(valid_cap_mask(0), 1);
        assert_eq!(valid_cap_mask(40), 0x1ff_ffff_ffff);
        assert_eq!(valid_cap_mask(63), u64::MAX);
        assert_eq!(valid_cap_mask(200), u64::MAX);
    }

    #[test]
    fn bounding_drops_are_the_complement_of_keep() {
        assert_eq!(bounding_drops(0b1011, 4), vec![2, 4]);
        let drops = bounding_drops(DOCKER_DEFAULT_CAPS, 40);
        assert_eq!(drops.len(), 41 - DOCKER_DEFAULT_CAPS.count_ones() as usize);
        assert!(drops.contains(&21), "CAP_SYS_ADMIN must be dropped");
        assert!(!drops.contains(&0), "CAP_CHOWN must be kept");
        assert_eq!(bounding_drops(u64::MAX, 40), Vec::<u32>::new());
    }
}
