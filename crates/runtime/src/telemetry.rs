//! Every metric the services export, named in one place, and the set-up of metrics and logs.
//!
//! Names follow `trendwatch_<name>_<unit>`, counters end in `_total`, and labels only take
//! bounded values (kinds, reasons, alert types and tiers, partitions) — never a video id.

use std::sync::OnceLock;

use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use trendwatch_config::{LogFormat, TelemetryConfig};

use crate::error::{Result, RuntimeError};

/// Kafka records read from the events topic (valid or not).
pub const RECORDS_CONSUMED: &str = "trendwatch_records_consumed_total";
/// Events counted into windows, by `kind`.
pub const EVENTS_COUNTED: &str = "trendwatch_events_counted_total";
/// Records refused by decoding or validation, by `reason`.
pub const EVENTS_REJECTED: &str = "trendwatch_events_rejected_total";
/// Events older than their partition's watermark.
pub const EVENTS_LATE: &str = "trendwatch_events_late_total";
/// Re-delivered events dropped by de-duplication.
pub const EVENTS_DUPLICATE: &str = "trendwatch_events_duplicate_total";
/// Events of videos not admitted under the tracked-video cap.
pub const EVENTS_UNTRACKED: &str = "trendwatch_events_untracked_total";
/// Records written to the dead-letter topic, by `reason`.
pub const DLQ_RECORDS: &str = "trendwatch_dlq_records_total";
/// Late events written to the late-events topic.
pub const LATE_RECORDS: &str = "trendwatch_late_records_total";
/// Alerts handed to the producer, by `type` and `tier`.
pub const ALERTS_EMITTED: &str = "trendwatch_alerts_emitted_total";
/// Wall time from an alert's `detected_at` (event time) to its emission.
pub const ALERT_LATENCY: &str = "trendwatch_alert_latency_seconds";
/// Partition checkpoints attempted, by `result` (`ok`, `failed`).
pub const CHECKPOINTS: &str = "trendwatch_checkpoints_total";
/// Whole checkpoints that did not decode at a restore (the one before was tried).
pub const CHECKPOINTS_UNREADABLE: &str = "trendwatch_checkpoints_unreadable_total";
/// Time to write one round of checkpoints and have them acknowledged.
pub const CHECKPOINT_DURATION: &str = "trendwatch_checkpoint_duration_seconds";
/// Bytes of checkpoint written.
pub const CHECKPOINT_BYTES: &str = "trendwatch_checkpoint_bytes_total";
/// Time to restore the partitions of one assignment from their checkpoints.
pub const RESTORE_DURATION: &str = "trendwatch_restore_duration_seconds";
/// Partitions whose group had committed offsets but no checkpoint at a restore.
pub const CHECKPOINTS_MISSING: &str = "trendwatch_checkpoints_missing_total";
/// Restores tried again after their reading stalled.
pub const RESTORE_RETRIES: &str = "trendwatch_restore_retries_total";
/// Messages between a partition's position and its high watermark, by `partition`.
pub const CONSUMER_LAG: &str = "trendwatch_consumer_lag_messages";
/// Wall clock minus the partition's watermark, by `partition`.
pub const WATERMARK_DELAY: &str = "trendwatch_watermark_delay_seconds";
/// Videos tracked over all assigned partitions.
pub const TRACKED_VIDEOS: &str = "trendwatch_tracked_videos";
/// Bytes of engine state over all assigned partitions.
pub const STATE_BYTES: &str = "trendwatch_state_bytes";
/// Event ids forgotten for `engine.capacity.max_dedup_ids` (event times stalled or a
/// flood outran the dedup horizon): a re-delivery of one of them counts again.
pub const DEDUP_FORGOTTEN: &str = "trendwatch_dedup_ids_forgotten_total";
/// Tracked videos evicted for hotter ones.
pub const VIDEOS_EVICTED: &str = "trendwatch_videos_evicted_total";
/// Tracked videos forgotten after their TTL.
pub const VIDEOS_EXPIRED: &str = "trendwatch_videos_expired_total";
/// Partitions assigned to this instance.
pub const ASSIGNED_PARTITIONS: &str = "trendwatch_assigned_partitions";
/// Seconds this group member has been subscribed with no partition assigned (0 while it
/// has any). Normal for a spare member; a group whose partitions have no owner while a
/// member waits is stalled.
pub const UNASSIGNED_SECONDS: &str = "trendwatch_unassigned_seconds";
/// Partitions of the events topic, as the client's metadata knows them.
pub const EVENTS_PARTITIONS: &str = "trendwatch_events_topic_partitions";
/// Rebalance callbacks, by `kind` (`assign`, `revoke`, and `lost` for an assignment the
/// group took away without a revoke: session expired, member fenced).
pub const REBALANCES: &str = "trendwatch_rebalances_total";
/// Offset commits the broker refused.
pub const COMMIT_FAILURES: &str = "trendwatch_commit_failures_total";
/// Produced records (alerts, dead letters, late events) the broker did not acknowledge.
pub const DELIVERY_FAILURES: &str = "trendwatch_delivery_failures_total";
/// Partitions rewound to their last checkpoint after a failed delivery.
pub const PARTITION_REWINDS: &str = "trendwatch_partition_rewinds_total";
/// Records that did not follow their partition's previous one; read again from the gap.
pub const OFFSET_GAPS: &str = "trendwatch_offset_gaps_total";
/// Idle advances of a silent partition's watermark not taken because its reader was not
/// at the end of the partition's log (broker unreachable, fetch errors, records waiting).
pub const IDLE_HELD: &str = "trendwatch_idle_advances_held_total";
/// Offsets of the events topic that do not exist on the broker any more (transaction
/// markers, compaction, or records deleted by retention before they were read).
pub const OFFSETS_SKIPPED: &str = "trendwatch_offsets_skipped_total";
/// Exactly-once transactions, by `result` (committed, aborted, fenced).
pub const TRANSACTIONS: &str = "trendwatch_transactions_total";
/// 1 when `/readyz` answers ready.
pub const READY: &str = "trendwatch_ready";
/// Candidate sets (a partition's top videos of a closed window) sent to the ranker.
pub const CANDIDATE_SETS: &str = "trendwatch_candidate_sets_total";
/// Ranker: candidate sets read from the candidates topic, by `result` (`merged`, `stale`
/// for a window already closed, `rejected` for an undecodable record or a foreign window
/// geometry).
pub const RANKER_SETS: &str = "trendwatch_ranker_candidate_sets_total";
/// Ranker: alerts about the global board, by `type` (TRENDING, RANK_CHANGED,
/// TRENDING_ENDED).
pub const RANKER_ALERTS: &str = "trendwatch_ranker_alerts_total";
/// Ranker: windows closed.
pub const RANKER_WINDOWS_CLOSED: &str = "trendwatch_ranker_windows_closed_total";
/// Ranker: windows closed while a partition was left out as idle.
pub const RANKER_WINDOWS_LEFT_OUT: &str = "trendwatch_ranker_windows_with_idle_partitions_total";
/// Ranker: windows closed early because too many were waiting for a slow partition.
pub const RANKER_FORCED_CLOSES: &str = "trendwatch_ranker_forced_closes_total";
/// Ranker: boards published to the leaderboard topic.
pub const RANKER_BOARDS: &str = "trendwatch_ranker_boards_total";
/// Ranker: partitions the next window waits for.
pub const RANKER_WAITING_PARTITIONS: &str = "trendwatch_ranker_waiting_partitions";
/// Ranker: partitions left out as idle.
pub const RANKER_IDLE_PARTITIONS: &str = "trendwatch_ranker_idle_partitions";
/// Ranker: windows waiting to close.
pub const RANKER_PENDING_WINDOWS: &str = "trendwatch_ranker_pending_windows";
/// Ranker: entries on the last board.
pub const RANKER_BOARD_SIZE: &str = "trendwatch_ranker_board_size";
/// Ranker: wall clock minus the end of the last closed window.
pub const RANKER_BOARD_DELAY: &str = "trendwatch_ranker_board_delay_seconds";
/// Ranker: records of the candidates topic not yet read.
pub const RANKER_LAG: &str = "trendwatch_ranker_lag_messages";
/// Query API requests answered, by route template and status code (never by video).
pub const API_REQUESTS: &str = "trendwatch_api_requests_total";
/// Counter: time to answer a video query (redirects and refusals included).
pub const API_QUERY_DURATION: &str = "trendwatch_api_video_query_duration_seconds";
/// Ranker: time to answer a video query by asking the counters (errors included).
pub const API_PROXY_DURATION: &str = "trendwatch_api_video_proxy_duration_seconds";
/// Ranker: server-sent-event streams open.
pub const API_SSE_CLIENTS: &str = "trendwatch_api_sse_clients";
/// Ranker: streams that asked to resume (`Last-Event-ID`) or fell behind, by `outcome`:
/// `resumed`, or the `resync` reason (`other_run`, `too_old`, `lagged`).
pub const API_SSE_RESUMES: &str = "trendwatch_api_sse_resumes_total";

