//! The service sections of the configuration: Kafka client properties, topic names, the
//! counter's behaviour and telemetry.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use trendwatch_proto::InputFormat;
use trendwatch_proto::files::Format;

/// Any librdkafka property, passed to every client unchanged (`"bootstrap.servers"`,
/// `"security.protocol"`, `"sasl.mechanism"`, `"ssl.ca.location"`, ...). Properties the
/// services must control for their guarantees (offset storage, idempotence) are set by the
/// services and refused here.
pub type KafkaProperties = BTreeMap<String, String>;

/// librdkafka properties the services set themselves; configuring them would break the
/// delivery guarantees, so validation refuses them.
pub const RESERVED_KAFKA_PROPERTIES: &[&str] = &[
    "group.id",
    "enable.auto.commit",
    "enable.auto.offset.store",
    "enable.idempotence",
    "enable.partition.eof",
    "isolation.level",
    "transactional.id",
    "group.protocol",
    "group.instance.id",
];

/// librdkafka properties of the classic group protocol that the consumer protocol
/// (KIP-848) moves to the broker: with `group_protocol = "consumer"` librdkafka refuses to
/// create a consumer that sets one, so validation reports them first.
pub const CLASSIC_ONLY_KAFKA_PROPERTIES: &[&str] = &[
    "session.timeout.ms",
    "heartbeat.interval.ms",
    "partition.assignment.strategy",
];

/// Which consumer group protocol a service's consumer speaks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GroupProtocol {
    /// The classic protocol (JoinGroup/SyncGroup; eager assignment): every broker.
    #[default]
    Classic,
    /// Kafka 4's consumer protocol (KIP-848): the broker assigns, rebalances are always
    /// incremental (a member only gives up the partitions that move), and the session
    /// timeout and heartbeat interval are the broker's (`group.consumer.*`).
    Consumer,
}

impl GroupProtocol {
    /// librdkafka's `group.protocol` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Classic => "classic",
            Self::Consumer => "consumer",
        }
    }
}

/// How the producers of the events topic place a keyed record on a partition: the hash of
/// its key (the video id) modulo the partition count. trendwatch computes a video's
/// partition itself (to find which counter owns it, and in `trendwatch replay`), so this
/// must name the hash the topic's producers use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Partitioner {
    /// CRC-32 (IEEE, as zlib) of the key: librdkafka's default (`consistent_random`), so
    /// confluent-kafka-python/-go/-dotnet, kcat and trendwatch's own producers by default.
    #[default]
    Crc32,
    /// Kafka's murmur2 (seed `0x9747b28c`), its sign bit cleared: the Java client's default
    /// (`BuiltInPartitioner`), franz-go's, and librdkafka's `murmur2_random`.
    Murmur2,
}

impl Partitioner {
    /// Every partitioner, in the order of the configuration's documentation.
    pub const ALL: [Partitioner; 2] = [Self::Crc32, Self::Murmur2];

    /// The configuration spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Crc32 => "crc32",
            Self::Murmur2 => "murmur2",
        }
    }

    /// The librdkafka `partitioner` property trendwatch's producers set for it. The
    /// `_random` forms hash every keyed record and spread keyless ones at random, as the
    /// Java producer does (plain `murmur2` and `consistent` would put every keyless record
    /// on one partition).
    pub fn librdkafka_property(self) -> &'static str {
        match self {
            Self::Crc32 => "consistent_random",
            Self::Murmur2 => "murmur2_random",
        }
    }

    /// Whether librdkafka's `partitioner = name` places keyed records as this does (the
    /// two spellings of each hash differ only for keyless records).
    pub fn agrees_with_librdkafka(self, name: &str) -> bool {
        match self {
            Self::Crc32 => matches!(name, "consistent" | "consistent_random"),
            Self::Murmur2 => matches!(name, "murmur2" | "murmur2_random"),
        }
    }
}

impl std::str::FromStr for Partitioner {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "{s:?} is not a partitioner; crc32 (librdkafka's default) or murmur2 (the Java client's)"
                )
            })
    }
}

/// Topic names, and how the events topic is partitioned.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TopicsConfig {
    /// Engagement events, keyed by video id.
    pub events: String,
    /// The hash the events topic's producers place a video's events with: `crc32`
    /// (librdkafka's default, the default here) or `murmur2` (the Java client's and
    /// franz-go's). A counter finds a video's owner with it, `trendwatch replay` splits
    /// with it, and `trendwatch publish` and `loadgen` produce with it.
    pub events_partitioner: Partitioner,
    /// Alerts, keyed by video id.
    pub alerts: String,
    /// Partition checkpoints (compacted).
    pub state: String,
    /// Rejected input with headers saying why and where from.
    pub dlq: String,
    /// Events beyond the allowed lateness; empty: late events are only counted.
    pub late: String,
    /// The counters' per-partition top candidates for the ranker (one partition); empty:
    /// counters propose nothing and there is no global board.
    pub candidates: String,
    /// The ranker's boards, keyed by scope (compacted).
    pub leaderboard: String,
    /// The ranker's checkpoints (compacted).
    pub ranker_state: String,
    /// Where each counter advertises its query address and partitions (compacted, one
    /// partition), so any counter can say where a video's partition lives; empty: no
    /// membership (a counter answers video queries for its own partitions only).
    pub members: String,
}

