//! The ranker's view of the alert topic: a reader thread that keeps the recent alerts of
//! every producer (the counters' and the ranker's own) in the [`RankerFeed`].

use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;
use trendwatch_config::Config;
use trendwatch_proto::AlertRecord;
use trendwatch_proto::files::Format;

use super::RankerFeed;
use crate::client::{ADMIN_TIMEOUT, partition_count, reader_config};
use crate::error::{Result, RuntimeError};
use crate::wall_ms;

/// How far back (by record timestamp) the reader starts, so a ranker that just started
/// can answer for the last hour instead of only from now on.
pub const ALERT_LOOKBACK: Duration = Duration::from_secs(3600);

/// Starts the thread that reads `topics.alerts` (every partition it has at start, from
/// [`ALERT_LOOKBACK`] ago) into `feed` until `shutdown` is cancelled.
pub fn follow_alerts(
    config: &Config,
    feed: Arc<RankerFeed>,
    shutdown: CancellationToken,
) -> Result<std::thread::JoinHandle<()>> {
    let topic = config.topics.alerts.clone();
    let reader: BaseConsumer = reader_config(config, "ranker-alerts")
        .create()
        .map_err(|e| RuntimeError::kafka("creating the alert reader", e))?;
    let partitions = partition_count(&reader, &topic)?.unwrap_or(0);
    let from = wall_ms().saturating_sub(ALERT_LOOKBACK.as_millis() as i64);
    let mut query = TopicPartitionList::new();
    for p in 0..partitions {
        query
            .add_partition_offset(&topic, p, Offset::Offset(from))
            .map_err(|e| RuntimeError::kafka("building the alert reader's start", e))?;
    }
    // Where each partition's records from `from` on begin; the end when there are none.
    let start = reader
        .offsets_for_times(query.clone(), ADMIN_TIMEOUT)
        .unwrap_or_else(|e| {
            tracing::warn!(error = %e, "alert reader: start offsets unknown; reading new alerts only");
            let mut end = TopicPartitionList::new();
            for p in 0..partitions {
                let _ = end.add_partition_offset(&topic, p, Offset::End);
            }
            end
        });
    let mut assignment = TopicPartitionList::new();
    for e in start.elements_for_topic(&topic) {
        let offset = match e.offset() {
            Offset::Offset(o) if o >= 0 => Offset::Offset(o),
            _ => Offset::End,
        };
        assignment
            .add_partition_offset(&topic, e.partition(), offset)
            .map_err(|e| RuntimeError::kafka("building the alert reader's start", e))?;
    }
    reader
        .assign(&assignment)
        .map_err(|e| RuntimeError::kafka("reading the alert topic", e))?;
    let json = config.counter.output_format == Format::Json;
    std::thread::Builder::new()
        .name("alerts-follow".into())
        .spawn(move || {
            while !shutdown.is_cancelled() {
                match reader.poll(Duration::from_millis(200)) {
                    Some(Ok(m)) => {
                        let bytes = m.payload().unwrap_or_default();
                        let decoded = if json {
                            AlertRecord::decode_json(bytes)
                        } else {
                            AlertRecord::decode_protobuf(bytes)
                        };
                        match decoded {
                            Ok(record) => feed.alert(&record),
                            Err(e) => tracing::debug!(error = %e, "alert reader: undecodable alert skipped"),
                        }
                    }
                    Some(Err(e)) => tracing::debug!(error = %e, "alert reader"),
                    None => {}
                }
            }
        })
        .map_err(|source| RuntimeError::Io {
            context: "starting the alert reader".into(),
            source,
        })
}
