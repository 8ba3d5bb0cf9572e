//! Input formats of the events topic, and the Confluent Schema Registry framing that
//! Confluent's serializers (Java, Python, Go, .NET, librdkafka-based clients) put around
//! every record.
//!
//! The framing, as Confluent's documentation and serializers define it:
//!
//! | bytes | what |
//! | --- | --- |
//! | 0 | magic byte, `0x00` |
//! | 1–4 | schema id, big-endian, as the registry assigned it |
//! | protobuf only | message indexes: a zigzag varint count, then that many zigzag varints, the path of the message type in its `.proto` file; the single byte `0x00` stands for `[0]` |
//! | the rest | the payload: the protobuf message or the UTF-8 JSON document |
//!
//! Unframing borrows the payload from the record: no allocation on the accepted path.

use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{ProtoError, Rejection};
use crate::files::Format;

/// How the records on the events topic are written (`counter.input_format`): the
/// contract's protobuf or JSON, bare or inside Confluent Schema Registry framing.
///
/// One key names both the encoding and the framing (rather than a separate `framing` key)
/// so that every value is a real combination a producer writes, and `--input-format`
/// switches both at once. It is a separate type from [`Format`] because framing exists
/// only on input: trendwatch registers no schemas, so it writes no framed records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum InputFormat {
    /// A bare `trendwatch.v1.EngagementEvent` protobuf message per record.
    Protobuf,
    /// A bare JSON object per record, in the contract's JSON form.
    Json,
    /// Confluent framing (magic byte, schema id, message indexes) around the protobuf
    /// message, as Confluent's `ProtobufSerializer` writes it. The message indexes must
    /// name `trendwatch.v1.EngagementEvent`, the first message of
    /// `trendwatch/v1/events.proto` (`[0]`).
    ConfluentProtobuf,
    /// Confluent framing (magic byte, schema id) around the JSON object, as Confluent's
    /// JSON Schema serializer writes it.
    ConfluentJson,
}

impl InputFormat {
    /// Every input format, in a stable order.
    pub const ALL: [InputFormat; 4] = [
        InputFormat::Protobuf,
        InputFormat::Json,
        InputFormat::ConfluentProtobuf,
        InputFormat::ConfluentJson,
    ];

    /// The configuration name (`"protobuf"`, `"json"`, `"confluent-protobuf"`,
    /// `"confluent-json"`).
    pub fn as_str(self) -> &'static str {
        match self {
            InputFormat::Protobuf => "protobuf",
            InputFormat::Json => "json",
            InputFormat::ConfluentProtobuf => "confluent-protobuf",
            InputFormat::ConfluentJson => "confluent-json",
        }
    }

    /// The contract encoding inside the framing.
    pub fn encoding(self) -> Format {
        match self {
            InputFormat::Protobuf | InputFormat::ConfluentProtobuf => Format::Protobuf,
            InputFormat::Json | InputFormat::ConfluentJson => Format::Json,
        }
    }

    /// Whether records carry Confluent Schema Registry framing (and so a schema id).
    pub fn is_confluent(self) -> bool {
        matches!(
            self,
            InputFormat::ConfluentProtobuf | InputFormat::ConfluentJson
        )
    }
}

impl From<Format> for InputFormat {
    /// The bare form of an encoding.
    fn from(f: Format) -> Self {
        match f {
            Format::Protobuf => InputFormat::Protobuf,
            Format::Json => InputFormat::Json,
        }
    }
}

impl FromStr for InputFormat {
    type Err = ProtoError;
    /// Accepts the configuration names, and the short names [`Format`] accepts.
    fn from_str(s: &str) -> Result<Self, ProtoError> {
        match s {
            "confluent-protobuf" => Ok(InputFormat::ConfluentProtobuf),
            "confluent-json" => Ok(InputFormat::ConfluentJson),
            other => other.parse::<Format>().map(InputFormat::from).map_err(|_| {
                ProtoError::Format(format!(
                    "unknown input format {other:?}: use protobuf, json, confluent-protobuf or confluent-json"
                ))
            }),
        }
    }
}

/// The first byte of a Confluent-framed record.
pub const MAGIC_BYTE: u8 = 0x00;

