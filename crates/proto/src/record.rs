//! Owned records for producers and consumers: [`EventRecord`] and [`AlertRecord`], with
//! their protobuf and JSON encodings.

use prost::Message;
use serde::{Deserialize, Serialize};
use trendwatch_core::{Alert, AlertType, EventKind, EventRef};

use crate::decode::{DecodedEvent, decode_event, decode_event_json};
use crate::error::{ProtoError, Result};
use crate::pb;
use crate::validate::{event_kind, kind_number};

/// An owned engagement event, as producers write it (the engine works on [`EventRef`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventRecord {
    /// Unique per event.
    pub event_id: String,
    /// The video engaged with; the Kafka key.
    pub video_id: String,
    /// The video's creator.
    pub creator_id: String,
    /// Who engaged; optional, never logged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// What happened.
    pub kind: EventKind,
    /// Event time, ms since the epoch.
    pub event_time: i64,
}

impl EventRecord {
    /// Borrows the record as the engine's view of it.
    pub fn as_ref(&self) -> EventRef<'_> {
        EventRef {
            event_id: &self.event_id,
            video_id: &self.video_id,
            creator_id: &self.creator_id,
            kind: self.kind,
            event_time: self.event_time,
        }
    }

    /// The generated protobuf message.
    pub fn to_pb(&self) -> pb::EngagementEvent {
        pb::EngagementEvent {
            event_id: self.event_id.clone(),
            video_id: self.video_id.clone(),
            creator_id: self.creator_id.clone(),
            user_id: self.user_id.clone(),
            kind: kind_number(self.kind),
            event_time: self.event_time,
        }
    }

    /// Appends the protobuf encoding (not length-delimited) to `buf`.
    pub fn encode_protobuf(&self, buf: &mut Vec<u8>) {
        // Encoding into a Vec only fails when out of capacity, which a Vec never is.
        let _ = self.to_pb().encode(buf);
    }

    /// The JSON form: one object, proto field names, kind by name, integer ms.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// An owned copy of a decoded event whose kind is known.
    pub fn from_decoded(ev: &DecodedEvent<'_>) -> Option<Self> {
        Some(Self {
            event_id: ev.event_id.to_string(),
            video_id: ev.video_id.to_string(),
            creator_id: ev.creator_id.to_string(),
            user_id: ev.user_id.as_ref().map(|u| u.to_string()),
            kind: event_kind(ev.kind)?,
            event_time: ev.event_time,
        })
    }

    /// Decodes either form into an owned record (for tools and tests, not the hot path).
    pub fn decode(bytes: &[u8], json: bool) -> Result<Self> {
        let ev = if json {
            decode_event_json(bytes)
        } else {
            decode_event(bytes)
        }
        .map_err(|e| ProtoError::Decode(e.to_string()))?;
        Self::from_decoded(&ev)
            .ok_or_else(|| ProtoError::Decode(format!("unknown kind {}", ev.kind)))
    }
}

/// An alert as it travels: the engine's [`Alert`] plus the wall-clock `emitted_at`. Its
/// serde form is the contract's JSON (proto field names, type by name, integer ms).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AlertRecord {
    /// The engine's decision, every field of which is a field of the contract.
    #[serde(flatten)]
    pub alert: Alert,
    /// Wall-clock time (ms) when the alert was handed to the output.
    pub emitted_at: i64,
}

fn alert_type_number(t: AlertType) -> i32 {
    match t {
        AlertType::Trending => pb::AlertType::Trending as i32,
        AlertType::TrendingEnded => pb::AlertType::TrendingEnded as i32,
        AlertType::ViralVelocity => pb::AlertType::ViralVelocity as i32,
        AlertType::ViralVelocityEnded => pb::AlertType::ViralVelocityEnded as i32,
    }
}

fn alert_type_of(n: i32) -> Option<AlertType> {
    match pb::AlertType::try_from(n).ok()? {
        pb::AlertType::Trending => Some(AlertType::Trending),
        pb::AlertType::TrendingEnded => Some(AlertType::TrendingEnded),
        pb::AlertType::ViralVelocity => Some(AlertType::ViralVelocity),
        pb::AlertType::ViralVelocityEnded => Some(AlertType::ViralVelocityEnded),
        pb::AlertType::Unspecified => None,
    }
}

impl AlertRecord {
    /// The record of an engine alert handed to an output at wall time `emitted_at`.
    pub fn from_alert(a: &Alert, emitted_at: i64) -> Self {
        Self {
            alert: a.clone(),
            emitted_at,
        }
    }

    /// The generated protobuf message.
    pub fn to_pb(&self) -> pb::Alert {
        let a = &self.alert;
        pb::Alert {
            alert_id: a.alert_id.clone(),
            video_id: a.video_id.clone(),
            creator_id: a.creator_id.clone(),
            r#type: alert_type_number(a.alert_type),
            tier: a.tier,
            window_start: a.window_start,
            window_end: a.window_end,
            count: a.count,
            previous_count: a.previous_count,
            rate_per_min: a.rate_per_min,
            baseline: a.baseline,
            baseline_stddev: a.baseline_stddev,
            z_score: a.z_score,
            ratio: a.ratio,
            threshold: a.threshold,
            first_seen: a.first_seen,
            episode_start: a.episode_start,
            detected_at: a.detected_at,
            emitted_at: self.emitted_at,
            explanation: a.explanation.clone(),
        }
    }

    /// Appends the protobuf encoding (not length-delimited) to `buf`.
    pub fn encode_protobuf(&self, buf: &mut Vec<u8>) {
        let _ = self.to_pb().encode(buf);
    }

    /// The JSON form.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Decodes the protobuf form; an unspecified or unknown type is an error.
    pub fn decode_protobuf(bytes: &[u8]) -> Result<Self> {
        let m = pb::Alert::decode(bytes).map_err(|e| ProtoError::Decode(e.to_string()))?;
        let alert_type = alert_type_of(m.r#type)
            .ok_or_else(|| ProtoError::Decode(format!("unknown alert type {}", m.r#type)))?;
        Ok(Self {
            emitted_at: m.emitted_at,
            alert: Alert {
                alert_id: m.alert_id,
                video_id: m.video_id,
                creator_id: m.creator_id,
                alert_type,
                tier: m.tier,
                window_start: m.window_start,
                window_end: m.window_end,
                count: m.count,
                previous_count: m.previous_count,
                rate_per_min: m.rate_per_min,
                baseline: m.baseline,
                baseline_stddev: m.baseline_stddev,
                z_score: m.z_score,
                ratio: m.ratio,
                threshold: m.threshold,
                first_seen: m.first_seen,
                episode_start: m.episode_start,
                detected_at: m.detected_at,
                explanation: m.explanation,
            },
        })
    }

    /// Decodes the JSON form.
    pub fn decode_json(bytes: &[u8]) -> Result<Self> {
        serde_json::from_slice(bytes).map_err(|e| ProtoError::Decode(e.to_string()))
    }
}
