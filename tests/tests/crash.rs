//! Crash tests on the local Apache Kafka: the counter is SIGKILLed at seeded random points
//! while events stream in, and restarted each time; at the end its checkpointed counts, its
//! alerts and its dead letters are compared with the replay of the same records. The
//! at-least-once runs go under both consumer group protocols (classic and KIP-848's
//! consumer protocol).
//!
//! The exactly-once run also fences the counter's transactional producer at random points
//! (a producer with the same `transactional.id` starts, as a zombie's successor would),
//! so the abort path runs for real: the broker aborts the open transaction and the counter
//! must go back to its last committed checkpoints. A `read_committed` reader must then see
//! every expected alert, dead letter and candidate set exactly once, and a
//! `read_uncommitted` reader of the same topics must see the aborted copies (proof the run
//! exercised aborts at all).
//!
//! CI runs a short version. The long runs docs/GUARANTEES.md quotes:
//!
//! ```text
//! TRENDWATCH_CRASH_EVENTS=1000000 TRENDWATCH_CRASH_KILLS=12 \
//!   cargo test -p trendwatch-tests --test crash -- --nocapture
//! TRENDWATCH_CRASH_KILLS=10 TRENDWATCH_CRASH_FENCES=4 \
//!   cargo test -p trendwatch-tests --test crash exactly_once -- --nocapture
//! ```
//!
//! `TRENDWATCH_CRASH_SEED` picks the stream, the kill points and the victims; the same seed
//! gives the same stream and schedule (the exact instant of each kill still depends on how
//! fast the machine processes).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rdkafka::ClientConfig;
use rdkafka::producer::{BaseProducer, Producer};
use trendwatch_config::{GroupProtocol, ProcessingGuarantee};
use trendwatch_proto::CandidateRecord;
use trendwatch_runtime::deadletter;
use trendwatch_runtime::telemetry as m;
use trendwatch_tests::{
    CounterProcess, RawRecord, Record, Scenario, assert_same_alerts, assert_same_counts, encode,
    partition_ends, replay, serial, workload,
};

/// How long the end of a run may take once the last kill is done.
const DONE: Duration = Duration::from_secs(180);

struct Plan {
    seed: u64,
    /// Background events of the workload (its episodes add more).
    events: u64,
    kills: usize,
    /// Exactly-once runs: how many times the transactional producer is fenced.
    fences: usize,
}

impl Plan {
    /// Records per second to publish at, slowly enough that the kills land while the
    /// stream still flows, given what a kill costs (the group's session timeout, a
    /// restart, a restore, and reading the progress).
    fn rate(&self, records: usize, seconds_per_point: f64, points: usize) -> f64 {
        (records as f64 / (seconds_per_point * points.max(1) as f64)).clamp(1_000.0, 30_000.0)
    }

    fn from_env(default_events: u64, default_kills: usize) -> Self {
        let get = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
        let events = get("TRENDWATCH_CRASH_EVENTS").unwrap_or(default_events);
        let kills = get("TRENDWATCH_CRASH_KILLS").map_or(default_kills, |k| k as usize);
        Self {
            seed: get("TRENDWATCH_CRASH_SEED").unwrap_or(1),
            events,
            kills,
            fences: get("TRENDWATCH_CRASH_FENCES").map_or(2, |f| f as usize),
        }
    }
}

/// The workload with garbage records mixed in (about one in 2 000), so the dead-letter
/// topic is part of what must survive the kills.
fn stream(plan: &Plan, rng: &mut ChaCha8Rng) -> Vec<RawRecord> {
    let mut records = encode(&workload(plan.seed, plan.events));
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
    fences: usize,
    peak_rss: u64,
    /// Transactions each life reported before it was killed or stopped, by result.
    transactions: BTreeMap<&'static str, f64>,
}

impl Tally {
    fn look(&mut self, c: &CounterProcess) {
        self.peak_rss = self.peak_rss.max(c.peak_rss_bytes().unwrap_or(0));
        let metrics = c.metrics();
        for result in ["committed", "aborted", "fenced"] {
            *self.transactions.entry(result).or_default() +=
                metrics.sum(m::TRANSACTIONS, &[("result", result)]);
        }
    }

    fn kill(&mut self, victim: CounterProcess) {
        self.look(&victim);
        victim.kill();
        self.kills += 1;
    }
}

/// What to do at a point of the schedule.
#[derive(Clone, Copy, Debug)]
enum Action {
    /// SIGKILL the counter (chosen by index) and start a new one.
    Kill(usize),
    /// Start a producer with the counter's `transactional.id`: the broker aborts the
    /// counter's open transaction and its producer is fenced at its next request.
    Fence,
}

/// Fences the transactional producer of `transactional_id` the way a successor does.
fn fence(s: &Scenario, transactional_id: &str) {
    let p: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", s.bootstrap())
        .set("transactional.id", transactional_id)
        .create()
        .unwrap();
    p.init_transactions(Duration::from_secs(30)).unwrap();
}