/// Magic byte and schema id: the part of the framing every schema type has.
pub const HEADER_BYTES: usize = 5;

/// The message indexes of `trendwatch.v1.EngagementEvent` in `trendwatch/v1/events.proto`:
/// the first (and only) message of the file.
pub const EVENT_MESSAGE_INDEXES: [i32; 1] = [0];

/// A Confluent-framed record, split: the schema id and the payload it frames (borrowed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConfluentFrame<'a> {
    /// The schema id the producer's serializer registered or looked up.
    pub schema_id: u32,
    /// The protobuf message or JSON document after the framing.
    pub payload: &'a [u8],
}

/// Splits the magic byte and schema id off `bytes` and checks the id against `allowed`
/// (empty: any id). Never panics, whatever the bytes.
///
/// A record that does not start with the magic byte is [`Rejection::NoMagicByte`] — never
/// decoded as if it were bare; one shorter than the header is [`Rejection::BadFraming`];
/// an id outside a non-empty `allowed` is [`Rejection::SchemaIdNotAllowed`].
pub fn unframe_confluent_json<'a>(
    bytes: &'a [u8],
    allowed: &[u32],
) -> Result<ConfluentFrame<'a>, Rejection> {
    let first = bytes.first().copied();
    if first != Some(MAGIC_BYTE) {
        return Err(Rejection::NoMagicByte { first });
    }
    let Some((id, payload)) = bytes.get(1..HEADER_BYTES).zip(bytes.get(HEADER_BYTES..)) else {
        return Err(Rejection::BadFraming(
            "record shorter than the 5-byte header (magic byte, schema id)",
        ));
    };
    let schema_id = u32::from_be_bytes([id[0], id[1], id[2], id[3]]);
    if !allowed.is_empty() && !allowed.contains(&schema_id) {
        return Err(Rejection::SchemaIdNotAllowed(schema_id));
    }
    Ok(ConfluentFrame { schema_id, payload })
}

/// [`unframe_confluent_json`], then the message indexes, which must name
/// `trendwatch.v1.EngagementEvent` ([`EVENT_MESSAGE_INDEXES`], written `0x00` or
/// `0x02 0x00`); the payload is what follows them. Never panics, whatever the bytes.
///
/// Indexes naming another message type are [`Rejection::WrongMessageType`]; a truncated
/// or overlong varint, or a negative count, is [`Rejection::BadFraming`].
pub fn unframe_confluent_protobuf<'a>(
    bytes: &'a [u8],
    allowed: &[u32],
) -> Result<ConfluentFrame<'a>, Rejection> {
    let frame = unframe_confluent_json(bytes, allowed)?;
    // The common case, Confluent's short form of [0]: one zero byte.
    if let Some((&0, payload)) = frame.payload.split_first() {
        return Ok(ConfluentFrame { payload, ..frame });
    }
    let mut rest = frame.payload;
    let count = zigzag_varint(&mut rest)?;
    if count < 0 {
        return Err(Rejection::BadFraming("negative message-index count"));
    }
    // Each index takes at least a byte: a count beyond the record is truncation, and this
    // bounds the loop by the record's length.
    let count = count as usize;
    if count > rest.len() {
        return Err(Rejection::BadFraming("message indexes run past the record"));
    }
    let mut shown = [0i32; 4];
    for slot in 0..count {
        let index = zigzag_varint(&mut rest)?;
        if let Some(s) = shown.get_mut(slot) {
            *s = index;
        }
    }
    if shown[..count.min(shown.len())] == EVENT_MESSAGE_INDEXES {
        return Ok(ConfluentFrame {
            payload: rest,
            ..frame
        });
    }
    Err(Rejection::WrongMessageType(describe_indexes(
        &shown[..count.min(shown.len())],
        count,
    )))
}

/// `[1, 2]`, or `[1, 2, 3, 4, …]` when there are more than shown.
fn describe_indexes(shown: &[i32], count: usize) -> String {
    let mut s = String::from("[");
    for (i, v) in shown.iter().enumerate() {
        if i > 0 {
            s.push_str(", ");
        }
        s.push_str(&v.to_string());
    }
    if count > shown.len() {
        s.push_str(", …");
    }
    s.push(']');
    s
}

