//! trendwatch's wire contract.
//!
//! - [`pb`]: code generated from `proto/trendwatch/v1` (protox + prost-build, no protoc).
//! - [`decode_event`] / [`decode_event_json`]: events from bytes into a [`DecodedEvent`]
//!   that borrows its ids (the protobuf path walks the wire format and never allocates);
//!   [`DecodedEvent::validate`] turns it into the engine's [`trendwatch_core::EventRef`] or
//!   a [`Rejection`] with a stable reason code.
//! - [`EventRecord`] and [`AlertRecord`]: owned records with both encodings;
//!   [`CandidateRecord`] (the counters' proposals to the ranker, protobuf only) and
//!   [`LeaderboardRecord`] (the ranker's boards, both encodings).
//! - [`files`]: event and alert files in both forms of the contract.

mod decode;
mod error;
pub mod files;
mod record;
mod validate;

pub use decode::{DecodedEvent, decode_event, decode_event_json, kind_value};
pub use error::{ProtoError, Rejection, Result};
pub use record::{AlertRecord, CandidateRecord, EventRecord, LeaderboardRecord};
pub use validate::{ValidationConfig, event_kind, kind_number};

/// Code generated from `proto/trendwatch/v1`.
#[allow(missing_docs, clippy::all)]
pub mod pb {
    include!(concat!(env!("OUT_DIR"), "/trendwatch.v1.rs"));
}

/// Decodes `bytes` in `format`, after checking the size limit.
pub fn decode_in<'a>(
    bytes: &'a [u8],
    format: files::Format,
    cfg: &ValidationConfig,
) -> std::result::Result<DecodedEvent<'a>, Rejection> {
    if bytes.len() > cfg.max_message_bytes {
        return Err(Rejection::TooLarge(bytes.len()));
    }
    match format {
        files::Format::Protobuf => decode_event(bytes),
        files::Format::Json => decode_event_json(bytes),
    }
}
