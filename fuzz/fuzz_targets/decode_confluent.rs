//! Feeds arbitrary bytes to the Confluent Schema Registry unframing and the decoders
//! behind it, with and without a schema-id allow-list: no input may panic, and a framed
//! record that is accepted must decode exactly as its payload does bare.
#![no_main]

use libfuzzer_sys::fuzz_target;
use trendwatch_proto::framing::{unframe_confluent_json, unframe_confluent_protobuf};
use trendwatch_proto::{InputFormat, ValidationConfig, decode_in};

fuzz_target!(|data: &[u8]| {
    let any = ValidationConfig::default();
    // The first byte picks an allow-list, so both paths of the id check are reached.
    let listed = ValidationConfig {
        allowed_schema_ids: vec![1, u32::from(data.first().copied().unwrap_or(0))],
        ..ValidationConfig::default()
    };
    for cfg in [&any, &listed] {
        for (format, bare) in [
            (InputFormat::ConfluentProtobuf, InputFormat::Protobuf),
            (InputFormat::ConfluentJson, InputFormat::Json),
        ] {
            let framed = decode_in(data, format, cfg);
            let frame = match format {
                InputFormat::ConfluentProtobuf => {
                    unframe_confluent_protobuf(data, &cfg.allowed_schema_ids)
                }
                _ => unframe_confluent_json(data, &cfg.allowed_schema_ids),
            };
            match frame {
                Ok(f) => {
                    assert!(f.payload.len() < data.len());
                    if data.len() <= cfg.max_message_bytes {
                        assert_eq!(framed, decode_in(f.payload, bare, cfg));
                    }
                }
                Err(r) => {
                    if data.len() <= cfg.max_message_bytes {
                        assert_eq!(framed, Err(r));
                    }
                }
            }
            if let Ok(ev) = framed {
                let _ = ev.validate(1_767_571_200_000, cfg);
            }
        }
    }
});
