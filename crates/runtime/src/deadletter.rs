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
/// Header (only on a copy cut to fit the producer's `message.max.bytes`): what was cut,
/// e.g. `value 1040000 bytes, kept 998912; original headers dropped`.
pub const TRUNCATED: &str = "trendwatch.truncated";

/// The producer's `message.max.bytes` when the configuration leaves it at librdkafka's
/// default.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 1_000_000;

/// Bytes a produce request spends on one record besides its key, value and headers
/// (record and batch framing, with room to spare).
const FRAMING_BYTES: usize = 1_024;
/// Bytes a header costs besides its key and value (two varint lengths).
const HEADER_FRAMING_BYTES: usize = 10;

/// What of a record too big to be copied whole is kept, so that the copy fits in
/// `max_bytes`: the key and our headers always (they say why and where from), then the
/// original headers if they fit, then as much of the value as is left.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fit {
    /// Bytes of the value kept (a prefix).
    pub value_bytes: usize,
    /// Whether the original headers are kept.
    pub original_headers: bool,
}

impl Fit {
    /// How a copy of a record with a key of `key` bytes, a value of `value` bytes, original
    /// headers of `original` bytes and our headers of `ours` bytes fits in `max_bytes`.
    pub fn of(key: usize, value: usize, original: usize, ours: usize, max_bytes: usize) -> Fit {
        let room = max_bytes.saturating_sub(FRAMING_BYTES + key + ours);
        let original_headers = original <= room;
        let room = if original_headers {
            room - original
        } else {
            room
        };
        Fit {
            value_bytes: value.min(room),
            original_headers,
        }
    }

    /// Whether anything is cut.
    pub fn cuts(&self, value: usize, has_original_headers: bool) -> bool {
        self.value_bytes < value || (has_original_headers && !self.original_headers)
    }
}

/// The parts of a set-aside copy: the value to send and the headers to send it with.
pub struct SetAside<'a> {
    /// The value (the original bytes, or their prefix when cut).
    pub value: &'a [u8],
    /// The headers: the original ones (unless cut), then ours.
    pub headers: OwnedHeaders,
}

/// A set-aside copy of `message` that fits in `max_bytes` (the producer's
/// `message.max.bytes`): a copy too big to send whole (the input may be as big as the
/// events topic allows, and the copy adds headers) is cut as [`Fit`] says, with a
/// [`TRUNCATED`] header, rather than refused by the producer over and over.
pub fn set_aside_copy<'a>(
    message: &'a BorrowedMessage<'_>,
    reason: &str,
    detail: &str,
    max_bytes: usize,
) -> SetAside<'a> {
    let value = message.payload().unwrap_or_default();
    let key = message.key().map_or(0, <[u8]>::len);
    let original: usize = message.headers().map_or(0, |hs| {
        hs.iter()
            .map(|h| h.key.len() + h.value.map_or(0, <[u8]>::len) + HEADER_FRAMING_BYTES)
            .sum()
    });
    let partition = message.partition().to_string();
    let offset = message.offset().to_string();
    let ours_list = [
        (REASON, reason),
        (ERROR, detail),
        (SOURCE_TOPIC, message.topic()),
        (SOURCE_PARTITION, partition.as_str()),
        (SOURCE_OFFSET, offset.as_str()),
    ];
    // Our headers, and room for the TRUNCATED one.
    let ours: usize = ours_list
        .iter()
        .map(|(k, v)| k.len() + v.len() + HEADER_FRAMING_BYTES)
        .sum::<usize>()
        + TRUNCATED.len()
        + 96;
    let fit = Fit::of(key, value.len(), original, ours, max_bytes);
    let has_original = message.headers().is_some_and(|h| h.count() > 0);
    let mut headers = OwnedHeaders::new();
    if fit.original_headers
        && let Some(hs) = message.headers()
    {
        for h in hs.iter() {
            headers = headers.insert(Header {
                key: h.key,
                value: h.value,
            });
        }
    }
    for (key, value) in ours_list {
        headers = headers.insert(Header {
            key,
            value: Some(value),
        });
    }
    if fit.cuts(value.len(), has_original) {
        let mut what = format!(
            "value {} bytes, kept {}",
            value.len(),
            fit.value_bytes.min(value.len())
        );
        if has_original && !fit.original_headers {
            what.push_str("; original headers dropped");
        }
        headers = headers.insert(Header {
            key: TRUNCATED,
            value: Some(what.as_str()),
        });
    }
    SetAside {
        value: &value[..fit.value_bytes.min(value.len())],
        headers,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_copy_that_fits_is_sent_whole() {
        let fit = Fit::of(10, 5_000, 200, 300, DEFAULT_MAX_MESSAGE_BYTES);
        assert_eq!(
            fit,
            Fit {
                value_bytes: 5_000,
                original_headers: true
            }
        );
        assert!(!fit.cuts(5_000, true));
    }

    #[test]
    fn a_copy_too_big_is_cut_to_fit_key_and_our_headers_first() {
        let max = DEFAULT_MAX_MESSAGE_BYTES;
        let fit = Fit::of(10, 1_040_000, 200, 300, max);
        assert!(fit.cuts(1_040_000, true));
        assert!(fit.original_headers);
        assert_eq!(fit.value_bytes, max - 1_024 - 10 - 300 - 200);
        // Original headers too big to keep: dropped, and the value gets their room.
        let fit = Fit::of(10, 1_040_000, 2_000_000, 300, max);
        assert!(!fit.original_headers);
        assert_eq!(fit.value_bytes, max - 1_024 - 10 - 300);
        // A key bigger than the limit leaves nothing of the value (the producer will
        // refuse the copy, and the bounded retries end the process with the reason).
        assert_eq!(Fit::of(max, 10, 0, 300, max).value_bytes, 0);
    }
}
