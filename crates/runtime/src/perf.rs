//! Performance tools, in the spirit of Kafka's `kafka-consumer-perf-test`: a bare consumer
//! that only reads (the yardstick the counter is measured against), librdkafka's
//! in-process mock cluster as a stand-in broker that is not the bottleneck, and the
//! pipeline delay of alerts read back from the alert topic.

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::{Headers, Message};
use rdkafka::mocking::MockCluster;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use rdkafka::{Offset, TopicPartitionList};
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use trendwatch_config::Config;

use crate::client::{Membership, group_consumer_config, partition_count, reader_config};
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
    let consumer: BaseConsumer = group_consumer_config(config, Membership::classic(group))
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

/// Trouble to make on a running mock cluster, one command per line:
/// `down BROKER`, `up BROKER`, `errors API ERROR [COUNT]` (the next COUNT requests of API
/// fail with ERROR, e.g. `errors EndTxn UNKNOWN_PRODUCER_ID 1`), `rtt BROKER MS`,
/// `leader TOPIC BROKER` (every partition of TOPIC moves to BROKER).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MockCommand {
    /// Take a broker down (its connections are closed, new ones refused).
    Down(i32),
    /// Bring it back.
    Up(i32),
    /// Fail the next `count` requests of an API with an error.
    Errors {
        /// The request kind.
        api: RDKafkaApiKey,
        /// The error they answer with.
        error: RDKafkaRespErr,
        /// How many.
        count: usize,
    },
    /// Delay every response of a broker.
    Rtt(i32, Duration),
    /// Make a broker the leader of every partition of a topic.
    Leader(String, i32),
}

/// Request kinds a command may name.
const MOCK_APIS: &[(&str, RDKafkaApiKey)] = &[
    ("Produce", RDKafkaApiKey::Produce),
    ("Fetch", RDKafkaApiKey::Fetch),
    ("OffsetCommit", RDKafkaApiKey::OffsetCommit),
    ("Heartbeat", RDKafkaApiKey::Heartbeat),
    ("InitProducerId", RDKafkaApiKey::InitProducerId),
    ("AddPartitionsToTxn", RDKafkaApiKey::AddPartitionsToTxn),
    ("AddOffsetsToTxn", RDKafkaApiKey::AddOffsetsToTxn),
    ("TxnOffsetCommit", RDKafkaApiKey::TxnOffsetCommit),
    ("EndTxn", RDKafkaApiKey::EndTxn),
];

/// Errors a command may name.
const MOCK_ERRORS: &[(&str, RDKafkaRespErr)] = &[
    (
        "NOT_COORDINATOR",
        RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_COORDINATOR,
    ),
    (
        "COORDINATOR_NOT_AVAILABLE",
        RDKafkaRespErr::RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE,
    ),
    (
        "REQUEST_TIMED_OUT",
        RDKafkaRespErr::RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
    ),
    (
        "NOT_LEADER_FOR_PARTITION",
        RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION,
    ),
    (
        "NOT_ENOUGH_REPLICAS",
        RDKafkaRespErr::RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS,
    ),
    (
        "UNKNOWN_PRODUCER_ID",
        RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN_PRODUCER_ID,
    ),
    (
        "PRODUCER_FENCED",
        RDKafkaRespErr::RD_KAFKA_RESP_ERR_PRODUCER_FENCED,
    ),
];

