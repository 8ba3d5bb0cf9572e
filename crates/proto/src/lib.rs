//! trendwatch's wire contract (being written).

use trendwatch_core::{EventKind, EventRef};

/// Code generated from `proto/trendwatch/v1`.
#[allow(missing_docs, clippy::all)]
pub mod pb {
    include!(concat!(env!("OUT_DIR"), "/trendwatch.v1.rs"));
}

/// An owned engagement event, as producers write it (the engine works on [`EventRef`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventRecord {
    /// Unique per event.
    pub event_id: String,
    /// The video engaged with; the Kafka key.
    pub video_id: String,
    /// The video's creator.
    pub creator_id: String,
    /// Who engaged; optional, never logged.
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
}
