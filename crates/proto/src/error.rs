//! The proto crate's error types: [`ProtoError`] for files and codecs, [`Rejection`] for the
//! verdict on one incoming event.

/// A failure reading or writing files, or decoding an alert.
#[derive(Debug, thiserror::Error)]
pub enum ProtoError {
    /// Reading or writing failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A file's framing or a file name is wrong.
    #[error("{0}")]
    Format(String),
    /// A message could not be decoded.
    #[error("cannot decode: {0}")]
    Decode(String),
}

impl ProtoError {
    /// Whether trying again could succeed (only some I/O errors).
    pub fn is_retryable(&self) -> bool {
        match self {
            ProtoError::Io { source, .. } => matches!(
                source.kind(),
                std::io::ErrorKind::Interrupted
                    | std::io::ErrorKind::WouldBlock
                    | std::io::ErrorKind::TimedOut
            ),
            _ => false,
        }
    }

    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        ProtoError::Io {
            context: context.into(),
            source,
        }
    }
}

/// The proto crate's result type.
pub type Result<T> = std::result::Result<T, ProtoError>;

/// Why one incoming event was refused. Never fatal: the caller counts it and routes the
/// original bytes to the dead-letter output, and the partition keeps flowing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// Not a well-formed message.
    #[error("undecodable: {0}")]
    Undecodable(String),
    /// A string field is not UTF-8.
    #[error("field {field} is not valid UTF-8")]
    InvalidUtf8 {
        /// The field.
        field: &'static str,
    },
    /// `event_id` is empty or missing.
    #[error("event_id is missing")]
    MissingEventId,
    /// `video_id` is empty or missing.
    #[error("video_id is missing")]
    MissingVideoId,
    /// `kind` is unspecified or not a known kind.
    #[error("unknown event kind {0}")]
    UnknownKind(i32),
    /// `event_time` is before the configured minimum (2000-01-01 by default).
    #[error("event_time {0} is before the earliest accepted time")]
    TimeBeforeMin(i64),
    /// `event_time` is further in the future than the allowed skew.
    #[error("event_time {0} is too far in the future")]
    TimeInFuture(i64),
    /// The message is larger than the configured limit.
    #[error("message of {0} bytes is above the size limit")]
    TooLarge(usize),
    /// An id is longer than the configured limit.
    #[error("field {field} is longer than the id limit")]
    IdTooLong {
        /// The field.
        field: &'static str,
    },
    /// Under a `confluent-*` input format, the record does not start with the magic byte
    /// `0x00`: it is not Confluent-framed (a bare record, say), so it is not decoded.
    #[error("not Confluent Schema Registry framing: {}", describe_first_byte(*.first))]
    NoMagicByte {
        /// The record's first byte; `None` if it is empty.
        first: Option<u8>,
    },
    /// The Confluent framing is cut short or malformed (header, message-index varints).
    #[error("bad Confluent framing: {0}")]
    BadFraming(&'static str),
    /// The framing's schema id is not in `validation.allowed_schema_ids`.
    #[error("schema id {0} is not in validation.allowed_schema_ids")]
    SchemaIdNotAllowed(u32),
    /// The Confluent message indexes name another message type than
    /// `trendwatch.v1.EngagementEvent` (which is `[0]`).
    #[error(
        "message indexes {0} name another message type than trendwatch.v1.EngagementEvent ([0], the first message of trendwatch/v1/events.proto)"
    )]
    WrongMessageType(String),
}

fn describe_first_byte(first: Option<u8>) -> String {
    match first {
        None => "the record is empty".into(),
        Some(0x01) => "magic byte 0x01 (schema GUID) is not supported; frame with the schema id (the serializers' default prefix serializer)".into(),
        Some(b'{') => "the record starts with '{', not the magic byte 0x00 (bare JSON? then counter.input_format = \"json\")".into(),
        Some(b) => format!("the record starts with 0x{b:02x}, not the magic byte 0x00 (a bare record? then counter.input_format without confluent-)"),
    }
}

impl Rejection {
    /// Every reason code, in a stable order (for metrics that must exist before they count).
    pub const ALL_REASONS: &'static [&'static str] = &[
        "undecodable",
        "invalid_utf8",
        "missing_event_id",
        "missing_video_id",
        "unknown_kind",
        "time_before_min",
        "time_in_future",
        "too_large",
        "id_too_long",
        "no_magic_byte",
        "bad_framing",
        "schema_id_not_allowed",
        "wrong_message_type",
    ];

    /// A stable snake_case code, used in dead-letter headers and metric labels.
    pub fn reason(&self) -> &'static str {
        match self {
            Rejection::Undecodable(_) => "undecodable",
            Rejection::InvalidUtf8 { .. } => "invalid_utf8",
            Rejection::MissingEventId => "missing_event_id",
            Rejection::MissingVideoId => "missing_video_id",
            Rejection::UnknownKind(_) => "unknown_kind",
            Rejection::TimeBeforeMin(_) => "time_before_min",
            Rejection::TimeInFuture(_) => "time_in_future",
            Rejection::TooLarge(_) => "too_large",
            Rejection::IdTooLong { .. } => "id_too_long",
            Rejection::NoMagicByte { .. } => "no_magic_byte",
            Rejection::BadFraming(_) => "bad_framing",
            Rejection::SchemaIdNotAllowed(_) => "schema_id_not_allowed",
            Rejection::WrongMessageType(_) => "wrong_message_type",
        }
    }
}
