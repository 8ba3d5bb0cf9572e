//! `trendwatch alerts tail`: follows the alert topic and prints each alert readably or as
//! NDJSON.

use std::io::Write;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;
use trendwatch_config::Config;
use trendwatch_core::AlertType;
use trendwatch_proto::AlertRecord;

use crate::client::{partition_count, reader_config};
use crate::error::{Result, RuntimeError};

/// What to show and for how long.
#[derive(Clone, Debug, Default)]
pub struct TailOptions {
    /// Alert topic.
    pub topic: String,
    /// Start at the oldest alert instead of the next new one.
    pub from_beginning: bool,
    /// One JSON object per line (the contract's JSON form) instead of a table line.
    pub json: bool,
    /// Colour the table lines.
    pub color: bool,
    /// Only these types (all when empty).
    pub types: Vec<AlertType>,
    /// Only this video.
    pub video: Option<String>,
    /// Stop after this many alerts.
    pub max: Option<u64>,
    /// Stop after this long without a new alert.
    pub idle_exit: Option<Duration>,
}

/// Decodes an alert record in either form of the contract (JSON starts with `{`).
pub fn decode_alert(bytes: &[u8]) -> Option<AlertRecord> {
    if bytes.first() == Some(&b'{') {
        AlertRecord::decode_json(bytes).ok()
    } else {
        AlertRecord::decode_protobuf(bytes).ok()
    }
}

/// One readable line: time, type, tier, video, the numbers that fired it, the sentence.
pub fn table_line(a: &AlertRecord, color: bool) -> String {
    let x = &a.alert;
    let when = readable_time(x.detected_at);
    let kind = format!("{:<20}", x.alert_type.as_str());
    let kind = if !color {
        kind
    } else {
        let code = match x.alert_type {
            AlertType::ViralVelocity => "1;31",
            AlertType::Trending => "1;33",
            AlertType::RankChanged => "1;36",
            AlertType::ViralVelocityEnded | AlertType::TrendingEnded => "2",
        };
        format!("\x1b[{code}m{kind}\x1b[0m")
    };
    if x.rank > 0 || x.previous_rank > 0 {
        // The ranker's alerts: a place on the global board, not a multiple of a baseline.
        let place = if x.rank > 0 {
            format!("rank #{}", x.rank)
        } else {
            format!("out (was #{})", x.previous_rank)
        };
        return format!(
            "{when} {kind} {place:<14} {:<14} score {:>7}  {}",
            x.video_id, x.count, x.explanation
        );
    }
    format!(
        "{when} {kind} tier {} {:<14} count {:>7} ({:>6.1}x baseline, z {:>6.1})  {}",
        x.tier, x.video_id, x.count, x.ratio, x.z_score, x.explanation
    )
}

/// RFC 3339 for a time humantime can print (years 1970 to 9999), else the raw
/// milliseconds: an alert from a hostile producer must not stop the tail.
pub(crate) fn readable_time(ms: i64) -> String {
    /// 9999-12-31T23:59:59.999Z, the last instant RFC 3339 has four digits for.
    const LAST_MS: i64 = 253_402_300_799_999;
    if (0..=LAST_MS).contains(&ms) {
        humantime::format_rfc3339_seconds(
            std::time::UNIX_EPOCH + Duration::from_millis(ms.unsigned_abs()),
        )
        .to_string()
    } else {
        format!("@{ms}ms")
    }
}

/// Follows the alert topic, writing matching alerts to `out`, until `shutdown`, `max` or
/// `idle_exit`. Returns how many alerts were written.
pub fn tail(
    config: &Config,
    options: &TailOptions,
    out: &mut dyn Write,
    shutdown: &CancellationToken,
) -> Result<u64> {
    let consumer: BaseConsumer = reader_config(config, "alerts-tail")
        .create()
        .map_err(|e| RuntimeError::kafka("creating the alert reader", e))?;
    let partitions = partition_count(&consumer, &options.topic)?.ok_or_else(|| {
        RuntimeError::Config(format!("alert topic {} does not exist", options.topic))
    })?;
    let start = if options.from_beginning {
        Offset::Beginning
    } else {
        Offset::End
    };
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(&options.topic, p, start)
            .map_err(|e| RuntimeError::kafka("assigning the alert topic", e))?;
    }
    consumer
        .assign(&tpl)
        .map_err(|e| RuntimeError::kafka("assigning the alert topic", e))?;
    let mut shown = 0u64;
    let mut last = Instant::now();
    let io = |e: std::io::Error| RuntimeError::Io {
        context: "writing alerts".into(),
        source: e,
    };
    while !shutdown.is_cancelled() && options.max.is_none_or(|m| shown < m) {
        if options.idle_exit.is_some_and(|d| last.elapsed() >= d) {
            break;
        }
        let Some(polled) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let message = polled.map_err(|e| RuntimeError::kafka("reading alerts", e))?;
        last = Instant::now();
        let Some(record) = decode_alert(message.payload().unwrap_or_default()) else {
            writeln!(
                out,
                "# partition {} offset {}: not an alert record",
                message.partition(),
                message.offset()
            )
            .map_err(io)?;
            continue;
        };
        if !options.types.is_empty() && !options.types.contains(&record.alert.alert_type) {
            continue;
        }
        if options
            .video
            .as_ref()
            .is_some_and(|v| *v != record.alert.video_id)
        {
            continue;
        }
        let line = if options.json {
            record.to_json()
        } else {
            table_line(&record, options.color)
        };
        writeln!(out, "{line}").map_err(io)?;
        out.flush().map_err(io)?;
        shown += 1;
    }
    Ok(shown)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_alert_time_prints_without_a_panic() {
        assert_eq!(readable_time(0), "1970-01-01T00:00:00Z");
        assert_eq!(readable_time(253_402_300_799_999), "9999-12-31T23:59:59Z");
        // Found by the decode_alert fuzz target: year 10000 and beyond made humantime panic.
        assert_eq!(readable_time(253_402_300_800_000), "@253402300800000ms");
        assert_eq!(readable_time(i64::MAX), format!("@{}ms", i64::MAX));
        assert_eq!(readable_time(-1), "@-1ms");
    }

    #[test]
    fn the_fuzz_input_that_crashed_table_line_now_prints() {
        // base64 IAGQAYC4/5D9zjk= from fuzz/README.md.
        let bytes = [
            0x20, 0x01, 0x90, 0x01, 0x80, 0xb8, 0xff, 0x90, 0xfd, 0xce, 0x39,
        ];
        let record = decode_alert(&bytes).expect("the crashing input decodes");
        let line = table_line(&record, false);
        assert!(line.contains("ms "), "{line}");
    }
}
