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
