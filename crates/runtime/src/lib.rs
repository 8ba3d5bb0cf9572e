//! The Kafka runtime of trendwatch: everything between the pure engine and the broker.
//!
//! - [`counter`] — the counter service (`trendwatch run`): a consumer-group member that
//!   feeds each assigned partition's records to its own engine state, emits alerts,
//!   dead-letters bad input, checkpoints state with offsets and commits after them.
//! - [`ranker`] — the ranker service (`trendwatch rank`): merges the counters' per-partition
//!   candidates into the global board per window, with its alerts.
//! - [`api`] — the query API under `/v1/` on the same listener: a video's state on the
//!   counters (with redirects between them through the membership topic), the board and
//!   recent alerts on the ranker, which also proxies video queries to the counters.
//! - [`console`] — the web console the ranker serves (static files compiled in).
//! - [`board`] — `trendwatch leaderboard`: the live board in a terminal, or once as JSON.
//! - [`checkpoint`] — the checkpoint format on the compacted state topics and its store.
//! - [`deadletter`] — headers of dead-letter and late records, cut to fit when too big.
//! - `protocol` — the counter's delivery protocol as one pure machine (the counter is its
//!   rdkafka adapter); `delivery` — the decisions it and the ranker share (pure functions).
//! - [`client`] — Kafka clients from the configuration, topic creation.
//! - [`health`] — readiness, and the HTTP listener for `/metrics`, `/healthz`, `/readyz`.
//! - [`telemetry`] — every metric name, described in one place; logging set-up.
//! - [`publish`] and [`tail`] — the tools that write events to and read alerts from Kafka.
//! - [`partitioner`] — the partition a keyed record lands on (CRC-32 as librdkafka's default,
//!   or murmur2 as the Java client's: `topics.events_partitioner`).
//! - [`perf`] — the yardsticks of the broker benchmark (bare consumer, mock cluster).
//!
//! Nothing here decides what trends: that is `trendwatch-core`, fed through
//! `trendwatch-proto`'s decoder.

pub mod api;
pub mod board;
pub mod checkpoint;
pub mod client;
pub mod console;
mod context;
pub mod counter;
pub mod deadletter;
mod delivery;
mod error;
pub mod health;
mod output;
pub mod partitioner;
pub mod perf;
mod protocol;
pub mod publish;
pub mod ranker;
#[cfg(test)]
mod sim;
#[cfg(test)]
mod sim_counters;
pub mod tail;
pub mod telemetry;

use std::time::{SystemTime, UNIX_EPOCH};

pub use error::{Result, RuntimeError};

/// The wall clock in milliseconds since the epoch.
pub fn wall_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
