//! First boot as PID 1 drives it: the step's typed failure.

/// Why the first-boot step failed; its text is the step's boot error.
#[derive(Debug, thiserror::Error)]
pub enum FirstbootFailure {
    /// The config (or a source or resource it names) failed; the report lists why.
    #[error("the config failed with {problems} problem(s); see keelctl firstboot")]
    Config {
        /// How many problems the report lists.
        problems: usize,
    },
}
