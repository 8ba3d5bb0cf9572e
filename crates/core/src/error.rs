//! The core crate's one error type.

/// What can go wrong in the engine. Event-level problems are not errors: they are
/// [`crate::Verdict`]s, because a bad event must never stop a partition.
#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    /// The configuration failed validation; every problem is listed.
    #[error("invalid engine configuration:\n  {}", .0.join("\n  "))]
    InvalidConfig(Vec<String>),
    /// A state snapshot could not be read back.
    #[error("cannot restore partition state: {0}")]
    Snapshot(String),
}

impl CoreError {
    /// Whether retrying the same call could succeed. Neither kind can: both need a fix.
    pub fn is_retryable(&self) -> bool {
        false
    }
}

/// The core crate's result type.
pub type Result<T> = std::result::Result<T, CoreError>;
