//! The bpf(2) calls of the device filter: load the program, attach it to a cgroup
//! directory, list what is attached. The only unsafe code of the cgroup module; each
//! call passes a `union bpf_attr` prefix (include/uapi/linux/bpf.h) laid out as
//! `#[repr(C)]` structs below, whose fields the kernel reads (and for a query, writes)
//! within the size given.
#![allow(unsafe_code)]

use super::program::{build, bytecode};
use super::{DeviceRule, DEFAULT_RULES};
use nix::fcntl::{self, OFlag};
use nix::sys::stat::Mode;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

/// `enum bpf_cmd` values.
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_QUERY: libc::c_long = 16;
/// `BPF_PROG_TYPE_CGROUP_DEVICE` of `enum bpf_prog_type`.
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
/// `BPF_CGROUP_DEVICE` of `enum bpf_attach_type`.
const BPF_CGROUP_DEVICE: u32 = 6;
/// Verifier log kept when a load fails.
const LOG_SIZE: usize = 16 * 1024;
/// Most program ids [`attached_programs`] reports.
const QUERY_MAX: usize = 64;
/// The program's license (no GPL-only helper is called).
const LICENSE: &[u8] = b"Apache-2.0\0";

/// The `BPF_PROG_LOAD` part of `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// The `BPF_PROG_ATTACH` part of `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
struct ProgAttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
}

/// The `BPF_PROG_QUERY` part of `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
struct ProgQueryAttr {
    target_fd: u32,
    attach_type: u32,
    query_flags: u32,
    attach_flags: u32,
    prog_ids: u64,
    prog_cnt: u32,
}

