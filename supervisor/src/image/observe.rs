//! How an import tells its progress: the code deep in a pull, a load or an unpack
//! calls [`progress`] and [`log`]; in a worker, those go to its [`Reporter`] (installed
//! with [`install`]); elsewhere, log lines go to the log and progress is dropped.
//! Per thread, so nothing here is shared between threads.

use crate::worker::{Progress, Reporter};
use std::cell::RefCell;

thread_local! {
    static REPORTER: RefCell<Option<Reporter>> = const { RefCell::new(None) };
}

/// Removes the installed reporter when dropped.
pub struct Installed(());

impl Drop for Installed {
    fn drop(&mut self) {
        REPORTER.with(|r| r.borrow_mut().take());
    }
}

/// Send this thread's import progress and log lines to `reporter` until the guard drops.
#[must_use]
pub fn install(reporter: Reporter) -> Installed {
    REPORTER.with(|r| *r.borrow_mut() = Some(reporter));
    Installed(())
}

/// An item (e.g. a layer) moved: `phase` "download", "copy", "unpack"…; `item` a short digest.
pub fn progress(item: &str, phase: &str, done: u64, total: Option<u64>) {
    REPORTER.with(|r| {
        if let Some(reporter) = r.borrow_mut().as_mut() {
            reporter.progress(Progress { item: item.to_string(), phase: phase.to_string(), done, total });
        }
    });
}

/// A line worth the log.
pub fn log(message: &str) {
    let sent = REPORTER.with(|r| match r.borrow_mut().as_mut() {
        Some(reporter) => {
            reporter.log(message);
            true
        }
        None => false,
    });
    if !sent {
        log::info!("{message}");
    }
}

/// The item name of a digest in progress reports: its first 12 hex digits.
pub fn item_of(digest: &str) -> String {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    hex.chars().take(12).collect()
}