/// A gauge not set for this long leaves `/metrics`: the per-partition gauges of a
/// partition this instance no longer owns go with it (instead of staying at a last value
/// or a 0 that hides the partition's real lag). Every live gauge is set at each tick.
pub const GAUGE_IDLE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Histogram buckets for latencies and durations, in seconds.
const SECONDS_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0,
];

/// Describes every metric (help text and unit), so `/metrics` documents itself.
pub fn describe_all() {
    describe_counter!(RECORDS_CONSUMED, "Kafka records read from the events topic");
    describe_counter!(EVENTS_COUNTED, "Events counted into windows, by kind");
    describe_counter!(
        EVENTS_REJECTED,
        "Records refused by decoding or validation, by reason"
    );
    describe_counter!(EVENTS_LATE, "Events older than their partition's watermark");
    describe_counter!(
        EVENTS_DUPLICATE,
        "Re-delivered events dropped by de-duplication"
    );
    describe_counter!(
        EVENTS_UNTRACKED,
        "Events of videos not admitted under the cap"
    );
    describe_counter!(
        DLQ_RECORDS,
        "Records written to the dead-letter topic, by reason"
    );
    describe_counter!(LATE_RECORDS, "Late events written to the late-events topic");
    describe_counter!(ALERTS_EMITTED, "Alerts emitted, by type and tier");
    describe_histogram!(
        ALERT_LATENCY,
        Unit::Seconds,
        "Wall time from an alert's detected_at (event time) to its emission"
    );
    describe_counter!(CHECKPOINTS, "Partition checkpoints, by result");
    describe_counter!(
        CHECKPOINTS_MISSING,
        "Partitions with committed offsets but no checkpoint at a restore (state lost)"
    );
    describe_counter!(
        RESTORE_RETRIES,
        "Restores tried again from new markers after their reading stalled"
    );
    describe_counter!(
        CHECKPOINTS_UNREADABLE,
        "Whole checkpoints that did not decode at a restore; the one before was tried"
    );
    describe_histogram!(
        CHECKPOINT_DURATION,
        Unit::Seconds,
        "Time to write a round of checkpoints and have them acknowledged"
    );
    describe_counter!(CHECKPOINT_BYTES, Unit::Bytes, "Bytes of checkpoint written");
    describe_histogram!(
        RESTORE_DURATION,
        Unit::Seconds,
        "Time to restore the partitions of one assignment from their checkpoints"
    );
    describe_gauge!(
        CONSUMER_LAG,
        "Messages behind the high watermark, by partition"
    );
    describe_gauge!(
        WATERMARK_DELAY,
        Unit::Seconds,
        "Wall clock minus the partition's event-time watermark, by partition"
    );
    describe_gauge!(
        TRACKED_VIDEOS,
        "Videos tracked over the assigned partitions"
    );
    describe_gauge!(STATE_BYTES, Unit::Bytes, "Bytes of engine state");
    describe_gauge!(
        UNASSIGNED_SECONDS,
        Unit::Seconds,
        "Seconds this member has been subscribed with no partition assigned (0 while it has any)"
    );
    describe_gauge!(
        EVENTS_PARTITIONS,
        "Partitions of the events topic, as the client's metadata knows them"
    );
    describe_counter!(VIDEOS_EVICTED, "Tracked videos evicted for hotter ones");
    describe_counter!(VIDEOS_EXPIRED, "Tracked videos forgotten after their TTL");
    describe_gauge!(ASSIGNED_PARTITIONS, "Partitions assigned to this instance");
    describe_counter!(REBALANCES, "Rebalance callbacks, by kind");
    describe_counter!(COMMIT_FAILURES, "Offset commits the broker refused");
    describe_counter!(
        DELIVERY_FAILURES,
        "Produced records the broker did not acknowledge"
    );
    describe_counter!(
        PARTITION_REWINDS,
        "Partitions rewound to their last checkpoint"
    );
    describe_counter!(
        OFFSET_GAPS,
        "Records that did not follow their partition's previous one"
    );
    describe_counter!(
        OFFSETS_SKIPPED,
        "Events-topic offsets skipped because the broker no longer has them (markers, compaction, retention)"
    );
    describe_counter!(
        DEDUP_FORGOTTEN,
        "Event ids forgotten for the de-duplication cap (a re-delivery of one counts again)"
    );
    describe_counter!(
        IDLE_HELD,
        "Idle watermark advances not taken: the silent partition's reader was not at the end of its log (unreachable, fetch errors, backlog)"
    );
    describe_counter!(
        TRANSACTIONS,
        "Exactly-once transactions by result (committed, aborted, fenced)"
    );
    describe_gauge!(READY, "1 when the service is ready");
    describe_counter!(
        API_REQUESTS,
        "Query API requests answered, by route template and status code"
    );
    describe_histogram!(
        API_QUERY_DURATION,
        Unit::Seconds,
        "Time to answer a video query, including the wait for the consumer loop"
    );
    describe_histogram!(
        API_PROXY_DURATION,
        Unit::Seconds,
        "Time the ranker takes to answer a video query by asking the counters"
    );
    describe_gauge!(
        API_SSE_CLIENTS,
        "Server-sent-event streams open on the ranker"
    );
    describe_counter!(
        API_SSE_RESUMES,
        "Ranker: live streams resumed from Last-Event-ID, or told to resync, by outcome"
    );
    describe_counter!(
        CANDIDATE_SETS,
        "Candidate sets (a partition's top videos of a closed window) sent to the ranker"
    );
    describe_counter!(
        RANKER_SETS,
        "Ranker: candidate sets read, by result (merged, stale, rejected)"
    );
    describe_counter!(
        RANKER_ALERTS,
        "Ranker: alerts about the global board, by type"
    );
    describe_counter!(RANKER_WINDOWS_CLOSED, "Ranker: windows closed");
    describe_counter!(
        RANKER_WINDOWS_LEFT_OUT,
        "Ranker: windows closed while a partition was left out as idle"
    );
    describe_counter!(
        RANKER_FORCED_CLOSES,
        "Ranker: windows closed early because too many were waiting"
    );
    describe_counter!(RANKER_BOARDS, "Ranker: boards published");
    describe_gauge!(
        RANKER_WAITING_PARTITIONS,
        "Ranker: partitions the next window waits for"
    );
    describe_gauge!(
        RANKER_IDLE_PARTITIONS,
        "Ranker: partitions left out as idle"
    );
    describe_gauge!(RANKER_PENDING_WINDOWS, "Ranker: windows waiting to close");
    describe_gauge!(RANKER_BOARD_SIZE, "Ranker: entries on the last board");
    describe_gauge!(
        RANKER_BOARD_DELAY,
        Unit::Seconds,
        "Ranker: wall clock minus the end of the last closed window"
    );
    describe_gauge!(
        RANKER_LAG,
        "Ranker: records of the candidates topic not yet read"
    );
}

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the Prometheus recorder (once per process) and describes every metric.
pub fn install_metrics() -> Result<PrometheusHandle> {
    if let Some(h) = HANDLE.get() {
        return Ok(h.clone());
    }
    let handle = PrometheusBuilder::new()
        .idle_timeout(
            metrics_util::MetricKindMask::GAUGE,
            Some(GAUGE_IDLE_TIMEOUT),
        )
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
        .and_then(|b| b.install_recorder())
        .map_err(|e| RuntimeError::Config(format!("metrics recorder: {e}")))?;
    describe_all();
    register_failure_counters();
    Ok(HANDLE.get_or_init(|| handle).clone())
}