impl Default for TopicsConfig {
    fn default() -> Self {
        Self {
            events: "engagement-events".into(),
            events_partitioner: Partitioner::Crc32,
            alerts: "trendwatch-alerts".into(),
            state: "trendwatch-state".into(),
            dlq: "trendwatch-dlq".into(),
            late: String::new(),
            candidates: "trendwatch-candidates".into(),
            leaderboard: "trendwatch-leaderboard".into(),
            ranker_state: "trendwatch-ranker-state".into(),
            members: "trendwatch-members".into(),
        }
    }
}

/// What a crash or rebalance may do to the output.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProcessingGuarantee {
    /// Alerts may be written again after a crash, with the same `alert_id`; counts are
    /// exact either way.
    AtLeastOnce,
    /// Alerts, checkpoints and consumed offsets of a checkpoint interval are one Kafka
    /// transaction: a `read_committed` reader sees each alert once. Needs a broker with
    /// transactions.
    ExactlyOnce,
}

impl ProcessingGuarantee {
    /// The configuration spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AtLeastOnce => "at-least-once",
            Self::ExactlyOnce => "exactly-once",
        }
    }
}

/// What a counter does with a partition whose group has committed offsets but which has
/// no checkpoint: its state is gone (the state topic was recreated, emptied or is
/// another deployment's), and starting empty at the committed offset would count from
/// there as if nothing came before — windows, baselines and episodes lost without a word.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MissingCheckpoint {
    /// Stop with an error naming the partition (the default): an operator decides.
    Fail,
    /// Start the partition empty at the committed offset, counted and logged: the way out
    /// once the loss is understood (set it for one start, then back).
    StartEmpty,
}

/// How the counter service runs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CounterConfig {
    /// Consumer group of the counter instances.
    pub group_id: String,
    /// Form of the events on the events topic: `protobuf` (the default), `json`, or either
    /// inside Confluent Schema Registry framing as Confluent's serializers write it,
    /// `confluent-protobuf` or `confluent-json` (the schema ids accepted are
    /// `validation.allowed_schema_ids`). Under a `confluent-*` form a bare record is
    /// refused (reason `no_magic_byte`), never guessed at.
    pub input_format: InputFormat,
    /// Form of the alerts written to the alert topic.
    pub output_format: Format,
    /// How often each partition's state is checkpointed (and offsets committed).
    #[serde(with = "humantime_serde")]
    pub checkpoint_interval: Duration,
    /// How often idle partitions are told the wall-clock time and metrics are published.
    #[serde(with = "humantime_serde")]
    pub tick_interval: Duration,
    /// Longest a graceful shutdown (finish batch, flush, checkpoint, commit) may take.
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
    /// Longest the broker may take to acknowledge alerts and checkpoints before the
    /// attempt counts as failed (and is retried at the next checkpoint).
    #[serde(with = "humantime_serde")]
    pub ack_timeout: Duration,
    /// Largest checkpoint record; bigger states are split into chunks of this size (keep it
    /// under the broker's `message.max.bytes`).
    pub checkpoint_chunk_bytes: usize,
    /// A partition is caught up (for readiness) when its consumer lag is at most this.
    pub ready_max_lag: i64,
    /// At-least-once (the default) or exactly-once.
    pub processing_guarantee: ProcessingGuarantee,
    /// The producer's `transactional.id` in exactly-once mode; one per instance, stable
    /// across its restarts (a pod name, say) so a restarted instance aborts what its
    /// previous life left open at once. Empty: `<group_id>-<host name>-<process id>`,
    /// which is unique but leaves a crashed life's transaction open until the broker's
    /// `transaction.timeout.ms`.
    pub transactional_id: String,
    /// The consumer group protocol: `classic` (the default) or `consumer` (KIP-848, Kafka
    /// 4). With `consumer`, `session.timeout.ms`, `heartbeat.interval.ms` and
    /// `partition.assignment.strategy` must not be set in `[kafka]`.
    pub group_protocol: GroupProtocol,
    /// Static membership (`group.instance.id`): one stable id per instance, e.g. the pod
    /// name (`TRENDWATCH__COUNTER__GROUP_INSTANCE_ID=$POD_NAME`). A member restarted with
    /// the same id within the session timeout gets its partitions back without a
    /// rebalance of the others. Empty: dynamic membership.
    pub group_instance_id: String,
    /// A partition with committed offsets but no checkpoint: `fail` (the default) or
    /// `start-empty`.
    pub on_missing_checkpoint: MissingCheckpoint,
    /// `host:port` at which the other counters (and their clients) reach this counter's
    /// query API: what it advertises on `topics.members` and what a counter that does not
    /// own a video redirects to. Empty: the listener's bound address (`telemetry.metrics_addr`),
    /// right for one machine; set it (e.g. `$POD_IP:9464`) when the listener binds a
    /// wildcard address or sits behind NAT.
    pub advertised_http: String,
}

