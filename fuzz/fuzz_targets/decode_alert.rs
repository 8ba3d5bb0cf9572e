//! Feeds arbitrary bytes to the alert decoders (both forms of the contract) and to what
//! `alerts tail` does with a record it decoded.
#![no_main]

use libfuzzer_sys::fuzz_target;
use trendwatch_proto::AlertRecord;
use trendwatch_runtime::tail::{decode_alert, table_line};

fuzz_target!(|data: &[u8]| {
    // tail picks the form by the first byte; try both on every input as well.
    let _ = AlertRecord::decode_protobuf(data);
    let _ = AlertRecord::decode_json(data);
    if let Some(record) = decode_alert(data) {
        let _ = record.to_json();
        let _ = table_line(&record, false);
        let _ = table_line(&record, true);
        // An alert that decoded re-encodes to protobuf that decodes.
        let mut buf = Vec::new();
        record.encode_protobuf(&mut buf);
        assert!(AlertRecord::decode_protobuf(&buf).is_ok());
    }
});
