//! Kafka clients built from the configuration, and topic administration.
//!
//! Every client gets the `kafka` section's properties unchanged, then the properties the
//! delivery guarantees depend on (which validation refuses in the `kafka` section), then
//! defaults the user did not override.

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::types::RDKafkaErrorCode;
use trendwatch_config::{Config, GroupProtocol};

use crate::error::{Result, RuntimeError};

/// Timeout of metadata and admin requests.
pub const ADMIN_TIMEOUT: Duration = Duration::from_secs(15);

/// Properties common to every client: the user's, then defaults they did not set.
pub fn base_config(config: &Config) -> ClientConfig {
    let mut c = ClientConfig::new();
    for (k, v) in &config.kafka {
        c.set(k, v);
    }
    if c.get("bootstrap.servers").is_none() {
        c.set("bootstrap.servers", config.bootstrap_servers());
    }
    c
}

fn set_default(c: &mut ClientConfig, key: &str, value: &str) {
    if c.get(key).is_none() {
        c.set(key, value);
    }
}

/// How a service joins its consumer group: the protocol and, for static membership, the
/// member's stable id (empty: dynamic).
#[derive(Clone, Copy, Debug)]
pub struct Membership<'a> {
    /// The group.
    pub group_id: &'a str,
    /// classic or consumer (KIP-848).
    pub protocol: GroupProtocol,
    /// `group.instance.id`, or empty.
    pub instance_id: &'a str,
}

impl<'a> Membership<'a> {
    /// The counter's membership.
    pub fn counter(config: &'a Config) -> Self {
        Self {
            group_id: &config.counter.group_id,
            protocol: config.counter.group_protocol,
            instance_id: &config.counter.group_instance_id,
        }
    }

    /// The ranker's membership.
    pub fn ranker(config: &'a Config) -> Self {
        Self {
            group_id: &config.ranker.group_id,
            protocol: config.ranker.group_protocol,
            instance_id: &config.ranker.group_instance_id,
        }
    }

    /// A dynamic member of `group_id` speaking the classic protocol.
    pub fn classic(group_id: &'a str) -> Self {
        Self {
            group_id,
            protocol: GroupProtocol::Classic,
            instance_id: "",
        }
    }
}

/// A consumer-group member that stores nothing by itself: offsets are committed explicitly
/// after the checkpoint covering them.
pub fn group_consumer_config(config: &Config, membership: Membership<'_>) -> ClientConfig {
    let mut c = base_config(config);
    c.set("group.id", membership.group_id)
        .set("group.protocol", membership.protocol.as_str())
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "true")
        // Records of aborted transactions are never input (librdkafka's default, pinned).
        .set("isolation.level", "read_committed");
    set_default(&mut c, "auto.offset.reset", "earliest");
    // librdkafka >= 2.2 backs off 1 s whenever its queue limits are hit; that caps
    // throughput with the CPU idle.
    set_default(&mut c, "fetch.queue.backoff.ms", "10");
    // A fetch that finds no new data waits this long on the broker. A real Kafka answers
    // at once when data is there; tansu 0.6.0 holds every fetch for the full wait, which at
    // librdkafka's 500 ms default caps a consumer near 280 000 records/s (measured, see
    // docs/BENCHMARKS.md). 100 ms costs an idle consumer ten empty fetches a second.
    set_default(&mut c, "fetch.wait.max.ms", "100");
    set_default(&mut c, "statistics.interval.ms", "1000");
    // Pre-fetched records wait in a queue of at most this much (librdkafka's default,
    // pinned: the counter's memory bound counts on it).
    set_default(&mut c, "queued.max.messages.kbytes", "65536");
    if !membership.instance_id.is_empty() {
        c.set("group.instance.id", membership.instance_id);
    }
    c
}

/// A consumer that reads partitions it assigns itself (no group membership, no commits).
pub fn reader_config(config: &Config, purpose: &str) -> ClientConfig {
    let mut c = base_config(config);
    c.set("group.id", format!("trendwatch-{purpose}"))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false")
        // Checkpoints and alerts of aborted transactions must stay invisible.
        .set("isolation.level", "read_committed");
    set_default(&mut c, "fetch.queue.backoff.ms", "10");
    set_default(&mut c, "fetch.wait.max.ms", "100");
    c
}

