//! Container process hardening: capability sets and the default seccomp filter.
//!
//! These functions run in the freshly cloned container child, after `pivot_root` and right
//! before `execve`, while the process is single-threaded. They only change the calling
//! thread, so they must not be called from the supervisor itself.
//!
//! # Order of operations (the caller's job)
//!
//! 1. If the workload runs as a non-root user: [`caps::keep_caps_across_setuid`], then the
//!    caller's `setgroups`/`setresgid`/`setresuid`. Without `PR_SET_KEEPCAPS` the kernel
//!    empties the permitted set on the uid change and step 2 cannot restore it.
//! 2. [`caps::apply_capabilities`] with the container's keep mask (for example
//!    [`caps::DOCKER_DEFAULT_CAPS`]).
//! 3. [`caps::set_no_new_privs`] if the spec asks for it.
//! 4. [`seccomp::install_default_filter`] with the same keep mask (the allowlist grants
//!    some calls by capability, as Docker's profile does), last. Installing a filter needs either
//!    no_new_privs (step 3) or `CAP_SYS_ADMIN` in the effective set. A container that keeps
//!    setuid binaries working (no no_new_privs) must therefore install the filter *before*
//!    step 2 drops `CAP_SYS_ADMIN`; the filter denies none of the calls steps 1-2 make.
//!
//! # Limitations
//!
//! - x86_64 only. On other architectures [`seccomp::install_default_filter`] returns
//!   [`seccomp::SeccompError::UnsupportedArch`]; 32-bit (i386) system calls are killed
//!   and x32 ones get `EPERM`, so 32-bit binaries cannot run in a container.
//! - The seccomp filter is an allowlist following Docker's default profile; the
//!   differences are listed in [`seccomp::policy::DIFFERENCES`] and README.md. A system
//!   call newer than the list fails with `ENOSYS` until the list is updated.
//! - For a non-root workload the kernel clears the permitted and effective sets at `execve`
//!   (no ambient capabilities are raised); the keep mask then only bounds what setuid and
//!   file-capability binaries can gain. This matches Docker's default.
//! - `read_own_capabilities` needs `/proc` mounted in the container.
//!
//! `unsafe` lives in two places only: the `seccomp(2)` call in `seccomp.rs` (no safe wrapper
//! in rustix or nix installs a filter without also forcing no_new_privs), and the fork-based
//! host tests. Capabilities go through rustix's safe wrappers.

pub mod caps;
pub mod seccomp;
mod sys;

#[cfg(test)]
mod host_tests;
