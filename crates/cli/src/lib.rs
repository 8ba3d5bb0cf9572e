//! The `trendwatch` command line's library half: everything the binary does, callable from
//! tests and benchmarks. `main` only parses flags and calls in here.
//!
//! - [`replay`]: runs the engine over an event file exactly as the service will run it.
//! - [`backtest`]: scores a replay's alerts against a load generator's ground truth.
//! - [`poisson`]: the per-minute Poisson yardstick scored beside the engine.
//! - [`report`]: the backtest report, one self-contained HTML page of figures and charts.
//! - [`partitioner`]: which partition a keyed message lands on (the runtime's, re-exported:
//!   the counters answer queries by it too).
//! - [`service`]: the Kafka commands (`run`, `alerts tail`, `publish`, `topics create`).

pub mod backtest;
pub mod oracle;
pub use trendwatch_runtime::partitioner;
pub mod poisson;
pub mod replay;
pub mod report;
pub mod service;