/// An idempotent producer: no duplicates or reordering from retries within a session.
/// Keyed records are placed by `topics.events_partitioner` (a `partitioner` of the `kafka`
/// section, which validation has checked agrees with it, is kept), so events published by
/// trendwatch land where its counters look for them.
pub fn producer_config(config: &Config) -> ClientConfig {
    let mut c = base_config(config);
    c.set("enable.idempotence", "true");
    set_default(
        &mut c,
        "partitioner",
        config.topics.events_partitioner.librdkafka_property(),
    );
    set_default(&mut c, "linger.ms", "5");
    // librdkafka's default lets a producer buffer 1 GB while the broker is away; 64 MiB
    // is plenty for alerts and dead letters, and a full queue makes the counter wait
    // (backpressure) instead of growing.
    set_default(&mut c, "queue.buffering.max.kbytes", "65536");
    c
}

/// A transactional producer (exactly-once mode): `transactional_id` from the counter
/// section, or `<group_id>-<host name>-<process id>`.
pub fn transactional_producer_config(config: &Config) -> ClientConfig {
    let mut c = producer_config(config);
    c.set("transactional.id", transactional_id(config));
    set_default(
        &mut c,
        "transaction.timeout.ms",
        &transaction_timeout(config).as_millis().to_string(),
    );
    c
}

/// How long the broker lets a transaction stay open before aborting it: the `[kafka]`
/// section's `transaction.timeout.ms`, else three checkpoint intervals plus the ack
/// timeout (a round must fit, and a crashed instance's open transaction should not hold
/// `read_committed` readers back for librdkafka's default minute).
pub fn transaction_timeout(config: &Config) -> Duration {
    config
        .kafka
        .get("transaction.timeout.ms")
        .and_then(|v| v.parse::<u64>().ok())
        .map_or(
            config.counter.checkpoint_interval * 3 + config.counter.ack_timeout,
            Duration::from_millis,
        )
}

/// The transactional id this process uses in exactly-once mode.
pub fn transactional_id(config: &Config) -> String {
    if !config.counter.transactional_id.is_empty() {
        return config.counter.transactional_id.clone();
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".into());
    format!("{}-{host}-{}", config.counter.group_id, std::process::id())
}

/// Checks the `kafka` section the way librdkafka will read it (unknown properties, bad
/// values, TLS/SASL settings this build cannot honour) by creating a consumer and a
/// producer; neither connects. Returns librdkafka's own message.
pub fn check_properties(config: &Config) -> std::result::Result<(), String> {
    group_consumer_config(config, Membership::counter(config))
        .create::<BaseConsumer>()
        .map_err(|e| format!("kafka: {e}"))?;
    producer_config(config)
        .create::<rdkafka::producer::BaseProducer>()
        .map_err(|e| format!("kafka: {e}"))?;
    Ok(())
}

/// A topic trendwatch needs, with how to create it when it is missing.
#[derive(Clone, Debug)]
pub struct TopicSpec {
    /// Name.
    pub name: String,
    /// Partitions when created.
    pub partitions: i32,
    /// Topic configuration when created (`cleanup.policy=compact` for state topics).
    pub config: Vec<(String, String)>,
}

impl TopicSpec {
    /// A plain topic.
    pub fn new(name: impl Into<String>, partitions: i32) -> Self {
        Self {
            name: name.into(),
            partitions,
            config: Vec::new(),
        }
    }

    /// A compacted topic (latest record per key is kept).
    pub fn compacted(name: impl Into<String>, partitions: i32) -> Self {
        Self {
            config: vec![("cleanup.policy".into(), "compact".into())],
            ..Self::new(name, partitions)
        }
    }
}

/// Partition count of `topic`, or `None` if the broker does not know it.
pub fn partition_count(consumer: &BaseConsumer, topic: &str) -> Result<Option<i32>> {
    let md = consumer
        .fetch_metadata(Some(topic), ADMIN_TIMEOUT)
        .map_err(|e| RuntimeError::kafka(format!("reading metadata of {topic}"), e))?;
    Ok(md
        .topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty())
        .map(|t| t.partitions().len() as i32))
}

