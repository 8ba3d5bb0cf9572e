//! Feeds arbitrary bytes to the decoders of the ranking records — the counters' candidate
//! sets (what the ranker reads) and the leaderboard (what `trendwatch leaderboard` reads) —
//! and a decoded candidate set to a ranker, which must not panic on any of it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use trendwatch_core::rank::RankOutput;
use trendwatch_core::{EngineConfig, Ranker, RankingConfig};
use trendwatch_proto::{CandidateRecord, LeaderboardRecord};
use trendwatch_runtime::board::board_table;

fuzz_target!(|data: &[u8]| {
    if let Ok(record) = CandidateRecord::decode_protobuf(data) {
        let engine = EngineConfig::default();
        let mut ranker = Ranker::new(RankingConfig::default(), &engine).expect("defaults");
        ranker.set_partitions(record.source_partition.clamp(0, 64) as u32 + 1);
        let mut out = RankOutput::default();
        let partition = record.source_partition;
        ranker.offer(partition, record.set.clone(), 0, &mut out);
        ranker.offer(partition, record.set, 1, &mut out);
        ranker.tick(i64::MAX, &mut out);
        let restored = Ranker::from_bytes(RankingConfig::default(), &engine, &ranker.to_bytes());
        assert!(restored.is_ok());
    }
    if let Ok(board) = LeaderboardRecord::decode_any(data) {
        let _ = board_table(&board, true);
        let _ = board.to_json();
        let mut buf = Vec::new();
        board.encode_protobuf(&mut buf);
        assert!(LeaderboardRecord::decode_protobuf(&buf).is_ok());
    }
});
