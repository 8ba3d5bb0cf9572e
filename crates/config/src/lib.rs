//! The one configuration tree of trendwatch.
//!
//! Precedence, lowest first: the defaults of every section, then a TOML file, then
//! environment variables `TRENDWATCH__SECTION__KEY` (double underscores separate levels:
//! `TRENDWATCH__ENGINE__VELOCITY__Z_FIRE=5`, `TRENDWATCH__ENGINE__WINDOWS__BUCKET=5s`), then
//! command-line flags applied by the binary. Unknown keys are errors, and [`Config::validate`]
//! reports every problem at once, each naming its key.

mod service;

use std::path::Path;

use figment::Figment;
use figment::providers::{Format, Serialized, Toml};
use serde::{Deserialize, Serialize};
use trendwatch_core::{EngineConfig, RankingConfig};
use trendwatch_proto::ValidationConfig;

pub use service::{
    CLASSIC_ONLY_KAFKA_PROPERTIES, CounterConfig, GroupProtocol, KafkaProperties, LogFormat,
    MissingCheckpoint, Partitioner, ProcessingGuarantee, RESERVED_KAFKA_PROPERTIES, RankerConfig,
    TelemetryConfig, TopicsConfig,
};

/// The environment prefix of configuration overrides.
pub const ENV_PREFIX: &str = "TRENDWATCH__";

/// Everything trendwatch can be configured with.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The engine: windows, detectors, memory bounds.
    pub engine: EngineConfig,
    /// Limits on incoming events.
    pub validation: ValidationConfig,
    /// librdkafka properties for every client (`"bootstrap.servers"`, TLS, SASL, ...).
    pub kafka: KafkaProperties,
    /// Topic names.
    pub topics: TopicsConfig,
    /// The counter service.
    pub counter: CounterConfig,
    /// The global board: its size, alert lifecycle and idle rule (read by the counters,
    /// which propose `exit_rank` candidates per window, and by the ranker).
    pub ranking: RankingConfig,
    /// The ranker service.
    pub ranker: RankerConfig,
    /// Metrics, health endpoints and logs.
    pub telemetry: TelemetryConfig,
}

/// The broker a configuration without `kafka."bootstrap.servers"` talks to.
pub const DEFAULT_BOOTSTRAP_SERVERS: &str = "127.0.0.1:9092";

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file or an override could not be read or does not fit the tree.
    #[error("{0}")]
    Load(String),
    /// The configuration loaded but is not valid; every problem is listed.
    #[error("invalid configuration:\n  {}", .0.join("\n  "))]
    Invalid(Vec<String>),
}

impl ConfigError {
    /// Whether retrying could help: never, the configuration must change.
    pub fn is_retryable(&self) -> bool {
        false
    }
}

/// The config crate's result type.
pub type Result<T> = std::result::Result<T, ConfigError>;

