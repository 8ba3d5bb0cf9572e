//! Publishing records to a topic: the load generator's Kafka mode and `trendwatch publish`.
//!
//! Records are keyed (events by `video_id`) and placed by `topics.events_partitioner`
//! (librdkafka's `consistent_random`, CRC-32 of the key, by default; `murmur2_random`, as
//! the Java client, for `murmur2`), so they land where the counters' video queries and
//! `trendwatch replay --partitions N` expect them.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use rdkafka::ClientContext;
use rdkafka::error::KafkaError;
use rdkafka::message::DeliveryResult;
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use trendwatch_config::Config;

use crate::client::producer_config;
use crate::error::{Result, RuntimeError};

/// How to publish.
#[derive(Clone, Debug, Default)]
pub struct PublishOptions {
    /// Records per second to aim for; `None` is as fast as the broker takes them.
    pub rate: Option<f64>,
    /// Show a progress bar (only drawn on a terminal).
    pub progress: bool,
}

/// What a publish run did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct PublishSummary {
    /// Topic written.
    pub topic: String,
    /// Records the broker acknowledged.
    pub acknowledged: u64,
    /// Records the broker did not take.
    pub failed: u64,
    /// Payload bytes sent.
    pub bytes: u64,
    /// Wall time from the first send to the last acknowledgement.
    pub seconds: f64,
    /// `acknowledged / seconds`.
    pub records_per_second: f64,
    /// Whether the run was interrupted before every record was sent.
    pub interrupted: bool,
}

impl std::fmt::Display for PublishSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "published {} records ({:.1} MB) to {} in {:.1}s ({:.0} records/s); {} failed{}",
            self.acknowledged,
            self.bytes as f64 / 1e6,
            self.topic,
            self.seconds,
            self.records_per_second,
            self.failed,
            if self.interrupted {
                "; interrupted"
            } else {
                ""
            }
        )
    }
}

#[derive(Default)]
struct Acks {
    ok: AtomicU64,
    failed: AtomicU64,
}

impl ClientContext for Acks {}

impl ProducerContext for Acks {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => self.ok.fetch_add(1, Ordering::Relaxed),
            Err(_) => self.failed.fetch_add(1, Ordering::Relaxed),
        };
    }
}

/// Publishes `(key, payload)` records to `topic` with an idempotent producer, then waits
/// for every acknowledgement. `total` sizes the progress bar.
pub fn publish<I, K, V>(
    config: &Config,
    topic: &str,
    records: I,
    total: u64,
    options: &PublishOptions,
    shutdown: &CancellationToken,
) -> Result<PublishSummary>
where
    I: IntoIterator<Item = (Option<K>, V)>,
    K: AsRef<[u8]>,
    V: AsRef<[u8]>,
{
    let producer: ThreadedProducer<Acks> = producer_config(config)
        .create_with_context(Acks::default())
        .map_err(|e| RuntimeError::kafka("creating the producer", e))?;
    let bar = if options.progress && std::io::stderr().is_terminal() {
        let bar = ProgressBar::new(total);
        bar.set_style(
            ProgressStyle::with_template(
                "publishing [{bar:40}] {pos}/{len} ({per_sec}, {eta} left)",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar
    } else {
        ProgressBar::hidden()
    };
    let started = Instant::now();
    let mut summary = PublishSummary {
        topic: topic.to_string(),
        ..PublishSummary::default()
    };
    for (i, (key, payload)) in records.into_iter().enumerate() {
        if i % 1024 == 0 {
            if shutdown.is_cancelled() {
                summary.interrupted = true;
                break;
            }
            bar.set_position(i as u64);
            if let Some(rate) = options.rate.filter(|r| *r > 0.0) {
                let due = started + Duration::from_secs_f64(i as f64 / rate);
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
            }
        }
        let payload = payload.as_ref();
        summary.bytes += payload.len() as u64;
        let mut record = BaseRecord::<[u8], [u8], ()>::to(topic).payload(payload);
        if let Some(k) = key.as_ref() {
            record = record.key(k.as_ref());
        }
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err((e, _)) => {
                    producer.context().failed.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(error = %e, "record refused by the producer");
                    break;
                }
            }
        }
    }
    bar.finish_and_clear();
    producer
        .flush(Duration::from_secs(60))
        .map_err(|e| RuntimeError::kafka(format!("waiting for {topic} to acknowledge"), e))?;
    summary.seconds = started.elapsed().as_secs_f64();
    summary.acknowledged = producer.context().ok.load(Ordering::Relaxed);
    summary.failed = producer.context().failed.load(Ordering::Relaxed);
    summary.records_per_second = summary.acknowledged as f64 / summary.seconds.max(1e-9);
    Ok(summary)
}