impl Default for CounterConfig {
    fn default() -> Self {
        Self {
            group_id: "trendwatch-counter".into(),
            input_format: InputFormat::Protobuf,
            output_format: Format::Protobuf,
            checkpoint_interval: Duration::from_secs(10),
            tick_interval: Duration::from_secs(1),
            shutdown_timeout: Duration::from_secs(30),
            ack_timeout: Duration::from_secs(30),
            checkpoint_chunk_bytes: 512 * 1024,
            ready_max_lag: 10_000,
            processing_guarantee: ProcessingGuarantee::AtLeastOnce,
            transactional_id: String::new(),
            group_protocol: GroupProtocol::Classic,
            group_instance_id: String::new(),
            on_missing_checkpoint: MissingCheckpoint::Fail,
            advertised_http: String::new(),
        }
    }
}

/// How the ranker service runs (what it ranks is the `ranking` section).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RankerConfig {
    /// Consumer group of the ranker instances; one is active, the others stand by.
    pub group_id: String,
    /// Form of the boards written to the leaderboard topic. Alerts use
    /// `counter.output_format`, like the counter's.
    pub output_format: Format,
    /// How often the ranker's state is checkpointed (and its offset committed).
    #[serde(with = "humantime_serde")]
    pub checkpoint_interval: Duration,
    /// How often the idle rule is applied and metrics are published.
    #[serde(with = "humantime_serde")]
    pub tick_interval: Duration,
    /// Longest a graceful shutdown may take.
    #[serde(with = "humantime_serde")]
    pub shutdown_timeout: Duration,
    /// Longest the broker may take to acknowledge boards, alerts and checkpoints.
    #[serde(with = "humantime_serde")]
    pub ack_timeout: Duration,
    /// The consumer group protocol, as `counter.group_protocol`.
    pub group_protocol: GroupProtocol,
    /// Static membership, as `counter.group_instance_id`.
    pub group_instance_id: String,
}

impl Default for RankerConfig {
    fn default() -> Self {
        Self {
            group_id: "trendwatch-ranker".into(),
            output_format: Format::Protobuf,
            checkpoint_interval: Duration::from_secs(5),
            tick_interval: Duration::from_secs(1),
            shutdown_timeout: Duration::from_secs(30),
            ack_timeout: Duration::from_secs(30),
            group_protocol: GroupProtocol::Classic,
            group_instance_id: String::new(),
        }
    }
}

/// Log output form.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Metrics, health and logs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// Where `/metrics`, `/healthz` and `/readyz` are served (loopback by default).
    pub metrics_addr: SocketAddr,
    /// Log form.
    pub log_format: LogFormat,
    /// Log filter in `tracing` syntax (`info`, `trendwatch=debug,rdkafka=warn`);
    /// `RUST_LOG` overrides it.
    pub log_level: String,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            metrics_addr: SocketAddr::from(([127, 0, 0, 1], 9464)),
            log_format: LogFormat::Text,
            log_level: "info".into(),
        }
    }
}

