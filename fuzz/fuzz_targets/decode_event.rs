//! Feeds arbitrary bytes to every decoder of untrusted input and to validation.
#![no_main]

use libfuzzer_sys::fuzz_target;
use trendwatch_proto::files::{Format, RecordReader};
use trendwatch_proto::{ValidationConfig, decode_event, decode_event_json};

fuzz_target!(|data: &[u8]| {
    let cfg = ValidationConfig::default();
    if let Ok(ev) = decode_event(data) {
        let _ = ev.validate(1_767_571_200_000, &cfg);
    }
    if let Ok(ev) = decode_event_json(data) {
        let _ = ev.validate(1_767_571_200_000, &cfg);
    }
    for format in [Format::Protobuf, Format::Json] {
        let mut reader = RecordReader::new(data, format);
        while let Ok(Some(_)) = reader.next_record() {}
    }
});
