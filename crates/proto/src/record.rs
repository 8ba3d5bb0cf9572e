//! Owned records for producers and consumers: [`EventRecord`] and [`AlertRecord`], with
//! their protobuf and JSON encodings.

use prost::Message;
use serde::{Deserialize, Serialize};
use trendwatch_core::{
    Alert, AlertType, Board, BoardEntry, Candidate, CandidateSet, EventKind, EventRef,
};

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
            user_id: self.user_id.as_deref(),
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
        AlertType::RankChanged => pb::AlertType::RankChanged as i32,
    }
}

fn alert_type_of(n: i32) -> Option<AlertType> {
    match pb::AlertType::try_from(n).ok()? {
        pb::AlertType::Trending => Some(AlertType::Trending),
        pb::AlertType::TrendingEnded => Some(AlertType::TrendingEnded),
        pb::AlertType::ViralVelocity => Some(AlertType::ViralVelocity),
        pb::AlertType::ViralVelocityEnded => Some(AlertType::ViralVelocityEnded),
        pb::AlertType::RankChanged => Some(AlertType::RankChanged),
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
            rank: a.rank,
            previous_rank: a.previous_rank,
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
                rank: m.rank,
                previous_rank: m.previous_rank,
            },
        })
    }

    /// Decodes the JSON form.
    pub fn decode_json(bytes: &[u8]) -> Result<Self> {
        serde_json::from_slice(bytes).map_err(|e| ProtoError::Decode(e.to_string()))
    }
}

/// A partition's candidate set as it travels on the candidates topic: the engine's
/// [`CandidateSet`] and where it comes from. Protobuf only (an internal topic).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CandidateRecord {
    /// The events topic of the partition.
    pub source_topic: String,
    /// The partition.
    pub source_partition: i32,
    /// Its best videos for the window.
    pub set: CandidateSet,
}

impl CandidateRecord {
    /// Appends the protobuf encoding to `buf`.
    pub fn encode_protobuf(&self, buf: &mut Vec<u8>) {
        let s = &self.set;
        let m = pb::CandidateSet {
            source_topic: self.source_topic.clone(),
            source_partition: self.source_partition,
            window_start: s.window_start,
            window_end: s.window_end,
            watermark: s.watermark,
            candidates: s
                .candidates
                .iter()
                .map(|c| pb::Candidate {
                    video_id: c.video_id.clone(),
                    creator_id: c.creator_id.clone(),
                    score: c.score,
                    previous_score: c.previous_score,
                    likes: c.likes,
                    first_seen: c.first_seen,
                })
                .collect(),
        };
        let _ = m.encode(buf);
    }

    /// Decodes the protobuf form; a window that ends before it starts is an error.
    pub fn decode_protobuf(bytes: &[u8]) -> Result<Self> {
        let m = pb::CandidateSet::decode(bytes).map_err(|e| ProtoError::Decode(e.to_string()))?;
        if m.window_end <= m.window_start || m.source_partition < 0 {
            return Err(ProtoError::Decode(format!(
                "candidate set with window [{}, {}) of partition {}",
                m.window_start, m.window_end, m.source_partition
            )));
        }
        Ok(Self {
            source_topic: m.source_topic,
            source_partition: m.source_partition,
            set: CandidateSet {
                window_start: m.window_start,
                window_end: m.window_end,
                watermark: m.watermark,
                candidates: m
                    .candidates
                    .into_iter()
                    .map(|c| Candidate {
                        video_id: c.video_id,
                        creator_id: c.creator_id,
                        score: c.score,
                        previous_score: c.previous_score,
                        likes: c.likes,
                        first_seen: c.first_seen,
                    })
                    .collect(),
            },
        })
    }
}

/// A board as it travels on the leaderboard topic: the ranker's [`Board`], its scope (the
/// Kafka key) and the wall-clock `emitted_at`. Its serde form is the contract's JSON.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LeaderboardRecord {
    /// What the board ranks (`"global"`).
    pub scope: String,
    /// The ranker's board.
    #[serde(flatten)]
    pub board: Board,
    /// Wall-clock time (ms) when the board was handed to the output.
    pub emitted_at: i64,
}

impl LeaderboardRecord {
    /// Appends the protobuf encoding to `buf`.
    pub fn encode_protobuf(&self, buf: &mut Vec<u8>) {
        let b = &self.board;
        let m = pb::Leaderboard {
            scope: self.scope.clone(),
            window_start: b.window_start,
            window_end: b.window_end,
            top_k: b.top_k,
            partitions: b.partitions,
            left_out: b.left_out.clone(),
            entries: b
                .entries
                .iter()
                .map(|e| pb::BoardEntry {
                    rank: e.rank,
                    video_id: e.video_id.clone(),
                    creator_id: e.creator_id.clone(),
                    score: e.score,
                    previous_score: e.previous_score,
                    likes_per_min: e.likes_per_min,
                    previous_rank: e.previous_rank,
                })
                .collect(),
            emitted_at: self.emitted_at,
        };
        let _ = m.encode(buf);
    }

    /// The JSON form.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Decodes the protobuf form.
    pub fn decode_protobuf(bytes: &[u8]) -> Result<Self> {
        let m = pb::Leaderboard::decode(bytes).map_err(|e| ProtoError::Decode(e.to_string()))?;
        Ok(Self {
            scope: m.scope,
            emitted_at: m.emitted_at,
            board: Board {
                window_start: m.window_start,
                window_end: m.window_end,
                top_k: m.top_k,
                partitions: m.partitions,
                left_out: m.left_out,
                entries: m
                    .entries
                    .into_iter()
                    .map(|e| BoardEntry {
                        rank: e.rank,
                        video_id: e.video_id,
                        creator_id: e.creator_id,
                        score: e.score,
                        previous_score: e.previous_score,
                        likes_per_min: e.likes_per_min,
                        previous_rank: e.previous_rank,
                    })
                    .collect(),
            },
        })
    }

    /// Decodes the JSON form.
    pub fn decode_json(bytes: &[u8]) -> Result<Self> {
        serde_json::from_slice(bytes).map_err(|e| ProtoError::Decode(e.to_string()))
    }

    /// Decodes whichever form `bytes` is in: JSON if it starts with `{`, else protobuf.
    pub fn decode_any(bytes: &[u8]) -> Result<Self> {
        match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
            Some(b'{') => Self::decode_json(bytes),
            _ => Self::decode_protobuf(bytes),
        }
    }
}