/// Creates every topic of `specs` the broker does not have yet; returns the names created.
/// A topic that exists is left as it is.
pub fn ensure_topics(config: &Config, specs: &[TopicSpec]) -> Result<Vec<String>> {
    let probe: BaseConsumer = reader_config(config, "admin")
        .create()
        .map_err(|e| RuntimeError::kafka("creating a metadata client", e))?;
    let mut missing = Vec::new();
    for spec in specs {
        if partition_count(&probe, &spec.name)?.is_none() {
            missing.push(spec);
        }
    }
    if missing.is_empty() {
        return Ok(Vec::new());
    }
    let admin: AdminClient<DefaultClientContext> = base_config(config)
        .create()
        .map_err(|e| RuntimeError::kafka("creating an admin client", e))?;
    let new_topics: Vec<NewTopic<'_>> = missing
        .iter()
        .map(|s| {
            s.config.iter().fold(
                NewTopic::new(&s.name, s.partitions, TopicReplication::Fixed(1)),
                |t, (k, v)| t.set(k, v),
            )
        })
        .collect();
    let opts = AdminOptions::new().operation_timeout(Some(ADMIN_TIMEOUT));
    let results = futures::executor::block_on(admin.create_topics(&new_topics, &opts))
        .map_err(|e| RuntimeError::kafka("creating topics", e))?;
    let mut created = Vec::new();
    for r in results {
        match r {
            Ok(name) => created.push(name),
            // Another instance created it between our look and our request: fine.
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => {
                return Err(RuntimeError::kafka(
                    format!("creating topic {name}"),
                    rdkafka::error::KafkaError::AdminOp(code),
                ));
            }
        }
    }
    // Metadata of a new topic can lag its creation: wait until the broker reports it.
    for name in &created {
        let deadline = std::time::Instant::now() + ADMIN_TIMEOUT;
        while partition_count(&probe, name)?.is_none() {
            if std::time::Instant::now() > deadline {
                return Err(RuntimeError::Timeout(format!("topic {name} to appear")));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    Ok(created)
}

/// The topics the counter reads and writes, for creation when missing: events and outputs
/// with `partitions`, the state topic compacted with as many partitions as the events topic.
pub fn counter_topics(config: &Config, partitions: i32) -> Vec<TopicSpec> {
    let t = &config.topics;
    let mut specs = vec![
        TopicSpec::new(&t.events, partitions),
        TopicSpec::new(&t.alerts, partitions),
        TopicSpec::compacted(&t.state, partitions),
        TopicSpec::new(&t.dlq, partitions),
    ];
    if !t.members.is_empty() {
        // One partition: every counter reads the whole (small) map.
        specs.push(TopicSpec::compacted(&t.members, 1));
    }
    if !t.late.is_empty() {
        specs.push(TopicSpec::new(&t.late, partitions));
    }
    if !t.candidates.is_empty() {
        specs.push(candidates_topic(config));
    }
    specs
}

/// Every topic of a deployment (the counter's and the ranker's), each once.
pub fn all_topics(config: &Config, partitions: i32) -> Vec<TopicSpec> {
    let mut specs = counter_topics(config, partitions);
    for spec in ranker_topics(config, partitions) {
        if !specs.iter().any(|s| s.name == spec.name) {
            specs.push(spec);
        }
    }
    specs
}

/// The candidates topic: one partition, so one ranker reads every partition's proposals
/// in the order they were written.
pub fn candidates_topic(config: &Config) -> TopicSpec {
    TopicSpec::new(&config.topics.candidates, 1)
}

/// The topics the ranker reads and writes, for creation when missing: the candidates, the
/// leaderboard and its state (compacted, one partition each), and the alert topic.
pub fn ranker_topics(config: &Config, partitions: i32) -> Vec<TopicSpec> {
    let t = &config.topics;
    vec![
        candidates_topic(config),
        TopicSpec::compacted(&t.leaderboard, 1),
        TopicSpec::compacted(&t.ranker_state, 1),
        TopicSpec::new(&t.alerts, partitions),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// librdkafka refuses TLS and SASL settings at client creation when it was built without
    /// OpenSSL; this build must accept them (creating a client does not connect).
    #[test]
    fn tls_and_sasl_settings_are_accepted() {
        let mut config = Config::default();
        for (k, v) in [
            ("bootstrap.servers", "127.0.0.1:1"),
            ("security.protocol", "SASL_SSL"),
            ("sasl.mechanism", "SCRAM-SHA-512"),
            ("sasl.username", "trendwatch"),
            ("sasl.password", "secret"),
            ("ssl.endpoint.identification.algorithm", "https"),
        ] {
            config.kafka.insert(k.into(), v.into());
        }
        let consumer: KafkaResultOf<BaseConsumer> =
            group_consumer_config(&config, Membership::classic("g")).create();
        assert!(consumer.is_ok(), "{:?}", consumer.err());
        let producer: KafkaResultOf<rdkafka::producer::BaseProducer> =
            producer_config(&config).create();
        assert!(producer.is_ok(), "{:?}", producer.err());
        // An unknown property is still refused: the pass-through is not a silent sink.
        config.kafka.insert("no.such.property".into(), "1".into());
        let refused: KafkaResultOf<BaseConsumer> =
            group_consumer_config(&config, Membership::classic("g")).create();
        assert!(refused.is_err());
    }

    type KafkaResultOf<T> = std::result::Result<T, rdkafka::error::KafkaError>;
}