/// A zigzag-encoded 32-bit varint, as Confluent's Java `ByteUtils.readVarint` reads it: at
/// most 5 bytes, the value within 32 bits.
fn zigzag_varint(buf: &mut &[u8]) -> Result<i32, Rejection> {
    let mut raw = 0u32;
    for i in 0..5 {
        let Some((&b, rest)) = buf.split_first() else {
            return Err(Rejection::BadFraming("truncated message-index varint"));
        };
        *buf = rest;
        if i == 4 && b > 0x0f {
            return Err(Rejection::BadFraming(
                "message-index varint longer than 32 bits",
            ));
        }
        raw |= u32::from(b & 0x7f) << (7 * i);
        if b < 0x80 {
            return Ok(((raw >> 1) as i32) ^ -((raw & 1) as i32));
        }
    }
    Err(Rejection::BadFraming(
        "message-index varint longer than 32 bits",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(id: u32, indexes: &[u8], payload: &[u8]) -> Vec<u8> {
        let mut v = vec![MAGIC_BYTE];
        v.extend_from_slice(&id.to_be_bytes());
        v.extend_from_slice(indexes);
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn zigzag_varints_decode_like_confluents() {
        for (bytes, want) in [
            (&[0x00][..], 0),
            (&[0x01], -1),
            (&[0x02], 1),
            (&[0x03], -2),
            (&[0xac, 0x02], 150),
            (&[0xfe, 0xff, 0xff, 0xff, 0x0f], i32::MAX),
            (&[0xff, 0xff, 0xff, 0xff, 0x0f], i32::MIN),
        ] {
            let mut b = bytes;
            assert_eq!(zigzag_varint(&mut b), Ok(want), "{bytes:02x?}");
            assert!(b.is_empty());
        }
        for bad in [
            &[0x80][..],
            &[0xff, 0xff, 0xff, 0xff, 0x10],
            &[0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
        ] {
            let mut b = bad;
            assert_eq!(
                zigzag_varint(&mut b).unwrap_err().reason(),
                "bad_framing",
                "{bad:02x?}"
            );
        }
    }

    #[test]
    fn short_and_explicit_forms_of_index_zero_are_the_same_payload() {
        let short = frame(7, &[0x00], b"\x0a\x01e");
        let long = frame(7, &[0x02, 0x00], b"\x0a\x01e");
        for f in [&short, &long] {
            assert_eq!(
                unframe_confluent_protobuf(f, &[]),
                Ok(ConfluentFrame {
                    schema_id: 7,
                    payload: b"\x0a\x01e"
                })
            );
        }
    }

    #[test]
    fn other_message_types_are_named_in_the_rejection() {
        let nested = frame(1, &[0x04, 0x00, 0x02], b"");
        assert_eq!(
            unframe_confluent_protobuf(&nested, &[]),
            Err(Rejection::WrongMessageType("[0, 1]".into()))
        );
        let second = frame(1, &[0x02, 0x02], b"");
        assert_eq!(
            unframe_confluent_protobuf(&second, &[]),
            Err(Rejection::WrongMessageType("[1]".into()))
        );
        let deep = frame(1, &[0x0a, 0, 0, 0, 0, 0], b"");
        assert_eq!(
            unframe_confluent_protobuf(&deep, &[]),
            Err(Rejection::WrongMessageType("[0, 0, 0, 0, …]".into()))
        );
    }

    #[test]
    fn input_formats_parse_and_name_themselves() {
        for f in InputFormat::ALL {
            assert_eq!(f.as_str().parse::<InputFormat>().unwrap(), f);
        }
        assert_eq!("pb".parse::<InputFormat>().unwrap(), InputFormat::Protobuf);
        let err = "avro".parse::<InputFormat>().unwrap_err().to_string();
        assert!(err.contains("confluent-protobuf"), "{err}");
        assert_eq!(InputFormat::ConfluentJson.encoding(), Format::Json);
        assert!(!InputFormat::from(Format::Protobuf).is_confluent());
    }
}
