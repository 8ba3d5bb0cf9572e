//! The runtime crate's one error type.

use rdkafka::error::KafkaError;

/// What can go wrong running a service or a Kafka tool.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// A Kafka client call failed.
    #[error("{context}: {source}")]
    Kafka {
        /// What was being done.
        context: String,
        /// librdkafka's error.
        source: KafkaError,
    },
    /// The broker did not answer in time.
    #[error("{0}: timed out")]
    Timeout(String),
    /// A checkpoint could not be read back into a partition state.
    #[error("restoring partition {partition} of {topic}: {reason}")]
    Restore {
        /// Events topic.
        topic: String,
        /// Events partition.
        partition: i32,
        /// Why.
        reason: String,
    },
    /// A partition's group has committed offsets but there is no checkpoint of it: its
    /// state is gone, and starting empty would count as if nothing came before.
    #[error(
        "partition {partition} of {topic}: group {group} committed offset {committed} but {state_topic} holds no checkpoint of it (the state topic recreated or emptied, or another deployment's?); set counter.on_missing_checkpoint = \"start-empty\" for one start to go on from the committed offset with an empty state, or reset the group's offsets to count again from further back (docs/OPERATIONS.md, missing checkpoints)"
    )]
    MissingCheckpoint {
        /// Events topic.
        topic: String,
        /// Events partition.
        partition: i32,
        /// The consumer group.
        group: String,
        /// The group's committed offset of the partition.
        committed: i64,
        /// The state topic that was read.
        state_topic: String,
    },
    /// Output of a partition is refused for good (a record too big for the topic, no
    /// permission): rewinding it again would repeat the refusal forever.
    #[error(
        "output of events partition {partition} refused {rounds} checkpoint rounds in a row ({reason}); stopping instead of rewinding it forever: fix the topic (max.message.bytes, ACLs) or the producer settings, then restart"
    )]
    OutputRefused {
        /// Events partition whose output was refused.
        partition: i32,
        /// Rounds in a row.
        rounds: u32,
        /// The producer's or broker's reason, with the topic.
        reason: String,
    },
    /// The output producer failed in a way it cannot recover from (librdkafka's fatal
    /// error, e.g. an idempotent producer that lost its sequence).
    #[error("the output producer failed fatally: {0}; a restart resumes from the last checkpoint")]
    ProducerFatal(String),
    /// The configuration cannot work (checked at start-up).
    #[error("configuration: {0}")]
    Config(String),
    /// Local I/O (the metrics listener, files).
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A file or record of the contract could not be read or written.
    #[error(transparent)]
    Proto(#[from] trendwatch_proto::ProtoError),
}

impl RuntimeError {
    /// Whether trying again later could succeed (the broker was unreachable or slow) as
    /// opposed to a problem that needs a change (configuration, incompatible checkpoint).
    pub fn is_retryable(&self) -> bool {
        match self {
            RuntimeError::Kafka { source, .. } => source.rdkafka_error_code().is_some_and(|c| {
                use rdkafka::types::RDKafkaErrorCode as C;
                matches!(
                    c,
                    C::BrokerTransportFailure
                        | C::AllBrokersDown
                        | C::OperationTimedOut
                        | C::QueueFull
                        | C::RequestTimedOut
                        | C::NetworkException
                        | C::NotCoordinator
                        | C::CoordinatorNotAvailable
                        | C::LeaderNotAvailable
                        | C::NotLeaderForPartition
                )
            }),
            RuntimeError::Timeout(_) => true,
            RuntimeError::Io { .. } | RuntimeError::Proto(_) => false,
            RuntimeError::Restore { .. } | RuntimeError::Config(_) => false,
            RuntimeError::MissingCheckpoint { .. } => false,
            RuntimeError::OutputRefused { .. } => false,
            // A new process (new producer id) goes on from the last checkpoint.
            RuntimeError::ProducerFatal(_) => true,
        }
    }

    pub(crate) fn kafka(context: impl Into<String>, source: KafkaError) -> Self {
        RuntimeError::Kafka {
            context: context.into(),
            source,
        }
    }
}

/// The runtime crate's result type.
pub type Result<T> = std::result::Result<T, RuntimeError>;