impl Config {
    /// Loads defaults ← `file` ← `env` (pairs of name and value, e.g. `std::env::vars()`),
    /// then validates.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            if !path.exists() {
                return Err(ConfigError::Load(format!(
                    "{}: no such file",
                    path.display()
                )));
            }
            figment = figment.merge(Toml::file(path));
        }
        let mut overrides: Vec<(String, String)> = Vec::new();
        // librdkafka property names contain dots, so they cannot be nested keys:
        // TRENDWATCH__KAFKA__SECURITY_PROTOCOL sets kafka."security.protocol".
        let mut kafka_overrides: Vec<(String, String)> = Vec::new();
        for (k, v) in env {
            let Some(rest) = k.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            let rest = rest.to_ascii_lowercase();
            if let Some(property) = rest.strip_prefix("kafka__") {
                kafka_overrides.push((property.replace('_', "."), v));
            } else {
                overrides.push((rest.replace("__", "."), v));
            }
        }
        for (key, value) in overrides {
            // A value is read as TOML (`7.5`, `true`, `[5.0, 20.0]`), else taken as a string
            // (`5s`, `exactly-once`).
            let parsed = format!("v = {value}")
                .parse::<toml::Table>()
                .ok()
                .and_then(|mut t| t.remove("v"))
                .unwrap_or(toml::Value::String(value));
            figment = figment.merge(Serialized::default(&key, parsed));
        }
        let mut config: Config = figment.extract().map_err(|e| {
            let all: Vec<String> = e.into_iter().map(|e| e.to_string()).collect();
            ConfigError::Load(all.join("; "))
        })?;
        config.kafka.extend(kafka_overrides);
        config.validate().map_err(ConfigError::Invalid)?;
        Ok(config)
    }

    /// Every problem with the configuration, each naming its key.
    pub fn validate(&self) -> std::result::Result<(), Vec<String>> {
        let mut errors = Vec::new();
        if let Err(e) = self.engine.validate() {
            errors.extend(e);
        }
        if let Err(e) = self.validation.validate() {
            errors.extend(e);
        }
        if !self.validation.allowed_schema_ids.is_empty()
            && !self.counter.input_format.is_confluent()
        {
            errors.push(format!(
                "validation.allowed_schema_ids: set, but counter.input_format = \"{}\" carries no schema id; use confluent-protobuf or confluent-json, or leave the list empty",
                self.counter.input_format.as_str()
            ));
        }
        if let Err(e) = self.ranking.validate() {
            errors.extend(e);
        }
        service::validate_service(
            &self.kafka,
            &self.topics,
            &self.counter,
            &self.ranker,
            &mut errors,
        );
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    /// The bootstrap servers the clients connect to.
    pub fn bootstrap_servers(&self) -> &str {
        self.kafka
            .get("bootstrap.servers")
            .map_or(DEFAULT_BOOTSTRAP_SERVERS, String::as_str)
    }

    /// The effective configuration as TOML.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_validate() {
        assert_eq!(Config::default().validate(), Ok(()));
        assert_eq!(Config::load(None, env(&[])).unwrap(), Config::default());
    }

    #[test]
    fn environment_overrides_nested_durations_and_floats() {
        let c = Config::load(
            None,
            env(&[
                ("TRENDWATCH__ENGINE__WINDOWS__BUCKET", "5s"),
                ("TRENDWATCH__ENGINE__WINDOWS__VELOCITY_WINDOW", "30s"),
                ("TRENDWATCH__ENGINE__WINDOWS__ALLOWED_LATENESS", "10s"),
                (
                    "TRENDWATCH__ENGINE__VELOCITY__FALSE_ALARMS_PER_VIDEO_DAY",
                    "0.01",
                ),
                ("TRENDWATCH__ENGINE__VELOCITY__PRIOR_LIKES_PER_MIN", "2.5"),
                ("UNRELATED", "x"),
            ]),
        )
        .unwrap();
        assert_eq!(c.engine.windows.bucket, Duration::from_secs(5));
        assert_eq!(c.engine.velocity.false_alarms_per_video_day, 0.01);
        assert_eq!(c.engine.velocity.prior_likes_per_min, 2.5);
    }

    #[test]
    fn unknown_keys_are_named() {
        let dir = std::env::temp_dir().join(format!("twcfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bad.toml");
        std::fs::write(&path, "[engine.velocity]\nz_fyre = 3\n").unwrap();
        let err = Config::load(Some(&path), env(&[])).unwrap_err().to_string();
        assert!(err.contains("z_fyre"), "{err}");
    }

    #[test]
    fn several_errors_are_reported_together() {
        let err = Config::load(
            None,
            env(&[
                ("TRENDWATCH__ENGINE__VELOCITY__Z_CLEAR", "-1"),
                ("TRENDWATCH__VALIDATION__MAX_ID_BYTES", "0"),
            ]),
        )
        .unwrap_err();
        match err {
            ConfigError::Invalid(all) => {
                assert_eq!(all.len(), 2, "{all:#?}");
                assert!(all[0].starts_with("engine.velocity.z_clear"));
                assert!(all[1].starts_with("validation.max_id_bytes"));
            }
            other => panic!("{other}"),
        }
    }

    #[test]
    fn kafka_properties_come_from_file_and_environment() {
        let dir = tempfile_dir("kafka");
        let path = dir.join("k.toml");
        std::fs::write(
            &path,
            "[kafka]\n\"bootstrap.servers\" = \"broker:9092\"\n\"security.protocol\" = \"SSL\"\n",
        )
        .unwrap();
        let c = Config::load(
            Some(&path),
            env(&[
                ("TRENDWATCH__KAFKA__SECURITY_PROTOCOL", "SASL_SSL"),
                ("TRENDWATCH__KAFKA__SASL_MECHANISM", "PLAIN"),
                ("TRENDWATCH__COUNTER__OUTPUT_FORMAT", "json"),
            ]),
        )
        .unwrap();
        assert_eq!(c.bootstrap_servers(), "broker:9092");
        assert_eq!(c.kafka["security.protocol"], "SASL_SSL");
        assert_eq!(c.kafka["sasl.mechanism"], "PLAIN");
        assert_eq!(
            c.counter.output_format,
            trendwatch_proto::files::Format::Json
        );
    }

    #[test]
    fn service_sections_are_validated() {
        let err = Config::load(
            None,
            env(&[
                ("TRENDWATCH__KAFKA__ENABLE_AUTO_COMMIT", "true"),
                ("TRENDWATCH__TOPICS__DLQ", "trendwatch-alerts"),
                ("TRENDWATCH__TOPICS__STATE", "bad topic"),
                ("TRENDWATCH__COUNTER__CHECKPOINT_INTERVAL", "0s"),
            ]),
        )
        .unwrap_err();
        let ConfigError::Invalid(all) = err else {
            panic!("{err}")
        };
        assert_eq!(all.len(), 4, "{all:#?}");
        assert!(all[0].contains("enable.auto.commit"));
        assert!(all.iter().any(|e| e.starts_with("topics.state")));
        assert!(
            all.iter()
                .any(|e| e.starts_with("topics.dlq") && e.contains("topics.alerts"))
        );
        assert!(
            all.iter()
                .any(|e| e.starts_with("counter.checkpoint_interval"))
        );
    }

    #[test]
    fn the_advertised_query_address_must_fit_a_redirect() {
        for good in ["10.0.0.7:9464", "counter-0.counters.svc:9464", "[::1]:9464"] {
            let c = Config::load(None, env(&[("TRENDWATCH__COUNTER__ADVERTISED_HTTP", good)]));
            assert!(c.is_ok(), "{good}: {:?}", c.err());
        }
        for bad in ["10.0.0.7", "host:0", "ho st:9464", "http://h:1", ":9464"] {
            let err = Config::load(None, env(&[("TRENDWATCH__COUNTER__ADVERTISED_HTTP", bad)]))
                .unwrap_err();
            let ConfigError::Invalid(all) = err else {
                panic!("{err}")
            };
            assert!(
                all.iter().any(|e| e.starts_with("counter.advertised_http")),
                "{bad}: {all:?}"
            );
        }
        assert_eq!(Config::default().topics.members, "trendwatch-members");
    }

    #[test]
    fn confluent_input_formats_and_the_schema_id_allow_list() {
        let c = Config::load(
            None,
            env(&[
                ("TRENDWATCH__COUNTER__INPUT_FORMAT", "confluent-protobuf"),
                ("TRENDWATCH__VALIDATION__ALLOWED_SCHEMA_IDS", "[3, 7]"),
            ]),
        )
        .unwrap();
        assert_eq!(
            c.counter.input_format,
            trendwatch_proto::InputFormat::ConfluentProtobuf
        );
        assert_eq!(c.validation.allowed_schema_ids, [3, 7]);
        let toml = c.to_toml();
        assert!(
            toml.contains("input_format = \"confluent-protobuf\""),
            "{toml}"
        );
        // `config check` prints both, and what it prints loads back to the same config.
        assert!(toml.contains("allowed_schema_ids = ["), "{toml}");
        assert_eq!(toml::from_str::<Config>(&toml).unwrap(), c);
        // An allow-list that nothing checks, and ids no registry assigns: every error at once.
        let err = Config::load(
            None,
            env(&[
                ("TRENDWATCH__COUNTER__INPUT_FORMAT", "json"),
                (
                    "TRENDWATCH__VALIDATION__ALLOWED_SCHEMA_IDS",
                    "[0, 5, 4294967295]",
                ),
            ]),
        )
        .unwrap_err();
        let ConfigError::Invalid(all) = err else {
            panic!("{err}")
        };
        assert_eq!(all.len(), 3, "{all:#?}");
        assert!(all[0].starts_with("validation.allowed_schema_ids: 0 is not"));
        assert!(all[1].starts_with("validation.allowed_schema_ids: 4294967295 is not"));
        assert!(
            all[2].contains("counter.input_format = \"json\" carries no schema id"),
            "{}",
            all[2]
        );
        let err = Config::load(None, env(&[("TRENDWATCH__COUNTER__INPUT_FORMAT", "avro")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("confluent-protobuf"), "{err}");
    }

    #[test]
    fn the_consumer_group_protocol_refuses_classic_session_settings() {
        let c = Config::load(
            None,
            env(&[
                ("TRENDWATCH__COUNTER__GROUP_PROTOCOL", "consumer"),
                ("TRENDWATCH__COUNTER__GROUP_INSTANCE_ID", "counter-0"),
            ]),
        )
        .unwrap();
        assert_eq!(c.counter.group_protocol, GroupProtocol::Consumer);
        assert_eq!(c.counter.group_instance_id, "counter-0");
        assert_eq!(c.ranker.group_protocol, GroupProtocol::Classic);
        let err = Config::load(
            None,
            env(&[
                ("TRENDWATCH__COUNTER__GROUP_PROTOCOL", "consumer"),
                ("TRENDWATCH__KAFKA__SESSION_TIMEOUT_MS", "6000"),
                ("TRENDWATCH__KAFKA__HEARTBEAT_INTERVAL_MS", "500"),
                ("TRENDWATCH__KAFKA__PARTITION_ASSIGNMENT_STRATEGY", "range"),
                ("TRENDWATCH__KAFKA__GROUP_PROTOCOL", "consumer"),
            ]),
        )
        .unwrap_err();
        let ConfigError::Invalid(all) = err else {
            panic!("{err}")
        };
        for key in CLASSIC_ONLY_KAFKA_PROPERTIES {
            assert!(
                all.iter()
                    .any(|e| e.contains(key) && e.contains("group_protocol")),
                "{key} not reported: {all:#?}"
            );
        }
        // The protocol is chosen in the service sections, not passed through.
        assert!(
            all.iter()
                .any(|e| e.starts_with("kafka.\"group.protocol\""))
        );
        // Classic (the default) keeps accepting them.
        assert!(
            Config::load(
                None,
                env(&[("TRENDWATCH__KAFKA__SESSION_TIMEOUT_MS", "6000")])
            )
            .is_ok()
        );
    }

    #[test]
    fn exactly_once_needs_a_transaction_timeout_longer_than_a_checkpoint_interval() {
        let load = |ms: &str| {
            Config::load(
                None,
                env(&[
                    ("TRENDWATCH__COUNTER__PROCESSING_GUARANTEE", "exactly-once"),
                    ("TRENDWATCH__COUNTER__CHECKPOINT_INTERVAL", "10s"),
                    ("TRENDWATCH__KAFKA__TRANSACTION_TIMEOUT_MS", ms),
                ]),
            )
        };
        let c = load("60000").unwrap();
        assert_eq!(
            c.counter.processing_guarantee,
            ProcessingGuarantee::ExactlyOnce
        );
        for bad in ["5000", "soon"] {
            let Err(ConfigError::Invalid(all)) = load(bad) else {
                panic!("{bad} must be refused")
            };
            assert!(all[0].contains("transaction.timeout.ms"), "{all:?}");
        }
    }

    #[test]
    fn the_events_partitioner_is_set_by_file_or_environment_and_checked() {
        assert_eq!(
            Config::default().topics.events_partitioner,
            Partitioner::Crc32
        );
        let c = Config::load(
            None,
            env(&[("TRENDWATCH__TOPICS__EVENTS_PARTITIONER", "murmur2")]),
        )
        .unwrap();
        assert_eq!(c.topics.events_partitioner, Partitioner::Murmur2);
        let toml = c.to_toml();
        assert!(toml.contains("events_partitioner = \"murmur2\""), "{toml}");
        assert_eq!(toml::from_str::<Config>(&toml).unwrap(), c);
        let dir = tempfile_dir("partitioner");
        let path = dir.join("p.toml");
        std::fs::write(&path, "[topics]\nevents_partitioner = \"murmur2\"\n").unwrap();
        let c = Config::load(Some(&path), env(&[])).unwrap();
        assert_eq!(c.topics.events_partitioner, Partitioner::Murmur2);
        // An unknown hash names the key and the two it can be.
        for bad in ["fnv1a", "Murmur2", "murmur2_random", ""] {
            let err = Config::load(
                None,
                env(&[("TRENDWATCH__TOPICS__EVENTS_PARTITIONER", bad)]),
            )
            .unwrap_err();
            assert!(matches!(err, ConfigError::Load(_)), "{bad:?}: {err}");
            let err = err.to_string();
            assert!(
                err.contains("events_partitioner")
                    && err.contains("crc32")
                    && err.contains("murmur2"),
                "{bad:?}: {err}"
            );
        }
        assert_eq!("murmur2".parse::<Partitioner>(), Ok(Partitioner::Murmur2));
        assert!(
            "sarama"
                .parse::<Partitioner>()
                .unwrap_err()
                .contains("crc32")
        );
    }

    #[test]
    fn a_raw_librdkafka_partitioner_must_agree_with_the_events_partitioner() {
        let load = |ours: &str, raw: &str| {
            Config::load(
                None,
                env(&[
                    ("TRENDWATCH__TOPICS__EVENTS_PARTITIONER", ours),
                    ("TRENDWATCH__KAFKA__PARTITIONER", raw),
                ]),
            )
        };
        for (ours, raw) in [
            ("crc32", "consistent_random"),
            ("crc32", "consistent"),
            ("murmur2", "murmur2_random"),
            ("murmur2", "murmur2"),
        ] {
            let c = load(ours, raw).unwrap_or_else(|e| panic!("{ours} + {raw}: {e}"));
            assert_eq!(c.kafka["partitioner"], raw);
        }
        let refused = |ours: &str, raw: &str| -> String {
            let Err(ConfigError::Invalid(all)) = load(ours, raw) else {
                panic!("{ours} + {raw} must be refused")
            };
            assert_eq!(all.len(), 1, "{all:#?}");
            assert!(all[0].starts_with("kafka.\"partitioner\""), "{}", all[0]);
            assert!(
                all[0].contains(&format!("topics.events_partitioner = \"{ours}\"")),
                "{}",
                all[0]
            );
            all[0].clone()
        };
        // The other hash: the way out names it.
        let m = refused("crc32", "murmur2_random");
        assert!(
            m.contains("or set topics.events_partitioner = \"murmur2\""),
            "{m}"
        );
        let m = refused("murmur2", "consistent_random");
        assert!(m.contains("\"crc32\""), "{m}");
        // A placement trendwatch cannot follow at all.
        for raw in ["random", "fnv1a", "fnv1a_random", "murmur3"] {
            let m = refused("murmur2", raw);
            assert!(
                m.contains("only on a topic placed by crc32 or murmur2"),
                "{m}"
            );
        }
    }

    fn tempfile_dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("twcfg-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn shipped_config_files_parse_and_equal_their_claims() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                let c = Config::load(Some(&path), env(&[])).unwrap();
                if path
                    .file_name()
                    .is_some_and(|n| n == "trendwatch.example.toml")
                {
                    assert_eq!(c, Config::default(), "the example must show the defaults");
                }
                seen += 1;
            }
        }
        assert!(seen >= 1);
    }
}
