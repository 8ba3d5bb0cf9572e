//! Feeds arbitrary bytes to the checkpoint restore path: state-topic records through the
//! assembler, then the assembled engine state (and the raw input) through
//! `PartitionState::from_bytes`.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use trendwatch_core::{EngineConfig, EventKind, EventRef, PartitionState};
use trendwatch_runtime::checkpoint::{Checkpoint, CheckpointAssembler, encode_chunks};

const GROUP: &str = "counters";
const TOPIC: &str = "events";
const PARTITION: i32 = 3;
/// Two writers (lives of counter processes): a zombie's chunks and the new owner's land side
/// by side under their own keys.
const WRITERS: [&str; 2] = ["0123456789abcdef", "fedcba9876543210"];
/// A version 1 chunk's header: magic, version, partition, generation, offset, chunk,
/// chunks, crc (the chunk's CRC is its last four bytes).
const CHUNK_HEADER_V1: usize = 37;
/// Version 2 adds the CRC of the whole state after the chunk's.
const CHUNK_HEADER_V2: usize = 41;
/// Control bits of a record (see `records`).
const TOMBSTONE: u8 = 1;
const OUR_PREFIX: u8 = 2;
const FIX_CRC: u8 = 4;
const CHECKPOINT: u8 = 8;
const SNAPSHOT_HEAD: u8 = 16;
const LEGACY: u8 = 32;
const SECOND_WRITER: u8 = 64;

/// A real snapshot (videos with counts, open windows, dedup entries) and the length of its
/// header plus window geometry: random bytes almost never get past the geometry check, so
/// the target also tries the input after that prefix and spliced into the snapshot.
static SNAPSHOT: LazyLock<(Vec<u8>, usize)> = LazyLock::new(|| {
    let Ok(mut state) = PartitionState::new(EngineConfig::default()) else {
        return (Vec::new(), 0);
    };
    let mut alerts = Vec::new();
    for i in 0..600_i64 {
        let event_id = format!("e{i}");
        let creator_id = format!("c{}", i % 2);
        let user_id = format!("u{}", i % 7);
        let event = EventRef {
            event_id: &event_id,
            video_id: ["v0", "v1", "v2"][(i % 3) as usize],
            creator_id: &creator_id,
            kind: EventKind::ALL[(i % 5) as usize],
            event_time: 1_767_571_200_000 + i * 1_000,
            user_id: Some(&user_id),
        };
        state.apply(&event, &mut alerts);
    }
    let bytes = state.to_bytes();
    // Magic (4 bytes), version (2), then the geometry: 8 postcard varints.
    let mut end = 6;
    for _ in 0..8 {
        while bytes.get(end).is_some_and(|b| b & 0x80 != 0) {
            end += 1;
        }
        end += 1;
    }
    let end = end.min(bytes.len());
    (bytes, end)
});

