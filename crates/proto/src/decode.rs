//! Decoding events from bytes without allocating: protobuf by walking the wire format, JSON
//! with borrowed strings where the input has no escapes.

use std::borrow::Cow;

use serde::Deserialize;

use crate::error::Rejection;

/// An event as decoded, before validation. Ids borrow from the input where they can.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DecodedEvent<'a> {
    /// `event_id` (empty if absent).
    pub event_id: Cow<'a, str>,
    /// `video_id` (empty if absent).
    pub video_id: Cow<'a, str>,
    /// `creator_id` (empty if absent).
    pub creator_id: Cow<'a, str>,
    /// `user_id`, if present.
    pub user_id: Option<Cow<'a, str>>,
    /// The raw `kind` value, so an unknown one can be reported.
    pub kind: i32,
    /// `event_time`, ms since the epoch.
    pub event_time: i64,
}

const WIRE_VARINT: u64 = 0;
const WIRE_I64: u64 = 1;
const WIRE_LEN: u64 = 2;
const WIRE_I32: u64 = 5;

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

fn undecodable(what: &str) -> Rejection {
    Rejection::Undecodable(what.to_string())
}

impl<'a> Reader<'a> {
    #[inline(always)]
    fn varint(&mut self) -> Result<u64, Rejection> {
        // Keys and lengths of short strings are one byte: take that path first.
        if let Some(&b) = self.buf.get(self.pos)
            && b < 0x80
        {
            self.pos += 1;
            return Ok(u64::from(b));
        }
        self.varint_slow()
    }

    #[inline(never)]
    fn varint_slow(&mut self) -> Result<u64, Rejection> {
        let mut value = 0u64;
        for i in 0..10 {
            let Some(&b) = self.buf.get(self.pos) else {
                return Err(undecodable("truncated varint"));
            };
            self.pos += 1;
            if i == 9 && b > 1 {
                return Err(undecodable("varint overflows 64 bits"));
            }
            value |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                return Ok(value);
            }
        }
        Err(undecodable("varint longer than 10 bytes"))
    }

    #[inline(always)]
    fn bytes(&mut self) -> Result<&'a [u8], Rejection> {
        let len = self.varint()?;
        let len = usize::try_from(len).map_err(|_| undecodable("length out of range"))?;
        let end = self
            .pos
            .checked_add(len)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| undecodable("truncated length-delimited field"))?;
        let out = &self.buf[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn skip(&mut self, n: usize) -> Result<(), Rejection> {
        if self.buf.len() - self.pos < n {
            return Err(undecodable("truncated fixed-width field"));
        }
        self.pos += n;
        Ok(())
    }
}

#[inline]
fn utf8<'a>(bytes: &'a [u8], field: &'static str) -> Result<Cow<'a, str>, Rejection> {
    std::str::from_utf8(bytes)
        .map(Cow::Borrowed)
        .map_err(|_| Rejection::InvalidUtf8 { field })
}

/// Decodes a protobuf `trendwatch.v1.EngagementEvent` without allocating. Unknown fields
/// are skipped (newer producers are accepted); for a repeated scalar the last value wins,
/// as in every protobuf implementation. Never panics, whatever the bytes.
pub fn decode_event(bytes: &[u8]) -> Result<DecodedEvent<'_>, Rejection> {
    let mut r = Reader { buf: bytes, pos: 0 };
    let mut ev = DecodedEvent::default();
    while r.pos < bytes.len() {
        let key = r.varint()?;
        let field = key >> 3;
        let wire = key & 7;
        match (field, wire) {
            (1, WIRE_LEN) => ev.event_id = utf8(r.bytes()?, "event_id")?,
            (2, WIRE_LEN) => ev.video_id = utf8(r.bytes()?, "video_id")?,
            (3, WIRE_LEN) => ev.creator_id = utf8(r.bytes()?, "creator_id")?,
            (4, WIRE_LEN) => ev.user_id = Some(utf8(r.bytes()?, "user_id")?),
            // Enums and int64 are varints; negative values are sign-extended to 64 bits.
            (5, WIRE_VARINT) => ev.kind = r.varint()? as i64 as i32,
            (6, WIRE_VARINT) => ev.event_time = r.varint()? as i64,
            (0, _) => return Err(undecodable("field number 0")),
            (_, WIRE_VARINT) => {
                r.varint()?;
            }
            (_, WIRE_I64) => r.skip(8)?,
            (_, WIRE_LEN) => {
                r.bytes()?;
            }
            (_, WIRE_I32) => r.skip(4)?,
            _ => return Err(undecodable("unsupported wire type")),
        }
    }
    Ok(ev)
}

/// The JSON form of an event, borrowing strings where the input has no escapes.
#[derive(Deserialize)]
struct JsonEvent<'a> {
    #[serde(borrow, default)]
    event_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    video_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    creator_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    user_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    kind: Option<JsonKind<'a>>,
    #[serde(default)]
    event_time: Option<i64>,
}

/// `kind` as its name or its number. Read by its own visitor, not as an untagged enum:
/// serde buffers an untagged value before trying each variant (5 % of decoding a whole
/// JSON event, `cargo bench -p trendwatch-proto --bench decode -- /json`). A number past
/// `i64` is an unknown kind, as one past `i32` is.
enum JsonKind<'a> {
    Name(Cow<'a, str>),
    Number(i64),
}

impl<'de: 'a, 'a> Deserialize<'de> for JsonKind<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Kind<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for Kind<'a> {
            type Value = JsonKind<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an event kind's name or number")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(JsonKind::Name(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(JsonKind::Name(Cow::Owned(v.to_owned())))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
                Ok(JsonKind::Number(v))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
                Ok(JsonKind::Number(i64::try_from(v).unwrap_or(-1)))
            }
        }
        d.deserialize_any(Kind(std::marker::PhantomData))
    }
}

/// The protobuf value of a kind name: `"LIKE"` or `"EVENT_KIND_LIKE"`; 0 if unknown.
pub fn kind_value(name: &str) -> i32 {
    let name = name.strip_prefix("EVENT_KIND_").unwrap_or(name);
    match name {
        "VIEW" => 1,
        "LIKE" => 2,
        "UNLIKE" => 3,
        "SHARE" => 4,
        "COMMENT" => 5,
        _ => 0,
    }
}

/// Decodes the JSON form of an event: one object, proto field names in snake_case, `kind`
/// as its name (`"LIKE"`, or `"EVENT_KIND_LIKE"`, or the number), `event_time` as integer
/// milliseconds. Unknown keys are ignored. Never panics, whatever the bytes.
pub fn decode_event_json(bytes: &[u8]) -> Result<DecodedEvent<'_>, Rejection> {
    let j: JsonEvent<'_> =
        serde_json::from_slice(bytes).map_err(|e| Rejection::Undecodable(e.to_string()))?;
    let kind = match j.kind {
        None => 0,
        Some(JsonKind::Name(n)) => match kind_value(&n) {
            0 => -1,
            k => k,
        },
        Some(JsonKind::Number(n)) => i32::try_from(n).unwrap_or(-1),
    };
    Ok(DecodedEvent {
        event_id: j.event_id.unwrap_or_default(),
        video_id: j.video_id.unwrap_or_default(),
        creator_id: j.creator_id.unwrap_or_default(),
        user_id: j.user_id,
        kind,
        event_time: j.event_time.unwrap_or(0),
    })
}
