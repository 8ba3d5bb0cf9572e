//! Event and alert files in the contract's two forms: `.pb` is a sequence of protobuf
//! messages each preceded by its length as a varint (prost's `encode_length_delimited`),
//! `.jsonl`/`.ndjson`/`.json` is one JSON object per line.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::Path;
use std::str::FromStr;

use crate::error::{ProtoError, Result};
use crate::record::{AlertRecord, EventRecord};

/// Largest record a file reader accepts; a longer frame is corruption, not a record.
pub const MAX_RECORD_BYTES: usize = 16 * 1024 * 1024;

/// The two forms of the contract (`"protobuf"` or `"json"` in configuration).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Protobuf (length-delimited in files).
    Protobuf,
    /// JSON (one object per line in files).
    Json,
}

impl Format {
    /// The form a file name implies: `.pb` → protobuf; `.jsonl`, `.ndjson`, `.json` → JSON.
    pub fn from_path(path: &Path) -> Result<Self> {
        match path.extension().and_then(|e| e.to_str()) {
            Some("pb") => Ok(Format::Protobuf),
            Some("jsonl" | "ndjson" | "json") => Ok(Format::Json),
            _ => Err(ProtoError::Format(format!(
                "{}: cannot tell the format from the name; use .pb (length-delimited protobuf) or .jsonl/.ndjson (JSON lines)",
                path.display()
            ))),
        }
    }
}

impl Format {
    /// The configuration name of the form.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Protobuf => "protobuf",
            Format::Json => "json",
        }
    }
}

impl FromStr for Format {
    type Err = ProtoError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "protobuf" | "pb" | "proto" => Ok(Format::Protobuf),
            "json" | "jsonl" | "ndjson" => Ok(Format::Json),
            other => Err(ProtoError::Format(format!(
                "unknown format {other:?}: use protobuf or json"
            ))),
        }
    }
}

/// Reads raw records from a file, reusing one buffer: no allocation per record.
pub struct RecordReader<R> {
    input: R,
    format: Format,
    buf: Vec<u8>,
    offset: u64,
}

impl RecordReader<BufReader<File>> {
    /// Opens `path`, with the format its name implies.
    pub fn open(path: &Path) -> Result<Self> {
        let format = Format::from_path(path)?;
        Self::open_as(path, format)
    }

    /// Opens `path` as `format`.
    pub fn open_as(path: &Path, format: Format) -> Result<Self> {
        let file = File::open(path)
            .map_err(|e| ProtoError::io(format!("opening {}", path.display()), e))?;
        Ok(Self::new(BufReader::with_capacity(1 << 20, file), format))
    }
}

impl<R: BufRead> RecordReader<R> {
    /// Reads records of `format` from `input`.
    pub fn new(input: R, format: Format) -> Self {
        Self {
            input,
            format,
            buf: Vec::with_capacity(512),
            offset: 0,
        }
    }

    /// The next record's bytes, or `None` at the end. A truncated or oversized frame is an
    /// error naming its byte offset.
    pub fn next_record(&mut self) -> Result<Option<&[u8]>> {
        match self.format {
            Format::Protobuf => self.next_frame(),
            Format::Json => self.next_line(),
        }
    }

    fn next_frame(&mut self) -> Result<Option<&[u8]>> {
        let at = self.offset;
        let mut len: u64 = 0;
        for i in 0..10 {
            let mut byte = [0u8; 1];
            match self.input.read(&mut byte) {
                Ok(0) if i == 0 => return Ok(None),
                Ok(0) => {
                    return Err(ProtoError::Format(format!(
                        "truncated length prefix at byte {at}"
                    )));
                }
                Ok(_) => {}
                Err(e) => return Err(ProtoError::io(format!("reading at byte {at}"), e)),
            }
            self.offset += 1;
            len |= u64::from(byte[0] & 0x7f) << (7 * i);
            if byte[0] < 0x80 {
                break;
            }
            if i == 9 {
                return Err(ProtoError::Format(format!(
                    "bad length prefix at byte {at}"
                )));
            }
        }
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        if len > MAX_RECORD_BYTES {
            return Err(ProtoError::Format(format!(
                "record of {len} bytes at byte {at} is above the {MAX_RECORD_BYTES}-byte limit"
            )));
        }
        self.buf.resize(len, 0);
        self.input.read_exact(&mut self.buf).map_err(|e| {
            ProtoError::Format(format!("truncated record of {len} bytes at byte {at}: {e}"))
        })?;
        self.offset += len as u64;
        Ok(Some(&self.buf))
    }

