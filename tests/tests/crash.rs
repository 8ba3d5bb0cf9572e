//! Crash tests: the counter is SIGKILLed at seeded random points while events stream in,
//! and restarted each time; at the end its checkpointed counts, its alerts and its dead
//! letters are compared with the replay of the same records.
//!
//! CI runs a short version. The long runs docs/GUARANTEES.md quotes:
//!
//! ```text
//! TRENDWATCH_CRASH_EVENTS=1000000 TRENDWATCH_CRASH_KILLS=12 \
//!   cargo test -p trendwatch-tests --test crash -- --nocapture
//! TRENDWATCH_CRASH_EOS_EVENTS=200000 TRENDWATCH_CRASH_KILLS=10 \
//!   cargo test -p trendwatch-tests --test crash exactly_once -- --nocapture
//! ```
//!
//! The exactly-once variant runs on librdkafka's mock cluster (the local broker has no
//! transactions), whose 5 MB per partition caps its stream: `TRENDWATCH_CRASH_EOS_EVENTS`
//! sets its size (default 120 000; the test refuses a stream that would overflow a
//! partition). The mock keeps no transaction state, so there the test checks counts,
//! alerts and dead letters, not that a `read_committed` reader sees each alert once
//! (docs/GUARANTEES.md).
//!
//! `TRENDWATCH_CRASH_SEED` picks the stream, the kill points and the victims; the same seed
//! gives the same stream and schedule (the exact instant of each kill still depends on how
//! fast the machine processes).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use trendwatch_config::ProcessingGuarantee;
use trendwatch_runtime::deadletter;
use trendwatch_tests::{
    CounterProcess, RawRecord, Scenario, assert_fits_mock, assert_same_alerts, assert_same_counts,
    encode, flat_workload, partition_ends, replay, serial, workload,
};

/// How long the end of a run may take once the last kill is done.
const DONE: Duration = Duration::from_secs(180);

struct Plan {
    seed: u64,
    /// Background events of the workload (its episodes add more).
    events: u64,
    kills: usize,
}

impl Plan {
    /// Records per second to publish at, slowly enough that the kills land while the
    /// stream still flows, given what a kill costs (the group's session timeout, a
    /// restart, a restore, and reading the progress).
    fn rate(&self, records: usize, seconds_per_kill: f64) -> f64 {
        (records as f64 / (seconds_per_kill * self.kills.max(1) as f64)).clamp(1_000.0, 30_000.0)
    }

    fn from_env(default_events: u64, default_kills: usize) -> Self {
        let get = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
        let events = get("TRENDWATCH_CRASH_EVENTS").unwrap_or(default_events);
        let kills = get("TRENDWATCH_CRASH_KILLS").map_or(default_kills, |k| k as usize);
        Self {
            seed: get("TRENDWATCH_CRASH_SEED").unwrap_or(1),
            events,
            kills,
        }
    }
}

/// The workload with garbage records mixed in (about one in 2 000), so the dead-letter
/// topic is part of what must survive the kills.
fn stream(plan: &Plan, setup: Setup, rng: &mut ChaCha8Rng) -> Vec<RawRecord> {
    let events = match setup {
        Setup::LocalBroker => workload(plan.seed, plan.events),
        Setup::MockExactlyOnce => flat_workload(plan.seed, plan.events),
    };
    let mut records = encode(&events);
    let garbage = (records.len() / 2_000).max(3);
    for _ in 0..garbage {
        let at = rng.random_range(0..records.len());
        let key = records[at].0.clone();
        let len = rng.random_range(1..40);
        // Random bytes after 0xff: undecodable, or at best an event without ids; the replay
        // decides which, and the service must agree.
        let mut bytes = vec![0xffu8; len];
        rng.fill(&mut bytes[1..]);
        records.insert(at, (key, bytes));
    }
    records
}

/// What a run saw, for the figures line.
#[derive(Default)]
struct Tally {
    kills: usize,
    peak_rss: u64,
}

impl Tally {
    fn kill(&mut self, victim: CounterProcess) {
        self.peak_rss = self.peak_rss.max(victim.peak_rss_bytes().unwrap_or(0));
        victim.kill();
        self.kills += 1;
    }
}

/// Where a crash run happens.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Setup {
    /// The local broker, at-least-once.
    LocalBroker,
    /// librdkafka's mock cluster, exactly-once. The mock stores no offsets committed in a
    /// transaction, so progress is read from the checkpoints.
    MockExactlyOnce,
}

