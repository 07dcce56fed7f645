//! Apply side of first boot: turns a [`WritePlan`] (plain data converted from the
//! validated config, with every remote resource already fetched and checked) into
//! files, directories, links, users and groups under a root directory.
//!
//! Everything takes `root: &Path` (PID 1 passes `/`, tests a temp dir).
//! [`apply`] stages every file next to its destination, commits with renames, and
//! writes the marker last, so a power cut either leaves the marker absent (the next
//! boot applies the same plan again, with the same result) or everything applied.
//!
//! Limitations (current state): group passwords are written into `/etc/group`
//! (no `/etc/gshadow`); ownership on hard links is not changed (it would change the
//! target); appends are idempotent across interrupted attempts (a journal next to
//! the marker remembers the original contents) but not across a forced re-run after
//! a completed apply.

pub mod accounts;
mod journal;
pub mod plan;
pub mod resource;
mod safepath;
mod stage;
pub mod write;

pub use plan::{IdOrName, PlannedDir, PlannedFile, PlannedGroup, PlannedLink, PlannedUser, WritePlan};
pub use resource::{resolve_resource, HashAlg, ResourceError, MAX_RESOURCE_SIZE};
pub use write::{apply, ApplyError, ApplyErrorKind, ApplyReport, ApplyStep};

#[cfg(test)]
mod write_tests;
