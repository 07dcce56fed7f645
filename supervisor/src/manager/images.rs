//! Containers whose image is not ready: the manager does not import on PID 1's thread.
//! Before a launch it asks an [`ImageCheck`] whether the image needs a pull or an import;
//! if so the container stays Waiting, the need is queued for PID 1 (which runs it as a
//! job, see `init/src/jobs.rs`), and the container starts when PID 1 says the job ended.

use super::{Manager, Phase};
use crate::image::ImageSource;
use crate::spec::{ContainerName, ContainerSpec};
use crate::worker::{JobId, JobKind};
use log::{info, warn};
use std::time::Instant;

/// An image a container needs before it can start, and the job that gets it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageNeed {
    /// `Pull` for a registry image, `Import` for a file source (or layers not unpacked).
    pub kind: JobKind,
    /// The image as declared.
    pub source: ImageSource,
}

impl ImageNeed {
    /// The reference text (the job's target and the store's name for it).
    pub fn reference(&self) -> String {
        self.source.to_string()
    }
}

/// Whether a declaration's image is ready to run, asked before each launch.
pub trait ImageCheck {
    /// None when `spec` can start now (no image, or its image is in the store and unpacked).
    fn need(&self, spec: &ContainerSpec) -> Option<ImageNeed>;
    /// The manifest digest `spec`'s image reference names in the store now (None: no
    /// image, or not in the store), recorded at each start so a reconcile can tell that
    /// the image under a reference changed.
    fn digest(&self, _spec: &ContainerSpec) -> Option<String> {
        None
    }
}

/// The check on the store at `root` (PID 1's, normally).
pub struct StoreCheck {
    /// The store's root.
    pub root: std::path::PathBuf,
}

impl ImageCheck for StoreCheck {
    fn need(&self, spec: &ContainerSpec) -> Option<ImageNeed> {
        crate::image::run::need(&self.root, spec)
    }

    fn digest(&self, spec: &ContainerSpec) -> Option<String> {
        let crate::spec::ImageRef::Image(source) = &spec.image else { return None };
        let store = crate::image::store::Store::open(&self.root).ok()?;
        Some(store.lookup(&source.to_string()).ok()??.manifest.to_string())
    }
}

impl Manager {
    /// Check images with `check` before each launch (without one, launches go straight on).
    pub fn set_image_check(&mut self, check: Box<dyn ImageCheck>) {
        self.images = Some(check);
    }

    /// Before launching `name`: true when its image is not ready; it then waits and its
    /// need is queued (once per reference) for [`take_image_needs`](Self::take_image_needs).
    pub(super) fn image_pending(&mut self, name: &ContainerName, spec: &ContainerSpec) -> bool {
        let Some(need) = self.images.as_ref().and_then(|c| c.need(spec)) else { return false };
        let reference = need.reference();
        if let Some(entry) = self.entries.get_mut(name) {
            entry.phase = Phase::Waiting;
            entry.awaiting_image = Some(reference.clone());
            entry.detail = Some(format!("waiting for image {} of {reference}", need.kind));
        }
        if !self.image_needs.iter().any(|n| n.reference() == reference) {
            self.image_needs.push(need);
        }
        true
    }

    /// The images containers wait for that PID 1 has not been asked for yet.
    pub fn take_image_needs(&mut self) -> Vec<ImageNeed> {
        std::mem::take(&mut self.image_needs)
    }

    /// PID 1 started (or joined) `job` for `reference`: say so in the waiting containers' detail.
    pub fn image_job_started(&mut self, reference: &str, kind: JobKind, job: JobId) {
        for entry in self.entries.values_mut().filter(|e| e.awaiting_image.as_deref() == Some(reference)) {
            entry.detail = Some(format!("waiting for image {kind} (job {job})"));
        }
    }

    /// The job for `reference` ended (or could not start): on success the containers
    /// waiting for it start at the next tick; on failure each counts a failed start
    /// (its restart policy may try again, which asks for a new job).
    pub fn image_done(&mut self, reference: &str, result: Result<(), String>, now: Instant) {
        let waiting: Vec<ContainerName> =
            self.entries.iter().filter(|(_, e)| e.awaiting_image.as_deref() == Some(reference)).map(|(n, _)| n.clone()).collect();
        for name in waiting {
            let Some(entry) = self.entries.get_mut(&name) else { continue };
            entry.awaiting_image = None;
            match &result {
                Ok(()) => {
                    info!("container {name}: image {reference} is ready");
                    entry.detail = None;
                }
                Err(problem) => {
                    warn!("container {name}: cannot start: {problem}");
                    entry.detail = Some(problem.clone());
                    entry.started = Some((now, std::time::SystemTime::now()));
                    self.after_exit(&name, 127, now);
                }
            }
        }
    }
}
