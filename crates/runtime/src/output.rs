//! What the services produce through: a producer context that remembers which input
//! partitions lost output, and a send that waits while the producer's queue is full.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use metrics::counter;
use rdkafka::client::ClientContext;
use rdkafka::error::KafkaError;
use rdkafka::message::{DeliveryResult, Message};
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;

use crate::telemetry as m;

/// Collects the partitions whose produced records the broker did not acknowledge, and
/// which of them were refused for a reason that retrying cannot mend.
#[derive(Default)]
pub(crate) struct DeliveryTracker {
    failed: Mutex<BTreeSet<i32>>,
    permanent: Mutex<BTreeMap<i32, String>>,
}

/// Whether a refusal of a record will repeat, however often it is sent again: the record
/// itself, or what the producer may do, is wrong.
pub(crate) fn is_permanent(code: RDKafkaErrorCode) -> bool {
    use RDKafkaErrorCode as C;
    matches!(
        code,
        C::MessageSizeTooLarge
            | C::InvalidMessageSize
            | C::InvalidMessage
            | C::InvalidRecord
            | C::UnsupportedForMessageFormat
            | C::PolicyViolation
            | C::TopicAuthorizationFailed
            | C::ClusterAuthorizationFailed
    )
}

impl DeliveryTracker {
    pub(crate) fn take_failed(&self) -> BTreeSet<i32> {
        std::mem::take(&mut *self.failed.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// The partitions refused permanently since the last call, with the reason.
    pub(crate) fn take_permanent(&self) -> BTreeMap<i32, String> {
        std::mem::take(
            &mut *self
                .permanent
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        )
    }

    fn record_refusal(&self, partition: i32, error: &KafkaError, topic: &str) {
        if error.rdkafka_error_code().is_some_and(is_permanent) {
            self.permanent
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(partition, format!("{topic}: {error}"));
        }
        self.record_failure(partition);
    }

    pub(crate) fn record_failure(&self, partition: i32) {
        counter!(m::DELIVERY_FAILURES).increment(1);
        self.failed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(partition);
    }
}

impl ClientContext for DeliveryTracker {}

impl ProducerContext for DeliveryTracker {
    /// The events partition whose processing produced the record.
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, partition: usize) {
        if let Err((e, message)) = result {
            tracing::warn!(
                error = %e,
                topic = message.topic(),
                events_partition = partition,
                "record not acknowledged; the partition will be rewound"
            );
            self.record_refusal(partition as i32, e, message.topic());
        }
    }
}

/// Hands a record to the producer, waiting while its queue is full (backpressure). A
/// record the producer refuses outright is recorded as a delivery failure of `partition`,
/// which rewinds the partition at the next checkpoint round; returns whether it was queued.
pub(crate) fn send<K, P>(
    producer: &ThreadedProducer<DeliveryTracker>,
    mut record: BaseRecord<'_, K, P, usize>,
    partition: i32,
) -> bool
where
    K: rdkafka::message::ToBytes + ?Sized,
    P: rdkafka::message::ToBytes + ?Sized,
{
    loop {
        match producer.send(record) {
            Ok(()) => return true,
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                record = back;
                std::thread::sleep(Duration::from_millis(1));
            }
            Err((e, back)) => {
                tracing::error!(error = %e, topic = back.topic, "record refused by the producer");
                producer.context().record_refusal(partition, &e, back.topic);
                return false;
            }
        }
    }
}