/// Runs `instances` counters over the plan's stream, killing one of them (chosen by the
/// seed) at each kill point and starting a new one in its place (and, in exactly-once mode,
/// fencing the transactional producer at the fence points), then checks everything.
fn crash_run(
    name: &str,
    plan: &Plan,
    instances: usize,
    guarantee: ProcessingGuarantee,
    protocol: GroupProtocol,
) {
    let _one_at_a_time = serial();
    let partitions = 4;
    let mut s = Scenario::new(name, partitions);
    s.use_group_protocol(protocol);
    let exactly_once = guarantee == ProcessingGuarantee::ExactlyOnce;
    if exactly_once {
        assert_eq!(instances, 1, "one transactional id per instance");
        s.config.counter.processing_guarantee = guarantee;
        // One stable id for every life, as a deployment configures it: a new life fences
        // (and aborts the open transaction of) the one before at once.
        s.config.counter.transactional_id = format!("tx-{}", s.config.counter.group_id);
    }
    let mut rng = ChaCha8Rng::seed_from_u64(plan.seed);
    let records = stream(plan, &mut rng);
    let ends = partition_ends(&records, partitions);
    let total: i64 = ends.values().sum();
    let progress = |s: &Scenario| -> i64 { s.committed_total() };
    let reference = replay(&s.config, &records, partitions);
    let rejected: u64 = reference.rejected.values().sum();

    // Kill (and fence) points: committed progress thresholds spread over the stream, each
    // followed by a random delay so they land between, during and right after checkpoints.
    let fences = if exactly_once { plan.fences } else { 0 };
    let mut points: Vec<(i64, Duration, Action)> = (0..plan.kills + fences)
        .map(|i| {
            (
                rng.random_range(total / 20..total * 19 / 20),
                Duration::from_millis(rng.random_range(0..1_500)),
                if i < plan.kills {
                    Action::Kill(rng.random_range(0..instances))
                } else {
                    Action::Fence
                },
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
    // What a kill costs: the group's session timeout, a restart and a restore (in
    // exactly-once mode the restore also waits for the aborted transaction to clear).
    let seconds_per_kill = if exactly_once { 10.0 } else { 8.0 };
    let publisher = s.publish_in_background(
        &records,
        plan.rate(records.len(), seconds_per_kill, points.len()),
    );
    let mut tally = Tally::default();
    let began = Instant::now();
    let mut last_at = -1;
    for (at, delay, action) in &points {
        let deadline = Instant::now() + DONE;
        // Past the point, and progress since the last one (else a new life would be killed
        // over and over before it did anything), unless the stream is done.
        let due = |committed: i64| committed >= *at && (committed > last_at || committed == total);
        while !due(progress(&s)) {
            assert!(
                Instant::now() < deadline,
                "no progress towards {at} of {total} committed records; last log:\n{}",
                running[0].log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(*delay);
        last_at = progress(&s);
        match action {
            Action::Kill(victim) => {
                let victim = (*victim).min(running.len() - 1);
                let dead = running.swap_remove(victim);
                eprintln!(
                    "[{name}] kill {} of {}: {} at {last_at} of {total} committed (+{delay:?})",
                    tally.kills + 1,
                    plan.kills,
                    dead.label,
                );
                tally.kill(dead);
                running.push(start(&s));
            }
            Action::Fence => {
                eprintln!(
                    "[{name}] fence {} of {fences}: a second producer with the counter's transactional id, at {last_at} of {total} committed (+{delay:?})",
                    tally.fences + 1
                );
                fence(&s, &s.config.counter.transactional_id);
                tally.fences += 1;
            }
        }
    }
    let summary = publisher.join().unwrap();
    assert_eq!(summary.acknowledged, records.len() as u64);
    s.wait_committed(&ends, DONE);
    for c in running {
        tally.look(&c);
        c.stop();
    }

    let videos = assert_same_counts(&s.checkpointed_states(), &reference, &ends);
    let alerts = s.alerts(Duration::from_secs(3));
    let (distinct, duplicates) = assert_same_alerts(&alerts, &reference.alerts);
    // Every rejected record reached the dead-letter topic at least once; re-sent copies
    // name the same source record.
    let dlq = s.read_topic(&s.config.topics.dlq, None, Duration::from_secs(3));
    let sources: BTreeSet<(String, String)> = dlq.iter().map(dead_letter_source).collect();
    assert_eq!(
        sources.len() as u64,
        rejected,
        "distinct dead letters against the replay's rejected records"
    );
    let candidates = s.read_topic(&s.config.topics.candidates, None, Duration::from_secs(3));
    let sets = candidate_sets(&candidates);
    for (p, want) in &reference.candidate_sets {
        // By window: a set re-sent after a restart must be the first copy again.
        let mut got: BTreeMap<i64, &trendwatch_core::CandidateSet> = BTreeMap::new();
        for set in sets.get(p).into_iter().flatten() {
            if let Some(first) = got.insert(set.window_end, set) {
                assert_eq!(
                    first, set,
                    "partition {p}: window {} sent twice, differently",
                    set.window_end
                );
            }
        }
        let want: BTreeMap<i64, &trendwatch_core::CandidateSet> =
            want.iter().map(|set| (set.window_end, set)).collect();
        assert_eq!(
            got, want,
            "partition {p}: candidate sets against the replay's"
        );
    }
    let mut figures = String::new();
    if exactly_once {
        // A read_committed reader sees each alert, dead letter and candidate set once.
        assert_eq!(duplicates, 0, "a read_committed reader saw an alert twice");
        assert_eq!(
            dlq.len(),
            sources.len(),
            "a read_committed reader saw a dead letter twice"
        );
        let sent: usize = reference.candidate_sets.values().map(Vec::len).sum();
        assert_eq!(
            candidates.len(),
            sent,
            "a read_committed reader saw a candidate set twice"
        );
        // ... and a read_uncommitted reader sees the copies the aborted transactions held.
        let quiet = Duration::from_secs(3);
        let raw_alerts = s
            .read_topic_uncommitted(&s.config.topics.alerts, quiet)
            .len();
        let raw_dlq = s.read_topic_uncommitted(&s.config.topics.dlq, quiet).len();
        let raw_candidates = s
            .read_topic_uncommitted(&s.config.topics.candidates, quiet)
            .len();
        let committed = alerts.len() + dlq.len() + candidates.len();
        let raw = raw_alerts + raw_dlq + raw_candidates;
        assert!(
            raw > committed,
            "a read_uncommitted reader saw no aborted copies ({raw} records, {committed} committed): the run exercised no abort"
        );
        // A fenced producer surfaces as a fatal commit error or as a failed send (then the
        // abort fails and the producer is replaced): either way a failed transaction.
        let failed: f64 = ["aborted", "fenced"]
            .iter()
            .filter_map(|r| tally.transactions.get(r))
            .sum();
        assert!(
            failed >= 1.0 || tally.fences == 0,
            "no life reported a failed transaction after {} fences",
            tally.fences
        );
        figures = format!(
            "; exactly once for read_committed ({} alerts, {} dead letters, {} candidate sets), read_uncommitted saw {raw_alerts} alert, {raw_dlq} dead-letter and {raw_candidates} candidate records ({} aborted copies); transactions by result {:?}",
            alerts.len(),
            dlq.len(),
            candidates.len(),
            raw - committed,
            tally.transactions
        );
    }
    eprintln!(
        "[{name}] seed {} ({}): {} kills and {} fences survived over {total} records ({} s); {videos} videos, {distinct} alerts ({duplicates} re-sent with the same id) and {rejected} dead letters ({} copies) equal the replay; peak RSS {:.1} MiB{figures}",
        plan.seed,
        protocol.as_str(),
        tally.kills,
        tally.fences,
        began.elapsed().as_secs(),
        dlq.len(),
        tally.peak_rss as f64 / (1024.0 * 1024.0)
    );
}

fn dead_letter_source(r: &Record) -> (String, String) {
    (
        r.header(deadletter::SOURCE_PARTITION).unwrap(),
        r.header(deadletter::SOURCE_OFFSET).unwrap(),
    )
}

/// The candidate sets read back, per source partition, in the order written.
fn candidate_sets(records: &[Record]) -> BTreeMap<i32, Vec<trendwatch_core::CandidateSet>> {
    let mut out: BTreeMap<i32, Vec<_>> = BTreeMap::new();
    for r in records {
        let c = CandidateRecord::decode_protobuf(&r.payload).unwrap();
        out.entry(c.source_partition).or_default().push(c.set);
    }
    out
}

#[test]
fn sigkill_at_random_points_loses_and_doubles_nothing() {
    crash_run(
        "crash",
        &Plan::from_env(120_000, 4),
        1,
        ProcessingGuarantee::AtLeastOnce,
        GroupProtocol::Classic,
    );
}

#[test]
fn sigkill_under_the_consumer_group_protocol_loses_and_doubles_nothing() {
    crash_run(
        "crash-848",
        &Plan::from_env(120_000, 4),
        1,
        ProcessingGuarantee::AtLeastOnce,
        GroupProtocol::Consumer,
    );
}

#[test]
fn two_instances_killed_and_restarted_lose_and_double_nothing() {
    crash_run(
        "chaos",
        &Plan::from_env(120_000, 4),
        2,
        ProcessingGuarantee::AtLeastOnce,
        GroupProtocol::Classic,
    );
}

#[test]
fn two_instances_under_the_consumer_group_protocol_lose_and_double_nothing() {
    crash_run(
        "chaos-848",
        &Plan::from_env(120_000, 4),
        2,
        ProcessingGuarantee::AtLeastOnce,
        GroupProtocol::Consumer,
    );
}

#[test]
fn exactly_once_with_kills_and_fencing_delivers_every_record_once() {
    crash_run(
        "crash-eos",
        &Plan::from_env(120_000, 4),
        1,
        ProcessingGuarantee::ExactlyOnce,
        GroupProtocol::Classic,
    );
}
