//! Validation of decoded events: what the engine may count.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use trendwatch_core::{EventKind, EventRef};

use crate::decode::DecodedEvent;
use crate::error::Rejection;

/// Limits an incoming event must respect.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ValidationConfig {
    /// Largest accepted message, in bytes.
    pub max_message_bytes: usize,
    /// Longest accepted id (event, video, creator, user), in bytes.
    pub max_id_bytes: usize,
    /// How far past the wall clock an event time may lie.
    #[serde(with = "humantime_serde")]
    pub max_future_skew: Duration,
    /// Earliest accepted event time, ms since the epoch (2000-01-01 by default).
    pub min_event_time_ms: i64,
    /// Under a `confluent-*` `counter.input_format`: the schema registry ids a record's
    /// framing may carry; a record with another id is refused (reason
    /// `schema_id_not_allowed`). Empty (the default): any id is accepted and the id is
    /// ignored. It sits here, beside the other limits on what is accepted, because the
    /// counter and `replay` both check records against this section.
    pub allowed_schema_ids: Vec<u32>,
}

impl Default for ValidationConfig {
    fn default() -> Self {
        Self {
            max_message_bytes: 64 * 1024,
            max_id_bytes: 256,
            max_future_skew: Duration::from_secs(5 * 60),
            min_event_time_ms: 946_684_800_000,
            allowed_schema_ids: Vec::new(),
        }
    }
}

impl ValidationConfig {
    /// Every problem with the limits, each naming its key.
    pub fn validate(&self) -> Result<(), Vec<String>> {
        let mut errors = Vec::new();
        if self.max_message_bytes < 64 {
            errors.push("validation.max_message_bytes: must be at least 64".to_string());
        }
        if self.max_id_bytes == 0 {
            errors.push("validation.max_id_bytes: must be at least 1".to_string());
        }
        if self.min_event_time_ms < 0 {
            errors.push("validation.min_event_time_ms: must not be before 1970".to_string());
        }
        for id in &self.allowed_schema_ids {
            if *id == 0 || *id > i32::MAX as u32 {
                errors.push(format!(
                    "validation.allowed_schema_ids: {id} is not a schema registry id (ids are from 1 to {})",
                    i32::MAX
                ));
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

/// The engine's kind for a protobuf kind value, if it is a known one.
pub fn event_kind(value: i32) -> Option<EventKind> {
    match value {
        1 => Some(EventKind::View),
        2 => Some(EventKind::Like),
        3 => Some(EventKind::Unlike),
        4 => Some(EventKind::Share),
        5 => Some(EventKind::Comment),
        _ => None,
    }
}

/// The protobuf value of an engine kind.
pub fn kind_number(kind: EventKind) -> i32 {
    match kind {
        EventKind::View => 1,
        EventKind::Like => 2,
        EventKind::Unlike => 3,
        EventKind::Share => 4,
        EventKind::Comment => 5,
    }
}

impl DecodedEvent<'_> {
    /// Checks the event against `cfg` with the wall clock at `now_ms`, returning the engine's
    /// view of it (borrowing this event's ids) or why it is refused.
    pub fn validate(&self, now_ms: i64, cfg: &ValidationConfig) -> Result<EventRef<'_>, Rejection> {
        if self.event_id.is_empty() {
            return Err(Rejection::MissingEventId);
        }
        if self.video_id.is_empty() {
            return Err(Rejection::MissingVideoId);
        }
        let too_long = |s: &str| s.len() > cfg.max_id_bytes;
        for (field, value) in [
            ("event_id", self.event_id.as_ref()),
            ("video_id", self.video_id.as_ref()),
            ("creator_id", self.creator_id.as_ref()),
            ("user_id", self.user_id.as_deref().unwrap_or("")),
        ] {
            if too_long(value) {
                return Err(Rejection::IdTooLong { field });
            }
        }
        let kind = event_kind(self.kind).ok_or(Rejection::UnknownKind(self.kind))?;
        if self.event_time < cfg.min_event_time_ms {
            return Err(Rejection::TimeBeforeMin(self.event_time));
        }
        let skew = i64::try_from(cfg.max_future_skew.as_millis()).unwrap_or(i64::MAX);
        if self.event_time > now_ms.saturating_add(skew) {
            return Err(Rejection::TimeInFuture(self.event_time));
        }
        Ok(EventRef {
            event_id: &self.event_id,
            video_id: &self.video_id,
            creator_id: &self.creator_id,
            kind,
            event_time: self.event_time,
            user_id: self.user_id.as_deref(),
        })
    }
}
