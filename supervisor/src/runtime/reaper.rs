//! The binary of keel's reaper (`init = true`): a sealed in-memory copy of keel, never
//! the host's file.
//!
//! A container's PID 1 exec'd from the host's `/usr/bin/keel` would give the
//! container's root a way to the host's file through `/proc/1/exe` (CVE-2019-5736: change
//! its mode, owner, times and xattrs, or its content where the host's copy is writable,
//! as on an initramfs or tmpfs root, or under `keel run`). Like runc, keel execs a copy
//! instead: a memfd holding keel's bytes, sealed against writes, growth and shrinking
//! before it is exec'd, so the container reaches only that copy, and the reaper makes
//! itself non-dumpable as it starts (`keel init`), so `/proc/1/exe` and `/proc/1/fd`
//! are closed to the container anyway.

use rustix::fs::{MemfdFlags, SealFlags};
use std::os::fd::OwnedFd;

/// Why the reaper's binary could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum ReaperError {
    /// A step of making the copy failed.
    #[error("init = true: {what}: {source}")]
    Copy {
        /// The step.
        what: &'static str,
        /// The cause.
        source: std::io::Error,
    },
}

fn step(what: &'static str) -> impl FnOnce(std::io::Error) -> ReaperError {
    move |source| ReaperError::Copy { what, source }
}

/// A sealed memfd copy of the running binary, to exec with execveat(AT_EMPTY_PATH).
/// Called in the container child before pivot_root, while `/proc/self/exe` is keel.
pub fn sealed_copy_of_self() -> Result<OwnedFd, ReaperError> {
    let mut source = std::fs::File::open("/proc/self/exe").map_err(step("open keel's binary"))?;
    let memfd = rustix::fs::memfd_create("keel-init", MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING)
        .map_err(|e| step("memfd_create")(e.into()))?;
    let mut copy = std::fs::File::from(memfd);
    std::io::copy(&mut source, &mut copy).map_err(step("copy keel's binary"))?;
    let seals = SealFlags::SEAL | SealFlags::SHRINK | SealFlags::GROW | SealFlags::WRITE;
    rustix::fs::fcntl_add_seals(&copy, seals).map_err(|e| step("seal the copy")(e.into()))?;
    Ok(OwnedFd::from(copy))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Seek, Write};

    #[test]
    fn the_copy_is_the_binary_and_cannot_be_changed() {
        let fd = sealed_copy_of_self().unwrap();
        let mut copy = std::fs::File::from(fd);
        let len = copy.seek(std::io::SeekFrom::End(0)).unwrap();
        assert_eq!(len, std::fs::metadata("/proc/self/exe").unwrap().len());
        copy.seek(std::io::SeekFrom::Start(0)).unwrap();
        let err = copy.write_all(b"\x7fELF").unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EPERM), "sealed against writes");
        assert!(copy.set_len(1).is_err(), "sealed against shrinking");
        // Control: an unsealed memfd takes the same write.
        let open = rustix::fs::memfd_create("control", MemfdFlags::CLOEXEC).unwrap();
        std::fs::File::from(open).write_all(b"\x7fELF").unwrap();
    }
}
