//! Pulling images from a registry (the OCI distribution API v2, as served by Docker
//! Hub, ghcr.io, quay.io or Debian's docker-registry) over https or http: token auth,
//! manifest lists, resumable blob downloads, digests checked. A pull ends as an OCI
//! image layout directory; the image store imports it like a local `oci:` layout.

pub mod auth;
pub mod pull;
pub mod session;
pub mod settings;

pub use pull::{pull_to_layout, PullSpec, Pulled};

#[cfg(test)]
mod tests;