impl MockCommand {
    /// Parses one command line.
    pub fn parse(line: &str) -> std::result::Result<Self, String> {
        let words: Vec<&str> = line.split_whitespace().collect();
        let number = |i: usize, what: &str| -> std::result::Result<i64, String> {
            words
                .get(i)
                .ok_or_else(|| format!("{what} missing"))?
                .parse()
                .map_err(|_| format!("{what} must be a number"))
        };
        match words.first().copied() {
            Some("down") => Ok(Self::Down(number(1, "broker")? as i32)),
            Some("up") => Ok(Self::Up(number(1, "broker")? as i32)),
            Some("leader") => Ok(Self::Leader(
                words.get(1).ok_or("topic missing")?.to_string(),
                number(2, "broker")? as i32,
            )),
            Some("rtt") => Ok(Self::Rtt(
                number(1, "broker")? as i32,
                Duration::from_millis(number(2, "milliseconds")?.max(0) as u64),
            )),
            Some("errors") => {
                let name = words.get(1).ok_or("API missing")?;
                let api = MOCK_APIS
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, a)| *a)
                    .ok_or_else(|| format!("unknown API {name}"))?;
                let name = words.get(2).ok_or("error missing")?;
                let error = MOCK_ERRORS
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, e)| *e)
                    .ok_or_else(|| format!("unknown error {name}"))?;
                let count = if words.len() > 3 {
                    number(3, "count")?.max(1) as usize
                } else {
                    1
                };
                Ok(Self::Errors { api, error, count })
            }
            _ => Err(format!(
                "unknown command {line:?} (down B | up B | errors API ERROR [N] | rtt B MS | leader T B)"
            )),
        }
    }

    fn apply<C: rdkafka::ClientContext>(
        &self,
        cluster: &MockCluster<'_, C>,
        partitions: i32,
    ) -> KafkaResult<()> {
        match self {
            Self::Leader(topic, b) => {
                (0..partitions).try_for_each(|p| cluster.partition_leader(topic, p, Some(*b)))
            }
            Self::Down(b) => cluster.broker_down(*b),
            Self::Up(b) => cluster.broker_up(*b),
            Self::Rtt(b, d) => cluster.broker_round_trip_time(*b, *d),
            Self::Errors { api, error, count } => {
                cluster.request_errors(*api, &vec![*error; *count]);
                Ok(())
            }
        }
    }
}

/// Runs librdkafka's in-process mock cluster with `brokers` brokers until `shutdown`,
/// with `topics` created (`partitions` each; the mock does not serve CreateTopics),
/// calling `ready` with its bootstrap servers once it listens, and applying the
/// [`MockCommand`]s that arrive on `commands` (answering each on `answer`).
pub fn mock_cluster(
    brokers: i32,
    topics: &[String],
    partitions: i32,
    shutdown: &CancellationToken,
    commands: &std::sync::mpsc::Receiver<String>,
    ready: impl FnOnce(&str),
    mut answer: impl FnMut(std::result::Result<String, String>),
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
        match commands.recv_timeout(Duration::from_millis(100)) {
            Ok(line) if line.trim().is_empty() => {}
            Ok(line) => answer(
                MockCommand::parse(&line)
                    .and_then(|c| c.apply(&cluster, partitions).map_err(|e| e.to_string()))
                    .map(|()| line.trim().to_string()),
            ),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            // No more commands: serve until shut down.
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                std::thread::sleep(Duration::from_millis(100));
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trouble_commands_parse_and_bad_ones_say_why() {
        assert_eq!(MockCommand::parse("down 1"), Ok(MockCommand::Down(1)));
        assert_eq!(MockCommand::parse(" up 2 "), Ok(MockCommand::Up(2)));
        assert_eq!(
            MockCommand::parse("rtt 1 250"),
            Ok(MockCommand::Rtt(1, Duration::from_millis(250)))
        );
        assert_eq!(
            MockCommand::parse("errors EndTxn PRODUCER_FENCED 2"),
            Ok(MockCommand::Errors {
                api: RDKafkaApiKey::EndTxn,
                error: RDKafkaRespErr::RD_KAFKA_RESP_ERR_PRODUCER_FENCED,
                count: 2
            })
        );
        assert!(matches!(
            MockCommand::parse("errors Produce NOT_ENOUGH_REPLICAS"),
            Ok(MockCommand::Errors { count: 1, .. })
        ));
        assert!(
            MockCommand::parse("errors Nope NOT_COORDINATOR")
                .unwrap_err()
                .contains("unknown API")
        );
        assert!(
            MockCommand::parse("errors Fetch NOPE")
                .unwrap_err()
                .contains("unknown error")
        );
        assert!(MockCommand::parse("down x").unwrap_err().contains("number"));
        assert!(
            MockCommand::parse("reboot")
                .unwrap_err()
                .contains("unknown command")
        );
        assert_eq!(
            MockCommand::parse("leader alerts 2"),
            Ok(MockCommand::Leader("alerts".into(), 2))
        );
    }
}
