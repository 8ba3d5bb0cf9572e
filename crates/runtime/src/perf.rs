//! Performance tools, in the spirit of Kafka's `kafka-consumer-perf-test`: a bare consumer
//! that only reads (the yardstick the counter is measured against), librdkafka's
//! in-process mock cluster as a stand-in broker that is not the bottleneck, and the
//! pipeline delay of alerts read back from the alert topic.

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};
use rdkafka::mocking::MockCluster;
use rdkafka::{Offset, TopicPartitionList};
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use trendwatch_config::Config;

use crate::client::{group_consumer_config, partition_count, reader_config};
use crate::deadletter::SOURCE_TIMESTAMP;
use crate::error::{Result, RuntimeError};

/// CPU seconds (user + system) this process has used so far, from `/proc/self/stat`.
pub fn process_cpu_seconds() -> Option<f64> {
    cpu_seconds_of("self")
}

/// CPU seconds (user + system) of process `pid` (or `"self"`), from `/proc/<pid>/stat`.
pub fn cpu_seconds_of(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name: state is field 3, utime 14, stime 15.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    // The kernel reports in USER_HZ, 100 on every Linux this runs on.
    Some((utime + stime) / 100.0)
}

/// What the bare consumer measured, from its first record to its last.
#[derive(Clone, Debug, Serialize)]
pub struct ConsumeReport {
    /// Records read.
    pub records: u64,
    /// Payload bytes read.
    pub bytes: u64,
    /// Seconds from the first record to the last.
    pub seconds: f64,
    /// `records / seconds`.
    pub records_per_second: f64,
    /// CPU seconds the process used in that time.
    pub cpu_seconds: f64,
    /// `cpu_seconds` per million records.
    pub cpu_seconds_per_million: f64,
}

/// Joins `group` on `topic` with the counter's consumer settings and reads `records`
/// records, touching every payload byte (a consumer that did not would flatter itself).
pub fn consume(
    config: &Config,
    topic: &str,
    group: &str,
    records: u64,
    timeout: Duration,
) -> Result<ConsumeReport> {
    let consumer: BaseConsumer = group_consumer_config(config, group)
        .create()
        .map_err(|e| RuntimeError::kafka("creating the consumer", e))?;
    consumer
        .subscribe(&[topic])
        .map_err(|e| RuntimeError::kafka("subscribing", e))?;
    let deadline = Instant::now() + timeout;
    let mut read = 0u64;
    let mut bytes = 0u64;
    let mut checksum = 0u64;
    let mut first: Option<(Instant, f64)> = None;
    while read < records {
        if Instant::now() > deadline {
            return Err(RuntimeError::Timeout(format!(
                "reading {records} records of {topic} (got {read})"
            )));
        }
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                if first.is_none() {
                    first = Some((Instant::now(), process_cpu_seconds().unwrap_or(0.0)));
                }
                let payload = m.payload().unwrap_or_default();
                bytes += payload.len() as u64;
                checksum = payload
                    .iter()
                    .fold(checksum, |c, b| c.rotate_left(5) ^ u64::from(*b));
                read += 1;
            }
            Some(Err(KafkaError::PartitionEOF(_))) | None => {}
            Some(Err(e)) => return Err(RuntimeError::kafka("consuming", e)),
        }
    }
    std::hint::black_box(checksum);
    let (t0, cpu0) = first.unwrap_or((Instant::now(), 0.0));
    let seconds = t0.elapsed().as_secs_f64();
    let cpu_seconds = process_cpu_seconds().unwrap_or(0.0) - cpu0;
    Ok(ConsumeReport {
        records: read,
        bytes,
        seconds,
        records_per_second: read as f64 / seconds.max(1e-9),
        cpu_seconds,
        cpu_seconds_per_million: cpu_seconds / (read as f64 / 1e6).max(1e-9),
    })
}

/// Runs librdkafka's in-process mock cluster with `brokers` brokers until `shutdown`,
/// with `topics` created (`partitions` each; the mock does not serve CreateTopics),
/// calling `ready` with its bootstrap servers once it listens.
pub fn mock_cluster(
    brokers: i32,
    topics: &[String],
    partitions: i32,
    shutdown: &CancellationToken,
    ready: impl FnOnce(&str),
) -> Result<()> {
    let cluster = MockCluster::new(brokers)
        .map_err(|e| RuntimeError::kafka("starting the mock cluster", e))?;
    for topic in topics {
        cluster
            .create_topic(topic, partitions, 1)
            .map_err(|e| RuntimeError::kafka(format!("creating {topic} on the mock cluster"), e))?;
    }
    ready(&cluster.bootstrap_servers());
    while !shutdown.is_cancelled() {
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// The delay from the record that decided an alert reaching Kafka to the alert reaching
/// Kafka, over every alert on a topic.
#[derive(Clone, Debug, Serialize)]
pub struct AlertDelayReport {
    /// Alerts read.
    pub alerts: u64,
    /// Alerts that name a source record with a timestamp (tick-made alerts do not).
    pub with_source: u64,
    /// Median delay, ms.
    pub p50_ms: Option<i64>,
    /// 99th percentile, ms.
    pub p99_ms: Option<i64>,
    /// Largest, ms.
    pub max_ms: Option<i64>,
}

/// Reads every alert of `topic` (until `quiet` passes without one) and reports the delay
/// between each alert's timestamp and its source record's.
pub fn alert_delays(config: &Config, topic: &str, quiet: Duration) -> Result<AlertDelayReport> {
    let consumer: BaseConsumer = reader_config(config, "perf-alerts")
        .create()
        .map_err(|e| RuntimeError::kafka("creating the alert reader", e))?;
    let partitions = partition_count(&consumer, topic)?
        .ok_or_else(|| RuntimeError::Config(format!("topic {topic} does not exist")))?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .map_err(|e| RuntimeError::kafka("assigning", e))?;
    }
    consumer
        .assign(&tpl)
        .map_err(|e| RuntimeError::kafka("assigning", e))?;
    let mut delays = Vec::new();
    let mut alerts = 0u64;
    let mut last = Instant::now();
    while last.elapsed() < quiet {
        let Some(polled) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let m = polled.map_err(|e| RuntimeError::kafka("reading alerts", e))?;
        last = Instant::now();
        alerts += 1;
        let source = m.headers().and_then(|h| {
            h.iter()
                .find(|h| h.key == SOURCE_TIMESTAMP)
                .and_then(|h| std::str::from_utf8(h.value?).ok()?.parse::<i64>().ok())
        });
        if let (Some(source), Some(at)) = (source, m.timestamp().to_millis()) {
            delays.push(at - source);
        }
    }
    delays.sort_unstable();
    let q = |f: f64| {
        (!delays.is_empty()).then(|| delays[((delays.len() - 1) as f64 * f).round() as usize])
    };
    Ok(AlertDelayReport {
        alerts,
        with_source: delays.len() as u64,
        p50_ms: q(0.5),
        p99_ms: q(0.99),
        max_ms: delays.last().copied(),
    })
}