pub(crate) fn validate_service(
    kafka: &KafkaProperties,
    topics: &TopicsConfig,
    counter: &CounterConfig,
    ranker: &RankerConfig,
    errors: &mut Vec<String>,
) {
    for key in kafka.keys() {
        if RESERVED_KAFKA_PROPERTIES.contains(&key.as_str()) {
            errors.push(format!(
                "kafka.\"{key}\": set by trendwatch itself for its delivery guarantees; use the counter/topics sections"
            ));
        }
    }
    if let Some(name) = kafka.get("partitioner")
        && !topics.events_partitioner.agrees_with_librdkafka(name)
    {
        let way_out = match Partitioner::ALL
            .into_iter()
            .find(|p| p.agrees_with_librdkafka(name))
        {
            Some(p) => format!(
                "or set topics.events_partitioner = \"{}\" if the topic's producers hash so",
                p.as_str()
            ),
            None => {
                "trendwatch can find a video only on a topic placed by crc32 or murmur2".to_string()
            }
        };
        errors.push(format!(
            "kafka.\"partitioner\": {name:?} contradicts topics.events_partitioner = \"{}\": a video's events would be produced where the counters do not look for it; drop the property (trendwatch's producers set \"{}\" themselves), {way_out}",
            topics.events_partitioner.as_str(),
            topics.events_partitioner.librdkafka_property(),
        ));
    }
    let mut names = vec![
        ("topics.events", &topics.events),
        ("topics.alerts", &topics.alerts),
        ("topics.state", &topics.state),
        ("topics.dlq", &topics.dlq),
    ];
    if !topics.late.is_empty() {
        names.push(("topics.late", &topics.late));
    }
    if !topics.candidates.is_empty() {
        names.push(("topics.candidates", &topics.candidates));
    }
    names.push(("topics.leaderboard", &topics.leaderboard));
    names.push(("topics.ranker_state", &topics.ranker_state));
    if !topics.members.is_empty() {
        names.push(("topics.members", &topics.members));
    }
    for (i, (key, name)) in names.iter().enumerate() {
        if name.is_empty() {
            errors.push(format!("{key}: must not be empty"));
        } else if !valid_topic_name(name) {
            errors.push(format!(
                "{key}: {name:?} is not a Kafka topic name (letters, digits, '.', '_', '-', at most 249)"
            ));
        } else if let Some((other, _)) = names[..i].iter().find(|(_, n)| n == name) {
            errors.push(format!(
                "{key}: {name:?} is also {other}; every topic must differ"
            ));
        }
    }
    if counter.group_id.is_empty() {
        errors.push("counter.group_id: must not be empty".into());
    }
    if ranker.group_id.is_empty() {
        errors.push("ranker.group_id: must not be empty".into());
    } else if ranker.group_id == counter.group_id {
        errors.push("ranker.group_id: must differ from counter.group_id".into());
    }
    let positive = [
        ("counter.checkpoint_interval", counter.checkpoint_interval),
        ("counter.tick_interval", counter.tick_interval),
        ("counter.shutdown_timeout", counter.shutdown_timeout),
        ("counter.ack_timeout", counter.ack_timeout),
        ("ranker.checkpoint_interval", ranker.checkpoint_interval),
        ("ranker.tick_interval", ranker.tick_interval),
        ("ranker.shutdown_timeout", ranker.shutdown_timeout),
        ("ranker.ack_timeout", ranker.ack_timeout),
    ];
    for (key, d) in positive {
        if d.is_zero() {
            errors.push(format!("{key}: must be longer than zero"));
        }
    }
    for (section, protocol) in [
        ("counter", counter.group_protocol),
        ("ranker", ranker.group_protocol),
    ] {
        if protocol != GroupProtocol::Consumer {
            continue;
        }
        for key in CLASSIC_ONLY_KAFKA_PROPERTIES {
            if kafka.contains_key(*key) {
                errors.push(format!(
                    "kafka.\"{key}\": must not be set with {section}.group_protocol = \"consumer\" (KIP-848 moves it to the broker: group.consumer.* settings)"
                ));
            }
        }
    }
    if !counter.group_instance_id.is_empty()
        && counter.group_instance_id == ranker.group_instance_id
    {
        errors.push("ranker.group_instance_id: must differ from counter.group_instance_id".into());
    }
    if !counter.advertised_http.is_empty() && !valid_host_port(&counter.advertised_http) {
        errors.push(format!(
            "counter.advertised_http: {:?} is not host:port (e.g. \"10.0.0.7:9464\"); it goes into redirects as http://<host:port>/...",
            counter.advertised_http
        ));
    }
    if counter.checkpoint_chunk_bytes < 1024 {
        errors.push("counter.checkpoint_chunk_bytes: must be at least 1024".into());
    }
    if counter.ready_max_lag < 0 {
        errors.push("counter.ready_max_lag: must not be negative".into());
    }
    if counter.processing_guarantee == ProcessingGuarantee::ExactlyOnce
        && let Some(ms) = kafka.get("transaction.timeout.ms")
    {
        match ms.parse::<u64>() {
            Ok(ms) if Duration::from_millis(ms) > counter.checkpoint_interval => {}
            _ => errors.push(format!(
                "kafka.\"transaction.timeout.ms\": {ms:?} must be a number of milliseconds above counter.checkpoint_interval ({} s), since one transaction spans a checkpoint interval",
                counter.checkpoint_interval.as_secs_f64()
            )),
        }
    }
}

/// `host:port` with a non-empty host of URL-safe characters and a port number: what a
/// `Location: http://host:port/...` can carry.
fn valid_host_port(s: &str) -> bool {
    let Some((host, port)) = s.rsplit_once(':') else {
        return false;
    };
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':'))
        && port.parse::<u16>().is_ok_and(|p| p > 0)
}

/// Kafka's rule for topic names.
fn valid_topic_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 249
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}
