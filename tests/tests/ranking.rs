//! The global board end to end on the local Apache Kafka: counters propose their
//! partitions' top candidates per window, the ranker merges them. Every published board is
//! compared with a naive top-K computed offline from the same records, and with the
//! reference run of the pure ranker (boards and alerts).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use trendwatch_core::AlertType;
use trendwatch_proto::LeaderboardRecord;
use trendwatch_runtime::telemetry as m;
use trendwatch_tests::{
    CounterProcess, RawRecord, Scenario, assert_boards_match, assert_same_alerts, boards_by_window,
    encode, offline_boards, rank_reference, replay, serial, trendwatch_bin, workload,
};

const DONE: Duration = Duration::from_secs(180);

/// Waits until the leaderboard topic holds a board for window `end`.
fn wait_for_window(s: &Scenario, ranker: &CounterProcess, end: i64) -> Vec<LeaderboardRecord> {
    let deadline = Instant::now() + DONE;
    loop {
        let boards = s.boards(Duration::from_millis(800));
        if boards.iter().any(|b| b.board.window_end == end) {
            return boards;
        }
        assert!(
            Instant::now() < deadline,
            "[{}] no board for window {end} after {DONE:?}; newest {:?}; ranker log:\n{}",
            s.name,
            boards.last().map(|b| b.board.window_end),
            ranker.log_text()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn partition_of(record: &RawRecord, partitions: u32) -> u32 {
    trendwatch_cli::partitioner::partition_for(
        trendwatch_cli::partitioner::Partitioner::Crc32,
        record.0.as_deref().unwrap_or_default(),
        partitions,
    )
}

#[test]
fn two_counters_and_a_ranker_publish_the_naive_top_k_of_every_window() {
    let _one_at_a_time = serial();
    let partitions = 4;
    let s = Scenario::new("board", partitions);
    let records = encode(&workload(11, 60_000));
    let offline = offline_boards(&s.config, &records, partitions);
    let reference = replay(&s.config, &records, partitions);
    let ranked = rank_reference(&s.config, &reference, partitions);
    let full = offline
        .boards
        .values()
        .filter(|b| b.len() == s.config.ranking.top_k as usize)
        .count();
    assert!(
        full >= 20,
        "the workload must fill the board ({full} full windows)"
    );
    assert!(
        ranked
            .alerts
            .iter()
            .any(|a| a.alert_type == AlertType::RankChanged),
        "the workload must make videos climb"
    );

    let a = s.start_counter("counter-a");
    let b = s.start_counter("counter-b");
    let ranker = s.start_ranker("ranker");
    s.publish_raw(&records, None);
    let boards = wait_for_window(&s, &ranker, offline.closed_through);

    // `trendwatch leaderboard --once --json` prints the current board.
    let out = std::process::Command::new(trendwatch_bin())
        .args(["leaderboard", "--once", "--json", "--config"])
        .arg(s.config_file())
        .env_remove("TRENDWATCH_BOOTSTRAP_SERVERS")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let shown = LeaderboardRecord::decode_json(&out.stdout).unwrap();
    assert_eq!(shown.board.window_end, offline.closed_through);
    assert_eq!(shown.scope, "global");

    let metrics = ranker.metrics();
    ranker.stop();
    a.stop();
    b.stop();

    let published = boards_by_window(&boards);
    let compared = assert_boards_match(&published, &offline, offline.closed_through);
    let want: BTreeMap<i64, _> = ranked
        .boards
        .iter()
        .map(|b| (b.window_end, b.clone()))
        .collect();
    assert_eq!(
        published, want,
        "boards differ from the pure ranker's reference run"
    );
    assert!(
        published
            .values()
            .all(|b| b.left_out.is_empty() && b.partitions == 4)
    );

    let mut expected = reference.alerts.clone();
    expected.extend(ranked.alerts.iter().cloned());
    let alerts = s.alerts(Duration::from_secs(2));
    let (distinct, duplicates) = assert_same_alerts(&alerts, &expected);
    assert!(
        alerts
            .iter()
            .any(|a| a.alert.alert_type == AlertType::Trending && a.alert.rank > 0),
        "the ranker's TRENDING alerts carry a rank"
    );
    assert_eq!(
        metrics.sum(m::RANKER_BOARDS, &[]) as usize,
        boards.len(),
        "every board the ranker counted is on the topic"
    );
    assert!(metrics.sum(m::RANKER_WINDOWS_CLOSED, &[]) >= published.len() as f64);
    eprintln!(
        "board: {} windows published, {compared} non-empty offline windows compared, {} ranker alerts, {distinct} alerts in all ({duplicates} re-sent)",
        published.len(),
        ranked.alerts.len()
    );
}

#[test]
fn a_partition_without_events_does_not_hold_the_board_back() {
    let _one_at_a_time = serial();
    let partitions = 4;
    let mut s = Scenario::new("quiet", partitions);
    s.config.ranking.idle_timeout = Duration::from_secs(3);
    let records: Vec<RawRecord> = encode(&workload(12, 40_000))
        .into_iter()
        .filter(|r| partition_of(r, partitions as u32) != 3)
        .collect();
    let offline = offline_boards(&s.config, &records, partitions);

    let counter = s.start_counter("counter");
    let ranker = s.start_ranker("ranker");
    s.publish_raw(&records, None);
    let published_at = Instant::now();
    let boards = wait_for_window(&s, &ranker, offline.closed_through);
    let took = published_at.elapsed();
    let metrics = ranker.metrics();
    ranker.stop();
    counter.stop();

    let published = boards_by_window(&boards);
    let compared = assert_boards_match(&published, &offline, offline.closed_through);
    assert!(compared >= 20, "{compared} windows compared");
    assert!(
        published.values().all(|b| b.left_out == vec![3]),
        "every board names the silent partition as left out"
    );
    assert!(metrics.sum(m::RANKER_IDLE_PARTITIONS, &[]) >= 1.0);
    assert!(metrics.sum(m::RANKER_WINDOWS_LEFT_OUT, &[]) >= compared as f64);
    eprintln!(
        "quiet: {} windows published without partition 3, the last one {:.1} s after the events were published (idle timeout 3 s)",
        published.len(),
        took.as_secs_f64()
    );
}

#[test]
fn a_ranker_killed_mid_stream_is_replaced_without_changing_a_board() {
    let _one_at_a_time = serial();
    let partitions = 3;
    let s = Scenario::new("ranker-restart", partitions);
    let records = encode(&workload(13, 60_000));
    let reference = replay(&s.config, &records, partitions);
    let ranked = rank_reference(&s.config, &reference, partitions);
    let offline = offline_boards(&s.config, &records, partitions);

    let counter = s.start_counter("counter");
    let first = s.start_ranker("ranker-1");
    let publisher = s.publish_in_background(&records, 2_000.0);
    first.wait_for("ten boards and two checkpoints", DONE, |r| {
        let metrics = r.metrics();
        metrics.sum(m::RANKER_BOARDS, &[]) >= 10.0
            && metrics.sum(m::CHECKPOINTS, &[("result", "ok")]) >= 2.0
    });
    first.kill();
    let second = s.start_ranker("ranker-2");
    let summary = publisher.join().unwrap();
    assert_eq!(summary.acknowledged, records.len() as u64);
    let boards = wait_for_window(&s, &second, offline.closed_through);
    assert!(
        second.log_text().contains("ranker restored"),
        "the second ranker starts from the first one's checkpoint:\n{}",
        second.log_text()
    );
    second.stop();
    counter.stop();

    let published = boards_by_window(&boards);
    let want: BTreeMap<i64, _> = ranked
        .boards
        .iter()
        .map(|b| (b.window_end, b.clone()))
        .collect();
    assert_eq!(published, want, "boards differ from an uninterrupted run");
    assert_boards_match(&published, &offline, offline.closed_through);
    let mut expected = reference.alerts.clone();
    expected.extend(ranked.alerts.iter().cloned());
    let (distinct, duplicates) = assert_same_alerts(&s.alerts(Duration::from_secs(2)), &expected);
    eprintln!(
        "ranker restart: {} windows ({} board records, re-sent ones identical), {distinct} alerts equal the reference ({duplicates} re-sent)",
        published.len(),
        boards.len()
    );
}