    fn next_line(&mut self) -> Result<Option<&[u8]>> {
        loop {
            self.buf.clear();
            let n = (&mut self.input)
                .take(MAX_RECORD_BYTES as u64 + 1)
                .read_until(b'\n', &mut self.buf)
                .map_err(|e| ProtoError::io(format!("reading at byte {}", self.offset), e))?;
            if n == 0 {
                return Ok(None);
            }
            if n > MAX_RECORD_BYTES {
                return Err(ProtoError::Format(format!(
                    "line at byte {} is above the {MAX_RECORD_BYTES}-byte limit",
                    self.offset
                )));
            }
            self.offset += n as u64;
            while matches!(self.buf.last(), Some(b'\n' | b'\r')) {
                self.buf.pop();
            }
            if !self.buf.iter().all(u8::is_ascii_whitespace) {
                return Ok(Some(&self.buf));
            }
        }
    }
}

/// Writes records in one form, framing each.
struct FramedWriter {
    out: BufWriter<Box<dyn Write + Send>>,
    format: Format,
    scratch: Vec<u8>,
}

impl FramedWriter {
    fn create(path: &Path) -> Result<Self> {
        let format = Format::from_path(path)?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| ProtoError::io(format!("creating {}", dir.display()), e))?;
        }
        let file = File::create(path)
            .map_err(|e| ProtoError::io(format!("creating {}", path.display()), e))?;
        Ok(Self::new(Box::new(file), format))
    }

    fn new(out: Box<dyn Write + Send>, format: Format) -> Self {
        Self {
            out: BufWriter::with_capacity(1 << 20, out),
            format,
            scratch: Vec::with_capacity(256),
        }
    }

    fn write(
        &mut self,
        encode_pb: impl FnOnce(&mut Vec<u8>),
        json: impl FnOnce() -> String,
    ) -> Result<()> {
        let res = match self.format {
            Format::Protobuf => {
                self.scratch.clear();
                encode_pb(&mut self.scratch);
                let mut len = self.scratch.len() as u64;
                let mut prefix = [0u8; 10];
                let mut n = 0;
                loop {
                    let b = (len & 0x7f) as u8;
                    len >>= 7;
                    if len == 0 {
                        prefix[n] = b;
                        n += 1;
                        break;
                    }
                    prefix[n] = b | 0x80;
                    n += 1;
                }
                self.out
                    .write_all(&prefix[..n])
                    .and_then(|_| self.out.write_all(&self.scratch))
            }
            Format::Json => {
                let line = json();
                self.out
                    .write_all(line.as_bytes())
                    .and_then(|_| self.out.write_all(b"\n"))
            }
        };
        res.map_err(|e| ProtoError::io("writing a record", e))
    }

    fn finish(mut self) -> Result<()> {
        self.out.flush().map_err(|e| ProtoError::io("flushing", e))
    }
}

/// Writes an event file.
pub struct EventFileWriter(FramedWriter);

impl EventFileWriter {
    /// Creates `path` (and its folder), in the form its name implies.
    pub fn create(path: &Path) -> Result<Self> {
        FramedWriter::create(path).map(Self)
    }

    /// Writes to any output in `format`.
    pub fn new(out: Box<dyn Write + Send>, format: Format) -> Self {
        Self(FramedWriter::new(out, format))
    }

    /// Appends one event.
    pub fn write(&mut self, e: &EventRecord) -> Result<()> {
        self.0.write(|b| e.encode_protobuf(b), || e.to_json())
    }

    /// Flushes; the file is complete once this returns.
    pub fn finish(self) -> Result<()> {
        self.0.finish()
    }
}

/// Writes an alert file.
pub struct AlertFileWriter(FramedWriter);

impl AlertFileWriter {
    /// Creates `path` (and its folder), in the form its name implies.
    pub fn create(path: &Path) -> Result<Self> {
        FramedWriter::create(path).map(Self)
    }

    /// Writes to any output in `format`.
    pub fn new(out: Box<dyn Write + Send>, format: Format) -> Self {
        Self(FramedWriter::new(out, format))
    }

    /// Appends one alert.
    pub fn write(&mut self, a: &AlertRecord) -> Result<()> {
        self.0.write(|b| a.encode_protobuf(b), || a.to_json())
    }

    /// Flushes; the file is complete once this returns.
    pub fn finish(self) -> Result<()> {
        self.0.finish()
    }
}

/// Reads a whole alert file in the form its name implies.
pub fn read_alert_file(path: &Path) -> Result<Vec<AlertRecord>> {
    let mut reader = RecordReader::open(path)?;
    let format = reader.format;
    let mut out = Vec::new();
    while let Some(rec) = reader.next_record()? {
        out.push(match format {
            Format::Protobuf => AlertRecord::decode_protobuf(rec)?,
            Format::Json => AlertRecord::decode_json(rec)?,
        });
    }
    Ok(out)
}

/// Reads a whole event file in the form its name implies (for tools and tests).
pub fn read_event_file(path: &Path) -> Result<Vec<EventRecord>> {
    let mut reader = RecordReader::open(path)?;
    let json = reader.format == Format::Json;
    let mut out = Vec::new();
    while let Some(rec) = reader.next_record()? {
        out.push(EventRecord::decode(rec, json)?);
    }
    Ok(out)
}