/// Splits the input into state-topic records: per record a control byte, a key length (one
/// byte) and a value length (two bytes, little-endian), then the key and the value (cut
/// short at the end of the input). Control bits:
/// - `TOMBSTONE`: the record has no value.
/// - `OUR_PREFIX`: this partition's key prefix goes before the key (with `LEGACY`, the
///   prefix of keys written before the group was in them).
/// - `FIX_CRC`: the right CRC goes into the chunk header (a fuzzer cannot guess a CRC).
/// - `CHECKPOINT`: the value is `[generation, offset, chunk bytes, skipped chunk, state..]`
///   and becomes the chunks `encode_chunks` writes for that checkpoint, but the skipped one
///   (a torn write); with `SNAPSHOT_HEAD` the state starts with a real snapshot's header;
///   with `SECOND_WRITER` under the second writer's keys instead of the first's.
///   Without this, whole generations are out of the fuzzer's reach.
fn records(mut data: &[u8]) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
    let mut out = Vec::new();
    while out.len() < 32 {
        let [ctl, klen, v0, v1, rest @ ..] = data else {
            break;
        };
        let klen = usize::from(*klen).min(rest.len());
        let (key, rest) = rest.split_at(klen);
        let vlen = usize::from(u16::from_le_bytes([*v0, *v1])).min(rest.len());
        let (value, rest) = rest.split_at(vlen);
        data = rest;
        if ctl & CHECKPOINT != 0 {
            if let [generation, offset, chunk_bytes, skip, state @ ..] = value {
                let mut full = Vec::new();
                if ctl & SNAPSHOT_HEAD != 0 {
                    let (snapshot, head) = &*SNAPSHOT;
                    full.extend_from_slice(&snapshot[..*head]);
                }
                full.extend_from_slice(state);
                let cp = Checkpoint {
                    generation: u64::from(*generation),
                    offset: i64::from(*offset),
                    state: full,
                };
                // At most 8 chunks per checkpoint, so one record cannot slow every run.
                let chunk_bytes = usize::from(*chunk_bytes).max(cp.state.len().div_ceil(8));
                let writer = WRITERS[usize::from(ctl & SECOND_WRITER != 0)];
                let chunks = encode_chunks(GROUP, TOPIC, writer, PARTITION, &cp, chunk_bytes);
                for (i, (k, v)) in chunks.into_iter().enumerate() {
                    if i != usize::from(*skip) {
                        out.push((k.into_bytes(), Some(v)));
                    }
                }
            }
            continue;
        }
        let mut k = Vec::new();
        if ctl & OUR_PREFIX != 0 {
            // The group's keys, or the legacy ones without the group.
            if ctl & LEGACY == 0 {
                k.extend_from_slice(format!("{GROUP}/").as_bytes());
            }
            k.extend_from_slice(format!("{TOPIC}/{PARTITION}/").as_bytes());
        }
        k.extend_from_slice(key);
        if ctl & TOMBSTONE != 0 {
            out.push((k, None));
            continue;
        }
        let mut v = value.to_vec();
        let header = if v.get(4) == Some(&2) {
            CHUNK_HEADER_V2
        } else {
            CHUNK_HEADER_V1
        };
        if ctl & FIX_CRC != 0 && v.len() >= header {
            let crc = crc32fast::hash(&v[header..]);
            v[CHUNK_HEADER_V1 - 4..CHUNK_HEADER_V1].copy_from_slice(&crc.to_le_bytes());
        }
        out.push((k, Some(v)));
    }
    out
}

/// What the counter does with a checkpoint's state before it applies events to it.
fn restore(bytes: &[u8]) {
    if let Ok(mut state) = PartitionState::from_bytes(EngineConfig::default(), bytes) {
        state.restart_idle_clock();
        let _ = (state.stats().clone(), state.watermark());
        // The next checkpoint of a restored state must restore in turn.
        let again = state.to_bytes();
        assert!(PartitionState::from_bytes(EngineConfig::default(), &again).is_ok());
    }
}

fuzz_target!(|data: &[u8]| {
    let mut assembler = CheckpointAssembler::new(GROUP, TOPIC, PARTITION);
    for (key, value) in records(data) {
        assembler.push(&key, value.as_deref());
    }
    if let Some(cp) = assembler.finish() {
        // A checkpoint that assembled writes as chunks that assemble to it again.
        let chunk_bytes = 1 + data.len() % 512;
        let mut again = CheckpointAssembler::new(GROUP, TOPIC, PARTITION);
        for (key, value) in encode_chunks(GROUP, TOPIC, WRITERS[0], PARTITION, &cp, chunk_bytes) {
            again.push(key.as_bytes(), Some(&value));
        }
        assert_eq!(again.finish().as_ref(), Some(&cp));
        restore(&cp.state);
    }

    restore(data);
    let (snapshot, head) = &*SNAPSHOT;
    restore(&[&snapshot[..*head], data].concat());
    // The first two bytes pick where in the real snapshot the rest of the input goes.
    if let [a, b, rest @ ..] = data
        && !snapshot.is_empty()
    {
        let mut spliced = snapshot.clone();
        let at = usize::from(u16::from_le_bytes([*a, *b])) % spliced.len();
        let n = rest.len().min(spliced.len() - at);
        spliced[at..at + n].copy_from_slice(&rest[..n]);
        restore(&spliced);
    }
});
