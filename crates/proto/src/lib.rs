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
//! - [`framing`]: the counter's [`InputFormat`]s, bare or inside Confluent Schema
//!   Registry framing; [`decode_in`] unframes, checks the schema id and decodes.

mod decode;
mod error;
pub mod files;
pub mod framing;
mod record;
mod validate;

pub use decode::{DecodedEvent, decode_event, decode_event_json, kind_value};
pub use error::{ProtoError, Rejection, Result};
pub use framing::InputFormat;
pub use record::{AlertRecord, CandidateRecord, EventRecord, LeaderboardRecord};
pub use validate::{ValidationConfig, event_kind, kind_number};

/// Code generated from `proto/trendwatch/v1`.
#[allow(missing_docs, clippy::all)]
pub mod pb {
    include!(concat!(env!("OUT_DIR"), "/trendwatch.v1.rs"));
}

/// Decodes one record in `format` (an [`InputFormat`], or a file [`files::Format`] for a
/// bare record), after checking the size limit (on the whole record, framing included).
///
/// Under a `confluent-*` format the framing is checked before any decoding: a record
/// without the magic byte is refused, never decoded as bare; the schema id must be in
/// `cfg.allowed_schema_ids` unless that is empty. Borrows from `bytes`; never allocates on
/// the accepted protobuf path; never panics, whatever the bytes.
pub fn decode_in<'a>(
    bytes: &'a [u8],
    format: impl Into<InputFormat>,
    cfg: &ValidationConfig,
) -> std::result::Result<DecodedEvent<'a>, Rejection> {
    if bytes.len() > cfg.max_message_bytes {
        return Err(Rejection::TooLarge(bytes.len()));
    }
    match format.into() {
        InputFormat::Protobuf => decode_event(bytes),
        InputFormat::Json => decode_event_json(bytes),
        framed => decode_framed(bytes, framed, cfg),
    }
}

/// The Confluent arms of [`decode_in`], kept out of line so the bare protobuf path compiles
/// to what it was before framing existed (measured: inlined, they cost it about 5 %).
#[inline(never)]
fn decode_framed<'a>(
    bytes: &'a [u8],
    format: InputFormat,
    cfg: &ValidationConfig,
) -> std::result::Result<DecodedEvent<'a>, Rejection> {
    let allowed = &cfg.allowed_schema_ids;
    match format {
        InputFormat::ConfluentJson => {
            decode_event_json(framing::unframe_confluent_json(bytes, allowed)?.payload)
        }
        _ => decode_event(framing::unframe_confluent_protobuf(bytes, allowed)?.payload),
    }
}
