//! What the services' Kafka client contexts share: librdkafka's log lines into `tracing`,
//! client errors and statistics into readiness, and the slot where a callback leaves the
//! first fatal error for the service loop.

use std::sync::{Mutex, PoisonError};

use rdkafka::TopicPartitionList;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::statistics::Statistics;
use rdkafka::types::RDKafkaErrorCode;

use crate::error::RuntimeError;
use crate::health::Health;

/// The level librdkafka logs at: warnings, or debug when `[kafka] debug` names contexts to
/// debug (its debug lines come at debug level and would be muted otherwise).
pub(crate) fn log_level(config: &trendwatch_config::Config) -> RDKafkaLogLevel {
    if config.kafka.contains_key("debug") {
        RDKafkaLogLevel::Debug
    } else {
        RDKafkaLogLevel::Warning
    }
}

/// Forwards one librdkafka log line to `tracing` (target `librdkafka`).
pub(crate) fn forward_log(level: RDKafkaLogLevel, facility: &str, message: &str) {
    use RDKafkaLogLevel as L;
    match level {
        L::Emerg | L::Alert | L::Critical | L::Error => {
            tracing::error!(target: "librdkafka", facility, "{message}")
        }
        L::Warning => tracing::warn!(target: "librdkafka", facility, "{message}"),
        L::Notice | L::Info => tracing::info!(target: "librdkafka", facility, "{message}"),
        L::Debug => tracing::debug!(target: "librdkafka", facility, "{message}"),
    }
}

/// A client error: "all brokers down" makes the service not ready; the end of a partition
/// is news, not an error (the poll loop gets it), so it is not logged.
pub(crate) fn report_client_error(health: &Health, error: &KafkaError, reason: &str) {
    match error.rdkafka_error_code() {
        Some(RDKafkaErrorCode::PartitionEOF) => return,
        Some(RDKafkaErrorCode::AllBrokersDown) => health.set_broker_down(true),
        _ => {}
    }
    tracing::warn!(error = %error, reason, "kafka client error");
}

/// Readiness follows the statistics: not ready while no broker is up.
pub(crate) fn report_brokers(health: &Health, statistics: &Statistics) {
    let up = statistics.brokers.values().any(|b| b.state == "UP");
    health.set_broker_down(!up);
}

/// The first fatal error a callback hit, for the service loop to end with.
#[derive(Default)]
pub(crate) struct FatalSlot(Mutex<Option<RuntimeError>>);

impl FatalSlot {
    /// Logs `error` and keeps it unless an earlier one is kept.
    pub(crate) fn fail(&self, error: RuntimeError) {
        tracing::error!(error = %error, "fatal");
        let mut fatal = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if fatal.is_none() {
            *fatal = Some(error);
        }
    }

    /// The kept error, if any, leaving the slot empty.
    pub(crate) fn take(&self) -> Option<RuntimeError> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).take()
    }
}

/// Takes the partitions of an assign callback: added to the assignment under a cooperative
/// protocol (KIP-848's consumer protocol always is: `tpl` holds only the partitions that
/// arrive), or as the whole new assignment under the classic eager one.
pub(crate) fn assign_partitions<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    tpl: &TopicPartitionList,
) -> KafkaResult<()> {
    match consumer.rebalance_protocol() {
        RebalanceProtocol::Cooperative => consumer.incremental_assign(tpl),
        _ => consumer.assign(tpl),
    }
}

/// Gives up the partitions of a revoke callback: only those (cooperative), or everything
/// (eager: a revoke always takes the whole assignment).
pub(crate) fn unassign_partitions<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    tpl: &TopicPartitionList,
) -> KafkaResult<()> {
    match consumer.rebalance_protocol() {
        RebalanceProtocol::Cooperative => consumer.incremental_unassign(tpl),
        _ => consumer.unassign(),
    }
}
