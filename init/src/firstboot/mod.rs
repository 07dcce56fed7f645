//! First boot: an Ignition-style config, fetched once, validated whole, and
//! applied atomically to the root filesystem before the marker is written.
//!
//! `apply` turns an already fetched and validated plan into files, directories,
//! links and accounts under a root directory (stage everything, then commit with
//! renames, then the marker).

pub mod apply;
pub mod config;
pub mod configdrive;
pub mod job;
pub mod run;