/// Exports the counters of things that should not happen at 0 from the start: a series
/// that appears only with its first failure leaves dashboards empty and makes `rate()`
/// and `increase()` blind to that first failure.
pub fn register_failure_counters() {
    for name in [
        COMMIT_FAILURES,
        DELIVERY_FAILURES,
        PARTITION_REWINDS,
        OFFSET_GAPS,
        OFFSETS_SKIPPED,
        LATE_RECORDS,
        IDLE_HELD,
        DEDUP_FORGOTTEN,
        CHECKPOINTS_UNREADABLE,
        RESTORE_RETRIES,
        CHECKPOINTS_MISSING,
    ] {
        metrics::counter!(name).increment(0);
    }
    for result in ["committed", "aborted", "fenced"] {
        metrics::counter!(TRANSACTIONS, "result" => result).increment(0);
    }
    metrics::counter!(CHECKPOINTS, "result" => "failed").increment(0);
}

/// Starts structured logging as configured; `RUST_LOG` overrides the configured filter.
pub fn init_logging(config: &TelemetryConfig) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&config.log_level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // A second initialisation (tests, tools calling run twice) keeps the first subscriber.
    let _ = match config.log_format {
        LogFormat::Json => builder.json().try_init(),
        LogFormat::Text => builder.try_init(),
    };
}
