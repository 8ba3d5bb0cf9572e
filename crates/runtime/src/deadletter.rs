//! Dead-letter and late-event records: the original key, bytes and headers, plus headers
//! saying why the record was set aside and where it came from. Alert records carry the
//! `source` headers too, naming the record that made the decision.

use rdkafka::message::{BorrowedMessage, Header, Headers, Message, OwnedHeaders};

/// Header: the reason code (`undecodable`, `unknown_kind`, ..., or `late`).
pub const REASON: &str = "trendwatch.reason";
/// Header: the human-readable detail of the reason.
pub const ERROR: &str = "trendwatch.error";
/// Header: the topic the record was read from.
pub const SOURCE_TOPIC: &str = "trendwatch.source.topic";
/// Header: its partition (decimal).
pub const SOURCE_PARTITION: &str = "trendwatch.source.partition";
/// Header: its offset (decimal).
pub const SOURCE_OFFSET: &str = "trendwatch.source.offset";

/// Header: the Kafka timestamp (ms) of the source record (on alerts).
pub const SOURCE_TIMESTAMP: &str = "trendwatch.source.timestamp";

/// The headers of a set-aside copy of `message`: its own headers first, then ours.
pub fn headers_for(message: &BorrowedMessage<'_>, reason: &str, detail: &str) -> OwnedHeaders {
    let mut headers = OwnedHeaders::new();
    if let Some(original) = message.headers() {
        for h in original.iter() {
            headers = headers.insert(Header {
                key: h.key,
                value: h.value,
            });
        }
    }
    let partition = message.partition().to_string();
    let offset = message.offset().to_string();
    for (key, value) in [
        (REASON, reason),
        (ERROR, detail),
        (SOURCE_TOPIC, message.topic()),
        (SOURCE_PARTITION, partition.as_str()),
        (SOURCE_OFFSET, offset.as_str()),
    ] {
        headers = headers.insert(Header {
            key,
            value: Some(value),
        });
    }
    headers
}