/// Why the device filter could not be installed or read.
#[derive(Debug, thiserror::Error)]
pub enum DeviceFilterError {
    /// Opening the cgroup directory failed.
    #[error("open {}: {source}", path.display())]
    Open {
        /// The cgroup directory.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The kernel refused the program (the verifier's log, if any, follows).
    #[error("bpf(BPF_PROG_LOAD) of the device filter: {source}{}", verifier_log(log))]
    Load {
        /// The OS error.
        source: io::Error,
        /// The verifier's log.
        log: String,
    },
    /// Attaching the program to the cgroup failed.
    #[error("bpf(BPF_PROG_ATTACH, BPF_CGROUP_DEVICE) to {}: {source}", path.display())]
    Attach {
        /// The cgroup directory.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// Listing the programs attached to the cgroup failed.
    #[error("bpf(BPF_PROG_QUERY, BPF_CGROUP_DEVICE) on {}: {source}", path.display())]
    Query {
        /// The cgroup directory.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
}

fn verifier_log(log: &str) -> String {
    if log.trim().is_empty() {
        String::new()
    } else {
        format!("; verifier: {}", log.trim())
    }
}

/// bpf(2) with `attr`; the kernel reads (and may write) `size_of::<T>()` bytes of it.
fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<libc::c_long> {
    let size = std::mem::size_of::<T>() as libc::c_uint;
    // SAFETY: `attr` is a live, exclusively borrowed `#[repr(C)]` prefix of
    // `union bpf_attr` of exactly `size` bytes, and every pointer inside it (insns,
    // license, log buffer, id array) points to memory that outlives this call and is
    // as large as the length fields next to it say.
    let ret = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr as *mut T, size) };
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Take ownership of a descriptor the kernel just returned.
fn owned_fd(raw: libc::c_long) -> OwnedFd {
    // SAFETY: `raw` is a new descriptor bpf(2) returned to us; nothing else owns it.
    unsafe { OwnedFd::from_raw_fd(raw as RawFd) }
}

/// Load a device filter of `rules`; retried once with the verifier's log on failure.
fn load(rules: &[DeviceRule]) -> Result<OwnedFd, DeviceFilterError> {
    let code = bytecode(&build(rules));
    let mut name = [0u8; 16];
    name[..10].copy_from_slice(b"keel_devcg");
    let mut attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: (code.len() / 8) as u32,
        insns: code.as_ptr() as u64,
        license: LICENSE.as_ptr() as u64,
        prog_name: name,
        ..ProgLoadAttr::default()
    };
    if let Ok(fd) = bpf(BPF_PROG_LOAD, &mut attr) {
        return Ok(owned_fd(fd));
    }
    let mut log = vec![0u8; LOG_SIZE];
    attr.log_level = 1;
    attr.log_size = LOG_SIZE as u32;
    attr.log_buf = log.as_mut_ptr() as u64;
    match bpf(BPF_PROG_LOAD, &mut attr) {
        Ok(fd) => Ok(owned_fd(fd)),
        Err(source) => {
            let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
            Err(DeviceFilterError::Load { source, log: String::from_utf8_lossy(&log[..end]).into() })
        }
    }
}

fn open_cgroup(dir: &Path) -> Result<OwnedFd, DeviceFilterError> {
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
    fcntl::open(dir, flags, Mode::empty()).map_err(|e| DeviceFilterError::Open { path: dir.to_path_buf(), source: e.into() })
}

/// Load the OCI default device filter and attach it to the cgroup at `dir` (replacing
/// a filter attached there before). It applies to every cgroup below `dir` and to
/// every process there from then on; the program's fd is closed, the attachment keeps
/// the program alive.
pub fn attach_default_filter(dir: &Path) -> Result<(), DeviceFilterError> {
    attach_filter(dir, &DEFAULT_RULES)
}

/// [`attach_default_filter`] with other rules: a privileged container's
/// ([`super::PRIVILEGED_RULES`]) replaces the default filter an earlier, unprivileged
/// declaration of the same name left on its reused cgroup.
pub fn attach_filter(dir: &Path, rules: &[DeviceRule]) -> Result<(), DeviceFilterError> {
    let cgroup = open_cgroup(dir)?;
    let program = load(rules)?;
    let mut attr = ProgAttachAttr {
        target_fd: cgroup.as_raw_fd() as u32,
        attach_bpf_fd: program.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        ..ProgAttachAttr::default()
    };
    bpf(BPF_PROG_ATTACH, &mut attr).map(drop).map_err(|source| DeviceFilterError::Attach { path: dir.to_path_buf(), source })
}

/// The ids of the device programs attached to the cgroup at `dir` itself (not those
/// it inherits).
pub fn attached_programs(dir: &Path) -> Result<Vec<u32>, DeviceFilterError> {
    let cgroup = open_cgroup(dir)?;
    let mut ids = [0u32; QUERY_MAX];
    let mut attr = ProgQueryAttr {
        target_fd: cgroup.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        prog_ids: ids.as_mut_ptr() as u64,
        prog_cnt: QUERY_MAX as u32,
        ..ProgQueryAttr::default()
    };
    bpf(BPF_PROG_QUERY, &mut attr).map_err(|source| DeviceFilterError::Query { path: dir.to_path_buf(), source })?;
    let count = (attr.prog_cnt as usize).min(QUERY_MAX);
    Ok(ids[..count].to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attr_layouts_match_the_kernel() {
        // Offsets of union bpf_attr's fields (include/uapi/linux/bpf.h).
        assert_eq!(std::mem::size_of::<ProgLoadAttr>(), 72);
        assert_eq!(std::mem::offset_of!(ProgLoadAttr, insns), 8);
        assert_eq!(std::mem::offset_of!(ProgLoadAttr, log_buf), 32);
        assert_eq!(std::mem::offset_of!(ProgLoadAttr, prog_name), 48);
        assert_eq!(std::mem::offset_of!(ProgLoadAttr, expected_attach_type), 68);
        assert_eq!(std::mem::size_of::<ProgAttachAttr>(), 20);
        assert_eq!(std::mem::offset_of!(ProgQueryAttr, prog_ids), 16);
        assert_eq!(std::mem::offset_of!(ProgQueryAttr, prog_cnt), 24);
    }

    #[test]
    fn attaching_to_a_plain_directory_fails_and_names_it() {
        let tmp = tempfile::tempdir().unwrap();
        match attach_default_filter(tmp.path()) {
            // As root the program loads (the kernel's verifier accepts it), and only
            // the attach to a directory that is no cgroup fails.
            Err(DeviceFilterError::Attach { path, .. }) => assert_eq!(path, tmp.path()),
            // Without CAP_BPF/CAP_SYS_ADMIN the load itself is refused.
            Err(DeviceFilterError::Load { source, .. }) => {
                assert_eq!(source.raw_os_error(), Some(libc::EPERM), "{source}")
            }
            other => panic!("{other:?}"),
        }
        let missing = tmp.path().join("nope");
        let err = attach_default_filter(&missing).unwrap_err();
        assert!(matches!(&err, DeviceFilterError::Open { path, .. } if *path == missing), "{err}");
    }
}