/// Runs `instances` counters over the plan's stream, killing one of them (chosen by the
/// seed) at each kill point and starting a new one in its place, then checks everything.
fn crash_run(name: &str, plan: &Plan, instances: usize, setup: Setup) {
    let _one_at_a_time = serial();
    let (s, _mock, partitions) = match setup {
        Setup::LocalBroker => (Scenario::new(name, 4), None, 4),
        Setup::MockExactlyOnce => {
            let (mut s, mock) = Scenario::on_mock(name, 16, 1);
            s.config.counter.processing_guarantee = ProcessingGuarantee::ExactlyOnce;
            (s, Some(mock), 16)
        }
    };
    let mut rng = ChaCha8Rng::seed_from_u64(plan.seed);
    let records = stream(plan, setup, &mut rng);
    let ends = partition_ends(&records, partitions);
    let total: i64 = ends.values().sum();
    if setup == Setup::MockExactlyOnce {
        assert_fits_mock(&records, partitions);
    }
    let progress = |s: &Scenario| -> i64 {
        match setup {
            Setup::LocalBroker => s.committed_total(),
            Setup::MockExactlyOnce => s.checkpointed_total(),
        }
    };
    let reference = replay(&s.config, &records, partitions);
    let rejected: u64 = reference.rejected.values().sum();

    // Kill points: committed progress thresholds spread over the stream, each followed by
    // a random delay so kills land between, during and right after checkpoints.
    let mut points: Vec<(i64, Duration, usize)> = (0..plan.kills)
        .map(|_| {
            (
                rng.random_range(total / 20..total * 19 / 20),
                Duration::from_millis(rng.random_range(0..1_500)),
                rng.random_range(0..instances),
            )
        })
        .collect();
    points.sort_by_key(|p| p.0);

    let mut lives = 0;
    let mut start = |s: &Scenario| {
        lives += 1;
        s.start_counter(&format!("life-{lives}"))
    };
    let mut running: Vec<CounterProcess> = (0..instances).map(|_| start(&s)).collect();
    let seconds_per_kill = match setup {
        Setup::LocalBroker => 8.0,
        // Progress is read from the state topic, seconds per look.
        Setup::MockExactlyOnce => 16.0,
    };
    let publisher = s.publish_in_background(&records, plan.rate(records.len(), seconds_per_kill));
    let mut tally = Tally::default();
    let began = Instant::now();
    let mut last_kill_at = -1;
    for (at, delay, victim) in &points {
        let deadline = Instant::now() + DONE;
        // Past the kill point, and progress since the last kill (else a new life would be
        // killed over and over before it did anything), unless the stream is done.
        let due =
            |committed: i64| committed >= *at && (committed > last_kill_at || committed == total);
        while !due(progress(&s)) {
            assert!(
                Instant::now() < deadline,
                "no progress towards {at} of {total} committed records; last log:\n{}",
                running[*victim].log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(*delay);
        last_kill_at = progress(&s);
        let dead = running.swap_remove(*victim);
        eprintln!(
            "[{name}] kill {} of {}: {} at {last_kill_at} of {total} committed (+{delay:?})",
            tally.kills + 1,
            points.len(),
            dead.label,
        );
        tally.kill(dead);
        running.push(start(&s));
    }
    let summary = publisher.join().unwrap();
    assert_eq!(summary.acknowledged, records.len() as u64);
    match setup {
        Setup::LocalBroker => s.wait_committed(&ends, DONE),
        Setup::MockExactlyOnce => s.wait_checkpointed(&ends, DONE, &running[0]),
    }
    for c in running {
        tally.peak_rss = tally.peak_rss.max(c.peak_rss_bytes().unwrap_or(0));
        c.stop();
    }

    let videos = assert_same_counts(&s.checkpointed_states(), &reference, &ends);
    let (distinct, duplicates) =
        assert_same_alerts(&s.alerts(Duration::from_secs(3)), &reference.alerts);
    // Every rejected record reached the dead-letter topic at least once; re-sent copies
    // name the same source record.
    let dlq = s.read_topic(&s.config.topics.dlq, None, Duration::from_secs(3));
    let sources: BTreeSet<(String, String)> = dlq
        .iter()
        .map(|r| {
            (
                r.header(deadletter::SOURCE_PARTITION).unwrap(),
                r.header(deadletter::SOURCE_OFFSET).unwrap(),
            )
        })
        .collect();
    assert_eq!(
        sources.len() as u64,
        rejected,
        "distinct dead letters against the replay's rejected records"
    );
    eprintln!(
        "[{name}] seed {}: {} kills survived over {total} records ({} s); {videos} videos, {distinct} alerts ({duplicates} re-sent with the same id) and {rejected} dead letters ({} copies) equal the replay; peak RSS {:.1} MiB",
        plan.seed,
        tally.kills,
        began.elapsed().as_secs(),
        dlq.len(),
        tally.peak_rss as f64 / (1024.0 * 1024.0)
    );
}

#[test]
fn sigkill_at_random_points_loses_and_doubles_nothing() {
    crash_run("crash", &Plan::from_env(120_000, 4), 1, Setup::LocalBroker);
}

#[test]
fn two_instances_killed_and_restarted_lose_and_double_nothing() {
    crash_run("chaos", &Plan::from_env(120_000, 4), 2, Setup::LocalBroker);
}

#[test]
fn sigkill_in_exactly_once_mode_loses_and_doubles_nothing() {
    let mut plan = Plan::from_env(120_000, 4);
    // The mock cluster's 5 MB per partition caps the stream: its own size setting.
    plan.events = std::env::var("TRENDWATCH_CRASH_EOS_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(120_000);
    crash_run("crash-eos", &plan, 1, Setup::MockExactlyOnce);
}
