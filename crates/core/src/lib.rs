//! trendwatch's pure engine.
//!
//! Everything trendwatch decides happens here, with no I/O, no clock and no async runtime:
//! time comes in as data (event times, plus explicit wall-clock ticks for idle partitions)
//! and decisions go out as values. That is what makes replay, backtests, property tests and
//! crash-recovery checks possible: the Kafka services wrap exactly this code.
//!
//! - [`event`]: the engine's view of an event ([`EventRef`]) and of an [`Alert`].
//! - [`config`]: window sizes, thresholds and memory bounds, validated in one pass.

pub mod config;
pub mod event;

pub use config::EngineConfig;
pub use event::{Alert, AlertType, EventKind, EventRef};
