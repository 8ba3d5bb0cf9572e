//! trendwatch's pure engine.
//!
//! Everything trendwatch decides happens here, with no I/O, no clock and no async runtime:
//! time comes in as data (event times, plus explicit wall-clock ticks for idle partitions)
//! and decisions go out as values. That is what makes replay, backtests, property tests and
//! crash-recovery checks possible: the Kafka services wrap exactly this code.
//!
//! - [`event`]: the engine's view of an event ([`EventRef`]) and of an [`Alert`].
//! - [`config`]: window sizes, thresholds and memory bounds, validated in one pass.
//! - [`PartitionState`]: one partition's windows, watermark, de-duplication, admission and
//!   detectors; fed events in offset order, it returns a [`Verdict`] per event and alerts.
//!   Its module docs define the time model and what determinism means with wall-clock ticks.
//! - [`rank`]: the global [`Ranker`], merging partitions' top-K candidate sets into one
//!   board per window, with its own alert lifecycle (the second stage of a two-stage top-K).
//!
//! - [`view`]: [`VideoView`], a read-only picture of one tracked video (what the counters'
//!   query API answers with).
//!
//! Inside, `video` holds a tracked video's fixed-size rings and baselines, `detect` the
//! viral-velocity and trending detectors with their shared alert lifecycle, `dedup` the
//! event-id horizon and `sketch` the Count-Min sketch that decides admission under the cap.

pub mod config;
mod creators;
mod dedup;
mod detect;
mod error;
pub mod event;
mod hash;
mod partition;
pub mod rank;
mod sketch;
mod video;
pub mod view;

pub use config::EngineConfig;
pub use error::{CoreError, Result};
pub use event::{Alert, AlertType, EventKind, EventRef};
pub use hash::key_hash;
pub use partition::{PartitionState, PartitionStats, Verdict, VideoCounts};
pub use rank::{Board, BoardEntry, Candidate, CandidateSet, Offered, Ranker, RankingConfig};
pub use view::VideoView;
